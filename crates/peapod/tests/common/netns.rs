//! Test "machines" on this one host, for multi-node tests: a [`TestBridge`] on the host with
//! a private test subnet (198.18.0.0/15, the benchmarking range), and per [`NetnsNode`] a
//! network namespace wired to it by a veth, a mount namespace of its own (held by a sleeping
//! process, so `peapod agent` and `peapod reset` run in the same one), its own state dir,
//! CNI config dir and CNI allocation dir (bind-mounted over /var/lib/cni inside it), running
//! `peapod agent` against a control plane on the host. Dropping a node stops its agent, runs
//! `peapod reset` inside it, checks that nothing of its pods is left, and removes its
//! namespaces; dropping the bridge removes it. Both also clean up when a test fails.

use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{fixtures, kill_child, tail, terminate_child, wait_until, Peapod, PEAPOD};

/// Runs a command to completion, asserting success; returns stdout.
pub fn sh(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a command, ignoring failure (teardown of what may be gone already).
fn quietly(program: &str, args: &[&str]) {
    let _ = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// A bridge on the host joining the test nodes, with the host's address `<prefix>.1/24`.
pub struct TestBridge {
    pub name: String,
    /// The first three octets of the subnet.
    pub prefix: String,
}

impl TestBridge {
    /// A bridge of its own: each one this process makes gets its own name and subnet
    /// (tests of one binary run in parallel), alternating between `198.18.x` and `198.19.x`
    /// so two bridges made one after the other are never one subnet.
    pub fn create() -> Self {
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let k = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        Self::with(
            format!("ppmn{}{}", pid % 100_000, k % 100),
            format!("198.{}.{}", 18 + k % 2, (pid + k / 2) % 250 + 1),
        )
    }

    fn with(name: String, prefix: String) -> Self {
        let bridge = TestBridge { name, prefix };
        quietly("ip", &["link", "del", &bridge.name]);
        sh("ip", &["link", "add", &bridge.name, "type", "bridge"]);
        sh(
            "ip",
            &[
                "addr",
                "add",
                &format!("{}/24", bridge.host_ip()),
                "dev",
                &bridge.name,
            ],
        );
        sh("ip", &["link", "set", &bridge.name, "up"]);
        bridge
    }

    pub fn host_ip(&self) -> String {
        format!("{}.1", self.prefix)
    }

    pub fn node_ip(&self, index: u8) -> String {
        format!("{}.{}", self.prefix, 10 + u16::from(index))
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        // Routes through it (the host node's to the test nodes' pods) go with it.
        quietly("ip", &["link", "del", &self.name]);
    }
}

/// One test node: namespaces, dirs and (once started) its `peapod agent`.
pub struct NetnsNode {
    pub name: String,
    pub ip: String,
    pub netns: String,
    dir: tempfile::TempDir,
    pub state_dir: PathBuf,
    holder: Option<Child>,
    agent: Option<Child>,
}

impl NetnsNode {
    /// Creates the namespaces and dirs, wires the node to `bridge` as `<prefix>.<10+index>`
    /// and imports the busybox image into its state dir.
    pub fn create(bridge: &TestBridge, index: u8, name: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("peapod-e2e-node-")
            .tempdir()
            .expect("tempdir");
        let mut node = NetnsNode {
            name: name.to_string(),
            ip: bridge.node_ip(index),
            netns: format!("{}-n{index}", bridge.name),
            state_dir: dir.path().join("state"),
            dir,
            holder: None,
            agent: None,
        };
        let veth = format!("{}v{index}", bridge.name);
        quietly("ip", &["netns", "del", &node.netns]);
        sh("ip", &["netns", "add", &node.netns]);
        sh(
            "ip",
            &[
                "link",
                "add",
                &veth,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                &node.netns,
            ],
        );
        sh("ip", &["link", "set", &veth, "master", &bridge.name, "up"]);
        let ns = node.netns.clone();
        let ipns = |args: &[&str]| {
            let mut all = vec!["-n", ns.as_str()];
            all.extend_from_slice(args);
            sh("ip", &all);
        };
        ipns(&["addr", "add", &format!("{}/24", node.ip), "dev", "eth0"]);
        ipns(&["link", "set", "eth0", "up"]);
        ipns(&["link", "set", "lo", "up"]);
        // The holder: a process in the node's network namespace and a new mount namespace
        // (mounts from the host still propagate in, none leak out).
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "--", "nsenter"])
            .arg(format!("--net=/run/netns/{}", node.netns))
            .args(["--", "sleep", "100000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawning the node's namespace holder");
        let pid = holder.id();
        node.holder = Some(holder);
        wait_until("the node's namespaces", Duration::from_secs(10), || {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            (comm.trim() == "sleep").then_some(())
        });
        let cni_lib = node.dir.path().join("cni-lib");
        fs::create_dir_all(&cni_lib).expect("cni lib dir");
        let status = node
            .nsenter()
            .args(["mount", "--bind"])
            .arg(&cni_lib)
            .arg("/var/lib/cni")
            .status()
            .expect("bind-mounting the node's CNI dir");
        assert!(status.success(), "bind-mounting the node's CNI dir failed");
        let archive = fixtures().join("busybox.oci.tar");
        sh(
            PEAPOD,
            &[
                "image",
                "import",
                archive.to_str().expect("utf-8 path"),
                "--state-dir",
                node.state_dir.to_str().expect("utf-8 path"),
            ],
        );
        node
    }

    /// A command run inside the node's network and mount namespaces.
    pub fn nsenter(&self) -> Command {
        let pid = self.holder.as_ref().map(Child::id).unwrap_or_default();
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &pid.to_string(), "-m", "-n", "--"]);
        cmd
    }

    /// Starts `peapod agent --proxy` against `pp` (its kubeconfig, node token and a node API
    /// certificate from its CA).
    pub fn start_agent(&mut self, pp: &Peapod) {
        let kubeconfig = pp.kubeconfig.to_str().expect("utf-8 path").to_string();
        let mut args = vec!["agent".to_string(), "--kubeconfig".into(), kubeconfig];
        args.extend(self.node_api_args(pp));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start_agent_with(&args);
    }

    /// The node API flags of an agent of `pp` (its node token and a serving certificate
    /// from its CA), and `--proxy`.
    fn node_api_args(&self, pp: &Peapod) -> Vec<String> {
        let cert = self.dir.path().join("node.crt");
        let key = self.dir.path().join("node.key");
        let path = |p: &std::path::Path| p.to_str().expect("utf-8 path").to_string();
        pp.peapod(&[
            "node-cert",
            "--san",
            &self.ip,
            "--san",
            &self.name,
            "--cert",
            &path(&cert),
            "--key",
            &path(&key),
        ]);
        vec![
            "--node-api-token-file".into(),
            path(&pp.state_dir.join("node-api-token")),
            "--tls-cert-file".into(),
            path(&cert),
            "--tls-private-key-file".into(),
            path(&key),
            "--proxy".into(),
        ]
    }

    /// Starts `peapod join JOIN_ARGS` (`--server`, `--token`, the CA flags) with `pp`'s node
    /// API flags, as [`NetnsNode::start_agent`] does for `peapod agent`.
    pub fn start_join(&mut self, pp: &Peapod, join_args: &[&str]) {
        let mut args = vec!["join".to_string()];
        args.extend(join_args.iter().map(|a| a.to_string()));
        args.extend(self.node_api_args(pp));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.start_agent_with(&args);
    }

    /// Runs `peapod join JOIN_ARGS` in the node to its end (for joins that must fail).
    pub fn join_output(&self, join_args: &[&str]) -> std::process::Output {
        self.nsenter()
            .arg(PEAPOD)
            .arg("join")
            .args(join_args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--node-name", &self.name])
            .arg("--cni-conf-dir")
            .arg(self.dir.path().join("net.d"))
            .stdin(Stdio::null())
            .output()
            .expect("running peapod join")
    }

    /// Starts `peapod ARGS` (an `agent` or a `join`) in the node with its name, address,
    /// state dir and CNI config dir.
    pub fn start_agent_with(&mut self, args: &[&str]) {
        let log = fs::File::create(self.log_path()).expect("agent log");
        let config = self.dir.path().join("kubelet-config.yaml");
        let mut config_args = Vec::new();
        if !args.contains(&"--config") {
            super::write_kubelet_config(&config, "");
            config_args = vec![
                "--config".to_string(),
                config.to_str().expect("utf-8 path").to_string(),
            ];
        }
        let child = self
            .nsenter()
            .arg(PEAPOD)
            .args(args)
            .args(&config_args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .args(["--node-name", &self.name])
            .arg("--node-api-listen")
            .arg(format!("{}:10250", self.ip))
            .arg("--cni-conf-dir")
            .arg(self.dir.path().join("net.d"))
            .env("PEAPOD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawning the node's agent");
        self.agent = Some(child);
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("agent.log")
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// SIGKILLs the agent, as when the node's machine dies; its pods keep running.
    pub fn kill_agent(&mut self) {
        if let Some(agent) = self.agent.take() {
            kill_child(agent);
        }
    }

    /// Panics with the agent's log when it has exited.
    pub fn assert_alive(&mut self) {
        if let Some(child) = self.agent.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the agent of {} exited ({status}); log:\n{}",
                    self.name,
                    tail(&self.log(), 60)
                );
            }
        }
    }

    /// `ip ARGS` inside the node's network namespace.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", self.netns.as_str()];
        all.extend_from_slice(args);
        sh("ip", &all)
    }

    /// Mounts of the node's mount namespace under its state dir.
    fn mounts_left(&self) -> Vec<String> {
        let Some(pid) = self.holder.as_ref().map(Child::id) else {
            return Vec::new();
        };
        let needle = self.state_dir.to_string_lossy().into_owned();
        fs::read_to_string(format!("/proc/{pid}/mountinfo"))
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(&needle))
            .map(str::to_string)
            .collect()
    }

    /// Addresses still allocated by host-local in the node's CNI dir.
    fn allocations_left(&self) -> Vec<String> {
        fs::read_dir(self.dir.path().join("cni-lib/networks/peapod"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NetnsNode {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!(
                "agent log tail of {}:\n{}",
                self.name,
                tail(&self.log(), 60)
            );
        }
        if let Some(agent) = self.agent.take() {
            terminate_child(agent);
        }
        let mut problems = Vec::new();
        if self.holder.is_some() && self.state_dir.exists() {
            match self
                .nsenter()
                .arg(PEAPOD)
                .args(["reset", "--state-dir"])
                .arg(&self.state_dir)
                .output()
            {
                Ok(out) if out.status.success() => {}
                Ok(out) => problems.push(format!(
                    "peapod reset in {} failed: {}",
                    self.name,
                    String::from_utf8_lossy(&out.stderr)
                )),
                Err(e) => problems.push(format!("running peapod reset: {e}")),
            }
            let mounts = self.mounts_left();
            if !mounts.is_empty() {
                problems.push(format!("mounts left in {}: {mounts:?}", self.name));
            }
            let ips = self.allocations_left();
            if !ips.is_empty() {
                problems.push(format!("pod addresses left in {}: {ips:?}", self.name));
            }
        }
        let needle = self.state_dir.to_string_lossy().into_owned();
        let procs: Vec<String> = fs::read_dir("/proc")
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| {
                        let cmd = fs::read(e.path().join("cmdline")).ok()?;
                        let text = String::from_utf8_lossy(&cmd).replace('\0', " ");
                        text.contains(&needle).then_some(text)
                    })
                    .collect()
            })
            .unwrap_or_default();
        if !procs.is_empty() {
            problems.push(format!("processes left of {}: {procs:?}", self.name));
        }
        if let Some(holder) = self.holder.take() {
            kill_child(holder);
        }
        quietly("ip", &["netns", "del", &self.netns]);
        if !panicking {
            assert!(problems.is_empty(), "{}", problems.join("\n"));
        }
    }
}
