//! From Services and EndpointSlices to the proxy's nftables ruleset: both steps are pure
//! functions, so what the node will do with a packet is unit-tested as text.
//!
//! The ruleset follows kube-proxy's nftables mode (v1.33) in miniature:
//! - `prerouting` (pods, other hosts) and `output` (the node itself) NAT chains jump to
//!   `services`, which matches `ClusterIP:port` — and `NodePort` on any local address
//!   (`fib daddr type local`) — and jumps to one chain per Service port;
//! - a Service port chain picks an endpoint with `numgen random mod N` (uniform, as
//!   kube-proxy's random balancing) and jumps to that endpoint's chain, which DNATs;
//! - traffic from outside the pod network (the node, NodePort clients) and hairpin traffic
//!   (a pod reaching a Service that picks the pod itself) is marked and masqueraded in
//!   `postrouting`, so replies come back through the node's conntrack entry instead of
//!   going straight from the pod to itself or to a client that never sent to the pod IP.
//!
//! Only ports with ready endpoints get rules: traffic to a Service without ready endpoints
//! is not rewritten (kube-proxy would reject it; here it goes unanswered — and the cluster
//! DNS address, whose server listens on the node itself, works without a rule).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;

/// The mark that asks `postrouting` to masquerade (kube-proxy uses bit 14 as well).
pub const MASQ_MARK: u32 = 0x4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    fn parse(s: Option<&str>) -> Option<Self> {
        match s.unwrap_or("TCP") {
            "TCP" => Some(Protocol::Tcp),
            "UDP" => Some(Protocol::Udp),
            "SCTP" => Some(Protocol::Sctp),
            _ => None,
        }
    }

    fn nft(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

/// One port of one Service, with where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServicePort {
    /// `namespace/name:port-name` (for comments and logs).
    pub id: String,
    pub cluster_ip: Option<Ipv4Addr>,
    pub port: u16,
    pub protocol: Protocol,
    pub node_port: Option<u16>,
    /// Ready endpoints (pod IP, target port), sorted and deduplicated.
    pub endpoints: Vec<(Ipv4Addr, u16)>,
}

/// The Service ports to program, from the current Services and EndpointSlices.
pub fn service_ports(services: &[Service], slices: &[EndpointSlice]) -> Vec<ServicePort> {
    // (namespace, service) -> slices
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for s in slices {
        if s.address_type != "IPv4" {
            continue;
        }
        let Some(svc) = s
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
        else {
            continue;
        };
        let ns = s.metadata.namespace.clone().unwrap_or_default();
        by_service.entry((ns, svc.clone())).or_default().push(s);
    }
    let mut out = Vec::new();
    for svc in services {
        let ns = svc.metadata.namespace.clone().unwrap_or_default();
        let name = svc.metadata.name.clone().unwrap_or_default();
        let Some(spec) = &svc.spec else { continue };
        if spec.type_.as_deref() == Some("ExternalName") {
            continue;
        }
        let cluster_ip = spec
            .cluster_ip
            .as_deref()
            .and_then(|ip| ip.parse::<Ipv4Addr>().ok());
        let node_ports_wanted = matches!(spec.type_.as_deref(), Some("NodePort" | "LoadBalancer"));
        let my_slices = by_service.get(&(ns.clone(), name.clone()));
        for p in spec.ports.iter().flatten() {
            let Some(protocol) = Protocol::parse(p.protocol.as_deref()) else {
                continue;
            };
            let Ok(port) = u16::try_from(p.port) else {
                continue;
            };
            let port_name = p.name.clone().unwrap_or_default();
            let mut endpoints: Vec<(Ipv4Addr, u16)> = Vec::new();
            for slice in my_slices.into_iter().flatten() {
                // The slice port for this Service port: same name and protocol.
                let Some(target) = slice.ports.iter().flatten().find_map(|sp| {
                    let same_name = sp.name.clone().unwrap_or_default() == port_name;
                    let same_proto = Protocol::parse(sp.protocol.as_deref()) == Some(protocol);
                    (same_name && same_proto)
                        .then_some(sp.port)
                        .flatten()
                        .and_then(|n| u16::try_from(n).ok())
                }) else {
                    continue;
                };
                for ep in &slice.endpoints {
                    // kube-proxy: a nil `ready` means ready; only ready endpoints get traffic.
                    let ready = ep.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
                    if !ready {
                        continue;
                    }
                    for a in &ep.addresses {
                        if let Ok(ip) = a.parse::<Ipv4Addr>() {
                            endpoints.push((ip, target));
                        }
                    }
                }
            }
            endpoints.sort();
            endpoints.dedup();
            let node_port = if node_ports_wanted {
                p.node_port
                    .and_then(|n| u16::try_from(n).ok())
                    .filter(|n| *n != 0)
            } else {
                None
            };
            if cluster_ip.is_none() && node_port.is_none() {
                continue;
            }
            out.push(ServicePort {
                id: format!(
                    "{ns}/{name}:{}",
                    if port_name.is_empty() {
                        port.to_string()
                    } else {
                        port_name
                    }
                ),
                cluster_ip,
                port,
                protocol,
                node_port,
                endpoints,
            });
        }
    }
    out.sort();
    out
}

