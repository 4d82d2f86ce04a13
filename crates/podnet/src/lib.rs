//! The node's share of the cluster pod network (flannel's job in a kubeadm cluster): from a
//! watch of the Nodes it learns this node's pod CIDR (the node IPAM controller's
//! `spec.podCIDR`, handed to the runtime for its CNI config), keeps a route to every other
//! Node's pod CIDR — through that Node's InternalIP when it is a direct neighbour (`host-gw`),
//! else over a VXLAN tunnel ([`vxlan`]) — and masquerades only what pods send outside the
//! cluster's pod network, so pods reach pods on other nodes by their own addresses. Routes,
//! the tunnel and NAT go through the [`host::HostNet`] seam; the plan is pure ([`routes`]).

pub mod host;
pub mod routes;
pub mod vxlan;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;

use host::{HostError, HostNet};
use routes::Change;

/// How `peapod up` and `peapod agent` configure the node's pod network.
#[derive(Debug, Clone)]
pub struct PodNetConfig {
    /// This node's Node name.
    pub node_name: String,
    /// The cluster's pod network (kube-controller-manager's `--cluster-cidr`).
    pub cluster_cidr: Ipv4Net,
    /// A pod CIDR given on the command line, used instead of the Node's.
    pub pod_cidr: Option<Ipv4Net>,
}

/// What was last programmed, so an unchanged state costs no command.
#[derive(Debug, Default)]
pub struct Synced {
    pub pod_cidr: Option<Ipv4Net>,
    masquerade: Option<Ipv4Net>,
}

impl Synced {
    /// The next sync writes the masquerade rule again.
    pub fn forget_masquerade(&mut self) {
        self.masquerade = None;
    }
}

/// Brings the host in line with `nodes`: reports this node's pod CIDR when it is new
/// (through `on_pod_cidr`), programs the masquerade rule for it and the routes to the other
/// nodes. Every step is tried; the failures come back together.
pub fn sync(
    host: &dyn HostNet,
    config: &PodNetConfig,
    nodes: &[Node],
    synced: &mut Synced,
    on_pod_cidr: &(dyn Fn(Ipv4Net) + Send + Sync),
) -> Vec<HostError> {
    let mut errors = Vec::new();
    let own = config.pod_cidr.or_else(|| {
        nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(config.node_name.as_str()))
            .and_then(routes::pod_cidr)
    });
    if own.is_some() && own != synced.pod_cidr {
        if let Some(cidr) = own {
            tracing::info!(pod_cidr = %cidr, "this node's pod CIDR");
            on_pod_cidr(cidr);
        }
        synced.pod_cidr = own;
    }
    if let Some(cidr) = own.filter(|c| synced.masquerade != Some(*c)) {
        match host.masquerade(Some((cidr, config.cluster_cidr))) {
            Ok(()) => synced.masquerade = Some(cidr),
            Err(e) => errors.push(e),
        }
    }
    let direct = |ip| match host.direct(ip) {
        Ok(d) => d,
        Err(e) => {
            tracing::debug!(%ip, error = %e, "no route to a node; trying it as a neighbour");
            true
        }
    };
    let want = routes::desired(nodes, &config.node_name, config.cluster_cidr, &direct);
    let peers: Vec<vxlan::Peer> = want
        .iter()
        .filter(|(_, hop)| hop.vxlan)
        .map(|(dst, hop)| vxlan::Peer::new(*dst, hop.node_ip))
        .collect();
    let own_ip = nodes
        .iter()
        .find(|n| n.metadata.name.as_deref() == Some(config.node_name.as_str()))
        .and_then(routes::internal_ip);
    let local = match (own, own_ip) {
        (Some(cidr), Some(node_ip)) if !peers.is_empty() => Some(vxlan::Local {
            vtep: vxlan::vtep_ip(cidr),
            node_ip,
        }),
        _ => None,
    };
    // The device's entries go with it.
    let tunnel = host.vxlan_device(local).and_then(|()| match local {
        Some(_) => host.vxlan_peers(&peers),
        None => Ok(()),
    });
    if let Err(e) = tunnel {
        errors.push(e);
    }
    let current = match host.routes() {
        Ok(r) => r,
        Err(e) => {
            errors.push(e);
            return errors;
        }
    };
    for change in routes::plan(&want, &current) {
        let done = match change {
            Change::Replace(r) => host.replace(&r).inspect(|()| {
                tracing::info!(dst = %r.dst, via = %r.via, vxlan = r.vxlan, "route to a node's pods");
            }),
            Change::Delete(r) => host.delete(&r).inspect(|()| {
                tracing::info!(dst = %r.dst, via = %r.via, "removed the route to a node's pods");
            }),
        };
        if let Err(e) = done {
            errors.push(e);
        }
    }
    errors
}

