//! Requests that once panicked, hung or grew without bound, sent to a real API server and
//! node API: each is refused (or served harmlessly), and the server keeps answering kubectl.

use std::io::Read;
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{wait_until, Peapod};

/// `host:port` of the API server, from the kubeconfig `peapod up` wrote.
fn api_addr(pp: &Peapod) -> String {
    let text = std::fs::read_to_string(&pp.kubeconfig).expect("kubeconfig");
    text.lines()
        .find_map(|l| l.trim().strip_prefix("server: https://"))
        .expect("server line")
        .to_string()
}

fn admin_token(pp: &Peapod) -> String {
    std::fs::read_to_string(pp.state_dir.join("pki/admin-token"))
        .expect("admin token")
        .trim()
        .to_string()
}

/// `curl` verifying the server against the cluster CA: (HTTP status, body). Status `000`
/// when no HTTP answer came.
fn curl(pp: &Peapod, args: &[&str]) -> (String, String) {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "20", "-w", "\n%{http_code}", "--cacert"])
        .arg(pp.state_dir.join("pki/ca.crt"))
        .args(args)
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

fn assert_serving(pp: &Peapod) {
    let out = pp.kubectl_ok(&["get", "ns", "default", "-o", "name"]);
    assert_eq!(out.trim(), "namespace/default");
}

/// A connection that never starts TLS is closed by the server (its handshake deadline),
/// instead of holding a slot forever.
fn assert_silent_client_is_closed(addr: &str) {
    let mut silent = TcpStream::connect(addr).expect("connect");
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    let start = Instant::now();
    let mut byte = [0u8; 1];
    match silent.read(&mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!(
            "silent connection to {addr} not closed after {:?}: {other:?}",
            start.elapsed()
        ),
    }
}

#[test]
fn hostile_requests_are_refused_and_the_api_server_keeps_serving() {
    let pp = Peapod::start();
    let addr = api_addr(&pp);
    let token = admin_token(&pp);
    let bearer = format!("Authorization: Bearer {token}");
    let base = format!("https://{addr}/api/v1/namespaces/default/configmaps");

    // A body over 3 MiB: kube-apiserver's 413 Status.
    let big = pp.home.path().join("big");
    std::fs::write(&big, "x".repeat(4 * 1024 * 1024)).expect("big file");
    let out = pp.kubectl(&[
        "create",
        "configmap",
        "big",
        &format!("--from-file=big={}", big.display()),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("Request entity too large: limit is 3145728"),
        "{stderr}"
    );
    assert_serving(&pp);

    // Unknown-field keys with brackets and multi-byte characters, in each validation mode.
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"keys","a[0]]":1,"x]é]":{"[]]":2}},"data":{"k":"v"},"é[1]]":3}"#;
    let (code, text) = curl(
        &pp,
        &[
            "-H",
            &bearer,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &format!("{base}?fieldValidation=Strict"),
        ],
    );
    assert_eq!(code, "400", "{text}");
    assert!(text.contains("unknown field"), "{text}");
    let (code, text) = curl(
        &pp,
        &[
            "-H",
            &bearer,
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            body,
            &format!("{base}?fieldValidation=Ignore"),
        ],
    );
    assert_eq!(code, "201", "{text}");
    assert!(!text.contains("a[0]]"), "{text}");

    // Field selectors with escapes before multi-byte characters.
    for sel in ["metadata.name=\\é", "metadata.name\\é=x", "\\日=\\本"] {
        let out = pp.kubectl(&["get", "configmaps", "--field-selector", sel]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("connection"), "{sel}: {stderr}");
    }
    assert_serving(&pp);

    // A watch with the largest timeoutSeconds starts (curl gives up, not the server).
    let (code, _) = curl(
        &pp,
        &[
            "-H",
            &bearer,
            "--max-time",
            "2",
            &format!("{base}?watch=true&timeoutSeconds={}", i64::MAX),
        ],
    );
    assert_eq!(code, "200");

    // A client that connects and says nothing is cut off; kubectl is served meanwhile.
    assert_silent_client_is_closed(&addr);
    assert_serving(&pp);
}

#[test]
fn the_node_api_needs_tls_its_token_and_a_certificate_the_cluster_ca_signed() {
    let pp = Peapod::start();
    let port = pp.kubectl_ok(&[
        "get",
        "node",
        &pp.node_name,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let node = format!("127.0.0.1:{}", port.trim());
    let token = std::fs::read_to_string(pp.state_dir.join("node-api-token")).expect("token");
    let token = token.trim();
    assert!(token.len() >= 32, "weak node token");

    // Plain HTTP gets no HTTP answer.
    let out = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{node}/healthz"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "000");

    // Over TLS verified against the cluster CA: no token, a wrong one, a prefix are 401.
    let url = format!("https://{node}/healthz");
    assert_eq!(curl(&pp, &[&url]).0, "401");
    for wrong in ["wrong", &token[..token.len() - 1], &format!("{token}x")] {
        let h = format!("Authorization: Bearer {wrong}");
        assert_eq!(curl(&pp, &["-H", &h, &url]).0, "401", "{wrong}");
    }
    let h = format!("Authorization: Bearer {token}");
    let (code, body) = curl(&pp, &["-H", &h, &url]);
    assert_eq!((code.as_str(), body.as_str()), ("200", "ok"));

    // A silent client is cut off here too.
    assert_silent_client_is_closed(&node);

    // The API server reaches the node (it verified the node's certificate) for logs.
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: talker
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo verified-node; sleep 3600"]
"#,
    );
    pp.wait_pod_phase("talker", "Running", Duration::from_secs(60));
    wait_until("logs through the node API", Duration::from_secs(30), || {
        let out = pp.kubectl(&["logs", "talker"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("verified-node")
            .then_some(())
    });
    pp.kubectl_ok(&["delete", "pod", "talker", "--wait=true", "--timeout=60s"]);
}
