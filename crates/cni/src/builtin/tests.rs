//! The in-process plan against a recording fake kernel and a temporary host-local store.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use serde_json::json;

use super::links::Mac;
use super::*;
use crate::config::default_conflist;

/// A kernel of named links and their IPv4 addresses; records every call.
#[derive(Default)]
pub(crate) struct FakeLinks {
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    links: BTreeMap<String, Link>,
    addresses: BTreeMap<u32, Vec<Ipv4Net>>,
    calls: Vec<String>,
    pods: Vec<PodInterface>,
    /// Names reported as taken (EEXIST) by the next `add_veth` calls.
    taken: usize,
    /// The pod's interface exists already in its namespace.
    pod_if_exists: bool,
    next_index: u32,
}

fn exists(op: &str) -> LinkError {
    LinkError::Kernel {
        op: op.into(),
        source: std::io::Error::from_raw_os_error(nix::libc::EEXIST),
    }
}

impl FakeState {
    fn add(&mut self, name: &str, kind: &str) -> Link {
        self.next_index += 1;
        let index = self.next_index;
        let link = Link {
            index,
            mac: Mac([2, 0, 0, 0, 0, index as u8]),
            kind: Some(kind.into()),
            up: false,
            oper_up: false,
        };
        self.links.insert(name.into(), link.clone());
        link
    }
    fn by_index(&mut self, index: u32) -> Option<&mut Link> {
        self.links.values_mut().find(|l| l.index == index)
    }
}

impl FakeLinks {
    pub(crate) fn calls(&self) -> Vec<String> {
        self.state.lock().expect("lock").calls.clone()
    }
    fn pods(&self) -> Vec<PodInterface> {
        self.state.lock().expect("lock").pods.clone()
    }
    fn with(&self, f: impl FnOnce(&mut FakeState)) {
        f(&mut self.state.lock().expect("lock"));
    }
    fn record(&self, call: String) -> std::sync::MutexGuard<'_, FakeState> {
        let mut state = self.state.lock().expect("lock");
        state.calls.push(call);
        state
    }
}

impl Links for FakeLinks {
    fn link(&self, name: &str) -> Result<Option<Link>, LinkError> {
        Ok(self.state.lock().expect("lock").links.get(name).cloned())
    }
    fn add_bridge(&self, name: &str) -> Result<(), LinkError> {
        let mut s = self.record(format!("add_bridge {name}"));
        if s.links.contains_key(name) {
            return Err(exists("add_bridge"));
        }
        s.add(name, "bridge");
        Ok(())
    }
    fn add_veth(&self, host: &str, peer: &str, _netns: &File) -> Result<(), LinkError> {
        let mut s = self.record(format!("add_veth {peer}"));
        if s.taken > 0 {
            s.taken -= 1;
            s.add(host, "veth");
            return Err(exists("add_veth"));
        }
        if s.pod_if_exists {
            return Err(exists("add_veth"));
        }
        s.add(host, "veth");
        Ok(())
    }
    fn set_up(&self, index: u32) -> Result<(), LinkError> {
        let mut s = self.record(format!("set_up {index}"));
        if let Some(l) = s.by_index(index) {
            l.up = true;
            // Both ends of the fake veth are up by the time the plan looks.
            l.oper_up = true;
        }
        Ok(())
    }
    fn set_master(&self, index: u32, master: u32) -> Result<(), LinkError> {
        drop(self.record(format!("set_master {index} {master}")));
        Ok(())
    }
    fn set_hairpin(&self, index: u32) -> Result<(), LinkError> {
        drop(self.record(format!("set_hairpin {index}")));
        Ok(())
    }
    fn set_mac(&self, index: u32, mac: Mac) -> Result<(), LinkError> {
        drop(self.record(format!("set_mac {index} {mac}")));
        Ok(())
    }
    fn ipv4_addresses(&self, index: u32) -> Result<Vec<Ipv4Net>, LinkError> {
        let s = self.state.lock().expect("lock");
        Ok(s.addresses.get(&index).cloned().unwrap_or_default())
    }
    fn add_ipv4_address(&self, index: u32, address: Ipv4Net) -> Result<(), LinkError> {
        let mut s = self.record(format!("add_address {index} {address}"));
        s.addresses.entry(index).or_default().push(address);
        Ok(())
    }
    fn set_sysctl(&self, key: &str, value: &str) -> std::io::Result<()> {
        drop(self.record(format!("sysctl {key}={value}")));
        Ok(())
    }
    fn configure_pod(&self, _netns: &File, pod: &PodInterface) -> Result<Mac, LinkError> {
        let mut s = self.record(format!("configure_pod {}", pod.name));
        s.pods.push(pod.clone());
        Ok(Mac([0x0a, 0x58, 0, 0, 0, 1]))
    }
    fn release_pod(&self, _netns: &File, if_name: &str) -> Result<(), LinkError> {
        drop(self.record(format!("release_pod {if_name}")));
        Ok(())
    }
}

