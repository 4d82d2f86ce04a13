//! Deployments through kubectl: a rollout completes (`rollout status`), a new image rolls
//! to a new ReplicaSet with the next revision, `rollout history|undo|pause|resume|restart`,
//! `set image`, `scale` and `create deployment` work; a rollout whose new pods never get
//! ready (an init container that exits 1) keeps the old pods and ends in
//! `ProgressDeadlineExceeded`.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";

fn deployment(replicas: u32, deadline: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  progressDeadlineSeconds: {deadline}
  strategy:
    type: RollingUpdate
    rollingUpdate: {{maxSurge: 1, maxUnavailable: 0}}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web, suite: deploy}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

fn field(pp: &Peapod, what: &str, path: &str) -> String {
    pp.jsonpath(what, path).unwrap_or_default()
}

fn rollout_status(pp: &Peapod) -> String {
    pp.kubectl_ok(&["rollout", "status", "deployment/web", "--timeout=90s"])
}

/// (name, spec.replicas, revision) of the Deployment's ReplicaSets, by name.
fn replica_sets(pp: &Peapod) -> Vec<(String, String, String)> {
    let out = pp.kubectl_ok(&[
        "get",
        "rs",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.spec.replicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}{\"\\n\"}{end}",
    ]);
    let mut sets: Vec<(String, String, String)> = out
        .lines()
        .filter_map(|l| {
            let mut p = l.split_whitespace();
            Some((p.next()?.into(), p.next()?.into(), p.next()?.into()))
        })
        .collect();
    sets.sort();
    sets
}

/// Pods of the Deployment not being deleted.
fn live_pods(pp: &Peapod) -> usize {
    pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])
    .lines()
    .filter(|l| l.split_whitespace().count() == 1)
    .count()
}

fn cleanup(pp: &Peapod) {
    pp.kubectl_ok(&["scale", "deployment", "web", "--replicas=0"]);
    wait_until("no pods", T, || (live_pods(pp) == 0).then_some(()));
    pp.kubectl_ok(&["delete", "deployment", "web"]);
    pp.kubectl_ok(&["delete", "rs", "-l", "suite=deploy"]);
    pp.kubectl_ok(&["delete", "pods", "-l", "suite=deploy", "--wait=true"]);
}

