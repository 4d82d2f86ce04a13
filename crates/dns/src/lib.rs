//! peapod's cluster DNS (CoreDNS's `kubernetes` plugin in miniature): answers the names pods
//! use to find Services, from the Services, EndpointSlices and Pods it watches through the
//! Kubernetes API.
//!
//! Answers, under the cluster domain (`cluster.local`), as the Kubernetes DNS specification
//! says:
//! - `<svc>.<ns>.svc.cluster.local` A → the ClusterIP; for a headless Service, the IPs of
//!   its ready endpoints; an ExternalName Service is a CNAME;
//! - `<hostname>.<svc>.<ns>.svc.cluster.local` A → the ready endpoint with that hostname
//!   (a StatefulSet's `NAME-0` through its governing Service), or with that dashed IP;
//! - `_<port>._<proto>.<svc>.<ns>.svc.cluster.local` SRV → the named port;
//! - `a-b-c-d.<ns>.pod.cluster.local` A → a.b.c.d when a pod of that namespace has that IP;
//! - a name that exists without records of the asked type is NOERROR with no answer (so a
//!   resolver's AAAA query does not fail the A lookup); anything else in the domain is
//!   NXDOMAIN. `<svc>` and `<svc>.<ns>` reach here through the pods' search path.
//!
//! Names outside the cluster domain are REFUSED: peapod runs offline-first and does not
//! forward (pods that need the outside world can use `dnsPolicy: Default`).
//!
//! Packets are parsed and built with `hickory-proto`; the decision is the pure [`answer`]
//! (over UDP [`answer_udp`], which truncates what does not fit, setting TC). Answers come
//! from an index of the watched objects, rebuilt only after they change.
//! The server listens on the cluster DNS ClusterIP itself (10.96.0.10:53, UDP and TCP),
//! which [`run`] adds to the node's loopback device, so pods reach it through their default
//! route without any NAT rule.

use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use k8s_openapi::api::core::v1::{Pod, PodStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::reflector::Store;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How `peapod up` configures the DNS server.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Where to listen (the `kube-dns` ClusterIP, port 53).
    pub listen: SocketAddr,
    /// kubelet's `--cluster-domain`.
    pub domain: String,
    /// Device to put the listen address on when the node lacks it (`lo`); `None` to bind
    /// only to addresses that already exist.
    pub add_address_to: Option<String>,
    /// TTL of answers (CoreDNS's default is 5 s for Kubernetes records).
    pub ttl: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            listen: SocketAddr::from((Ipv4Addr::new(10, 96, 0, 10), 53)),
            domain: "cluster.local".into(),
            add_address_to: Some("lo".into()),
            ttl: 5,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("adding {addr} to {dev}: {detail}")]
    AddAddress {
        addr: Ipv4Addr,
        dev: String,
        detail: String,
    },
    #[error("binding {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A ready endpoint's address and hostname.
type ReadyEndpoint = (Ipv4Addr, Option<String>);

/// The cluster's objects the answers come from, indexed by the names queries ask for. Built
/// once per change of the watched objects (see [`Stores::current`]), shared by every query
/// until the next change.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Services by (namespace, name).
    services: HashMap<(String, String), Arc<Service>>,
    /// Ready endpoints of each Service by (namespace, service): address and hostname.
    endpoints: HashMap<(String, String), Vec<ReadyEndpoint>>,
    /// Namespaces with a Service or a pod (their `svc`/`pod` subdomains exist).
    namespaces: HashSet<String>,
    /// (namespace, IP) of every pod with an IP.
    pod_ips: HashSet<(String, Ipv4Addr)>,
}