pub(crate) struct Fixture {
    pub(crate) links: Arc<FakeLinks>,
    pub(crate) builtin: Builtin,
    pub(crate) dir: tempfile::TempDir,
    /// Stands in for the pod's namespace file (the fake never enters it).
    pub(crate) netns: PathBuf,
}

pub(crate) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let links = Arc::new(FakeLinks::default());
    let builtin = Builtin::new(links.clone(), dir.path().join("networks"));
    let netns = dir.path().join("netns");
    std::fs::write(&netns, "").expect("netns file");
    Fixture {
        links,
        builtin,
        dir,
        netns,
    }
}

fn net() -> DefaultNet {
    DefaultNet {
        name: "peapod".into(),
        cni_version: CNI_VERSION.into(),
        bridge: "peapod0".into(),
        subnet: "10.244.0.0/24".parse().expect("cidr"),
    }
}

fn list(value: Value) -> Option<DefaultNet> {
    DefaultNet::of(&ConfList::from_json(value, Path::new("x")).expect("list"))
}

#[test]
fn only_the_exact_default_list_is_done_in_process() {
    let default = default_conflist("peapod0", "10.244.0.0/24");
    assert_eq!(list(default.clone()), Some(net()));
    let mut renamed = default_conflist("br9", "10.9.0.0/16");
    renamed["name"] = json!("other");
    let other = list(renamed).expect("same shape, other names");
    assert_eq!(
        (other.name.as_str(), other.bridge.as_str()),
        ("other", "br9")
    );
    assert_eq!(other.subnet.to_string(), "10.9.0.0/16");

    let mut masq = default.clone();
    masq["plugins"][0]["ipMasq"] = json!(true);
    assert_eq!(list(masq), None);
    let mut mtu = default.clone();
    mtu["plugins"][0]["mtu"] = json!(1400);
    assert_eq!(list(mtu), None);
    let mut chained = default.clone();
    chained["plugins"]
        .as_array_mut()
        .expect("plugins")
        .push(json!({"type": "bandwidth"}));
    assert_eq!(list(chained), None);
    let mut version = default.clone();
    version["cniVersion"] = json!("0.4.0");
    assert_eq!(list(version), None);
    assert_eq!(list(default_conflist("peapod0", "fd00:10::/64")), None);
}

#[test]
fn add_builds_what_the_bridge_plugin_builds_and_returns_its_result() {
    let f = fixture();
    let result = f
        .builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect("add");

    let calls = f.links.calls();
    let veth = calls
        .iter()
        .position(|c| c == "add_veth eth0")
        .expect("veth made");
    let host_name = result["interfaces"][1]["name"]
        .as_str()
        .expect("host veth")
        .to_string();
    assert!(
        host_name.len() == 12
            && host_name.starts_with("veth")
            && host_name[4..].chars().all(|c| c.is_ascii_hexdigit()),
        "{host_name}"
    );
    let bridge = f.links.link("peapod0").expect("link").expect("bridge");
    let host = f.links.link(&host_name).expect("link").expect("host side");
    let expected = [
        "add_bridge peapod0".to_string(),
        "sysctl net/ipv6/conf/peapod0/accept_ra=0".into(),
        format!("set_up {}", bridge.index),
        "add_veth eth0".into(),
        format!("set_up {}", host.index),
        format!("sysctl net/ipv6/conf/{host_name}/accept_ra=0"),
        format!("set_master {} {}", host.index, bridge.index),
        format!("set_hairpin {}", host.index),
        "configure_pod eth0".into(),
        format!("add_address {} 10.244.0.1/24", bridge.index),
        format!("set_mac {} {}", bridge.index, bridge.mac),
        "sysctl net/ipv4/ip_forward=1".into(),
    ];
    assert_eq!(calls, expected);
    assert_eq!(veth, 3);

    let pods = f.links.pods();
    assert_eq!(
        pods,
        [PodInterface {
            name: "eth0".into(),
            address: "10.244.0.2/24".parse().expect("cidr"),
            routes: vec![(
                "0.0.0.0/0".parse().expect("cidr"),
                Ipv4Addr::new(10, 244, 0, 1)
            )],
            sysctls: vec![
                ("net/ipv6/conf/eth0/accept_dad".into(), "0".into()),
                ("net/ipv4/conf/eth0/arp_notify".into(), "1".into()),
            ],
        }]
    );
    assert_eq!(
        result,
        json!({
            "cniVersion": "1.0.0",
            "interfaces": [
                {"name": "peapod0", "mac": bridge.mac.to_string()},
                {"name": host_name, "mac": host.mac.to_string()},
                {"name": "eth0", "mac": "0a:58:00:00:00:01", "sandbox": f.netns},
            ],
            "ips": [{"interface": 2, "address": "10.244.0.2/24", "gateway": "10.244.0.1"}],
            "routes": [{"dst": "0.0.0.0/0"}],
            "dns": {},
        })
    );
    // host-local's file for the address.
    let file = f.dir.path().join("networks/peapod/10.244.0.2");
    assert_eq!(std::fs::read(file).expect("ip file"), b"sandbox1\r\neth0");
}

