//! RBAC end to end with the real kubectl: a ServiceAccount token (`kubectl create token`) is
//! refused with kube's 403 until a Role and RoleBinding grant it; `kubectl auth can-i`
//! (SelfSubjectAccessReview, `--list` through SelfSubjectRulesReview, `--as`
//! impersonation) and `kubectl auth whoami` (SelfSubjectReview) answer for the admin and
//! for the account; a ClusterRole labelled `aggregate-to-view` flows into `view` (and from
//! there into `edit` and `admin`); and a pod's own mounted token, used by kubectl inside
//! the pod, is refused what its Role does not grant.
//!
//! In-pod kubectl is the host's (a static binary, bind-mounted), as in the ServiceAccount
//! tests; the API's in-cluster address 10.96.0.1 is node-wide, so the tests of this binary
//! never run two peapods at once.

mod common;

use std::process::Output;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{wait_until, workspace_root, Peapod};

const T: Duration = Duration::from_secs(90);

fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// kubectl with `token` instead of the admin's.
fn as_token(pp: &Peapod, token: &str, args: &[&str]) -> Output {
    let mut all = vec!["--token", token];
    all.extend_from_slice(args);
    pp.kubectl(&all)
}

/// `kubectl auth can-i ARGS`: its answer on stdout ("yes"/"no") and whether it exited 0.
fn can_i(pp: &Peapod, token: Option<&str>, args: &[&str]) -> (String, bool) {
    let mut all = vec!["auth", "can-i"];
    all.extend_from_slice(args);
    let out = match token {
        Some(t) => as_token(pp, t, &all),
        None => pp.kubectl(&all),
    };
    (text(&out.stdout).trim().to_string(), out.status.success())
}

fn new_namespace(pp: &Peapod, ns: &str) {
    pp.kubectl_ok(&["create", "namespace", ns]);
    wait_until(&format!("ServiceAccount {ns}/default"), T, || {
        pp.kubectl(&["get", "serviceaccount", "default", "-n", ns])
            .status
            .success()
            .then_some(())
    });
}

