//! [`Links`] over rtnetlink. Host-side calls use a socket opened by the calling thread, in
//! the agent's own namespace; pod-side calls run on a short-lived thread of their own that
//! enters the pod's namespace and ends there, so no thread of a shared pool ever changes
//! namespace.

use std::fs::File;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;

use ipnet::Ipv4Net;
use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage, AddressScope};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo, LinkMessage, State,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::sched::{setns, CloneFlags};

use super::links::{Link, LinkError, Links, Mac, PodInterface};

/// The main routing table (`RT_TABLE_MAIN`).
const MAIN_TABLE: u8 = 254;
/// Room for one datagram of a dump answer.
const RECEIVE_BUFFER: usize = 64 * 1024;

/// The real [`Links`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RealLinks;

/// One rtnetlink socket, bound in the namespace of the thread that opened it.
struct Rtnl {
    socket: Socket,
    sequence: u32,
}

fn kernel(op: &str) -> impl FnOnce(std::io::Error) -> LinkError + '_ {
    move |source| LinkError::Kernel {
        op: op.to_string(),
        source,
    }
}

impl Rtnl {
    fn open(op: &str) -> Result<Self, LinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(kernel(op))?;
        socket.bind_auto().map_err(kernel(op))?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(kernel(op))?;
        Ok(Self {
            socket,
            sequence: 0,
        })
    }

    /// Sends one request and collects the answer's messages, up to the kernel's ACK (or the
    /// end of a dump); a NACK becomes the errno it carries.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
        op: &str,
    ) -> Result<Vec<RouteNetlinkMessage>, LinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = NLM_F_REQUEST | flags;
        packet.header.sequence_number = self.sequence;
        packet.finalize();
        let mut out = vec![0; packet.buffer_len()];
        packet.serialize(&mut out);
        self.socket.send(&out, 0).map_err(kernel(op))?;
        let mut answers = Vec::new();
        loop {
            let mut buf: Vec<u8> = Vec::with_capacity(RECEIVE_BUFFER);
            self.socket.recv(&mut buf, 0).map_err(kernel(op))?;
            let mut offset = 0;
            while offset < buf.len() {
                let bytes = buf.get(offset..).unwrap_or_default();
                let answer = NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(
                    |source| LinkError::Decode {
                        op: op.to_string(),
                        source,
                    },
                )?;
                let length = answer.header.length as usize;
                if length == 0 {
                    return Err(LinkError::EmptyAnswer { op: op.to_string() });
                }
                // Netlink messages start on 4-byte boundaries.
                offset += (length + 3) & !3;
                if answer.header.sequence_number != self.sequence {
                    continue;
                }
                match answer.payload {
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::Error(e) if e.code.is_none() => return Ok(answers),
                    NetlinkPayload::Error(e) => return Err(kernel(op)(e.to_io())),
                    NetlinkPayload::InnerMessage(m) => answers.push(m),
                    // Noop, Overrun and kinds newer than this code carry no answer.
                    _ => {}
                }
            }
        }
    }

    /// A request answered by an ACK only.
    fn act(&mut self, message: RouteNetlinkMessage, flags: u16, op: &str) -> Result<(), LinkError> {
        self.request(message, flags | NLM_F_ACK, op).map(drop)
    }

    fn link(&mut self, name: &str) -> Result<Option<Link>, LinkError> {
        let op = format!("looking up link {name:?}");
        let mut query = LinkMessage::default();
        query
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(query), NLM_F_ACK, &op) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link_of(&link)),
                _ => None,
            })),
            Err(e) if is_errno(&e, nix::libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn set_link(
        &mut self,
        index: u32,
        change: impl FnOnce(&mut LinkMessage),
        op: &str,
    ) -> Result<(), LinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        change(&mut message);
        self.act(RouteNetlinkMessage::SetLink(message), 0, op)
    }

    fn set_up(&mut self, index: u32) -> Result<(), LinkError> {
        self.set_link(
            index,
            |m| {
                m.header.flags = LinkFlags::Up;
                m.header.change_mask = LinkFlags::Up;
            },
            &format!("setting link {index} up"),
        )
    }

    fn set_down(&mut self, index: u32) -> Result<(), LinkError> {
        self.set_link(
            index,
            |m| m.header.change_mask = LinkFlags::Up,
            &format!("setting link {index} down"),
        )
    }

    fn add_ipv4_address(&mut self, index: u32, address: Ipv4Net) -> Result<(), LinkError> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = address.prefix_len();
        message.header.scope = AddressScope::Universe;
        message.header.index = index;
        let ip = IpAddr::V4(address.addr());
        message.attributes.push(AddressAttribute::Local(ip));
        message.attributes.push(AddressAttribute::Address(ip));
        if address.prefix_len() < 31 {
            message
                .attributes
                .push(AddressAttribute::Broadcast(address.broadcast()));
        }
        self.act(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("adding {address} to link {index}"),
        )
    }

    fn add_route(
        &mut self,
        index: u32,
        destination: Ipv4Net,
        gateway: Ipv4Addr,
    ) -> Result<(), LinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.destination_prefix_length = destination.prefix_len();
        message.header.table = MAIN_TABLE;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes = vec![
            RouteAttribute::Destination(RouteAddress::Inet(destination.network())),
            RouteAttribute::Gateway(RouteAddress::Inet(gateway)),
            RouteAttribute::Oif(index),
        ];
        self.act(
            RouteNetlinkMessage::NewRoute(message),
            NLM_F_CREATE,
            &format!("adding route {destination} via {gateway} on link {index}"),
        )
    }

    fn del_link(&mut self, name: &str) -> Result<(), LinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.act(
            RouteNetlinkMessage::DelLink(message),
            0,
            &format!("deleting link {name:?}"),
        )
    }
}

