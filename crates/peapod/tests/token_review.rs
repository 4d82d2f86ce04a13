//! TokenReview (`authentication.k8s.io/v1`) end to end with the real kubectl: a
//! ServiceAccount bound to `system:auth-delegator` asks whether tokens are good. A
//! ServiceAccount token answers with its user and the audiences it was checked for (the API
//! server's when the review names none, else only the ones asked for that it carries); the
//! bootstrap token of the join command is `system:bootstrap:<id>` for the API's audience only;
//! garbage is refused; and an account without the role gets kube's 403.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};
use serde_json::Value;

const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// Creates a TokenReview of `token` (asking for `audiences`) as the bearer of `as_token`;
/// the answer's `status`, or kubectl's error text.
fn review(pp: &Peapod, as_token: &str, token: &str, audiences: &[&str]) -> Result<Value, String> {
    let body = serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    });
    let mut child = pp
        .kubectl_cmd()
        .args(["--token", as_token, "create", "-f", "-", "-o", "json"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl create");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(body.to_string().as_bytes())
            .expect("write review");
    }
    let out = child.wait_with_output().expect("kubectl output");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: Value = serde_json::from_slice(&out.stdout).expect("json answer");
    Ok(v["status"].clone())
}

fn token(pp: &Peapod, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    pp.kubectl_ok(&all).trim().to_string()
}

#[test]
fn token_reviews_answer_for_service_account_and_bootstrap_tokens() {
    let pp = Peapod::start();
    pp.kubectl_ok(&["create", "serviceaccount", "reviewer"]);
    pp.kubectl_ok(&["create", "serviceaccount", "app"]);
    pp.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "reviewer-delegator",
        "--clusterrole=system:auth-delegator",
        "--serviceaccount=default:reviewer",
    ]);
    let reviewer = token(&pp, &["reviewer"]);
    let app = token(&pp, &["app"]);
    let app_vault = token(&pp, &["app", "--audience", "vault"]);
    let app_uid = pp
        .jsonpath("serviceaccount/app", "{.metadata.uid}")
        .expect("app uid");

    // A token for the API server's audience, reviewed without audiences.
    let status = review(&pp, &reviewer, &app, &[]).expect("review");
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        "system:serviceaccount:default:app"
    );
    assert_eq!(status["user"]["uid"], app_uid.as_str());
    assert_eq!(
        status["user"]["groups"],
        serde_json::json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ])
    );
    assert_eq!(status["audiences"], serde_json::json!([ISSUER]));

    // A token for another audience passes only for that audience.
    let status = review(&pp, &reviewer, &app_vault, &["vault", "other"]).expect("review");
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["audiences"], serde_json::json!(["vault"]));
    let status = review(&pp, &reviewer, &app_vault, &[]).expect("review");
    assert_eq!(status["authenticated"], false, "{status}");
    let status = review(&pp, &reviewer, &app, &["vault"]).expect("review");
    assert_eq!(status["authenticated"], false, "{status}");

    // Garbage is no token.
    let status = review(&pp, &reviewer, "not-a-token", &[]).expect("review");
    assert_eq!(status["authenticated"], false, "{status}");
    assert!(status
        .get("user")
        .is_none_or(|u| u.get("username").is_none()));

    // The join command's bootstrap token: no audience of its own.
    let bootstrap = wait_until("the join command", Duration::from_secs(30), || {
        let log = pp.server_log();
        let line = log.lines().find(|l| l.contains("peapod join --server"))?;
        let words: Vec<&str> = line.split_whitespace().collect();
        let i = words.iter().position(|w| *w == "--token")?;
        words.get(i + 1).map(|w| w.to_string())
    });
    let id = bootstrap.split('.').next().unwrap_or_default().to_string();
    let status = review(&pp, &reviewer, &bootstrap, &[]).expect("review");
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(
        status["user"]["username"],
        format!("system:bootstrap:{id}").as_str()
    );
    assert_eq!(status["audiences"], serde_json::json!([ISSUER]));
    let status = review(&pp, &reviewer, &bootstrap, &["vault"]).expect("review");
    assert_eq!(status["authenticated"], false, "{status}");

    // Without system:auth-delegator the review itself is forbidden.
    let refused = review(&pp, &app, &app, &[]).expect_err("forbidden");
    assert!(
        refused.contains(
            r#"tokenreviews.authentication.k8s.io is forbidden: User "system:serviceaccount:default:app" cannot create resource "tokenreviews" in API group "authentication.k8s.io" at the cluster scope"#
        ),
        "{refused}"
    );
}
