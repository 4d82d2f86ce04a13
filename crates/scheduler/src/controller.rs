//! The scheduler (kube-scheduler's job): binds each pod without a node to a fitting Ready
//! node through the `pods/binding` subresource and records the `Scheduled` event; a pod that
//! fits nowhere gets `PodScheduled=False/Unschedulable` and one `FailedScheduling` event per
//! distinct reason, and waits in the [`queue`](crate::queue) for a cluster event that may
//! cure its rejection.
//!
//! Pods with PersistentVolumeClaims go through volume binding (`volumefit`): they wait while
//! a claim is missing or unbound in an `Immediate` class, go only to nodes that can reach
//! their volumes, and — for `WaitForFirstConsumer` claims — name the chosen node in each
//! claim and are bound once the claims are.
//!
//! The decision is [`Plan`]'s (pure). Watches keep caches of pods, nodes, namespaces, claims,
//! volumes, classes and what steers the scores, and turn their changes into queue work: an
//! unscheduled pod joins the queue, a node that appears or changes (labels, taints,
//! readiness, `unschedulable`, allocatable), a bound pod that comes, changes or goes, or a
//! claim that binds moves the parked pods it may help. One loop pops the queue and decides
//! for one pod at a time; a pod bound but not yet seen bound in the cache counts as placed
//! (upstream's "assumed" pods), so two pods never take the same room. Likewise a
//! preemption's nomination and victims are remembered until the preemptor is bound or gone:
//! a decision made on a copy of the pod that does not show them yet does not preempt again.

use controller_base::informer::Change;
use controller_base::Shared;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
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
use kube::runtime::reflector::{self, store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde::de::DeserializeOwned;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use storage_controllers::volumebinding::ANN_SELECTED_NODE;

use crate::misfit::{Misfit, NoFit};
use crate::preemption::{self, Candidate, Nomination};
use crate::queue::{
    ClusterEvent, NodeChange, Placed, Plugin, Queue, BACKOFF_WINDOW, LEFTOVER_FLUSH,
};
use crate::resources;
use crate::schedule::Plan;
use crate::snapshot::{self, Snapshot};
use crate::spread;
use crate::volumefit::{self, ClaimState};

const COMPONENT: &str = "default-scheduler";

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
}

/// What one attempt at a pod came to.
enum Outcome {
    /// Bound, or nothing left to decide (bound or gone meanwhile).
    Done,
    /// No node took the pod; these filters turned it down.
    Rejected(BTreeSet<Plugin>),
}

/// The filters behind a `NoFit`; none when there are no nodes at all (upstream treats that
/// as an error, retried after backoff).
fn rejectors(no_fit: &NoFit) -> BTreeSet<Plugin> {
    match no_fit {
        NoFit::NoNodes => BTreeSet::new(),
        NoFit::Misfits { reasons, .. } => reasons.iter().map(Plugin::of).collect(),
        NoFit::Unresolvable { .. } => BTreeSet::from([Plugin::VolumeBinding]),
    }
}

/// Follows one kind's watch into `writer`'s store, calling `on_event` with each event before
/// the store takes it (so the store still shows the old object).
async fn follow<K>(
    api: Api<K>,
    mut writer: Writer<K>,
    mut on_event: impl FnMut(&Store<K>, &watcher::Event<K>),
) where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let store = writer.as_reader();
    let mut events = controller_base::cache::watch(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                on_event(&store, &event);
                writer.apply_watcher_event(&event);
            }
            Err(e) => tracing::warn!(component = COMPONENT, error = %e, "watch failed"),
        }
    }
}

/// A store whose watch only has to keep it current.
fn cached<K>(client: &Client) -> (Store<K>, BoxFuture<'static, ()>)
where
    K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
    K: Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let watch = follow(Api::<K>::all(client.clone()), writer, |_, _| ()).boxed();
    (store, watch)
}

/// A watch event's object and whether it is a deletion; `None` for the markers of a list.
fn object_of<K>(event: &watcher::Event<K>) -> Option<(&K, bool)> {
    match event {
        watcher::Event::Apply(obj) | watcher::Event::InitApply(obj) => Some((obj, false)),
        watcher::Event::Delete(obj) => Some((obj, true)),
        watcher::Event::Init | watcher::Event::InitDone => None,
    }
}

