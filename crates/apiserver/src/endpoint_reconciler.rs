//! kube-apiserver's lease endpoint reconciler: where pods on any node reach the API. Each
//! server with an advertise address renews a Lease of its own (`kube-system`,
//! `kube-apiserver-endpoint-<ip>`, 15 s) every 10 s and sets the `kubernetes` Service's
//! Endpoints and EndpointSlice to the addresses of the servers whose Lease is fresh, so each
//! node's proxy sends 10.96.0.1:443 to a live server; a server that stops cleanly removes its
//! address at once, one that dies drops out when its Lease runs out. All servers are expected
//! to serve the same port (upstream's assumption as well). A server with no routable address
//! (the single-machine default on 127.0.0.1) publishes nothing: its pods reach it on the
//! ClusterIP it holds on the node's loopback (see `cluster_address`).

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use jiff::Timestamp;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::objects::{Part, Registry, Selectors, WriteOptions};

/// How long a server's address stays published without a renewal (upstream's master lease
/// TTL).
pub const LEASE_TTL: Duration = Duration::from_secs(15);
/// How often a server renews its Lease and reconciles (upstream's 10 s).
pub const RECONCILE_EVERY: Duration = Duration::from_secs(10);

const LEASE_NAMESPACE: &str = "kube-system";
const LEASE_PREFIX: &str = "kube-apiserver-endpoint-";
/// Marks the reconciler's Leases among the others of `kube-system`.
const LEASE_LABEL: &str = "apiserver.peapod.io/endpoint";
const SERVICE: &str = "kubernetes";
const PORT_NAME: &str = "https";

/// The Lease name of a server address.
fn lease_name(ip: IpAddr) -> String {
    let text = ip.to_string().replace(['.', ':'], "-");
    format!("{LEASE_PREFIX}{text}")
}

/// This server's Lease, renewed `now`.
fn lease(ip: IpAddr, now: Timestamp) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": lease_name(ip), "namespace": LEASE_NAMESPACE,
                     "labels": {LEASE_LABEL: "true"}},
        "spec": {"holderIdentity": ip.to_string(),
                 "leaseDurationSeconds": LEASE_TTL.as_secs(),
                 "renewTime": micro_time(now)},
    })
}

fn micro_time(t: Timestamp) -> String {
    t.round(jiff::Unit::Microsecond).unwrap_or(t).to_string()
}

/// The addresses of the Leases still fresh at `now`.
pub fn live_addresses(leases: &[Value], now: Timestamp) -> BTreeSet<IpAddr> {
    leases
        .iter()
        .filter_map(|l| {
            let spec = l.get("spec")?;
            let ip: IpAddr = spec.get("holderIdentity")?.as_str()?.parse().ok()?;
            let renewed: Timestamp = spec.get("renewTime")?.as_str()?.parse().ok()?;
            let secs = spec.get("leaseDurationSeconds")?.as_i64()?;
            let until = renewed
                .checked_add(jiff::SignedDuration::from_secs(secs))
                .ok()?;
            (until > now).then_some(ip)
        })
        .collect()
}

/// The `kubernetes` Endpoints for `addrs` on `port`.
pub fn endpoints(addrs: &BTreeSet<IpAddr>, port: u16) -> Value {
    let subsets = if addrs.is_empty() {
        json!([])
    } else {
        json!([{
            "addresses": addrs.iter().map(|ip| json!({"ip": ip.to_string()})).collect::<Vec<_>>(),
            "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
        }])
    };
    json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": SERVICE, "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": subsets,
    })
}

/// The `kubernetes` EndpointSlice for `addrs` on `port` (IPv4 addresses; the Service is
/// single-stack IPv4).
pub fn endpoint_slice(addrs: &BTreeSet<IpAddr>, port: u16) -> Value {
    let endpoints: Vec<Value> = addrs
        .iter()
        .filter(|ip| ip.is_ipv4())
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": SERVICE, "namespace": "default",
                     "labels": {"kubernetes.io/service-name": SERVICE}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": PORT_NAME, "port": port, "protocol": "TCP"}],
    })
}

fn info(group: &str, plural: &str) -> Result<&'static api::resources::ResourceInfo, ApiError> {
    api::resources::lookup(group, plural).ok_or(ApiError::PathNotFound)
}