/// Comments are quoted in nft; keep them to a safe alphabet.
fn comment(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_./:".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The whole `nft -f` script: replaces table `ip <table>` in one transaction (the
/// `table`/`delete table` pair makes the delete valid whether or not it existed).
/// `cluster_cidr` is the pod network; traffic from outside it is masqueraded.
pub fn ruleset(table: &str, cluster_cidr: &str, ports: &[ServicePort]) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "table ip {table}");
    let _ = writeln!(o, "delete table ip {table}");
    let _ = writeln!(o, "table ip {table} {{");
    // nft 1.0.6 accepts the `dstnat` name only on prerouting, so the output hook says -100.
    let _ = writeln!(
        o,
        "  chain prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n    jump services\n  }}"
    );
    let _ = writeln!(
        o,
        "  chain output {{\n    type nat hook output priority -100; policy accept;\n    jump services\n  }}"
    );
    let _ = writeln!(
        o,
        "  chain postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n    meta mark & {MASQ_MARK:#x} == {MASQ_MARK:#x} meta mark set meta mark & {:#x} masquerade fully-random\n  }}",
        !MASQ_MARK
    );
    let _ = writeln!(
        o,
        "  chain mark-for-masquerade {{\n    meta mark set meta mark | {MASQ_MARK:#x}\n  }}"
    );
    let mut services = String::new();
    let mut chains = String::new();
    for (i, sp) in ports.iter().enumerate() {
        if sp.endpoints.is_empty() {
            continue;
        }
        let proto = sp.protocol.nft();
        let c = comment(&sp.id);
        if let Some(ip) = sp.cluster_ip {
            let _ = writeln!(
                services,
                "    ip daddr {ip} {proto} dport {} jump svc-{i} comment \"{c}\"",
                sp.port
            );
        }
        if let Some(np) = sp.node_port {
            let _ = writeln!(
                services,
                "    fib daddr type local {proto} dport {np} jump nodeport-{i} comment \"{c} nodePort\""
            );
            let _ = writeln!(
                chains,
                "  chain nodeport-{i} {{\n    jump mark-for-masquerade\n    jump svc-{i}\n  }}"
            );
        }
        let _ = writeln!(chains, "  chain svc-{i} {{");
        if sp.cluster_ip.is_some() {
            let _ = writeln!(
                chains,
                "    ip daddr {} ip saddr != {cluster_cidr} jump mark-for-masquerade",
                sp.cluster_ip.map(|i| i.to_string()).unwrap_or_default()
            );
        }
        if sp.endpoints.len() == 1 {
            let _ = writeln!(chains, "    jump ep-{i}-0");
        } else {
            let arms: Vec<String> = (0..sp.endpoints.len())
                .map(|j| format!("{j} : jump ep-{i}-{j}"))
                .collect();
            let _ = writeln!(
                chains,
                "    numgen random mod {} vmap {{ {} }}",
                sp.endpoints.len(),
                arms.join(", ")
            );
        }
        let _ = writeln!(chains, "  }}");
        for (j, (ip, port)) in sp.endpoints.iter().enumerate() {
            let _ = writeln!(
                chains,
                "  chain ep-{i}-{j} {{\n    ip saddr {ip} jump mark-for-masquerade\n    meta l4proto {proto} dnat to {ip}:{port}\n  }}"
            );
        }
    }
    let _ = writeln!(o, "  chain services {{\n{services}  }}");
    o.push_str(&chains);
    o.push_str("}\n");
    o
}

