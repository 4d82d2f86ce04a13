//! The resource metrics API (`metrics.k8s.io/v1beta1`) as metrics-server serves it, built
//! from nodes' kubelet summaries: its discovery entries, and `NodeMetrics` and `PodMetrics`
//! made of a Node or Pod object and the summary of the node it runs on. Pure: the API
//! server fetches the summaries and lists the objects.

use jiff::Timestamp;
use serde_json::{json, Value};

pub const GROUP: &str = "metrics.k8s.io";
pub const VERSION: &str = "v1beta1";
pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";

/// The window every usage covers: a node's summary rates CPU over its sampling interval,
/// which is 10 s on peapod and on a kubelet (cAdvisor's default housekeeping interval).
pub const WINDOW: &str = "10s";

/// The two resources: (plural, singular, kind, namespaced).
const RESOURCES: [(&str, &str, &str, bool); 2] = [
    ("nodes", "", "NodeMetrics", false),
    ("pods", "", "PodMetrics", true),
];

/// metrics-server serves only these.
const VERBS: [&str; 2] = ["get", "list"];

/// The version entry of aggregated discovery (`APIVersionDiscovery`) for the group.
pub fn aggregated_version() -> Value {
    json!({
        "version": VERSION,
        "freshness": "Current",
        "resources": RESOURCES.iter().map(|(plural, singular, kind, namespaced)| json!({
            "resource": plural,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": if *namespaced { "Namespaced" } else { "Cluster" },
            "singularResource": singular,
            "verbs": VERBS,
        })).collect::<Vec<_>>(),
    })
}

/// The group as legacy discovery names it (`APIGroup` without kind and apiVersion).
pub fn api_group() -> Value {
    let version = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [version.clone()], "preferredVersion": version})
}

/// The legacy `APIResourceList` of `/apis/metrics.k8s.io/v1beta1`.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": RESOURCES.iter().map(|(plural, singular, kind, namespaced)| json!({
            "name": plural,
            "singularName": singular,
            "namespaced": namespaced,
            "kind": kind,
            "verbs": VERBS,
        })).collect::<Vec<_>>(),
    })
}

/// A `NodeMetricsList` or `PodMetricsList` of `items`.
pub fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({
        "kind": kind,
        "apiVersion": API_VERSION,
        "metadata": {},
        "items": items,
    })
}

/// A usage as metrics-server writes it: CPU in nanocores (`12345n`), memory in bytes with
/// the largest binary suffix that divides it exactly (`512Ki`, `3Mi`).
fn usage(nano_cores: u64, bytes: u64) -> Value {
    json!({"cpu": format!("{nano_cores}n"), "memory": binary_quantity(bytes)})
}

