//! The taint eviction controller (kube-controller-manager's `taint-eviction-controller`):
//! a pod bound to a node with `NoExecute` taints is deleted at once when it does not
//! tolerate one of them, or when its `tolerationSeconds` run out ([`crate::noexecute`]).
//! Each pending eviction is a requeue of that pod; a pass after the taint is gone (the
//! node's change wakes its pods) cancels it. Before deleting, the pod gets the
//! `DisruptionTarget` condition and a `TaintManagerEviction` event, as upstream records.
//! The same pass hands pods whose node is gone to the pod garbage collector's orphan pass
//! ([`crate::orphans`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::informer::Change;
use controller_base::Shared;

use crate::noexecute::{self, Plan};
use crate::orphans::Orphans;

const COMPONENT: &str = "taint-eviction-controller";
pub const REASON: &str = "TaintManagerEviction";
/// After losing a write race.
const RETRY_RACE: Duration = Duration::from_millis(200);

/// An eviction waiting for its time.
struct Pending {
    uid: String,
    since: Timestamp,
}

struct Ctx {
    client: Client,
    nodes: Store<Node>,
    /// By `namespace/name`.
    pending: Arc<Mutex<HashMap<String, Pending>>>,
    orphans: Arc<Orphans>,
    recorder: Recorder,
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

/// Starts the controller.
pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let pending: Arc<Mutex<HashMap<String, Pending>>> = Arc::default();
    let orphans: Arc<Orphans> = Arc::default();
    let gone_orphans = orphans.clone();
    let pods = shared.pods.store();
    let gone = pending.clone();
    let pod_events = shared.pods.subscribe().filter_map(move |change| {
        futures::future::ready(match change {
            Change::Applied { new, .. } => Some(new),
            // A deleted pod is never reconciled again: drop its pending eviction here.
            Change::Deleted(pod) => {
                lock(&gone).remove(&key_of(&pod));
                gone_orphans.forget(&key_of(&pod));
                Some(pod)
            }
            Change::Listed => None,
        })
    });
    let (nodes, node_writer) = reflector::store();
    let node_events = reflector::reflector(
        node_writer,
        controller_base::cache::watch(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    // Only a change of a node's NoExecute taints concerns its pods (heartbeats do not).
    let seen: Mutex<HashMap<String, Vec<Taint>>> = Mutex::default();
    let (node_cache, pod_cache) = (nodes.clone(), pods.clone());
    let controller = Controller::for_shared_stream(pod_events, pods.clone()).watches_stream(
        node_events,
        move |node: Node| {
            let name = node.name_any();
            let mut seen = lock(&seen);
            let taints: Vec<Taint> = node
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_deref())
                .map(|t| noexecute::no_execute(t).into_iter().cloned().collect())
                .unwrap_or_default();
            // A deleted node's pods are orphans now.
            if node_cache.get(&ObjectRef::new(&name)).is_none() {
                seen.remove(&name);
            } else if seen.insert(name.clone(), taints.clone()).as_ref() == Some(&taints) {
                return Vec::new();
            }
            pod_cache
                .state()
                .into_iter()
                .filter(|p| node_of(p) == Some(name.as_str()))
                .map(|p| ObjectRef::from_obj(&*p))
                .collect::<Vec<_>>()
        },
    );
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        nodes,
        pending,
        orphans,
    });
    controller_base::runner::drive("taint-eviction", controller, ctx, reconcile)
        .map(|_| ())
        .boxed()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn key_of(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

async fn reconcile(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = key_of(&pod);
    let uid = pod.uid().unwrap_or_default();
    let Some(node_name) = node_of(&pod) else {
        forget(&ctx, &key);
        ctx.orphans.forget(&key);
        return Ok(Action::await_change());
    };
    controller_base::cache::ready(&ctx.nodes)
        .await
        .map_err(|e| Error::Cache("node", e))?;
    let Some(node) = ctx.nodes.get(&ObjectRef::new(node_name)) else {
        forget(&ctx, &key);
        return ctx
            .orphans
            .collect(&ctx.client, &pod, &key, node_name)
            .await;
    };
    ctx.orphans.forget(&key);
    if pod.metadata.deletion_timestamp.is_some() {
        forget(&ctx, &key);
        return Ok(Action::await_change());
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let since = lock(&ctx.pending)
        .get(&key)
        .filter(|p| p.uid == uid)
        .map(|p| p.since);
    let now = Timestamp::now();
    match noexecute::plan(&taints, &tolerations, since, now) {
        Plan::Cancel => {
            if forget(&ctx, &key) && since.is_some() {
                let message = format!("Cancelling deletion of Pod {key}");
                record(&ctx, &pod, &message).await;
            }
            Ok(Action::await_change())
        }
        Plan::EvictNow => evict(&ctx, &pod, &key).await,
        Plan::EvictAt { at, .. } if at <= now => evict(&ctx, &pod, &key).await,
        Plan::EvictAt { since, at } => {
            lock(&ctx.pending).insert(key, Pending { uid, since });
            let wait = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
            Ok(Action::requeue(wait))
        }
    }
}

/// Drops a pending eviction; whether there was one.
fn forget(ctx: &Ctx, key: &str) -> bool {
    lock(&ctx.pending).remove(key).is_some()
}

async fn record(ctx: &Ctx, pod: &Pod, message: &str) {
    if let Err(e) = ctx
        .recorder
        .record(pod, EventType::Normal, REASON, message)
        .await
    {
        tracing::warn!(pod = %pod.name_any(), error = %e, "recording {REASON} failed");
    }
}

/// The `DisruptionTarget` condition upstream sets before deleting (v1.33, GA).
fn disruption_target(now: Timestamp) -> PodCondition {
    PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByTaintManager".into()),
        message: Some("Taint manager: deleting due to NoExecute taint".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    }
}

/// Upstream `addConditionAndDeletePod`: the condition, then the deletion of this very pod.
async fn evict(ctx: &Ctx, pod: &Pod, key: &str) -> Result<Action, Error> {
    let ns = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    tracing::info!(pod = %key, "evicting pod from a NoExecute-tainted node");
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(disruption_target(Timestamp::now()));
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let patch = json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": {"conditions": conditions},
    });
    match api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => record(ctx, pod, &format!("Marking for deletion Pod {key}")).await,
        Err(e) if is_not_found(&e) => {
            forget(ctx, key);
            return Ok(Action::await_change());
        }
        Err(e) if is_conflict(&e) => return Ok(Action::requeue(RETRY_RACE)),
        Err(e) => return Err(Error::api(format!("marking pod {key} for eviction"))(e)),
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => {}
        Err(e) if is_not_found(&e) || is_conflict(&e) => {}
        Err(e) => return Err(Error::api(format!("deleting pod {key}"))(e)),
    }
    forget(ctx, key);
    Ok(Action::await_change())
}