/// Tells `queue` of a re-list after the first (deletions during a broken watch are not
/// seen one by one).
fn relisted(queue: &Queue, first_list_done: &mut bool) {
    if std::mem::replace(first_list_done, true) {
        queue.update(|q, now| q.on_event(ClusterEvent::Resync, now));
    }
}

/// Pods: the unscheduled ones join or leave the queue; bound ones that come, change or go
/// are cluster events for the parked pods.
fn on_pod_event(queue: &Queue, change: &Change<Pod>) {
    // A deleted pod's last state stands for what the cache held.
    let (pod, old, deleted) = match change {
        Change::Applied { old, new } => (new, old.as_ref(), false),
        Change::Deleted(pod) => (pod, Some(pod), true),
        Change::Listed => return,
    };
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if !deleted && needs_scheduling(pod) {
        let pod = pod.clone();
        queue.update(|q, now| q.add_or_update(pod, now));
    } else {
        queue.update(|q, _| {
            q.delete(&uid);
            false
        });
    }
    let holds_node = |p: &Pod| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
        node.is_some_and(|n| !n.is_empty()) && snapshot::is_active(p)
    };
    let held = old.is_some_and(|p| holds_node(p));
    let holds = !deleted && holds_node(pod);
    let event = match (held, holds) {
        (false, true) => Some(ClusterEvent::AssignedPodAdd),
        (true, false) => Some(ClusterEvent::AssignedPodDelete),
        (true, true) => {
            let old = old.unwrap_or(pod);
            let requests = |p: &Pod| {
                p.spec
                    .as_ref()
                    .map(|s| resources::pod_requests(s, resources::Requests::Declared))
            };
            if old.metadata.labels != pod.metadata.labels {
                Some(ClusterEvent::AssignedPodAdd)
            } else if requests(old) != requests(pod) {
                Some(ClusterEvent::AssignedPodResize)
            } else {
                None
            }
        }
        (false, false) => None,
    };
    if let Some(event) = event {
        queue.update(|q, now| q.on_event(event, now));
    }
}

/// The Ready condition's status.
fn ready(node: &Node) -> Option<&str> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status.as_str())
}

/// What changed on a node between two versions, as far as the filters look.
fn node_change(old: &Node, new: &Node) -> NodeChange {
    let spec = |n: &Node| n.spec.clone().unwrap_or_default();
    let allocatable = |n: &Node| n.status.as_ref().and_then(|s| s.allocatable.clone());
    NodeChange {
        labels: old.metadata.labels != new.metadata.labels,
        taints: spec(old).taints != spec(new).taints || ready(old) != ready(new),
        unschedulable: spec(old).unschedulable.unwrap_or(false)
            != spec(new).unschedulable.unwrap_or(false),
        allocatable: allocatable(old) != allocatable(new),
    }
}

fn on_node_event(queue: &Queue, nodes: &Store<Node>, event: &watcher::Event<Node>) {
    let Some((node, deleted)) = object_of(event) else {
        return;
    };
    let old = nodes.get(&ObjectRef::from_obj(node));
    let event = match (old, deleted) {
        (Some(_), true) => ClusterEvent::NodeDelete,
        (None, true) => return,
        (None, false) => ClusterEvent::NodeAdd,
        (Some(old), false) => {
            let change = node_change(&old, node);
            if !change.any() {
                return;
            }
            ClusterEvent::NodeUpdate(change)
        }
    };
    queue.update(|q, now| q.on_event(event, now));
}

