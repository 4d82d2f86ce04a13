//! The clients peapod did not write, end to end against a real `peapod up` with the admin
//! kubeconfig: the official Python client (`kubernetes` on PyPI) and JavaScript client
//! (`@kubernetes/client-node`) run their common operations (tests/clients/*), including exec
//! with stdin over WebSocket `v5`/`v4.channel.k8s.io` and port-forward in the channel protocol;
//! and kubectl 1.28, which speaks SPDY/3.1 for exec, attach and port-forward (stdin, exit codes,
//! a tty with its size). `scripts/install-deps.sh` installs the clients under `/opt/peapod-clients`
//! (`PEAPOD_CLIENTS` overrides it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::{tail, Peapod};
use serde_json::Value;

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn clients_dir() -> PathBuf {
    PathBuf::from(std::env::var("PEAPOD_CLIENTS").unwrap_or_else(|_| "/opt/peapod-clients".into()))
}

fn programs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs a client program to completion and parses the JSON object it prints last.
fn observe(pp: &Peapod, mut cmd: Command, what: &str) -> Value {
    let out: Output = cmd
        .env("HOME", pp.home.path())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!("running the {what} (scripts/install-deps.sh installs it): {e}")
        });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {stderr}\nserver log tail:\n{}",
        out.status,
        tail(&pp.server_log(), 60)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{what} printed no JSON ({e}):\n{stdout}\n{stderr}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn python_client_lists_watches_patches_logs_execs_and_port_forwards() {
    let pp = Peapod::start();
    let python = clients_dir().join("python/bin/python3");
    let mut cmd = Command::new(&python);
    cmd.arg(programs().join("python_client.py"))
        .arg(&pp.kubeconfig)
        .arg("default")
        .arg(BUSYBOX);
    let seen = observe(&pp, cmd, "Python client");

    assert_eq!(
        seen["configmap_data"],
        serde_json::json!({"a": "1", "b": "2"})
    );
    assert_eq!(strings(&seen["configmaps_labelled"]), ["py-cm"]);
    assert!(
        strings(&seen["configmaps_after_delete"]).is_empty(),
        "{seen}"
    );
    let events = strings(&seen["watch_events"]);
    assert_eq!(events.first(), Some(&"ADDED"), "watch events: {events:?}");
    assert_eq!(seen["watch_phase"], "Running");
    assert!(strings(&seen["pods"]).contains(&"py-pod"), "{seen}");
    assert_eq!(seen["pod_labels"]["patched"], "yes");
    assert_eq!(seen["log"], "started-py\n");
    // Without a tty stdout and stderr are both read; their order between channels is free.
    let exec = seen["exec_output"].as_str().unwrap_or_default();
    assert!(
        exec.contains("out-42\n") && exec.contains("err\n"),
        "exec: {exec:?}"
    );
    // Exec with stdin: the shell answered, wrote to stderr and exited with its code.
    assert_eq!(seen["protocol"], "v5.channel.k8s.io");
    assert_eq!(seen["stdin_reply"], "hello-42");
    assert_eq!(seen["stdin_stderr"], "to-stderr\n");
    assert_eq!(seen["stdin_returncode"], 3);
    // Closing stdin (v5) ends `cat`.
    assert_eq!(seen["cat_output"], "bytes-in\ncat-done\n");
    assert_eq!(seen["cat_returncode"], 0);
    // Port-forward in the channel protocol.
    let reply = seen["portforward_reply"].as_str().unwrap_or_default();
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "reply: {reply:?}"
    );
    assert!(reply.ends_with("hello-from-py\n"), "reply: {reply:?}");
    assert!(seen["portforward_error"].is_null(), "{seen}");
    let refused = seen["portforward_closed_port_error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        refused.starts_with("error forwarding port 9999 to pod py-pod, uid "),
        "closed port: {refused:?}"
    );
    assert_eq!(seen["pod_gone"], true);
}