/// Removes the table (shutdown, `peapod reset`); valid whether or not it exists.
pub fn teardown(table: &str) -> String {
    format!("table ip {table}\ndelete table ip {table}\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(v: serde_json::Value) -> Service {
        serde_json::from_value(v).expect("service")
    }

    fn slice(v: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(v).expect("slice")
    }

    fn web() -> (Vec<Service>, Vec<EndpointSlice>) {
        let s = svc(json!({"metadata": {"name": "web", "namespace": "shop"},
            "spec": {"type": "NodePort", "clusterIP": "10.96.0.20",
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}]}}));
        let es = slice(json!({"metadata": {"name": "web-x", "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": [
                {"addresses": ["10.244.0.7"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.5"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.6"], "conditions": {"ready": false}}]}));
        (vec![s], vec![es])
    }

    #[test]
    fn only_ready_endpoints_with_the_named_port() {
        let (s, es) = web();
        let ports = service_ports(&s, &es);
        assert_eq!(
            ports,
            vec![ServicePort {
                id: "shop/web:http".into(),
                cluster_ip: Some(Ipv4Addr::new(10, 96, 0, 20)),
                port: 80,
                protocol: Protocol::Tcp,
                node_port: Some(30080),
                endpoints: vec![
                    (Ipv4Addr::new(10, 244, 0, 5), 8080),
                    (Ipv4Addr::new(10, 244, 0, 7), 8080)
                ],
            }]
        );
    }

    #[test]
    fn headless_and_external_name_get_nothing() {
        let s = vec![
            svc(json!({"metadata": {"name": "h", "namespace": "a"},
                "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})),
            svc(json!({"metadata": {"name": "e", "namespace": "a"},
                "spec": {"type": "ExternalName", "externalName": "x.example"}})),
        ];
        assert!(service_ports(&s, &[]).is_empty());
    }

    #[test]
    fn ruleset_balances_masquerades_hairpin_and_nodeports() {
        let (s, es) = web();
        let text = ruleset("peapod", "10.244.0.0/16", &service_ports(&s, &es));
        let expected = "\
table ip peapod
delete table ip peapod
table ip peapod {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
    jump services
  }
  chain output {
    type nat hook output priority -100; policy accept;
    jump services
  }
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    meta mark & 0x4000 == 0x4000 meta mark set meta mark & 0xffffbfff masquerade fully-random
  }
  chain mark-for-masquerade {
    meta mark set meta mark | 0x4000
  }
  chain services {
    ip daddr 10.96.0.20 tcp dport 80 jump svc-0 comment \"shop/web:http\"
    fib daddr type local tcp dport 30080 jump nodeport-0 comment \"shop/web:http nodePort\"
  }
  chain nodeport-0 {
    jump mark-for-masquerade
    jump svc-0
  }
  chain svc-0 {
    ip daddr 10.96.0.20 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
    numgen random mod 2 vmap { 0 : jump ep-0-0, 1 : jump ep-0-1 }
  }
  chain ep-0-0 {
    ip saddr 10.244.0.5 jump mark-for-masquerade
    meta l4proto tcp dnat to 10.244.0.5:8080
  }
  chain ep-0-1 {
    ip saddr 10.244.0.7 jump mark-for-masquerade
    meta l4proto tcp dnat to 10.244.0.7:8080
  }
}
";
        assert_eq!(text, expected);
    }

    #[test]
    fn ports_without_ready_endpoints_are_not_rewritten() {
        let (s, mut es) = web();
        for ep in &mut es[0].endpoints {
            if let Some(c) = ep.conditions.as_mut() {
                c.ready = Some(false);
            }
        }
        let text = ruleset("t", "10.244.0.0/16", &service_ports(&s, &es));
        assert!(!text.contains("dnat"));
        assert!(text.contains("chain services {\n  }"));
        assert_eq!(teardown("t"), "table ip t\ndelete table ip t\n");
    }
}
