//! The scheduler (kube-scheduler's job): binds each pod without a node to a fitting Ready
//! node through the `pods/binding` subresource and records the `Scheduled` event; a pod that
//! fits nowhere gets `PodScheduled=False/Unschedulable` and one `FailedScheduling` event per
//! distinct reason, and is tried again when a node changes.
//!
//! Pods with PersistentVolumeClaims go through volume binding (`volumefit`): they wait while
//! a claim is missing or unbound in an `Immediate` class, go only to nodes that can reach
//! their volumes, and — for `WaitForFirstConsumer` claims — name the chosen node in each
//! claim and are bound once the claims are.
//!
//! The filter (`fits`) and the choice (`choose_node`: the fitting node with the fewest pods)
//! are pure; the reconcile reads pods, nodes, claims, volumes and classes from watch caches,
//! so a new pod is bound as soon as its watch event arrives.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod, PodCondition,
    PodSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::nodefit;
use storage_controllers::volumebinding::ANN_SELECTED_NODE;

use crate::volumefit::{self, ClaimState, VolumeMisfit};

const COMPONENT: &str = "default-scheduler";
/// A pod that fits nowhere is tried again this often even without a node event.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(10);
/// A pod waiting for its claims to bind is looked at again this often even without a claim
/// event (upstream's PreBind gives up after a while and schedules the pod anew).
const BINDING_WAIT: Duration = Duration::from_secs(30);

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    recorder: Recorder,
}

