//! Static pods through `peapod agent`: a manifest dropped in the static pod directory runs
//! and shows as a mirror pod (`kubectl get/logs` work through it), an edit replaces the pod,
//! removal stops it, deleting the mirror brings it back without touching the container, and
//! the static pod keeps running (and is restarted) while the API server is down.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{fixtures, tail, wait_until, Peapod, PEAPOD};

/// A `peapod agent` with its own state dir and node name, registered with `pp`'s API server.
struct Agent {
    tmp: tempfile::TempDir,
    state_dir: PathBuf,
    manifests: PathBuf,
    node_name: String,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// Starts the agent with a KubeletConfiguration file naming its static pod directory,
    /// and a node API certificate the cluster CA signed; waits until its Node is Ready.
    fn start(pp: &Peapod) -> Self {
        Self::start_with(pp, true)
    }

    /// As [`Agent::start`]; with `signed` false the agent is given no certificate, so it
    /// serves one it signed itself.
    fn start_with(pp: &Peapod, signed: bool) -> Self {
        let tmp = tempfile::Builder::new()
            .prefix("peapod-agent-")
            .tempdir()
            .expect("tempdir");
        let state_dir = tmp.path().join("state");
        let manifests = tmp.path().join("manifests");
        fs::create_dir_all(&manifests).expect("manifests dir");
        let config = tmp.path().join("kubelet-config.yaml");
        common::write_kubelet_config(
            &config,
            "staticPodPath: manifests\nfileCheckFrequency: 20s\n",
        );
        let node_name = format!("{}-agent", pp.node_name);
        let archive = fixtures().join("busybox.oci.tar");
        let out = Command::new(PEAPOD)
            .args(["image", "import"])
            .arg(&archive)
            .arg("--state-dir")
            .arg(&state_dir)
            .output()
            .expect("peapod image import");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The API server verifies node certificates: the agent serves one its CA signed.
        let (cert, key) = (tmp.path().join("node.crt"), tmp.path().join("node.key"));
        let mut tls_args = Vec::new();
        if signed {
            let out = Command::new(PEAPOD)
                .arg("node-cert")
                .arg("--state-dir")
                .arg(&pp.state_dir)
                .args(["--san", "127.0.0.1", "--san", &node_name, "--cert"])
                .arg(&cert)
                .arg("--key")
                .arg(&key)
                .output()
                .expect("peapod node-cert");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            tls_args = vec![
                "--tls-cert-file".into(),
                cert.into_os_string(),
                "--tls-private-key-file".into(),
                key.into_os_string(),
            ];
        }
        let log = tmp.path().join("agent.log");
        let log_file = fs::File::create(&log).expect("agent log");
        let child = Command::new(PEAPOD)
            .arg("agent")
            .arg("--kubeconfig")
            .arg(&pp.kubeconfig)
            .arg("--state-dir")
            .arg(&state_dir)
            .args([
                "--node-name",
                &node_name,
                "--node-api-listen",
                "127.0.0.1:0",
            ])
            .arg("--node-api-token-file")
            .arg(pp.state_dir.join("node-api-token"))
            .args(&tls_args)
            .arg("--config")
            .arg(&config)
            // This agent shares the host's network with the test's `peapod up`: the same
            // bridge, range and CNI config as that node, not a range of its own.
            .args(["--pod-cidr", "10.244.0.0/24"])
            .env(
                "PEAPOD_CNI_CONF_DIR",
                std::env::var_os("PEAPOD_CNI_CONF_DIR")
                    .unwrap_or_else(|| common::E2E_CNI_CONF_DIR.into()),
            )
            .env("PEAPOD_LOG", "info,staticpods=debug")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log fd"))
            .stderr(log_file)
            .spawn()
            .expect("spawning peapod agent");
        let mut agent = Agent {
            tmp,
            state_dir,
            manifests,
            node_name,
            log,
            child: Some(child),
        };
        wait_until(
            "the agent's node to be Ready",
            Duration::from_secs(60),
            || {
                agent.assert_alive();
                let ready = pp.jsonpath(
                    &format!("node/{}", agent.node_name),
                    "{.status.conditions[?(@.type==\"Ready\")].status}",
                );
                (ready.as_deref() == Some("True")).then_some(())
            },
        );
        agent
    }

