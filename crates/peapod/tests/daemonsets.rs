//! DaemonSets through kubectl: one pod on the node, made by the DaemonSet controller and
//! placed by the scheduler; `kubectl rollout status ds/NAME` waits for it; changing the
//! image rolls the pod (a new revision, recorded as a ControllerRevision that `kubectl
//! rollout history` lists) and deleting the DaemonSet removes both; a node selector that no node matches runs nothing until the
//! node gets the label; the node-agent example runs as its comments say.

mod common;

use std::time::Duration;

use common::{wait_until, workspace_root, Peapod};

const T: Duration = Duration::from_secs(90);

fn daemonset(name: &str, image: &str, node_selector: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {{{node_selector}}}
      containers:
      - name: main
        image: {image}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

/// The live (not terminating) pods of `app`: (name, node, image, revision hash, uid).
fn pods_of(pp: &Peapod, app: &str) -> Vec<[String; 5]> {
    let out = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}|{.spec.nodeName}|{.spec.containers[0].image}|{.metadata.labels.controller-revision-hash}|{.metadata.uid}|{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            match f.as_slice() {
                [a, b, c, d, e, ""] => Some([a, b, c, d, e].map(|s| s.to_string())),
                _ => None,
            }
        })
        .collect()
}

fn rollout_status(pp: &Peapod, ds: &str) -> String {
    pp.kubectl_ok(&["rollout", "status", &format!("ds/{ds}"), "--timeout=90s"])
}

#[test]
fn daemonset_runs_one_pod_per_node_and_rolls_on_image_change() {
    let pp = Peapod::start();
    pp.apply(&daemonset("agent", "docker.io/library/busybox:latest", ""));
    let out = rollout_status(&pp, "agent");
    assert!(out.contains("successfully rolled out"), "{out}");

    let pods = pods_of(&pp, "agent");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let [first, node, _, first_hash, first_uid] = pods[0].clone();
    assert!(first.starts_with("agent-"), "{first}");
    assert_eq!(node, pp.node_name);
    assert!(!first_hash.is_empty());
    assert_eq!(
        pp.jsonpath(
            &format!("pod/{first}"),
            "{.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}"
        )
        .as_deref(),
        Some("DaemonSet/agent")
    );
    // Made pinned by node affinity; the scheduler bound it.
    assert_eq!(
        pp.jsonpath(
            &format!("pod/{first}"),
            "{.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchFields[0].values[0]}"
        ),
        Some(pp.node_name.clone())
    );
    let tolerations = pp
        .jsonpath(&format!("pod/{first}"), "{.spec.tolerations[*].key}")
        .unwrap_or_default();
    assert!(
        tolerations.contains("node.kubernetes.io/unschedulable"),
        "{tolerations}"
    );

    let row = pp.kubectl_ok(&["get", "ds", "agent", "-o", "wide"]);
    let mut lines = row.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE SELECTOR",
            "AGE",
            "CONTAINERS",
            "IMAGES",
            "SELECTOR"
        ]
    );
    let cells: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        cells[..7],
        ["agent", "1", "1", "1", "1", "1", "<none>"],
        "{row}"
    );

    // The same image by the id the node reports: a new template, so a new revision.
    let image_id = pp
        .jsonpath(
            &format!("pod/{first}"),
            "{.status.containerStatuses[0].imageID}",
        )
        .unwrap_or_default();
    assert!(!image_id.is_empty());
    pp.kubectl_ok(&["set", "image", "ds/agent", &format!("main={image_id}")]);
    let out = rollout_status(&pp, "agent");
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = wait_until("the old pod to be gone", T, || {
        let pods = pods_of(&pp, "agent");
        (pods.len() == 1 && pods[0][4] != first_uid).then_some(pods)
    });
    assert_eq!(pods[0][2], image_id);
    assert_ne!(pods[0][3], first_hash);
    assert_eq!(
        pp.jsonpath(
            "ds/agent",
            "{.status.updatedNumberScheduled}/{.status.numberAvailable}"
        )
        .as_deref(),
        Some("1/1")
    );
    let revisions = pp.kubectl_ok(&["get", "controllerrevisions", "--no-headers"]);
    assert_eq!(revisions.lines().count(), 2, "{revisions}");
    assert!(revisions.contains("daemonset.apps/agent"), "{revisions}");
    let history = pp.kubectl_ok(&["rollout", "history", "ds/agent"]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );
    let events = pp.kubectl_ok(&["describe", "ds", "agent"]);
    assert!(events.contains("SuccessfulCreate"), "{events}");
    assert!(events.contains("SuccessfulDelete"), "{events}");

    // Deleting the DaemonSet takes its pods and revisions with it (they name it as owner).
    pp.kubectl_ok(&["delete", "ds", "agent"]);
    wait_until("the pods and revisions to go with the DaemonSet", T, || {
        let revisions = pp.kubectl_ok(&["get", "controllerrevisions", "--no-headers"]);
        (pods_of(&pp, "agent").is_empty() && revisions.trim().is_empty()).then_some(())
    });
}

#[test]
fn daemonset_waits_for_a_node_that_matches_its_selector() {
    let pp = Peapod::start();
    pp.apply(&daemonset(
        "ssd",
        "docker.io/library/busybox:latest",
        "disk: ssd",
    ));
    wait_until("the DaemonSet's status", T, || {
        (pp.jsonpath("ds/ssd", "{.status.observedGeneration}")
            .as_deref()
            == Some("1"))
        .then_some(())
    });
    assert_eq!(
        pp.jsonpath("ds/ssd", "{.status.desiredNumberScheduled}")
            .as_deref(),
        Some("0")
    );
    assert!(pods_of(&pp, "ssd").is_empty());
    pp.kubectl_ok(&["label", "node", &pp.node_name, "disk=ssd"]);
    let out = rollout_status(&pp, "ssd");
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = pods_of(&pp, "ssd");
    assert_eq!(pods.len(), 1, "{pods:?}");
    assert_eq!(pods[0][1], pp.node_name);
    // The node stops matching: its pod goes.
    pp.kubectl_ok(&["label", "node", &pp.node_name, "disk-"]);
    wait_until("the pod to go with the label", T, || {
        pods_of(&pp, "ssd").is_empty().then_some(())
    });
    assert_eq!(
        pp.jsonpath("ds/ssd", "{.status.desiredNumberScheduled}")
            .as_deref(),
        Some("0")
    );
}

#[test]
fn the_node_agent_example() {
    let pp = Peapod::start();
    let path = workspace_root().join("examples/daemonset-node-agent.yaml");
    pp.kubectl_ok(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    rollout_status(&pp, "node-agent");
    let first = pods_of(&pp, "node-agent");
    assert_eq!(first.len(), 1, "{first:?}");
    let greeting = format!("agent on {}", pp.node_name);
    wait_until("the agent's greeting", T, || {
        let out = pp.kubectl(&["logs", &first[0][0]]);
        String::from_utf8_lossy(&out.stdout)
            .contains(&greeting)
            .then_some(())
    });
    pp.kubectl_ok(&["set", "env", "ds/node-agent", "GREETING=hello"]);
    rollout_status(&pp, "node-agent");
    let second = wait_until("one new agent pod", T, || {
        let pods = pods_of(&pp, "node-agent");
        (pods.len() == 1 && pods[0][4] != first[0][4]).then_some(pods)
    });
    assert_ne!(second[0][3], first[0][3]);
    let history = pp.kubectl_ok(&["rollout", "history", "ds/node-agent"]);
    assert_eq!(
        history
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2,
        "{history}"
    );
}
