//! peapod's default network (`bridge` + `host-local`, `loopback`) done in-process: the same
//! bridge, veth pair, addresses, routes and host-local allocation files the plugins make,
//! without starting three processes per pod (~25 ms of a pod's start). Only the exact
//! default conflist is done here; the plan is pure over the [`links::Links`] seam.

pub mod hostlocal;
pub mod links;
pub mod rtnl;

use std::fs::File;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use crate::config::{default_conflist, CNI_VERSION};
use crate::ConfList;
use hostlocal::{IpamError, Range, Store};
use links::{Link, LinkError, Links, PodInterface};

/// The network of a conflist that is exactly peapod's default (any name, bridge and IPv4
/// subnet): only then is doing it in-process indistinguishable from the plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultNet {
    /// The network's name, also host-local's allocation directory.
    pub name: String,
    pub cni_version: String,
    pub bridge: String,
    pub subnet: Ipv4Net,
}

impl DefaultNet {
    pub fn of(list: &ConfList) -> Option<Self> {
        let bridge_conf = list.plugins.first()?;
        let bridge = bridge_conf.get("bridge")?.as_str()?;
        let subnet_text = bridge_conf
            .get("ipam")?
            .get("ranges")?
            .get(0)?
            .get(0)?
            .get("subnet")?
            .as_str()?;
        let subnet = subnet_text.parse::<Ipv4Net>().ok()?;
        let plugins = Value::Array(list.plugins.iter().cloned().map(Value::Object).collect());
        let same = list.cni_version == CNI_VERSION
            && default_conflist(bridge, subnet_text).get("plugins") == Some(&plugins);
        same.then(|| Self {
            name: list.name.clone(),
            cni_version: list.cni_version.clone(),
            bridge: bridge.to_string(),
            subnet,
        })
    }
}

/// The default conflist's only route, through the gateway.
const DEFAULT_ROUTE: Ipv4Net = Ipv4Net::new_assert(Ipv4Addr::UNSPECIFIED, 0);
/// How long to wait for the host's veth to pass traffic, as the bridge plugin polls (a
/// packet sent before the kernel activates the port is dropped).
const PORT_UP_WAITS_MS: [u64; 9] = [0, 1, 2, 5, 10, 50, 500, 1000, 1000];
/// Tries at a free random host-side veth name (the plugin's bound).
const VETH_NAME_TRIES: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    #[error("opening network namespace {path}")]
    OpenNetns {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error("{name:?} already exists but is not a bridge")]
    NotABridge { name: String },
    #[error("link {name:?} vanished while it was being set up")]
    Vanished { name: String },
    #[error("container veth name provided ({name}) already exists")]
    PodInterfaceExists { name: String },
    #[error("failed to find a unique veth name")]
    NoVethName,
    #[error("bridge port {name} did not come up")]
    PortDown { name: String },
    #[error("{bridge:?} already has an IP address different from {wanted}")]
    BridgeAddress { bridge: String, wanted: Ipv4Net },
    #[error("enabling IPv4 forwarding")]
    Forwarding(#[source] std::io::Error),
}

/// The in-process network: the kernel seam and host-local's data dir.
#[derive(Clone)]
pub struct Builtin {
    links: Arc<dyn Links>,
    data_dir: PathBuf,
}

impl Builtin {
    pub fn new(links: Arc<dyn Links>, data_dir: PathBuf) -> Self {
        Self { links, data_dir }
    }

    /// Netlink on this process's namespace and host-local's default data dir.
    pub fn real() -> Self {
        Self::new(
            Arc::new(rtnl::RealLinks),
            PathBuf::from(hostlocal::DEFAULT_DATA_DIR),
        )
    }

    /// The bridge plugin's ADD (v1.1 with host-local IPAM) followed by loopback's, in the
    /// plugin's order: bridge up, veth pair (pod side straight into `netns`), host side up,
    /// on the bridge in hairpin mode, an address from host-local's store, the pod side's
    /// address, routes and `lo` up, the port up, the gateway address on the bridge and IPv4
    /// forwarding. Returns the bridge plugin's result. What a failure leaves is found and
    /// released by [`Builtin::del`].
    pub fn add(
        &self,
        net: &DefaultNet,
        container_id: &str,
        if_name: &str,
        netns_path: &Path,
    ) -> Result<Value, BuiltinError> {
        let range = Range::of(net.subnet)?;
        let netns = File::open(netns_path).map_err(|source| BuiltinError::OpenNetns {
            path: netns_path.to_path_buf(),
            source,
        })?;
        let bridge = self.ensure_bridge(&net.bridge)?;
        let (host_name, host) = self.add_veth(if_name, &netns)?;
        self.links.set_up(host.index)?;
        // The bridge plugin wants to own the routes of its links; no IPv6 is not an error.
        let _ = self
            .links
            .set_sysctl(&format!("net/ipv6/conf/{host_name}/accept_ra"), "0");
        self.links.set_master(host.index, bridge.index)?;
        self.links.set_hairpin(host.index)?;
        let address = Store::new(&self.data_dir, &net.name).lock()?.allocate(
            container_id,
            if_name,
            &range,
        )?;
        let pod = pod_interface(if_name, address, &range);
        let pod_mac = self.links.configure_pod(&netns, &pod)?;
        self.wait_port_up(&host_name)?;
        let gateway = Ipv4Net::new_assert(range.gateway, range.subnet.prefix_len());
        self.ensure_gateway(&net.bridge, &bridge, gateway)?;
        self.links
            .set_sysctl("net/ipv4/ip_forward", "1")
            .map_err(BuiltinError::Forwarding)?;
        // The bridge's MAC as it is now (fixed to itself when the gateway was added).
        let bridge_mac = self
            .links
            .link(&net.bridge)?
            .ok_or_else(|| BuiltinError::Vanished {
                name: net.bridge.clone(),
            })?
            .mac;
        Ok(json!({
            "cniVersion": net.cni_version,
            "interfaces": [
                {"name": net.bridge, "mac": bridge_mac.to_string()},
                {"name": host_name, "mac": host.mac.to_string()},
                {"name": if_name, "mac": pod_mac.to_string(), "sandbox": netns_path},
            ],
            "ips": [{
                "interface": 2,
                "address": pod.address.to_string(),
                "gateway": range.gateway.to_string(),
            }],
            "routes": [{"dst": DEFAULT_ROUTE.to_string()}],
            "dns": {},
        }))
    }