    fn assert_alive(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("peapod agent exited ({status}); log:\n{}", self.log_text());
            }
        }
    }

    fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Writes a manifest atomically (temp file + rename), as config management tools do.
    fn put_manifest(&self, file: &str, text: &str) {
        let tmp = self.tmp.path().join(format!(".{file}.tmp"));
        fs::write(&tmp, text).expect("manifest");
        fs::rename(&tmp, self.manifests.join(file)).expect("rename manifest");
    }

    fn mirror(&self, name: &str) -> String {
        format!("pod/{name}-{}", self.node_name)
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
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
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
        let reset = Command::new(PEAPOD)
            .args(["reset", "--state-dir"])
            .arg(&self.state_dir)
            .output();
        if std::thread::panicking() {
            eprintln!("peapod agent log tail:\n{}", tail(&self.log_text(), 80));
            return;
        }
        let reset = reset.expect("running peapod reset");
        assert!(
            reset.status.success(),
            "peapod reset failed: {}",
            String::from_utf8_lossy(&reset.stderr)
        );
        let needle = self.state_dir.to_string_lossy().into_owned();
        let procs: Vec<String> = processes()
            .into_iter()
            .filter(|(_, cmd)| cmd.contains(&needle))
            .map(|(pid, cmd)| format!("{pid}: {cmd}"))
            .collect();
        assert!(procs.is_empty(), "processes left after reset: {procs:?}");
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&needle)).collect();
        assert!(leaked.is_empty(), "mounts left after reset: {leaked:?}");
        assert!(!self.state_dir.exists(), "state dir left after reset");
    }
}

/// (pid, command line) of every process.
fn processes() -> Vec<(u32, String)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            Some((pid, String::from_utf8_lossy(&cmd).replace('\0', " ")))
        })
        .collect()
}

/// The pid of the container whose command line holds `marker`.
fn container_pid(marker: &str) -> Option<u32> {
    processes()
        .into_iter()
        .find(|(_, cmd)| cmd.starts_with("sh ") && cmd.contains(marker))
        .map(|(pid, _)| pid)
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn manifest(marker: &str, word: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
  labels:
    app: web
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "while true; do echo {word} {marker}; sleep 0.5; done"]
"#
    )
}

/// The API server talks to a node only over a certificate the cluster CA signed: an agent
/// serving one it signed itself runs its pods, but no logs are proxied to it, with the TLS
/// error said; the node signed by the CA beside it serves them.
#[test]
fn nothing_is_proxied_to_a_node_whose_certificate_the_ca_did_not_sign() {
    let pp = Peapod::start();
    let agent = Agent::start_with(&pp, false);
    let marker = format!("mark-{}", agent.node_name);
    agent.put_manifest("web.yaml", &manifest(&marker, "unsigned"));
    let mirror = agent.mirror("web");
    pp.wait_pod_phase(
        mirror.trim_start_matches("pod/"),
        "Running",
        Duration::from_secs(60),
    );
    let out = pp.kubectl(&["logs", &mirror]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "logs proxied to an unverified node");
    assert!(
        err.to_lowercase().contains("certificate"),
        "the refusal does not say why: {err}"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&marker));

    // The same request to the verified node is served.
    pp.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: verified\nspec:\n  \
         nodeName: {}\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: main\n    \
         image: docker.io/library/busybox:latest\n    imagePullPolicy: IfNotPresent\n    \
         command: [\"sh\", \"-c\", \"echo from-verified; sleep 3600\"]\n",
        pp.node_name
    ));
    pp.wait_pod_phase("verified", "Running", Duration::from_secs(60));
    wait_until("logs of the verified node", Duration::from_secs(30), || {
        pp.kubectl(&["logs", "verified"])
            .stdout
            .windows(13)
            .any(|w| w == b"from-verified")
            .then_some(())
    });
    pp.kubectl_ok(&["delete", "pod", "verified", "--wait=true", "--timeout=60s"]);
}