/// Runs the scheduler until the future is dropped: the watches feed the caches and the
/// queue, a timer flushes backoffQ and the long-unschedulable pods, and one loop takes the
/// pods from the queue and decides for them one at a time.
pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = controller_base::useragent::named(&shared.client, "kube-scheduler");
    let queue = Arc::new(Queue::default());
    let mut watches: Vec<BoxFuture<'static, ()>> = Vec::new();

    let pods = shared.pods.store();
    let (q, mut listed) = (queue.clone(), false);
    watches.push(
        shared
            .pods
            .subscribe()
            .for_each(move |change| {
                if matches!(change, Change::Listed) {
                    relisted(&q, &mut listed);
                }
                on_pod_event(&q, &change);
                futures::future::ready(())
            })
            .boxed(),
    );
    let (nodes, node_writer) = reflector::store();
    let (q, mut listed) = (queue.clone(), false);
    watches.push(
        follow(
            Api::<Node>::all(client.clone()),
            node_writer,
            move |store, event| {
                if matches!(event, watcher::Event::InitDone) {
                    relisted(&q, &mut listed);
                }
                on_node_event(&q, store, event);
            },
        )
        .boxed(),
    );
    let (namespaces, namespace_writer) = reflector::store();
    let q = queue.clone();
    watches.push(
        follow(
            Api::<Namespace>::all(client.clone()),
            namespace_writer,
            move |store, event| {
                let Some((ns, deleted)) = object_of(event) else {
                    return;
                };
                let old = store.get(&ObjectRef::from_obj(ns));
                let relabeled = old.is_none_or(|o| o.metadata.labels != ns.metadata.labels);
                if !deleted && relabeled {
                    q.update(|q, now| q.on_event(ClusterEvent::Namespace, now));
                }
            },
        )
        .boxed(),
    );
    // A claim, volume or class that appears or changes may release the pods waiting for
    // volumes.
    fn storage<K>(client: &Client, queue: &Arc<Queue>) -> (Store<K>, BoxFuture<'static, ()>)
    where
        K: kube::Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
        K: Send + Sync + 'static,
    {
        let (store, writer) = reflector::store();
        let q = queue.clone();
        let watch = follow(Api::<K>::all(client.clone()), writer, move |_, event| {
            if object_of(event).is_some_and(|(_, deleted)| !deleted) {
                q.update(|q, now| q.on_event(ClusterEvent::Storage, now));
            }
        })
        .boxed();
        (store, watch)
    }
    let (claims, watch) = storage::<PersistentVolumeClaim>(&client, &queue);
    watches.push(watch);
    let (volumes, watch) = storage::<PersistentVolume>(&client, &queue);
    watches.push(watch);
    let (classes, watch) = storage::<StorageClass>(&client, &queue);
    watches.push(watch);
    // These only steer the scores and preemption.
    let (services, watch) = cached::<Service>(&client);
    watches.push(watch);
    let (replicasets, watch) = cached::<ReplicaSet>(&client);
    watches.push(watch);
    let (statefulsets, watch) = cached::<StatefulSet>(&client);
    watches.push(watch);
    let (budgets, watch) = cached::<PodDisruptionBudget>(&client);
    watches.push(watch);

    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods,
        nodes,
        namespaces,
        services,
        replicasets,
        statefulsets,
        claims,
        volumes,
        classes,
        budgets,
    });
    watches.push(flush(queue.clone()).boxed());
    watches.push(schedule_loop(ctx, queue).boxed());
    futures::future::join_all(watches).map(|_| ()).boxed()
}

/// Once a backoff window, moves the pods whose backoff is over to activeQ; every
/// [`LEFTOVER_FLUSH`], the pods parked too long.
async fn flush(queue: Arc<Queue>) {
    let mut ticks = tokio::time::interval(BACKOFF_WINDOW);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let per_leftover = (LEFTOVER_FLUSH.as_secs() / BACKOFF_WINDOW.as_secs()).max(1);
    let mut n: u64 = 0;
    loop {
        ticks.tick().await;
        n = n.wrapping_add(1);
        queue.update(|q, now| q.flush_backoff_completed(now));
        if n.is_multiple_of(per_leftover) {
            queue.update(|q, now| q.flush_unschedulable_leftover(now));
        }
    }
}

