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
