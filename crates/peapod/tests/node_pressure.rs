//! Node-pressure eviction through kubectl: with `evictionHard: {memory.available: "<1000Ti"}`
//! the node is always short of memory, so it reports `MemoryPressure` and gets the
//! memory-pressure taint; of a BestEffort pod and a Burstable pod within its requests the
//! BestEffort one is evicted first (one pod per round), ending `Failed`/`Evicted` with the
//! kubelet's message, the `DisruptionTarget` condition and an `Evicted` event; and a new
//! BestEffort pod is refused at admission.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";
const CONFIG: &str = "evictionHard:
  memory.available: \"<1000Ti\"
";

/// A pod that tolerates the memory-pressure taint (so the scheduler places it), with
/// `resources` on its one container and extra `spec` lines.
fn pod(name: &str, resources: &str, spec: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{spec}  terminationGracePeriodSeconds: 1
  tolerations:
  - key: node.kubernetes.io/memory-pressure
    operator: Exists
    effect: NoSchedule
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources: {resources}
"#
    )
}

#[test]
fn memory_pressure_evicts_best_effort_first_and_refuses_new_best_effort_pods() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubelet-config.yaml");
    common::write_kubelet_config(&config, CONFIG);
    let pp = Peapod::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    let node = format!("node/{}", pp.node_name);

    wait_until("the MemoryPressure condition and taint", T, || {
        let cond = pp.jsonpath(
            &node,
            "{.status.conditions[?(@.type==\"MemoryPressure\")].status}/{.status.conditions[?(@.type==\"MemoryPressure\")].reason}",
        )?;
        let taints = pp.jsonpath(&node, "{.spec.taints[*].key}:{.spec.taints[*].effect}")?;
        (cond == "True/KubeletHasInsufficientMemory"
            && taints.contains("node.kubernetes.io/memory-pressure")
            && taints.contains("NoSchedule"))
        .then_some(())
    });

    let manifests = [
        pod("besteffort", "{}", ""),
        pod(
            "burstable",
            "{requests: {memory: 64Mi}, limits: {memory: 512Mi}}",
            "",
        ),
    ]
    .join("---\n");
    pp.kubectl_stdin(&["create", "-f", "-"], &manifests);
    let phase = |name: &str| pp.jsonpath(&format!("pod/{name}"), "{.status.phase}");
    // One pod per round: when the BestEffort pod is found evicted the other still is not.
    wait_until("the BestEffort pod evicted", T, || {
        let burstable = phase("burstable");
        assert_ne!(
            burstable.as_deref(),
            Some("Failed"),
            "the Burstable pod was evicted first\n{}",
            common::tail(&pp.server_log(), 30)
        );
        (phase("besteffort").as_deref() == Some("Failed")).then_some(())
    });
    let reason = pp
        .jsonpath("pod/besteffort", "{.status.reason}")
        .expect("reason");
    assert_eq!(reason, "Evicted");
    let message = pp
        .jsonpath("pod/besteffort", "{.status.message}")
        .expect("message");
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1000Ti, available: "
        ),
        "{message}"
    );
    assert_eq!(
        pp.jsonpath(
            "pod/besteffort",
            "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
        )
        .as_deref(),
        Some("TerminationByKubelet")
    );
    wait_until("the Evicted event", T, || {
        let events = pp.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=besteffort,reason=Evicted",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        events
            .contains("The node was low on resource: memory.")
            .then_some(())
    });

    // A new BestEffort pod bound to the node is refused by the eviction manager's admission.
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("latecomer", "{}", &format!("  nodeName: {}\n", pp.node_name))
            .replace("  tolerations:\n  - key: node.kubernetes.io/memory-pressure\n    operator: Exists\n    effect: NoSchedule\n", ""),
    );
    wait_until("the new BestEffort pod refused", T, || {
        let got = pp.jsonpath(
            "pod/latecomer",
            "{.status.phase}/{.status.reason}/{.status.message}",
        )?;
        (got == "Failed/Evicted/The node had condition: [MemoryPressure]. ").then_some(())
    });
    pp.kubectl_ok(&["delete", "pod", "--all", "--grace-period=0", "--force"]);
}
