//! Pod priority and preemption through kubectl: the built-in `system-` PriorityClasses,
//! `kubectl get pc` with kube's columns, the API server's refusals (user values above one
//! billion, reserved names, a changed value, an unknown class on a pod, a priority that
//! disagrees with the class), and the scheduler's preemption: a node filled by low-priority
//! pods takes a high-priority pod after one victim, marked `DisruptionTarget`
//! (`PreemptionByScheduler`), is evicted; a `preemptionPolicy: Never` pod stays Pending.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";

const CLASSES: &str = r#"apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: low
value: 10
description: fills the node
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high
value: 1000
---
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: high-never
value: 1000
preemptionPolicy: Never
"#;

/// A pod of class `class` requesting `cpu_milli` millicores; busybox's `sleep` as PID 1
/// ignores SIGTERM, so a deleted pod takes its whole grace period (`grace` seconds).
fn pod(name: &str, class: &str, cpu_milli: i64, grace: u32) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{test: priority}}
spec:
  priorityClassName: {class}
  terminationGracePeriodSeconds: {grace}
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources:
      requests: {{cpu: "{cpu_milli}m"}}
"#
    )
}

fn stderr_of(pp: &Peapod, args: &[&str], stdin: Option<&str>) -> String {
    let out = match stdin {
        None => pp.kubectl(args),
        Some(text) => {
            use std::io::Write;
            let mut child = pp
                .kubectl_cmd()
                .args(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kubectl");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(text.as_bytes())
                .expect("write");
            child.wait_with_output().expect("kubectl output")
        }
    };
    assert!(!out.status.success(), "kubectl {args:?} should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The node's allocatable cpu in millicores.
fn allocatable_milli(pp: &Peapod) -> i64 {
    let cpu = pp
        .jsonpath(
            &format!("node/{}", pp.node_name),
            "{.status.allocatable.cpu}",
        )
        .expect("allocatable cpu");
    match cpu.strip_suffix('m') {
        Some(m) => m.parse().expect("millicores"),
        None => cpu.parse::<i64>().expect("cores") * 1000,
    }
}

#[test]
fn priority_classes_admission_and_preemption() {
    let pp = Peapod::start();

    // The system classes exist from the start, with kube's columns.
    let table = wait_until("the system classes", T, || {
        let out = pp.kubectl_ok(&["get", "pc"]);
        out.contains("system-cluster-critical").then_some(out)
    });
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    let row = |name: &str| -> Vec<String> {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("system-node-critical")[1], "2000001000");
    assert_eq!(row("system-cluster-critical")[1], "2000000000");
    assert_eq!(row("system-cluster-critical")[2], "false");

    // kube-apiserver's refusals.
    let too_high = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: huge\nvalue: 1000000001\n";
    assert!(
        stderr_of(&pp, &["create", "-f", "-"], Some(too_high)).contains(
            "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        )
    );
    let reserved =
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: system-mine\nvalue: 1\n";
    assert!(stderr_of(&pp, &["create", "-f", "-"], Some(reserved))
        .contains("priority class names with 'system-' prefix are reserved for system use only"));
    pp.kubectl_stdin(&["apply", "-f", "-"], CLASSES);
    assert!(stderr_of(
        &pp,
        &[
            "patch",
            "pc",
            "low",
            "--type=merge",
            "-p",
            r#"{"value": 11}"#
        ],
        None
    )
    .contains("value: Forbidden: may not be changed in an update."));
    let first_default = "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: everyone\nvalue: 5\nglobalDefault: true\n";
    pp.kubectl_stdin(&["create", "-f", "-"], first_default);
    let second_default = first_default.replace("everyone", "everyone-else");
    assert!(
        stderr_of(&pp, &["create", "-f", "-"], Some(&second_default)).contains(
            "PriorityClass everyone is already marked as default. Only one default can exist"
        )
    );
    let unknown = pod("lost", "nope", 10, 1);
    assert!(stderr_of(&pp, &["create", "-f", "-"], Some(&unknown))
        .contains(r#"pods "lost" is forbidden: no PriorityClass with name nope was found"#));
    let given = pod("given", "high", 10, 1).replace(
        "  priorityClassName: high\n",
        "  priorityClassName: high\n  priority: 3\n",
    );
    assert!(stderr_of(&pp, &["create", "-f", "-"], Some(&given)).contains(
        "the integer value of priority (3) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
    ));
    pp.kubectl_ok(&["delete", "pc", "everyone"]);

    // Two low-priority pods fill 80% of the node's cpu.
    let share = allocatable_milli(&pp) * 2 / 5;
    for name in ["low-1", "low-2"] {
        pp.kubectl_stdin(&["create", "-f", "-"], &pod(name, "low", share, 8));
    }
    for name in ["low-1", "low-2"] {
        pp.wait_pod_phase(name, "Running", T);
    }
    assert_eq!(
        pp.jsonpath("pod/low-1", "{.spec.priority} {.spec.preemptionPolicy}"),
        Some("10 PreemptLowerPriority".into())
    );

    // The high-priority pod preempts one of them and runs.
    pp.kubectl_stdin(&["create", "-f", "-"], &pod("high", "high", share, 1));
    let victim = wait_until("a victim marked DisruptionTarget", T, || {
        ["low-1", "low-2"].into_iter().find(|name| {
            pp.jsonpath(
                &format!("pod/{name}"),
                "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
            )
            .as_deref()
                == Some("PreemptionByScheduler")
        })
    });
    let survivor = if victim == "low-1" { "low-2" } else { "low-1" };
    assert!(pp
        .jsonpath(&format!("pod/{victim}"), "{.metadata.deletionTimestamp}")
        .is_some_and(|t| !t.is_empty()));
    assert_eq!(
        pp.jsonpath("pod/high", "{.status.nominatedNodeName}"),
        Some(pp.node_name.clone())
    );
    pp.wait_pod_phase("high", "Running", T);
    wait_until("the victim to be gone", T, || {
        (!pp.kubectl(&["get", "pod", victim]).status.success()).then_some(())
    });
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={victim},reason=Preempted"),
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains(&format!("on node {}", pp.node_name)),
        "{events}"
    );

    // A pod of equal priority that may not preempt waits, and evicts nobody.
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        &pod("polite", "high-never", share, 1),
    );
    let message = wait_until("polite to be unschedulable", T, || {
        pp.jsonpath(
            "pod/polite",
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        )
        .filter(|m| !m.is_empty())
    });
    assert!(
        message.contains("Insufficient cpu")
            && message.contains("preemption: not eligible due to preemptionPolicy=Never."),
        "{message}"
    );
    assert_eq!(
        pp.jsonpath("pod/polite", "{.status.phase}"),
        Some("Pending".into())
    );
    assert_eq!(
        pp.jsonpath(&format!("pod/{survivor}"), "{.metadata.deletionTimestamp}"),
        Some(String::new())
    );

    pp.kubectl_ok(&[
        "delete",
        "pods",
        "-l",
        "test=priority",
        "--grace-period=0",
        "--force",
    ]);
}

/// kube-scheduler's queue order for pods that waited: both pods are tried and parked while
/// no node matches their nodeSelector; labelling the node moves both back, and the
/// high-priority pod, created later, is tried first and takes the room there is for one.
#[test]
fn parked_pods_retry_by_priority() {
    let pp = Peapod::start();
    pp.kubectl_stdin(&["apply", "-f", "-"], CLASSES);
    let share = allocatable_milli(&pp) * 3 / 5;
    let selective = |name: &str, class: &str| {
        pod(name, class, share, 1).replace("spec:\n", "spec:\n  nodeSelector: {queue: open}\n")
    };
    let parked = |name: &str| {
        let message = wait_until(&format!("{name} to be unschedulable"), T, || {
            pp.jsonpath(
                &format!("pod/{name}"),
                "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
            )
            .filter(|m| !m.is_empty())
        });
        assert!(
            message.contains("node(s) didn't match Pod's node affinity/selector"),
            "{message}"
        );
    };
    pp.kubectl_stdin(&["create", "-f", "-"], &selective("early-low", "low"));
    parked("early-low");
    // `high-never` may not preempt: had the low pod been bound first, the high one would
    // stay Pending instead of evicting it.
    pp.kubectl_stdin(
        &["create", "-f", "-"],
        &selective("late-high", "high-never"),
    );
    parked("late-high");
    // Let both backoffs (1 s after the attempt, in whole-second windows) run out, so the
    // label moves both straight to activeQ, ordered by priority (within one backoff window
    // upstream also orders by priority, but earlier windows go first).
    std::thread::sleep(Duration::from_secs(3));
    pp.kubectl_ok(&["label", "node", &pp.node_name, "queue=open"]);

    pp.wait_pod_phase("late-high", "Running", T);
    let message = wait_until("early-low to be rejected for cpu", T, || {
        pp.jsonpath(
            "pod/early-low",
            "{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        )
        .filter(|m| m.contains("Insufficient cpu"))
    });
    assert!(message.starts_with("0/1 nodes are available"), "{message}");
    assert_eq!(
        pp.jsonpath("pod/early-low", "{.spec.nodeName}/{.status.phase}"),
        Some("/Pending".into())
    );

    // Deleting the high-priority pod frees the room, and the parked pod takes it.
    pp.kubectl_ok(&["delete", "pod", "late-high", "--grace-period=0", "--force"]);
    pp.wait_pod_phase("early-low", "Running", T);
    pp.kubectl_ok(&[
        "delete",
        "pods",
        "-l",
        "test=priority",
        "--grace-period=0",
        "--force",
    ]);
    pp.kubectl_ok(&["label", "node", &pp.node_name, "queue-"]);
}
