//! The in-process default network on the real kernel, beside Debian's real plugins in
//! `/usr/lib/cni`: an in-process attachment looks like the bridge plugin's (addresses,
//! routes, link state, hairpin, host-local files), shares host-local's pool with it, either
//! one is released by the other's DEL, `portmap` is chained for host ports, a half-made ADD
//! is released from its record, and DEL leaves no veth and no allocation. Needs root;
//! skipped without the plugins. Uses its own namespaces, bridges, subnets and network
//! name, and removes them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Map, Value};

const PLUGINS: &str = "/usr/lib/cni";
const NETWORKS: &str = "/var/lib/cni/networks";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("running a command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run(args: &[&str]) {
    let status = Command::new(args[0])
        .args(&args[1..])
        .status()
        .expect("running a command");
    assert!(status.success(), "{args:?}");
}

/// Removes namespaces, bridges and the allocation dir whatever happens to the test; DELs
/// first (while the namespaces live) so a failing assertion leaks no rule.
struct Cleanup {
    netns: Vec<String>,
    bridges: Vec<String>,
    network: String,
    pins: Vec<PathBuf>,
    client: Option<cni::Client>,
    containers: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(client) = &self.client {
            for id in &self.containers {
                let _ = client.del(id);
            }
        }
        for pin in &self.pins {
            let _ = cni::netns::unpin(pin);
        }
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        for bridge in &self.bridges {
            let _ = Command::new("ip").args(["link", "del", bridge]).status();
        }
        let _ = std::fs::remove_dir_all(Path::new(NETWORKS).join(&self.network));
    }
}

struct Setup {
    cleanup: Cleanup,
    client: cni::Client,
    list: cni::ConfList,
    bridge: String,
    tag: u32,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// `test`: a number of its own per test, as the tests run at once.
    fn new(test: u32) -> Option<Self> {
        if !Path::new(PLUGINS).join("bridge").exists() || !nix::unistd::geteuid().is_root() {
            eprintln!("skipping: needs root and {PLUGINS}");
            return None;
        }
        let tag = std::process::id() % 1000 * 10 + test;
        let dir = tempfile::tempdir().expect("tempdir");
        let bridge = format!("pdin{tag}");
        let network = format!("peapod-intest-{tag}");
        let mut conf = cni::config::default_conflist(&bridge, &subnet(tag));
        conf["name"] = json!(network);
        let list = cni::ConfList::from_json(conf, Path::new("test")).expect("list");
        let client = cni::Client::new(
            vec![PathBuf::from(PLUGINS)],
            dir.path().join("cache"),
            Arc::new(cni::RealExec),
        );
        Some(Self {
            cleanup: Cleanup {
                netns: Vec::new(),
                bridges: vec![bridge.clone()],
                network,
                pins: Vec::new(),
                client: Some(client.clone()),
                containers: Vec::new(),
            },
            client,
            list,
            bridge,
            tag,
            _dir: dir,
        })
    }

    /// A new namespace, pinned as the agent pins a sandbox's.
    fn netns(&mut self, name: &str) -> (String, PathBuf) {
        let ns = format!("pdin-{name}-{}", self.tag);
        run(&["ip", "netns", "add", &ns]);
        self.cleanup.netns.push(ns.clone());
        let pin = self._dir.path().join("netns").join(name);
        cni::netns::pin(&Path::new("/run/netns").join(&ns), &pin).expect("pin");
        self.cleanup.pins.push(pin.clone());
        (ns, pin)
    }

    fn rt(&mut self, id: &str, pin: &Path, host_port: Option<u16>) -> cni::RuntimeConf {
        let id = format!("{id}{}aaaaaaaaaaaaaaaa", self.tag);
        self.cleanup.containers.push(id.clone());
        let mut caps = Map::new();
        if let Some(port) = host_port {
            caps.insert(
                "portMappings".into(),
                json!([{"hostPort": port, "containerPort": 80, "protocol": "tcp"}]),
            );
        }
        cni::RuntimeConf {
            container_id: id,
            netns: pin.to_path_buf(),
            if_name: "eth0".into(),
            args: vec![("IgnoreUnknown".into(), "1".into())],
            capability_args: caps,
        }
    }

    fn allocation(&self, ip: &str) -> PathBuf {
        Path::new(NETWORKS).join(&self.cleanup.network).join(ip)
    }

    fn ports(&self) -> String {
        sh(&["ip", "-o", "link", "show", "master", &self.bridge])
    }
}

fn subnet(tag: u32) -> String {
    format!("10.{}.{}.0/24", 200 + tag % 50, tag % 250)
}

