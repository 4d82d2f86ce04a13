//! The multi-container examples of `examples/`, applied as files and checked through kubectl.

mod common;

use std::time::Duration;

use common::{wait_until, workspace_root, Peapod};

fn apply_example(pp: &Peapod, file: &str) {
    let path = workspace_root().join("examples").join(file);
    pp.kubectl_ok(&["apply", "-f", path.to_str().expect("utf-8 path")]);
}

fn logs_until(pp: &Peapod, pod: &str, container: &str, needle: &str) -> String {
    wait_until(
        &format!("{needle:?} in {pod}/{container}"),
        Duration::from_secs(60),
        || {
            let out = pp.kubectl(&["logs", pod, "-c", container]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(needle).then_some(text)
        },
    )
}

#[test]
fn containers_talk_over_localhost_and_share_ports() {
    let pp = Peapod::start();
    apply_example(&pp, "localhost-pair.yaml");
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/localhost-pair",
        "--timeout=60s",
    ]);
    logs_until(
        &pp,
        "localhost-pair",
        "client",
        "hello from the server container",
    );

    // One port space: the client container cannot bind the server's port.
    let out = pp.kubectl(&[
        "exec",
        "localhost-pair",
        "-c",
        "client",
        "--",
        "nc",
        "-l",
        "-p",
        "8080",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Address already in use"), "{err}");
    // Same hostname in both: UTS is shared too.
    let a = pp.kubectl_ok(&["exec", "localhost-pair", "-c", "server", "--", "hostname"]);
    let b = pp.kubectl_ok(&["exec", "localhost-pair", "-c", "client", "--", "hostname"]);
    assert_eq!(a, b);
    assert_eq!(a.trim(), "localhost-pair");
    pp.kubectl_ok(&["delete", "pod", "localhost-pair", "--timeout=60s"]);
}

#[test]
fn share_process_namespace_shows_the_other_containers() {
    let pp = Peapod::start();
    apply_example(&pp, "share-process-namespace.yaml");
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/shared-pids",
        "--timeout=60s",
    ]);
    let ps = logs_until(&pp, "shared-pids", "inspector", "sleep 4242");
    // PID 1 of the shared namespace is the pod's infra process, not a container command.
    let pid1 = ps
        .lines()
        .find(|l| l.split_whitespace().next() == Some("1"))
        .unwrap_or_default();
    assert!(!pid1.contains("sleep") && !pid1.contains("ps"), "{ps}");
    pp.kubectl_ok(&["delete", "pod", "shared-pids", "--timeout=60s"]);
}