fn is_errno(e: &LinkError, errno: i32) -> bool {
    matches!(e, LinkError::Kernel { source, .. } if source.raw_os_error() == Some(errno))
}

fn link_of(message: &LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        mac: Mac::default(),
        kind: None,
        up: message.header.flags.contains(LinkFlags::Up),
        oper_up: false,
    };
    for attribute in &message.attributes {
        match attribute {
            LinkAttribute::Address(bytes) => {
                if let Ok(mac) = <[u8; 6]>::try_from(bytes.as_slice()) {
                    link.mac = Mac(mac);
                }
            }
            LinkAttribute::OperState(state) => link.oper_up = *state == State::Up,
            LinkAttribute::LinkInfo(infos) => {
                for info in infos {
                    if let LinkInfo::Kind(kind) = info {
                        link.kind = Some(kind.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    link
}

/// `/proc/sys/<key>` set to `value` unless it holds it already; in the namespace of the
/// calling thread.
fn write_sysctl(key: &str, value: &str) -> std::io::Result<()> {
    let path = std::path::Path::new("/proc/sys").join(key);
    if std::fs::read_to_string(&path).is_ok_and(|v| v.trim() == value) {
        return Ok(());
    }
    std::fs::write(&path, value)
}

/// Runs `work` on a new thread that has entered `netns`; the thread ends with it.
fn in_netns<T: Send>(
    netns: &File,
    op: &str,
    work: impl FnOnce(&mut Rtnl) -> Result<T, LinkError> + Send,
) -> Result<T, LinkError> {
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("pod-netns".into())
            .spawn_scoped(scope, || {
                setns(netns, CloneFlags::CLONE_NEWNET).map_err(|e| LinkError::EnterNetns {
                    op: op.to_string(),
                    source: e.into(),
                })?;
                work(&mut Rtnl::open(op)?)
            })
            .map_err(|source| LinkError::EnterNetns {
                op: op.to_string(),
                source,
            })?;
        handle.join().unwrap_or_else(|_| {
            Err(LinkError::EnterNetns {
                op: op.to_string(),
                source: std::io::Error::other("the namespace's thread panicked"),
            })
        })
    })
}

impl Links for RealLinks {
    fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
        Rtnl::open("opening rtnetlink")?.link(name)
    }

    fn add_bridge(&self, name: &str) -> Result<(), LinkError> {
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(name.to_string()),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ];
        let op = format!("creating bridge {name:?}");
        Rtnl::open(&op)?.act(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }

    fn add_veth(&self, host: &str, peer: &str, netns: &File) -> Result<(), LinkError> {
        // Queue length 0 on both ends, as the plugin's netlink library creates them.
        let mut peer_message = LinkMessage::default();
        peer_message.attributes = vec![
            LinkAttribute::IfName(peer.to_string()),
            LinkAttribute::TxQueueLen(0),
            LinkAttribute::NetNsFd(netns.as_raw_fd()),
        ];
        let mut message = LinkMessage::default();
        message.attributes = vec![
            LinkAttribute::IfName(host.to_string()),
            LinkAttribute::TxQueueLen(0),
            LinkAttribute::LinkInfo(vec![
                LinkInfo::Kind(InfoKind::Veth),
                LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
            ]),
        ];
        let op = format!("creating veth {host:?} with peer {peer:?} in the pod's namespace");
        Rtnl::open(&op)?.act(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &op,
        )
    }

    fn set_up(&self, index: u32) -> Result<(), LinkError> {
        Rtnl::open("opening rtnetlink")?.set_up(index)
    }

    fn set_master(&self, index: u32, master: u32) -> Result<(), LinkError> {
        let op = format!("attaching link {index} to bridge {master}");
        Rtnl::open(&op)?.set_link(
            index,
            |m| m.attributes.push(LinkAttribute::Controller(master)),
            &op,
        )
    }

    fn set_hairpin(&self, index: u32) -> Result<(), LinkError> {
        // `ip link set … type bridge_slave hairpin on`: port options go in a NEWLINK.
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::PortKind(InfoPortKind::Bridge),
            LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                true,
            )])),
        ]));
        let op = format!("setting hairpin mode on link {index}");
        Rtnl::open(&op)?.act(RouteNetlinkMessage::NewLink(message), 0, &op)
    }

    fn set_mac(&self, index: u32, mac: Mac) -> Result<(), LinkError> {
        let op = format!("setting the MAC of link {index} to {mac}");
        Rtnl::open(&op)?.set_link(
            index,
            |m| m.attributes.push(LinkAttribute::Address(mac.0.to_vec())),
            &op,
        )
    }

    fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, LinkError> {
        let op = format!("listing the addresses of link {index}");
        let mut query = AddressMessage::default();
        query.header.family = AddressFamily::Inet;
        query.header.index = index;
        let answers =
            Rtnl::open(&op)?.request(RouteNetlinkMessage::GetAddress(query), NLM_F_DUMP, &op)?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => {
                    let prefix = a.header.prefix_len;
                    a.attributes.into_iter().find_map(|attr| match attr {
                        AddressAttribute::Local(IpAddr::V4(ip)) => Ipv4Net::new(ip, prefix).ok(),
                        _ => None,
                    })
                }
                _ => None,
            })
            .collect())
    }

    fn add_ipv4_address(&self, index: u32, address: Ipv4Net) -> Result<(), LinkError> {
        Rtnl::open("opening rtnetlink")?.add_ipv4_address(index, address)
    }

    fn set_sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        write_sysctl(key, value)
    }

    fn configure_pod(&self, netns: &File, pod: &PodInterface) -> Result<Mac, LinkError> {
        let op = format!("configuring {} in the pod's namespace", pod.name);
        in_netns(netns, &op, |rtnl| {
            for (key, value) in &pod.sysctls {
                // As the bridge plugin: a missing knob (no IPv6) is not an error.
                let _ = write_sysctl(key, value);
            }
            let link = rtnl.link(&pod.name)?.ok_or_else(|| LinkError::Kernel {
                op: op.clone(),
                source: std::io::Error::from_raw_os_error(nix::libc::ENODEV),
            })?;
            rtnl.add_ipv4_address(link.index, pod.address)?;
            rtnl.set_up(link.index)?;
            for (destination, gateway) in &pod.routes {
                rtnl.add_route(link.index, *destination, *gateway)?;
            }
            if let Some(lo) = rtnl.link("lo")? {
                rtnl.set_up(lo.index)?;
            }
            Ok(link.mac)
        })
    }

    fn release_pod(&self, netns: &File, if_name: &str) -> Result<(), LinkError> {
        let op = format!("deleting {if_name} in the pod's namespace");
        in_netns(netns, &op, |rtnl| {
            if let Some(lo) = rtnl.link("lo")? {
                rtnl.set_down(lo.index)?;
            }
            match rtnl.del_link(if_name) {
                Err(e) if is_errno(&e, nix::libc::ENODEV) => Ok(()),
                other => other,
            }
        })
    }
}
