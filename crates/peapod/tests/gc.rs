//! Garbage collection through kubectl, with ConfigMaps, Secrets and Pods whose
//! `ownerReferences` name a ConfigMap (or a Namespace, or a ReplicaSet): `kubectl delete` (background)
//! removes the dependents, running pods included; `--cascade=orphan` keeps them and strips
//! the reference; `--cascade=foreground` keeps the owner, marked and with the
//! `foregroundDeletion` finalizer, until its blocking dependents are gone; an object whose
//! owner does not exist (or lives in another namespace) is collected; a user finalizer
//! holds any object until it is removed; deleting a namespace removes everything in it,
//! then the namespace.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// An ownerReference to the ConfigMap `owner` with `uid`.
fn cm_owner(owner: &str, uid: &str, block: bool) -> String {
    format!(
        "{{apiVersion: v1, kind: ConfigMap, name: {owner}, uid: {uid}, controller: true, blockOwnerDeletion: {block}}}"
    )
}

fn configmap(name: &str, meta: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n{meta}\ndata: {{k: v}}\n")
}

fn owned_configmap(name: &str, owner: &str) -> String {
    configmap(name, &format!("  ownerReferences: [{owner}]"))
}

fn owned_pod(name: &str, owner: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  ownerReferences: [{owner}]
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

fn uid(pp: &Peapod, kind_name: &str) -> String {
    let uid = pp
        .jsonpath(kind_name, "{.metadata.uid}")
        .unwrap_or_default();
    assert!(!uid.is_empty(), "{kind_name} has no uid");
    uid
}

fn exists(pp: &Peapod, args: &[&str]) -> bool {
    let mut all = vec!["get"];
    all.extend_from_slice(args);
    let out = pp.kubectl(&all);
    if out.status.success() {
        return true;
    }
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NotFound"), "kubectl {all:?}: {err}");
    false
}

fn wait_gone(pp: &Peapod, args: &[&str]) {
    wait_until(&format!("{args:?} to be gone"), T, || {
        (!exists(pp, args)).then_some(())
    });
}

#[test]
fn background_orphan_and_dangling_owners() {
    let pp = Peapod::start();

    // Background: the owner goes at once, then its ConfigMap and its running Pod.
    pp.kubectl_ok(&["create", "configmap", "owner-a"]);
    let owner = cm_owner("owner-a", &uid(&pp, "cm/owner-a"), false);
    pp.apply(&owned_configmap("dep-a", &owner));
    pp.apply(&owned_pod("pod-a", &owner));
    pp.wait_pod_phase("pod-a", "Running", T);
    let out = pp.kubectl_ok(&["delete", "configmap", "owner-a", "--timeout=60s"]);
    assert!(out.contains("configmap \"owner-a\" deleted"), "{out}");
    wait_gone(&pp, &["configmap", "dep-a"]);
    wait_gone(&pp, &["pod", "pod-a"]);

    // Orphan: the dependent stays, without its reference; then the owner goes.
    pp.kubectl_ok(&["create", "configmap", "owner-b"]);
    let owner = cm_owner("owner-b", &uid(&pp, "cm/owner-b"), true);
    pp.apply(&owned_configmap("dep-b", &owner));
    pp.kubectl_ok(&[
        "delete",
        "configmap",
        "owner-b",
        "--cascade=orphan",
        "--timeout=60s",
    ]);
    assert!(!exists(&pp, &["configmap", "owner-b"]));
    assert!(exists(&pp, &["configmap", "dep-b"]));
    assert_eq!(
        pp.jsonpath("cm/dep-b", "{.metadata.ownerReferences}")
            .as_deref(),
        Some("")
    );

    // An owner that never existed: the dependent is collected.
    let ghost = cm_owner("ghost", "00000000-0000-4000-8000-000000000001", false);
    pp.apply(&owned_configmap("stray", &ghost));
    wait_gone(&pp, &["configmap", "stray"]);
    // An owner of the right name but another uid does not hold it either.
    pp.kubectl_ok(&["create", "configmap", "reborn"]);
    let stale = cm_owner("reborn", "00000000-0000-4000-8000-000000000002", false);
    pp.apply(&owned_configmap("stale", &stale));
    wait_gone(&pp, &["configmap", "stale"]);
    assert!(exists(&pp, &["configmap", "reborn"]));

    // A cluster-scoped owner holds namespaced dependents until it goes.
    pp.kubectl_ok(&["create", "namespace", "gc-owner"]);
    let ns_owner = format!(
        "{{apiVersion: v1, kind: Namespace, name: gc-owner, uid: {}}}",
        uid(&pp, "namespace/gc-owner")
    );
    pp.apply(&configmap(
        "ns-owned",
        &format!("  ownerReferences: [{ns_owner}]"),
    ));
    assert!(exists(&pp, &["configmap", "ns-owned"]));
    pp.kubectl_ok(&["delete", "namespace", "gc-owner", "--timeout=60s"]);
    wait_gone(&pp, &["configmap", "ns-owned"]);

    // A namespaced owner in another namespace owns nothing here: collected, with a warning.
    pp.kubectl_ok(&["create", "namespace", "gc-other"]);
    pp.kubectl_ok(&["create", "configmap", "elsewhere", "-n", "gc-other"]);
    let far_uid = pp.kubectl_ok(&[
        "get",
        "configmap",
        "elsewhere",
        "-n",
        "gc-other",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let far = cm_owner("elsewhere", &far_uid, false);
    pp.apply(&owned_configmap("cross", &far));
    wait_gone(&pp, &["configmap", "cross"]);
    let reasons = wait_until("the OwnerRefInvalidNamespace event", T, || {
        let out = pp.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=cross",
            "-o",
            "jsonpath={.items[*].reason} {.items[*].message}",
        ]);
        out.contains("OwnerRefInvalidNamespace").then_some(out)
    });
    assert!(
        reasons.contains("does not exist in namespace \"default\""),
        "{reasons}"
    );
    assert!(exists(&pp, &["configmap", "elsewhere", "-n", "gc-other"]));
}

#[test]
fn foreground_finalizers_and_namespaces() {
    let pp = Peapod::start();

    // Foreground: the owner waits, marked, for its blocking dependent (held by a user
    // finalizer); a non-blocking dependent is collected without being waited for.
    pp.kubectl_ok(&["create", "configmap", "fg-owner"]);
    let fg_uid = uid(&pp, "cm/fg-owner");
    pp.apply(&configmap(
        "fg-dep",
        &format!(
            "  finalizers: [example.com/hold]\n  ownerReferences: [{}]",
            cm_owner("fg-owner", &fg_uid, true)
        ),
    ));
    pp.apply(&owned_configmap(
        "fg-loose",
        &cm_owner("fg-owner", &fg_uid, false),
    ));
    pp.kubectl_ok(&[
        "delete",
        "configmap",
        "fg-owner",
        "--cascade=foreground",
        "--wait=false",
    ]);
    wait_until("the blocking dependent to be deleted", T, || {
        pp.jsonpath("cm/fg-dep", "{.metadata.deletionTimestamp}")
            .filter(|t| !t.is_empty())
    });
    wait_gone(&pp, &["configmap", "fg-loose"]);
    let owner = pp
        .jsonpath(
            "cm/fg-owner",
            "{.metadata.deletionTimestamp} {.metadata.finalizers}",
        )
        .expect("the owner waits for its blocking dependent");
    assert!(owner.contains("foregroundDeletion"), "{owner}");
    assert!(!owner.starts_with(' '), "no deletionTimestamp: {owner}");
    pp.kubectl_ok(&[
        "patch",
        "configmap",
        "fg-dep",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait_gone(&pp, &["configmap", "fg-dep"]);
    wait_gone(&pp, &["configmap", "fg-owner"]);

    // Foreground with a running pod: once kubectl sees the owner gone, the pod is too.
    pp.kubectl_ok(&["create", "configmap", "fg-owner2"]);
    let owner = cm_owner("fg-owner2", &uid(&pp, "cm/fg-owner2"), true);
    pp.apply(&owned_pod("fg-pod", &owner));
    pp.wait_pod_phase("fg-pod", "Running", T);
    pp.kubectl_ok(&[
        "delete",
        "configmap",
        "fg-owner2",
        "--cascade=foreground",
        "--timeout=90s",
    ]);
    assert!(!exists(&pp, &["pod", "fg-pod"]));

    // An owner of another group: `kubectl delete rs` takes a pod it owns along (the pod's
    // labels are not the ReplicaSet's, so a ReplicaSet controller leaves it alone).
    pp.apply(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: web-rs}
spec:
  replicas: 0
  selector: {matchLabels: {app: web-rs}}
  template:
    metadata: {labels: {app: web-rs}}
    spec:
      containers: [{name: main, image: busybox}]
"#,
    );
    let rs_owner = format!(
        "{{apiVersion: apps/v1, kind: ReplicaSet, name: web-rs, uid: {}, blockOwnerDeletion: true}}",
        uid(&pp, "rs/web-rs")
    );
    pp.apply(&owned_pod("rs-dep", &rs_owner));
    pp.wait_pod_phase("rs-dep", "Running", T);
    pp.kubectl_ok(&["delete", "rs", "web-rs", "--timeout=60s"]);
    wait_gone(&pp, &["pod", "rs-dep"]);

    // A user finalizer holds any object until it is removed.
    pp.kubectl_ok(&["create", "secret", "generic", "held", "--from-literal=a=b"]);
    pp.kubectl_ok(&[
        "patch",
        "secret",
        "held",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":["example.com/hold"]}}"#,
    ]);
    pp.kubectl_ok(&["delete", "secret", "held", "--wait=false"]);
    assert!(pp
        .jsonpath("secret/held", "{.metadata.deletionTimestamp}")
        .is_some_and(|t| !t.is_empty()));
    pp.kubectl_ok(&[
        "patch",
        "secret",
        "held",
        "--type=json",
        "-p",
        r#"[{"op":"remove","path":"/metadata/finalizers"}]"#,
    ]);
    wait_gone(&pp, &["secret", "held"]);

    // A namespace: everything in it goes, a finalizer holds its object and so the
    // namespace, which goes last.
    pp.kubectl_ok(&["create", "namespace", "gc-ns"]);
    let ns = ["-n", "gc-ns"];
    pp.kubectl_ok(&["create", "configmap", "a", "-n", "gc-ns"]);
    pp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "b",
        "--from-literal=k=v",
        "-n",
        "gc-ns",
    ]);
    pp.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "s",
        "--tcp=80:80",
        "-n",
        "gc-ns",
    ]);
    pp.kubectl_stdin(
        &["apply", "-n", "gc-ns", "-f", "-"],
        &configmap("kept", "  finalizers: [example.com/hold]"),
    );
    pp.kubectl_stdin(
        &["apply", "-n", "gc-ns", "-f", "-"],
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: main, image: {BUSYBOX}, imagePullPolicy: IfNotPresent, command: [sleep, '3600']}}\n"
        ),
    );
    pp.kubectl_ok(&["delete", "namespace", "gc-ns", "--wait=false"]);
    for what in [
        ["configmap", "a"],
        ["secret", "b"],
        ["service", "s"],
        ["pod", "p"],
    ] {
        let mut args = what.to_vec();
        args.extend_from_slice(&ns);
        wait_gone(&pp, &args);
    }
    assert_eq!(
        pp.jsonpath("namespace/gc-ns", "{.status.phase}").as_deref(),
        Some("Terminating")
    );
    assert!(exists(&pp, &["configmap", "kept", "-n", "gc-ns"]));
    // The namespace's conditions say what holds it.
    wait_until(
        "the namespace's conditions to name the finalizer",
        T,
        || {
            let held = pp.jsonpath(
                "namespace/gc-ns",
                "{.status.conditions[?(@.type==\"NamespaceFinalizersRemaining\")].message}",
            )?;
            (held == "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances").then_some(())
        },
    );
    pp.kubectl_ok(&[
        "patch",
        "configmap",
        "kept",
        "-n",
        "gc-ns",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    wait_gone(&pp, &["namespace", "gc-ns"]);
}
