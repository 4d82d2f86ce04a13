//! Pod lifecycle through kubectl: init containers in order (and `Init:…` statuses), failing
//! init containers under `Always` and `Never`, sidecars, CrashLoopBackOff, postStart and
//! preStop hooks, and termination messages.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(60);

/// The STATUS column of `kubectl get pod NAME`.
fn get_status(pp: &Peapod, pod: &str) -> String {
    let out = pp.kubectl(&["get", "pod", pod, "--no-headers"]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(2)
        .unwrap_or_default()
        .to_string()
}

fn wait_status(pp: &Peapod, pod: &str, want: &str) {
    wait_until(&format!("{pod} to show {want}"), T, || {
        (get_status(pp, pod) == want).then_some(())
    });
}

#[test]
fn init_containers_run_in_order_before_the_app() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: inits
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: first
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 3; echo first done"]
  - name: second
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo second done"]
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#,
    );
    wait_status(&pp, "inits", "Init:0/2");
    assert_eq!(
        pp.jsonpath("pod/inits", "{.status.phase}").as_deref(),
        Some("Pending")
    );
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/inits",
        "--timeout=60s",
    ]);
    assert_eq!(get_status(&pp, "inits"), "Running");
    let reasons = pp.jsonpath(
        "pod/inits",
        "{.status.initContainerStatuses[*].state.terminated.reason}",
    );
    assert_eq!(reasons.as_deref(), Some("Completed Completed"));
    // The app started after the last init container finished.
    let second_done = pp
        .jsonpath(
            "pod/inits",
            "{.status.initContainerStatuses[1].state.terminated.finishedAt}",
        )
        .expect("finishedAt");
    let first_done = pp
        .jsonpath(
            "pod/inits",
            "{.status.initContainerStatuses[0].state.terminated.finishedAt}",
        )
        .expect("finishedAt");
    let app_started = pp
        .jsonpath(
            "pod/inits",
            "{.status.containerStatuses[0].state.running.startedAt}",
        )
        .expect("startedAt");
    assert!(first_done <= second_done && second_done <= app_started);
    assert!(pp
        .kubectl_ok(&["logs", "inits", "-c", "first"])
        .contains("first done"));
    pp.kubectl_ok(&["delete", "pod", "inits", "--wait=true", "--timeout=60s"]);
}

#[test]
fn failing_init_container_crash_loops_or_fails_the_pod() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: init-loop
spec:
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: broken
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exit 1"]
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: init-never
spec:
  restartPolicy: Never
  initContainers:
  - name: broken
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "exit 1"]
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#,
    );
    wait_status(&pp, "init-loop", "Init:CrashLoopBackOff");
    let restarts = pp
        .jsonpath(
            "pod/init-loop",
            "{.status.initContainerStatuses[0].restartCount}",
        )
        .unwrap_or_default();
    assert!(restarts.parse::<u32>().unwrap_or(0) >= 1, "{restarts}");
    // The app never started.
    assert_eq!(
        pp.jsonpath(
            "pod/init-loop",
            "{.status.containerStatuses[0].state.waiting.reason}"
        )
        .as_deref(),
        Some("PodInitializing")
    );
    let describe = pp.kubectl_ok(&["describe", "pod", "init-loop"]);
    assert!(
        describe.contains("Back-off restarting failed container broken in pod init-loop"),
        "{describe}"
    );

    pp.wait_pod_phase("init-never", "Failed", T);
    assert_eq!(get_status(&pp, "init-never"), "Init:Error");
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "init-loop",
        "init-never",
        "--wait=true",
        "--timeout=60s",
    ]);
}

#[test]
fn sidecar_runs_alongside_and_lets_the_pod_complete() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: with-sidecar
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  initContainers:
  - name: helper
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    restartPolicy: Always
    command: ["sh", "-c", "trap 'exit 0' TERM; echo helper up; while true; do sleep 0.2; done"]
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "sleep 3; echo app done"]
"#,
    );
    // While the app runs, both containers run: READY 2/2.
    wait_until("both containers running", T, || {
        let out = pp.kubectl(&["get", "pod", "with-sidecar", "--no-headers"]);
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        line.split_whitespace()
            .nth(1)
            .filter(|r| *r == "2/2")
            .map(|_| ())
    });
    pp.wait_pod_phase("with-sidecar", "Succeeded", T);
    let helper_started = pp
        .jsonpath(
            "pod/with-sidecar",
            "{.status.initContainerStatuses[0].state.terminated.startedAt}",
        )
        .expect("helper startedAt");
    let app_started = pp
        .jsonpath(
            "pod/with-sidecar",
            "{.status.containerStatuses[0].state.terminated.startedAt}",
        )
        .expect("app startedAt");
    assert!(helper_started <= app_started);
    assert_eq!(
        pp.jsonpath(
            "pod/with-sidecar",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        )
        .as_deref(),
        Some("0")
    );
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "with-sidecar",
        "--wait=true",
        "--timeout=60s",
    ]);
}

