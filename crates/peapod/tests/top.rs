//! `kubectl top` against peapod's own resource metrics API: a pod spinning on the CPU shows
//! well above an idle one, a pod holding 64 MiB in a memory-backed emptyDir shows at least
//! that, per pod and per container; `kubectl top node` shows the node; the raw
//! `metrics.k8s.io` objects have their containers, window and timestamp; the group is in
//! discovery and readable through the default `view` role; the node API serves the
//! kubelet's `/stats/summary`, `/metrics/resource` and `/metrics/cadvisor` behind its token;
//! and the API server's `/metrics` counted the requests.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{wait_until, Peapod};

/// Long enough for the node's second sample (rates need two) and a slow start.
const T: Duration = Duration::from_secs(120);

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: busy
  labels: {app: top-busy}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: spin
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "while :; do :; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: idle
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: nap
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: mem
spec:
  terminationGracePeriodSeconds: 0
  volumes:
  - name: cache
    emptyDir: {medium: Memory}
  containers:
  - name: holder
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "dd if=/dev/zero of=/cache/fill bs=1048576 count=64 && exec sleep 3600"]
    volumeMounts:
    - {name: cache, mountPath: /cache}
"#;

const MIB: u64 = 1 << 20;

/// `123m` or `2` cores as millicores.
fn millicores(text: &str) -> Option<u64> {
    match text.strip_suffix('m') {
        Some(m) => m.parse().ok(),
        None => text.parse::<u64>().ok().map(|c| c * 1000),
    }
}

/// `64Mi` (kubectl top prints Mi) as bytes.
fn bytes(text: &str) -> Option<u64> {
    text.strip_suffix("Mi")?
        .parse::<u64>()
        .ok()
        .map(|m| m * MIB)
}

/// The rows of `kubectl top pod`: name → (millicores, bytes).
fn top_pods(pp: &Peapod) -> Option<Vec<(String, u64, u64)>> {
    let out = pp.kubectl(&["top", "pod", "--no-headers"]);
    if !out.status.success() {
        return None;
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((
                f.first()?.to_string(),
                millicores(f.get(1)?)?,
                bytes(f.get(2)?)?,
            ))
        })
        .collect()
}