#[test]
fn javascript_client_lists_watches_patches_logs_execs_and_port_forwards() {
    let pp = Peapod::start();
    let mut cmd = Command::new("node");
    cmd.arg(programs().join("js_client.mjs"))
        .arg(&pp.kubeconfig)
        .arg("default")
        .arg(BUSYBOX)
        .arg(clients_dir().join("node"));
    let seen = observe(&pp, cmd, "JavaScript client");

    assert_eq!(
        seen["configmap_data"],
        serde_json::json!({"a": "1", "b": "2"})
    );
    assert_eq!(strings(&seen["configmaps_labelled"]), ["js-cm"]);
    assert!(
        strings(&seen["configmaps_after_delete"]).is_empty(),
        "{seen}"
    );
    let events = strings(&seen["watch_events"]);
    assert_eq!(events.first(), Some(&"ADDED"), "watch events: {events:?}");
    assert_eq!(seen["watch_phase"], "Running");
    assert!(strings(&seen["pods"]).contains(&"js-pod"), "{seen}");
    assert_eq!(seen["pod_labels"]["patched"], "yes");
    assert_eq!(seen["log"], "started-js\n");
    assert_eq!(seen["exec_protocol"], "v5.channel.k8s.io");
    // The end of stdin reaches `cat`, and the Status says Success.
    assert_eq!(
        seen["exec_stdin"]["stdout"],
        "line-one\nline-two\ndone-42\n"
    );
    assert_eq!(seen["exec_stdin"]["status"]["status"], "Success");
    // A non-zero exit: stderr and the ExitCode cause.
    assert_eq!(seen["exec_exit"]["stderr"], "bad\n");
    assert_eq!(seen["exec_exit"]["status"]["reason"], "NonZeroExitCode");
    assert_eq!(
        seen["exec_exit"]["status"]["details"]["causes"][0],
        serde_json::json!({"reason": "ExitCode", "message": "5"})
    );
    let reply = seen["portforward_reply"].as_str().unwrap_or_default();
    assert!(
        reply.starts_with("HTTP/1.") && reply.contains(" 200 "),
        "reply: {reply:?}"
    );
    assert!(reply.ends_with("hello-from-js\n"), "reply: {reply:?}");
    assert_eq!(seen["portforward_error"], "");
    assert_eq!(seen["pod_gone"], true);
}

/// kubectl 1.28 (SPDY/3.1 for exec, attach and port-forward).
fn kubectl_128() -> PathBuf {
    if let Ok(p) = std::env::var("PEAPOD_KUBECTL_1_28") {
        return PathBuf::from(p);
    }
    let installed = clients_dir().join("bin/kubectl-1.28");
    if installed.exists() {
        return installed;
    }
    for dir in std::env::var("PATH").unwrap_or_default().split(':') {
        let p = Path::new(dir).join("kubectl.1.28");
        if p.exists() {
            return p;
        }
    }
    let sdk = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.28");
    assert!(
        sdk.exists(),
        "kubectl 1.28 not found: scripts/install-deps.sh installs it, or set PEAPOD_KUBECTL_1_28"
    );
    sdk
}