#[test]
fn static_pod_lifecycle_and_mirror() {
    let pp = Peapod::start();
    let agent = Agent::start(&pp);
    let marker = format!("mark-{}", agent.node_name);
    let mirror = agent.mirror("web");

    // A manifest dropped in the directory runs, and shows as a mirror pod.
    agent.put_manifest("web.yaml", &manifest(&marker, "tick"));
    pp.wait_pod_phase(
        mirror.trim_start_matches("pod/"),
        "Running",
        Duration::from_secs(60),
    );
    let annotations = pp
        .jsonpath(&mirror, "{.metadata.annotations}")
        .expect("mirror annotations");
    assert!(
        annotations.contains("kubernetes.io/config.mirror"),
        "{annotations}"
    );
    assert!(
        annotations.contains("\"kubernetes.io/config.source\":\"file\""),
        "{annotations}"
    );
    let hash = pp
        .jsonpath(
            &mirror,
            "{.metadata.annotations.kubernetes\\.io/config\\.hash}",
        )
        .expect("hash");
    assert_eq!(
        pp.jsonpath(
            &mirror,
            "{.metadata.annotations.kubernetes\\.io/config\\.mirror}"
        ),
        Some(hash.clone())
    );
    assert_eq!(
        pp.jsonpath(
            &mirror,
            "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        ),
        Some(format!("Node/{}", agent.node_name))
    );
    assert_eq!(
        pp.jsonpath(&mirror, "{.spec.nodeName}"),
        Some(agent.node_name.clone())
    );

    // Logs work through the mirror pod.
    wait_until(
        "logs through the mirror pod",
        Duration::from_secs(20),
        || {
            let out = pp.kubectl(&["logs", mirror.trim_start_matches("pod/")]);
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("tick {marker}"))
                .then_some(())
        },
    );

    // Deleting the mirror pod does not touch the static pod: the mirror comes back.
    let pid = wait_until("the container process", Duration::from_secs(10), || {
        container_pid(&marker)
    });
    let container_id = pp.jsonpath(&mirror, "{.status.containerStatuses[0].containerID}");
    let mirror_uid = pp.jsonpath(&mirror, "{.metadata.uid}").expect("uid");
    // Not kubectl's own wait for the deletion: the agent makes the mirror again within a few
    // milliseconds, and kubectl 1.33 compares uids in its first list only, not in the list of
    // the informer it then waits on; when that second list already holds the new mirror, it
    // waits for that one to go, until its timeout. The new uid below is the deletion seen.
    let deleted = pp.kubectl(&["delete", &mirror, "--wait=false"]);
    assert!(
        deleted.status.success(),
        "deleting the mirror pod: {}\nagent log tail:\n{}\nserver log tail:\n{}",
        String::from_utf8_lossy(&deleted.stderr),
        common::tail(&agent.log_text(), 60),
        common::tail(&pp.server_log(), 30),
    );
    wait_until(
        "the mirror pod to come back",
        Duration::from_secs(30),
        || {
            let uid = pp.jsonpath(&mirror, "{.metadata.uid}")?;
            let ready = pp.jsonpath(&mirror, "{.status.containerStatuses[0].ready}")?;
            (uid != mirror_uid && ready == "true").then_some(())
        },
    );
    assert_eq!(
        pp.jsonpath(&mirror, "{.status.containerStatuses[0].containerID}"),
        container_id,
        "the container was replaced"
    );
    assert_eq!(
        pp.jsonpath(&mirror, "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );
    assert!(alive(pid), "the container process died");

    // An edited manifest replaces the pod (new hash, new container).
    agent.put_manifest("web.yaml", &manifest(&marker, "tock"));
    wait_until(
        "the edited static pod's mirror",
        Duration::from_secs(60),
        || {
            let new_hash = pp.jsonpath(
                &mirror,
                "{.metadata.annotations.kubernetes\\.io/config\\.mirror}",
            )?;
            let ready = pp.jsonpath(&mirror, "{.status.containerStatuses[0].ready}")?;
            (new_hash != hash && ready == "true").then_some(())
        },
    );
    wait_until("the edited pod's logs", Duration::from_secs(20), || {
        let out = pp.kubectl(&["logs", mirror.trim_start_matches("pod/")]);
        String::from_utf8_lossy(&out.stdout)
            .contains(&format!("tock {marker}"))
            .then_some(())
    });
    wait_until("the old container to stop", Duration::from_secs(20), || {
        (!alive(pid)).then_some(())
    });

    // Removing the manifest stops the pod and deletes its mirror.
    fs::remove_file(agent.manifests.join("web.yaml")).expect("rm manifest");
    wait_until("the mirror pod to go", Duration::from_secs(30), || {
        pp.jsonpath(&mirror, "{.metadata.uid}")
            .is_none()
            .then_some(())
    });
    wait_until(
        "the static pod's containers to stop",
        Duration::from_secs(30),
        || container_pid(&marker).is_none().then_some(()),
    );
}

#[test]
fn static_pod_runs_while_the_api_server_is_down() {
    let mut pp = Peapod::start();
    let mut agent = Agent::start(&pp);
    let marker = format!("down-{}", agent.node_name);
    let mirror = agent.mirror("web");
    agent.put_manifest("web.yaml", &manifest(&marker, "tick"));
    pp.wait_pod_phase(
        mirror.trim_start_matches("pod/"),
        "Running",
        Duration::from_secs(60),
    );
    let pid = wait_until("the container process", Duration::from_secs(10), || {
        container_pid(&marker)
    });

    // Stop the control plane: the agent goes on, and so does its static pod.
    pp.stop();
    agent.assert_alive();
    assert!(alive(pid), "the container died with the API server");

    // A container that exits is restarted per restartPolicy (Always) with no API server.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the container");
    let restarted = wait_until(
        "the static pod's container to be restarted",
        Duration::from_secs(60),
        || container_pid(&marker).filter(|p| *p != pid),
    );
    agent.assert_alive();
    assert!(alive(restarted));

    // A manifest added while the API server is down starts too.
    let marker2 = format!("later-{}", agent.node_name);
    agent.put_manifest(
        "other.yaml",
        &manifest(&marker2, "tick").replace("name: web", "name: other"),
    );
    wait_until(
        "a static pod started with the API down",
        Duration::from_secs(60),
        || container_pid(&marker2),
    );
    // Drop order: the agent (reset of its state dir), then `pp` (API server state).
    drop(agent);
}
