//! `kubectl debug` end to end with the real kubectl, in its three forms: an ephemeral
//! container in a running pod that shares its target's PID namespace, a copy of the pod with
//! a debug container and a shared process namespace, and a pod on the node with the host's
//! namespaces and its root at `/host`. Also the refusal of an invalid ephemeral container
//! (422 naming the field), that the ephemeral container survives an agent restart, and that
//! nothing of the pods is left once they are deleted.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn target_pod() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: app
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3607"]
"#
    )
}

/// The logs of container `c` of `pod` once they contain `marker`.
fn logs_with(pp: &Peapod, pod: &str, c: &str, marker: &str) -> String {
    wait_until(
        &format!("{marker:?} in the logs of {pod}/{c}"),
        Duration::from_secs(60),
        || {
            let out = pp.kubectl(&["logs", pod, "-c", c]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains(marker).then_some(text)
        },
    )
}

/// The uids of the pods, to look for what they leave behind.
fn uid_of(pp: &Peapod, pod: &str) -> String {
    pp.jsonpath(&format!("pod/{pod}"), "{.metadata.uid}")
        .filter(|u| !u.is_empty())
        .expect("pod uid")
}

/// Mounts of this machine that name `uid`.
fn mounts_of(uid: &str) -> Vec<String> {
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(uid))
        .map(str::to_string)
        .collect()
}