#[test]
fn rollouts_history_undo_pause_and_scale() {
    let pp = Peapod::start();
    pp.apply(&deployment(3, 600));
    let out = rollout_status(&pp);
    assert!(
        out.contains("deployment \"web\" successfully rolled out"),
        "{out}"
    );
    let table = pp.kubectl_ok(&["get", "deploy"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "3/3", "3", "3"], "{table}");
    let wide = pp.kubectl_ok(&["get", "deployment", "web", "-o", "wide"]);
    assert!(
        wide.contains("CONTAINERS") && wide.contains("app=web"),
        "{wide}"
    );
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "1"
    );
    assert_eq!(field(&pp, "deploy/web", "{.metadata.generation}"), "1");
    let first = replica_sets(&pp);
    assert_eq!(first.len(), 1, "{first:?}");
    let (rs1, _, _) = first[0].clone();
    let hash = field(
        &pp,
        &format!("rs/{rs1}"),
        "{.metadata.labels.pod-template-hash}",
    );
    assert_eq!(rs1, format!("web-{hash}"));
    assert_eq!(
        field(
            &pp,
            &format!("rs/{rs1}"),
            "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        ),
        "Deployment/web"
    );
    let pod_hashes = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={.items[*].metadata.labels.pod-template-hash}",
    ]);
    assert!(
        pod_hashes.split_whitespace().all(|h| h == hash),
        "{pod_hashes}"
    );

    // A new image: a new ReplicaSet, revision 2, the old one scaled to zero.
    pp.kubectl_ok(&["set", "image", "deployment/web", "main=busybox"]);
    rollout_status(&pp);
    let sets = replica_sets(&pp);
    assert_eq!(sets.len(), 2, "{sets:?}");
    let old = sets
        .iter()
        .find(|s| s.0 == rs1)
        .cloned()
        .unwrap_or_default();
    assert_eq!((old.1.as_str(), old.2.as_str()), ("0", "1"), "{sets:?}");
    let (rs2, _, _) = sets
        .iter()
        .find(|s| s.0 != rs1)
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        field(
            &pp,
            &format!("rs/{rs2}"),
            "{.spec.replicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "3 2"
    );
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.status.updatedReplicas}/{.status.availableReplicas}"
        ),
        "3/3"
    );
    let progressing = field(
        &pp,
        "deploy/web",
        "{.status.conditions[?(@.type==\"Progressing\")].reason}",
    );
    assert_eq!(progressing, "NewReplicaSetAvailable");
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Deployment,involvedObject.name=web",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains(&format!(
            "ScalingReplicaSet: Scaled up replica set {rs2} from 0 to 1"
        )),
        "{events}"
    );
    assert!(
        events.contains(&format!(
            "ScalingReplicaSet: Scaled down replica set {rs1} from 3 to 2"
        )),
        "{events}"
    );
    let history = pp.kubectl_ok(&["rollout", "history", "deployment/web"]);
    assert!(
        history.lines().any(|l| l.trim_start().starts_with("1 "))
            && history.lines().any(|l| l.trim_start().starts_with("2 ")),
        "{history}"
    );

    // Undo: the first template again, as revision 3, in the first ReplicaSet.
    pp.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&pp);
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.spec.template.spec.containers[0].image}"
        ),
        IMAGE
    );
    assert_eq!(
        field(
            &pp,
            &format!("rs/{rs1}"),
            "{.spec.replicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "3 3"
    );
    assert_eq!(field(&pp, &format!("rs/{rs2}"), "{.spec.replicas}"), "0");

    // Scale.
    pp.kubectl_ok(&["scale", "deployment", "web", "--replicas=5"]);
    wait_until("5 available", T, || {
        (field(&pp, "deploy/web", "{.status.availableReplicas}") == "5" && live_pods(&pp) == 5)
            .then_some(())
    });
    pp.kubectl_ok(&["scale", "deploy", "web", "--replicas=2"]);
    wait_until("2 replicas", T, || {
        (field(&pp, "deploy/web", "{.status.replicas}") == "2" && live_pods(&pp) == 2).then_some(())
    });
    assert_eq!(field(&pp, &format!("rs/{rs1}"), "{.spec.replicas}"), "2");

    // Paused: a template change makes no ReplicaSet until resumed.
    pp.kubectl_ok(&["rollout", "pause", "deployment/web"]);
    pp.kubectl_ok(&["set", "image", "deployment/web", "main=busybox:latest"]);
    wait_until("the paused change observed", T, || {
        let g = field(&pp, "deploy/web", "{.metadata.generation}");
        let o = field(&pp, "deploy/web", "{.status.observedGeneration}");
        (g == o).then_some(())
    });
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "DeploymentPaused"
    );
    assert_eq!(replica_sets(&pp).len(), 2);
    pp.kubectl_ok(&["rollout", "resume", "deployment/web"]);
    rollout_status(&pp);
    assert_eq!(replica_sets(&pp).len(), 3);
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "4"
    );

    // Restart: same spec, a new ReplicaSet (the template's restartedAt annotation).
    pp.kubectl_ok(&["rollout", "restart", "deployment/web"]);
    rollout_status(&pp);
    assert_eq!(replica_sets(&pp).len(), 4);
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
        ),
        "5"
    );
    cleanup(&pp);
}

