//! kube-scheduler's NodePorts filter: a pod's `hostPort`s must be free on the node. Two
//! uses conflict when port and protocol agree and their host IPs overlap (the empty IP and
//! `0.0.0.0` overlap every address).

use k8s_openapi::api::core::v1::PodSpec;

/// One `hostPort` a pod holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i32,
}

impl HostPort {
    fn conflicts(&self, other: &HostPort) -> bool {
        let wildcard = |ip: &str| ip.is_empty() || ip == "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (wildcard(&self.ip) || wildcard(&other.ip) || self.ip == other.ip)
    }
}

/// The host ports of the pod's containers and sidecars.
pub fn host_ports(spec: &PodSpec) -> Vec<HostPort> {
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .filter(|c| c.restart_policy.as_deref() == Some("Always"));
    spec.containers
        .iter()
        .chain(sidecars)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let port = p.host_port.filter(|h| *h > 0)?;
            Some(HostPort {
                ip: p.host_ip.clone().unwrap_or_default(),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                port,
            })
        })
        .collect()
}

/// Whether every port `wanted` is free next to `used` (the ports of the node's pods).
pub fn ports_free(wanted: &[HostPort], used: &[HostPort]) -> bool {
    !wanted.iter().any(|w| used.iter().any(|u| w.conflicts(u)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ports(v: serde_json::Value) -> Vec<HostPort> {
        let spec: PodSpec =
            serde_json::from_value(json!({"containers": [{"name": "c", "ports": v}]}))
                .expect("spec");
        host_ports(&spec)
    }

    #[test]
    fn host_ports_conflict_by_port_protocol_and_ip() {
        let used = ports(json!([
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
            {"containerPort": 9000}]));
        assert_eq!(used.len(), 2);
        assert!(!ports_free(
            &ports(json!([{"containerPort": 1, "hostPort": 8080}])),
            &used
        ));
        assert!(ports_free(
            &ports(json!([{"containerPort": 1, "hostPort": 8080, "protocol": "UDP"}])),
            &used
        ));
        assert!(ports_free(
            &ports(
                json!([{"containerPort": 1, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.2"}])
            ),
            &used
        ));
        assert!(!ports_free(
            &ports(
                json!([{"containerPort": 1, "hostPort": 53, "protocol": "UDP", "hostIP": "0.0.0.0"}])
            ),
            &used
        ));
        assert!(ports_free(&ports(json!([{"containerPort": 9000}])), &used));
    }
}