/// Takes the pods from the queue one at a time, once every cache has listed.
async fn schedule_loop(ctx: Arc<Ctx>, queue: Arc<Queue>) {
    if let Err(e) = ctx.wait_for_caches().await {
        tracing::error!(component = COMPONENT, error = %e, "caches never filled");
        return;
    }
    let mut decisions = Decisions::default();
    loop {
        let queued = queue.pop().await;
        let current = ctx
            .pods
            .get(&ObjectRef::from_obj(&*queued.pod))
            .filter(|p| p.metadata.uid.as_deref() == Some(queued.uid()))
            .filter(|p| needs_scheduling(p));
        let Some(pod) = current else {
            queue.update(|q, _| {
                q.done(queued.uid());
                false
            });
            continue;
        };
        let outcome = attempt(&ctx, &mut decisions, pod).await;
        let uid = queued.uid().to_string();
        queue.update(move |q, now| match outcome {
            Ok(Outcome::Done) => {
                q.done(&uid);
                false
            }
            Ok(Outcome::Rejected(plugins)) => {
                q.add_unschedulable(queued, plugins, now) == Placed::Active
            }
            Err(e) => {
                tracing::warn!(component = COMPONENT, pod = %ObjectRef::from_obj(&*queued.pod),
                    error = %e, "scheduling attempt failed");
                q.add_unschedulable(queued, BTreeSet::new(), now);
                false
            }
        });
    }
}

