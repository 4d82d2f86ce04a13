//! Descriptors the node agent inherited: a host file its parent left open without
//! close-on-exec (a lock, a supervisor's socket) must reach neither the long-lived shim,
//! which would hold it for the pod's life, nor a container, where an open host file is a
//! way out (runc's "leaky vessels" class). The test opens one before starting peapod and
//! looks at every descriptor of the shim and of the container's process.

use std::fs;
use std::os::fd::AsRawFd;
use std::time::Duration;

use crate::common::{wait_until, Peapod};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// The targets of a process's open descriptors.
fn fd_targets(pid: &str) -> Vec<String> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| fs::read_link(e.path()).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn inherited_descriptors_reach_neither_shims_nor_containers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = dir.path().join("peapod-inherited-host-file");
    fs::write(&secret, "host only").expect("host file");
    let file = fs::File::open(&secret).expect("open host file");
    // Leave it open across exec, as a careless parent would.
    nix::fcntl::fcntl(
        &file,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )
    .expect("clear close-on-exec");
    let fd = file.as_raw_fd();

    let pp = Peapod::start();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: fds
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "for f in /proc/$$/fd/*; do echo \"$f -> $(readlink $f)\"; done; echo listed; sleep 3600"]
"#
    ));
    let logs = wait_until(
        "the container's descriptors",
        Duration::from_secs(90),
        || {
            let out = pp.kubectl(&["logs", "fds"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("listed").then_some(text)
        },
    );
    assert!(
        !logs.contains("peapod-inherited"),
        "the container holds the agent's inherited descriptor {fd}:\n{logs}"
    );

    // The shim of the pod (and every other process of this peapod) holds none of it either.
    let marker = secret.to_string_lossy().into_owned();
    let state = pp.state_dir.to_string_lossy().into_owned();
    let shims: Vec<String> = fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|pid| pid.bytes().all(|b| b.is_ascii_digit()))
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let c = String::from_utf8_lossy(&c).replace('\0', " ");
                c.contains(" shim ") && c.contains(&state)
            })
        })
        .collect();
    assert!(!shims.is_empty(), "no shim of {state} found");
    for pid in &shims {
        let held = fd_targets(pid);
        assert!(
            !held.contains(&marker),
            "shim {pid} holds the agent's inherited descriptor: {held:?}"
        );
    }
    pp.kubectl_ok(&["delete", "pod", "fds", "--wait=true", "--timeout=60s"]);
    drop(file);
}