impl Snapshot {
    pub fn new(
        services: impl IntoIterator<Item = Arc<Service>>,
        slices: impl IntoIterator<Item = Arc<EndpointSlice>>,
        pods: impl IntoIterator<Item = Arc<Pod>>,
    ) -> Self {
        let mut snap = Snapshot::default();
        for svc in services {
            let (Some(ns), Some(name)) = (&svc.metadata.namespace, &svc.metadata.name) else {
                continue;
            };
            snap.namespaces.insert(ns.clone());
            snap.services
                .insert((ns.clone(), name.clone()), svc.clone());
        }
        for slice in slices {
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
            else {
                continue;
            };
            let ready = slice
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true));
            let list = snap.endpoints.entry((ns, svc.clone())).or_default();
            for e in ready {
                let hostname = e.hostname.clone().filter(|h| !h.is_empty());
                for ip in e.addresses.iter().filter_map(|a| a.parse().ok()) {
                    list.push((ip, hostname.clone()));
                }
            }
        }
        for pod in pods {
            let Some(ns) = &pod.metadata.namespace else {
                continue;
            };
            snap.namespaces.insert(ns.clone());
            if let Some(ip) = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|s| s.parse().ok())
            {
                snap.pod_ips.insert((ns.clone(), ip));
            }
        }
        snap
    }

    fn service(&self, ns: &str, name: &str) -> Option<&Service> {
        self.services
            .get(&(ns.to_string(), name.to_string()))
            .map(Arc::as_ref)
    }

    fn ready_endpoints(&self, ns: &str, svc: &str) -> &[ReadyEndpoint] {
        self.endpoints
            .get(&(ns.to_string(), svc.to_string()))
            .map_or(&[], Vec::as_slice)
    }
}

/// What a name resolves to.
#[derive(Debug, PartialEq)]
enum Lookup {
    /// The name exists; these records (possibly none of the asked type).
    Records(Vec<RData>),
    NxDomain,
    Refused,
}

fn ready_endpoint_ips(snap: &Snapshot, ns: &str, svc: &str) -> Vec<Ipv4Addr> {
    let mut ips: Vec<Ipv4Addr> = snap
        .ready_endpoints(ns, svc)
        .iter()
        .map(|(ip, _)| *ip)
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// `<endpoint>.<svc>.<ns>.svc`: the addresses of the Service's ready endpoints named
/// `endpoint`, by their hostname (a StatefulSet pod's `hostname` when its `subdomain` is
/// the Service) or else their dashed IP, as CoreDNS names them; `None` when none is.
fn endpoint_records(
    snap: &Snapshot,
    ns: &str,
    svc: &str,
    endpoint: &str,
    qtype: RecordType,
) -> Option<Vec<RData>> {
    let mut ips: Vec<Ipv4Addr> = snap
        .ready_endpoints(ns, svc)
        .iter()
        .filter(|(ip, hostname)| match hostname {
            Some(h) => h.eq_ignore_ascii_case(endpoint),
            None => ip.to_string().replace('.', "-") == endpoint,
        })
        .map(|(ip, _)| *ip)
        .collect();
    if ips.is_empty() {
        return None;
    }
    ips.sort();
    ips.dedup();
    if qtype != RecordType::A && qtype != RecordType::ANY {
        return Some(Vec::new());
    }
    Some(ips.into_iter().map(|ip| RData::A(A(ip))).collect())
}

fn service_records(snap: &Snapshot, svc: &Service, qtype: RecordType) -> Option<Vec<RData>> {
    let spec = svc.spec.as_ref()?;
    let ns = svc.metadata.namespace.as_deref().unwrap_or("");
    let name = svc.metadata.name.as_deref().unwrap_or("");
    if spec.type_.as_deref() == Some("ExternalName") {
        let target = Name::from_ascii(spec.external_name.as_deref()?).ok()?;
        return Some(vec![RData::CNAME(CNAME(target))]);
    }
    if qtype != RecordType::A && qtype != RecordType::ANY {
        return Some(Vec::new());
    }
    let ips = match spec.cluster_ip.as_deref() {
        Some("None") => ready_endpoint_ips(snap, ns, name),
        Some(ip) => ip.parse().ok().into_iter().collect(),
        None => Vec::new(),
    };
    Some(ips.into_iter().map(|ip| RData::A(A(ip))).collect())
}

/// Resolves one lower-case FQDN (without the trailing dot).
fn lookup(snap: &Snapshot, domain: &str, name: &str, qtype: RecordType) -> Lookup {
    let Some(rest) = name.strip_suffix(domain).and_then(|r| {
        if r.is_empty() {
            Some("")
        } else {
            r.strip_suffix('.')
        }
    }) else {
        return Lookup::Refused;
    };
    let labels: Vec<&str> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('.').collect()
    };
    match labels.as_slice() {
        // The zone itself and its `svc`/`pod` subdomains exist (empty non-terminals).
        [] | ["svc"] | ["pod"] => Lookup::Records(Vec::new()),
        [ns, "svc"] | [ns, "pod"] => {
            if snap.namespaces.contains(*ns) {
                Lookup::Records(Vec::new())
            } else {
                Lookup::NxDomain
            }
        }
        [svc, ns, "svc"] => snap
            .service(ns, svc)
            .and_then(|s| service_records(snap, s, qtype))
            .map_or(Lookup::NxDomain, Lookup::Records),
        [endpoint, svc, ns, "svc"] if !endpoint.starts_with('_') => {
            endpoint_records(snap, ns, svc, endpoint, qtype)
                .map_or(Lookup::NxDomain, Lookup::Records)
        }
        [port, proto, svc, ns, "svc"] if port.starts_with('_') && proto.starts_with('_') => {
            let Some(s) = snap.service(ns, svc) else {
                return Lookup::NxDomain;
            };
            let found = s.spec.as_ref().and_then(|spec| {
                spec.ports.iter().flatten().find(|p| {
                    p.name.as_deref() == Some(&port[1..])
                        && p.protocol
                            .as_deref()
                            .unwrap_or("TCP")
                            .eq_ignore_ascii_case(&proto[1..])
                })
            });
            match found {
                None => Lookup::NxDomain,
                Some(_) if qtype != RecordType::SRV && qtype != RecordType::ANY => {
                    Lookup::Records(Vec::new())
                }
                Some(p) => {
                    let target = Name::from_ascii(format!("{svc}.{ns}.svc.{domain}."));
                    match (target, u16::try_from(p.port)) {
                        (Ok(t), Ok(port)) => {
                            Lookup::Records(vec![RData::SRV(SRV::new(0, 100, port, t))])
                        }
                        _ => Lookup::NxDomain,
                    }
                }
            }
        }
        [dashed, ns, "pod"] => {
            let ip: Option<Ipv4Addr> = dashed.replace('-', ".").parse().ok();
            let Some(ip) = ip else {
                return Lookup::NxDomain;
            };
            // CoreDNS's `pods verified`: only an IP a pod of that namespace has.
            let exists = snap.pod_ips.contains(&(ns.to_string(), ip));
            match (exists, qtype) {
                (false, _) => Lookup::NxDomain,
                (true, RecordType::A | RecordType::ANY) => Lookup::Records(vec![RData::A(A(ip))]),
                (true, _) => Lookup::Records(Vec::new()),
            }
        }
        _ => Lookup::NxDomain,
    }
}

