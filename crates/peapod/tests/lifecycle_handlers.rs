//! `postStart`/`preStop` hooks with the `httpGet` and `sleep` handlers, end to end. The
//! httpGet hooks of a `hostNetwork` pod go to the pod IP, the node's own address, where the
//! test listens and records each request; a postStart the server answers with a 500 still
//! ran (kubelet looks only at whether the request was made), one nothing answers kills and
//! restarts the container; a preStop sleep holds the stop signal back, within the grace
//! period.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);

/// An HTTP/1.1 listener recording the path of every request; `/fail…` answers 500.
struct HookListener {
    addr: SocketAddr,
    paths: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl HookListener {
    fn start(ip: IpAddr) -> Self {
        let listener = TcpListener::bind((ip, 0)).expect("binding the hook listener");
        let addr = listener.local_addr().expect("local addr");
        let paths = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (paths.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    serve(conn, &p);
                }
            }
        });
        HookListener {
            addr,
            paths,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self, path: &str) -> bool {
        self.paths.lock().expect("paths").iter().any(|p| p == path)
    }
}

impl Drop for HookListener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(conn: TcpStream, paths: &Mutex<Vec<String>>) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut reader = BufReader::new(&conn);
    let mut first = String::new();
    if reader.read_line(&mut first).is_err() {
        return;
    }
    // Drain the header block.
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
        line.clear();
    }
    let path = first
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string();
    let status = if path.starts_with("/fail") {
        "500 Internal Server Error"
    } else {
        "200 OK"
    };
    paths.lock().expect("paths").push(path);
    let _ = (&conn).write_all(
        format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").as_bytes(),
    );
}

fn node_ip(pp: &Peapod) -> IpAddr {
    let ip = pp
        .jsonpath(
            &format!("node/{}", pp.node_name),
            "{.status.addresses[?(@.type==\"InternalIP\")].address}",
        )
        .unwrap_or_default();
    ip.parse()
        .unwrap_or_else(|_| panic!("node InternalIP {ip:?}"))
}

/// Seconds since boot; not namespaced, so a container's `/proc/uptime` reads the same clock.
fn uptime(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("uptime {text:?}"))
}

const LOOP: &str = "trap 'exit 0' TERM; while true; do sleep 0.2; done";

#[test]
fn http_hooks_reach_their_endpoint_and_an_unreachable_post_start_restarts() {
    let pp = Peapod::start();
    let hooks = HookListener::start(node_ip(&pp));
    let port = hooks.addr.port();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: http-hooks
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 30
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{LOOP}"]
    lifecycle:
      postStart:
        httpGet: {{path: /poststart, port: {port}}}
      preStop:
        httpGet: {{path: /prestop, port: {port}}}
---
apiVersion: v1
kind: Pod
metadata:
  name: bad-http-hook
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        httpGet: {{path: /unreachable, port: 1}}
---
apiVersion: v1
kind: Pod
metadata:
  name: answered-500
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        httpGet: {{path: /fail, port: {port}}}
"#
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/http-hooks",
        "--timeout=90s",
    ]);
    assert!(hooks.seen("/poststart"));
    assert!(!hooks.seen("/prestop"));
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "http-hooks",
        "--wait=true",
        "--timeout=60s",
    ]);
    assert!(hooks.seen("/prestop"));

    // A hook the server answered, even with a 500, ran: kubelet looks only at whether the
    // request could be made.
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/answered-500",
        "--timeout=90s",
    ]);
    assert!(hooks.seen("/fail"));
    assert_eq!(
        pp.jsonpath(
            "pod/answered-500",
            "{.status.containerStatuses[0].restartCount}"
        )
        .as_deref(),
        Some("0")
    );

    // A postStart nothing answers: FailedPostStartHook, the container killed and restarted.
    wait_until("a restart after the failed postStart", T, || {
        let n = pp
            .jsonpath(
                "pod/bad-http-hook",
                "{.status.containerStatuses[0].restartCount}",
            )
            .unwrap_or_default();
        (n.parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
    let describe = pp.kubectl_ok(&["describe", "pod", "bad-http-hook"]);
    assert!(describe.contains("FailedPostStartHook"), "{describe}");
    assert!(
        describe.contains("HTTP lifecycle hook (/unreachable) for Container \"app\" in Pod"),
        "{describe}"
    );
    assert!(
        describe.contains("connect: connection refused"),
        "{describe}"
    );
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "bad-http-hook",
        "answered-500",
        "--wait=true",
        "--timeout=60s",
    ]);
}

#[test]
fn pre_stop_sleep_delays_the_stop_signal_within_the_grace_period() {
    let pp = Peapod::start();
    let host = tempfile::tempdir().expect("tmp");
    let dir = host.path().display().to_string();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sleepy-stop
spec:
  terminationGracePeriodSeconds: 30
  volumes:
  - name: out
    hostPath: {{path: "{dir}", type: Directory}}
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'cat /proc/uptime > /out/term; exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      preStop:
        sleep: {{seconds: 2}}
"#
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/sleepy-stop",
        "--timeout=90s",
    ]);
    let before = uptime(&std::fs::read_to_string("/proc/uptime").expect("uptime"));
    let started = Instant::now();
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "sleepy-stop",
        "--wait=true",
        "--timeout=60s",
    ]);
    let took = started.elapsed();
    let term = uptime(&std::fs::read_to_string(host.path().join("term")).expect("term written"));
    // SIGTERM came only after the 2 s sleep, and the pod went well within its 30 s grace.
    assert!(
        term - before >= 2.0,
        "TERM {:.2}s after delete",
        term - before
    );
    assert!(took < Duration::from_secs(20), "delete took {took:?}");
}
