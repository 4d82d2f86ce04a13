//! Soft node-pressure eviction through kubectl: with `evictionSoft: {memory.available:
//! "<1000Ti"}` and a 20 s `evictionSoftGracePeriod` the node is always short of memory, so it
//! reports `MemoryPressure` at once, and evicts a running pod only once the threshold has
//! been met for the grace period. The pod is terminated with the soft grace period
//! (`evictionMaxPodGracePeriod`, capped by the pod's own `terminationGracePeriodSeconds`):
//! its container, which traps SIGTERM and takes 3 s to exit, exits cleanly. It ends
//! `Failed`/`Evicted` with the kubelet's message, the `DisruptionTarget` condition and a
//! Warning `Evicted` event.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const GRACE: i64 = 20;

/// A Burstable pod (admitted under memory pressure, unlike a BestEffort one) that tolerates
/// the memory-pressure taint, whose container exits 0 three seconds after SIGTERM.
const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: patient
spec:
  terminationGracePeriodSeconds: 15
  tolerations:
  - key: node.kubernetes.io/memory-pressure
    operator: Exists
    effect: NoSchedule
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'echo got TERM; sleep 3; exit 0' TERM; echo started; while true; do sleep 1; done"]
    resources: {requests: {memory: 16Mi}, limits: {memory: 64Mi}}
"#;

fn timestamp(text: &str) -> jiff::Timestamp {
    text.parse()
        .unwrap_or_else(|err| panic!("timestamp {text:?}: {err}"))
}

#[test]
fn soft_threshold_evicts_after_its_grace_period_with_the_soft_pod_grace_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubelet-config.yaml");
    common::write_kubelet_config(
        &config,
        &format!(
            "evictionSoft:\n  memory.available: \"<1000Ti\"\nevictionSoftGracePeriod:\n  memory.available: {GRACE}s\nevictionMaxPodGracePeriod: 30\n"
        ),
    );
    let pp = Peapod::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    let node = format!("node/{}", pp.node_name);
    pp.kubectl_stdin(&["create", "-f", "-"], POD);

    let pressure = "{.status.conditions[?(@.type==\"MemoryPressure\")]";
    let since = wait_until("the MemoryPressure condition", T, || {
        let got = pp.jsonpath(
            &node,
            &format!("{pressure}.status}}/{pressure}.lastTransitionTime}}"),
        )?;
        got.strip_prefix("True/").map(timestamp)
    });
    pp.wait_pod_phase("patient", "Running", T);
    wait_until("the container running its trap", T, || {
        pp.kubectl_ok(&["logs", "patient"])
            .contains("started")
            .then_some(())
    });

    wait_until("the pod evicted", T, || {
        let got = pp.jsonpath("pod/patient", "{.status.phase}/{.status.reason}")?;
        (got == "Failed/Evicted").then_some(())
    });
    let message = pp
        .jsonpath("pod/patient", "{.status.message}")
        .expect("message");
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1000Ti, available: "
        ),
        "{message}"
    );
    let disruption = "{.status.conditions[?(@.type==\"DisruptionTarget\")]";
    let evicted = pp
        .jsonpath(
            "pod/patient",
            &format!("{disruption}.reason}}/{disruption}.lastTransitionTime}}"),
        )
        .expect("DisruptionTarget");
    let (reason, at) = evicted.split_once('/').expect("reason/time");
    assert_eq!(reason, "TerminationByKubelet");
    // The threshold was first met when the condition was raised; the pod is evicted only
    // once it has been met for the whole grace period (timestamps have 1 s resolution).
    let waited = timestamp(at).duration_since(since);
    assert!(
        waited >= jiff::SignedDuration::from_secs(GRACE - 1),
        "evicted {waited:?} after the threshold was met\n{}",
        common::tail(&pp.server_log(), 30)
    );
    // SIGTERM, then time to exit by itself: the soft eviction's grace period, not the
    // hard one's single second.
    let terminated = pp
        .jsonpath(
            "pod/patient",
            "{.status.containerStatuses[0].state.terminated.exitCode}",
        )
        .expect("container status");
    assert_eq!(terminated, "0", "{}", common::tail(&pp.server_log(), 30));
    assert!(pp.kubectl_ok(&["logs", "patient"]).contains("got TERM"));
    wait_until("the Warning Evicted event", T, || {
        let events = pp.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=patient,reason=Evicted",
            "-o",
            "jsonpath={range .items[*]}{.type}: {.message}{\"\\n\"}{end}",
        ]);
        events
            .contains("Warning: The node was low on resource: memory.")
            .then_some(())
    });
    pp.kubectl_ok(&["delete", "pod", "--all", "--grace-period=0", "--force"]);
}
