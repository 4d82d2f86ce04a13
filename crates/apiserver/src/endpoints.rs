//! The Endpoints and EndpointSlice controllers of kube-controller-manager, for Services with
//! a selector: which pods back a Service, on which ports, and whether each may take traffic.
//!
//! As upstream: only pods with an IP, not finished, whose labels match the selector count;
//! a Ready pod goes in `subsets[].addresses`, any other in `notReadyAddresses` (or nowhere
//! when it is terminating); EndpointSlices list every such pod with `conditions.ready`, so a
//! pod whose readiness probe fails keeps its slice entry but receives no proxied traffic.
//! `targetPort` is a number or the name of a container port (looked up per pod, so pods may
//! disagree; each distinct port mapping gets its own subset and slice). Services without a
//! selector are left to whoever writes their endpoints.
//!
//! The decision (`desired_*`) is pure and unit-tested; [`reconcile_all`] applies it, woken by
//! pod and service events and a periodic resync.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::{json, Map, Value};
use tokio::task::JoinHandle;

use crate::allocators;
use crate::error::ApiError;
use crate::objects::{labels_of, name_of, DeleteOptions, Registry, Selectors, WriteOptions};

/// The label that ties a slice to its Service, and the manager label of upstream's
/// controller (kubectl and kube-proxy select on both).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// v1.33's endpoints controller labels what it manages (KEP-4974) — and only that is
/// removed when its Service goes.
const ENDPOINTS_MANAGED_BY: &str = "endpoint-controller";

pub fn spawn(registry: Registry) -> JoinHandle<()> {
    tokio::spawn(crate::controllers::run_loop(
        registry,
        &["pods", "services"],
        reconcile_all,
    ))
}

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// (name, port, protocol) of each Service port a pod serves: pods that agree share a
/// subset and a slice.
type PortMapping = Vec<(String, i64, String)>;

/// A pod's part in a Service's endpoints.
#[derive(Debug, Clone, PartialEq)]
struct Member {
    ip: String,
    ready: bool,
    terminating: bool,
    pod: Value,
    /// (name, port, protocol) per Service port this pod serves.
    ports: Vec<(String, i64, String)>,
}

fn pod_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, "/type") == Some("Ready") && str_at(c, "/status") == Some("True"))
}

/// The pod's port for one Service port: `targetPort` as a number, or the container port of
/// that name and protocol (upstream `podutil.FindPort`).
fn resolve_port(pod: &Value, sp: &Value) -> Option<i64> {
    let proto = str_at(sp, "/protocol").unwrap_or("TCP");
    match sp.get("targetPort").or_else(|| sp.get("port")) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(name)) => {
            if let Ok(n) = name.parse::<i64>() {
                return Some(n);
            }
            pod.pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .flat_map(|c| {
                    c.get("ports")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|p| {
                    str_at(p, "/name") == Some(name.as_str())
                        && str_at(p, "/protocol").unwrap_or("TCP") == proto
                })
                .and_then(|p| p.get("containerPort").and_then(Value::as_i64))
        }
        _ => None,
    }
}

fn selector_matches(svc: &Value, pod: &Value) -> bool {
    let Some(sel) = svc.pointer("/spec/selector").and_then(Value::as_object) else {
        return false;
    };
    if sel.is_empty() {
        return false;
    }
    let labels = labels_of(pod);
    sel.iter()
        .all(|(k, v)| labels.get(k).map(String::as_str) == v.as_str())
}

