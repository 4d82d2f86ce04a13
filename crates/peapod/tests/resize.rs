//! In-place pod resize (kubelet and kube-apiserver v1.33): `kubectl patch --subresource
//! resize` changes a running container's cpu and memory without restarting it (its cgroup
//! files show the new values, the status its allocated and actual resources), restarts it
//! once when its `resizePolicy` asks for that, reports a resize the node can never fit as
//! `PodResizePending`/`Infeasible` and one that does not fit beside the other pods as
//! `Deferred` (done once they leave room), and refuses one that would change the QoS class.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{pod_cgroup_dirs, wait_until, Peapod};

const GUARANTEED: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: guaranteed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resizePolicy:
    - {resourceName: cpu, restartPolicy: NotRequired}
    - {resourceName: memory, restartPolicy: NotRequired}
    resources:
      limits: {cpu: 200m, memory: 64Mi}
"#;

const RESTARTING: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: restarting
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resizePolicy:
    - {resourceName: memory, restartPolicy: RestartContainer}
    resources:
      requests: {cpu: 100m, memory: 32Mi}
      limits: {memory: 64Mi}
"#;

/// One control file of the container `id` of pod `uid` (the v1 or v2 name, whichever the
/// host has), `None` while there is none.
fn control(uid: &str, id: &str, v1: &str, v2: &str) -> Option<String> {
    pod_cgroup_dirs(uid).into_iter().find_map(|dir| {
        let dir = dir.join(id);
        [v1, v2]
            .iter()
            .find_map(|f| std::fs::read_to_string(dir.join(f)).ok())
            .map(|s| s.trim().to_string())
    })
}

fn v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// The cpu quota file's text for a quota of `quota` µs per 100 ms.
fn quota_text(quota: u64) -> String {
    if v2() {
        format!("{quota} 100000")
    } else {
        quota.to_string()
    }
}

fn cpu_quota(uid: &str, id: &str) -> Option<String> {
    control(uid, id, "cpu.cfs_quota_us", "cpu.max")
}

fn memory_limit(uid: &str, id: &str) -> Option<String> {
    control(uid, id, "memory.limit_in_bytes", "memory.max")
}

/// The Burstable tier's cpu shares (v1) or weight (v2).
fn burstable_tier_cpu() -> Option<String> {
    [
        "/sys/fs/cgroup/cpu,cpuacct/peapod/kubepods/burstable/cpu.shares",
        "/sys/fs/cgroup/cpu/peapod/kubepods/burstable/cpu.shares",
        "/sys/fs/cgroup/peapod/kubepods/burstable/cpu.weight",
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok())
    .map(|s| s.trim().to_string())
}

/// What `burstable_tier_cpu` reads for `shares` v1 shares.
fn shares_text(shares: u64) -> String {
    if v2() {
        (1 + ((shares - 2) * 9999) / 262_142).to_string()
    } else {
        shares.to_string()
    }
}

fn container_id(pp: &Peapod, pod: &str) -> String {
    pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].containerID}",
    )
    .and_then(|s| s.strip_prefix("peapod://").map(str::to_string))
    .unwrap_or_default()
}

