//! ReplicaSets through kubectl: a ReplicaSet of 3 runs 3 pods and prints its columns; a
//! deleted pod is replaced; `kubectl scale` moves it to 5 and to 1; a pod whose labels stop
//! matching is released (and replaced), and adopted again when they match once more; the
//! API refuses a template its selector does not select, and a changed selector.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);

fn replicaset(replicas: u32) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web, suite: rs}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

/// Names of the pods selected by `selector` that are not being deleted, sorted.
fn live_pods(pp: &Peapod, selector: &str) -> Vec<String> {
    let out = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = parts.next()?;
            parts.next().is_none().then(|| name.to_string())
        })
        .collect();
    names.sort();
    names
}

fn rs_field(pp: &Peapod, path: &str) -> String {
    pp.jsonpath("rs/web", path).unwrap_or_default()
}

/// Waits until the ReplicaSet has `n` live pods, all ready, and its status says so.
fn wait_for_replicas(pp: &Peapod, n: usize) -> Vec<String> {
    wait_until(&format!("{n} ready replicas"), T, || {
        let pods = live_pods(pp, "app=web");
        let ready = rs_field(pp, "{.status.readyReplicas}");
        let replicas = rs_field(pp, "{.status.replicas}");
        let ready_n = if ready.is_empty() {
            "0".to_string()
        } else {
            ready
        };
        (pods.len() == n && replicas == n.to_string() && ready_n == n.to_string()).then_some(pods)
    })
}

fn owner_uid(pp: &Peapod, pod: &str) -> String {
    pp.jsonpath(
        &format!("pod/{pod}"),
        "{.metadata.ownerReferences[?(@.controller==true)].uid}",
    )
    .unwrap_or_default()
}

#[test]
fn replicaset_keeps_scales_adopts_and_releases() {
    let pp = Peapod::start();
    pp.apply(&replicaset(3));
    let pods = wait_for_replicas(&pp, 3);
    let rs_uid = rs_field(&pp, "{.metadata.uid}");
    for p in &pods {
        assert!(p.starts_with("web-"), "{p}");
        assert_eq!(owner_uid(&pp, p), rs_uid);
    }
    wait_until("status.availableReplicas and observedGeneration", T, || {
        (rs_field(&pp, "{.status.availableReplicas}") == "3"
            && rs_field(&pp, "{.status.observedGeneration}") == "1"
            && rs_field(&pp, "{.status.fullyLabeledReplicas}") == "3")
            .then_some(())
    });

    // kubectl's columns, wide ones, short name and the `all` category.
    let table = pp.kubectl_ok(&["get", "rs"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(header, ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]);
    let row: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "3", "3", "3"], "{table}");
    let wide = pp.kubectl_ok(&["get", "replicaset", "web", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    assert!(
        wide.contains("main")
            && wide.contains("docker.io/library/busybox:latest")
            && wide.contains("app=web"),
        "{wide}"
    );
    let all = pp.kubectl_ok(&["get", "all"]);
    assert!(all.contains("replicaset.apps/web"), "{all}");

    // A deleted pod is replaced.
    let victim = pods[0].clone();
    pp.kubectl_ok(&["delete", "pod", &victim, "--wait=false"]);
    let pods = wait_until("a replacement pod", T, || {
        let now = live_pods(&pp, "app=web");
        (now.len() == 3 && !now.contains(&victim)).then_some(now)
    });
    wait_for_replicas(&pp, 3);

    // kubectl scale, up and down.
    pp.kubectl_ok(&["scale", "rs", "web", "--replicas=5"]);
    assert_eq!(rs_field(&pp, "{.spec.replicas}"), "5");
    let five = wait_for_replicas(&pp, 5);
    for p in &pods {
        assert!(five.contains(p), "scaling up kept {p}");
    }
    pp.kubectl_ok(&["scale", "rs", "web", "--replicas=1"]);
    let one = wait_for_replicas(&pp, 1);
    wait_until("observedGeneration 3", T, || {
        (rs_field(&pp, "{.status.observedGeneration}") == "3").then_some(())
    });

    // A pod whose labels stop matching is released and replaced...
    let stray = one[0].clone();
    pp.kubectl_ok(&["label", "pod", &stray, "app=other", "--overwrite"]);
    wait_until("the relabelled pod to be released", T, || {
        owner_uid(&pp, &stray).is_empty().then_some(())
    });
    let replaced = wait_for_replicas(&pp, 1);
    assert_ne!(replaced, one);
    // ...and adopted again when they match once more; the surplus pod goes.
    pp.kubectl_ok(&["label", "pod", &stray, "app=web", "--overwrite"]);
    wait_until("the orphan to be adopted", T, || {
        (owner_uid(&pp, &stray) == rs_uid).then_some(())
    });
    let after = wait_for_replicas(&pp, 1);
    assert_eq!(after.len(), 1);

    // Events name the pods created and deleted.
    let reasons = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=ReplicaSet,involvedObject.name=web",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        reasons.contains("SuccessfulCreate: Created pod: web-"),
        "{reasons}"
    );
    assert!(
        reasons.contains("SuccessfulDelete: Deleted pod: web-"),
        "{reasons}"
    );

    // Without a garbage collector here, the pods go explicitly.
    pp.kubectl_ok(&["scale", "rs", "web", "--replicas=0"]);
    wait_until("no pods", T, || {
        live_pods(&pp, "app=web").is_empty().then_some(())
    });
    pp.kubectl_ok(&["delete", "rs", "web"]);
    pp.kubectl_ok(&["delete", "pods", "-l", "suite=rs", "--wait=true"]);
}

#[test]
fn replicaset_validation() {
    let pp = Peapod::start();
    let bad = replicaset(1).replace("matchLabels: {app: web}", "matchLabels: {app: db}");
    let out = pp
        .kubectl_cmd()
        .args(["create", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            if let Some(mut stdin) = c.stdin.take() {
                stdin.write_all(bad.as_bytes())?;
            }
            c.wait_with_output()
        })
        .expect("kubectl create");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("The ReplicaSet \"web\" is invalid")
            && err.contains("spec.template.metadata.labels: Invalid value")
            && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );

    pp.apply(&replicaset(0));
    let out = pp.kubectl(&[
        "patch",
        "rs",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"selector":{"matchLabels":{"app":"web","v":"2"}},"template":{"metadata":{"labels":{"v":"2"}}}}}"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("spec.selector: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );
    let out = pp.kubectl(&["scale", "rs", "web", "--replicas=-1"]);
    assert!(!out.status.success());
    pp.kubectl_ok(&["delete", "rs", "web"]);
}