/// The pods backing `svc` among `pods` (same namespace), sorted by IP.
fn members(svc: &Value, pods: &[Value]) -> Vec<Member> {
    let ns = str_at(svc, "/metadata/namespace").unwrap_or("");
    let publish_not_ready = svc
        .pointer("/spec/publishNotReadyAddresses")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let svc_ports: Vec<Value> = svc
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out: Vec<Member> = pods
        .iter()
        .filter(|p| str_at(p, "/metadata/namespace").unwrap_or("") == ns)
        .filter(|p| selector_matches(svc, p))
        .filter(|p| !matches!(str_at(p, "/status/phase"), Some("Succeeded" | "Failed")))
        .filter_map(|p| {
            let ip = str_at(p, "/status/podIP").filter(|s| !s.is_empty())?;
            let ports = svc_ports
                .iter()
                .filter_map(|sp| {
                    Some((
                        str_at(sp, "/name").unwrap_or("").to_string(),
                        resolve_port(p, sp)?,
                        str_at(sp, "/protocol").unwrap_or("TCP").to_string(),
                    ))
                })
                .collect();
            Some(Member {
                ip: ip.to_string(),
                ready: publish_not_ready || pod_ready(p),
                terminating: p.pointer("/metadata/deletionTimestamp").is_some(),
                pod: p.clone(),
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        let ka: Option<std::net::IpAddr> = a.ip.parse().ok();
        let kb: Option<std::net::IpAddr> = b.ip.parse().ok();
        ka.cmp(&kb).then_with(|| a.ip.cmp(&b.ip))
    });
    out
}

fn target_ref(pod: &Value) -> Value {
    json!({
        "kind": "Pod",
        "namespace": str_at(pod, "/metadata/namespace").unwrap_or(""),
        "name": name_of(pod),
        "uid": str_at(pod, "/metadata/uid").unwrap_or(""),
    })
}

fn ports_json(ports: &[(String, i64, String)]) -> Vec<Value> {
    ports
        .iter()
        .map(|(name, port, proto)| {
            let mut p = Map::new();
            if !name.is_empty() {
                p.insert("name".into(), json!(name));
            }
            p.insert("port".into(), json!(port));
            p.insert("protocol".into(), json!(proto));
            Value::Object(p)
        })
        .collect()
}

fn is_headless(svc: &Value) -> bool {
    str_at(svc, "/spec/clusterIP") == Some("None")
}

/// Service labels carried over, plus upstream's headless marker.
fn derived_labels(svc: &Value) -> Map<String, Value> {
    let mut labels: Map<String, Value> = svc
        .pointer("/metadata/labels")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if is_headless(svc) {
        labels.insert("service.kubernetes.io/headless".into(), json!(""));
    }
    labels
}

/// The `subsets` of the Service's Endpoints (empty when nothing backs it).
pub fn desired_subsets(svc: &Value, pods: &[Value]) -> Vec<Value> {
    let mut groups: BTreeMap<PortMapping, (Vec<Value>, Vec<Value>)> = BTreeMap::new();
    for m in members(svc, pods) {
        // Upstream: a pod that serves none of the ports is skipped; terminating pods leave
        // the Endpoints unless the Service publishes not-ready addresses.
        let publish = svc
            .pointer("/spec/publishNotReadyAddresses")
            .and_then(Value::as_bool)
            == Some(true);
        if m.ports.is_empty() || (m.terminating && !publish) {
            continue;
        }
        let mut addr = Map::new();
        addr.insert("ip".into(), json!(m.ip));
        if let Some(n) = str_at(&m.pod, "/spec/nodeName") {
            addr.insert("nodeName".into(), json!(n));
        }
        addr.insert("targetRef".into(), target_ref(&m.pod));
        let (ready, not_ready) = groups.entry(m.ports.clone()).or_default();
        if m.ready {
            ready.push(Value::Object(addr));
        } else {
            not_ready.push(Value::Object(addr));
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| {
            let mut s = Map::new();
            if !ready.is_empty() {
                s.insert("addresses".into(), Value::Array(ready));
            }
            if !not_ready.is_empty() {
                s.insert("notReadyAddresses".into(), Value::Array(not_ready));
            }
            s.insert("ports".into(), Value::Array(ports_json(&ports)));
            Value::Object(s)
        })
        .collect()
}

/// The (ports, endpoints) of each EndpointSlice the Service should have: one per distinct
/// port mapping, or one empty placeholder when no pod backs it.
pub fn desired_slices(svc: &Value, pods: &[Value]) -> Vec<(Vec<Value>, Vec<Value>)> {
    let mut groups: BTreeMap<PortMapping, Vec<Value>> = BTreeMap::new();
    for m in members(svc, pods) {
        if m.ports.is_empty() && !svc.pointer("/spec/ports").is_none_or(|p| p == &json!([])) {
            continue;
        }
        let serving = pod_ready(&m.pod);
        let mut ep = Map::new();
        ep.insert("addresses".into(), json!([m.ip]));
        ep.insert(
            "conditions".into(),
            json!({"ready": m.ready && !m.terminating, "serving": serving, "terminating": m.terminating}),
        );
        if let Some(n) = str_at(&m.pod, "/spec/nodeName") {
            ep.insert("nodeName".into(), json!(n));
        }
        ep.insert("targetRef".into(), target_ref(&m.pod));
        groups.entry(m.ports).or_default().push(Value::Object(ep));
    }
    if groups.is_empty() {
        return vec![(Vec::new(), Vec::new())];
    }
    groups
        .into_iter()
        .map(|(ports, eps)| (ports_json(&ports), eps))
        .collect()
}

fn write_opts() -> WriteOptions {
    WriteOptions {
        field_validation: crate::request::FieldValidation::Ignore,
        ..Default::default()
    }
}

fn owner_ref(svc: &Value) -> Value {
    json!([{
        "apiVersion": "v1",
        "kind": "Service",
        "name": name_of(svc),
        "uid": str_at(svc, "/metadata/uid").unwrap_or(""),
        "controller": true,
        "blockOwnerDeletion": true,
    }])
}

/// One pass over every Service with a selector.
pub fn reconcile_all(registry: &Registry) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        if let Err(e) = try_reconcile_all(registry).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "endpoints controller pass failed");
        }
    })
}

