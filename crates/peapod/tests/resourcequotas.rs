//! ResourceQuotas through kubectl: `kubectl create quota` with `--hard` and `--scopes`,
//! `kubectl get quota` (REQUEST / LIMIT as `used/hard`) and `kubectl describe quota`; the
//! quota controller filling `status.hard` and `status.used` and lowering `used` when objects
//! go or a pod finishes; the ResourceQuota admission plugin refusing a pod past the quota or
//! missing a request or limit the quota limits, in the plugin's words, and charging what it
//! admits at once; counts of ConfigMaps, services and Deployments (`count/deployments.apps`);
//! a BestEffort-scoped quota that ignores pods with requests; LimitRange defaults that
//! satisfy a quota; a Deployment whose second pod waits for quota (FailedCreate on its
//! ReplicaSet) and comes once the quota grows. Pods mostly never run: a node selector no
//! node matches keeps them Pending, which is all quota needs.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const WAIT: Duration = Duration::from_secs(60);

fn pod(ns: &str, name: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {ns}
spec:
  nodeSelector: {{quota-test: nowhere}}
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    command: ["sleep", "3600"]
    resources: {resources}
"#
    )
}

/// Waits for pod `ns/name` to reach `phase`.
fn wait_phase(pp: &Peapod, ns: &str, name: &str, phase: &str) {
    wait_until(&format!("pod {ns}/{name} {phase}"), WAIT, || {
        let got = pp.kubectl_ok(&[
            "get",
            "-n",
            ns,
            "pod",
            name,
            "-o",
            "jsonpath={.status.phase}",
        ]);
        (got == phase).then_some(())
    });
}

/// `status.used[resource]` of quota `ns/name`, once the controller wrote it.
fn used(pp: &Peapod, ns: &str, name: &str, resource: &str) -> Option<String> {
    let out = pp.kubectl(&[
        "get",
        "-n",
        ns,
        "quota",
        name,
        "-o",
        "jsonpath={.status.used}",
    ]);
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    list.get(resource)?.as_str().map(str::to_string)
}

fn wait_used(pp: &Peapod, ns: &str, name: &str, resource: &str, want: &str) {
    wait_until(&format!("{ns}/{name} used {resource}={want}"), WAIT, || {
        (used(pp, ns, name, resource).as_deref() == Some(want)).then_some(())
    });
}

fn create(pp: &Peapod, manifest: &str) {
    pp.kubectl_stdin(&["create", "-f", "-"], manifest);
}

fn refused(pp: &Peapod, manifest: &str) -> String {
    pp.kubectl_stdin_refused(&["create", "-f", "-"], manifest)
}