/// Creates `want`, or replaces the stored object's `fields` with `want`'s when they differ.
async fn put(
    registry: &Registry,
    info: &api::resources::ResourceInfo,
    want: Value,
    fields: &[&str],
) -> Result<(), ApiError> {
    let ns = want
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("default")
        .to_string();
    let name = want
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let opts = WriteOptions::default();
    match registry.get(info, Some(&ns), &name).await {
        Ok(mut have) => {
            if fields.iter().all(|f| have.get(*f) == want.get(*f)) {
                return Ok(());
            }
            for f in fields {
                if let (Some(obj), Some(v)) = (have.as_object_mut(), want.get(*f)) {
                    obj.insert((*f).to_string(), v.clone());
                }
            }
            registry
                .update(info, Some(&ns), &name, have, Part::Object, &opts)
                .await
                .map(|_| ())
        }
        Err(ApiError::NotFound { .. }) => registry
            .create(info, Some(&ns), want, &opts)
            .await
            .map(|_| ()),
        Err(e) => Err(e),
    }
}

/// One round: renews (or, when `leaving`, removes) this server's Lease, then publishes the
/// live addresses.
async fn round(registry: &Registry, advertise: SocketAddr, leaving: bool) -> Result<(), ApiError> {
    let leases = info("coordination.k8s.io", "leases")?;
    let ip = advertise.ip();
    if leaving {
        match registry
            .delete(
                leases,
                Some(LEASE_NAMESPACE),
                &lease_name(ip),
                &Default::default(),
            )
            .await
        {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    } else {
        put(registry, leases, lease(ip, Timestamp::now()), &["spec"]).await?;
    }
    let selectors = Selectors::parse(leases, Some(&format!("{LEASE_LABEL}=true")), None, None)?;
    let (all, _) = registry
        .list(leases, Some(LEASE_NAMESPACE), &selectors)
        .await?;
    let addrs = live_addresses(&all, Timestamp::now());
    put(
        registry,
        info("", "endpoints")?,
        endpoints(&addrs, advertise.port()),
        &["subsets"],
    )
    .await?;
    put(
        registry,
        info("discovery.k8s.io", "endpointslices")?,
        endpoint_slice(&addrs, advertise.port()),
        &["endpoints", "ports"],
    )
    .await
}

/// Publishes `advertise` until `stop` turns true, then withdraws it.
pub async fn run(
    registry: Registry,
    advertise: SocketAddr,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        if let Err(e) = round(&registry, advertise, false).await {
            tracing::warn!(error = %e, "publishing the API server's address");
        }
        tokio::select! {
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
    }
    if let Err(e) = round(&registry, advertise, true).await {
        tracing::warn!(error = %e, "withdrawing the API server's address");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid time")
    }

    #[test]
    fn only_fresh_leases_publish_their_address() {
        let a: IpAddr = "10.0.0.1".parse().expect("ip");
        let b: IpAddr = "10.0.0.2".parse().expect("ip");
        let leases = [
            lease(a, ts(0)),
            lease(b, ts(-20)),
            json!({"spec": {"holderIdentity": "not-an-ip", "renewTime": micro_time(ts(0)),
                            "leaseDurationSeconds": 15}}),
            json!({"spec": {"holderIdentity": "10.0.0.3"}}),
        ];
        assert_eq!(live_addresses(&leases, ts(5)), BTreeSet::from([a]));
        assert!(live_addresses(&leases, ts(15)).is_empty());
        assert_eq!(lease_name(a), "kube-apiserver-endpoint-10-0-0-1");
    }

    #[test]
    fn endpoints_and_slice_list_every_live_server() {
        let addrs: BTreeSet<IpAddr> = ["10.0.0.2", "10.0.0.1"]
            .iter()
            .map(|s| s.parse().expect("ip"))
            .collect();
        let ep = endpoints(&addrs, 6443);
        assert_eq!(
            ep["subsets"],
            json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                    "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]}])
        );
        assert_eq!(endpoints(&BTreeSet::new(), 6443)["subsets"], json!([]));
        let slice = endpoint_slice(&addrs, 6443);
        assert_eq!(
            slice["metadata"]["labels"]["kubernetes.io/service-name"],
            "kubernetes"
        );
        assert_eq!(slice["endpoints"].as_array().map(Vec::len), Some(2));
        assert_eq!(slice["endpoints"][0]["conditions"]["ready"], true);
    }
}
