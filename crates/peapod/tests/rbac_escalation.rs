//! RBAC's escalation prevention end to end with the real kubectl, as a ServiceAccount that
//! may manage Roles and RoleBindings in its namespace: it may create a Role granting what it
//! holds, not one granting more (by create or by patch), and may bind only roles whose
//! permissions it holds, until it is given `bind` on the role or `escalate` on roles.

mod common;

use common::Peapod;

fn as_bob(pp: &Peapod, token: &str, args: &[&str]) -> Result<String, String> {
    let mut all = vec!["--token", token, "-n", "team"];
    all.extend_from_slice(args);
    let out = pp.kubectl(&all);
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(text(&out.stderr))
    }
}

const NOT_HELD: &str = "is attempting to grant RBAC permissions not currently held:";

#[test]
fn roles_and_bindings_grant_only_what_their_writer_holds() {
    let pp = Peapod::start();
    pp.kubectl_ok(&["create", "namespace", "team"]);
    pp.kubectl_ok(&["create", "serviceaccount", "bob", "-n", "team"]);
    pp.kubectl_ok(&[
        "create",
        "role",
        "manager",
        "-n",
        "team",
        "--verb=get,list,create,update,patch",
        "--resource=roles.rbac.authorization.k8s.io,rolebindings.rbac.authorization.k8s.io",
    ]);
    pp.kubectl_ok(&[
        "create",
        "role",
        "pod-reader",
        "-n",
        "team",
        "--verb=get,list",
        "--resource=pods",
    ]);
    for role in ["manager", "pod-reader"] {
        pp.kubectl_ok(&[
            "create",
            "rolebinding",
            &format!("bob-{role}"),
            "-n",
            "team",
            &format!("--role={role}"),
            "--serviceaccount=team:bob",
        ]);
    }
    let token = pp
        .kubectl_ok(&["create", "token", "bob", "-n", "team"])
        .trim()
        .to_string();

    // What bob holds he may grant; more he may not.
    as_bob(
        &pp,
        &token,
        &["create", "role", "reader", "--verb=get", "--resource=pods"],
    )
    .expect("a role within bob's permissions");
    let refused = as_bob(
        &pp,
        &token,
        &[
            "create",
            "role",
            "deleter",
            "--verb=get,delete",
            "--resource=pods",
        ],
    )
    .expect_err("escalation");
    assert!(
        refused.contains(r#"roles.rbac.authorization.k8s.io "deleter" is forbidden: user "system:serviceaccount:team:bob""#)
            && refused.contains(NOT_HELD)
            && refused.contains(r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#)
            && !refused.contains(r#"Verbs:["get"]"#),
        "{refused}"
    );
    let refused = as_bob(
        &pp,
        &token,
        &[
            "patch",
            "role",
            "reader",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/0/verbs/-","value":"delete"}]"#,
        ],
    )
    .expect_err("escalation by patch");
    assert!(refused.contains(NOT_HELD), "{refused}");

    // Binding: a role whose permissions bob holds, yes; the admin ClusterRole, no.
    as_bob(
        &pp,
        &token,
        &[
            "create",
            "rolebinding",
            "eve-reader",
            "--role=reader",
            "--user=eve",
        ],
    )
    .expect("binding a role bob holds");
    let refused = as_bob(
        &pp,
        &token,
        &[
            "create",
            "rolebinding",
            "eve-admin",
            "--clusterrole=admin",
            "--user=eve",
        ],
    )
    .expect_err("binding admin");
    assert!(refused.contains(NOT_HELD), "{refused}");

    // `bind` on the admin ClusterRole lifts the binding check, `escalate` the role check.
    pp.kubectl_ok(&[
        "create",
        "role",
        "powers",
        "-n",
        "team",
        "--verb=bind",
        "--resource=clusterroles.rbac.authorization.k8s.io",
        "--resource-name=admin",
    ]);
    pp.kubectl_ok(&[
        "create",
        "rolebinding",
        "bob-powers",
        "-n",
        "team",
        "--role=powers",
        "--serviceaccount=team:bob",
    ]);
    as_bob(
        &pp,
        &token,
        &[
            "create",
            "rolebinding",
            "eve-admin",
            "--clusterrole=admin",
            "--user=eve",
        ],
    )
    .expect("bind allowed");
    pp.kubectl_ok(&[
        "patch",
        "role",
        "powers",
        "-n",
        "team",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/rules/-","value":{"verbs":["escalate"],"apiGroups":["rbac.authorization.k8s.io"],"resources":["roles"]}}]"#,
    ]);
    as_bob(
        &pp,
        &token,
        &[
            "create",
            "role",
            "deleter",
            "--verb=get,delete",
            "--resource=pods",
        ],
    )
    .expect("escalate allowed");
}