#[test]
fn kubectl_1_28_execs_and_attaches_over_spdy() {
    let pp = Peapod::start();
    let old = kubectl_128();
    let version = Command::new(&old)
        .args(["version", "--client", "-o", "json"])
        .output()
        .expect("kubectl 1.28 version");
    let version: Value = serde_json::from_slice(&version.stdout).expect("version json");
    assert_eq!(version["clientVersion"]["minor"], "28");
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: old
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo hello-old > /www/index.html && httpd -p 8080 -h /www; i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done"]
"#
    ));
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/old", "--timeout=90s"]);
    let kubectl = |args: &[&str], stdin: Option<&str>| -> Output {
        use std::io::Write;
        let mut child = Command::new(&old)
            .arg("--kubeconfig")
            .arg(&pp.kubeconfig)
            .args(args)
            .env("HOME", pp.home.path())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl 1.28");
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(text.as_bytes()).expect("stdin");
        }
        child.wait_with_output().expect("kubectl 1.28 output")
    };

    // Output on both streams and the exit code from the error stream's Status.
    let out = kubectl(
        &[
            "exec",
            "old",
            "--",
            "sh",
            "-c",
            "echo out-$((6*7)); echo err >&2; exit 7",
        ],
        None,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "out-42\n",
        "stderr: {stderr}"
    );
    assert!(stderr.contains("err\n"), "stderr: {stderr}");
    assert!(
        stderr.contains("command terminated with exit code 7"),
        "stderr: {stderr}"
    );
    assert_eq!(out.status.code(), Some(7));
    let ok = kubectl(&["exec", "old", "--", "true"], None);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );

    // -i: stdin reaches the process, and its end (the stdin stream's FIN) ends `cat`.
    let out = kubectl(
        &["exec", "-i", "old", "--", "sh", "-c", "cat; echo done"],
        Some("line one\nline two\n"),
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "line one\nline two\ndone\n",
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success());

    // -t: a terminal of the size kubectl's own terminal has (the resize stream).
    let command = format!(
        // kubectl sends the terminal's size on the resize stream while the command starts:
        // poll (bounded) until it has arrived, as a program reading its size would.
        "stty rows 33 cols 111; {} --kubeconfig {} exec -it old -- sh -c 'tty; i=0; until s=$(stty size 2>/dev/null) && [ -n \"$s\" ]; do i=$((i+1)); [ $i -ge 50 ] && break; sleep 0.1; done; echo \"$s\"; exit 4'",
        old.display(),
        pp.kubeconfig.display()
    );
    let script = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("HOME", pp.home.path())
        .stdin(Stdio::null())
        .output()
        .expect("running script");
    let text = String::from_utf8_lossy(&script.stdout).replace('\r', "");
    assert!(text.contains("/dev/pts/"), "tty output: {text:?}");
    assert!(text.contains("33 111"), "tty output: {text:?}");
    assert_eq!(script.status.code(), Some(4), "tty exec: {text:?}");

    // attach: what the container writes from now on.
    let mut attach = Command::new(&old)
        .arg("--kubeconfig")
        .arg(&pp.kubeconfig)
        .args(["attach", "old"])
        .env("HOME", pp.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl 1.28 attach");
    let mut stdout = attach.stdout.take().expect("attach stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(&mut stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let line = rx.recv_timeout(Duration::from_secs(30));
    let _ = attach.kill();
    let _ = attach.wait();
    let line = line.expect("a line from kubectl attach");
    assert!(line.starts_with("tick-"), "attach line: {line:?}");

    // port-forward over SPDY/3.1: kubectl picks the local port and prints it.
    let mut forward = Command::new(&old)
        .arg("--kubeconfig")
        .arg(&pp.kubeconfig)
        .args(["port-forward", "pod/old", ":8080"])
        .env("HOME", pp.home.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl 1.28 port-forward");
    let mut first = String::new();
    {
        use std::io::BufRead;
        let stdout = forward.stdout.as_mut().expect("port-forward stdout");
        let _ = std::io::BufReader::new(stdout).read_line(&mut first);
    }
    let reply = local_port(&first).map(http_get);
    let _ = forward.kill();
    let _ = forward.wait();
    let reply = reply.unwrap_or_else(|| panic!("port-forward printed {first:?}"));
    assert!(
        reply.starts_with("HTTP/1.") && reply.ends_with("hello-old\n"),
        "reply: {reply:?}"
    );

    // An unknown container is refused before any upgrade.
    let bad = kubectl(&["exec", "old", "-c", "nope", "--", "true"], None);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("container nope is not valid for pod old"),
        "stderr: {err}"
    );
}

/// The local port of kubectl's `Forwarding from 127.0.0.1:PORT -> 8080`.
fn local_port(line: &str) -> Option<u16> {
    line.strip_prefix("Forwarding from 127.0.0.1:")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// One HTTP/1.0 GET through a local port; the whole reply (the server closes).
fn http_get(port: u16) -> String {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    conn.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    conn.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n")
        .expect("request");
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    reply
}
