//! etcd clusters for end-to-end tests: members of Debian's `etcd-server` on loopback with free
//! ports and temp data dirs, and `peapod server` processes on them. Every member and server
//! is killed, and its directory removed, when its guard drops (also when a test fails).

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::{tail, wait_until, PEAPOD};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

struct Member {
    client_url: String,
    child: Option<Child>,
}

/// A running etcd cluster of one or more members.
pub struct EtcdCluster {
    members: Vec<Member>,
    dir: tempfile::TempDir,
}

impl EtcdCluster {
    /// Starts `size` members and waits until each answers its health check.
    pub fn start(size: usize) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("peapod-e2e-etcd-")
            .tempdir()
            .expect("tempdir");
        let ports: Vec<(u16, u16)> = (0..size).map(|_| (free_port(), free_port())).collect();
        let initial: Vec<String> = ports
            .iter()
            .enumerate()
            .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
            .collect();
        let members = ports
            .iter()
            .enumerate()
            .map(|(i, (client, peer))| {
                let client_url = format!("http://127.0.0.1:{client}");
                let peer_url = format!("http://127.0.0.1:{peer}");
                let log = fs::File::create(dir.path().join(format!("m{i}.log"))).expect("log");
                let child = Command::new("etcd")
                    .arg(format!("--name=m{i}"))
                    .arg(format!(
                        "--data-dir={}",
                        dir.path().join(format!("m{i}")).display()
                    ))
                    .arg(format!("--listen-client-urls={client_url}"))
                    .arg(format!("--advertise-client-urls={client_url}"))
                    .arg(format!("--listen-peer-urls={peer_url}"))
                    .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                    .arg(format!("--initial-cluster={}", initial.join(",")))
                    .arg("--initial-cluster-token=peapod-e2e")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("log fd"))
                    .stderr(log)
                    .spawn()
                    .expect("starting etcd (Debian package etcd-server)");
                Member {
                    client_url,
                    child: Some(child),
                }
            })
            .collect();
        let cluster = EtcdCluster { members, dir };
        for m in &cluster.members {
            wait_until(
                "an etcd member to be healthy",
                Duration::from_secs(30),
                || {
                    let out = Command::new("curl")
                        .args(["-s", "--max-time", "2"])
                        .arg(format!("{}/health", m.client_url))
                        .output()
                        .ok()?;
                    String::from_utf8_lossy(&out.stdout)
                        .contains("\"health\":\"true\"")
                        .then_some(())
                },
            );
        }
        cluster
    }

    /// `--store etcd:URL,URL,...` naming every member.
    pub fn store_flag(&self) -> String {
        let urls: Vec<&str> = self.members.iter().map(|m| m.client_url.as_str()).collect();
        format!("etcd:{}", urls.join(","))
    }

    /// SIGKILLs member `i`, as a crashed machine.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Compacts the history up to `revision` through the first member's HTTP gateway.
    pub fn compact(&self, revision: u64) {
        let out = Command::new("curl")
            .args(["-s", "--fail", "-X", "POST", "--data"])
            .arg(format!(r#"{{"revision":{revision}}}"#))
            .arg(format!("{}/v3/kv/compaction", self.members[0].client_url))
            .output()
            .expect("running curl");
        assert!(
            out.status.success(),
            "compacting etcd: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    pub fn log(&self, i: usize) -> String {
        fs::read_to_string(self.dir.path().join(format!("m{i}.log"))).unwrap_or_default()
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

/// The files a second API server must share with the first to serve the same cluster.
pub const SHARED_PKI: &[&str] = &["ca.crt", "ca.key", "sa.key", "sa.pub", "admin-token"];

/// A `peapod server` (API server + controllers, no node) in its own temp state dir.
pub struct Server {
    pub state_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub home: tempfile::TempDir,
    child: Option<Child>,
    log: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Server {
    /// Starts `peapod server ARGS` with `pki/` and `node-api-token` copied from the state dir
    /// of the cluster's first server, and waits until it answers kubectl.
    pub fn start(first_state_dir: &Path, args: &[&str]) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("peapod-e2e-server-")
            .tempdir()
            .expect("tempdir");
        let state_dir = tmp.path().join("state");
        fs::create_dir_all(state_dir.join("pki")).expect("pki dir");
        for f in SHARED_PKI {
            fs::copy(
                first_state_dir.join("pki").join(f),
                state_dir.join("pki").join(f),
            )
            .expect("copying the shared pki");
        }
        fs::copy(
            first_state_dir.join("node-api-token"),
            state_dir.join("node-api-token"),
        )
        .expect("copying the node API token");
        let log = tmp.path().join("server.log");
        let out = fs::File::create(&log).expect("log");
        let child = Command::new(PEAPOD)
            .args(["server", "--listen", "127.0.0.1:0", "--state-dir"])
            .arg(&state_dir)
            .args(args)
            .env("PEAPOD_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("log fd"))
            .stderr(out)
            .spawn()
            .expect("spawning peapod server");
        let mut s = Server {
            kubeconfig: state_dir.join("kubeconfig"),
            state_dir,
            home: tempfile::tempdir().expect("home"),
            child: Some(child),
            log,
            _tmp: tmp,
        };
        wait_until(
            "peapod server's kubeconfig",
            Duration::from_secs(30),
            || {
                if let Some(Ok(Some(status))) = s.child.as_mut().map(|c| c.try_wait()) {
                    panic!("peapod server exited ({status}):\n{}", s.log());
                }
                s.kubeconfig.exists().then_some(())
            },
        );
        s
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
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

    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} through peapod server failed:\n{}\nserver log tail:\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// SIGKILLs the server, as a crashed machine.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("peapod server log tail:\n{}", tail(&self.log(), 60));
        }
        self.kill9();
    }
}
