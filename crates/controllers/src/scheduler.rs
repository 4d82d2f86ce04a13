//! The scheduler (kube-scheduler's job): binds each pod without a node to a fitting Ready
//! node through the `pods/binding` subresource and records the `Scheduled` event; a pod that
//! fits nowhere gets `PodScheduled=False/Unschedulable` and one `FailedScheduling` event per
//! distinct reason, and is tried again when a node changes.
//!
//! The filter (`fits`) and the choice (`choose_node`: the fitting node with the fewest pods)
//! are pure; the reconcile reads pods and nodes from watch caches, so a new pod is bound as
//! soon as its watch event arrives.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod, PodCondition, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::nodefit;

const COMPONENT: &str = "default-scheduler";
/// A pod that fits nowhere is tried again this often even without a node event.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(10);

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    recorder: Recorder,
}

pub fn run(client: Client) -> BoxFuture<'static, ()> {
    let pods = Controller::new(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let pod_cache = pods.store();
    let (nodes, node_writer) = reflector::store();
    let node_events = reflector::reflector(
        node_writer,
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .applied_objects();
    let pending = pod_cache.clone();
    // A node that appears, turns Ready or changes its taints may take the waiting pods.
    let controller = pods.watches_stream(node_events, move |_node: Node| {
        pending
            .state()
            .into_iter()
            .filter(|p| needs_scheduling(p))
            .map(|p| ObjectRef::from_obj(&*p))
            .collect::<Vec<_>>()
    });
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods: pod_cache,
        nodes,
    });
    controller_base::runner::drive("scheduler", controller, ctx, reconcile).boxed()
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !needs_scheduling(&pod) {
        return Ok(Action::await_change());
    }
    ctx.nodes
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("node", e))?;
    let nodes = ctx.nodes.state();
    let pods = ctx.pods.state();
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    match choose_node(&pod, &nodes, &pods) {
        Ok(node) => {
            let binding = Binding {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(ns.clone()),
                    ..Default::default()
                },
                target: ObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Node".into()),
                    name: Some(node.clone()),
                    ..Default::default()
                },
            };
            let bound: Result<serde_json::Value, kube::Error> =
                Api::<Pod>::namespaced(ctx.client.clone(), &ns)
                    .create_subresource("binding", &name, &PostParams::default(), &binding)
                    .await;
            match bound {
                Ok(_) => {
                    let msg = format!("Successfully assigned {ns}/{name} to {node}");
                    ctx.recorder
                        .record(&*pod, EventType::Normal, "Scheduled", &msg)
                        .await?;
                }
                // Bound or deleted meanwhile: the pod's next watch event shows the new state.
                Err(e) if is_conflict(&e) || is_not_found(&e) => {}
                Err(e) => return Err(Error::api(format!("binding pod {ns}/{name}"))(e)),
            }
            Ok(Action::await_change())
        }
        Err(no_fit) => {
            mark_unschedulable(&ctx, &pod, &no_fit.to_string()).await?;
            Ok(Action::requeue(UNSCHEDULABLE_RETRY))
        }
    }
}

/// PodScheduled=False/Unschedulable plus one FailedScheduling event per distinct message.
async fn mark_unschedulable(ctx: &Ctx, pod: &Pod, msg: &str) -> Result<(), Error> {
    let conditions = pod.status.as_ref().and_then(|s| s.conditions.as_ref());
    let already = conditions.into_iter().flatten().any(|c| {
        c.type_ == "PodScheduled" && c.status == "False" && c.message.as_deref() == Some(msg)
    });
    if already {
        return Ok(());
    }
    let mut new = pod.clone();
    let status = new.status.get_or_insert_with(Default::default);
    let list = status.conditions.get_or_insert_with(Vec::new);
    let cond = PodCondition {
        type_: "PodScheduled".into(),
        status: "False".into(),
        reason: Some("Unschedulable".into()),
        message: Some(msg.to_string()),
        last_transition_time: Some(Time(Timestamp::now())),
        ..Default::default()
    };
    match list.iter_mut().find(|c| c.type_ == cond.type_) {
        Some(c) => *c = cond,
        None => list.push(cond),
    }
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    // The resourceVersion we read makes this an optimistic update: a pod changed meanwhile
    // (bound, deleted) is left alone.
    match Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .replace_status(&name, &PostParams::default(), &new)
        .await
    {
        Ok(written) => {
            ctx.recorder
                .record(&written, EventType::Warning, "FailedScheduling", msg)
                .await
        }
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::api(format!("marking pod {ns}/{name} unschedulable"))(e)),
    }
}

/// Whether the default scheduler must place `pod`: no node yet, not being deleted, not
/// finished, and no other scheduler named.
pub fn needs_scheduling(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let node = spec.and_then(|s| s.node_name.as_deref()).unwrap_or("");
    let scheduler = spec.and_then(|s| s.scheduler_name.as_deref()).unwrap_or("");
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    node.is_empty()
        && pod.metadata.deletion_timestamp.is_none()
        && (scheduler.is_empty() || scheduler == COMPONENT)
        && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// Why a node cannot take a pod, in the scheduler's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
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

/// Why no node takes a pod: kube-scheduler's "0/N nodes are available" message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFit {
    NoNodes,
    /// How many nodes failed each filter, in the order the failures were first seen.
    Misfits {
        nodes: usize,
        counts: Vec<(NodeMisfit, usize)>,
    },
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoFit::NoNodes => f.write_str("no nodes available to schedule pods"),
            NoFit::Misfits { nodes, counts } => {
                let reasons: Vec<String> = counts
                    .iter()
                    .map(|(m, n)| format!("{n} {}", m.text()))
                    .collect();
                write!(f, "0/{nodes} nodes are available: {}.", reasons.join(", "))
            }
        }
    }
}