/// How long a burst of Node updates may settle before the host is synced.
const SETTLE: Duration = Duration::from_millis(100);
/// Sync at least this often (someone may have removed a route by hand).
const RESYNC: Duration = Duration::from_secs(30);
/// Retry delay after a failed step.
const RETRY: Duration = Duration::from_secs(2);

/// Runs until `shutdown` turns true, then removes the masquerade rule (routes stay: the
/// pods keep running and keep talking to the other nodes' pods).
pub async fn run(
    client: kube::Client,
    config: PodNetConfig,
    host: Arc<dyn HostNet>,
    on_pod_cidr: Arc<dyn Fn(Ipv4Net) + Send + Sync>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let (nodes, writer) = reflector::store::<Node>();
    let changed = Arc::new(tokio::sync::Notify::new());
    let notify = changed.clone();
    let watch = tokio::spawn(async move {
        let mut events = reflector(
            writer,
            // managedFields are never read here: not cached.
            watcher(Api::<Node>::all(client), watcher::Config::default())
                .modify(|n| n.metadata.managed_fields = None),
        )
        .default_backoff()
        .touched_objects()
        .boxed();
        while let Some(ev) = events.next().await {
            match ev {
                Ok(_) => notify.notify_one(),
                Err(e) => tracing::debug!(error = %e, "node watch error; retrying"),
            }
        }
    });
    let mut synced = Synced::default();
    let mut ready = false;
    while !*shutdown.borrow() {
        if !ready {
            // A partial list would drop the routes of Nodes not yet seen.
            tokio::select! {
                r = nodes.wait_until_ready() => {
                    if r.is_err() { break; }
                    ready = true;
                }
                _ = shutdown.changed() => continue,
            }
        }
        let list: Vec<Node> = nodes.state().iter().map(|n| (**n).clone()).collect();
        let (h, cfg, cb) = (host.clone(), config.clone(), on_pod_cidr.clone());
        let mut state = std::mem::take(&mut synced);
        let outcome = tokio::task::spawn_blocking(move || {
            let errors = sync(&*h, &cfg, &list, &mut state, &*cb);
            (state, errors)
        })
        .await;
        let mut wait = RESYNC;
        match outcome {
            Ok((state, errors)) => {
                synced = state;
                for e in &errors {
                    tracing::warn!(error = %chain(e), "programming the pod network; retrying");
                }
                if !errors.is_empty() {
                    wait = RETRY;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pod network sync task failed; retrying");
                wait = RETRY;
            }
        }
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(SETTLE).await,
            // Someone may have removed the table (another peapod's reset or shutdown on this
            // host): the periodic sync writes it again.
            _ = tokio::time::sleep(wait) => synced.forget_masquerade(),
            _ = shutdown.changed() => {}
        }
    }
    watch.abort();
    let h = host.clone();
    if let Ok(Err(e)) = tokio::task::spawn_blocking(move || h.masquerade(None)).await {
        tracing::warn!(error = %chain(&e), "removing the pod network's masquerade rule");
    }
}

/// Removes the masquerade rule and the VXLAN device (`peapod reset`); idempotent.
pub fn cleanup(host: &dyn HostNet) -> Result<(), HostError> {
    host.masquerade(None)?;
    host.vxlan_device(None)
}

fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    use routes::Route;
    use serde_json::json;

    /// A routing table and NAT rule in memory; `fail_replace` makes every replace fail.
    #[derive(Default)]
    struct FakeHost {
        routes: Mutex<Vec<Route>>,
        nat: Mutex<Option<(Ipv4Net, Ipv4Net)>>,
        nat_writes: Mutex<usize>,
        fail_replace: bool,
        /// Node addresses behind a router.
        routed: Vec<String>,
        device: Mutex<Option<vxlan::Local>>,
        peers: Mutex<Vec<vxlan::Peer>>,
    }

    impl HostNet for FakeHost {
        fn routes(&self) -> Result<Vec<Route>, HostError> {
            Ok(self.routes.lock().expect("lock").clone())
        }
        fn replace(&self, route: &Route) -> Result<(), HostError> {
            if self.fail_replace {
                return Err(HostError::Failed {
                    program: "ip".into(),
                    args: "route replace".into(),
                    stderr: "Nexthop has invalid gateway".into(),
                });
            }
            let mut routes = self.routes.lock().expect("lock");
            routes.retain(|r| r.dst != route.dst);
            routes.push(*route);
            Ok(())
        }
        fn delete(&self, route: &Route) -> Result<(), HostError> {
            self.routes.lock().expect("lock").retain(|r| r != route);
            Ok(())
        }
        fn masquerade(&self, rule: Option<(Ipv4Net, Ipv4Net)>) -> Result<(), HostError> {
            *self.nat.lock().expect("lock") = rule;
            *self.nat_writes.lock().expect("lock") += 1;
            Ok(())
        }
        fn direct(&self, ip: std::net::Ipv4Addr) -> Result<bool, HostError> {
            Ok(!self.routed.contains(&ip.to_string()))
        }
        fn vxlan_device(&self, local: Option<vxlan::Local>) -> Result<(), HostError> {
            if local.is_none() {
                self.peers.lock().expect("lock").clear();
            }
            *self.device.lock().expect("lock") = local;
            Ok(())
        }
        fn vxlan_peers(&self, peers: &[vxlan::Peer]) -> Result<(), HostError> {
            *self.peers.lock().expect("lock") = peers.to_vec();
            Ok(())
        }
    }

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        let spec = cidr.map_or(json!({}), |c| json!({"podCIDR": c, "podCIDRs": [c]}));
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": spec,
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
        }))
        .expect("node")
    }

    fn config(pod_cidr: Option<&str>) -> PodNetConfig {
        PodNetConfig {
            node_name: "a".into(),
            cluster_cidr: "10.244.0.0/16".parse().expect("cidr"),
            pod_cidr: pod_cidr.map(|c| c.parse().expect("cidr")),
        }
    }

    fn dsts(host: &FakeHost) -> Vec<String> {
        let mut v: Vec<String> = host
            .routes
            .lock()
            .expect("lock")
            .iter()
            .map(|r| {
                let dev = if r.vxlan { " dev peapod-vxlan" } else { "" };
                format!("{} via {}{dev}", r.dst, r.via)
            })
            .collect();
        v.sort();
        v
    }

    #[test]
    fn routes_follow_the_nodes_and_the_own_range_is_reported_once() {
        let host = FakeHost::default();
        let seen = Mutex::new(Vec::new());
        let report = |c: Ipv4Net| seen.lock().expect("lock").push(c.to_string());
        let mut synced = Synced::default();
        let cfg = config(None);
        // Before the IPAM controller: nothing known, nothing programmed.
        let nodes = vec![node("a", None, "192.0.2.1"), node("b", None, "192.0.2.2")];
        assert!(sync(&host, &cfg, &nodes, &mut synced, &report).is_empty());
        assert!(dsts(&host).is_empty());
        assert!(seen.lock().expect("lock").is_empty());
        assert_eq!(*host.nat.lock().expect("lock"), None);
        // Ranges handed out.
        let nodes = vec![
            node("a", Some("10.244.0.0/24"), "192.0.2.1"),
            node("b", Some("10.244.1.0/24"), "192.0.2.2"),
            node("c", Some("10.244.2.0/24"), "192.0.2.3"),
        ];
        assert!(sync(&host, &cfg, &nodes, &mut synced, &report).is_empty());
        assert!(sync(&host, &cfg, &nodes, &mut synced, &report).is_empty());
        assert_eq!(
            dsts(&host),
            ["10.244.1.0/24 via 192.0.2.2", "10.244.2.0/24 via 192.0.2.3"]
        );
        assert_eq!(*seen.lock().expect("lock"), ["10.244.0.0/24"]);
        assert_eq!(
            *host.nat.lock().expect("lock"),
            Some((
                "10.244.0.0/24".parse().expect("cidr"),
                "10.244.0.0/16".parse().expect("cidr")
            ))
        );
        assert_eq!(*host.nat_writes.lock().expect("lock"), 1);
        synced.forget_masquerade();
        assert!(sync(&host, &cfg, &nodes, &mut synced, &report).is_empty());
        assert_eq!(*host.nat_writes.lock().expect("lock"), 2);
        // b moves to a new address, c is deleted.
        let nodes = vec![
            node("a", Some("10.244.0.0/24"), "192.0.2.1"),
            node("b", Some("10.244.1.0/24"), "192.0.2.20"),
        ];
        assert!(sync(&host, &cfg, &nodes, &mut synced, &report).is_empty());
        assert_eq!(dsts(&host), ["10.244.1.0/24 via 192.0.2.20"]);
    }

    #[test]
    fn the_flag_overrides_the_nodes_range_and_failures_are_returned() {
        let host = FakeHost {
            fail_replace: true,
            ..Default::default()
        };
        let seen = Mutex::new(Vec::new());
        let report = |c: Ipv4Net| seen.lock().expect("lock").push(c.to_string());
        let mut synced = Synced::default();
        let nodes = vec![
            node("a", Some("10.244.5.0/24"), "192.0.2.1"),
            node("b", Some("10.244.1.0/24"), "192.0.2.2"),
        ];
        let errors = sync(
            &host,
            &config(Some("10.244.0.0/24")),
            &nodes,
            &mut synced,
            &report,
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(*seen.lock().expect("lock"), ["10.244.0.0/24"]);
        assert!(dsts(&host).is_empty());
    }

    /// A node behind a router gets the tunnel: the device with this node's VTEP, the peer's
    /// entries and a route through its VTEP; once no node needs it, the device goes.
    #[test]
    fn nodes_behind_a_router_are_reached_through_the_tunnel() {
        let host = FakeHost {
            routed: vec!["198.51.100.3".into()],
            ..Default::default()
        };
        let mut synced = Synced::default();
        let nodes = vec![
            node("a", Some("10.244.0.0/24"), "192.0.2.1"),
            node("b", Some("10.244.1.0/24"), "192.0.2.2"),
            node("c", Some("10.244.2.0/24"), "198.51.100.3"),
        ];
        assert!(sync(&host, &config(None), &nodes, &mut synced, &|_| ()).is_empty());
        assert_eq!(
            dsts(&host),
            [
                "10.244.1.0/24 via 192.0.2.2",
                "10.244.2.0/24 via 10.244.2.0 dev peapod-vxlan"
            ]
        );
        assert_eq!(
            *host.device.lock().expect("lock"),
            Some(vxlan::Local {
                vtep: "10.244.0.0".parse().expect("ip"),
                node_ip: "192.0.2.1".parse().expect("ip"),
            })
        );
        assert_eq!(
            *host.peers.lock().expect("lock"),
            [vxlan::Peer::new(
                "10.244.2.0/24".parse().expect("cidr"),
                "198.51.100.3".parse().expect("ip")
            )]
        );
        assert!(sync(&host, &config(None), &nodes[..2], &mut synced, &|_| ()).is_empty());
        assert_eq!(*host.device.lock().expect("lock"), None);
        assert!(host.peers.lock().expect("lock").is_empty());
        assert_eq!(dsts(&host), ["10.244.1.0/24 via 192.0.2.2"]);
    }
}