/// The response to one DNS query packet (over TCP: no size limit), or `None` when it is not
/// even a parseable query.
pub fn answer(snap: &Snapshot, domain: &str, ttl: u32, query: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    respond(snap, domain, ttl, &req)?.to_vec().ok()
}

/// The classic UDP payload limit, raised by a client's EDNS0 buffer size.
const UDP_PAYLOAD: usize = 512;
/// The largest UDP answer sent whatever a client advertises (CoreDNS's cap).
const UDP_PAYLOAD_MAX: usize = 4096;

/// As [`answer`], for UDP: a response larger than the client's payload size (512 bytes, or
/// its EDNS0 buffer size) goes out without its records and with the TC bit, so the client
/// retries over TCP.
pub fn answer_udp(snap: &Snapshot, domain: &str, ttl: u32, query: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let mut resp = respond(snap, domain, ttl, &req)?;
    let bytes = resp.to_vec().ok()?;
    let limit = req
        .extensions()
        .as_ref()
        .map_or(UDP_PAYLOAD, |e| usize::from(e.max_payload()))
        .clamp(UDP_PAYLOAD, UDP_PAYLOAD_MAX);
    if bytes.len() <= limit {
        return Some(bytes);
    }
    resp.take_answers();
    resp.take_additionals();
    resp.set_truncated(true);
    resp.to_vec().ok()
}

