//! A pod really runs: `peapod up`, then kubectl apply / get / logs / describe / delete, with a
//! busybox image imported from an OCI archive.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

fn pod(name: &str, command: &str, restart: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  restartPolicy: {restart}
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {command:?}]
"#
    )
}

#[test]
fn pod_runs_logs_describes_and_deletes() {
    let pp = Peapod::start();
    let nodes = pp.kubectl_ok(&["get", "nodes"]);
    assert!(
        nodes.contains(&pp.node_name) && nodes.contains("Ready"),
        "{nodes}"
    );

    let out = pp.apply(&pod("mypod", "echo hi; echo err >&2; sleep 3600", "Always"));
    assert!(out.contains("pod/mypod created"), "{out}");
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/mypod",
        "--timeout=60s",
    ]);

    let wide = pp.kubectl_ok(&["get", "pods", "-o", "wide"]);
    assert!(
        wide.contains("mypod") && wide.contains("1/1") && wide.contains("Running"),
        "{wide}"
    );
    assert!(wide.contains(&pp.node_name), "{wide}");

    // Re-applying the same file changes nothing.
    let again = pp.apply(&pod("mypod", "echo hi; echo err >&2; sleep 3600", "Always"));
    assert!(again.contains("unchanged"), "{again}");

    let logs = pp.kubectl_ok(&["logs", "mypod"]);
    assert_eq!(logs, "hi\nerr\n");
    let ts = pp.kubectl_ok(&["logs", "mypod", "--timestamps", "--tail=1", "-c", "main"]);
    assert!(ts.ends_with("Z err\n") && ts.lines().count() == 1, "{ts:?}");

    let status = |p: &str| pp.jsonpath("pod/mypod", p).unwrap_or_default();
    assert!(status("{.status.containerStatuses[0].containerID}").starts_with("peapod://"));
    assert_eq!(status("{.status.containerStatuses[0].restartCount}"), "0");
    assert!(!status("{.status.containerStatuses[0].state.running.startedAt}").is_empty());
    assert!(!status("{.status.startTime}").is_empty());

    let describe = pp.kubectl_ok(&["describe", "pod", "mypod"]);
    for needle in [
        "Scheduled",
        "Pulled",
        "Created",
        "Started",
        "Status:",
        "Running",
    ] {
        assert!(
            describe.contains(needle),
            "describe lacks {needle}:\n{describe}"
        );
    }

    // The container is isolated: own hostname (the pod name), PID 1 in its PID namespace.
    let uid = status("{.metadata.uid}");
    let deleted = pp.kubectl_ok(&["delete", "pod", "mypod", "--timeout=60s"]);
    assert!(deleted.contains("deleted"), "{deleted}");
    let gone = pp.kubectl(&["get", "pod", "mypod"]);
    assert!(!gone.status.success());
    assert!(
        pp.cgroups_of(&uid).is_empty(),
        "cgroups of the deleted pod remain"
    );
}

#[test]
fn exit_codes_reach_the_status() {
    let pp = Peapod::start();
    pp.apply(&pod("ok", "echo done", "Never"));
    pp.apply(&pod("bad", "exit 3", "Never"));
    pp.wait_pod_phase("ok", "Succeeded", Duration::from_secs(60));
    pp.wait_pod_phase("bad", "Failed", Duration::from_secs(60));
    let term = |p: &str, f: &str| {
        pp.jsonpath(
            &format!("pod/{p}"),
            &format!("{{.status.containerStatuses[0].state.terminated.{f}}}"),
        )
        .unwrap_or_default()
    };
    assert_eq!(term("ok", "reason"), "Completed");
    assert_eq!(term("ok", "exitCode"), "0");
    assert_eq!(term("bad", "reason"), "Error");
    assert_eq!(term("bad", "exitCode"), "3");
    let table = pp.kubectl_ok(&["get", "pods"]);
    assert!(
        table.contains("Completed") && table.contains("Error"),
        "{table}"
    );
    assert_eq!(pp.kubectl_ok(&["logs", "ok"]), "done\n");
}

#[test]
fn invalid_pod_is_rejected_with_the_field() {
    let pp = Peapod::start();
    let out = pp
        .kubectl_cmd()
        .args(["apply", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().expect("stdin").write_all(
                b"apiVersion: v1\nkind: Pod\nmetadata:\n  name: nope\nspec:\n  containers:\n  - name: main\n",
            )?;
            c.wait_with_output()
        })
        .expect("kubectl");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.containers[0].image: Required value"),
        "{err}"
    );
}

#[test]
fn graceful_delete_sends_sigterm_then_waits() {
    let pp = Peapod::start();
    // The container exits by itself on SIGTERM after writing a line; busybox sh runs traps.
    pp.apply(&pod(
        "graceful",
        "trap 'echo got TERM; exit 0' TERM; echo up; while true; do sleep 1; done",
        "Always",
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/graceful",
        "--timeout=60s",
    ]);
    wait_until("the first log line", Duration::from_secs(20), || {
        pp.kubectl_ok(&["logs", "graceful"])
            .contains("up")
            .then_some(())
    });
    let follow = pp
        .kubectl_cmd()
        .args(["logs", "-f", "graceful"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");
    pp.kubectl_ok(&["delete", "pod", "graceful", "--wait=false"]);
    let terminating = pp.jsonpath("pod/graceful", "{.metadata.deletionTimestamp}");
    assert!(terminating.is_none() || !terminating.as_deref().unwrap_or("").is_empty());
    wait_until("the pod to disappear", Duration::from_secs(30), || {
        (!pp.kubectl(&["get", "pod", "graceful"]).status.success()).then_some(())
    });
    let out = follow.wait_with_output().expect("logs -f output");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("up") && text.contains("got TERM"), "{text}");
}
