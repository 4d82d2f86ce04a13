//! End-to-end harness: a real `peapod up` in a temp state dir, driven by the real kubectl.
//! Every `Peapod` stops its server, runs `peapod reset` and checks that nothing of its pods is
//! left on the machine (processes, mounts, cgroups) when dropped. `peapod controllers`
//! processes started beside it (`ControllerManager`) are killed when dropped.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the harness"
)]

pub mod crossnode;
pub mod etcd;
pub mod images;
pub mod netns;
pub mod registry;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const PEAPOD: &str = env!("CARGO_BIN_EXE_peapod");

/// CNI config dir every e2e `peapod up` uses; peapod writes its default conflist there.
pub const E2E_CNI_CONF_DIR: &str = "/run/peapod-e2e-cni/net.d";

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("workspace root")
}

/// Builds the busybox test images once per test binary; returns the output dir.
pub fn fixtures() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = workspace_root().join("target/fixtures");
        let status = Command::new("bash")
            .arg(workspace_root().join("tests/fixtures/build-busybox-image.sh"))
            .arg(&out)
            .status()
            .expect("running build-busybox-image.sh");
        assert!(
            status.success(),
            "building the busybox fixture image failed"
        );
        out
    })
}

/// Writes a KubeletConfiguration at `path` with the test's `settings` (YAML lines), plus
/// what makes a test independent of how full this machine's disk is, unless `settings`
/// sets it itself: image GC off (`imageGCHighThresholdPercent: 100`) and only the memory
/// eviction signal (a partial `evictionHard` leaves the disk signals out, as the kubelet's
/// does).
pub fn write_kubelet_config(path: &Path, settings: &str) {
    let mut text =
        String::from("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n");
    text.push_str(settings);
    if !settings.contains("imageGCHighThresholdPercent:") {
        text.push_str("imageGCHighThresholdPercent: 100\n");
    }
    if !settings.contains("evictionHard:") {
        text.push_str("evictionHard:\n  memory.available: \"<100Mi\"\n");
    }
    fs::write(path, text).expect("writing the kubelet config");
}

/// Polls `f` until it returns Some, or panics with `what` after `timeout`.
pub fn wait_until<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub struct Peapod {
    pub state_dir: PathBuf,
    _tmp: tempfile::TempDir,
    pub home: tempfile::TempDir,
    pub kubeconfig: PathBuf,
    pub node_name: String,
    child: Option<Child>,
    server_log: PathBuf,
    /// Extra arguments of every `peapod up` (e.g. `--no-controllers`).
    up_args: Vec<String>,
    /// The API server's `--listen` address.
    listen: String,
    /// A tmpfs mounted at the image store, unmounted when dropped.
    image_fs: Option<PathBuf>,
    /// `PEAPOD_LOG` of `peapod up`.
    log_filter: String,
}

impl Peapod {
    /// A fresh state dir with the busybox image imported, and `peapod up` running in it.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// As [`Peapod::start`], with extra `peapod up` arguments.
    pub fn start_with(up_args: &[&str]) -> Self {
        Self::start_listening("127.0.0.1:0", up_args)
    }

    /// As [`Peapod::start_with`], with the API server on `listen` (an address other
    /// machines, or network namespaces, reach it at).
    pub fn start_listening(listen: &str, up_args: &[&str]) -> Self {
        Self::start_inner(listen, up_args, None, "info")
    }

    /// As [`Peapod::start`], with every API request in the server log (kube-apiserver's
    /// httplog), for tests whose failures are a client waiting on the wrong request.
    pub fn start_with_access_log() -> Self {
        Self::start_inner("127.0.0.1:0", &[], None, "info,peapod::access=debug")
    }

    /// As [`Peapod::start_with`], with the image store on a tmpfs of its own of `size`
    /// (tmpfs's `size=` option): a dedicated image filesystem, whose free space only this
    /// node and the test change. Unmounted when dropped.
    pub fn start_with_image_fs(size: &str, up_args: &[&str]) -> Self {
        Self::start_inner("127.0.0.1:0", up_args, Some(size), "info")
    }

