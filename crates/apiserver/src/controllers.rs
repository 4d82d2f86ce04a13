//! In-process controllers of the single-machine control plane: the scheduler (binds pods
//! without a node to a Ready node through the same logic as `pods/binding`, and records the
//! `Scheduled` event) and the namespace controller (empties a terminating namespace, then
//! removes it). Each is a pure decision function plus a loop woken by store events and a
//! periodic resync.

use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::objects::{
    labels_of, name_of, now, set_condition, DeleteOptions, Registry, WriteOptions,
};

/// How often controllers re-check even without events (a node turning Ready after a restart).
const RESYNC: Duration = Duration::from_secs(5);

pub fn spawn(registry: Registry) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(run_loop(registry.clone(), &["pods", "nodes"], schedule_all)),
        tokio::spawn(run_loop(
            registry,
            &["namespaces", "pods"],
            finish_namespaces,
        )),
    ]
}

/// Runs `step` now, after every event on `resources` (core group), and every [`RESYNC`].
pub(crate) async fn run_loop(
    registry: Registry,
    resources: &'static [&'static str],
    step: for<'a> fn(&'a Registry) -> BoxFuture<'a, ()>,
) {
    loop {
        let rv = registry.store.current_resource_version().await.unwrap_or(0);
        let mut watches = Vec::new();
        for r in resources {
            match registry.store.watch("", r, None, rv).await {
                Ok(w) => watches.push(w),
                Err(e) => tracing::warn!(error = %e, "controller watch failed"),
            }
        }
        step(&registry).await;
        loop {
            let next = futures::future::select_all(watches.iter_mut().map(|w| w.next()));
            let broken = tokio::select! {
                (ev, _, _) = next => !matches!(ev, Some(Ok(_))),
                _ = tokio::time::sleep(RESYNC) => false,
            };
            if broken || watches.is_empty() {
                // Re-subscribe from the current state (after a lag or a store error).
                tokio::time::sleep(Duration::from_millis(200)).await;
                break;
            }
            step(&registry).await;
        }
    }
}

fn core(plural: &str) -> Option<&'static api::resources::ResourceInfo> {
    api::resources::lookup("", plural)
}

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// Why a node cannot take a pod, in the scheduler's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMisfit {
    NotReady,
    Unschedulable,
    NodeSelector,
    Taint,
}

impl NodeMisfit {
    fn text(self) -> &'static str {
        match self {
            NodeMisfit::NotReady => "node(s) were not ready",
            NodeMisfit::Unschedulable => "node(s) were unschedulable",
            NodeMisfit::NodeSelector => "node(s) didn't match Pod's node affinity/selector",
            NodeMisfit::Taint => "node(s) had untolerated taint",
        }
    }
}

fn tolerates(pod: &Value, taint: &Value) -> bool {
    let key = str_at(taint, "/key").unwrap_or("");
    let value = str_at(taint, "/value").unwrap_or("");
    let effect = str_at(taint, "/effect").unwrap_or("");
    pod.pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|t| {
            let tk = str_at(t, "/key").unwrap_or("");
            let te = str_at(t, "/effect").unwrap_or("");
            let op = str_at(t, "/operator").unwrap_or("Equal");
            let key_ok = tk.is_empty() && op == "Exists" || tk == key;
            let effect_ok = te.is_empty() || te == effect;
            let value_ok = op == "Exists" || str_at(t, "/value").unwrap_or("") == value;
            key_ok && effect_ok && value_ok
        })
}

/// Whether `node` can run `pod` (the scheduler's filter plugins that matter on one machine).
pub fn fits(pod: &Value, node: &Value) -> Result<(), NodeMisfit> {
    let ready = node
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| str_at(c, "/type") == Some("Ready") && str_at(c, "/status") == Some("True"));
    if !ready {
        return Err(NodeMisfit::NotReady);
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        return Err(NodeMisfit::Unschedulable);
    }
    if let Some(sel) = pod.pointer("/spec/nodeSelector").and_then(Value::as_object) {
        let labels = labels_of(node);
        if sel
            .iter()
            .any(|(k, v)| labels.get(k).map(String::as_str) != v.as_str())
        {
            return Err(NodeMisfit::NodeSelector);
        }
    }
    for taint in node
        .pointer("/spec/taints")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let effect = str_at(taint, "/effect").unwrap_or("");
        if matches!(effect, "NoSchedule" | "NoExecute") && !tolerates(pod, taint) {
            return Err(NodeMisfit::Taint);
        }
    }
    Ok(())
}

