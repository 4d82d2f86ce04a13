//! Local ephemeral storage limits end to end: kubelet enforces them by eviction. A pod
//! writing past its `ephemeral-storage` limit in its root filesystem, and one writing past
//! an emptyDir `sizeLimit`, end Failed with reason Evicted, kubelet's message and a Warning
//! event, and are not restarted; a pod under its limit keeps running.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: rootfs-hog
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/big bs=1M count=30; sleep 3600"]
    resources:
      limits:
        ephemeral-storage: 10Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: emptydir-hog
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/scratch/big bs=1M count=20; sleep 3600"]
    volumeMounts:
    - name: scratch
      mountPath: /scratch
  volumes:
  - name: scratch
    emptyDir:
      sizeLimit: 5Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: modest
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/small bs=1M count=2; echo written; sleep 3600"]
    resources:
      limits:
        ephemeral-storage: 10Mi
"#;

fn events(pp: &Peapod) -> String {
    pp.kubectl_ok(&[
        "get",
        "events",
        "-o",
        r#"jsonpath={range .items[*]}{.involvedObject.name}|{.type}|{.reason}|{.message}{"\n"}{end}"#,
    ])
}

/// Shim processes (one per running sandbox) of this state dir.
fn shims(pp: &Peapod) -> usize {
    pp.leftover_processes()
        .iter()
        .filter(|p| p.contains(" shim "))
        .count()
}

fn wait_evicted(pp: &Peapod, pod: &str, message: &str) {
    let what = format!("pod {pod} evicted");
    wait_until(&what, Duration::from_secs(90), || {
        let phase = pp.jsonpath(&format!("pod/{pod}"), "{.status.phase}");
        (phase.as_deref() == Some("Failed")).then_some(())
    });
    assert_eq!(
        pp.jsonpath(&format!("pod/{pod}"), "{.status.reason}")
            .as_deref(),
        Some("Evicted")
    );
    let got = pp
        .jsonpath(&format!("pod/{pod}"), "{.status.message}")
        .unwrap_or_default();
    assert_eq!(got.trim_end(), message.trim_end());
    let line = format!("{pod}|Warning|Evicted|{}", message.trim_end());
    wait_until("the Evicted event", Duration::from_secs(30), || {
        events(pp)
            .lines()
            .any(|l| l.trim_end() == line)
            .then_some(())
    });
}

#[test]
fn storage_limits_evict_and_modest_pod_runs() {
    let pp = Peapod::start();
    pp.apply(PODS);
    wait_evicted(
        &pp,
        "rootfs-hog",
        "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi.",
    );
    wait_evicted(
        &pp,
        "emptydir-hog",
        "Usage of EmptyDir volume \"scratch\" exceeds the limit \"5Mi\".",
    );
    // Evicted pods are not restarted (restartPolicy Always does not apply): their
    // sandboxes go, leaving only the modest pod's shim, and the phase stays Failed.
    wait_until(
        "only the modest pod's shim left",
        Duration::from_secs(30),
        || (shims(&pp) == 1).then_some(()),
    );
    // Absence of an eviction needs a window: the modest pod stays Running across more than
    // one eviction period (10 s) after its write.
    wait_until("modest's write", Duration::from_secs(30), || {
        let out = pp.kubectl(&["logs", "modest"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("written")
            .then_some(())
    });
    let window = std::time::Instant::now() + Duration::from_secs(12);
    while std::time::Instant::now() < window {
        assert_eq!(
            pp.jsonpath("pod/modest", "{.status.phase}").as_deref(),
            Some("Running")
        );
        for pod in ["rootfs-hog", "emptydir-hog"] {
            assert_eq!(
                pp.jsonpath(&format!("pod/{pod}"), "{.status.phase}")
                    .as_deref(),
                Some("Failed")
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let logs = pp.kubectl_ok(&["logs", "modest"]);
    assert!(logs.contains("written"), "{logs}");
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "rootfs-hog",
        "emptydir-hog",
        "modest",
        "--wait=true",
        "--timeout=60s",
    ]);
    wait_until("no shim left", Duration::from_secs(30), || {
        (shims(&pp) == 0).then_some(())
    });
}