/// GET `path` on the node API with its token: (HTTP status, body).
fn node_api(pp: &Peapod, path: &str) -> (String, String) {
    let token = std::fs::read_to_string(pp.state_dir.join("node-api-token")).expect("token");
    let port = pp.kubectl_ok(&[
        "get",
        "node",
        &pp.node_name,
        "-o",
        "jsonpath={.status.daemonEndpoints.kubeletEndpoint.Port}",
    ]);
    let out = Command::new("curl")
        .args(["-sk", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {}", token.trim()))
        .arg(format!("https://127.0.0.1:{}{path}", port.trim()))
        .output()
        .expect("running curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", ""));
    (code.to_string(), body.to_string())
}

#[test]
fn kubectl_top_shows_cpu_and_memory_of_pods_containers_and_the_node() {
    let pp = Peapod::start();

    let resources = pp.kubectl_ok(&["api-resources", "--api-group=metrics.k8s.io"]);
    for kind in ["NodeMetrics", "PodMetrics"] {
        assert!(resources.contains(kind), "{resources}");
    }

    pp.apply(PODS);
    for pod in ["busy", "idle", "mem"] {
        pp.wait_pod_phase(pod, "Running", T);
    }

    let rows = wait_until("kubectl top pod to show the spin and the 64 MiB", T, || {
        let rows = top_pods(&pp)?;
        let find = |name: &str| rows.iter().find(|r| r.0 == name).cloned();
        let (busy, idle, mem) = (find("busy")?, find("idle")?, find("mem")?);
        (busy.1 >= idle.1 + 200 && mem.2 >= 64 * MIB).then_some(rows)
    });
    let idle = rows.iter().find(|r| r.0 == "idle").expect("idle row");
    assert!(idle.2 < 64 * MIB, "{rows:?}");

    let containers = pp.kubectl_ok(&["top", "pod", "--containers", "--no-headers"]);
    let holder = containers
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.first() == Some(&"mem") && f.get(1) == Some(&"holder"))
        .unwrap_or_else(|| panic!("no mem/holder row:\n{containers}"));
    assert!(
        holder.get(3).and_then(|m| bytes(m)) >= Some(64 * MIB),
        "{containers}"
    );
    assert!(
        containers
            .lines()
            .any(|l| l.starts_with("busy") && l.contains("spin")),
        "{containers}"
    );
    let selected = pp.kubectl_ok(&["top", "pod", "-l", "app=top-busy", "--no-headers"]);
    assert_eq!(
        selected
            .lines()
            .filter_map(|l| l.split_whitespace().next())
            .collect::<Vec<_>>(),
        ["busy"],
        "{selected}"
    );

    let node = wait_until("kubectl top node", T, || {
        let out = pp.kubectl(&["top", "node", "--no-headers"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    });
    let fields: Vec<&str> = node
        .lines()
        .find(|l| l.starts_with(&pp.node_name))
        .unwrap_or_else(|| panic!("no row for {}:\n{node}", pp.node_name))
        .split_whitespace()
        .collect();
    // NAME CPU(cores) CPU% MEMORY(bytes) MEMORY%: the spinning pod alone is 200m or more.
    assert!(
        fields.get(1).and_then(|c| millicores(c)) >= Some(200),
        "{node}"
    );
    assert!(fields.get(3).and_then(|m| bytes(m)) > Some(0), "{node}");

    let raw = pp.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/busy",
    ]);
    let v: serde_json::Value = serde_json::from_str(&raw).expect("PodMetrics json");
    assert_eq!(v["kind"], "PodMetrics", "{raw}");
    assert_eq!(v["metadata"]["labels"]["app"], "top-busy", "{raw}");
    assert_eq!(v["containers"][0]["name"], "spin", "{raw}");
    assert!(v["containers"][0]["usage"]["cpu"].is_string(), "{raw}");
    assert!(
        v["window"].is_string() && v["timestamp"].is_string(),
        "{raw}"
    );
    let missing = pp.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/nope",
    ]);
    assert!(!missing.status.success());
    let all = pp.kubectl_ok(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/pods"]);
    assert!(all.contains("\"PodMetricsList\""), "{all}");

    // The default view role reads pod metrics (system:aggregated-metrics-reader), within
    // the namespace it is bound in.
    pp.kubectl_ok(&["create", "serviceaccount", "reader"]);
    pp.kubectl_ok(&[
        "create",
        "rolebinding",
        "reader-view",
        "--clusterrole=view",
        "--serviceaccount=default:reader",
    ]);
    let reader = "--as=system:serviceaccount:default:reader";
    wait_until("view to grant pod metrics", T, || {
        let out = pp.kubectl(&["auth", "can-i", "list", "pods.metrics.k8s.io", reader]);
        (String::from_utf8_lossy(&out.stdout).trim() == "yes").then_some(())
    });
    let top_as_reader = pp.kubectl(&["top", "pod", "busy", reader]);
    assert!(
        top_as_reader.status.success(),
        "{}",
        String::from_utf8_lossy(&top_as_reader.stderr)
    );
    // Node metrics are cluster-wide: a namespace's binding does not reach them.
    let nodes_as_reader =
        pp.kubectl(&["get", "--raw", "/apis/metrics.k8s.io/v1beta1/nodes", reader]);
    let refused = String::from_utf8_lossy(&nodes_as_reader.stderr).into_owned();
    assert!(
        !nodes_as_reader.status.success() && refused.contains("forbidden"),
        "{refused}"
    );

    // The kubelet's own endpoints on the node API.
    let (code, summary) = node_api(&pp, "/stats/summary");
    assert_eq!(code, "200", "{summary}");
    let s: serde_json::Value = serde_json::from_str(&summary).expect("summary json");
    assert_eq!(s["node"]["nodeName"], pp.node_name.as_str());
    let mem = s["pods"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["podRef"]["name"] == "mem"))
        .unwrap_or_else(|| panic!("no mem pod in {summary}"));
    assert!(
        mem["memory"]["workingSetBytes"].as_u64() >= Some(64 * MIB),
        "{summary}"
    );
    assert!(mem["containers"][0]["cpu"]["usageCoreNanoSeconds"].is_u64());
    let (code, resource) = node_api(&pp, "/metrics/resource");
    assert_eq!(code, "200", "{resource}");
    for prefix in [
        "container_cpu_usage_seconds_total{container=\"spin\",namespace=\"default\",pod=\"busy\"} ",
        "container_memory_working_set_bytes{container=\"holder\",namespace=\"default\",pod=\"mem\"} ",
        "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"busy\"} ",
        "node_cpu_usage_seconds_total ",
        "node_memory_working_set_bytes ",
    ] {
        assert!(
            resource.lines().any(|l| l.starts_with(prefix)),
            "no {prefix}in:\n{resource}"
        );
    }
    let (code, cadvisor) = node_api(&pp, "/metrics/cadvisor");
    assert_eq!(code, "200");
    assert!(
        cadvisor.contains("container_memory_rss{container=\"holder\""),
        "{cadvisor}"
    );

    // The API server's own metrics: the metrics lists above were counted.
    let api = pp.kubectl_ok(&["get", "--raw", "/metrics"]);
    let counted = api.lines().any(|l| {
        l.starts_with("apiserver_request_total{verb=\"LIST\",group=\"metrics.k8s.io\",version=\"v1beta1\",resource=\"pods\",")
            && l.contains("code=\"200\"")
    });
    assert!(counted, "{api}");
    assert!(
        api.contains("# TYPE apiserver_request_duration_seconds histogram"),
        "{api}"
    );
    let stored_pods = api
        .lines()
        .find_map(|l| l.strip_prefix("apiserver_storage_objects{resource=\"pods\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(stored_pods >= Some(3), "{api}");

    pp.kubectl_ok(&["delete", "pod", "busy", "idle", "mem", "--timeout=60s"]);
}