/// Whether `node` can run `pod` (the scheduler's filter plugins that matter on one machine).
pub fn fits(pod: &Pod, node: &Node) -> Result<(), NodeMisfit> {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return Err(NodeMisfit::NotReady);
    }
    let spec = node.spec.as_ref();
    if spec.and_then(|s| s.unschedulable) == Some(true) {
        return Err(NodeMisfit::Unschedulable);
    }
    let empty = PodSpec::default();
    let pod_spec = pod.spec.as_ref().unwrap_or(&empty);
    if !nodefit::matches_node(pod_spec, node) {
        return Err(NodeMisfit::NodeSelector);
    }
    let filtered = |effect: &str| matches!(effect, "NoSchedule" | "NoExecute");
    if nodefit::untolerated_taint(pod_spec, node, filtered).is_some() {
        return Err(NodeMisfit::Taint);
    }
    Ok(())
}

/// The node for `pod`: the fitting node with the fewest pods.
pub fn choose_node(pod: &Pod, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Result<String, NoFit> {
    if nodes.is_empty() {
        return Err(NoFit::NoNodes);
    }
    let mut counts: Vec<(NodeMisfit, usize)> = Vec::new();
    let mut best: Option<(usize, String)> = None;
    for node in nodes {
        let name = node.name_any();
        match fits(pod, node) {
            Ok(()) => {
                let load = pods
                    .iter()
                    .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
                    .count();
                if best.as_ref().is_none_or(|(l, _)| load < *l) {
                    best = Some((load, name));
                }
            }
            Err(m) => match counts.iter_mut().find(|(k, _)| *k == m) {
                Some((_, n)) => *n += 1,
                None => counts.push((m, 1)),
            },
        }
    }
    match best {
        Some((_, name)) => Ok(name),
        None => Err(NoFit::Misfits {
            nodes: nodes.len(),
            counts,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn node(name: &str, ready: bool) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"disk": "ssd"}}, "spec": {},
                   "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}),
        )
        .expect("node")
    }

    #[test]
    fn chooses_ready_least_loaded_node() {
        let p = pod(json!({"spec": {"containers": []}}));
        let nodes = vec![
            Arc::new(node("a", true)),
            Arc::new(node("b", true)),
            Arc::new(node("c", false)),
        ];
        let pods = vec![Arc::new(pod(
            json!({"spec": {"nodeName": "a", "containers": []}}),
        ))];
        assert_eq!(choose_node(&p, &nodes, &pods), Ok("b".to_string()));
    }

    #[test]
    fn required_node_affinity_pins_daemon_pods() {
        let p = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}}),
        );
        let nodes = vec![Arc::new(node("a", true)), Arc::new(node("b", true))];
        let pods = vec![Arc::new(pod(
            json!({"spec": {"nodeName": "b", "containers": []}}),
        ))];
        assert_eq!(choose_node(&p, &nodes, &pods), Ok("b".to_string()));
    }

    #[test]
    fn explains_why_nothing_fits() {
        let p = pod(json!({"spec": {"nodeSelector": {"disk": "hdd"}, "containers": []}}));
        let nodes = vec![Arc::new(node("a", false)), Arc::new(node("b", true))];
        assert_eq!(
            choose_node(&p, &nodes, &[]).map_err(|e| e.to_string()),
            Err("0/2 nodes are available: 1 node(s) were not ready, 1 node(s) didn't match Pod's node affinity/selector.".to_string())
        );
        assert_eq!(
            choose_node(&p, &[], &[]).map_err(|e| e.to_string()),
            Err("no nodes available to schedule pods".to_string())
        );
    }

    #[test]
    fn taints_need_tolerations() {
        let mut n = node("a", true);
        n.spec = Some(
            serde_json::from_value(
                json!({"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}),
            )
            .expect("spec"),
        );
        assert_eq!(
            fits(&pod(json!({"spec": {"containers": []}})), &n),
            Err(NodeMisfit::Taint)
        );
        let tolerant = pod(
            json!({"spec": {"containers": [], "tolerations": [{"key": "k", "operator": "Equal", "value": "v"}]}}),
        );
        assert_eq!(fits(&tolerant, &n), Ok(()));
        let all = pod(json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}));
        assert_eq!(fits(&all, &n), Ok(()));
    }

    #[test]
    fn only_unbound_live_pods_of_the_default_scheduler_are_scheduled() {
        assert!(needs_scheduling(&pod(json!({"spec": {"containers": []}}))));
        assert!(!needs_scheduling(&pod(
            json!({"spec": {"nodeName": "a", "containers": []}})
        )));
        assert!(!needs_scheduling(&pod(
            json!({"spec": {"schedulerName": "other", "containers": []}})
        )));
        assert!(!needs_scheduling(&pod(
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}, "spec": {"containers": []}})
        )));
        assert!(!needs_scheduling(&pod(
            json!({"spec": {"containers": []}, "status": {"phase": "Failed"}})
        )));
    }
}
