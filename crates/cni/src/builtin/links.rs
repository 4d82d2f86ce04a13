//! The seam between the in-process network's plan and the kernel: the few link, address
//! and sysctl operations it needs, on the host and inside a pod's namespace. [`super::rtnl`]
//! does them over netlink; tests use a recording fake.

use std::fs::File;
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Mac(pub [u8; 6]);

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

/// What the plan needs to know of a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub mac: Mac,
    /// `IFLA_INFO_KIND` (`bridge`, `veth` …), `None` for links without one.
    pub kind: Option<String>,
    /// Administratively up (`IFF_UP`).
    pub up: bool,
    /// `IFLA_OPERSTATE` is `up`: the link passes traffic.
    pub oper_up: bool,
}

/// The pod's side of an attachment, configured inside its namespace in this order:
/// sysctls (failures ignored, as the bridge plugin does), the address, the link up, the
/// routes, and `lo` up (the loopback plugin's job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    pub name: String,
    pub address: Ipv4Net,
    /// `(destination, gateway)`, each added through `name`.
    pub routes: Vec<(Ipv4Net, Ipv4Addr)>,
    /// `(key under /proc/sys, value)`, written from inside the namespace.
    pub sysctls: Vec<(String, String)>,
}

/// Why a link operation failed: the errno the kernel answered, or an unreadable answer.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("{op}")]
    Kernel {
        op: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: unreadable netlink answer")]
    Decode {
        op: String,
        #[source]
        source: netlink_packet_core::DecodeError,
    },
    #[error("{op}: a netlink answer of length 0")]
    EmptyAnswer { op: String },
    #[error("entering the network namespace for {op}")]
    EnterNetns {
        op: String,
        #[source]
        source: std::io::Error,
    },
}

impl LinkError {
    fn errno(&self) -> Option<i32> {
        match self {
            LinkError::Kernel { source, .. } => source.raw_os_error(),
            LinkError::Decode { .. }
            | LinkError::EmptyAnswer { .. }
            | LinkError::EnterNetns { .. } => None,
        }
    }

    /// The object to create exists already (EEXIST).
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::libc::EEXIST)
    }
}

/// Link operations on the host (the namespace the agent runs in) and, for the pod's side,
/// inside the namespace open as a file.
pub trait Links: Send + Sync {
    /// The host link called `name`, `None` when there is none.
    fn link(&self, name: &str) -> Result<Option<Link>, LinkError>;
    /// Creates bridge `name` (EEXIST when it exists).
    fn add_bridge(&self, name: &str) -> Result<(), LinkError>;
    /// Creates veth `host` on the host whose peer `peer` is created straight inside
    /// `netns`, so the pair never exists half-placed (EEXIST when a name is taken).
    fn add_veth(&self, host: &str, peer: &str, netns: &File) -> Result<(), LinkError>;
    fn set_up(&self, index: u32) -> Result<(), LinkError>;
    fn set_master(&self, index: u32, master: u32) -> Result<(), LinkError>;
    /// Hairpin mode on a bridge port: frames may go back out the port they came in.
    fn set_hairpin(&self, index: u32) -> Result<(), LinkError>;
    fn set_mac(&self, index: u32, mac: Mac) -> Result<(), LinkError>;
    fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, LinkError>;
    /// Adds `address` (EEXIST when the link has it).
    fn add_ipv4_address(&self, index: u32, address: Ipv4Net) -> Result<(), LinkError>;
    /// Sets a host sysctl (`key` under /proc/sys, e.g. `net/ipv4/ip_forward`), writing only
    /// when the value differs.
    fn set_sysctl(&self, key: &str, value: &str) -> std::io::Result<()>;
    /// Configures the pod's interface inside `netns` (see [`PodInterface`]); returns its MAC.
    fn configure_pod(&self, netns: &File, pod: &PodInterface) -> Result<Mac, LinkError>;
    /// Inside `netns`: `lo` down and `if_name` deleted (which deletes its host peer too);
    /// either already gone is fine.
    fn release_pod(&self, netns: &File, if_name: &str) -> Result<(), LinkError>;
}