#[test]
fn service_account_is_refused_until_a_role_binds_it() {
    let _serial = serial();
    let pp = Peapod::start();
    pp.kubectl_ok(&["create", "namespace", "team"]);
    pp.kubectl_ok(&["create", "serviceaccount", "bot", "-n", "team"]);
    let token = pp
        .kubectl_ok(&["create", "token", "bot", "-n", "team"])
        .trim()
        .to_string();

    let out = as_token(&pp, &token, &["get", "pods", "-n", "team"]);
    assert!(!out.status.success());
    assert_eq!(
        text(&out.stderr).trim(),
        r#"Error from server (Forbidden): pods is forbidden: User "system:serviceaccount:team:bot" cannot list resource "pods" in API group "" in the namespace "team""#
    );
    assert_eq!(
        can_i(&pp, Some(&token), &["list", "pods", "-n", "team"]),
        ("no".to_string(), false)
    );
    assert_eq!(
        can_i(&pp, None, &["list", "pods", "-n", "team"]),
        ("yes".to_string(), true)
    );
    assert_eq!(
        can_i(&pp, None, &["delete", "nodes", "--all-namespaces"]),
        ("yes".to_string(), true)
    );
    let bot = "--as=system:serviceaccount:team:bot";
    assert_eq!(
        can_i(&pp, None, &["list", "pods", "-n", "team", bot]),
        ("no".to_string(), false)
    );

    // `kubectl auth whoami`.
    let me = as_token(
        &pp,
        &token,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username} {.status.userInfo.groups}",
        ],
    );
    assert_eq!(
        text(&me.stdout),
        r#"system:serviceaccount:team:bot ["system:serviceaccounts","system:serviceaccounts:team","system:authenticated"]"#,
        "{}",
        text(&me.stderr)
    );
    let admin = pp.kubectl_ok(&["auth", "whoami"]);
    assert!(
        admin
            .lines()
            .any(|l| l.starts_with("Username") && l.ends_with("admin")),
        "{admin}"
    );
    assert!(
        admin.contains("[system:masters system:authenticated]"),
        "{admin}"
    );

    pp.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get,list,watch",
        "--resource=pods",
        "-n",
        "team",
    ]);
    pp.kubectl_ok(&[
        "create",
        "rolebinding",
        "bot-reads-pods",
        "--role=pod-reader",
        "--serviceaccount=team:bot",
        "-n",
        "team",
    ]);
    wait_until("the bot may list pods", T, || {
        as_token(&pp, &token, &["get", "pods", "-n", "team"])
            .status
            .success()
            .then_some(())
    });
    assert_eq!(
        can_i(&pp, Some(&token), &["list", "pods", "-n", "team"]),
        ("yes".to_string(), true)
    );
    assert_eq!(
        can_i(&pp, None, &["watch", "pods", "-n", "team", bot]),
        ("yes".to_string(), true)
    );
    assert_eq!(
        can_i(&pp, Some(&token), &["delete", "pods", "-n", "team"]),
        ("no".to_string(), false)
    );
    assert_eq!(
        can_i(&pp, Some(&token), &["list", "pods", "-n", "default"]),
        ("no".to_string(), false)
    );
    let out = as_token(&pp, &token, &["get", "secrets", "-n", "team"]);
    assert!(
        text(&out.stderr).contains(r#"cannot list resource "secrets""#),
        "{}",
        text(&out.stderr)
    );
    let out = as_token(&pp, &token, &["get", "nodes"]);
    assert!(
        text(&out.stderr).contains(r#"nodes is forbidden: User "system:serviceaccount:team:bot" cannot list resource "nodes" in API group "" at the cluster scope"#),
        "{}",
        text(&out.stderr)
    );
    let rules = text(&as_token(&pp, &token, &["auth", "can-i", "--list", "-n", "team"]).stdout);
    assert!(
        rules
            .lines()
            .any(|l| l.starts_with("pods ") && l.contains("[get list watch]")),
        "{rules}"
    );
    assert!(
        rules
            .lines()
            .any(|l| l.starts_with("selfsubjectaccessreviews.authorization.k8s.io")),
        "{rules}"
    );

    // Tables and the immutable roleRef.
    let wide = pp.kubectl_ok(&[
        "get",
        "rolebinding",
        "bot-reads-pods",
        "-n",
        "team",
        "-o",
        "wide",
    ]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    );
    assert!(
        wide.contains("Role/pod-reader") && wide.contains("team/bot"),
        "{wide}"
    );
    let roles = pp.kubectl_ok(&["get", "clusterroles"]);
    for name in [
        "cluster-admin",
        "admin",
        "edit",
        "view",
        "system:discovery",
        "system:basic-user",
    ] {
        assert!(
            roles
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name}: {roles}"
        );
    }
    let out = pp.kubectl(&[
        "patch",
        "rolebinding",
        "bot-reads-pods",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"roleRef":{"kind":"ClusterRole","name":"edit"}}"#,
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("cannot change roleRef"),
        "{}",
        text(&out.stderr)
    );

    // Taking the binding away takes the access away.
    pp.kubectl_ok(&["delete", "rolebinding", "bot-reads-pods", "-n", "team"]);
    wait_until("the bot refused again", T, || {
        (!as_token(&pp, &token, &["get", "pods", "-n", "team"])
            .status
            .success())
        .then_some(())
    });
}

#[test]
fn cluster_roles_aggregate_into_view_edit_and_admin() {
    let _serial = serial();
    let pp = Peapod::start();
    let resources_of = |role: &str| {
        pp.jsonpath(&format!("clusterrole/{role}"), "{.rules[*].resources}")
            .unwrap_or_default()
    };
    // The defaults are gathered from the system:aggregate-to-* roles.
    wait_until("view holds the default read rules", T, || {
        resources_of("view").contains("\"pods/log\"").then_some(())
    });
    wait_until("admin holds roles and bindings", T, || {
        let admin = resources_of("admin");
        (admin.contains("\"rolebindings\"")
            && admin.contains("\"secrets\"")
            && admin.contains("\"pods/log\""))
        .then_some(())
    });
    assert!(!resources_of("view").contains("\"secrets\""));

    pp.apply(
        r#"apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: lease-viewer
  labels:
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch"]
"#,
    );
    for role in ["view", "edit", "admin"] {
        wait_until(&format!("{role} gathers the lease rule"), T, || {
            resources_of(role).contains("\"leases\"").then_some(())
        });
    }

    new_namespace(&pp, "shop");
    pp.kubectl_ok(&[
        "create",
        "rolebinding",
        "viewers",
        "--clusterrole=view",
        "--serviceaccount=shop:default",
        "-n",
        "shop",
    ]);
    let as_default = "--as=system:serviceaccount:shop:default";
    wait_until("the account may list leases", T, || {
        (can_i(
            &pp,
            None,
            &[
                "list",
                "leases.coordination.k8s.io",
                "-n",
                "shop",
                as_default,
            ],
        )
        .0 == "yes")
            .then_some(())
    });
    assert_eq!(
        can_i(
            &pp,
            None,
            &["get", "deployments.apps", "-n", "shop", as_default]
        )
        .0,
        "yes"
    );
    assert_eq!(
        can_i(&pp, None, &["get", "secrets", "-n", "shop", as_default]).0,
        "no"
    );

    // Losing the label takes the rule out again.
    pp.kubectl_ok(&[
        "label",
        "clusterrole",
        "lease-viewer",
        "rbac.authorization.k8s.io/aggregate-to-view-",
    ]);
    wait_until("view drops the lease rule", T, || {
        (!resources_of("view").contains("\"leases\"")).then_some(())
    });
    wait_until("the account may no longer list leases", T, || {
        (can_i(
            &pp,
            None,
            &[
                "list",
                "leases.coordination.k8s.io",
                "-n",
                "shop",
                as_default,
            ],
        )
        .0 == "no")
            .then_some(())
    });
}