/// The node for `pod` (the fitting node with the fewest pods), or the scheduler's
/// "0/N nodes are available" message.
pub fn choose_node(pod: &Value, nodes: &[Value], pods: &[Value]) -> Result<String, String> {
    if nodes.is_empty() {
        return Err("no nodes available to schedule pods".into());
    }
    let mut misfits: Vec<(NodeMisfit, usize)> = Vec::new();
    let mut best: Option<(usize, &str)> = None;
    for node in nodes {
        let name = name_of(node);
        match fits(pod, node) {
            Ok(()) => {
                let load = pods
                    .iter()
                    .filter(|p| str_at(p, "/spec/nodeName") == Some(name))
                    .count();
                if best.is_none_or(|(l, _)| load < l) {
                    best = Some((load, name));
                }
            }
            Err(m) => match misfits.iter_mut().find(|(k, _)| *k == m) {
                Some((_, n)) => *n += 1,
                None => misfits.push((m, 1)),
            },
        }
    }
    if let Some((_, name)) = best {
        return Ok(name.to_string());
    }
    let reasons: Vec<String> = misfits
        .iter()
        .map(|(m, n)| format!("{n} {}", m.text()))
        .collect();
    Err(format!(
        "0/{} nodes are available: {}.",
        nodes.len(),
        reasons.join(", ")
    ))
}

fn needs_scheduling(pod: &Value) -> bool {
    str_at(pod, "/spec/nodeName").is_none_or(str::is_empty)
        && pod.pointer("/metadata/deletionTimestamp").is_none()
        && str_at(pod, "/spec/schedulerName")
            .is_none_or(|s| s.is_empty() || s == "default-scheduler")
        && !matches!(
            str_at(pod, "/status/phase"),
            Some("Succeeded") | Some("Failed")
        )
}

/// Records a core/v1 Event about `obj` (as client-go's recorder does for controllers).
pub async fn record_event(
    registry: &Registry,
    obj: &Value,
    type_: &str,
    reason: &str,
    message: &str,
    component: &str,
) -> Result<(), ApiError> {
    let events = core("events").ok_or(ApiError::PathNotFound)?;
    let ns = str_at(obj, "/metadata/namespace").unwrap_or("default");
    let name = name_of(obj);
    let nanos = jiff::Timestamp::now().as_nanosecond();
    let t = now();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{nanos:x}"), "namespace": ns},
        "involvedObject": {
            "kind": obj.get("kind").cloned().unwrap_or(Value::Null),
            "namespace": ns,
            "name": name,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
            "apiVersion": obj.get("apiVersion").cloned().unwrap_or(Value::Null),
            "resourceVersion": obj.pointer("/metadata/resourceVersion").cloned().unwrap_or(Value::Null),
        },
        "reason": reason,
        "message": message,
        "source": {"component": component},
        "firstTimestamp": t,
        "lastTimestamp": t,
        "count": 1,
        "type": type_,
        "reportingComponent": component,
        "reportingInstance": "",
    });
    let opts = WriteOptions {
        field_validation: crate::request::FieldValidation::Ignore,
        ..Default::default()
    };
    registry
        .create(events, Some(ns), event, &opts)
        .await
        .map(|_| ())
}

/// One scheduling pass over every pending pod.
pub fn schedule_all(registry: &Registry) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        if let Err(e) = try_schedule_all(registry).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "scheduler pass failed");
        }
    })
}

async fn try_schedule_all(registry: &Registry) -> Result<(), ApiError> {
    let (Some(pods_info), Some(nodes_info)) = (core("pods"), core("nodes")) else {
        return Ok(());
    };
    let all = crate::objects::Selectors::default();
    let (pods, _) = registry.list(pods_info, None, &all).await?;
    let (nodes, _) = registry.list(nodes_info, None, &all).await?;
    for pod in pods.iter().filter(|p| needs_scheduling(p)) {
        let ns = str_at(pod, "/metadata/namespace").unwrap_or("");
        let name = name_of(pod);
        match choose_node(pod, &nodes, &pods) {
            Ok(node) => match registry.bind(ns, name, &node, false).await {
                Ok(bound) => {
                    let msg = format!("Successfully assigned {ns}/{name} to {node}");
                    record_event(
                        registry,
                        &bound,
                        "Normal",
                        "Scheduled",
                        &msg,
                        "default-scheduler",
                    )
                    .await?;
                }
                // Bound or deleted meanwhile: the next pass sees the new state.
                Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            },
            Err(msg) => mark_unschedulable(registry, pod, &msg).await?,
        }
    }
    Ok(())
}