impl Ctx {
    async fn wait_for_caches(&self) -> Result<(), Error> {
        controller_base::cache::ready(&self.pods)
            .await
            .map_err(|e| Error::Cache("pod", e))?;
        controller_base::cache::ready(&self.nodes)
            .await
            .map_err(|e| Error::Cache("node", e))?;
        controller_base::cache::ready(&self.namespaces)
            .await
            .map_err(|e| Error::Cache("namespace", e))?;
        controller_base::cache::ready(&self.services)
            .await
            .map_err(|e| Error::Cache("service", e))?;
        controller_base::cache::ready(&self.replicasets)
            .await
            .map_err(|e| Error::Cache("replicaset", e))?;
        controller_base::cache::ready(&self.statefulsets)
            .await
            .map_err(|e| Error::Cache("statefulset", e))?;
        controller_base::cache::ready(&self.claims)
            .await
            .map_err(|e| Error::Cache("persistentvolumeclaim", e))?;
        controller_base::cache::ready(&self.volumes)
            .await
            .map_err(|e| Error::Cache("persistentvolume", e))?;
        controller_base::cache::ready(&self.classes)
            .await
            .map_err(|e| Error::Cache("storageclass", e))?;
        controller_base::cache::ready(&self.budgets)
            .await
            .map_err(|e| Error::Cache("poddisruptionbudget", e))
    }
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

/// One scheduling attempt for `pod`: bind it to the best node, name a node in its waiting
/// claims, or mark it unschedulable (preempting lower-priority pods where that helps).
async fn attempt(ctx: &Ctx, decisions: &mut Decisions, pod: Arc<Pod>) -> Result<Outcome, Error> {
    let pods = with_assumed(ctx.pods.state(), decisions);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    if decisions.assumed.contains_key(&uid) {
        // Bound already; the pod's watch event is on its way.
        return Ok(Outcome::Done);
    }
    let pods = with_nominated(pods, &pod, &decisions.nominated);
    let nodes = ctx.nodes.state();
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let states = match volumefit::pod_claims(&pod, &ctx.claims.state(), &ctx.classes.state()) {
        Ok(states) => states,
        Err(reason) => {
            let no_fit = NoFit::Unresolvable {
                nodes: nodes.len(),
                reason,
            };
            mark_unschedulable(ctx, &pod, &no_fit.to_string()).await?;
            return Ok(Outcome::Rejected(rejectors(&no_fit)));
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
            select_node(ctx, &states, &node).await?;
            // The claims' binding (their watch events) brings the pod back to be bound.
            Ok(Outcome::Rejected(BTreeSet::from([Plugin::VolumeBinding])))
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
                    let msg = format!("Successfully assigned {ns}/{name} to {node}");
                    ctx.recorder
                        .record(&*pod, EventType::Normal, "Scheduled", &msg)
                        .await?;
                }
                // Bound or deleted meanwhile: the pod's next watch event shows the new state.
                Err(e) if is_conflict(&e) || is_not_found(&e) => {}
                Err(e) => return Err(Error::api(format!("binding pod {ns}/{name}"))(e)),
            }
            Ok(Outcome::Done)
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
                    mark_unschedulable(ctx, &pod, &no_fit.to_string()).await?;
                    preempt(ctx, &pod, &candidate).await?;
                }
                // Nothing to preempt for a pod that cannot fit anywhere for other reasons.
                Err(_) if matches!(no_fit, NoFit::NoNodes) => {
                    mark_unschedulable(ctx, &pod, &no_fit.to_string()).await?;
                }
                Err(why) => {
                    let msg = format!("{no_fit} preemption: {why}");
                    mark_unschedulable(ctx, &pod, &msg).await?;
                }
            }
            Ok(Outcome::Rejected(rejectors(&no_fit)))
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
    fn node_changes_are_what_the_filters_look_at() {
        let node = |v: Value| -> Node { serde_json::from_value(v).expect("node") };
        let base = node(json!({"metadata": {"name": "n", "labels": {"a": "1"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2"},
                "conditions": [{"type": "Ready", "status": "True",
                                "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}}));
        // A heartbeat changes nothing the filters see.
        let beat = node(
            json!({"metadata": {"name": "n", "labels": {"a": "1"}, "resourceVersion": "9"},
            "spec": {},
            "status": {"allocatable": {"cpu": "2"},
                "conditions": [{"type": "Ready", "status": "True",
                                "lastHeartbeatTime": "2026-01-01T00:00:10Z"}]}}),
        );
        assert!(!node_change(&base, &beat).any());
        let mut cordoned = base.clone();
        cordoned
            .spec
            .get_or_insert_with(Default::default)
            .unschedulable = Some(true);
        assert_eq!(
            node_change(&base, &cordoned),
            NodeChange {
                unschedulable: true,
                ..Default::default()
            }
        );
        let mut relabelled = base.clone();
        relabelled.metadata.labels = None;
        assert!(node_change(&base, &relabelled).labels);
        let not_ready = node(json!({"metadata": {"name": "n", "labels": {"a": "1"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2"},
                "conditions": [{"type": "Ready", "status": "False"}]}}));
        assert!(node_change(&base, &not_ready).taints);
    }

    #[test]
    fn rejections_name_their_filters_and_no_nodes_is_an_error() {
        assert!(rejectors(&NoFit::NoNodes).is_empty());
        let no_fit = NoFit::Misfits {
            nodes: 2,
            reasons: vec![Misfit::Unschedulable, Misfit::Insufficient("cpu".into())],
        };
        assert_eq!(
            rejectors(&no_fit),
            BTreeSet::from([Plugin::NodeUnschedulable, Plugin::NodeResourcesFit])
        );
    }

    #[test]
    fn a_bound_pod_that_goes_moves_the_pods_parked_for_room() {
        let queue = Queue::default();
        let mut cached: HashMap<String, Arc<Pod>> = HashMap::new();
        let mut feed = |event: watcher::Event<Pod>| {
            let change = match event {
                watcher::Event::Apply(pod) => {
                    let new = Arc::new(pod);
                    let uid = new.metadata.uid.clone().unwrap_or_default();
                    let old = cached.insert(uid, new.clone());
                    Change::Applied { old, new }
                }
                watcher::Event::Delete(pod) => Change::Deleted(Arc::new(pod)),
                _ => Change::Listed,
            };
            on_pod_event(&queue, &change);
        };
        let bound = pod(
            json!({"metadata": {"name": "b", "namespace": "d", "uid": "b"},
            "spec": {"nodeName": "n1", "containers": []}}),
        );
        feed(watcher::Event::Apply(bound.clone()));
        let waiting = pod(
            json!({"metadata": {"name": "w", "namespace": "d", "uid": "w"},
            "spec": {"containers": []}}),
        );
        feed(watcher::Event::Apply(waiting));
        let tried = queue.pop().now_or_never().expect("the new pod is queued");
        assert_eq!(tried.uid(), "w");
        queue.update(|q, now| {
            let rejected = BTreeSet::from([Plugin::NodeResourcesFit]);
            q.add_unschedulable(tried, rejected, now);
            false
        });
        assert!(queue.pop().now_or_never().is_none());
        // The bound pod's status changing frees nothing.
        let mut running = bound.clone();
        running.status = Some(serde_json::from_value(json!({"phase": "Running"})).expect("status"));
        feed(watcher::Event::Apply(running.clone()));
        assert!(queue.pop().now_or_never().is_none());
        feed(watcher::Event::Delete(running));
        let again = queue.pop().now_or_never().expect("moved back");
        assert_eq!(again.uid(), "w");
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