/// The unscheduled pods of `ns` whose volumes name claim `claim`.
fn pods_using(pods: &Store<Pod>, ns: Option<&str>, claim: Option<&str>) -> Vec<ObjectRef<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| needs_scheduling(p) && p.namespace().as_deref() == ns)
        .filter(|p| {
            p.spec
                .as_ref()
                .and_then(|s| s.volumes.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|v| v.persistent_volume_claim.as_ref())
                .any(|c| Some(c.claim_name.as_str()) == claim)
        })
        .map(|p| ObjectRef::from_obj(&*p))
        .collect()
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
    let (claims, claim_writer) = reflector::store();
    let claim_events = reflector::reflector(
        claim_writer,
        watcher(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (volumes, volume_writer) = reflector::store();
    let volume_events = reflector::reflector(
        volume_writer,
        watcher(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (classes, class_writer) = reflector::store();
    let class_events = reflector::reflector(
        class_writer,
        watcher(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let pending = pod_cache.clone();
    let claimants = pod_cache.clone();
    let claimants_too = pod_cache.clone();
    // A node that appears, turns Ready or changes its taints may take the waiting pods; a
    // claim that appears or binds (or its volume) may release the pods that use it.
    let controller = pods
        .watches_stream(node_events, move |_node: Node| {
            pending
                .state()
                .into_iter()
                .filter(|p| needs_scheduling(p))
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        })
        .watches_stream(claim_events, move |pvc: PersistentVolumeClaim| {
            pods_using(
                &claimants,
                pvc.namespace().as_deref(),
                pvc.metadata.name.as_deref(),
            )
        })
        .watches_stream(volume_events, move |pv: PersistentVolume| {
            let claim = pv.spec.and_then(|s| s.claim_ref);
            match claim {
                Some(r) => pods_using(&claimants_too, r.namespace.as_deref(), r.name.as_deref()),
                None => Vec::new(),
            }
        })
        .watches_stream(class_events, |_sc: StorageClass| Vec::new());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods: pod_cache,
        nodes,
        claims,
        volumes,
        classes,
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
    ctx.claims
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("persistentvolumeclaim", e))?;
    ctx.volumes
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("persistentvolume", e))?;
    ctx.classes
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("storageclass", e))?;
    let nodes = ctx.nodes.state();
    let pods = ctx.pods.state();
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let states = match volumefit::pod_claims(&pod, &ctx.claims.state(), &ctx.classes.state()) {
        Ok(states) => states,
        Err(reason) => {
            let no_fit = NoFit::Unresolvable {
                nodes: nodes.len(),
                reason,
            };
            mark_unschedulable(&ctx, &pod, &no_fit.to_string()).await?;
            return Ok(Action::requeue(UNSCHEDULABLE_RETRY));
        }
    };
    let volumes = ctx.volumes.state();
    let volume_fit = |n: &Node| volumefit::fits(&states, &volumes, n).map_err(NodeMisfit::from);
    // A pod whose claims already name a node keeps it while it fits.
    let kept = volumefit::selected_node(&states).filter(|chosen| {
        nodes
            .iter()
            .any(|n| n.name_any() == *chosen && fits(&pod, n).is_ok() && volume_fit(n).is_ok())
    });
    let chosen = match kept {
        Some(node) => Ok(node),
        None => choose_node(&pod, &nodes, &pods, volume_fit),
    };
    match chosen {
        Ok(node) if volumefit::any_waiting(&states) => {
            select_node(&ctx, &states, &node).await?;
            // The claims' binding (their watch events) brings the pod back to be bound.
            Ok(Action::requeue(BINDING_WAIT))
        }
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

/// Names `node` in each waiting claim of the pod that does not name it yet, for the binder
/// and the provisioner.
async fn select_node(ctx: &Ctx, states: &[ClaimState], node: &str) -> Result<(), Error> {
    for claim in volumefit::to_select(states, node) {
        let ns = claim.namespace().unwrap_or_default();
        let name = claim.name_any();
        let patch = serde_json::json!({"metadata": {"annotations": {ANN_SELECTED_NODE: node}}});
        match Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
            .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                return Err(Error::api(format!(
                    "selecting node {node} for claim {ns}/{name}"
                ))(e))
            }
        }
    }
    Ok(())
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
    VolumeAffinity,
    NoVolume,
}

impl From<VolumeMisfit> for NodeMisfit {
    fn from(m: VolumeMisfit) -> Self {
        match m {
            VolumeMisfit::AffinityConflict => NodeMisfit::VolumeAffinity,
            VolumeMisfit::NoVolume => NodeMisfit::NoVolume,
        }
    }
}

impl NodeMisfit {
    fn text(self) -> &'static str {
        match self {
            NodeMisfit::NotReady => "node(s) were not ready",
            NodeMisfit::Unschedulable => "node(s) were unschedulable",
            NodeMisfit::NodeSelector => "node(s) didn't match Pod's node affinity/selector",
            NodeMisfit::Taint => "node(s) had untolerated taint",
            NodeMisfit::VolumeAffinity => "node(s) had volume node affinity conflict",
            NodeMisfit::NoVolume => "node(s) didn't find available persistent volumes to bind",
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
    /// No node can take the pod whatever it is (a PreFilter rejection: a missing claim).
    Unresolvable {
        nodes: usize,
        reason: String,
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
            NoFit::Unresolvable { nodes, reason } => {
                write!(f, "0/{nodes} nodes are available: {reason}.")
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

/// The node for `pod`: the fitting node (by `fits` and by `volumes`, the pod's volume
/// binding) with the fewest pods.
pub fn choose_node(
    pod: &Pod,
    nodes: &[Arc<Node>],
    pods: &[Arc<Pod>],
    volumes: impl Fn(&Node) -> Result<(), NodeMisfit>,
) -> Result<String, NoFit> {
    if nodes.is_empty() {
        return Err(NoFit::NoNodes);
    }
    let mut counts: Vec<(NodeMisfit, usize)> = Vec::new();
    let mut best: Option<(usize, String)> = None;
    for node in nodes {
        let name = node.name_any();
        match fits(pod, node).and_then(|()| volumes(node)) {
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

    fn no_volumes(_: &Node) -> Result<(), NodeMisfit> {
        Ok(())
    }

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
        assert_eq!(
            choose_node(&p, &nodes, &pods, no_volumes),
            Ok("b".to_string())
        );
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
        assert_eq!(
            choose_node(&p, &nodes, &pods, no_volumes),
            Ok("b".to_string())
        );
    }

    #[test]
    fn explains_why_nothing_fits() {
        let p = pod(json!({"spec": {"nodeSelector": {"disk": "hdd"}, "containers": []}}));
        let nodes = vec![Arc::new(node("a", false)), Arc::new(node("b", true))];
        assert_eq!(
            choose_node(&p, &nodes, &[], no_volumes).map_err(|e| e.to_string()),
            Err("0/2 nodes are available: 1 node(s) were not ready, 1 node(s) didn't match Pod's node affinity/selector.".to_string())
        );
        assert_eq!(
            choose_node(&p, &[], &[], no_volumes).map_err(|e| e.to_string()),
            Err("no nodes available to schedule pods".to_string())
        );
    }

    #[test]
    fn volume_binding_filters_nodes() {
        let p = pod(json!({"spec": {"containers": []}}));
        let nodes = vec![Arc::new(node("a", true)), Arc::new(node("b", true))];
        let only_b = |n: &Node| {
            if n.name_any() == "b" {
                Ok(())
            } else {
                Err(NodeMisfit::VolumeAffinity)
            }
        };
        assert_eq!(choose_node(&p, &nodes, &[], only_b), Ok("b".to_string()));
        let none = |_: &Node| Err(NodeMisfit::NoVolume);
        assert_eq!(
            choose_node(&p, &nodes, &[], none).map_err(|e| e.to_string()),
            Err("0/2 nodes are available: 2 node(s) didn't find available persistent volumes to bind.".to_string())
        );
        let missing = NoFit::Unresolvable {
            nodes: 1,
            reason: "persistentvolumeclaim \"data\" not found".into(),
        };
        assert_eq!(
            missing.to_string(),
            "0/1 nodes are available: persistentvolumeclaim \"data\" not found."
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
