//! The route plan: one route per other Node, to its pod CIDR through its InternalIP when
//! that node is a direct neighbour (flannel's `host-gw`), else through its VTEP address on
//! the VXLAN device ([`crate::vxlan`]); worked out from the Node list and compared with the
//! routes this node holds. Pure: the side effects are the [`crate::host::HostNet`] seam's.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;

/// A route to a pod CIDR through a node's address, or through its VTEP address on the
/// VXLAN device (`vxlan`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    pub dst: Ipv4Net,
    pub via: Ipv4Addr,
    pub vxlan: bool,
}

/// How another node's pods are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// The node's InternalIP.
    pub node_ip: Ipv4Addr,
    /// Not a direct neighbour: over the VXLAN device.
    pub vxlan: bool,
}

impl Hop {
    /// The route to `dst` this hop asks for.
    pub fn route(&self, dst: Ipv4Net) -> Route {
        if self.vxlan {
            Route {
                dst,
                via: crate::vxlan::vtep_ip(dst),
                vxlan: true,
            }
        } else {
            Route {
                dst,
                via: self.node_ip,
                vxlan: false,
            }
        }
    }
}

/// One step that brings the routes in line with the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Add the route, or move its destination to a new gateway.
    Replace(Route),
    Delete(Route),
}

/// The Node's IPv4 pod CIDR (`spec.podCIDRs`, else `spec.podCIDR`).
pub fn pod_cidr(node: &Node) -> Option<Ipv4Net> {
    let spec = node.spec.as_ref()?;
    spec.pod_cidrs
        .iter()
        .flatten()
        .chain(spec.pod_cidr.iter())
        .find_map(|c| c.parse::<Ipv4Net>().ok())
        .map(|n| n.trunc())
}

/// The Node's IPv4 InternalIP, when it is one another host can route to.
pub fn internal_ip(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse::<Ipv4Addr>().ok())
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// Where this node's routes should go: every other Node with a pod CIDR inside the cluster
/// CIDR and a routable InternalIP, over VXLAN unless `direct` says the node is a direct
/// neighbour. A CIDR claimed twice goes to the first Node by name, so the plan does not flap
/// between them.
pub fn desired(
    nodes: &[Node],
    me: &str,
    cluster: Ipv4Net,
    direct: &dyn Fn(Ipv4Addr) -> bool,
) -> BTreeMap<Ipv4Net, Hop> {
    let mut sorted: Vec<&Node> = nodes.iter().collect();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut out = BTreeMap::new();
    for node in sorted {
        if node.metadata.name.as_deref() == Some(me) {
            continue;
        }
        let (Some(dst), Some(via)) = (pod_cidr(node), internal_ip(node)) else {
            continue;
        };
        if cluster.contains(&dst) && !out.contains_key(&dst) {
            out.insert(
                dst,
                Hop {
                    node_ip: via,
                    vxlan: !direct(via),
                },
            );
        }
    }
    out
}