    /// The bridge plugin's DEL then loopback's: inside the namespace (when it still exists)
    /// `lo` down and the pod's interface deleted, which deletes the host side too; then the
    /// container's host-local allocations released. Anything already gone counts as done,
    /// so this also finishes an ADD that a crash cut short.
    pub fn del(
        &self,
        network: &str,
        container_id: &str,
        if_name: &str,
        netns_path: &Path,
    ) -> Result<(), BuiltinError> {
        // Not a namespace any more (unpinned, or never pinned): its links died with it.
        if crate::netns::is_pinned(netns_path) {
            match File::open(netns_path) {
                Ok(netns) => self.links.release_pod(&netns, if_name)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(BuiltinError::OpenNetns {
                        path: netns_path.to_path_buf(),
                        source,
                    })
                }
            }
        }
        let store = Store::new(&self.data_dir, network);
        if store.dir().is_dir() {
            store.lock()?.release(container_id, if_name)?;
        }
        Ok(())
    }

    fn ensure_bridge(&self, name: &str) -> Result<Link, BuiltinError> {
        match self.links.add_bridge(name) {
            Err(e) if !e.is_exists() => return Err(e.into()),
            _ => {}
        }
        let bridge = self
            .links
            .link(name)?
            .ok_or_else(|| BuiltinError::Vanished { name: name.into() })?;
        if bridge.kind.as_deref() != Some("bridge") {
            return Err(BuiltinError::NotABridge { name: name.into() });
        }
        let _ = self
            .links
            .set_sysctl(&format!("net/ipv6/conf/{name}/accept_ra"), "0");
        if !bridge.up {
            self.links.set_up(bridge.index)?;
        }
        Ok(bridge)
    }

    /// A veth pair with a free random host-side name (`veth` and 8 hex digits, as the
    /// plugin names them); the name and the host side.
    fn add_veth(&self, if_name: &str, netns: &File) -> Result<(String, Link), BuiltinError> {
        for _ in 0..VETH_NAME_TRIES {
            let name = format!("veth{:08x}", rand::random::<u32>());
            match self.links.add_veth(&name, if_name, netns) {
                Ok(()) => {
                    let link = self
                        .links
                        .link(&name)?
                        .ok_or(BuiltinError::Vanished { name: name.clone() })?;
                    return Ok((name, link));
                }
                // Taken: the random name (try another) or the pod's interface (an error).
                Err(e) if e.is_exists() => {
                    if self.links.link(&name)?.is_none() {
                        return Err(BuiltinError::PodInterfaceExists {
                            name: if_name.into(),
                        });
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(BuiltinError::NoVethName)
    }

    fn wait_port_up(&self, name: &str) -> Result<(), BuiltinError> {
        for wait in PORT_UP_WAITS_MS {
            std::thread::sleep(Duration::from_millis(wait));
            let link = self
                .links
                .link(name)?
                .ok_or_else(|| BuiltinError::Vanished { name: name.into() })?;
            if link.oper_up {
                return Ok(());
            }
        }
        Err(BuiltinError::PortDown { name: name.into() })
    }

    /// The gateway address on the bridge; another IPv4 address there is an error (the
    /// plugin's `forceAddress` is off). Adding it also pins the bridge's MAC to itself, so
    /// it does not follow the lowest port MAC as veths come and go.
    fn ensure_gateway(
        &self,
        name: &str,
        bridge: &Link,
        gateway: Ipv4Net,
    ) -> Result<(), BuiltinError> {
        let addresses = self.links.ipv4_addresses(bridge.index)?;
        if addresses.contains(&gateway) {
            return Ok(());
        }
        if !addresses.is_empty() {
            return Err(BuiltinError::BridgeAddress {
                bridge: name.into(),
                wanted: gateway,
            });
        }
        match self.links.add_ipv4_address(bridge.index, gateway) {
            Err(e) if !e.is_exists() => return Err(e.into()),
            _ => {}
        }
        self.links.set_mac(bridge.index, bridge.mac)?;
        Ok(())
    }
}

/// The pod's interface as the bridge plugin configures it: no IPv6 DAD, gratuitous ARP on
/// up, the address, the default route through the gateway.
fn pod_interface(if_name: &str, address: Ipv4Addr, range: &Range) -> PodInterface {
    PodInterface {
        name: if_name.to_string(),
        address: Ipv4Net::new_assert(address, range.subnet.prefix_len()),
        routes: vec![(DEFAULT_ROUTE, range.gateway)],
        sysctls: vec![
            (format!("net/ipv6/conf/{if_name}/accept_dad"), "0".into()),
            (format!("net/ipv4/conf/{if_name}/arp_notify"), "1".into()),
        ],
    }
}

#[cfg(test)]
pub(crate) mod tests;