#[test]
fn resource_quota_counts_admits_and_refuses() {
    let pp = Peapod::start();

    // An invalid quota: BestEffort goes only with pods.
    let out = pp.kubectl(&[
        "create",
        "quota",
        "bad",
        "--hard=pods=1,cpu=1",
        "--scopes=BestEffort",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"error: failed to create quota: ResourceQuota "bad" is invalid: spec.scopes: Invalid value: []core.ResourceQuotaScope{"BestEffort"}: unsupported scope applied to resource"#),
        "{err}"
    );

    pp.kubectl_ok(&[
        "create",
        "quota",
        "q",
        "--hard=pods=2,requests.cpu=1,limits.memory=1Gi",
    ]);
    wait_used(&pp, "default", "q", "pods", "0");
    assert_eq!(
        pp.jsonpath("quota/q", "{.status.hard}").as_deref(),
        Some(r#"{"limits.memory":"1Gi","pods":"2","requests.cpu":"1"}"#)
    );
    let table = pp.kubectl_ok(&["get", "quota"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "AGE", "REQUEST", "LIMIT"], "{table}");
    assert!(
        table.contains("pods: 0/2, requests.cpu: 0/1   limits.memory: 0/1Gi"),
        "{table}"
    );

    // A pod that leaves out what the quota limits.
    let err = refused(&pp, &pod("default", "bare", "{}"));
    assert!(
        err.contains(r#"pods "bare" is forbidden: failed quota: q: must specify limits.memory for: main; requests.cpu for: main"#),
        "{err}"
    );

    // Two fit; the admission charges them before the controller sees them.
    let sized = "{requests: {cpu: 500m}, limits: {memory: 256Mi}}";
    create(&pp, &pod("default", "p1", sized));
    create(&pp, &pod("default", "p2", sized));
    assert_eq!(used(&pp, "default", "q", "pods").as_deref(), Some("2"));
    let err = refused(&pp, &pod("default", "p3", sized));
    assert!(
        err.contains(r#"Error from server (Forbidden): error when creating "STDIN": pods "p3" is forbidden: exceeded quota: q, requested: pods=1,requests.cpu=500m, used: pods=2,requests.cpu=1, limited: pods=2,requests.cpu=1"#),
        "{err}"
    );
    wait_used(&pp, "default", "q", "limits.memory", "512Mi");
    let table = pp.kubectl_ok(&["get", "quota", "q", "--no-headers"]);
    assert!(
        table.contains("pods: 2/2, requests.cpu: 1/1   limits.memory: 512Mi/1Gi"),
        "{table}"
    );
    let described = pp.kubectl_ok(&["describe", "quota", "q"]);
    let rows: Vec<Vec<&str>> = described
        .lines()
        .skip_while(|l| !l.starts_with("Resource"))
        .map(|l| l.split_whitespace().collect())
        .filter(|r: &Vec<&str>| !r.is_empty())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["Resource", "Used", "Hard"],
            vec!["--------", "----", "----"],
            vec!["limits.memory", "512Mi", "1Gi"],
            vec!["pods", "2", "2"],
            vec!["requests.cpu", "1", "1"],
        ],
        "{described}"
    );

    // Deleting a pod frees its share.
    pp.kubectl_ok(&["delete", "pod", "p1", "--wait=false"]);
    wait_used(&pp, "default", "q", "pods", "1");
    assert_eq!(
        used(&pp, "default", "q", "requests.cpu").as_deref(),
        Some("500m")
    );
    create(&pp, &pod("default", "p3", sized));
    assert_eq!(used(&pp, "default", "q", "pods").as_deref(), Some("2"));

    // Object counts: ConfigMaps by `count/configmaps`, services by `services`.
    pp.kubectl_ok(&["create", "namespace", "objects"]);
    pp.kubectl_ok(&[
        "create",
        "-n",
        "objects",
        "quota",
        "objects",
        "--hard=count/configmaps=4,services=1",
    ]);
    let present = wait_until("the configmaps counted", WAIT, || {
        let listed = pp.kubectl_ok(&["get", "-n", "objects", "configmaps", "-o", "name"]);
        let n = listed.lines().count();
        (used(&pp, "objects", "objects", "count/configmaps") == Some(n.to_string())).then_some(n)
    });
    for i in present..4 {
        pp.kubectl_ok(&["create", "-n", "objects", "configmap", &format!("c{i}")]);
    }
    let out = pp.kubectl(&["create", "-n", "objects", "configmap", "one-too-many"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"configmaps "one-too-many" is forbidden: exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=4, limited: count/configmaps=4"#),
        "{err}"
    );
    pp.kubectl_ok(&[
        "create",
        "-n",
        "objects",
        "service",
        "clusterip",
        "s1",
        "--tcp=80",
    ]);
    let out = pp.kubectl(&[
        "create",
        "-n",
        "objects",
        "service",
        "clusterip",
        "s2",
        "--tcp=80",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"services "s2" is forbidden: exceeded quota: objects, requested: services=1, used: services=1, limited: services=1"#),
        "{err}"
    );
    pp.kubectl_ok(&["delete", "-n", "objects", "service", "s1"]);
    wait_used(&pp, "objects", "objects", "services", "0");
    pp.kubectl_ok(&[
        "create",
        "-n",
        "objects",
        "service",
        "clusterip",
        "s2",
        "--tcp=80",
    ]);

    // A BestEffort quota counts only pods without requests or limits.
    pp.kubectl_ok(&["create", "namespace", "scoped"]);
    pp.kubectl_ok(&[
        "create",
        "-n",
        "scoped",
        "quota",
        "best-effort",
        "--hard=pods=1",
        "--scopes=BestEffort",
    ]);
    wait_used(&pp, "scoped", "best-effort", "pods", "0");
    create(&pp, &pod("scoped", "burstable", "{requests: {cpu: 100m}}"));
    create(&pp, &pod("scoped", "free1", "{}"));
    let err = refused(&pp, &pod("scoped", "free2", "{}"));
    assert!(
        err.contains(r#"pods "free2" is forbidden: exceeded quota: best-effort, requested: pods=1, used: pods=1, limited: pods=1"#),
        "{err}"
    );
    create(&pp, &pod("scoped", "burstable2", "{requests: {cpu: 100m}}"));
    wait_until("the scoped quota's pods", WAIT, || {
        let n = pp.kubectl_ok(&["get", "-n", "scoped", "pods", "-o", "name"]);
        (n.lines().count() == 3).then_some(())
    });
    assert_eq!(
        used(&pp, "scoped", "best-effort", "pods").as_deref(),
        Some("1")
    );

    // LimitRange defaults come first and satisfy the quota's must-specify rule.
    pp.kubectl_ok(&["create", "namespace", "defaults"]);
    create(
        &pp,
        "apiVersion: v1\nkind: LimitRange\nmetadata: {name: defaults, namespace: defaults}\nspec:\n  limits:\n  - type: Container\n    default: {cpu: 200m, memory: 128Mi}\n    defaultRequest: {cpu: 100m, memory: 64Mi}\n",
    );
    pp.kubectl_ok(&[
        "create",
        "-n",
        "defaults",
        "quota",
        "compute",
        "--hard=requests.cpu=1,limits.memory=1Gi",
    ]);
    wait_used(&pp, "defaults", "compute", "requests.cpu", "0");
    create(&pp, &pod("defaults", "defaulted", "{}"));
    assert_eq!(
        used(&pp, "defaults", "compute", "requests.cpu").as_deref(),
        Some("100m")
    );
    assert_eq!(
        used(&pp, "defaults", "compute", "limits.memory").as_deref(),
        Some("128Mi")
    );

    // A Deployment past the quota: FailedCreate on its ReplicaSet, the pod once it fits.
    pp.kubectl_ok(&["create", "namespace", "deploy"]);
    pp.kubectl_ok(&["create", "-n", "deploy", "quota", "two", "--hard=pods=1"]);
    wait_used(&pp, "deploy", "two", "pods", "0");
    // Any resource by `count/<resource>.<group>`.
    pp.kubectl_ok(&[
        "create",
        "-n",
        "deploy",
        "quota",
        "apps",
        "--hard=count/deployments.apps=1",
    ]);
    wait_used(&pp, "deploy", "apps", "count/deployments.apps", "0");
    create(
        &pp,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: deploy}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      nodeSelector: {quota-test: nowhere}\n      containers:\n      - name: main\n        image: docker.io/library/busybox:latest\n",
    );
    let message = wait_until("the ReplicaSet's FailedCreate event", WAIT, || {
        let out = pp.kubectl_ok(&[
            "get",
            "-n",
            "deploy",
            "events",
            "--field-selector",
            "reason=FailedCreate,involvedObject.kind=ReplicaSet",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        (!out.is_empty()).then_some(out)
    });
    assert!(
        message.contains(
            "is forbidden: exceeded quota: two, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{message}"
    );
    pp.kubectl_ok(&[
        "patch",
        "-n",
        "deploy",
        "quota",
        "two",
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"pods":"2"}}}"#,
    ]);
    wait_until("the second pod", WAIT, || {
        let n = pp.kubectl_ok(&["get", "-n", "deploy", "pods", "-o", "name"]);
        (n.lines().count() == 2).then_some(())
    });
    wait_used(&pp, "deploy", "two", "pods", "2");

    // A pod that finished stops counting; without the quota nothing is held back.
    pp.kubectl_ok(&["create", "namespace", "finish"]);
    pp.kubectl_ok(&["create", "-n", "finish", "quota", "one", "--hard=pods=1"]);
    wait_used(&pp, "finish", "one", "pods", "0");
    // It runs until told to finish, so it still counts when the next pod is refused.
    create(
        &pp,
        "apiVersion: v1\nkind: Pod\nmetadata: {name: once, namespace: finish}\nspec:\n  restartPolicy: Never\n  containers:\n  - name: main\n    image: docker.io/library/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'until [ -e /tmp/done ]; do sleep 0.1; done']\n",
    );
    assert_eq!(used(&pp, "finish", "one", "pods").as_deref(), Some("1"));
    let err = refused(&pp, &pod("finish", "waiting", "{}"));
    assert!(err.contains("exceeded quota: one"), "{err}");
    wait_phase(&pp, "finish", "once", "Running");
    pp.kubectl_ok(&["exec", "-n", "finish", "once", "--", "touch", "/tmp/done"]);
    wait_phase(&pp, "finish", "once", "Succeeded");
    wait_used(&pp, "finish", "one", "pods", "0");
    create(&pp, &pod("finish", "waiting", "{}"));
    pp.kubectl_ok(&["delete", "-n", "finish", "quota", "one"]);
    create(&pp, &pod("finish", "free", "{}"));

    for ns in ["default", "scoped", "defaults", "finish"] {
        pp.kubectl_ok(&["delete", "-n", ns, "pods", "--all", "--wait=false"]);
    }
    let out = pp.kubectl(&[
        "create",
        "-n",
        "deploy",
        "deployment",
        "web2",
        "--image=docker.io/library/busybox:latest",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(r#"deployments.apps "web2" is forbidden: exceeded quota: apps, requested: count/deployments.apps=1, used: count/deployments.apps=1, limited: count/deployments.apps=1"#),
        "{err}"
    );
    pp.kubectl_ok(&["delete", "-n", "deploy", "deployment", "web"]);
    wait_used(&pp, "deploy", "apps", "count/deployments.apps", "0");
}