#[test]
fn a_rollout_that_never_gets_ready_stalls_and_times_out() {
    let pp = Peapod::start();
    pp.apply(&deployment(2, 10));
    rollout_status(&pp);
    let before = replica_sets(&pp);
    pp.kubectl_ok(&[
        "patch",
        "deployment",
        "web",
        "--type=strategic",
        "-p",
        &format!(
            r#"{{"spec":{{"template":{{"spec":{{"initContainers":[{{"name":"fail","image":"{IMAGE}","imagePullPolicy":"IfNotPresent","command":["sh","-c","exit 1"]}}]}}}}}}}}"#
        ),
    ]);
    let out = pp.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("deployment \"web\" exceeded its progress deadline"),
        "{err}"
    );
    assert_eq!(
        field(&pp, "deploy/web", "{.status.conditions[?(@.type==\"Progressing\")].status} {.status.conditions[?(@.type==\"Progressing\")].reason}"),
        "False ProgressDeadlineExceeded"
    );
    // The old pods kept running: 2 available, 1 surge pod of the new template.
    let (old, _, _) = before[0].clone();
    assert_eq!(
        field(
            &pp,
            &format!("rs/{old}"),
            "{.spec.replicas} {.status.readyReplicas}"
        ),
        "2 2"
    );
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.status.availableReplicas} {.status.updatedReplicas}"
        ),
        "2 1"
    );
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.status.conditions[?(@.type==\"Available\")].status}"
        ),
        "True"
    );

    pp.kubectl_ok(&["rollout", "undo", "deployment/web"]);
    rollout_status(&pp);
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.status.conditions[?(@.type==\"Progressing\")].reason}"
        ),
        "NewReplicaSetAvailable"
    );
    assert_eq!(field(&pp, &format!("rs/{old}"), "{.spec.replicas}"), "2");
    cleanup(&pp);
}

#[test]
fn kubectl_create_deployment() {
    let pp = Peapod::start();
    pp.kubectl_ok(&[
        "create",
        "deployment",
        "web",
        &format!("--image={IMAGE}"),
        "--replicas=2",
        "--",
        "sleep",
        "3600",
    ]);
    assert_eq!(
        field(&pp, "deploy/web", "{.spec.selector.matchLabels.app}"),
        "web"
    );
    assert_eq!(
        field(&pp, "deploy/web", "{.spec.strategy.rollingUpdate.maxSurge}"),
        "25%"
    );
    assert_eq!(
        field(
            &pp,
            "deploy/web",
            "{.spec.revisionHistoryLimit} {.spec.progressDeadlineSeconds}"
        ),
        "10 600"
    );
    wait_until("2 pods of the new ReplicaSet", T, || {
        (live_pods(&pp) == 2).then_some(())
    });
    let sets = replica_sets(&pp);
    assert_eq!(sets.len(), 1);
    assert_eq!((sets[0].1.as_str(), sets[0].2.as_str()), ("2", "1"));
    let out = pp.kubectl(&[
        "patch",
        "deployment",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"other"}}}}"#,
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("field is immutable"));
    pp.kubectl_ok(&["scale", "deployment", "web", "--replicas=0"]);
    wait_until("no pods", T, || (live_pods(&pp) == 0).then_some(()));
    pp.kubectl_ok(&["delete", "deployment", "web"]);
    pp.kubectl_ok(&["delete", "rs", "-l", "app=web"]);
    pp.kubectl_ok(&["delete", "pods", "-l", "app=web", "--wait=true"]);
}

#[test]
fn recreate_stops_old_pods_before_starting_new_ones() {
    let pp = Peapod::start();
    let manifest = deployment(2, 600).replace(
        "    type: RollingUpdate\n    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}\n",
        "    type: Recreate\n",
    );
    pp.apply(&manifest);
    rollout_status(&pp);
    let (old, _, _) = replica_sets(&pp)[0].clone();
    pp.kubectl_ok(&["set", "image", "deployment/web", "main=busybox"]);
    rollout_status(&pp);
    let sets = replica_sets(&pp);
    let (new, _, _) = sets
        .iter()
        .find(|s| s.0 != old)
        .cloned()
        .unwrap_or_default();
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--sort-by=.lastTimestamp",
        "--field-selector",
        "involvedObject.kind=Deployment,involvedObject.name=web",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    let down = events.find(&format!("Scaled down replica set {old} from 2 to 0"));
    let up = events.find(&format!("Scaled up replica set {new} from 0 to 2"));
    assert!(down.is_some() && up.is_some() && down < up, "{events}");
    let described = pp.kubectl_ok(&["describe", "deployment", "web"]);
    assert!(
        described.contains("StrategyType:") && described.contains("Recreate"),
        "{described}"
    );
    assert!(
        described
            .lines()
            .any(|l| l.starts_with("NewReplicaSet:") && l.contains(&new)),
        "{described}"
    );
    cleanup(&pp);
}