fn respond(snap: &Snapshot, domain: &str, ttl: u32, req: &Message) -> Option<Message> {
    if req.message_type() != MessageType::Query {
        return None;
    }
    let mut resp = Message::new();
    resp.set_id(req.id())
        .set_message_type(MessageType::Response)
        .set_op_code(req.op_code())
        .set_recursion_desired(req.recursion_desired())
        .set_recursion_available(false);
    for q in req.queries() {
        resp.add_query(q.clone());
    }
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let code = match (req.op_code(), req.queries()) {
        (OpCode::Query, [q]) => {
            let name = q.name().to_lowercase().to_ascii();
            let name = name.trim_end_matches('.');
            match lookup(snap, &domain, name, q.query_type()) {
                Lookup::Records(rdatas) => {
                    resp.set_authoritative(true);
                    for rd in rdatas {
                        let matches = q.query_type() == RecordType::ANY
                            || rd.record_type() == q.query_type()
                            || rd.record_type() == RecordType::CNAME;
                        if matches {
                            resp.add_answer(Record::from_rdata(q.name().clone(), ttl, rd));
                        }
                    }
                    ResponseCode::NoError
                }
                Lookup::NxDomain => {
                    resp.set_authoritative(true);
                    ResponseCode::NXDomain
                }
                Lookup::Refused => ResponseCode::Refused,
            }
        }
        (OpCode::Query, _) => ResponseCode::FormErr,
        _ => ResponseCode::NotImp,
    };
    resp.set_response_code(code);
    Some(resp)
}