/// `ip` output with this attachment's own values (addresses, names, indexes) blanked, to
/// compare a plugin-made attachment with an in-process one.
fn shape(text: &str, ns: &str, result: &Value) -> String {
    let mut own: Vec<String> = vec![ns.to_string()];
    for iface in result["interfaces"].as_array().into_iter().flatten() {
        for key in ["name", "mac"] {
            own.extend(iface[key].as_str().map(str::to_string));
        }
    }
    for ip in result["ips"].as_array().into_iter().flatten() {
        own.extend(
            ip["address"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .map(str::to_string),
        );
    }
    own.retain(|v| v != "eth0");
    // Whole words only (an address is a prefix of its broadcast address); numbers
    // (interface indexes, port ids, timers) and the IPv6 link-local address differ per link.
    text.split_whitespace()
        .filter(|w| {
            !w.starts_with("fe80")
                && !w.contains("@if")
                && !w.starts_with("0x")
                && w.trim_end_matches(':').parse::<f64>().is_err()
        })
        .map(|w| {
            let own_word = own.iter().any(|v| {
                w == v
                    || w.strip_prefix(v.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            });
            if own_word {
                "X"
            } else {
                w
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn inside(ns: &str, args: &[&str]) -> String {
    let mut full = vec!["ip", "-n", ns];
    full.extend_from_slice(args);
    sh(&full)
}

fn sysctl(ns: &str, key: &str) -> String {
    sh(&["ip", "netns", "exec", ns, "sysctl", "-n", key])
        .trim()
        .to_string()
}

/// Everything observable about the pod's side and the host's port, as text.
fn observe(ns: &str, result: &Value) -> String {
    let host = result["interfaces"][1]["name"].as_str().unwrap_or_default();
    let text = [
        inside(ns, &["-o", "addr", "show", "eth0"]),
        inside(ns, &["route", "show"]),
        inside(ns, &["-o", "link", "show", "lo"]),
        inside(ns, &["-o", "link", "show", "eth0"]),
        sysctl(ns, "net.ipv4.conf.eth0.arp_notify"),
        sysctl(ns, "net.ipv6.conf.eth0.accept_dad"),
        sh(&["ip", "-o", "-d", "link", "show", host]),
        inside(ns, &["-o", "-d", "link", "show", "eth0"]),
        sh(&["bridge", "-d", "link", "show", "dev", host]),
    ]
    .join("\n");
    shape(&text, ns, result)
}

#[test]
fn in_process_attachments_match_the_plugins_and_release_either_way() {
    let Some(mut s) = Setup::new(1) else { return };
    let (ns_a, pin_a) = s.netns("a");
    let (ns_b, pin_b) = s.netns("b");
    let rt_a = s.rt("ina", &pin_a, None);
    let rt_b = s.rt("inb", &pin_b, None);

    let started = std::time::Instant::now();
    let a = s
        .client
        .add_default(&s.list, &rt_a)
        .expect("in-process ADD");
    eprintln!("in-process ADD took {:?}", started.elapsed());
    let b = s.client.add(&s.list, &rt_b).expect("plugin ADD");
    let entry_a = s.client.cached_for(&rt_a.container_id).remove(0);
    let entry_b = s.client.cached_for(&rt_b.container_id).remove(0);
    assert_eq!(entry_a.made_by, cni::MadeBy::InProcess);
    assert_eq!(entry_b.made_by, cni::MadeBy::Plugins);

    // One pool: the plugin's host-local takes the address after the in-process one.
    let prefix = subnet(s.tag).trim_end_matches("0/24").to_string();
    let (ip_a, ip_b) = (a.ips[0].to_string(), b.ips[0].to_string());
    assert_eq!(ip_a, format!("{prefix}2"));
    assert_eq!(ip_b, format!("{prefix}3"));
    assert_eq!(
        std::fs::read(s.allocation(&ip_a)).expect("allocation"),
        format!("{}\r\neth0", rt_a.container_id).as_bytes()
    );

    // The same result shape as the bridge plugin's, field by field.
    let keys = |v: &Value| {
        let mut k: Vec<String> = v.as_object().expect("object").keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&a.raw), keys(&b.raw), "{} vs {}", a.raw, b.raw);
    assert_eq!(
        a.raw["interfaces"][0], b.raw["interfaces"][0],
        "one bridge, one MAC"
    );
    assert_eq!(a.raw["routes"], b.raw["routes"]);
    assert_eq!(a.raw["ips"][0]["gateway"], b.raw["ips"][0]["gateway"]);
    assert_eq!(a.raw["ips"][0]["interface"], 2);
    assert_eq!(a.raw["interfaces"][2]["sandbox"], json!(pin_a));

    // The same kernel state: addresses, routes, lo and eth0 up, sysctls, the host port's
    // flags, bridge and hairpin mode. (Debian's plugins run loopback last in the chain.)
    let seen_a = observe(&ns_a, &a.raw);
    let seen_b = observe(&ns_b, &b.raw);
    assert_eq!(seen_a, seen_b);
    assert!(seen_a.contains("hairpin on"), "{seen_a}");
    assert!(seen_a.contains("default via"), "{seen_a}");
    assert!(inside(&ns_a, &["-o", "link", "show", "lo"]).contains("UP"));
    let gateway = format!("{prefix}1/24");
    assert!(sh(&["ip", "-o", "addr", "show", "dev", &s.bridge]).contains(&gateway));
    assert_eq!(s.ports().lines().count(), 2);
    // Traffic flows between the two over the bridge (busybox's ping: the tests' images
    // are busybox already).
    assert!(Command::new("ip")
        .args(["netns", "exec", &ns_a, "busybox", "ping", "-c", "1", "-W", "5", &ip_b])
        .status()
        .map(|st| st.success())
        .unwrap_or(false));

    // Either is released by the other's DEL.
    let mut swapped_a = entry_a.clone();
    swapped_a.made_by = cni::MadeBy::Plugins;
    let mut swapped_b = entry_b.clone();
    swapped_b.made_by = cni::MadeBy::InProcess;
    s.client
        .del_entry(&swapped_a)
        .expect("plugin DEL of an in-process attachment");
    s.client
        .del_entry(&swapped_b)
        .expect("in-process DEL of a plugin attachment");
    assert!(!s.allocation(&ip_a).exists() && !s.allocation(&ip_b).exists());
    assert_eq!(s.ports().trim(), "", "no veth left");
    assert_eq!(inside(&ns_a, &["-o", "link", "show", "eth0"]), "");
    assert!(s.client.cached().is_empty());
    // DEL is idempotent.
    s.client.del_entry(&entry_a).expect("DEL again");
    s.client.del_entry(&entry_b).expect("DEL again");
}

#[test]
fn host_ports_chain_portmap_and_del_leaves_nothing() {
    let Some(mut s) = Setup::new(2) else { return };
    let (ns, pin) = s.netns("p");
    let port = 39000 + (s.tag % 1000) as u16;
    let rt = s.rt("inp", &pin, Some(port));
    let added = s.client.add_default(&s.list, &rt).expect("ADD");
    let entry = s.client.cached_for(&rt.container_id).remove(0);
    assert_eq!(entry.made_by, cni::MadeBy::InProcess);
    let rules = sh(&["iptables-save"]);
    assert!(
        rules.contains(&rt.container_id) && rules.contains(&port.to_string()),
        "portmap's DNAT for the pod"
    );
    assert!(inside(&ns, &["-o", "addr", "show", "eth0"]).contains(&added.ips[0].to_string()));

    s.client.del(&rt.container_id).expect("DEL");
    assert!(
        !sh(&["iptables-save"]).contains(&rt.container_id),
        "rules left"
    );
    assert!(!s.allocation(&added.ips[0].to_string()).exists());
    assert_eq!(s.ports().trim(), "", "no veth left");
    assert_eq!(inside(&ns, &["-o", "link", "show", "eth0"]), "");
    assert!(!inside(&ns, &["-o", "link", "show", "lo"]).contains(",UP"));
    s.client.del_entry(&entry).expect("DEL again");
}

#[test]
fn a_half_made_attachment_is_released_from_its_record() {
    let Some(mut s) = Setup::new(3) else { return };
    let (ns, pin) = s.netns("h");
    // A bridge holding another address makes ADD fail after the veth, the address and the
    // pod's side are made: what a crash at that point would leave.
    run(&["ip", "link", "add", &s.bridge, "type", "bridge"]);
    run(&["ip", "addr", "add", "198.18.250.1/24", "dev", &s.bridge]);
    let rt = s.rt("inh", &pin, None);
    let err = s
        .client
        .add_default(&s.list, &rt)
        .expect_err("foreign bridge address");
    assert!(err.to_string().contains("in-process network"), "{err}");
    let entry = s.client.cached_for(&rt.container_id).remove(0);
    assert_eq!(entry.result, None);
    let ip = format!("{}2", subnet(s.tag).trim_end_matches("0/24"));
    assert!(s.allocation(&ip).exists());
    assert_eq!(s.ports().lines().count(), 1);
    assert!(inside(&ns, &["-o", "addr", "show", "eth0"]).contains(&ip));

    s.client.del(&rt.container_id).expect("DEL from the record");
    assert!(!s.allocation(&ip).exists());
    assert_eq!(s.ports().trim(), "", "no veth left");
    assert!(s.client.cached().is_empty());
}
