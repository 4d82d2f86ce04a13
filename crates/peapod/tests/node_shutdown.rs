//! Graceful node shutdown through kubectl: with `shutdownGracePeriod` in the
//! KubeletConfiguration, stopping `peapod up` (SIGTERM) reports the Node not ready and
//! terminates its pods, regular ones before critical ones (`system-cluster-critical`), each
//! within its grace period; they end `Failed` with the kubelet's `Terminated` reason (and
//! the `DisruptionTarget` condition, reason `TerminationByKubelet`) and
//! message, no container is left, and a restarted `peapod up` does not run them again.
//! With `shutdownGracePeriodByPodPriority` the pods are terminated in groups by priority,
//! lowest first, each group within its own period.
//! (Without the setting the pods survive the agent, which the restart tests show.)

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::Peapod;

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";
const CONFIG: &str = "shutdownGracePeriod: 10s
shutdownGracePeriodCriticalPods: 4s
";

/// A pod whose container takes `stop_secs` to exit after SIGTERM.
fn pod(name: &str, class: Option<&str>, stop_secs: u32) -> String {
    let class = class.map_or(String::new(), |c| format!("  priorityClassName: {c}\n"));
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{class}  terminationGracePeriodSeconds: 30
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'sleep {stop_secs}; exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

#[test]
fn stopping_the_node_terminates_its_pods_in_priority_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubelet-config.yaml");
    common::write_kubelet_config(&config, CONFIG);
    let mut pp = Peapod::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    pp.kubectl_stdin(&["create", "-f", "-"], &pod("regular", None, 2));
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("critical", Some("system-cluster-critical"), 0),
    );
    for name in ["regular", "critical"] {
        pp.wait_pod_phase(name, "Running", T);
    }

    // Watch the Node's readiness while the node goes down.
    let mut watch = pp
        .kubectl_cmd()
        .args([
            "get",
            "node",
            &pp.node_name,
            "--watch",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].message}{\"\\n\"}",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl watch");
    // The first line is the Node as listed: the watch is on before the node stops.
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let stdout = watch.stdout.take().expect("watch stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let first = lines.recv_timeout(T).expect("the watch's first line");
    pp.stop();
    // The API server went with `peapod up`, so the watch ends.
    let _ = watch.wait();
    let _ = reader.join();
    let seen: Vec<String> = std::iter::once(first).chain(lines.try_iter()).collect();
    let seen = seen.join("\n");
    assert!(
        seen.contains("node is shutting down"),
        "{seen}\n{}",
        common::tail(&pp.server_log(), 30)
    );
    assert!(
        pp.leftover_processes().is_empty(),
        "containers left after the drain: {:?}",
        pp.leftover_processes()
    );

    // Back up: the pods ended Failed/Terminated and stay so.
    pp.up();
    for name in ["regular", "critical"] {
        assert_eq!(
            pp.jsonpath(
                &format!("pod/{name}"),
                "{.status.phase}/{.status.reason}/{.status.message}"
            ),
            Some(
                "Failed/Terminated/Pod was terminated in response to imminent node shutdown."
                    .into()
            ),
            "{name}"
        );
        assert_eq!(
            pp.jsonpath(
                &format!("pod/{name}"),
                "{.status.conditions[?(@.type==\"DisruptionTarget\")].status}/{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}"
            )
            .as_deref(),
            Some("True/TerminationByKubelet"),
            "{name}"
        );
    }
    // Regular pods finish before critical ones are asked to stop (RFC 3339 times compare as
    // text).
    let finished = |name: &str| {
        pp.jsonpath(
            &format!("pod/{name}"),
            "{.status.containerStatuses[0].state.terminated.finishedAt}",
        )
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("{name} has no finish time"))
    };
    assert!(finished("regular") <= finished("critical"));
    pp.kubectl_ok(&["delete", "pods", "regular", "critical"]);
}

#[test]
fn shutdown_by_pod_priority_stops_the_lowest_group_first_each_with_its_period() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubelet-config.yaml");
    common::write_kubelet_config(
        &config,
        "shutdownGracePeriodByPodPriority:
- priority: 1000
  shutdownGracePeriodSeconds: 3
- priority: 0
  shutdownGracePeriodSeconds: 8
",
    );
    let mut pp = Peapod::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: low
value: 100
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
",
    );
    // The low pod takes 2 s to stop, within its group's 8 s; the high one would take 10 s,
    // more than its group's 3 s.
    pp.kubectl_stdin(&["create", "-f", "-"], &pod("low", Some("low"), 2));
    pp.kubectl_stdin(&["create", "-f", "-"], &pod("high", Some("high"), 10));
    for (name, priority) in [("low", "100"), ("high", "1000")] {
        pp.wait_pod_phase(name, "Running", T);
        assert_eq!(
            pp.jsonpath(&format!("pod/{name}"), "{.spec.priority}")
                .as_deref(),
            Some(priority)
        );
    }
    pp.stop();
    assert!(
        pp.leftover_processes().is_empty(),
        "containers left after the drain: {:?}",
        pp.leftover_processes()
    );

    pp.up();
    let terminated = |name: &str| {
        pp.jsonpath(
            &format!("pod/{name}"),
            "{.status.phase}/{.status.reason}/{.status.containerStatuses[0].state.terminated.exitCode}",
        )
        .unwrap_or_default()
    };
    assert_eq!(
        terminated("low"),
        "Failed/Terminated/0",
        "{}",
        common::tail(&pp.server_log(), 30)
    );
    assert_eq!(terminated("high"), "Failed/Terminated/137");
    // The low group ends before the high one is asked to stop (RFC 3339 times compare as
    // text).
    let finished = |name: &str| {
        pp.jsonpath(
            &format!("pod/{name}"),
            "{.status.containerStatuses[0].state.terminated.finishedAt}",
        )
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| panic!("{name} has no finish time"))
    };
    assert!(finished("low") <= finished("high"));
    pp.kubectl_ok(&["delete", "pods", "low", "high"]);
    pp.kubectl_ok(&["delete", "priorityclass", "low", "high"]);
}
