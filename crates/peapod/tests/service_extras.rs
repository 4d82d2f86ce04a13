//! Services beyond the basics, with the real kubectl: `kubectl port-forward svc/NAME` (kubectl
//! picks a Ready pod of the Service and maps the Service port to the pod's named target port),
//! and the ambassador pattern applied as files (`examples/ambassador.yaml` over
//! `examples/service-clusterip.yaml`). The seed's init containers that wait for Services
//! (`examples/init-wait-for-service.yaml`) are tested with the ServiceAccounts, whose
//! volume tells them their namespace (`serviceaccounts.rs`).
//!
//! The proxy's nftables table and the DNS address 10.96.0.10 are node-wide, so the tests of
//! this binary take one lock and never run two peapods at once.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{wait_until, workspace_root, Peapod};

const T: Duration = Duration::from_secs(90);

/// One peapod at a time in this binary (see the module doc).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `peapod up` for a test that needs cluster DNS: waits until this server serves it (another
/// peapod on the host, e.g. a test binary run beside this one, holds the address until it
/// stops; `scripts/test.sh` runs test binaries one after another).
fn start_with_dns() -> Peapod {
    let pp = Peapod::start();
    wait_until("our cluster DNS serving", Duration::from_secs(300), || {
        pp.server_log()
            .contains("cluster DNS serving")
            .then_some(())
    });
    pp
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn apply_example(pp: &Peapod, file: &str) {
    let path = workspace_root().join("examples").join(file);
    pp.kubectl_ok(&["apply", "-f", path.to_str().expect("utf-8 path")]);
}

fn logs_until(pp: &Peapod, pod: &str, container: &str, needle: &str) -> String {
    wait_until(&format!("{needle:?} in {pod}/{container}"), T, || {
        let out = pp.kubectl(&["logs", pod, "-c", container]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(needle).then_some(text)
    })
}

fn wait_ready(pp: &Peapod, pods: &[&str]) {
    for p in pods {
        pp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=90s",
        ]);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn http_get(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

#[test]
fn port_forward_to_a_service() {
    let _serial = serial();
    let pp = Peapod::start();
    apply_example(&pp, "service-clusterip.yaml");
    wait_ready(&pp, &["web-1", "web-2"]);
    // Service port 80 has targetPort `http`: kubectl resolves the Service to one of its pods
    // (a label-selector list) and the named port to the container's 8080, client-side.
    let local = free_port();
    let child = pp
        .kubectl_cmd()
        .args(["port-forward", "svc/web", &format!("{local}:80")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut child = KillOnDrop(child);
    for i in 0..2 {
        let body = wait_until(&format!("request {i} through the forward"), T, || {
            if let Ok(Some(status)) = child.0.try_wait() {
                let mut err = String::new();
                if let Some(mut e) = child.0.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                panic!("kubectl port-forward svc/web exited early: {status}: {err}");
            }
            http_get(local).filter(|b| b.contains("hello from web-"))
        });
        assert!(body.starts_with("HTTP/1."), "response: {body}");
    }
    let mut out = String::new();
    let _ = child.0.kill();
    if let Some(mut o) = child.0.stdout.take() {
        let _ = o.read_to_string(&mut out);
    }
    assert!(
        out.contains(&format!("Forwarding from 127.0.0.1:{local} -> 8080")),
        "stdout: {out}"
    );
}

#[test]
fn ambassador_forwards_localhost_to_the_service() {
    let _serial = serial();
    let pp = start_with_dns();
    apply_example(&pp, "service-clusterip.yaml");
    apply_example(&pp, "ambassador.yaml");
    wait_ready(&pp, &["web-1", "web-2", "ambassador-demo"]);
    // The app only ever dials localhost:1080; the answer comes from a pod behind `web`.
    let logs = logs_until(&pp, "ambassador-demo", "app", "hello from web-");
    assert!(logs.contains("HTTP/1."), "{logs}");
    // Nothing in the app container listens or resolves: the ambassador does both.
    let app_spec = pp
        .jsonpath(
            "pod/ambassador-demo",
            "{.spec.containers[?(@.name==\"app\")].command}",
        )
        .unwrap_or_default();
    assert!(
        app_spec.contains("localhost 1080") && !app_spec.contains("web"),
        "{app_spec}"
    );
}
