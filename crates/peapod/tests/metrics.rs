//! The node API's `/metrics`: after a pod starts, kubelet's pod start histograms (the
//! startup SLI too) and every phase of `peapod_pod_start_phase_duration_seconds` have counted
//! it, its readiness probe runs are counted by result, and the endpoint is closed without the
//! node API token.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_until, Peapod};

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: timed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: one
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    readinessProbe:
      exec: {command: ["true"]}
      periodSeconds: 1
  - name: two
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

/// `GET /metrics` on the node API: (HTTP status, body).
fn scrape(pp: &Peapod, token: Option<&str>) -> (String, String) {
    let port = pp.kubectl_ok(&[
        "get",
        "node",
        &pp.node_name,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let mut curl = Command::new("curl");
    curl.args(["-sk", "-w", "\n%{http_code}"]);
    if let Some(t) = token {
        curl.args(["-H", &format!("Authorization: Bearer {t}")]);
    }
    let out = curl
        .arg(format!("https://127.0.0.1:{}/metrics", port.trim()))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

/// The value of the sample `name` (with its labels, as printed), if present.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn pod_start_phases_are_exported_as_histograms() {
    let pp = Peapod::start();
    let token = std::fs::read_to_string(pp.state_dir.join("node-api-token")).expect("token");
    let token = token.trim();

    assert_eq!(scrape(&pp, None).0, "401");
    assert_eq!(scrape(&pp, Some("wrong")).0, "401");

    pp.apply(POD);
    pp.wait_pod_phase("timed", "Running", Duration::from_secs(60));
    // The start is observed right after the Running status is written.
    let text = wait_until(
        "the pod's start in /metrics",
        Duration::from_secs(30),
        || {
            let (code, body) = scrape(&pp, Some(token));
            assert_eq!(code, "200", "{body}");
            (sample(&body, "kubelet_pod_start_duration_seconds_count") >= Some(1.0)).then_some(body)
        },
    );
    assert!(
        text.contains("# TYPE peapod_pod_start_phase_duration_seconds histogram"),
        "{text}"
    );
    for name in [
        "kubelet_pod_start_sli_duration_seconds_count",
        "kubelet_pod_worker_start_duration_seconds_count",
        "kubelet_pod_worker_duration_seconds_count{operation_type=\"create\"}",
    ] {
        assert!(
            sample(&text, name) >= Some(1.0),
            "{name} not counted:\n{text}"
        );
    }
    for phase in [
        "admission",
        "observe",
        "volumes",
        "sandbox",
        "network",
        "status_patch",
        "event",
    ] {
        let name = format!("peapod_pod_start_phase_duration_seconds_count{{phase=\"{phase}\"}}");
        assert!(
            sample(&text, &name) >= Some(1.0),
            "{name} not counted:\n{text}"
        );
    }
    // Per container: both containers counted.
    for phase in ["image", "spec", "create", "rootfs", "spawn"] {
        let name = format!("peapod_pod_start_phase_duration_seconds_count{{phase=\"{phase}\"}}");
        assert!(
            sample(&text, &name) >= Some(2.0),
            "{name} not counted twice:\n{text}"
        );
        let sum = format!("peapod_pod_start_phase_duration_seconds_sum{{phase=\"{phase}\"}}");
        assert!(sample(&text, &sum) > Some(0.0), "{sum} is zero:\n{text}");
    }
    // Each probe run is counted by result, under the pod's labels.
    let probes = "prober_probe_total{probe_type=\"Readiness\",result=\"successful\",container=\"one\",pod=\"timed\",namespace=\"default\",pod_uid=";
    wait_until("a counted readiness probe", Duration::from_secs(30), || {
        let (_, body) = scrape(&pp, Some(token));
        body.lines()
            .any(|l| l.starts_with(probes) && !l.ends_with(" 0"))
            .then_some(())
    });
    let bucket = "kubelet_pod_start_duration_seconds_bucket{le=\"+Inf\"}";
    assert_eq!(
        sample(&text, bucket),
        sample(&text, "kubelet_pod_start_duration_seconds_count"),
        "{text}"
    );
}
