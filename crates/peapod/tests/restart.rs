//! Pods survive the agent: kill -9 `peapod up` while a pod runs, start it again, and the same
//! container keeps running with its logs continuing and its status right.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: survivor
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done"]
"#;

fn container_pid() -> Option<u32> {
    // The container's PID 1: the `sh -c ... tick` process whose environment names the pod.
    let needle = "echo tick";
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !cmd.contains(needle) || !cmd.starts_with("sh ") {
            return None;
        }
        let environ = std::fs::read(e.path().join("environ")).ok()?;
        let env = String::from_utf8_lossy(&environ);
        env.contains("HOSTNAME=survivor").then_some(pid)
    })
}

#[test]
fn kill_minus_nine_keeps_the_container() {
    let mut pp = Peapod::start();
    pp.apply(POD);
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/survivor",
        "--timeout=60s",
    ]);
    let pid_before = wait_until("the container process", Duration::from_secs(10), || {
        container_pid()
    });
    let id_before = pp.jsonpath("pod/survivor", "{.status.containerStatuses[0].containerID}");

    pp.kill9();
    assert_eq!(
        container_pid(),
        Some(pid_before),
        "the container died with the agent"
    );
    pp.up();

    wait_until(
        "the status to be reconciled",
        Duration::from_secs(30),
        || {
            (pp.jsonpath("pod/survivor", "{.status.containerStatuses[0].ready}")
                .as_deref()
                == Some("true"))
            .then_some(())
        },
    );
    assert_eq!(container_pid(), Some(pid_before));
    assert_eq!(
        pp.jsonpath(
            "pod/survivor",
            "{.status.containerStatuses[0].restartCount}"
        )
        .as_deref(),
        Some("0")
    );
    assert_eq!(
        pp.jsonpath("pod/survivor", "{.status.containerStatuses[0].containerID}"),
        id_before
    );

    // Logs go on: ticks keep counting up with no gap.
    let logs = wait_until("more ticks", Duration::from_secs(10), || {
        let l = pp.kubectl_ok(&["logs", "survivor"]);
        (l.lines().count() > 5).then_some(l)
    });
    let ticks: Vec<u64> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("tick ")?.parse().ok())
        .collect();
    assert!(
        ticks.windows(2).all(|w| w[1] == w[0] + 1),
        "lost log lines: {ticks:?}"
    );
    pp.kubectl_ok(&["delete", "pod", "survivor", "--timeout=60s"]);
}

const TWO: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  terminationGracePeriodSeconds: 1
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
  - name: side
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

/// A new image for one container of a bare Pod restarts that container alone (whatever the
/// restart policy), as the kubelet does; other spec changes are refused by the API.
#[test]
fn new_image_restarts_only_that_container() {
    let pp = Peapod::start();
    pp.apply(TWO);
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/two", "--timeout=60s"]);
    let side_id = pp.jsonpath("pod/two", "{.status.containerStatuses[1].containerID}");

    pp.kubectl_ok(&["set", "image", "pod/two", "main=busybox:latest"]);
    let restarts = |name: &str| {
        pp.jsonpath(
            "pod/two",
            &format!("{{.status.containerStatuses[?(@.name==\"{name}\")].restartCount}}"),
        )
    };
    wait_until("main restarted", Duration::from_secs(60), || {
        (restarts("main").as_deref() == Some("1")).then_some(())
    });
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/two", "--timeout=60s"]);
    assert_eq!(restarts("side").as_deref(), Some("0"));
    assert_eq!(
        pp.jsonpath("pod/two", "{.status.containerStatuses[1].containerID}"),
        side_id,
        "the unchanged container kept running"
    );
    assert_eq!(
        pp.jsonpath(
            "pod/two",
            "{.status.containerStatuses[?(@.name==\"main\")].image}"
        )
        .as_deref(),
        Some("busybox:latest")
    );
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=two",
    ]);
    assert!(
        events.contains("Container main definition changed, will be restarted"),
        "{events}"
    );

    let refused = pp.kubectl(&[
        "patch",
        "pod/two",
        "--type=json",
        "-p",
        r#"[{"op": "replace", "path": "/spec/containers/0/command", "value": ["sleep", "1"]}]"#,
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("pod updates may not change fields other than"),
        "{stderr}"
    );
}