    /// The image store's directory.
    pub fn image_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }

    fn start_inner(
        listen: &str,
        up_args: &[&str],
        image_fs: Option<&str>,
        log_filter: &str,
    ) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("peapod-e2e-")
            .tempdir()
            .expect("tempdir");
        let state_dir = tmp.path().join("state");
        let node_name = format!(
            "node-{}",
            tmp.path()
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("x")
                .trim_start_matches("peapod-e2e-")
                .to_lowercase()
        );
        let mut p = Peapod {
            kubeconfig: state_dir.join("kubeconfig"),
            server_log: tmp.path().join("peapod-up.log"),
            state_dir,
            _tmp: tmp,
            home: tempfile::tempdir().expect("home tempdir"),
            node_name,
            child: None,
            up_args: up_args.iter().map(|a| a.to_string()).collect(),
            listen: listen.to_string(),
            image_fs: None,
            log_filter: log_filter.to_string(),
        };
        if let Some(size) = image_fs {
            let dir = p.image_dir();
            fs::create_dir_all(&dir).expect("creating the image store dir");
            let status = Command::new("mount")
                .args([
                    "-t",
                    "tmpfs",
                    "-o",
                    &format!("size={size},mode=0700"),
                    "tmpfs",
                ])
                .arg(&dir)
                .status()
                .expect("running mount");
            assert!(status.success(), "mounting a tmpfs at {}", dir.display());
            p.image_fs = Some(dir);
        }
        if !p.up_args.iter().any(|a| a == "--config") {
            let config = p._tmp.path().join("kubelet-config.yaml");
            write_kubelet_config(&config, "");
            p.up_args.push("--config".to_string());
            p.up_args
                .push(config.to_str().expect("utf-8 path").to_string());
        }
        let archive = fixtures().join("busybox.oci.tar");
        p.peapod(&["image", "import", archive.to_str().expect("utf-8 path")]);
        p.up();
        p
    }

    /// Runs `peapod ARGS --state-dir <ours>` to completion, asserting success.
    pub fn peapod(&self, args: &[&str]) -> String {
        let out = Command::new(PEAPOD)
            .args(args)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .output()
            .expect("running peapod");
        assert!(
            out.status.success(),
            "peapod {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Starts `peapod up` and waits until the node is Ready.
    pub fn up(&mut self) {
        let _ = fs::remove_file(&self.kubeconfig);
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.server_log)
            .expect("server log");
        // The node API on loopback unless the test gives its own address.
        let node_api: &[&str] = if self.up_args.iter().any(|a| a == "--node-api-listen") {
            &[]
        } else {
            &["--node-api-listen", "127.0.0.1:0"]
        };
        let child = Command::new(PEAPOD)
            .args(["up", "--listen", &self.listen])
            .args(node_api)
            .arg("--state-dir")
            .arg(&self.state_dir)
            .arg("--node-name")
            .arg(&self.node_name)
            .args(&self.up_args)
            .env("PEAPOD_LOG", &self.log_filter)
            // Our own CNI config dir: a machine's /etc/cni/net.d may hold another runtime's
            // network (podman installs one), and CNI uses the first config it finds.
            .env(
                "PEAPOD_CNI_CONF_DIR",
                std::env::var_os("PEAPOD_CNI_CONF_DIR").unwrap_or_else(|| E2E_CNI_CONF_DIR.into()),
            )
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawning peapod up");
        self.child = Some(child);
        wait_until("the kubeconfig", Duration::from_secs(30), || {
            self.assert_server_alive();
            self.kubeconfig.exists().then_some(())
        });
        wait_until("the node to be Ready", Duration::from_secs(60), || {
            self.assert_server_alive();
            let out = self.kubectl(&[
                "get",
                "node",
                &self.node_name,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]);
            (out.status.success() && String::from_utf8_lossy(&out.stdout) == "True").then_some(())
        });
    }

    fn assert_server_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("peapod up exited ({status}); log:\n{}", self.server_log());
            }
        }
    }

    /// (server URL, token, CA hash) of the join command `peapod up` prints.
    pub fn join_command(&self) -> (String, String, String) {
        wait_until("the join command", Duration::from_secs(30), || {
            let log = self.server_log();
            let line = log.lines().find(|l| l.contains("peapod join --server"))?;
            let words: Vec<&str> = line.split_whitespace().collect();
            let after = |flag: &str| {
                words
                    .iter()
                    .position(|w| *w == flag)
                    .and_then(|i| words.get(i + 1))
                    .map(|w| w.to_string())
            };
            Some((
                after("--server")?,
                after("--token")?,
                after("--discovery-token-ca-cert-hash")?,
            ))
        })
    }

    pub fn server_log(&self) -> String {
        fs::read_to_string(&self.server_log).unwrap_or_default()
    }

    pub fn server_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL `peapod up`, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.take() {
            kill_child(child);
        }
    }

    /// SIGTERM `peapod up` and wait for it to exit.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate_child(child);
        }
    }

    pub fn kubectl_cmd(&self) -> Command {
        let mut cmd = Command::new("kubectl");
        cmd.env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", self.home.path())
            .stdin(Stdio::null());
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_cmd()
            .args(args)
            .output()
            .expect("running kubectl")
    }

    /// Runs kubectl, asserting success; returns stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed ({}):\nstdout: {}\nstderr: {}\nserver log tail:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.server_log(), 40),
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` with the manifest on stdin.
    pub fn apply(&self, manifest: &str) -> String {
        self.kubectl_stdin(&["apply", "-f", "-"], manifest)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("writing stdin");
        let out = child.wait_with_output().expect("kubectl output");
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.server_log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl with `stdin`, asserting that it fails (an invalid object the API server
    /// refuses); returns its stderr.
    pub fn kubectl_stdin_refused(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning kubectl");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("writing stdin");
        let out = child.wait_with_output().expect("kubectl output");
        assert!(
            !out.status.success(),
            "kubectl {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// A jsonpath query on one object; None when kubectl fails (e.g. not found).
    pub fn jsonpath(&self, kind_name: &str, path: &str) -> Option<String> {
        let out = self.kubectl(&["get", kind_name, "-o", &format!("jsonpath={path}")]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// A jsonpath query over a list in all namespaces; empty on failure.
    pub fn jsonpath_all(&self, kind: &str, path: &str) -> String {
        let out = self.kubectl(&["get", kind, "-A", "-o", &format!("jsonpath={path}")]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Cgroup directories of the pod with this uid still present.
    pub fn cgroups_of(&self, uid: &str) -> Vec<String> {
        pod_cgroups_left(&[uid.to_string()])
    }

    pub fn wait_pod_phase(&self, pod: &str, phase: &str, timeout: Duration) {
        wait_until(&format!("pod {pod} phase {phase}"), timeout, || {
            (self
                .jsonpath(&format!("pod/{pod}"), "{.status.phase}")
                .as_deref()
                == Some(phase))
            .then_some(())
        });
    }

    /// The shim and container processes of this state dir still alive.
    /// What a failed test leaves to read: the pods, the events, and where each of this
    /// node's processes (and their children) waits in the kernel.
    fn diagnostics(&self) -> String {
        let mut out = String::from("node diagnostics:\n");
        for args in [
            &["get", "pods", "-A", "-o", "wide"][..],
            &["get", "events", "-A", "--sort-by=.lastTimestamp"][..],
        ] {
            let o = self.kubectl(args);
            out += &format!(
                "$ kubectl {}\n{}{}",
                args.join(" "),
                tail(&String::from_utf8_lossy(&o.stdout), 60),
                String::from_utf8_lossy(&o.stderr)
            );
            out.push('\n');
        }
        let mut pids: Vec<String> = self
            .leftover_processes()
            .iter()
            .filter_map(|p| p.split(':').next().map(str::to_string))
            .collect();
        let mut i = 0;
        while i < pids.len() && pids.len() < 200 {
            let tasks = fs::read_dir(format!("/proc/{}/task", pids[i]));
            for t in tasks.into_iter().flatten().flatten() {
                let children = fs::read_to_string(t.path().join("children")).unwrap_or_default();
                pids.extend(children.split_whitespace().map(str::to_string));
            }
            i += 1;
        }
        let mut seen = std::collections::BTreeSet::new();
        for pid in pids.into_iter().filter(|p| seen.insert(p.clone())) {
            let read = |f: &str| fs::read_to_string(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let state = read("stat");
            let state = state.rsplit(") ").next().and_then(|s| s.split(' ').next());
            out += &format!(
                "pid {pid} [{}] {} wchan={}\n{}",
                state.unwrap_or("?"),
                read("cmdline").replace('\0', " ").trim(),
                read("wchan"),
                read("stack")
            );
        }
        out
    }

    pub fn leftover_processes(&self) -> Vec<String> {
        let needle = self.state_dir.to_string_lossy().into_owned();
        let mut found = Vec::new();
        let Ok(entries) = fs::read_dir("/proc") else {
            return found;
        };
        for e in entries.flatten() {
            let Ok(cmdline) = fs::read(e.path().join("cmdline")) else {
                continue;
            };
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(&needle) {
                found.push(format!("{}: {}", e.file_name().to_string_lossy(), text));
            }
        }
        found
    }
}

/// A `peapod controllers --kubeconfig` process against a [`Peapod`]'s API server, killed
/// (SIGKILL) when dropped.
pub struct ControllerManager {
    child: Option<Child>,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl ControllerManager {
    /// Starts `peapod controllers --kubeconfig <pp's> ARGS`.
    pub fn start(pp: &Peapod, args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("peapod-e2e-controllers-")
            .tempdir()
            .expect("tempdir");
        let log_path = dir.path().join("controllers.log");
        let log = fs::File::create(&log_path).expect("controllers log");
        let child = Command::new(PEAPOD)
            .arg("controllers")
            .arg("--kubeconfig")
            .arg(&pp.kubeconfig)
            .args(args)
            .env("PEAPOD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawning peapod controllers");
        ControllerManager {
            child: Some(child),
            log: log_path,
            _dir: dir,
        }
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The leader-election identity it announced on start.
    pub fn identity(&self) -> String {
        wait_until(
            "the controllers' identity in their log",
            Duration::from_secs(30),
            || {
                self.log().lines().find_map(|l| {
                    let rest = l.split("controllers running as ").nth(1)?;
                    rest.split_whitespace().next().map(str::to_string)
                })
            },
        )
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(child) = self.child.take() {
            kill_child(child);
        }
    }

    /// SIGTERM, and wait until it has exited (killed after a deadline).
    pub fn terminate(&mut self) {
        if let Some(child) = self.child.take() {
            terminate_child(child);
        }
    }
}