#[test]
fn a_second_pod_reuses_the_bridge_and_its_gateway() {
    let f = fixture();
    f.builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect("add");
    let before = f.links.calls().len();
    let second = f
        .builtin
        .add(&net(), "sandbox2", "eth0", &f.netns)
        .expect("add");
    assert_eq!(second["ips"][0]["address"], "10.244.0.3/24");
    let calls = &f.links.calls()[before..];
    assert!(
        !calls
            .iter()
            .any(|c| c.starts_with("add_address") || c.starts_with("set_mac")),
        "{calls:?}"
    );
    // The bridge was up already.
    let bridge = f.links.link("peapod0").expect("link").expect("bridge");
    assert!(
        !calls.contains(&format!("set_up {}", bridge.index)),
        "{calls:?}"
    );
}

#[test]
fn a_taken_host_name_is_retried_but_a_taken_pod_name_is_an_error() {
    let f = fixture();
    f.links.with(|s| s.taken = 2);
    f.builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect("add after two taken names");
    let tries = f
        .links
        .calls()
        .iter()
        .filter(|c| *c == "add_veth eth0")
        .count();
    assert_eq!(tries, 3);

    let f = fixture();
    f.links.with(|s| s.pod_if_exists = true);
    let err = f
        .builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect_err("eth0 exists");
    assert!(
        matches!(&err, BuiltinError::PodInterfaceExists { name } if name == "eth0"),
        "{err}"
    );
}

#[test]
fn a_foreign_bridge_or_address_is_refused() {
    let f = fixture();
    f.links.with(|s| {
        s.add("peapod0", "dummy");
    });
    let err = f
        .builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect_err("not a bridge");
    assert!(matches!(err, BuiltinError::NotABridge { .. }), "{err}");

    let f = fixture();
    f.links.with(|s| {
        let bridge = s.add("peapod0", "bridge");
        s.addresses
            .insert(bridge.index, vec!["192.168.7.1/24".parse().expect("cidr")]);
    });
    let err = f
        .builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect_err("another address");
    assert_eq!(
        err.to_string(),
        "\"peapod0\" already has an IP address different from 10.244.0.1/24"
    );
}

#[test]
fn del_releases_the_allocation_and_is_idempotent() {
    let f = fixture();
    f.builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect("add");
    let file = f.dir.path().join("networks/peapod/10.244.0.2");
    assert!(file.exists());
    f.builtin
        .del("peapod", "sandbox1", "eth0", &f.netns)
        .expect("del");
    assert!(!file.exists());
    // The stand-in namespace file is no namespace: its links are taken as gone.
    assert!(!f.links.calls().iter().any(|c| c.starts_with("release_pod")));
    f.builtin
        .del("peapod", "sandbox1", "eth0", &f.netns)
        .expect("again");
    f.builtin
        .del("never-used", "sandbox1", "eth0", &f.dir.path().join("gone"))
        .expect("nothing at all");
    assert!(!f.dir.path().join("networks/never-used").exists());
}

#[test]
fn a_failed_add_leaves_what_del_releases() {
    let f = fixture();
    f.links.with(|s| {
        let bridge = s.add("peapod0", "bridge");
        s.addresses
            .insert(bridge.index, vec!["192.168.7.1/24".parse().expect("cidr")]);
    });
    f.builtin
        .add(&net(), "sandbox1", "eth0", &f.netns)
        .expect_err("fails after allocating");
    let file = f.dir.path().join("networks/peapod/10.244.0.2");
    assert!(file.exists(), "allocated before the failure");
    f.builtin
        .del("peapod", "sandbox1", "eth0", &f.netns)
        .expect("del");
    assert!(!file.exists());
}
