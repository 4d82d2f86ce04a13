//! The VXLAN backend (flannel's `vxlan`), for nodes that share no L2 segment: a host-gw route
//! needs the other node to be a direct neighbour, so a node reached only through a router
//! gets its pod CIDR over a VXLAN device instead. Each node's device has the first address
//! of its pod CIDR as its VTEP address and a MAC derived from it, so every node can work out
//! every other node's VTEP from the Node objects alone (no annotation to publish): a route
//! to the pod CIDR through the peer's VTEP address on the device (`onlink`), a permanent
//! neighbour entry giving that address the peer's MAC, and a forwarding entry sending that
//! MAC to the peer node's InternalIP (UDP 8472, VNI 1, as flannel's defaults).

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// The device's name.
pub const DEVICE: &str = "peapod-vxlan";
/// The VXLAN network identifier.
pub const VNI: u32 = 1;
/// The UDP port (Linux's and flannel's VXLAN port).
pub const PORT: u16 = 8472;

/// A node's VTEP address: the first address of its pod CIDR (never given to a pod).
pub fn vtep_ip(pod_cidr: Ipv4Net) -> Ipv4Addr {
    pod_cidr.network()
}

/// The device MAC of the node whose VTEP address is `vtep`: locally administered, unicast,
/// and unique as long as the pod CIDRs are.
pub fn vtep_mac(vtep: Ipv4Addr) -> String {
    let [a, b, c, d] = vtep.octets();
    format!("0e:5a:{a:02x}:{b:02x}:{c:02x}:{d:02x}")
}

/// This node's end: its VTEP address and the InternalIP the tunnel leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub vtep: Ipv4Addr,
    pub node_ip: Ipv4Addr,
}

/// Another node reached over the tunnel.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Peer {
    pub vtep: Ipv4Addr,
    pub mac: String,
    pub node_ip: Ipv4Addr,
}

impl Peer {
    pub fn new(pod_cidr: Ipv4Net, node_ip: Ipv4Addr) -> Self {
        let vtep = vtep_ip(pod_cidr);
        Peer {
            vtep,
            mac: vtep_mac(vtep),
            node_ip,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vteps_come_from_the_pod_cidr() {
        let cidr: Ipv4Net = "10.244.3.0/24".parse().expect("cidr");
        let p = Peer::new(cidr, "198.19.1.11".parse().expect("ip"));
        assert_eq!(p.vtep, Ipv4Addr::new(10, 244, 3, 0));
        assert_eq!(p.mac, "0e:5a:0a:f4:03:00");
        // Unicast and locally administered.
        let first = u8::from_str_radix(&p.mac[..2], 16).expect("hex");
        assert_eq!(first & 0b11, 0b10);
    }
}