#[test]
fn a_pods_token_is_refused_what_its_role_does_not_grant() {
    let _serial = serial();
    let pp = Peapod::start();
    wait_until(
        "our in-cluster API address",
        Duration::from_secs(300),
        || {
            pp.server_log()
                .contains("API server serving in-cluster clients")
                .then_some(())
        },
    );
    new_namespace(&pp, "shop");
    pp.kubectl_ok(&["config", "set-context", "--current", "--namespace", "shop"]);
    let out = std::process::Command::new("sh")
        .args(["-c", "readlink -f \"$(command -v kubectl)\""])
        .output()
        .expect("locating kubectl");
    let kubectl = text(&out.stdout).trim().to_string();
    let manifest =
        std::fs::read_to_string(workspace_root().join("examples/serviceaccount-in-cluster.yaml"))
            .expect("example")
            .replace("/usr/local/bin/kubectl", &kubectl);
    pp.apply(&manifest);
    pp.wait_pod_phase("api-reader", "Running", T);
    // The Role lets the pod list its namespace's pods ...
    wait_until("the pod listed its pods", T, || {
        let logs = text(&pp.kubectl(&["logs", "api-reader"]).stdout);
        logs.contains("pod/api-reader").then_some(())
    });
    let in_pod = |args: &[&str]| {
        let mut all = vec!["exec", "api-reader", "--", "/kubectl"];
        all.extend_from_slice(args);
        pp.kubectl(&all)
    };
    let out = in_pod(&["auth", "can-i", "list", "pods"]);
    assert_eq!(text(&out.stdout).trim(), "yes", "{}", text(&out.stderr));
    // ... and nothing else.
    let out = in_pod(&["get", "secrets"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(r#"Error from server (Forbidden): secrets is forbidden: User "system:serviceaccount:shop:default" cannot list resource "secrets" in API group "" in the namespace "shop""#),
        "{}",
        text(&out.stderr)
    );
    let out = in_pod(&["delete", "pod", "api-reader", "--wait=false"]);
    assert!(
        text(&out.stderr).contains(r#"pods "api-reader" is forbidden: User "system:serviceaccount:shop:default" cannot delete resource "pods""#),
        "{}",
        text(&out.stderr)
    );
    let out = in_pod(&[
        "auth",
        "whoami",
        "-o",
        "jsonpath={.status.userInfo.username}",
    ]);
    assert_eq!(text(&out.stdout), "system:serviceaccount:shop:default");
    // The same token from the host, read out of the pod.
    let token = pp.kubectl_ok(&[
        "exec",
        "api-reader",
        "--",
        "cat",
        "/var/run/secrets/kubernetes.io/serviceaccount/token",
    ]);
    let out = as_token(&pp, token.trim(), &["get", "configmaps"]);
    assert!(
        text(&out.stderr).contains(
            r#"cannot list resource "configmaps" in API group "" in the namespace "shop""#
        ),
        "{}",
        text(&out.stderr)
    );
    assert!(as_token(&pp, token.trim(), &["get", "pods"])
        .status
        .success());
}
