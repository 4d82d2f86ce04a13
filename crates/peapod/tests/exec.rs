//! Streaming into pods end to end with the real kubectl: `kubectl exec` (exit codes, stdin,
//! container choice, a tty, the container's filesystem and PID namespace), refusal of a
//! completed pod, and `kubectl port-forward` to a busybox httpd inside the pod's network
//! namespace. Every kubectl child is killed and reaped; the harness's Drop checks that no
//! process, mount or cgroup is left.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{wait_until, Peapod};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn two_containers() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: ex
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    env:
    - name: GREETING
      value: from-the-pod
    workingDir: /tmp
  - name: side
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3601"]
"#
    )
}

/// Kills a kubectl child on every way out of the test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn exec_exit_codes_stdin_containers_tty_and_namespaces() {
    let pp = Peapod::start();
    pp.apply(&two_containers());
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/ex", "--timeout=90s"]);

    // Output and the exit code, and the container's env, hostname and working dir.
    let out = pp.kubectl(&[
        "exec",
        "ex",
        "-c",
        "main",
        "--",
        "sh",
        "-c",
        "echo $HOSTNAME $GREETING $(pwd); echo oops >&2; exit 7",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stdout, "ex from-the-pod /tmp\n", "stderr: {stderr}");
    assert!(stderr.contains("oops"), "stderr: {stderr}");
    assert!(
        stderr.contains("command terminated with exit code 7"),
        "stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(
        pp.kubectl_ok(&["exec", "ex", "-c", "main", "--", "true"]),
        ""
    );

    // -i with stdin piped.
    let got = pp.kubectl_stdin(
        &[
            "exec",
            "-i",
            "ex",
            "-c",
            "main",
            "--",
            "sh",
            "-c",
            "cat; echo done",
        ],
        "line one\nline two\n",
    );
    assert_eq!(got, "line one\nline two\ndone\n");

    // -c picks the container; each has its own filesystem.
    pp.kubectl_ok(&[
        "exec",
        "ex",
        "-c",
        "side",
        "--",
        "sh",
        "-c",
        "echo side > /tmp/mine",
    ]);
    assert_eq!(
        pp.kubectl_ok(&["exec", "ex", "-c", "side", "--", "cat", "/tmp/mine"]),
        "side\n"
    );
    let other = pp.kubectl(&["exec", "ex", "-c", "main", "--", "cat", "/tmp/mine"]);
    assert_eq!(
        other.status.code(),
        Some(1),
        "main must not see side's file"
    );

    // The container's PID namespace: PID 1 is its command, and the exec'd ps is in it.
    let ps = pp.kubectl_ok(&["exec", "ex", "-c", "side", "--", "ps", "-o", "pid,args"]);
    assert!(
        ps.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 3601")),
        "ps: {ps}"
    );
    assert!(
        !ps.contains("sleep 3600"),
        "side sees main's processes: {ps}"
    );

    // A tty: `script` gives kubectl a terminal so -t is kept.
    let kubectl = format!(
        "KUBECONFIG={} kubectl exec -it ex -c main -- sh -c 'tty; echo TERM=$TERM; stty size'",
        pp.kubeconfig.display()
    );
    let script = std::process::Command::new("script")
        .args(["-qec", &kubectl, "/dev/null"])
        .env("HOME", pp.home.path())
        .env("COLUMNS", "100")
        .env("LINES", "30")
        .stdin(Stdio::null())
        .output()
        .expect("running script");
    let text = String::from_utf8_lossy(&script.stdout).replace('\r', "");
    assert!(text.contains("/dev/pts/0"), "tty output: {text:?}");
    assert!(text.contains("TERM=xterm"), "tty output: {text:?}");
    assert!(script.status.success(), "tty exec: {text:?}");

    // An unknown container is refused before anything runs.
    let bad = pp.kubectl(&["exec", "ex", "-c", "nope", "--", "true"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("container nope is not valid for pod ex"),
        "stderr: {err}"
    );
    pp.kubectl_ok(&["delete", "pod/ex", "--wait=true", "--timeout=60s"]);
}

#[test]
fn exec_into_completed_pod_is_refused() {
    let pp = Peapod::start();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: done
spec:
  restartPolicy: Never
  containers:
  - name: c
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["true"]
"#
    ));
    pp.wait_pod_phase("done", "Succeeded", Duration::from_secs(90));
    let out = pp.kubectl(&["exec", "done", "--", "true"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot exec into a container in a completed pod; current phase is Succeeded"),
        "stderr: {err}"
    );
    pp.kubectl_ok(&["delete", "pod/done", "--wait=true", "--timeout=60s"]);
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
fn port_forward_to_a_pod() {
    let pp = Peapod::start();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: httpd
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello-from-pod > /www/index.html && exec httpd -f -p 8080 -h /www"]
"#
    ));
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/web", "--timeout=90s"]);
    let local = free_port();
    let child = pp
        .kubectl_cmd()
        .args(["port-forward", "pod/web", &format!("{local}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut child = KillOnDrop(child);
    // Two requests: each is its own forwarded connection (requestid 0, 1).
    for i in 0..2 {
        let body = wait_until(
            &format!("request {i} through the forward"),
            Duration::from_secs(30),
            || {
                if let Ok(Some(status)) = child.0.try_wait() {
                    panic!("kubectl port-forward exited early: {status}");
                }
                http_get(local).filter(|b| b.contains("hello-from-pod"))
            },
        );
        assert!(body.starts_with("HTTP/1."), "response: {body}");
    }
    drop(child);
    // The plain SPDY/3.1 POST upgrade (kubectl's fallback, and kubectl ≤1.30).
    let local = free_port();
    let spdy = pp
        .kubectl_cmd()
        .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false")
        .args(["port-forward", "pod/web", &format!("{local}:8080")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward over SPDY");
    let mut spdy = KillOnDrop(spdy);
    wait_until("a request over SPDY", Duration::from_secs(30), || {
        if let Ok(Some(status)) = spdy.0.try_wait() {
            panic!("kubectl port-forward (SPDY) exited early: {status}");
        }
        http_get(local).filter(|b| b.contains("hello-from-pod"))
    });
    drop(spdy);
    // A port nobody listens on: kubectl reports the pod side's error.
    let local = free_port();
    let child = pp
        .kubectl_cmd()
        .args(["port-forward", "pod/web", &format!("{local}:9999")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl port-forward");
    let mut child = KillOnDrop(child);
    wait_until("the listener", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", local)).ok().map(|mut s| {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut b = Vec::new();
            let _ = s.read_to_end(&mut b);
        })
    });
    let status = wait_until("kubectl to give up", Duration::from_secs(30), || {
        child.0.try_wait().ok().flatten()
    });
    assert!(!status.success());
    let mut err = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(
        err.contains("error forwarding port 9999 to pod"),
        "stderr: {err}"
    );
    pp.kubectl_ok(&["delete", "pod/web", "--wait=true", "--timeout=60s"]);
}
