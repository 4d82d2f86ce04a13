//! The client against Debian's real plugins in `/usr/lib/cni`, in a network namespace made
//! with `ip netns add`: ADD gives an address and a veth, CHECK passes, DEL leaves no veth, no
//! host-local allocation and no iptables rule. Needs root; skipped when the plugins are not
//! installed. Uses its own bridge, subnet and network name, and removes them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use serde_json::{json, Map};

const PLUGINS: &str = "/usr/lib/cni";

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("running a command");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Removes the namespace, bridge and allocation dir whatever happens to the test.
struct Cleanup {
    netns: String,
    bridge: String,
    network: String,
    pin: PathBuf,
    /// DEL'd first (while the namespace lives) so a failing assertion leaks no rule.
    client: Option<(cni::Client, String)>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some((client, id)) = self.client.take() {
            let _ = client.del(&id);
        }
        let _ = cni::netns::unpin(&self.pin);
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        let _ = std::fs::remove_dir_all(Path::new("/var/lib/cni/networks").join(&self.network));
    }
}

#[test]
fn add_check_del_with_the_real_plugins_leaves_nothing() {
    if !Path::new(PLUGINS).join("bridge").exists() || !nix::unistd::geteuid().is_root() {
        eprintln!("skipping: needs root and {PLUGINS}");
        return;
    }
    let tag = std::process::id() % 10000;
    let dir = tempfile::tempdir().expect("tempdir");
    let cleanup = Cleanup {
        netns: format!("peapod-cnitest-{tag}"),
        bridge: format!("pdtest{tag}"),
        network: format!("peapod-cnitest-{tag}"),
        pin: dir.path().join("netns").join("pinned"),
        client: None,
    };
    let mut cleanup = cleanup;
    let status = Command::new("ip")
        .args(["netns", "add", &cleanup.netns])
        .status()
        .expect("ip netns add");
    assert!(status.success());
    // Pin it as the agent does, and let the plugins work through the pin.
    cni::netns::pin(&Path::new("/run/netns").join(&cleanup.netns), &cleanup.pin).expect("pin");
    assert!(cni::netns::is_pinned(&cleanup.pin));

    let mut conf = cni::config::default_conflist(&cleanup.bridge, "10.250.77.0/24");
    conf["name"] = json!(cleanup.network);
    let list = cni::ConfList::from_json(conf, Path::new("test")).expect("list");
    let client = cni::Client::new(
        vec![PathBuf::from("/opt/cni/bin"), PathBuf::from(PLUGINS)],
        dir.path().join("cache"),
        Arc::new(cni::RealExec),
    );
    let container_id = format!("cnitest{tag}aaaaaaaaaaaaaaaa");
    cleanup.client = Some((client.clone(), container_id.clone()));
    let mut caps = Map::new();
    caps.insert(
        "portMappings".into(),
        json!([{"hostPort": 38000 + tag % 1000, "containerPort": 80, "protocol": "tcp"}]),
    );
    let rt = cni::RuntimeConf {
        container_id: container_id.clone(),
        netns: cleanup.pin.clone(),
        if_name: "eth0".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), "default".into()),
            ("K8S_POD_NAME".into(), "cnitest".into()),
        ],
        capability_args: caps,
    };
    let started = std::time::Instant::now();
    let result = client.add(&list, &rt).expect("ADD");
    eprintln!(
        "CNI ADD (bridge+host-local, portmap, loopback) took {:?}",
        started.elapsed()
    );
    assert_eq!(result.ips.len(), 1, "{:?}", result.raw);
    assert!(
        result.ips[0].to_string().starts_with("10.250.77."),
        "{:?}",
        result.ips
    );
    let inside = sh(&["ip", "-n", &cleanup.netns, "-o", "addr", "show", "eth0"]);
    assert!(inside.contains(&result.ips[0].to_string()), "{inside}");
    let lo = sh(&["ip", "-n", &cleanup.netns, "-o", "link", "show", "lo"]);
    assert!(lo.contains("UP"), "loopback is up: {lo}");
    let alloc = Path::new("/var/lib/cni/networks")
        .join(&cleanup.network)
        .join(result.ips[0].to_string());
    assert!(alloc.exists(), "host-local recorded the address");
    assert!(
        sh(&["iptables-save"]).contains(&container_id),
        "rules carry the id"
    );

    let entry = client.cached_for(&container_id).remove(0);
    match client.check(&entry) {
        Ok(()) => {}
        // Debian's portmap 1.1.1 checks an IPv6 DNAT chain it never made for an IPv4-only
        // pod (fixed upstream later); bridge and host-local have passed by then.
        Err(cni::CniError::Plugin {
            plugin, message, ..
        }) if plugin == "portmap" && message.contains("ipv6") => {}
        Err(err) => panic!("CHECK: {err}"),
    }

    client.del(&container_id).expect("DEL");
    assert!(client.cached().is_empty());
    assert!(!alloc.exists(), "allocation released");
    let veths = sh(&["ip", "-o", "link", "show", "master", &cleanup.bridge]);
    assert!(veths.trim().is_empty(), "veths left: {veths}");
    let rules = sh(&["iptables-save"]);
    assert!(
        !rules.contains(&container_id),
        "rules left: {}",
        rules
            .lines()
            .filter(|l| l.contains(&container_id))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // DEL again (a retry after a crash) still succeeds.
    client
        .del_entry(&entry)
        .expect("second DEL of the same attachment");
    drop(cleanup);
}
