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
//! The decision is [`Plan`]'s (pure); the reconcile reads pods, nodes, namespaces, claims,
//! volumes and classes from watch caches, so a new pod is bound as soon as its watch event
//! arrives, and every pending pod is looked at again when a node or a bound pod changes (a
//! deleted pod frees its node's resources, a new one may satisfy an affinity). Decisions are
//! made one at a time, and a pod bound but not yet seen bound in the cache counts as placed
//! (upstream's "assumed" pods), so two pods never take the same room. Likewise a
//! preemption's nomination and victims are remembered until the preemptor is bound or gone:
//! a decision made on a copy of the pod that does not show them yet does not preempt again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
    PodCondition, Service,
};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use tokio::sync::Mutex;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use storage_controllers::volumebinding::ANN_SELECTED_NODE;

use crate::misfit::{Misfit, NoFit};
use crate::preemption::{self, Candidate, Nomination};
use crate::schedule::Plan;
use crate::snapshot::Snapshot;
use crate::spread;
use crate::volumefit::{self, ClaimState};

const COMPONENT: &str = "default-scheduler";
/// A pod that fits nowhere is tried again this often even without a node or pod event.
const UNSCHEDULABLE_RETRY: Duration = Duration::from_secs(10);
/// A pod waiting for its claims to bind is looked at again this often even without a claim
/// event (upstream's PreBind gives up after a while and schedules the pod anew).
const BINDING_WAIT: Duration = Duration::from_secs(30);
/// How soon a pod that gave way to a higher-priority one is looked at again.
const QUEUE_WAIT: Duration = Duration::from_millis(200);

/// Pods bound by this scheduler that the pod cache does not show bound yet: node by pod uid.
type Assumed = HashMap<String, String>;

/// This scheduler's own decisions that its pod cache may not show yet.
#[derive(Default)]
struct Decisions {
    assumed: Assumed,
    /// Preemptions carried out, by preemptor uid, until the preemptor is bound or gone.
    nominated: HashMap<String, Nomination>,
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    nodes: Store<Node>,
    namespaces: Store<Namespace>,
    /// What selects a pod, for the default spreading.
    services: Store<Service>,
    replicasets: Store<ReplicaSet>,
    statefulsets: Store<StatefulSet>,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    /// The budgets preemption tries not to break.
    budgets: Store<PodDisruptionBudget>,
    recorder: Recorder,
    /// Held for a whole decision, so decisions happen one at a time.
    decisions: Mutex<Decisions>,
}