fn lookup(group: &str, plural: &str) -> Result<&'static api::resources::ResourceInfo, ApiError> {
    api::resources::lookup(group, plural).ok_or(ApiError::PathNotFound)
}

async fn try_reconcile_all(registry: &Registry) -> Result<(), ApiError> {
    let svc_info = lookup("", "services")?;
    let pod_info = lookup("", "pods")?;
    let ep_info = lookup("", "endpoints")?;
    let slice_info = lookup("discovery.k8s.io", "endpointslices")?;
    let all = Selectors::default();
    let (services, _) = registry.list(svc_info, None, &all).await?;
    let (pods, _) = registry.list(pod_info, None, &all).await?;
    let (endpoints, _) = registry.list(ep_info, None, &all).await?;
    let (slices, _) = registry.list(slice_info, None, &all).await?;
    let key = |o: &Value| {
        (
            str_at(o, "/metadata/namespace").unwrap_or("").to_string(),
            name_of(o).to_string(),
        )
    };
    let selected: BTreeMap<(String, String), &Value> = services
        .iter()
        .filter(|s| {
            s.pointer("/spec/selector")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
        })
        .filter(|s| s.pointer("/metadata/deletionTimestamp").is_none())
        .map(|s| (key(s), s))
        .collect();
    let existing: BTreeMap<(String, String), &Value> =
        endpoints.iter().map(|e| (key(e), e)).collect();
    for (k, svc) in &selected {
        let mut result =
            sync_endpoints(registry, ep_info, svc, existing.get(k).copied(), &pods).await;
        if result.is_ok() {
            let mine: Vec<&Value> = slices
                .iter()
                .filter(|s| managed_slice_of(s) == Some((k.0.as_str(), k.1.as_str())))
                .collect();
            result = sync_slices(registry, slice_info, svc, &mine, &pods).await;
        }
        match result {
            // Another writer or a concurrent delete: the next pass sees the new state.
            Ok(()) | Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
            Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    // Upstream deletes the Endpoints of a Service that is gone (and the slice controller its
    // slices; the garbage collector would too, through the owner reference).
    let service_names: Vec<(String, String)> = services.iter().map(key).collect();
    for ep in &endpoints {
        let k = key(ep);
        let owned = str_at(ep, "/metadata/labels/endpoints.kubernetes.io~1managed-by")
            == Some(ENDPOINTS_MANAGED_BY);
        if owned && !service_names.contains(&k) {
            delete_quietly(registry, ep_info, &k.0, &k.1).await?;
        }
    }
    for s in &slices {
        if let Some((ns, svc)) = managed_slice_of(s) {
            if !selected.contains_key(&(ns.to_string(), svc.to_string())) {
                delete_quietly(registry, slice_info, ns, name_of(s)).await?;
            }
        }
    }
    Ok(())
}

async fn delete_quietly(
    registry: &Registry,
    info: &api::resources::ResourceInfo,
    ns: &str,
    name: &str,
) -> Result<(), ApiError> {
    match registry
        .delete(info, Some(ns), name, &DeleteOptions::default())
        .await
    {
        Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// (namespace, service) of a slice this controller manages.
fn managed_slice_of(slice: &Value) -> Option<(&str, &str)> {
    let labels = slice.pointer("/metadata/labels")?;
    if str_at(labels, "/endpointslice.kubernetes.io~1managed-by") != Some(MANAGED_BY) {
        return None;
    }
    Some((
        str_at(slice, "/metadata/namespace")?,
        str_at(labels, "/kubernetes.io~1service-name")?,
    ))
}

async fn sync_endpoints(
    registry: &Registry,
    info: &api::resources::ResourceInfo,
    svc: &Value,
    current: Option<&Value>,
    pods: &[Value],
) -> Result<(), ApiError> {
    let ns = str_at(svc, "/metadata/namespace").unwrap_or("");
    let name = name_of(svc);
    let subsets = desired_subsets(svc, pods);
    let mut labels = derived_labels(svc);
    labels.insert(
        "endpoints.kubernetes.io/managed-by".into(),
        json!(ENDPOINTS_MANAGED_BY),
    );
    let labels = Value::Object(labels);
    let mut body = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
    });
    if !subsets.is_empty() {
        body["subsets"] = Value::Array(subsets);
    }
    match current {
        None => registry
            .create(info, Some(ns), body, &write_opts())
            .await
            .map(|_| ()),
        Some(cur) => {
            let cur_subsets = cur.get("subsets").cloned().unwrap_or(json!(null));
            let want_subsets = body.get("subsets").cloned().unwrap_or(json!(null));
            let cur_labels = cur
                .pointer("/metadata/labels")
                .cloned()
                .unwrap_or(json!({}));
            if cur_subsets == want_subsets && cur_labels == body["metadata"]["labels"] {
                return Ok(());
            }
            if let Some(rv) = cur.pointer("/metadata/resourceVersion") {
                body["metadata"]["resourceVersion"] = rv.clone();
            }
            registry
                .update(info, Some(ns), name, body, false, &write_opts())
                .await
                .map(|_| ())
        }
    }
}

async fn sync_slices(
    registry: &Registry,
    info: &api::resources::ResourceInfo,
    svc: &Value,
    current: &[&Value],
    pods: &[Value],
) -> Result<(), ApiError> {
    let ns = str_at(svc, "/metadata/namespace").unwrap_or("");
    let name = name_of(svc);
    let mut labels = derived_labels(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), json!(name));
    labels.insert(MANAGED_BY_LABEL.into(), json!(MANAGED_BY));
    let mut unused: Vec<&Value> = current.to_vec();
    for (ports, endpoints) in desired_slices(svc, pods) {
        let ports_v = Value::Array(ports);
        // Reuse the slice that already carries these ports, else any spare one.
        let pos = unused
            .iter()
            .position(|s| s.get("ports").cloned().unwrap_or(json!([])) == ports_v)
            .or(if unused.is_empty() { None } else { Some(0) });
        let mut body = json!({
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {"namespace": ns, "labels": labels.clone(),
                         "ownerReferences": owner_ref(svc)},
            "addressType": "IPv4",
            "endpoints": endpoints,
            "ports": ports_v,
        });
        match pos.map(|i| unused.remove(i)) {
            None => {
                body["metadata"]["generateName"] = json!(format!("{name}-"));
                registry.create(info, Some(ns), body, &write_opts()).await?;
            }
            Some(cur) => {
                let same = cur.get("endpoints").cloned().unwrap_or(json!([])) == body["endpoints"]
                    && cur.get("ports").cloned().unwrap_or(json!([])) == body["ports"]
                    && cur.pointer("/metadata/labels") == Some(&body["metadata"]["labels"]);
                if same {
                    continue;
                }
                let slice_name = name_of(cur).to_string();
                body["metadata"]["name"] = json!(slice_name);
                if let Some(rv) = cur.pointer("/metadata/resourceVersion") {
                    body["metadata"]["resourceVersion"] = rv.clone();
                }
                registry
                    .update(info, Some(ns), &slice_name, body, false, &write_opts())
                    .await?;
            }
        }
    }
    for extra in unused {
        delete_quietly(registry, info, ns, name_of(extra)).await?;
    }
    Ok(())
}

/// Start-up work for Services: rebuilds the allocation bitmaps from the stored Services
/// (reclaiming what a crash leaked), then makes sure the `kubernetes` Service (10.96.0.1)
/// and the cluster DNS Service `kube-system/kube-dns` (10.96.0.10) exist, so their
/// addresses are held and visible as in any cluster.
pub async fn bootstrap(registry: &Registry, api_port: u16) -> Result<(), ApiError> {
    let svc_info = lookup("", "services")?;
    let (services, _) = registry.list(svc_info, None, &Selectors::default()).await?;
    allocators::Ranges::default()
        .repair(registry.store.as_ref(), &services)
        .await
        .map_err(|e| match e {
            allocators::AllocError::Store(s) => ApiError::Store(s),
            other => ApiError::bad_request(other.to_string()),
        })?;
    let wanted = [
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kubernetes", "namespace": "default",
                         "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": allocators::KUBERNETES_SERVICE_IP.to_string(),
                     "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": api_port}]}}),
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "kube-dns", "namespace": "kube-system",
                         "labels": {"k8s-app": "kube-dns", "kubernetes.io/name": "peapod-dns",
                                    "kubernetes.io/cluster-service": "true"}},
            "spec": {"clusterIP": allocators::DNS_SERVICE_IP.to_string(),
                     "ports": [{"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                               {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53}]}}),
    ];
    for svc in wanted {
        let ns = str_at(&svc, "/metadata/namespace")
            .unwrap_or("default")
            .to_string();
        match registry
            .create(svc_info, Some(&ns), svc, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            // The address is held by a user's Service: keep going without ours.
            Err(ApiError::Invalid { name, .. }) => {
                tracing::warn!(service = %name, "could not reserve the well-known ClusterIP");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool, labels: Value) -> Value {
        json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"), "labels": labels},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"phase": "Running", "podIP": ip,
                          "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn svc(target: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns", "uid": "s1"},
               "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.20",
                        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}]}})
    }

    #[test]
    fn ready_pods_are_addresses_and_others_not_ready() {
        let pods = vec![
            pod("b", "10.244.0.11", true, json!({"app": "web"})),
            pod("a", "10.244.0.9", false, json!({"app": "web"})),
            pod("c", "10.244.0.12", true, json!({"app": "db"})),
            pod("d", "", true, json!({"app": "web"})),
        ];
        let subsets = desired_subsets(&svc(json!(8080)), &pods);
        assert_eq!(subsets.len(), 1);
        assert_eq!(subsets[0]["addresses"][0]["ip"], "10.244.0.11");
        assert_eq!(subsets[0]["addresses"][0]["targetRef"]["name"], "b");
        assert_eq!(subsets[0]["notReadyAddresses"][0]["ip"], "10.244.0.9");
        assert_eq!(
            subsets[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
    }

    #[test]
    fn named_target_port_resolves_per_pod() {
        let mut other = pod("x", "10.244.0.5", true, json!({"app": "web"}));
        other["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(9090);
        let mut none = pod("y", "10.244.0.6", true, json!({"app": "web"}));
        none["spec"]["containers"][0]["ports"] = json!([]);
        let pods = vec![
            pod("a", "10.244.0.4", true, json!({"app": "web"})),
            other,
            none,
        ];
        let subsets = desired_subsets(&svc(json!("http")), &pods);
        let ports: Vec<i64> = subsets
            .iter()
            .map(|s| s["ports"][0]["port"].as_i64().unwrap_or(0))
            .collect();
        assert_eq!(ports, vec![8080, 9090]);
        let slices = desired_slices(&svc(json!("http")), &pods);
        assert_eq!(slices.len(), 2);
    }

    #[test]
    fn slices_carry_readiness_and_a_placeholder_when_empty() {
        let pods = vec![
            pod("a", "10.244.0.9", false, json!({"app": "web"})),
            pod("b", "10.244.0.10", true, json!({"app": "web"})),
        ];
        let slices = desired_slices(&svc(json!(8080)), &pods);
        assert_eq!(slices.len(), 1);
        let (ports, eps) = &slices[0];
        assert_eq!(ports[0]["port"], 8080);
        assert_eq!(eps[0]["addresses"], json!(["10.244.0.9"]));
        assert_eq!(eps[0]["conditions"]["ready"], false);
        assert_eq!(eps[1]["conditions"]["ready"], true);
        assert_eq!(desired_slices(&svc(json!(80)), &[]), vec![(vec![], vec![])]);
    }

    #[test]
    fn terminating_and_finished_pods_leave() {
        let mut t = pod("t", "10.244.0.7", true, json!({"app": "web"}));
        t["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let mut f = pod("f", "10.244.0.8", false, json!({"app": "web"}));
        f["status"]["phase"] = json!("Succeeded");
        let pods = vec![t, f];
        assert!(desired_subsets(&svc(json!(80)), &pods).is_empty());
        let slices = desired_slices(&svc(json!(80)), &pods);
        assert_eq!(slices[0].1.len(), 1);
        assert_eq!(slices[0].1[0]["conditions"]["terminating"], true);
        assert_eq!(slices[0].1[0]["conditions"]["ready"], false);
    }

    #[test]
    fn selectorless_services_match_nothing() {
        let mut s = svc(json!(80));
        s["spec"]["selector"] = json!({});
        assert!(!selector_matches(
            &s,
            &pod("a", "1.2.3.4", true, json!({"app": "web"}))
        ));
    }
}
