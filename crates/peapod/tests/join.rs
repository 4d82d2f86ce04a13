//! `peapod join` as kubeadm does it: a node in its own network namespace joins with the
//! command `peapod up` prints. It reads `cluster-info` anonymously, trusts the CA only when
//! the token's signature and the pinned hash agree (a wrong hash is refused, a wrong token
//! gets 401), gets a node client certificate through a CertificateSigningRequest that the
//! controllers approve and sign, becomes Ready and runs a pod. Its credential is
//! `system:node:<name>`, which may change its own Node but not another (403), and reads a
//! Secret or ConfigMap only while a pod bound to it uses it (403 otherwise).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::netns::{NetnsNode, TestBridge};
use common::{wait_until, Peapod};

/// kubectl with another kubeconfig than the admin's.
fn kubectl_as(pp: &Peapod, kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", pp.home.path())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: on-joined
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {kubernetes.io/hostname: jn-one}
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    env:
    - name: FROM_SECRET
      valueFrom: {secretKeyRef: {name: jn-used, key: k}}
"#;

#[test]
fn a_node_joins_with_the_printed_command_and_its_credential_is_limited_to_itself() {
    let bridge = TestBridge::create();
    let pp = Peapod::start_listening(&format!("{}:0", bridge.host_ip()), &[]);
    let (server, token, hash) = pp.join_command();
    assert!(
        server.starts_with(&format!("https://{}:", bridge.host_ip())),
        "{server}"
    );
    let id = token
        .split_once('.')
        .map(|(id, _)| id.to_string())
        .expect("id.secret");

    // cluster-info is readable without credentials and signed with the token.
    let out = Command::new("curl")
        .args([
            "-sk",
            &format!("{server}/api/v1/namespaces/kube-public/configmaps/cluster-info"),
        ])
        .output()
        .expect("curl");
    let body = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(body.contains("\"kubeconfig\""), "{body}");
    let signed = wait_until(
        "the token's signature in cluster-info",
        Duration::from_secs(30),
        || {
            let out = pp.kubectl(&[
                "get",
                "cm",
                "-n",
                "kube-public",
                "cluster-info",
                "-o",
                "json",
            ]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(&format!("jws-kubeconfig-{id}"))
                .then_some(text)
        },
    );
    assert!(signed.contains("certificate-authority-data"), "{signed}");
    // Other objects stay closed to anonymous requests.
    let out = Command::new("curl")
        .args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            &format!("{server}/api/v1/namespaces/kube-system/secrets"),
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "401");

    let mut node = NetnsNode::create(&bridge, 1, "jn-one");
    let timeout = ["--bootstrap-timeout", "30s"];

    // A wrong CA hash: refused before the token is sent anywhere.
    let wrong_hash = format!("sha256:{}", "ab".repeat(32));
    let out = node.join_output(
        &[
            &[
                "--server",
                &server,
                "--token",
                &token,
                "--discovery-token-ca-cert-hash",
                &wrong_hash,
            ][..],
            &timeout[..],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("refusing to trust this server"),
        "{}",
        text(&out)
    );
    assert!(
        text(&out).contains(&hash),
        "the error names the real hash: {}",
        text(&out)
    );

    // A wrong token: the API server answers 401, and join fails.
    let out = node.join_output(
        &[
            &[
                "--server",
                &server,
                "--token",
                "zzzzzz.0123456789abcdef",
                "--discovery-token-ca-cert-hash",
                &hash,
            ][..],
            &timeout[..],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("401 Unauthorized"), "{}", text(&out));
    // The right id with a wrong secret: its signature over cluster-info does not verify.
    let out = node.join_output(
        &[
            &[
                "--server",
                &server,
                "--token",
                &format!("{id}.0000000000000000"),
                "--discovery-token-ca-cert-hash",
                &hash,
            ][..],
            &timeout[..],
        ]
        .concat(),
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is not signed with token"),
        "{}",
        text(&out)
    );
    assert_eq!(
        pp.kubectl_ok(&["get", "csr", "-o", "name"]),
        "",
        "no request was made"
    );

    // The printed command joins.
    node.start_join(
        &pp,
        &[
            "--server",
            &server,
            "--token",
            &token,
            "--discovery-token-ca-cert-hash",
            &hash,
        ],
    );
    wait_until("node jn-one Ready", Duration::from_secs(90), || {
        node.assert_alive();
        let ready = pp.jsonpath(
            "node/jn-one",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        );
        (ready.as_deref() == Some("True")).then_some(())
    });
    let csrs = pp.kubectl_ok(&["get", "csr"]);
    assert!(
        csrs.contains("SIGNERNAME") && csrs.contains("REQUESTOR") && csrs.contains("CONDITION"),
        "{csrs}"
    );
    assert!(
        csrs.contains("kubernetes.io/kube-apiserver-client-kubelet"),
        "{csrs}"
    );
    assert!(csrs.contains(&format!("system:bootstrap:{id}")), "{csrs}");
    assert!(csrs.contains("Approved,Issued"), "{csrs}");

    for secret in ["jn-used", "jn-other"] {
        pp.kubectl_ok(&["create", "secret", "generic", secret, "--from-literal=k=v"]);
    }
    pp.kubectl_ok(&["create", "configmap", "jn-unused", "--from-literal=k=v"]);
    pp.apply(POD);
    pp.wait_pod_phase("on-joined", "Running", Duration::from_secs(60));
    assert_eq!(
        pp.jsonpath("pod/on-joined", "{.spec.nodeName}").as_deref(),
        Some("jn-one")
    );

    // The node's own credential: who it is, what it may change.
    let creds = node.state_dir.join("node.kubeconfig");
    let who = kubectl_as(
        &pp,
        &creds,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert!(who.status.success(), "{}", text(&who));
    assert!(
        text(&who).starts_with("system:node:jn-one ") && text(&who).contains("system:nodes"),
        "{}",
        text(&who)
    );
    let own = kubectl_as(&pp, &creds, &["label", "node", "jn-one", "joined=yes"]);
    assert!(own.status.success(), "{}", text(&own));
    let other = kubectl_as(&pp, &creds, &["label", "node", &pp.node_name, "joined=no"]);
    assert!(!other.status.success());
    assert!(
        text(&other).contains("Forbidden")
            && text(&other).contains("node \"jn-one\" is not allowed to modify node"),
        "{}",
        text(&other)
    );
    let create = kubectl_as(
        &pp,
        &creds,
        &["create", "configmap", "nope", "--from-literal=a=b"],
    );
    assert!(
        !create.status.success() && text(&create).contains("forbidden"),
        "{}",
        text(&create)
    );

    // Secrets and ConfigMaps only through its pods (the Node authorizer's graph): the
    // Secret its pod uses, not another one, nor a list of them all.
    let used = kubectl_as(&pp, &creds, &["get", "secret", "jn-used", "-o", "name"]);
    assert!(used.status.success(), "{}", text(&used));
    for args in [
        &["get", "secret", "jn-other"][..],
        &["get", "configmap", "jn-unused"],
        &["get", "secrets"],
    ] {
        let out = kubectl_as(&pp, &creds, args);
        assert!(
            !out.status.success() && text(&out).contains("forbidden"),
            "{args:?}: {}",
            text(&out)
        );
    }
    let other = kubectl_as(&pp, &creds, &["get", "secret", "jn-other"]);
    assert!(
        text(&other).contains("no relationship found between node 'jn-one' and this object"),
        "{}",
        text(&other)
    );

    pp.kubectl_ok(&["delete", "pod", "on-joined", "--wait=true", "--timeout=60s"]);
    // Its pod gone, the node reads the Secret no more.
    let after = kubectl_as(&pp, &creds, &["get", "secret", "jn-used"]);
    assert!(
        !after.status.success() && text(&after).contains("forbidden"),
        "{}",
        text(&after)
    );
    drop(node);
}

#[test]
fn kubectl_approves_and_denies_certificate_requests() {
    let pp = Peapod::start();
    // A request the approver leaves alone (not from a bootstrapper, not a node's own).
    let request = |name: &str| {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout /dev/null -subj '/CN={name}/O=example' 2>/dev/null | base64 -w0"
            ))
            .output()
            .expect("openssl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    for name in ["alice", "bob"] {
        pp.apply(&format!(
            "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: {name}\nspec:\n  request: {}\n  signerName: example.com/signer\n  expirationSeconds: 86400\n  usages: [client auth]\n",
            request(name)
        ));
    }
    let table = pp.kubectl_ok(&["get", "csr", "alice"]);
    assert!(
        table.contains("example.com/signer")
            && table.contains("admin")
            && table.contains("24h")
            && table.contains("Pending"),
        "{table}"
    );
    pp.kubectl_ok(&["certificate", "approve", "alice"]);
    pp.kubectl_ok(&["certificate", "deny", "bob"]);
    assert_eq!(
        pp.jsonpath("csr/alice", "{.status.conditions[0].type}")
            .as_deref(),
        Some("Approved")
    );
    assert_eq!(
        pp.jsonpath("csr/bob", "{.status.conditions[0].type}")
            .as_deref(),
        Some("Denied")
    );
    let table = pp.kubectl_ok(&["get", "csr"]);
    assert!(
        table.contains("Approved") && table.contains("Denied"),
        "{table}"
    );
    // The spec is fixed once created.
    let out = pp.kubectl(&[
        "patch",
        "csr",
        "alice",
        "--type=merge",
        "-p",
        "{\"spec\":{\"signerName\":\"example.com/other\"}}",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        pp.jsonpath("csr/alice", "{.spec.signerName}").as_deref(),
        Some("example.com/signer")
    );
    // An invalid request is refused with the field named.
    let bad = pp.home.path().join("bad-csr.yaml");
    std::fs::write(
        &bad,
        "apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata:\n  name: bad\nspec:\n  request: aGVsbG8=\n  signerName: example.com/signer\n  usages: [client auth]\n",
    )
    .expect("manifest");
    let out = pp.kubectl(&["create", "-f", bad.to_str().expect("utf-8 path")]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("PEM block type must be CERTIFICATE REQUEST"),
        "{}",
        text(&out)
    );
}