/// The changes that turn `current` (the routes this node holds for the pod network) into
/// `desired`: stale and duplicate routes deleted, missing or moved ones replaced.
pub fn plan(desired: &BTreeMap<Ipv4Net, Hop>, current: &[Route]) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut held: BTreeMap<Ipv4Net, Route> = BTreeMap::new();
    for r in current {
        match desired.get(&r.dst) {
            Some(hop) if hop.route(r.dst) == *r && !held.contains_key(&r.dst) => {
                held.insert(r.dst, *r);
            }
            _ => changes.push(Change::Delete(*r)),
        }
    }
    for (dst, hop) in desired {
        if !held.contains_key(dst) {
            changes.push(Change::Replace(hop.route(*dst)));
        }
    }
    changes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> Node {
        let mut spec = json!({});
        if let Some(c) = cidr {
            spec = json!({"podCIDR": c, "podCIDRs": [c]});
        }
        serde_json::from_value(json!({
            "metadata": {"name": name},
            "spec": spec,
            "status": {"addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": ip}
            ]}
        }))
        .expect("node")
    }

    fn net(s: &str) -> Ipv4Net {
        s.parse().expect("cidr")
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().expect("ip")
    }

    fn direct(s: &str) -> Hop {
        Hop {
            node_ip: ip(s),
            vxlan: false,
        }
    }

    fn cluster() -> Ipv4Net {
        net("10.244.0.0/16")
    }

    #[test]
    fn every_other_routable_node_with_a_range_gets_a_route() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), "192.0.2.1"),
            node("b", Some("10.244.1.0/24"), "192.0.2.2"),
            node("c", None, "192.0.2.3"),
            node("d", Some("10.244.3.0/24"), "127.0.0.1"),
            node("e", Some("172.16.0.0/24"), "192.0.2.5"),
            node("f", Some("10.244.5.0/24"), "fd00::5"),
        ];
        let want = desired(&nodes, "a", cluster(), &|_| true);
        assert_eq!(
            want.into_iter().collect::<Vec<_>>(),
            [(net("10.244.1.0/24"), direct("192.0.2.2"))]
        );
    }

    #[test]
    fn a_range_claimed_twice_goes_to_the_first_node_by_name() {
        let nodes = [
            node("z", Some("10.244.1.0/24"), "192.0.2.9"),
            node("b", Some("10.244.1.0/24"), "192.0.2.2"),
        ];
        let want = desired(&nodes, "a", cluster(), &|_| true);
        assert_eq!(want.get(&net("10.244.1.0/24")), Some(&direct("192.0.2.2")));
    }

    #[test]
    fn plan_adds_moves_and_removes() {
        let mut want = BTreeMap::new();
        want.insert(net("10.244.1.0/24"), direct("192.0.2.2"));
        want.insert(net("10.244.2.0/24"), direct("192.0.2.3"));
        want.insert(net("10.244.4.0/24"), direct("192.0.2.5"));
        let current = [
            Route {
                dst: net("10.244.1.0/24"),
                via: ip("192.0.2.2"),
                vxlan: false,
            },
            Route {
                dst: net("10.244.2.0/24"),
                via: ip("192.0.2.99"),
                vxlan: false,
            },
            Route {
                dst: net("10.244.3.0/24"),
                via: ip("192.0.2.4"),
                vxlan: false,
            },
        ];
        let changes = plan(&want, &current);
        assert_eq!(
            changes,
            [
                Change::Delete(current[1]),
                Change::Delete(current[2]),
                Change::Replace(Route {
                    dst: net("10.244.2.0/24"),
                    via: ip("192.0.2.3"),
                    vxlan: false,
                }),
                Change::Replace(Route {
                    dst: net("10.244.4.0/24"),
                    via: ip("192.0.2.5"),
                    vxlan: false,
                }),
            ]
        );
        // In line: nothing to do.
        let done = [
            Route {
                dst: net("10.244.1.0/24"),
                via: ip("192.0.2.2"),
                vxlan: false,
            },
            Route {
                dst: net("10.244.2.0/24"),
                via: ip("192.0.2.3"),
                vxlan: false,
            },
            Route {
                dst: net("10.244.4.0/24"),
                via: ip("192.0.2.5"),
                vxlan: false,
            },
        ];
        assert!(plan(&want, &done).is_empty());
        // A Node gone: its route goes.
        assert_eq!(
            plan(&BTreeMap::new(), &done[..1]),
            [Change::Delete(done[0])]
        );
    }

    /// A node behind a router is reached over VXLAN, through its VTEP address; the route
    /// moves when the node becomes a direct neighbour.
    #[test]
    fn nodes_that_are_not_neighbours_go_over_vxlan() {
        let nodes = [
            node("a", Some("10.244.0.0/24"), "192.0.2.1"),
            node("b", Some("10.244.1.0/24"), "192.0.2.2"),
            node("c", Some("10.244.2.0/24"), "198.51.100.3"),
        ];
        let near = |addr: Ipv4Addr| addr.octets()[..3] == [192, 0, 2];
        let want = desired(&nodes, "a", cluster(), &near);
        let routes: Vec<Route> = want.iter().map(|(dst, hop)| hop.route(*dst)).collect();
        assert_eq!(
            routes,
            [
                Route {
                    dst: net("10.244.1.0/24"),
                    via: ip("192.0.2.2"),
                    vxlan: false,
                },
                Route {
                    dst: net("10.244.2.0/24"),
                    via: ip("10.244.2.0"),
                    vxlan: true,
                },
            ]
        );
        assert!(plan(&want, &routes).is_empty());
        let all_near = desired(&nodes, "a", cluster(), &|_| true);
        assert_eq!(
            plan(&all_near, &routes),
            [
                Change::Delete(routes[1]),
                Change::Replace(Route {
                    dst: net("10.244.2.0/24"),
                    via: ip("198.51.100.3"),
                    vxlan: false,
                }),
            ]
        );
    }

    #[test]
    fn the_pod_cidr_prefers_the_list_and_skips_ipv6() {
        let n: Node = serde_json::from_value(json!({
            "metadata": {"name": "a"},
            "spec": {"podCIDR": "fd00:1::/64", "podCIDRs": ["fd00:1::/64", "10.244.7.0/24"]}
        }))
        .expect("node");
        assert_eq!(pod_cidr(&n), Some(net("10.244.7.0/24")));
    }
}
