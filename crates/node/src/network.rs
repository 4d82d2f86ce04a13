//! The pod's network as the agent sees it: the host ports a pod asks for (handed to the
//! runtime as CRI port mappings, which it gives the CNI `portmap` plugin when it attaches
//! the sandbox in `run_pod_sandbox`), and the pod IP, read back from the sandbox's status
//! into `status.podIP(s)` and the containers' environment. hostNetwork pods are never
//! attached and carry the node's IP.

use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus};
use runtime::{PodSandboxStatus, PortMapping, Protocol};

/// kubelet's port mappings: one per container port with a hostPort.
pub fn port_mappings(pod: &Pod) -> Vec<PortMapping> {
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    containers
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|port| {
            let host_port = u16::try_from(port.host_port?).ok().filter(|p| *p > 0)?;
            let protocol = match port.protocol.as_deref().unwrap_or("TCP") {
                "UDP" => Protocol::Udp,
                "SCTP" => Protocol::Sctp,
                _ => Protocol::Tcp,
            };
            Some(PortMapping {
                protocol,
                container_port: u16::try_from(port.container_port).ok()?,
                host_port,
                host_ip: port.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

pub fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The IP a container's env sees as `status.podIP` (empty until known): the node's on the
/// host network, else the sandbox's first address.
pub fn pod_ip(host_ip: &str, pod: &Pod, sandbox: Option<&PodSandboxStatus>) -> String {
    if is_host_network(pod) {
        return host_ip.to_string();
    }
    sandbox
        .and_then(|s| s.ips.first())
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// Status hook: `status.podIP`/`podIPs` from the ready sandbox's addresses (kubelet reports
/// the sandbox's IPs; hostNetwork pods already carry the node's).
pub fn fill_status(pod: &Pod, sandbox: Option<&PodSandboxStatus>, status: &mut PodStatus) {
    if is_host_network(pod) {
        return;
    }
    let Some(ips) = sandbox.map(|s| &s.ips) else {
        return;
    };
    if let Some(first) = ips.first() {
        status.pod_ip = Some(first.to_string());
        status.pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).expect("pod")
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [
                {"name": "a", "image": "x", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "192.0.2.2"},
                    {"containerPort": 9000}
                ]}
            ]}
        }));
        assert_eq!(
            port_mappings(&p),
            vec![
                PortMapping {
                    protocol: Protocol::Tcp,
                    container_port: 80,
                    host_port: 8080,
                    host_ip: String::new(),
                },
                PortMapping {
                    protocol: Protocol::Udp,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "192.0.2.2".into(),
                },
            ]
        );
    }

    #[test]
    fn pod_ip_comes_from_the_sandbox_or_the_node() {
        let p = pod(json!({"metadata": {"name": "web"}, "spec": {"containers": []}}));
        let sandbox = PodSandboxStatus {
            id: "sb".into(),
            config: Default::default(),
            state: runtime::SandboxState::Ready,
            created_at: jiff::Timestamp::UNIX_EPOCH,
            pid: Some(1),
            netns_path: None,
            ips: vec!["10.244.0.5".parse().expect("ip")],
        };
        assert_eq!(pod_ip("192.0.2.1", &p, Some(&sandbox)), "10.244.0.5");
        assert_eq!(pod_ip("192.0.2.1", &p, None), "");
        let mut status = PodStatus::default();
        fill_status(&p, Some(&sandbox), &mut status);
        assert_eq!(status.pod_ip.as_deref(), Some("10.244.0.5"));
        let host = pod(
            json!({"metadata": {"name": "h"}, "spec": {"containers": [], "hostNetwork": true}}),
        );
        assert_eq!(pod_ip("192.0.2.1", &host, Some(&sandbox)), "192.0.2.1");
    }
}