fn pending(pods: &Store<Pod>) -> Vec<ObjectRef<Pod>> {
    pods.state()
        .into_iter()
        .filter(|p| needs_scheduling(p))
        .map(|p| ObjectRef::from_obj(&*p))
        .collect()
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
    // Bound pods that appear, change or go: what they hold or match changes for the rest.
    let bound_events = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .touched_objects();
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_events = reflector::reflector(
        namespace_writer,
        watcher(
            Api::<Namespace>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (services, service_writer) = reflector::store();
    let service_events = reflector::reflector(
        service_writer,
        watcher(
            Api::<Service>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (replicasets, replicaset_writer) = reflector::store();
    let replicaset_events = reflector::reflector(
        replicaset_writer,
        watcher(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (statefulsets, statefulset_writer) = reflector::store();
    let statefulset_events = reflector::reflector(
        statefulset_writer,
        watcher(
            Api::<StatefulSet>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
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
    let (budgets, budget_writer) = reflector::store();
    let budget_events = reflector::reflector(
        budget_writer,
        watcher(
            Api::<PodDisruptionBudget>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let for_nodes = pod_cache.clone();
    let for_bound = pod_cache.clone();
    let claimants = pod_cache.clone();
    let claimants_too = pod_cache.clone();
    // A node that appears, turns Ready or changes its taints, labels or allocatable may take
    // the waiting pods, and so may a node freed by a pod that goes; a claim that appears or
    // binds (or its volume) may release the pods that use it.
    let controller = pods
        .watches_stream(node_events, move |_node: Node| pending(&for_nodes))
        .watches_stream(bound_events, move |pod: Pod| {
            let bound = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
            if bound.is_some_and(|n| !n.is_empty()) {
                pending(&for_bound)
            } else {
                Vec::new()
            }
        })
        .watches_stream(namespace_events, |_ns: Namespace| Vec::new())
        // These only steer the scores; their stores must just stay current.
        .watches_stream(service_events, |_svc: Service| Vec::new())
        .watches_stream(replicaset_events, |_rs: ReplicaSet| Vec::new())
        .watches_stream(statefulset_events, |_ss: StatefulSet| Vec::new())
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
        .watches_stream(class_events, |_sc: StorageClass| Vec::new())
        .watches_stream(budget_events, |_pdb: PodDisruptionBudget| Vec::new());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods: pod_cache,
        nodes,
        namespaces,
        services,
        replicasets,
        statefulsets,
        claims,
        volumes,
        classes,
        budgets,
        decisions: Mutex::new(Decisions::default()),
    });
    controller_base::runner::drive("scheduler", controller, ctx, reconcile).boxed()
}

/// The cached pods with the assumed ones shown bound; assumptions and nominations the cache
/// has caught up with (the pod is bound or gone) are dropped.
fn with_assumed(pods: Vec<Arc<Pod>>, decisions: &mut Decisions) -> Vec<Arc<Pod>> {
    let by_uid: HashMap<String, &Arc<Pod>> = pods
        .iter()
        .filter_map(|p| p.metadata.uid.clone().map(|u| (u, p)))
        .collect();
    let waiting = |uid: &String| by_uid.get(uid).is_some_and(|p| needs_scheduling(p));
    decisions.assumed.retain(|uid, _| waiting(uid));
    decisions.nominated.retain(|uid, _| waiting(uid));
    pods.iter()
        .map(|p| {
            let uid = p.metadata.uid.as_deref().unwrap_or("");
            match decisions.assumed.get(uid) {
                Some(node) => {
                    let mut placed = (**p).clone();
                    if let Some(spec) = placed.spec.as_mut() {
                        spec.node_name = Some(node.clone());
                    }
                    Arc::new(placed)
                }
                None => p.clone(),
            }
        })
        .collect()
}

/// Pending pods nominated for a node after preemption (in their status or in `recorded`),
/// of at least `pod`'s priority, shown placed there: the room their victims leave is theirs,
/// not a lower pod's (upstream's nominated pods in the filters).
fn with_nominated(
    pods: Vec<Arc<Pod>>,
    pod: &Pod,
    recorded: &HashMap<String, Nomination>,
) -> Vec<Arc<Pod>> {
    let mine = preemption::priority(pod);
    pods.into_iter()
        .map(|p| {
            let uid = p.metadata.uid.as_deref().unwrap_or("");
            let nominated = preemption::nominated_node(&p)
                .or(recorded.get(uid).map(|n| n.node.as_str()))
                .filter(|_| needs_scheduling(&p) && p.metadata.uid != pod.metadata.uid)
                .filter(|_| preemption::priority(&p) >= mine)
                .map(str::to_string);
            match nominated {
                Some(node) => {
                    let mut placed = (*p).clone();
                    if let Some(spec) = placed.spec.as_mut() {
                        spec.node_name = Some(node);
                    }
                    Arc::new(placed)
                }
                None => p,
            }
        })
        .collect()
}

/// The scheduling queue's order: a pod waits while a pod of higher priority that was never
/// tried is pending (its own event brings it to a decision first).
fn higher_untried(pods: &[Arc<Pod>], pod: &Pod) -> bool {
    let mine = preemption::priority(pod);
    pods.iter().any(|p| {
        needs_scheduling(p)
            && p.metadata.uid != pod.metadata.uid
            && preemption::priority(p) > mine
            && !p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "PodScheduled")
    })
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !needs_scheduling(&pod) {
        return Ok(Action::await_change());
    }
    ctx.nodes
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("node", e))?;
    ctx.namespaces
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("namespace", e))?;
    ctx.services
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("service", e))?;
    ctx.replicasets
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("replicaset", e))?;
    ctx.statefulsets
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("statefulset", e))?;
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
    ctx.budgets
        .wait_until_ready()
        .await
        .map_err(|e| Error::Cache("poddisruptionbudget", e))?;
    let mut decisions = ctx.decisions.lock().await;
    let pods = with_assumed(ctx.pods.state(), &mut decisions);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if decisions.assumed.contains_key(&uid) {
        // Bound already; the pod's watch event is on its way.
        return Ok(Action::await_change());
    }
    if higher_untried(&pods, &pod) {
        return Ok(Action::requeue(QUEUE_WAIT));
    }
    let pods = with_nominated(pods, &pod, &decisions.nominated);
    let nodes = ctx.nodes.state();
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let states = match volumefit::pod_claims(&pod, &ctx.claims.state(), &ctx.classes.state()) {
        Ok(states) => states,
        Err(reason) => {
            drop(decisions);
            let no_fit = NoFit::Unresolvable {
                nodes: nodes.len(),
                reason,
            };
            mark_unschedulable(&ctx, &pod, &no_fit.to_string()).await?;
            return Ok(Action::requeue(UNSCHEDULABLE_RETRY));
        }
    };
    let volumes = ctx.volumes.state();
    let volume_fit = |n: &Node| volumefit::fits(&states, &volumes, n).map_err(Misfit::from);
    let snapshot = Snapshot::new(&nodes, &pods, &ctx.namespaces.state());
    let default_spread = spread::default_selector(
        &pod,
        &ctx.services.state(),
        &ctx.replicasets.state(),
        &ctx.statefulsets.state(),
    );
    let plan = Plan::new(&pod, &snapshot, default_spread.as_ref());
    // A pod whose claims already name a node keeps it while it fits.
    let kept = volumefit::selected_node(&states).filter(|chosen| plan.fits(chosen, &volume_fit));
    let chosen = match kept {
        Some(node) => Ok(node),
        None => plan.choose(&volume_fit),
    };
    match chosen {
        Ok(node) if volumefit::any_waiting(&states) => {
            drop(decisions);
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
                    decisions.assumed.insert(uid, node.clone());
                    drop(decisions);
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
            let outcome = match preemption::eligible(&pod, &snapshot, decisions.nominated.get(&uid))
            {
                Err(not) => Err(not.to_string()),
                Ok(()) => preemption::find(
                    &pod,
                    &snapshot,
                    |info| match plan.filter(info, &volume_fit) {
                        Ok(()) => true,
                        Err(misfits) => misfits.iter().any(Misfit::preemption_may_help),
                    },
                    |trial, node| {
                        Plan::new(&pod, trial, default_spread.as_ref()).fits(node, &volume_fit)
                    },
                    &ctx.budgets.state(),
                )
                .map_err(|none| none.to_string()),
            };
            match outcome {
                Ok(candidate) => {
                    // Recorded before anything is written, so no later decision acts on a
                    // cache that shows neither the nomination nor the victims going.
                    decisions.nominated.insert(
                        uid,
                        Nomination {
                            node: candidate.node.clone(),
                            victims: candidate
                                .victims
                                .iter()
                                .filter_map(|v| v.metadata.uid.clone())
                                .collect(),
                        },
                    );
                    drop(decisions);
                    mark_unschedulable(&ctx, &pod, &no_fit.to_string()).await?;
                    preempt(&ctx, &pod, &candidate).await?;
                }
                // Nothing to preempt for a pod that cannot fit anywhere for other reasons.
                Err(_) if matches!(no_fit, NoFit::NoNodes) => {
                    drop(decisions);
                    mark_unschedulable(&ctx, &pod, &no_fit.to_string()).await?;
                }
                Err(why) => {
                    drop(decisions);
                    let msg = format!("{no_fit} preemption: {why}");
                    mark_unschedulable(&ctx, &pod, &msg).await?;
                }
            }
            Ok(Action::requeue(UNSCHEDULABLE_RETRY))
        }
    }
}

/// Carries a preemption out: the preemptor is nominated for the node (so the room is kept
/// for it), and each victim gets the `DisruptionTarget` condition, a `Preempted` event and a
/// delete with its own grace period.
async fn preempt(ctx: &Ctx, pod: &Pod, candidate: &Candidate) -> Result<(), Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let nominate = serde_json::json!({"status": {"nominatedNodeName": candidate.node}});
    match pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&nominate))
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(Error::api(format!("nominating pod {ns}/{name}"))(e)),
    }
    let preemptor = pod.metadata.uid.clone().unwrap_or_default();
    for victim in &candidate.victims {
        let vns = victim.namespace().unwrap_or_default();
        let vname = victim.name_any();
        let api = Api::<Pod>::namespaced(ctx.client.clone(), &vns);
        let condition = serde_json::json!({"status": {"conditions": [{
            "type": "DisruptionTarget",
            "status": "True",
            "reason": preemption::DISRUPTION_REASON,
            "message": format!("{COMPONENT}: preempting to accommodate a higher priority pod"),
            "lastTransitionTime": Timestamp::now().to_string(),
        }]}});
        let gone = |e: &kube::Error| is_not_found(e);
        match api
            .patch_status(
                &vname,
                &PatchParams::default(),
                &Patch::Strategic(&condition),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(Error::api(format!("marking victim {vns}/{vname}"))(e)),
        }
        let msg = format!("Preempted by pod {preemptor} on node {}", candidate.node);
        ctx.recorder
            .record(&**victim, EventType::Normal, "Preempted", &msg)
            .await?;
        match api.delete(&vname, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if gone(&e) => {}
            Err(e) => return Err(Error::api(format!("preempting pod {vns}/{vname}"))(e)),
        }
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn assumed_pods_count_as_bound_until_the_cache_catches_up() {
        let pending = Arc::new(pod(
            json!({"metadata": {"uid": "u1"}, "spec": {"containers": []}}),
        ));
        let other = Arc::new(pod(
            json!({"metadata": {"uid": "u2"}, "spec": {"containers": []}}),
        ));
        let nomination = Nomination {
            node: "n1".into(),
            victims: Vec::new(),
        };
        let mut decisions = Decisions {
            assumed: Assumed::from([
                ("u1".to_string(), "n1".to_string()),
                ("gone".to_string(), "n1".to_string()),
            ]),
            nominated: HashMap::from([
                ("u2".to_string(), nomination.clone()),
                ("gone".to_string(), nomination),
            ]),
        };
        let seen = with_assumed(vec![pending.clone(), other.clone()], &mut decisions);
        let nodes: Vec<Option<&str>> = seen
            .iter()
            .map(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()))
            .collect();
        assert_eq!(nodes, vec![Some("n1"), None]);
        assert_eq!(decisions.assumed.len(), 1);
        assert_eq!(decisions.nominated.len(), 1);
        // Once the cache shows the pods bound, the assumption and the nomination go.
        let bound = |uid: &str| {
            Arc::new(pod(json!({"metadata": {"uid": uid},
                "spec": {"nodeName": "n1", "containers": []}})))
        };
        with_assumed(vec![bound("u1"), bound("u2")], &mut decisions);
        assert!(decisions.assumed.is_empty());
        assert!(decisions.nominated.is_empty());
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