#[test]
fn debug_into_a_pod_a_copy_and_the_node() {
    let mut pp = Peapod::start();
    pp.apply(&target_pod());
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/app", "--timeout=90s"]);

    // 1. An ephemeral container that sees the target's processes.
    let out = pp.kubectl_ok(&[
        "debug",
        "app",
        "--image",
        BUSYBOX,
        "--image-pull-policy=IfNotPresent",
        "--target=main",
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "ps -o pid,args; echo host=$(hostname); echo done; sleep 3600",
    ]);
    assert!(out.is_empty() || !out.contains("error"), "{out}");
    let logs = logs_with(&pp, "app", "dbg", "done");
    assert!(
        logs.lines()
            .any(|l| l.trim_start().starts_with("1 ") && l.contains("sleep 3607")),
        "the target's PID 1 is not visible: {logs}"
    );
    assert!(logs.contains("host=app"), "{logs}");
    let status = wait_until(
        "the ephemeral container's status",
        Duration::from_secs(30),
        || {
            let s = pp.jsonpath(
                "pod/app",
                "{.status.ephemeralContainerStatuses[0].name} {.status.ephemeralContainerStatuses[0].image} {.status.ephemeralContainerStatuses[0].containerID} {.status.ephemeralContainerStatuses[0].state.running.startedAt}",
            )?;
            (s.split_whitespace().count() == 4).then_some(s)
        },
    );
    assert!(
        status.starts_with(&format!("dbg {BUSYBOX} peapod://")),
        "{status}"
    );
    // exec reaches it by name; it shares the pod's network and UTS namespaces.
    assert_eq!(
        pp.kubectl_ok(&["exec", "app", "-c", "dbg", "--", "hostname"]),
        "app\n"
    );
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=app,reason=Started",
        "-o",
        "jsonpath={.items[*].involvedObject.fieldPath}",
    ]);
    assert!(events.contains("spec.ephemeralContainers{dbg}"), "{events}");

    // The pod and its ephemeral container survive the agent: killed and started again, it
    // neither restarts nor starts the container again, and its log is whole.
    let id = |pp: &Peapod| {
        pp.jsonpath(
            "pod/app",
            "{.status.ephemeralContainerStatuses[0].containerID}",
        )
    };
    let before = id(&pp);
    pp.kill9();
    pp.up();
    wait_until(
        "the agent to report the pod again",
        Duration::from_secs(60),
        || {
            let restarts = pp.jsonpath(
            "pod/app",
            "{.status.ephemeralContainerStatuses[0].restartCount} {.status.ephemeralContainerStatuses[0].state.running.startedAt}",
        )?;
            (restarts.split_whitespace().count() == 2).then_some(())
        },
    );
    assert_eq!(id(&pp), before);
    assert_eq!(
        pp.kubectl_ok(&[
            "exec",
            "app",
            "-c",
            "dbg",
            "--",
            "sh",
            "-c",
            "ps -o args | grep -c '^sleep 3600'"
        ]),
        "1\n"
    );
    let after = logs_with(&pp, "app", "dbg", "done");
    assert_eq!(after.lines().filter(|l| *l == "done").count(), 1, "{after}");

    // 2. An invalid ephemeral container is refused with the field named: a target that
    //    does not exist (kubectl debug), and ports (a PUT of the subresource).
    let bad = pp.kubectl(&[
        "debug",
        "app",
        "--image",
        BUSYBOX,
        "--image-pull-policy=IfNotPresent",
        "--target=nope",
        "-c",
        "dbg2",
        "--",
        "true",
    ]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        stderr.contains("spec.ephemeralContainers[1].targetContainerName: Not found: \"nope\""),
        "{stderr}"
    );
    let mut pod: serde_json::Value = serde_json::from_str(&pp.kubectl_ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/app/ephemeralcontainers",
    ]))
    .expect("pod json");
    pod["spec"]["ephemeralContainers"]
        .as_array_mut()
        .expect("ephemeral list")
        .push(serde_json::json!({"name": "dbg3", "image": BUSYBOX,
                                 "ports": [{"containerPort": 80}]}));
    let body = tempfile::NamedTempFile::new().expect("tempfile");
    std::fs::write(body.path(), pod.to_string()).expect("body");
    let put = pp.kubectl(&[
        "replace",
        "-v=6",
        "--raw",
        "/api/v1/namespaces/default/pods/app/ephemeralcontainers",
        "-f",
        body.path().to_str().expect("utf-8 path"),
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&put.stdout),
        String::from_utf8_lossy(&put.stderr)
    );
    assert!(!put.status.success(), "{text}");
    assert!(text.contains("422 Unprocessable Entity"), "{text}");
    assert!(
        text.contains(
            "The Pod \"app\" is invalid: spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container"
        ),
        "{text}"
    );
    assert_eq!(
        pp.jsonpath("pod/app", "{.spec.ephemeralContainers[*].name}")
            .as_deref(),
        Some("dbg")
    );

    // 3. A copy of the pod with a debug container and one process namespace.
    pp.kubectl_ok(&[
        "debug",
        "app",
        "--copy-to=app-copy",
        "--share-processes",
        "--image",
        BUSYBOX,
        "--image-pull-policy=IfNotPresent",
        "-c",
        "dbg",
        "--",
        "sh",
        "-c",
        "until ps -o args | grep -q '^sleep 3607'; do sleep 0.2; done; ps -o pid,args; echo done; sleep 3600",
    ]);
    let logs = logs_with(&pp, "app-copy", "dbg", "done");
    assert!(logs.contains("sleep 3607"), "{logs}");
    assert_eq!(
        pp.jsonpath("pod/app-copy", "{.spec.shareProcessNamespace}")
            .as_deref(),
        Some("true")
    );

    // 4. A pod on the node with the host's network, PID and IPC namespaces and its root at
    //    /host.
    let server_pid = pp.server_pid().expect("server pid");
    let kubeconfig = pp.kubeconfig.display().to_string();
    let node = format!("node/{}", pp.node_name);
    let script = format!(
        "test -d /proc/{server_pid} && echo hostpid=yes; head -1 /host{kubeconfig}; \
         echo host=$(hostname); echo done; sleep 3600"
    );
    let out = pp.kubectl(&[
        "debug",
        &node,
        "--image",
        BUSYBOX,
        "--image-pull-policy=IfNotPresent",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let node_pod = text
        .split_whitespace()
        .find(|w| w.starts_with("node-debugger-"))
        .unwrap_or_else(|| panic!("no pod name in {text}"))
        .to_string();
    let logs = logs_with(&pp, &node_pod, "debugger", "done");
    assert!(logs.contains("hostpid=yes"), "{logs}");
    assert!(logs.contains("apiVersion: v1"), "{logs}");
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").expect("hostname");
    assert!(
        logs.contains(&format!("host={}", hostname.trim())),
        "{logs}"
    );
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        assert_eq!(
            pp.jsonpath(&format!("pod/{node_pod}"), &format!("{{.spec.{field}}}"))
                .as_deref(),
            Some("true"),
            "{field}"
        );
    }

    // 5. Deleting the pods leaves nothing of them behind.
    let uids: Vec<String> = ["app", "app-copy", node_pod.as_str()]
        .iter()
        .map(|p| uid_of(&pp, p))
        .collect();
    pp.kubectl_ok(&["delete", "pod", "app", "app-copy", &node_pod, "--wait=true"]);
    wait_until("the shims to exit", Duration::from_secs(60), || {
        (!pp.leftover_processes().iter().any(|p| p.contains(" shim "))).then_some(())
    });
    for uid in &uids {
        wait_until(
            &format!("the cgroups and mounts of pod {uid} to go"),
            Duration::from_secs(30),
            || (pp.cgroups_of(uid).is_empty() && mounts_of(uid).is_empty()).then_some(()),
        );
    }
}