/// Puts `addr/32` on `dev` unless it is there; true when this call added it.
fn ensure_address(addr: Ipv4Addr, dev: &str) -> Result<bool, DnsError> {
    let out = Command::new("ip")
        .args(["addr", "add", &format!("{addr}/32"), "dev", dev])
        .output()
        .map_err(|e| DnsError::AddAddress {
            addr,
            dev: dev.into(),
            detail: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // iproute2 says "File exists" or (newer) "Address already assigned".
    if err.contains("File exists") || err.contains("already assigned") {
        return Ok(false);
    }
    Err(DnsError::AddAddress {
        addr,
        dev: dev.into(),
        detail: err.trim().to_string(),
    })
}

/// How often the server checks that its address is still on the device.
const RECHECK: Duration = Duration::from_secs(10);

/// [`cleanup`] unless some process (another peapod on this host) still serves on the
/// address: for `peapod reset`, which must not cut a running neighbour off.
pub fn cleanup_if_unused(config: &DnsConfig) {
    match std::net::UdpSocket::bind(config.listen) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        _ => cleanup(config),
    }
}

/// Removes the listen address from its device (shutdown, `peapod reset`); absent is fine.
pub fn cleanup(config: &DnsConfig) {
    if let (Some(dev), std::net::IpAddr::V4(ip)) = (&config.add_address_to, config.listen.ip()) {
        let _ = Command::new("ip")
            .args(["addr", "del", &format!("{ip}/32"), "dev", dev])
            .output();
    }
}

struct Stores {
    services: Store<Service>,
    slices: Store<EndpointSlice>,
    pods: Store<Pod>,
    /// Bumped by the watches on every change.
    changes: Arc<AtomicU64>,
    /// The index and the change count it was built at.
    index: Mutex<(u64, Arc<Snapshot>)>,
}

impl Stores {
    /// The index of the current objects, rebuilt only when a watch saw a change since.
    fn current(&self) -> Arc<Snapshot> {
        let seen = self.changes.load(Ordering::Acquire);
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        if index.0 != seen {
            let snap = Snapshot::new(
                self.services.state(),
                self.slices.state(),
                self.pods.state(),
            );
            *index = (seen, Arc::new(snap));
        }
        index.1.clone()
    }
}

/// managedFields are never read here: not cached.
fn drop_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Of a pod, the index reads its namespace and IP: the cache keeps those and the name (its
/// key), a few hundred bytes where the whole pod takes kilobytes.
fn pod_address(pod: &mut Pod) {
    *pod = Pod {
        metadata: ObjectMeta {
            name: pod.metadata.name.take(),
            namespace: pod.metadata.namespace.take(),
            ..Default::default()
        },
        spec: None,
        status: Some(PodStatus {
            pod_ip: pod.status.as_mut().and_then(|s| s.pod_ip.take()),
            ..Default::default()
        }),
    };
}

fn spawn_reflector<K>(
    api: Api<K>,
    changes: Arc<AtomicU64>,
    trim: fn(&mut K),
) -> (Store<K>, tokio::task::JoinHandle<()>)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store::<K>();
    let task = tokio::spawn(async move {
        let objects = watcher(api, watcher::Config::default()).modify(trim);
        let mut stream = reflector(writer, objects)
            .default_backoff()
            .touched_objects()
            .boxed();
        while let Some(ev) = stream.next().await {
            changes.fetch_add(1, Ordering::AcqRel);
            if let Err(e) = ev {
                tracing::debug!(error = %e, "dns watch error; retrying");
            }
        }
    });
    (store, task)
}

/// Serves cluster DNS until `shutdown` turns true, then removes the address it added.
pub async fn run(
    client: kube::Client,
    config: DnsConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), DnsError> {
    let mut added = false;
    if let (Some(dev), std::net::IpAddr::V4(ip)) = (&config.add_address_to, config.listen.ip()) {
        added = ensure_address(ip, dev)?;
    }
    let bind_err = |source| DnsError::Bind {
        addr: config.listen,
        source,
    };
    let bound = async {
        let udp = tokio::net::UdpSocket::bind(config.listen)
            .await
            .map_err(bind_err)?;
        let tcp = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(bind_err)?;
        Ok::<_, DnsError>((udp, tcp))
    }
    .await;
    let (udp, tcp) = match bound {
        Ok(b) => b,
        Err(e) => {
            if added {
                cleanup(&config);
            }
            return Err(e);
        }
    };
    tracing::info!(listen = %config.listen, "cluster DNS serving");
    let changes = Arc::new(AtomicU64::new(1));
    let (services, t1) = spawn_reflector(
        Api::<Service>::all(client.clone()),
        changes.clone(),
        drop_managed_fields,
    );
    let (slices, t2) = spawn_reflector(
        Api::<EndpointSlice>::all(client.clone()),
        changes.clone(),
        drop_managed_fields,
    );
    let (pods, t3) = spawn_reflector(Api::<Pod>::all(client), changes.clone(), pod_address);
    let stores = Arc::new(Stores {
        services,
        slices,
        pods,
        changes,
        index: Mutex::new((0, Arc::new(Snapshot::default()))),
    });
    let tcp_answer: TcpAnswer = {
        let (stores, config) = (stores.clone(), config.clone());
        Arc::new(move |msg: &[u8]| answer(&stores.current(), &config.domain, config.ttl, msg))
    };
    let tcp_task = tokio::spawn(serve_tcp(tcp, MAX_TCP_CONNECTIONS, tcp_answer));
    let mut buf = vec![0u8; 4096];
    let mut recheck = tokio::time::interval(RECHECK);
    loop {
        tokio::select! {
            // Put the address back if something removed it under the bound socket.
            _ = recheck.tick() => {
                if let (Some(dev), std::net::IpAddr::V4(ip)) = (&config.add_address_to, config.listen.ip()) {
                    match ensure_address(ip, dev) {
                        Ok(now_added) => added |= now_added,
                        Err(e) => tracing::warn!(error = %e, "cluster DNS address"),
                    }
                }
            }
            _ = shutdown.changed() => {
                if *shutdown.borrow() { break; }
            }
            r = udp.recv_from(&mut buf) => {
                let Ok((n, peer)) = r else { continue };
                let snap = stores.current();
                if let Some(resp) = answer_udp(&snap, &config.domain, config.ttl, &buf[..n]) {
                    let _ = udp.send_to(&resp, peer).await;
                }
            }
        }
    }
    for t in [t1, t2, t3, tcp_task] {
        t.abort();
    }
    if added {
        cleanup(&config);
    }
    Ok(())
}

/// TCP connections served at once; more wait in the listen backlog until one closes.
const MAX_TCP_CONNECTIONS: usize = 256;

/// The answer to one DNS message (`None`: drop the connection).
type TcpAnswer = Arc<dyn Fn(&[u8]) -> Option<Vec<u8>> + Send + Sync>;

/// DNS over TCP: two-byte length-prefixed messages, several per connection, at most `max`
/// connections at once, each closed after 10 s without a whole message.
async fn serve_tcp(listener: tokio::net::TcpListener, max: usize, answer: TcpAnswer) {
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let answer = answer.clone();
        tokio::spawn(async move {
            let _slot = slot;
            loop {
                let read = async {
                    let len = conn.read_u16().await? as usize;
                    let mut msg = vec![0u8; len];
                    conn.read_exact(&mut msg).await?;
                    Ok::<_, std::io::Error>(msg)
                };
                let Ok(Ok(msg)) = tokio::time::timeout(Duration::from_secs(10), read).await else {
                    return;
                };
                let Some(resp) = answer(&msg) else {
                    return;
                };
                let Ok(len) = u16::try_from(resp.len()) else {
                    return;
                };
                if conn.write_u16(len).await.is_err() || conn.write_all(&resp).await.is_err() {
                    return;
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::Query;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Sends one length-prefixed message and reads the reply.
    async fn tcp_exchange(
        conn: &mut tokio::net::TcpStream,
        msg: &[u8],
    ) -> std::io::Result<Vec<u8>> {
        conn.write_u16(msg.len() as u16).await?;
        conn.write_all(msg).await?;
        let len = conn.read_u16().await? as usize;
        let mut buf = vec![0u8; len];
        conn.read_exact(&mut buf).await?;
        Ok(buf)
    }

    #[tokio::test]
    async fn tcp_connections_beyond_the_cap_wait_for_a_free_slot() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let echo: TcpAnswer = Arc::new(|m: &[u8]| Some(m.to_vec()));
        let server = tokio::spawn(serve_tcp(listener, 1, echo));
        let mut first = tokio::net::TcpStream::connect(addr).await.expect("first");
        assert_eq!(
            tcp_exchange(&mut first, b"one")
                .await
                .expect("first answer"),
            b"one"
        );
        // The second connection is accepted by the kernel, not served while the first holds
        // the only slot.
        let mut second = tokio::net::TcpStream::connect(addr).await.expect("second");
        let waiting = tokio::time::timeout(
            Duration::from_millis(300),
            tcp_exchange(&mut second, b"two"),
        );
        assert!(waiting.await.is_err(), "served beyond the cap");
        drop(first);
        let answered = tokio::time::timeout(Duration::from_secs(5), tcp_exchange(&mut second, b""));
        // Its earlier bytes ("two") are read first once it is served.
        let reply = answered
            .await
            .expect("served once a slot is free")
            .expect("reply");
        assert_eq!(reply, b"two");
        server.abort();
    }

    fn snap() -> Snapshot {
        let services = vec![
            json!({"metadata": {"name": "mydb", "namespace": "shop"},
                   "spec": {"clusterIP": "10.96.0.42", "ports": [{"name": "pg", "port": 5432, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "peers", "namespace": "shop"},
                   "spec": {"clusterIP": "None", "ports": [{"port": 80}]}}),
            json!({"metadata": {"name": "ext", "namespace": "shop"},
                   "spec": {"type": "ExternalName", "externalName": "db.example.com"}}),
        ];
        let slices = vec![json!({"metadata": {"name": "peers-x", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "peers"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.244.0.3"], "conditions": {"ready": true}, "hostname": "web-0"},
                          {"addresses": ["10.244.0.5"], "conditions": {"ready": false}, "hostname": "web-1"},
                          {"addresses": ["10.244.0.4"], "conditions": {"ready": false}},
                          {"addresses": ["10.244.0.2"], "conditions": {"ready": true}}]})];
        let pods = vec![
            json!({"metadata": {"name": "p", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.3"}}),
        ];
        Snapshot::new(
            services
                .into_iter()
                .map(|v| Arc::new(serde_json::from_value(v).expect("svc"))),
            slices
                .into_iter()
                .map(|v| Arc::new(serde_json::from_value(v).expect("slice"))),
            // As the cache holds them.
            pods.into_iter().map(|v| {
                let mut pod = serde_json::from_value(v).expect("pod");
                pod_address(&mut pod);
                Arc::new(pod)
            }),
        )
    }

    fn ask(name: &str, qtype: RecordType) -> Message {
        let mut q = Message::new();
        q.set_id(7)
            .set_message_type(MessageType::Query)
            .set_op_code(OpCode::Query)
            .set_recursion_desired(true)
            .add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
        let bytes = q.to_vec().expect("encode");
        let resp = answer(&snap(), "cluster.local", 5, &bytes).expect("answer");
        Message::from_vec(&resp).expect("decode")
    }

    fn a_records(m: &Message) -> Vec<Ipv4Addr> {
        m.answers()
            .iter()
            .filter_map(|r| match r.data() {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn service_names_resolve_to_the_cluster_ip() {
        let m = ask("mydb.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.id(), 7);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.authoritative());
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 96, 0, 42)]);
        // Case does not matter.
        let m = ask("MyDB.Shop.SVC.cluster.local.", RecordType::A);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 96, 0, 42)]);
    }

    #[test]
    fn missing_names_are_nxdomain_and_other_types_nodata() {
        let m = ask("nope.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        // What `mydb.shop` tries first with the search path and ndots:5.
        let m = ask("mydb.shop.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = ask("mydb.shop.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
    }

    #[test]
    fn headless_services_answer_ready_pod_ips() {
        let m = ask("peers.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(
            a_records(&m),
            vec![Ipv4Addr::new(10, 244, 0, 2), Ipv4Addr::new(10, 244, 0, 3)]
        );
    }

    #[test]
    fn endpoint_hostnames_resolve_to_their_pod() {
        let m = ask("web-0.peers.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 244, 0, 3)]);
        let m = ask("web-0.peers.shop.svc.cluster.local.", RecordType::AAAA);
        assert_eq!(m.response_code(), ResponseCode::NoError);
        assert!(m.answers().is_empty());
        // Not ready: no record, as the endpoint is not published.
        let m = ask("web-1.peers.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = ask("10-244-0-2.peers.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 244, 0, 2)]);
        let m = ask("web-9.peers.shop.svc.cluster.local.", RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
    }

    #[test]
    fn the_pod_cache_keeps_name_namespace_and_ip_only() {
        let mut pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "shop", "uid": "u", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.3", "hostIP": "10.0.0.1"}}))
        .expect("pod");
        pod_address(&mut pod);
        assert_eq!(
            serde_json::to_value(&pod).expect("json"),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "namespace": "shop"}, "status": {"podIP": "10.244.0.3"}})
        );
    }

    #[test]
    fn pod_records_srv_and_external_name() {
        let m = ask("10-244-0-3.shop.pod.cluster.local.", RecordType::A);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(10, 244, 0, 3)]);
        let m = ask("10-244-0-9.shop.pod.cluster.local.", RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::NXDomain);
        let m = ask("_pg._tcp.mydb.shop.svc.cluster.local.", RecordType::SRV);
        match m.answers().first().map(|r| r.data()) {
            Some(RData::SRV(srv)) => assert_eq!(srv.port(), 5432),
            other => panic!("{other:?}"),
        }
        let m = ask("ext.shop.svc.cluster.local.", RecordType::A);
        assert!(matches!(
            m.answers().first().map(|r| r.data()),
            Some(RData::CNAME(_))
        ));
    }

    #[test]
    fn outside_names_are_refused_and_garbage_ignored() {
        let m = ask("example.com.", RecordType::A);
        assert_eq!(m.response_code(), ResponseCode::Refused);
        assert!(answer(&snap(), "cluster.local", 5, b"\x01\x02").is_none());
    }

    #[test]
    fn large_udp_answers_are_truncated_for_a_tcp_retry() {
        let endpoints: Vec<_> = (1..=60)
            .map(|i| json!({"addresses": [format!("10.244.1.{i}")], "conditions": {"ready": true}}))
            .collect();
        let snap = Snapshot::new(
            [Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "big", "namespace": "n"},
                    "spec": {"clusterIP": "None"}}))
                .expect("svc"),
            )],
            [Arc::new(
                serde_json::from_value(json!({"metadata": {"name": "big-x", "namespace": "n",
                    "labels": {"kubernetes.io/service-name": "big"}},
                    "addressType": "IPv4", "endpoints": endpoints}))
                .expect("slice"),
            )],
            [],
        );
        let query = |edns: Option<u16>| {
            let mut q = Message::new();
            q.set_id(9)
                .set_message_type(MessageType::Query)
                .set_op_code(OpCode::Query)
                .add_query(Query::query(
                    Name::from_ascii("big.n.svc.cluster.local.").expect("name"),
                    RecordType::A,
                ));
            if let Some(size) = edns {
                let mut e = hickory_proto::op::Edns::new();
                e.set_max_payload(size);
                q.set_edns(e);
            }
            q.to_vec().expect("encode")
        };
        let udp = answer_udp(&snap, "cluster.local", 5, &query(None)).expect("udp");
        assert!(udp.len() <= 512);
        let m = Message::from_vec(&udp).expect("decode");
        assert!(m.truncated());
        assert!(m.answers().is_empty());
        let tcp = answer(&snap, "cluster.local", 5, &query(None)).expect("tcp");
        let m = Message::from_vec(&tcp).expect("decode");
        assert!(!m.truncated());
        assert_eq!(m.answers().len(), 60);
        // A client advertising a larger EDNS0 buffer gets the whole answer over UDP.
        let big = answer_udp(&snap, "cluster.local", 5, &query(Some(4096))).expect("udp");
        assert_eq!(Message::from_vec(&big).expect("decode").answers().len(), 60);
    }
}