#[test]
fn crash_loop_back_off_is_visible() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: crasher
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo boom; exit 3"]
"#,
    );
    wait_status(&pp, "crasher", "CrashLoopBackOff");
    assert_eq!(
        pp.jsonpath(
            "pod/crasher",
            "{.status.containerStatuses[0].lastState.terminated.exitCode}"
        )
        .as_deref(),
        Some("3")
    );
    let describe = pp.kubectl_ok(&["describe", "pod", "crasher"]);
    assert!(describe.contains("BackOff"), "{describe}");
    pp.kubectl_ok(&["delete", "pod", "crasher", "--wait=true", "--timeout=60s"]);
}

#[test]
fn hooks_run_and_termination_messages_are_reported() {
    let pp = Peapod::start();
    let host = tempfile::tempdir().expect("tmp");
    let dir = host.path().display().to_string();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hooked
spec:
  terminationGracePeriodSeconds: 5
  volumes:
  - name: out
    hostPath: {{path: "{dir}", type: Directory}}
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{{name: out, mountPath: /out}}]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "echo post > /out/poststart"]}}
      preStop:
        exec: {{command: ["sh", "-c", "echo pre > /out/prestop"]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: bad-hook
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    lifecycle:
      postStart:
        exec: {{command: ["sh", "-c", "exit 7"]}}
---
apiVersion: v1
kind: Pod
metadata:
  name: messages
spec:
  restartPolicy: Never
  containers:
  - name: file
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "printf 'all done' > /dev/termination-log; exit 3"]
  - name: logs
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    terminationMessagePolicy: FallbackToLogsOnError
    command: ["sh", "-c", "echo something broke; exit 4"]
"#
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/hooked",
        "--timeout=60s",
    ]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("poststart")).unwrap_or_default(),
        "post\n"
    );
    pp.kubectl_ok(&["delete", "pod", "hooked", "--wait=true", "--timeout=60s"]);
    assert_eq!(
        std::fs::read_to_string(host.path().join("prestop")).unwrap_or_default(),
        "pre\n"
    );

    wait_until("FailedPostStartHook event", T, || {
        let d = pp.kubectl_ok(&["describe", "pod", "bad-hook"]);
        d.contains("FailedPostStartHook").then_some(())
    });

    pp.wait_pod_phase("messages", "Failed", T);
    assert_eq!(
        pp.jsonpath(
            "pod/messages",
            "{.status.containerStatuses[?(@.name==\"file\")].state.terminated.message}"
        )
        .as_deref(),
        Some("all done")
    );
    assert_eq!(
        pp.jsonpath(
            "pod/messages",
            "{.status.containerStatuses[?(@.name==\"logs\")].state.terminated.message}"
        )
        .map(|m| m.trim().to_string())
        .as_deref(),
        Some("something broke")
    );
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "bad-hook",
        "messages",
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// The seed scenarios in `examples/` work as their comments say.
#[test]
fn lifecycle_examples_work() {
    let pp = Peapod::start();
    let examples = common::workspace_root().join("examples");
    for f in [
        "init-config-merge.yaml",
        "sidecar-log-adapter.yaml",
        "healthz-sidecar.yaml",
        "probes.yaml",
    ] {
        let path = examples.join(f);
        pp.kubectl_ok(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    }
    for pod in ["init-merge", "log-adapter", "healthz", "probes"] {
        pp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            "--timeout=90s",
        ]);
    }
    wait_until("the merged config in the app's log", T, || {
        let logs = pp.kubectl_ok(&["logs", "init-merge", "-c", "app"]);
        (logs.contains("listen 8080") && logs.contains("workers 4")).then_some(())
    });
    assert!(pp
        .kubectl_ok(&["logs", "init-merge", "-c", "merge"])
        .contains("merged 2 lines"));
    wait_until("the adapter relaying the app's log", T, || {
        let logs = pp.kubectl_ok(&["logs", "log-adapter", "-c", "adapter"]);
        logs.contains("request 1 served").then_some(())
    });
    assert_eq!(
        pp.jsonpath("pod/healthz", "{.status.initContainerStatuses[0].started}")
            .as_deref(),
        Some("true")
    );
    for pod in ["healthz", "probes"] {
        assert_eq!(
            pp.jsonpath(
                &format!("pod/{pod}"),
                "{.status.containerStatuses[0].restartCount}"
            )
            .as_deref(),
            Some("0"),
            "{pod} restarted"
        );
    }
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "init-merge",
        "log-adapter",
        "healthz",
        "probes",
        "--wait=true",
        "--timeout=60s",
    ]);
    pp.kubectl_ok(&["delete", "configmap", "config-fragments"]);
}