fn binary_quantity(bytes: u64) -> String {
    const SUFFIXES: [&str; 6] = ["", "Ki", "Mi", "Gi", "Ti", "Pi"];
    let mut value = bytes;
    let mut i = 0;
    while value != 0 && value.is_multiple_of(1024) && i + 1 < SUFFIXES.len() {
        value /= 1024;
        i += 1;
    }
    format!("{value}{}", SUFFIXES[i])
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// The CPU rate and working set of one summary entry (node, pod or container), with the
/// time they were read; `None` until the node has a rate (its second sample).
fn figures(stats: &Value) -> Option<(u64, u64, &str)> {
    let nano_cores = stats.pointer("/cpu/usageNanoCores")?.as_u64()?;
    let working_set = stats.pointer("/memory/workingSetBytes")?.as_u64()?;
    let time = str_at(stats, "/cpu/time")?;
    Some((nano_cores, working_set, time))
}

fn metadata(obj: &Value, now: Timestamp) -> Value {
    let mut meta = json!({
        "name": str_at(obj, "/metadata/name").unwrap_or_default(),
        "creationTimestamp": now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    });
    if let Some(ns) = str_at(obj, "/metadata/namespace") {
        meta["namespace"] = json!(ns);
    }
    if let Some(labels) = obj.pointer("/metadata/labels").filter(|l| l.is_object()) {
        meta["labels"] = labels.clone();
    }
    meta
}

/// The `NodeMetrics` of `node` from its `summary`, if the summary is of that node and has
/// its figures yet.
pub fn node_metrics(node: &Value, summary: &Value, now: Timestamp) -> Option<Value> {
    let name = str_at(node, "/metadata/name")?;
    let stats = summary.get("node")?;
    if str_at(stats, "/nodeName") != Some(name) {
        return None;
    }
    let (cpu, memory, time) = figures(stats)?;
    Some(json!({
        "kind": "NodeMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(node, now),
        "timestamp": time,
        "window": WINDOW,
        "usage": usage(cpu, memory),
    }))
}

/// The `PodMetrics` of `pod` from the summary of its node: one usage per running container.
/// `None` when the summary does not have the pod, or lacks a container's figures (as
/// metrics-server, which leaves a pod out rather than show part of it).
pub fn pod_metrics(pod: &Value, summary: &Value, now: Timestamp) -> Option<Value> {
    let name = str_at(pod, "/metadata/name")?;
    let namespace = str_at(pod, "/metadata/namespace")?;
    let uid = str_at(pod, "/metadata/uid");
    let stats = summary.get("pods")?.as_array()?.iter().find(|p| {
        str_at(p, "/podRef/name") == Some(name)
            && str_at(p, "/podRef/namespace") == Some(namespace)
            && (uid.is_none() || str_at(p, "/podRef/uid") == uid)
    })?;
    let mut containers = Vec::new();
    let mut latest: Option<&str> = None;
    for c in stats.get("containers")?.as_array()? {
        let (cpu, memory, time) = figures(c)?;
        latest = Some(latest.map_or(time, |t| t.max(time)));
        containers.push(json!({
            "name": str_at(c, "/name")?,
            "usage": usage(cpu, memory),
        }));
    }
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": API_VERSION,
        "metadata": metadata(pod, now),
        "timestamp": latest?,
        "window": WINDOW,
        "containers": containers,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        Timestamp::from_second(1_700_000_100).expect("time")
    }

    fn summary() -> Value {
        json!({
            "node": {"nodeName": "n1",
                "cpu": {"time": "2023-11-14T22:13:20Z", "usageNanoCores": 250_000_000u64, "usageCoreNanoSeconds": 9},
                "memory": {"time": "2023-11-14T22:13:20Z", "workingSetBytes": 3u64 << 30}},
            "pods": [
                {"podRef": {"name": "web", "namespace": "default", "uid": "u1"}, "startTime": "2023-11-14T22:00:00Z",
                 "containers": [
                    {"name": "app", "startTime": "2023-11-14T22:00:00Z",
                     "cpu": {"time": "2023-11-14T22:13:20Z", "usageNanoCores": 1_000_123u64, "usageCoreNanoSeconds": 5},
                     "memory": {"time": "2023-11-14T22:13:20Z", "workingSetBytes": 52_428_800u64}},
                    {"name": "side", "startTime": "2023-11-14T22:00:00Z",
                     "cpu": {"time": "2023-11-14T22:13:20Z", "usageNanoCores": 0, "usageCoreNanoSeconds": 5},
                     "memory": {"time": "2023-11-14T22:13:20Z", "workingSetBytes": 1000}}]},
                {"podRef": {"name": "fresh", "namespace": "default", "uid": "u2"}, "startTime": "2023-11-14T22:00:00Z",
                 "containers": [
                    {"name": "app", "startTime": "2023-11-14T22:00:00Z",
                     "cpu": {"time": "2023-11-14T22:13:20Z", "usageCoreNanoSeconds": 5},
                     "memory": {"time": "2023-11-14T22:13:20Z", "workingSetBytes": 1}}]}
            ]
        })
    }

    #[test]
    fn pod_metrics_have_each_containers_usage_and_the_pods_labels() {
        let pod = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web"}}});
        let m = pod_metrics(&pod, &summary(), now()).expect("metrics");
        assert_eq!(
            m,
            json!({
                "kind": "PodMetrics",
                "apiVersion": "metrics.k8s.io/v1beta1",
                "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2023-11-14T22:15:00Z", "labels": {"app": "web"}},
                "timestamp": "2023-11-14T22:13:20Z",
                "window": "10s",
                "containers": [
                    {"name": "app", "usage": {"cpu": "1000123n", "memory": "50Mi"}},
                    {"name": "side", "usage": {"cpu": "0n", "memory": "1000"}},
                ],
            })
        );
    }

    #[test]
    fn pods_without_a_rate_yet_or_not_in_the_summary_have_no_metrics() {
        let fresh = json!({"metadata": {"name": "fresh", "namespace": "default", "uid": "u2"}});
        assert_eq!(pod_metrics(&fresh, &summary(), now()), None);
        let other_uid = json!({"metadata": {"name": "web", "namespace": "default", "uid": "u9"}});
        assert_eq!(pod_metrics(&other_uid, &summary(), now()), None);
        let elsewhere = json!({"metadata": {"name": "web", "namespace": "other"}});
        assert_eq!(pod_metrics(&elsewhere, &summary(), now()), None);
        assert_eq!(pod_metrics(&fresh, &json!("garbage"), now()), None);
    }

    #[test]
    fn node_metrics_come_from_the_nodes_own_summary() {
        let node = json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}}});
        let m = node_metrics(&node, &summary(), now()).expect("metrics");
        assert_eq!(m["kind"], "NodeMetrics");
        assert_eq!(m["usage"], json!({"cpu": "250000000n", "memory": "3Gi"}));
        assert_eq!(m["timestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(m["window"], "10s");
        assert_eq!(m["metadata"]["labels"]["kubernetes.io/hostname"], "n1");
        assert!(m["metadata"].get("namespace").is_none());
        let other = json!({"metadata": {"name": "n2"}});
        assert_eq!(node_metrics(&other, &summary(), now()), None);
    }

    #[test]
    fn quantities_use_the_largest_exact_binary_suffix() {
        assert_eq!(binary_quantity(0), "0");
        assert_eq!(binary_quantity(1023), "1023");
        assert_eq!(binary_quantity(1536), "1536");
        assert_eq!(binary_quantity(2048), "2Ki");
        assert_eq!(binary_quantity(5 << 20), "5Mi");
        assert_eq!(binary_quantity(1 << 60), "1024Pi");
    }

    #[test]
    fn discovery_lists_nodes_and_pods_with_get_and_list() {
        let list = resource_list();
        assert_eq!(list["groupVersion"], "metrics.k8s.io/v1beta1");
        assert_eq!(list["resources"][0]["name"], "nodes");
        assert_eq!(list["resources"][1]["namespaced"], true);
        assert_eq!(list["resources"][1]["verbs"], json!(["get", "list"]));
        let agg = aggregated_version();
        assert_eq!(agg["resources"][1]["responseKind"]["kind"], "PodMetrics");
        assert_eq!(api_group()["preferredVersion"]["version"], "v1beta1");
    }
}