impl Drop for ControllerManager {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("peapod controllers log tail:\n{}", tail(&self.log(), 40));
        }
        self.kill9();
    }
}

/// The hierarchies a pod cgroup may be in (v2 at the root, v1 per controller).
const CGROUP_ROOTS: [&str; 6] = [
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/memory",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/cpu,cpuacct",
    "/sys/fs/cgroup/pids",
    "/sys/fs/cgroup/devices",
];

/// Where pod cgroups live below a hierarchy: the QoS tiers, and `peapod/` itself for pods
/// placed before there were tiers.
const POD_CGROUP_PARENTS: [&str; 4] = [
    "peapod",
    "peapod/kubepods",
    "peapod/kubepods/burstable",
    "peapod/kubepods/besteffort",
];

/// Every directory of a pod cgroup (`pod<uid>`) on the machine, in any hierarchy and tier.
pub fn pod_cgroup_dirs(uid: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for root in CGROUP_ROOTS {
        for parent in POD_CGROUP_PARENTS {
            let dir = Path::new(root).join(parent).join(format!("pod{uid}"));
            if dir.is_dir() {
                found.push(dir);
            }
        }
    }
    found
}

/// Pod UIDs whose cgroups must be gone by this server, to look for their cgroups after reset.
fn pod_cgroups_left(uids: &[String]) -> Vec<String> {
    let mut left = Vec::new();
    for root in CGROUP_ROOTS {
        for parent in POD_CGROUP_PARENTS {
            let Ok(entries) = fs::read_dir(Path::new(root).join(parent)) else {
                continue;
            };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if uids.iter().any(|u| name.contains(u.as_str())) {
                    left.push(e.path().display().to_string());
                }
            }
        }
    }
    left
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Peapod {
    fn drop(&mut self) {
        if std::thread::panicking() && self.child.is_some() {
            eprintln!("{}", self.diagnostics());
        }
        let uids: Vec<String> = self
            .jsonpath_all("pods", "{.items[*].metadata.uid}")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        self.stop();
        if let Some(dir) = self.image_fs.take() {
            if let Err(e) = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH) {
                eprintln!("unmounting the image filesystem {}: {e}", dir.display());
            }
        }
        let reset = Command::new(PEAPOD)
            .args(["reset", "--state-dir"])
            .arg(&self.state_dir)
            .output();
        if std::thread::panicking() {
            eprintln!("peapod up log tail:\n{}", tail(&self.server_log(), 80));
            return;
        }
        let reset = reset.expect("running peapod reset");
        assert!(
            reset.status.success(),
            "peapod reset failed: {}",
            String::from_utf8_lossy(&reset.stderr)
        );
        let procs = self.leftover_processes();
        assert!(procs.is_empty(), "processes left after reset: {procs:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let needle = self.state_dir.to_string_lossy().into_owned();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&needle)).collect();
        assert!(leaked.is_empty(), "mounts left after reset: {leaked:?}");
        let cgroups = pod_cgroups_left(&uids);
        assert!(cgroups.is_empty(), "cgroups left after reset: {cgroups:?}");
        assert!(!self.state_dir.exists(), "state dir left after reset");
    }
}

/// SIGTERM `child` and wait until it has exited (SIGKILL after 15 s).
fn terminate_child(mut child: Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    kill_child(child);
}

/// SIGKILL `child` and reap it.
fn kill_child(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}