/// PodScheduled=False/Unschedulable plus one FailedScheduling event per distinct message.
async fn mark_unschedulable(registry: &Registry, pod: &Value, msg: &str) -> Result<(), ApiError> {
    let already = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| {
            str_at(c, "/type") == Some("PodScheduled")
                && str_at(c, "/status") == Some("False")
                && str_at(c, "/message") == Some(msg)
        });
    if already {
        return Ok(());
    }
    let Some(info) = core("pods") else {
        return Ok(());
    };
    let ns = str_at(pod, "/metadata/namespace").unwrap_or("");
    let mut new = pod.clone();
    set_condition(
        &mut new,
        json!({"type": "PodScheduled", "status": "False", "lastProbeTime": null,
               "lastTransitionTime": now(), "reason": "Unschedulable", "message": msg}),
    );
    match registry
        .update(
            info,
            Some(ns),
            name_of(pod),
            new,
            true,
            &WriteOptions::default(),
        )
        .await
    {
        Ok(w) => {
            record_event(
                registry,
                &w.object,
                "Warning",
                "FailedScheduling",
                msg,
                "default-scheduler",
            )
            .await
        }
        Err(ApiError::Conflict { .. } | ApiError::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// One pass of the namespace controller.
pub fn finish_namespaces(registry: &Registry) -> BoxFuture<'_, ()> {
    Box::pin(async move {
        if let Err(e) = try_finish_namespaces(registry).await {
            tracing::warn!(error = %crate::error::error_chain(&e), "namespace controller pass failed");
        }
    })
}

async fn try_finish_namespaces(registry: &Registry) -> Result<(), ApiError> {
    let Some(ns_info) = core("namespaces") else {
        return Ok(());
    };
    let (namespaces, _) = registry.list(ns_info, None, &Default::default()).await?;
    for ns in namespaces
        .iter()
        .filter(|n| n.pointer("/metadata/deletionTimestamp").is_some())
    {
        let ns_name = name_of(ns);
        let mut remaining = 0usize;
        for info in api::resources::all().iter().filter(|r| r.namespaced) {
            let (items, _) = registry
                .list(info, Some(ns_name), &Default::default())
                .await?;
            for obj in &items {
                remaining += 1;
                if obj.pointer("/metadata/deletionTimestamp").is_some() {
                    continue;
                }
                match registry
                    .delete(info, Some(ns_name), name_of(obj), &DeleteOptions::default())
                    .await
                {
                    Ok(_) | Err(ApiError::NotFound { .. } | ApiError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        if remaining > 0 {
            // Graceful pod deletions and finalizers take their time; check again later.
            continue;
        }
        let mut body = ns.clone();
        if let Some(list) = body
            .pointer_mut("/spec/finalizers")
            .and_then(Value::as_array_mut)
        {
            list.retain(|f| f != "kubernetes");
        }
        match registry.finalize_namespace(ns_name, body, false).await {
            Ok(_) | Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "labels": {"disk": "ssd"}}, "spec": {},
               "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn chooses_ready_least_loaded_node() {
        let pod = json!({"spec": {}});
        let nodes = vec![node("a", true), node("b", true), node("c", false)];
        let pods = vec![json!({"spec": {"nodeName": "a"}})];
        assert_eq!(choose_node(&pod, &nodes, &pods), Ok("b".to_string()));
    }

    #[test]
    fn explains_why_nothing_fits() {
        let pod = json!({"spec": {"nodeSelector": {"disk": "hdd"}}});
        let nodes = vec![node("a", false), node("b", true)];
        assert_eq!(
            choose_node(&pod, &nodes, &[]),
            Err("0/2 nodes are available: 1 node(s) were not ready, 1 node(s) didn't match Pod's node affinity/selector.".to_string())
        );
        assert_eq!(
            choose_node(&pod, &[], &[]),
            Err("no nodes available to schedule pods".to_string())
        );
    }

    #[test]
    fn taints_need_tolerations() {
        let mut n = node("a", true);
        n["spec"]["taints"] = json!([{"key": "k", "value": "v", "effect": "NoSchedule"}]);
        assert_eq!(fits(&json!({"spec": {}}), &n), Err(NodeMisfit::Taint));
        let tolerant =
            json!({"spec": {"tolerations": [{"key": "k", "operator": "Equal", "value": "v"}]}});
        assert_eq!(fits(&tolerant, &n), Ok(()));
        let all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        assert_eq!(fits(&all, &n), Ok(()));
    }
}
