//! Probes through kubectl: httpGet liveness restarts a container once its endpoint fails,
//! exec readiness flips READY 1/1 ↔ 0/1 without restarts, a tcpSocket startup probe gates
//! readiness, and the `Unhealthy`/`Killing` events read as on a cluster.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);

fn ready_column(pp: &Peapod, pod: &str) -> String {
    let out = pp.kubectl(&["get", "pod", pod, "--no-headers"]);
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn http_liveness_failure_restarts_the_container() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: live
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www; echo ok > /www/healthz; (sleep 4; rm /www/healthz) & exec httpd -f -p 8080 -h /www"]
    ports: [{name: http, containerPort: 8080}]
    livenessProbe:
      httpGet: {path: /healthz, port: http}
      initialDelaySeconds: 2
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    wait_until("a liveness restart", T, || {
        let n = pp
            .jsonpath("pod/live", "{.status.containerStatuses[0].restartCount}")
            .unwrap_or_default();
        (n.parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
    let describe = pp.kubectl_ok(&["describe", "pod", "live"]);
    assert!(
        describe.contains("Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{describe}"
    );
    assert!(
        describe.contains("Container web failed liveness probe, will be restarted"),
        "{describe}"
    );
    pp.kubectl_ok(&["delete", "pod", "live", "--wait=true", "--timeout=60s"]);
}

#[test]
fn exec_readiness_flips_ready_without_restarts() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: flip
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/ready; sleep 6; rm /tmp/ready; sleep 3600"]
    readinessProbe:
      exec: {command: ["cat", "/tmp/ready"]}
      periodSeconds: 1
      failureThreshold: 1
"#,
    );
    wait_until("READY 1/1", T, || {
        (ready_column(&pp, "flip") == "1/1").then_some(())
    });
    wait_until("READY 0/1", T, || {
        (ready_column(&pp, "flip") == "0/1").then_some(())
    });
    assert_eq!(
        pp.jsonpath("pod/flip", "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );
    assert_eq!(
        pp.jsonpath(
            "pod/flip",
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        )
        .as_deref(),
        Some("False")
    );
    let describe = pp.kubectl_ok(&["describe", "pod", "flip"]);
    assert!(describe.contains("Readiness probe failed:"), "{describe}");
    pp.kubectl_ok(&["delete", "pod", "flip", "--wait=true", "--timeout=60s"]);
}

#[test]
fn startup_probe_gates_readiness() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: slow
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: web
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "mkdir -p /www && echo ok > /www/index.html && sleep 4 && exec httpd -f -p 8080 -h /www"]
    startupProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
      failureThreshold: 30
    readinessProbe:
      httpGet: {path: /index.html, port: 8080}
      periodSeconds: 1
"#,
    );
    wait_until("the container running", T, || {
        pp.jsonpath(
            "pod/slow",
            "{.status.containerStatuses[0].state.running.startedAt}",
        )
        .filter(|s| !s.is_empty())
    });
    assert_eq!(
        pp.jsonpath("pod/slow", "{.status.containerStatuses[0].started}")
            .as_deref(),
        Some("false")
    );
    assert_eq!(ready_column(&pp, "slow"), "0/1");
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/slow", "--timeout=60s"]);
    assert_eq!(
        pp.jsonpath("pod/slow", "{.status.containerStatuses[0].started}")
            .as_deref(),
        Some("true")
    );
    assert_eq!(
        pp.jsonpath("pod/slow", "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );
    pp.kubectl_ok(&["delete", "pod", "slow", "--wait=true", "--timeout=60s"]);
}

#[test]
fn exec_liveness_failure_restarts_the_container() {
    let pp = Peapod::start();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: exec-live
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 3; rm /tmp/healthy; sleep 3600"]
    livenessProbe:
      exec: {command: ["cat", "/tmp/healthy"]}
      periodSeconds: 1
      failureThreshold: 2
"#,
    );
    wait_until("an exec liveness restart", T, || {
        let n = pp
            .jsonpath(
                "pod/exec-live",
                "{.status.containerStatuses[0].restartCount}",
            )
            .unwrap_or_default();
        (n.parse::<u32>().unwrap_or(0) >= 1).then_some(())
    });
    let describe = pp.kubectl_ok(&["describe", "pod", "exec-live"]);
    assert!(
        describe.contains("Liveness probe failed: cat: can't open '/tmp/healthy'"),
        "{describe}"
    );
    assert!(
        describe.contains("Container app failed liveness probe, will be restarted"),
        "{describe}"
    );
    pp.kubectl_ok(&["delete", "pod", "exec-live", "--wait=true", "--timeout=60s"]);
}
