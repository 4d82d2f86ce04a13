//! Environment of a container as kubelet builds it: a missing ConfigMap key holds the
//! container in CreateContainerConfigError until the key exists; `$(VAR)` expansion in args
//! with `$$` escaping; downward API fields.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: envpod
  labels:
    tier: backend
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["echo"]
    args: ["name=$(POD_NAME)", "k=$(LATE)", "tier=$(TIER)", "esc=$$(LATE)", "unknown=$(NOPE)"]
    env:
    - name: POD_NAME
      valueFrom: {fieldRef: {fieldPath: metadata.name}}
    - name: TIER
      valueFrom: {fieldRef: {fieldPath: "metadata.labels['tier']"}}
    - name: LATE
      valueFrom: {configMapKeyRef: {name: late, key: k}}
"#;

#[test]
fn missing_key_waits_then_the_container_starts_with_expanded_args() {
    let pp = Peapod::start();
    pp.apply(POD);
    let message = wait_until(
        "CreateContainerConfigError",
        Duration::from_secs(60),
        || {
            let reason = pp.jsonpath(
                "pod/envpod",
                "{.status.containerStatuses[0].state.waiting.reason}",
            )?;
            (reason == "CreateContainerConfigError").then(|| {
                pp.jsonpath(
                    "pod/envpod",
                    "{.status.containerStatuses[0].state.waiting.message}",
                )
                .unwrap_or_default()
            })
        },
    );
    assert!(
        message.contains("configmap \"late\" not found"),
        "{message}"
    );

    pp.kubectl_ok(&["create", "configmap", "late", "--from-literal=k=v1"]);
    pp.wait_pod_phase("envpod", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        pp.kubectl_ok(&["logs", "envpod"]),
        "name=envpod k=v1 tier=backend esc=$(LATE) unknown=$(NOPE)\n"
    );
    pp.kubectl_ok(&["delete", "pod", "envpod", "--timeout=60s"]);
}
