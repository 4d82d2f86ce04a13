//! Joining starts from what `peapod up` prints, kubeadm's way: a join command with a
//! bootstrap token (a `bootstrap.kubernetes.io/token` Secret in kube-system) and the hash that
//! pins the cluster CA. The token authenticates as `system:bootstrap:<id>`; a wrong or expired
//! one gets 401, and the token cleaner deletes expired token Secrets.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_until, Peapod};

/// (token, CA hash) from the join command in the server's log.
fn join_command(pp: &Peapod) -> (String, String) {
    wait_until("the join command", Duration::from_secs(30), || {
        let log = pp.server_log();
        let line = log.lines().find(|l| l.contains("peapod join --server"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let after = |flag: &str| {
            words
                .iter()
                .position(|w| *w == flag)
                .and_then(|i| words.get(i + 1))
                .map(|w| w.to_string())
        };
        Some((after("--token")?, after("--discovery-token-ca-cert-hash")?))
    })
}

/// kubeadm's documented recipe for the CA hash, with openssl.
fn openssl_ca_hash(ca: &std::path::Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "openssl x509 -pubkey -noout -in {} | openssl pkey -pubin -outform der | sha256sum",
            ca.display()
        ))
        .output()
        .expect("running openssl");
    assert!(out.status.success(), "openssl failed");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    format!(
        "sha256:{}",
        text.split_whitespace().next().unwrap_or_default()
    )
}

/// `kubectl auth whoami` as the bearer of `token`: the username, or the error.
fn whoami(pp: &Peapod, token: &str) -> Result<String, String> {
    let out = pp.kubectl(&[
        "--token",
        token,
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

#[test]
fn the_join_token_authenticates_as_a_bootstrapper_and_wrong_or_expired_ones_get_401() {
    let pp = Peapod::start();
    let (token, hash) = join_command(&pp);
    let (id, secret) = token.split_once('.').expect("id.secret");
    assert_eq!((id.len(), secret.len()), (6, 16), "{token}");
    let ca = pp.state_dir.join("pki/ca.crt");
    assert_eq!(hash, openssl_ca_hash(&ca));
    let secret_field = |path: &str| {
        pp.kubectl_ok(&[
            "get",
            "secret",
            "-n",
            "kube-system",
            &format!("bootstrap-token-{id}"),
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(secret_field("{.type}"), "bootstrap.kubernetes.io/token");
    let expiration = secret_field("{.data.expiration}");
    assert!(!expiration.is_empty(), "the token has an expiration");

    assert_eq!(whoami(&pp, &token), Ok(format!("system:bootstrap:{id}")));
    let wrong = format!("{id}.{}", "0".repeat(16));
    let err = whoami(&pp, &wrong).expect_err("a wrong secret is refused");
    assert!(
        err.contains("Unauthorized") || err.contains("must be logged in"),
        "{err}"
    );
    let unknown = whoami(&pp, "zzzzzz.0123456789abcdef").expect_err("an unknown id is refused");
    assert!(
        unknown.contains("Unauthorized") || unknown.contains("must be logged in"),
        "{unknown}"
    );

    // A token whose Secret has expired.
    pp.apply(
        r#"apiVersion: v1
kind: Secret
metadata:
  name: bootstrap-token-old123
  namespace: kube-system
type: bootstrap.kubernetes.io/token
stringData:
  token-id: old123
  token-secret: 0123456789abcdef
  expiration: "2020-01-01T00:00:00Z"
  usage-bootstrap-authentication: "true"
"#,
    );
    let expired = whoami(&pp, "old123.0123456789abcdef").expect_err("an expired token is refused");
    assert!(
        expired.contains("Unauthorized") || expired.contains("must be logged in"),
        "{expired}"
    );
    wait_until(
        "the token cleaner to delete the expired token",
        Duration::from_secs(30),
        || {
            let out = pp.kubectl(&[
                "get",
                "secret",
                "-n",
                "kube-system",
                "bootstrap-token-old123",
            ]);
            (!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound"))
                .then_some(())
        },
    );
    // The live join token stays.
    assert_eq!(whoami(&pp, &token), Ok(format!("system:bootstrap:{id}")));
}
