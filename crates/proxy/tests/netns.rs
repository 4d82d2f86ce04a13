//! The generated ruleset against the real kernel, inside a private network namespace (so the
//! host's nftables are never touched): the node's own traffic to a ClusterIP reaches the
//! endpoint through the DNAT, and cleanup leaves no table behind.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use proxy::rules::{ruleset, teardown, Protocol, ServicePort};

fn run(args: &[&str]) -> Result<String, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .map_err(|e| format!("{args:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A network namespace removed on drop, with the server process killed.
struct Netns {
    name: String,
    children: Vec<Child>,
}

impl Drop for Netns {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = run(&["ip", "netns", "del", &self.name]);
    }
}

fn nft_in(ns: &str, script: &str) -> Result<(), String> {
    let path = std::env::temp_dir().join(format!("{ns}.nft"));
    std::fs::write(&path, script).map_err(|e| e.to_string())?;
    let p = path.to_string_lossy().to_string();
    let r = run(&["ip", "netns", "exec", ns, "nft", "-f", &p]);
    let _ = std::fs::remove_file(&path);
    r.map(|_| ())
}

#[test]
fn cluster_ip_dnat_works_and_cleanup_removes_the_table() -> Result<(), String> {
    if !nix_root() {
        eprintln!("skipping: needs root");
        return Ok(());
    }
    let name = format!("peapod-proxy-test-{}", std::process::id());
    run(&["ip", "netns", "add", &name])?;
    let mut ns = Netns {
        name: name.clone(),
        children: Vec::new(),
    };
    run(&[
        "ip", "netns", "exec", &name, "ip", "link", "set", "lo", "up",
    ])?;
    run(&[
        "ip",
        "netns",
        "exec",
        &name,
        "ip",
        "addr",
        "add",
        "10.244.0.5/32",
        "dev",
        "lo",
    ])?;
    // A node has a default route; here a route for the service network stands in for it.
    run(&[
        "ip",
        "netns",
        "exec",
        &name,
        "ip",
        "route",
        "add",
        "10.96.0.0/12",
        "dev",
        "lo",
    ])?;
    let ports = vec![ServicePort {
        id: "t/web:80".into(),
        cluster_ip: Some("10.96.0.20".parse().map_err(|_| "ip")?),
        port: 80,
        protocol: Protocol::Tcp,
        node_port: Some(30080),
        endpoints: vec![("10.244.0.5".parse().map_err(|_| "ip")?, 8080)],
    }];
    nft_in(&name, &ruleset("peapod", "10.244.0.0/16", &ports))?;
    // Applying again replaces the table atomically (no "exists" error, no duplicates).
    nft_in(&name, &ruleset("peapod", "10.244.0.0/16", &ports))?;
    let listed = run(&[
        "ip", "netns", "exec", &name, "nft", "list", "table", "ip", "peapod",
    ])?;
    assert_eq!(
        listed.matches("dnat to 10.244.0.5:8080").count(),
        1,
        "{listed}"
    );

    let server = Command::new("ip")
        .args(["netns", "exec", &name, "python3", "-c",
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('10.244.0.5',8080))\ns.listen()\nwhile True:\n  c,_=s.accept()\n  c.sendall(b'hello from endpoint')\n  c.close()\n"])
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    ns.children.push(server);
    let client = "import socket\ns=socket.create_connection(('10.96.0.20',80),timeout=2)\nprint(s.recv(100).decode())";
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match run(&["ip", "netns", "exec", &name, "python3", "-c", client]) {
            Ok(out) if out.contains("hello from endpoint") => break,
            other if Instant::now() > deadline => return Err(format!("no answer: {other:?}")),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }

    nft_in(&name, &teardown("peapod"))?;
    nft_in(&name, &teardown("peapod"))?; // idempotent
    let tables = run(&["ip", "netns", "exec", &name, "nft", "list", "tables"])?;
    assert!(!tables.contains("peapod"), "{tables}");
    drop(ns);
    assert!(!run(&["ip", "netns", "list"])?.contains(&name));
    Ok(())
}

fn nix_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}