fn resize(pp: &Peapod, pod: &str, resources: &str) -> std::process::Output {
    let patch = format!(r#"{{"spec":{{"containers":[{{"name":"c","resources":{resources}}}]}}}}"#);
    pp.kubectl(&[
        "patch",
        "pod",
        pod,
        "--subresource",
        "resize",
        "--patch",
        &patch,
    ])
}

fn resize_ok(pp: &Peapod, pod: &str, resources: &str) {
    let out = resize(pp, pod, resources);
    assert!(
        out.status.success(),
        "resize of {pod} to {resources} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    wait_until(what, Duration::from_secs(60), || f().then_some(()));
}

#[test]
fn pods_are_resized_in_place_or_restarted_as_their_policy_says() {
    let mut pp = Peapod::start();
    let discovery = pp.kubectl_ok(&["get", "--raw", "/api/v1"]);
    assert!(discovery.contains(r#""name":"pods/resize""#), "{discovery}");

    pp.apply(GUARANTEED);
    pp.apply(RESTARTING);
    for pod in ["guaranteed", "restarting"] {
        pp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            "--timeout=90s",
        ]);
    }
    let uid = pp
        .jsonpath("pod/guaranteed", "{.metadata.uid}")
        .unwrap_or_default();
    let id = container_id(&pp, "guaranteed");
    assert_eq!(cpu_quota(&uid, &id), Some(quota_text(20_000)));
    assert_eq!(
        memory_limit(&uid, &id).as_deref(),
        Some((64u64 << 20).to_string().as_str())
    );
    assert_eq!(
        pp.jsonpath(
            "pod/guaranteed",
            "{.status.containerStatuses[0].allocatedResources.cpu}"
        )
        .as_deref(),
        Some("200m")
    );

    // Up in cpu and memory: the same container gets the new limits.
    resize_ok(
        &pp,
        "guaranteed",
        r#"{"limits":{"cpu":"400m","memory":"128Mi"},"requests":{"cpu":"400m","memory":"128Mi"}}"#,
    );
    wait_for("the cgroup to show 400m and 128Mi", || {
        cpu_quota(&uid, &id) == Some(quota_text(40_000))
            && memory_limit(&uid, &id) == Some((128u64 << 20).to_string())
    });
    wait_for("the status to show the resized resources", || {
        pp.jsonpath(
            "pod/guaranteed",
            "{.status.containerStatuses[0].resources.limits.cpu}/{.status.containerStatuses[0].allocatedResources.memory}",
        )
        .as_deref()
            == Some("400m/128Mi")
    });
    // The pod cgroup holds its containers' sum.
    let pod_quota = pod_cgroup_dirs(&uid).into_iter().find_map(|d| {
        ["cpu.cfs_quota_us", "cpu.max"]
            .iter()
            .find_map(|f| std::fs::read_to_string(d.join(f)).ok())
    });
    assert_eq!(
        pod_quota.map(|q| q.trim().to_string()),
        Some(quota_text(40_000))
    );

    // Down in cpu: still in place.
    resize_ok(
        &pp,
        "guaranteed",
        r#"{"limits":{"cpu":"100m","memory":"128Mi"},"requests":{"cpu":"100m","memory":"128Mi"}}"#,
    );
    wait_for("the cgroup to show 100m", || {
        cpu_quota(&uid, &id) == Some(quota_text(10_000))
    });
    assert_eq!(
        container_id(&pp, "guaranteed"),
        id,
        "the container was replaced"
    );
    assert_eq!(
        pp.jsonpath(
            "pod/guaranteed",
            "{.status.containerStatuses[0].restartCount}"
        )
        .as_deref(),
        Some("0")
    );

    // An agent restart keeps what was resized: nothing restarts or changes back.
    pp.kill9();
    pp.up();
    wait_for("the status after the agent restart", || {
        pp.jsonpath(
            "pod/guaranteed",
            "{.status.containerStatuses[0].ready}/{.status.containerStatuses[0].resources.limits.cpu}",
        )
        .as_deref()
            == Some("true/100m")
    });
    assert_eq!(cpu_quota(&uid, &id), Some(quota_text(10_000)));
    assert_eq!(container_id(&pp, "guaranteed"), id);

    // A memory limit may not shrink in place, nor may the QoS class change (422).
    let out = resize(
        &pp,
        "guaranteed",
        r#"{"limits":{"cpu":"100m","memory":"64Mi"},"requests":{"cpu":"100m","memory":"64Mi"}}"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is invalid")
            && err.contains(
                "memory limits cannot be decreased unless resizePolicy is RestartContainer"
            ),
        "{err}"
    );
    let out = resize(
        &pp,
        "guaranteed",
        r#"{"limits":{"cpu":"200m","memory":"128Mi"},"requests":{"cpu":"100m","memory":"128Mi"}}"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("is invalid")
            && err.contains("Pod QOS Class may not change as a result of resizing"),
        "{err}"
    );
    // A plain update of the resources stays refused.
    let out = pp.kubectl(&[
        "patch",
        "pod",
        "guaranteed",
        "--patch",
        r#"{"spec":{"containers":[{"name":"c","resources":{"limits":{"cpu":"300m","memory":"128Mi"},"requests":{"cpu":"300m","memory":"128Mi"}}}]}}"#,
    ]);
    assert!(!out.status.success());

    // More cpu than the node has: pending, Infeasible, nothing changes; undone, it clears.
    resize_ok(
        &pp,
        "guaranteed",
        r#"{"limits":{"cpu":"1000","memory":"128Mi"},"requests":{"cpu":"1000","memory":"128Mi"}}"#,
    );
    wait_for("PodResizePending Infeasible", || {
        pp.jsonpath(
            "pod/guaranteed",
            r#"{.status.conditions[?(@.type=="PodResizePending")].reason}"#,
        )
        .as_deref()
            == Some("Infeasible")
    });
    let message = pp
        .jsonpath(
            "pod/guaranteed",
            r#"{.status.conditions[?(@.type=="PodResizePending")].message}"#,
        )
        .unwrap_or_default();
    assert!(
        message.starts_with("Node didn't have enough capacity: cpu, requested: 1000000"),
        "{message}"
    );
    assert_eq!(cpu_quota(&uid, &id), Some(quota_text(10_000)));
    resize_ok(
        &pp,
        "guaranteed",
        r#"{"limits":{"cpu":"100m","memory":"128Mi"},"requests":{"cpu":"100m","memory":"128Mi"}}"#,
    );
    wait_for("PodResizePending to clear", || {
        pp.jsonpath(
            "pod/guaranteed",
            r#"{.status.conditions[?(@.type=="PodResizePending")].type}"#,
        )
        .as_deref()
            == Some("")
    });
    assert_eq!(container_id(&pp, "guaranteed"), id);

    // resizePolicy RestartContainer for memory: restarted once, with the new limit.
    let uid = pp
        .jsonpath("pod/restarting", "{.metadata.uid}")
        .unwrap_or_default();
    let first = container_id(&pp, "restarting");
    // The Burstable tier's shares are its pods' cpu requests: 100m.
    assert_eq!(burstable_tier_cpu(), Some(shares_text(102)));
    resize_ok(
        &pp,
        "restarting",
        r#"{"limits":{"memory":"96Mi"},"requests":{"cpu":"300m","memory":"32Mi"}}"#,
    );
    wait_for("the Burstable tier to follow the resized request", || {
        burstable_tier_cpu() == Some(shares_text(307))
    });
    wait_for("the container to restart once", || {
        pp.jsonpath(
            "pod/restarting",
            "{.status.containerStatuses[0].restartCount}/{.status.containerStatuses[0].ready}",
        )
        .as_deref()
            == Some("1/true")
    });
    let second = container_id(&pp, "restarting");
    assert_ne!(first, second);
    assert_eq!(memory_limit(&uid, &second), Some((96u64 << 20).to_string()));
    assert_eq!(
        pp.jsonpath(
            "pod/restarting",
            "{.status.containerStatuses[0].resources.limits.memory}"
        )
        .as_deref(),
        Some("96Mi")
    );

    // Fits the node but not beside the other pod's 300m: Deferred, done once that pod goes.
    let cpus: u64 = pp
        .jsonpath(
            &format!("node/{}", pp.node_name),
            "{.status.allocatable.cpu}",
        )
        .and_then(|c| c.parse().ok())
        .expect("node cpu allocatable");
    let millis = cpus * 1000 - 100;
    let uid = pp
        .jsonpath("pod/guaranteed", "{.metadata.uid}")
        .unwrap_or_default();
    resize_ok(
        &pp,
        "guaranteed",
        &format!(
            r#"{{"limits":{{"cpu":"{millis}m","memory":"128Mi"}},"requests":{{"cpu":"{millis}m","memory":"128Mi"}}}}"#
        ),
    );
    wait_for("PodResizePending Deferred", || {
        pp.jsonpath(
            "pod/guaranteed",
            r#"{.status.conditions[?(@.type=="PodResizePending")].reason}"#,
        )
        .as_deref()
            == Some("Deferred")
    });
    assert_eq!(cpu_quota(&uid, &id), Some(quota_text(10_000)));
    pp.kubectl_ok(&["delete", "pod", "restarting", "--wait=true"]);
    wait_for("the deferred resize to be done", || {
        cpu_quota(&uid, &id) == Some(quota_text(millis * 100))
    });
    wait_for("PodResizePending to clear", || {
        pp.jsonpath(
            "pod/guaranteed",
            r#"{.status.conditions[?(@.type=="PodResizePending")].type}"#,
        )
        .as_deref()
            == Some("")
    });
    pp.kubectl_ok(&["delete", "pod", "guaranteed", "--wait=true"]);
}
