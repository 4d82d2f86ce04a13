//! The disruption controller of kube-controller-manager: keeps each PodDisruptionBudget's
//! status current for the pod `eviction` subresource to decide by. For the pods its selector
//! picks it counts the healthy (Ready, not terminating, not just evicted) ones, the expected
//! ones (the pod count for an integer `minAvailable`; otherwise the scale of the pods'
//! controllers: ReplicaSets, Deployments, StatefulSets from watch caches, any other kind
//! through its `scale` subresource), the healthy ones it wants (percentages round up, as
//! upstream), the disruptions that leaves, and the `DisruptionAllowed` condition. Pods the
//! eviction subresource recorded in `disruptedPods` are not counted healthy until they are
//! gone or two minutes have passed. A budget it cannot compute gets no disruptions and the
//! `SyncFailed` reason.
//!
//! Budgets are synced on their own changes and on changes of the pods they select (with
//! their labels before and after the change).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::{FutureExt, Stream};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, OwnerReference, Time};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::core::Selector;
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use controller_base::error::{is_conflict, is_not_found, Error as ApiFailure};
use controller_base::events::{EventType, Recorder};
use controller_base::ownership::{controller_of, key_of, label_selector, selects};
use controller_base::pods;
use controller_base::Shared;

const COMPONENT: &str = "controllermanager";
/// Upstream's `DeletionTimeout`: how long an evicted pod may stay before it counts again.
const DELETION_TIMEOUT: SignedDuration = SignedDuration::from_secs(2 * 60);
const CONDITION: &str = "DisruptionAllowed";

/// Why a budget's status could not be computed (its `SyncFailed` message).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("invalid value for IntOrString: invalid type: string is not a percentage")]
    NotAPercentage,
    #[error("invalid value for IntOrString: invalid value {0:?}")]
    BadPercentage(String),
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
    #[error("{0} does not implement the scale subresource")]
    NoScale(String),
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
}

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    replica_sets: Store<ReplicaSet>,
    deployments: Store<Deployment>,
    stateful_sets: Store<StatefulSet>,
    recorder: Recorder,
}

/// A watch cache of `K` and the stream that fills it.
fn cache<K>(
    client: &Client,
) -> (
    Store<K>,
    impl Stream<Item = Result<K, watcher::Error>> + Send,
)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        controller_base::cache::watch(Api::<K>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    (reader, stream)
}

/// The budgets of `budgets` whose selector picks a pod with `pod`'s labels (upstream's
/// `GetPodPodDisruptionBudgets`: a pod without labels has none; an empty selector picks
/// every pod of the namespace, a missing one none).
fn budgets_of(
    pod: &Pod,
    budgets: &Store<PodDisruptionBudget>,
) -> Vec<ObjectRef<PodDisruptionBudget>> {
    if pod.metadata.labels.as_ref().is_none_or(|l| l.is_empty()) {
        return Vec::new();
    }
    budgets
        .state()
        .iter()
        .filter(|b| b.metadata.namespace == pod.metadata.namespace)
        .filter(|b| selector_of(b).is_some_and(|s| selects(&s, &pod.metadata)))
        .map(|b| ObjectRef::from_obj(&**b))
        .collect()
}

fn selector_of(pdb: &PodDisruptionBudget) -> Option<Selector> {
    pdb.spec
        .as_ref()?
        .selector
        .as_ref()
        .and_then(label_selector)
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<PodDisruptionBudget>::all(client.clone()),
        watcher::Config::default(),
    );
    let budgets = controller.store();
    let pods = shared.pods.store();
    let pod_cache = pods.clone();
    let (replica_sets, rs_events) = cache::<ReplicaSet>(&client);
    let (deployments, deploy_events) = cache::<Deployment>(&client);
    let (stateful_sets, sts_events) = cache::<StatefulSet>(&client);
    // A pod whose labels changed concerns the budgets that picked it before as well.
    let picked_before: Mutex<HashMap<String, HashSet<ObjectRef<PodDisruptionBudget>>>> =
        Mutex::default();
    let controller = controller
        .watches_shared_stream(shared.pods.touched(), move |pod: Arc<Pod>| {
            let now: HashSet<_> = budgets_of(&pod, &budgets).into_iter().collect();
            let mut before = picked_before.lock().unwrap_or_else(|p| p.into_inner());
            let key = key_of(&pod.metadata);
            let old = before.remove(&key).unwrap_or_default();
            // The cache applied the change already: a pod missing from it was deleted.
            if !now.is_empty() && pod_cache.get(&ObjectRef::from_obj(&*pod)).is_some() {
                before.insert(key, now.clone());
            }
            now.union(&old).cloned().collect::<Vec<_>>()
        })
        // The controllers' caches are read for their scale; their changes reach the
        // budgets through their pods, as upstream.
        .watches_stream(rs_events, |_| Vec::new())
        .watches_stream(deploy_events, |_| Vec::new())
        .watches_stream(sts_events, |_| Vec::new());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods,
        replica_sets,
        deployments,
        stateful_sets,
    });
    controller_base::runner::drive("disruption", controller, ctx, reconcile)
        .map(|_| ())
        .boxed()
}

async fn reconcile(pdb: Arc<PodDisruptionBudget>, ctx: Arc<Ctx>) -> Result<Action, ApiFailure> {
    for (what, ready) in [
        ("pod", controller_base::cache::ready(&ctx.pods).await),
        (
            "replicaset",
            controller_base::cache::ready(&ctx.replica_sets).await,
        ),
        (
            "deployment",
            controller_base::cache::ready(&ctx.deployments).await,
        ),
        (
            "statefulset",
            controller_base::cache::ready(&ctx.stateful_sets).await,
        ),
    ] {
        ready.map_err(|e| ApiFailure::Cache(what, e))?;
    }
    let ns = pdb.namespace().unwrap_or_default();
    let selected: Vec<Arc<Pod>> = match selector_of(&pdb) {
        Some(sel) => ctx
            .pods
            .state()
            .into_iter()
            .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
            .filter(|p| selects(&sel, &p.metadata))
            .collect(),
        None => Vec::new(),
    };
    let now = Timestamp::now();
    let spec = pdb.spec.clone().unwrap_or_default();
    let counted = if needs_scale(&spec) {
        expected_scale(&ctx, &selected).await
    } else {
        Ok((0, Vec::new()))
    };
    let outcome = counted.and_then(|(scale, unmanaged)| {
        let (expected, desired) = budget(&spec, selected.len(), scale)?;
        Ok((expected, desired, unmanaged))
    });
    let (expected, desired, unmanaged) = match outcome {
        Ok(counts) => counts,
        Err(e) => {
            tracing::warn!(budget = %key_of(&pdb.metadata), error = %controller_base::runner::chain(&e), "failed to sync PodDisruptionBudget");
            let status = fail_safe(&pdb, &e, now);
            if pdb.status.as_ref() != Some(&status) {
                write_status(&ctx, &pdb, status).await?;
            }
            return Ok(Action::await_change());
        }
    };
    let (disrupted, recheck) = still_disrupted(&pdb, &selected, now);
    let current = healthy(&selected, &disrupted, now);
    let status = next_status(&pdb, current, desired, expected, disrupted, now);
    if pdb.status.as_ref() != Some(&status) {
        report(&ctx, &pdb, selected.is_empty(), &unmanaged).await;
        write_status(&ctx, &pdb, status).await?;
    }
    // An evicted pod that is still there counts again when its two minutes are up.
    Ok(recheck
        .map(|at| {
            let wait = at.duration_since(now).unsigned_abs();
            Action::requeue(wait.max(Duration::from_millis(100)))
        })
        .unwrap_or_else(Action::await_change))
}

/// The events upstream records about a budget it syncs.
async fn report(ctx: &Ctx, pdb: &PodDisruptionBudget, no_pods: bool, unmanaged: &[String]) {
    if no_pods {
        let _ = ctx
            .recorder
            .record(pdb, EventType::Normal, "NoPods", "No matching pods found")
            .await;
    }
    if !unmanaged.is_empty() {
        let selector = pdb
            .spec
            .as_ref()
            .and_then(|s| s.selector.as_ref())
            .and_then(label_selector)
            .map(|s| s.to_string())
            .unwrap_or_default();
        let message = format!(
            "Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."
        );
        let _ = ctx
            .recorder
            .record(pdb, EventType::Warning, "UnmanagedPods", &message)
            .await;
    }
}

/// Replaces the budget's status, conditional on the version the cache saw (a conflict
/// means a newer one, the eviction subresource's perhaps, is on its way).
async fn write_status(
    ctx: &Ctx,
    pdb: &PodDisruptionBudget,
    status: PodDisruptionBudgetStatus,
) -> Result<(), ApiFailure> {
    let mut new = pdb.clone();
    new.status = Some(status);
    let api = Api::<PodDisruptionBudget>::namespaced(
        ctx.client.clone(),
        &pdb.namespace().unwrap_or_default(),
    );
    match api
        .replace_status(&pdb.name_any(), &PostParams::default(), &new)
        .await
    {
        Ok(_) => Ok(()),
        // Gone meanwhile: nothing to keep up to date.
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(ApiFailure::Api {
            what: format!(
                "updating the status of PodDisruptionBudget {}{}",
                key_of(&pdb.metadata),
                if is_conflict(&e) { " (conflict)" } else { "" }
            ),
            source: e,
        }),
    }
}

/// Whether the expected count comes from the pods' controllers rather than the pod count.
fn needs_scale(spec: &k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec) -> bool {
    spec.max_unavailable.is_some() || matches!(spec.min_available, Some(IntOrString::String(_)))
}

/// `GetScaledValueFromIntOrPercent` rounding up, as the disruption controller asks.
pub fn scaled_up(v: &IntOrString, total: i32) -> Result<i32, SyncError> {
    match v {
        IntOrString::Int(n) => Ok(*n),
        IntOrString::String(s) => {
            let digits = s.strip_suffix('%').ok_or(SyncError::NotAPercentage)?;
            let pct: i64 = digits
                .parse()
                .map_err(|_| SyncError::BadPercentage(s.clone()))?;
            let up = (pct * i64::from(total) + 99).div_euclid(100);
            i32::try_from(up).map_err(|_| SyncError::BadPercentage(s.clone()))
        }
    }
}

/// `getExpectedPodCount`: (expected pods, desired healthy pods) from the spec, the number of
/// pods picked and the total scale of their controllers (read when [`needs_scale`]).
pub fn budget(
    spec: &k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec,
    pod_count: usize,
    scale: i32,
) -> Result<(i32, i32), SyncError> {
    if let Some(max) = &spec.max_unavailable {
        let unavailable = scaled_up(max, scale)?;
        return Ok((scale, (scale - unavailable).max(0)));
    }
    match &spec.min_available {
        Some(IntOrString::Int(n)) => Ok((i32::try_from(pod_count).unwrap_or(i32::MAX), *n)),
        Some(pct @ IntOrString::String(_)) => Ok((scale, scaled_up(pct, scale)?)),
        None => Ok((0, 0)),
    }
}

/// `getExpectedScale`: the summed scale of the controllers of `pods` (each counted once)
/// and the names of pods without a controller, which count for nothing.
async fn expected_scale(ctx: &Ctx, pods: &[Arc<Pod>]) -> Result<(i32, Vec<String>), SyncError> {
    let mut scales: BTreeMap<String, i32> = BTreeMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = controller_of(&pod.metadata) else {
            unmanaged.push(pod.name_any());
            continue;
        };
        if scales.contains_key(&owner.uid) {
            continue;
        }
        let ns = pod.namespace().unwrap_or_default();
        let found = match cached_scale(ctx, owner, &ns) {
            Some(found) => Some(found),
            None => api_scale(ctx, owner, &ns).await?,
        };
        let Some((uid, replicas)) = found else {
            return Err(SyncError::NoController(pod.name_any()));
        };
        scales.insert(uid, replicas);
    }
    Ok((scales.values().sum(), unmanaged))
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn is_apps(r: &OwnerReference, kind: &str) -> bool {
    r.kind == kind && matches!(group_of(&r.api_version), "apps" | "extensions")
}

/// The (uid, scale) of a ReplicaSet, Deployment (through the ReplicaSet it controls) or
/// StatefulSet controlling a pod, from the watch caches.
fn cached_scale(ctx: &Ctx, owner: &OwnerReference, ns: &str) -> Option<(String, i32)> {
    let same = |meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        meta.uid.as_deref() == Some(owner.uid.as_str())
    };
    if is_apps(owner, "ReplicaSet") {
        let rs = ctx
            .replica_sets
            .get(&ObjectRef::new(&owner.name).within(ns))
            .filter(|rs| same(&rs.metadata))?;
        return match controller_of(&rs.metadata) {
            Some(d) if is_apps(d, "Deployment") => {
                let dep = ctx
                    .deployments
                    .get(&ObjectRef::new(&d.name).within(ns))
                    .filter(|dep| dep.metadata.uid.as_deref() == Some(d.uid.as_str()))?;
                let n = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((d.uid.clone(), n))
            }
            Some(d) if d.kind == "Deployment" => None,
            _ => {
                let n = rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                Some((owner.uid.clone(), n))
            }
        };
    }
    if is_apps(owner, "StatefulSet") {
        let sts = ctx
            .stateful_sets
            .get(&ObjectRef::new(&owner.name).within(ns))
            .filter(|s| same(&s.metadata))?;
        let n = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        return Some((owner.uid.clone(), n));
    }
    None
}

/// `getScaleController`: the owner's `scale` subresource, for kinds without a cache.
async fn api_scale(
    ctx: &Ctx,
    owner: &OwnerReference,
    ns: &str,
) -> Result<Option<(String, i32)>, SyncError> {
    let (group, version) = match owner.api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", owner.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &owner.kind);
    let api_err = |what: String| move |source| SyncError::Api { what, source };
    let (resource, caps) = match kube::discovery::pinned_kind(&ctx.client, &gvk).await {
        Ok(found) => found,
        // A kind the server does not serve controls nothing here (upstream's NoMatch).
        Err(kube::Error::Discovery(_)) => return Ok(None),
        Err(e) if is_not_found(&e) => return Ok(None),
        Err(e) => return Err(api_err(format!("discovering {}", owner.kind))(e)),
    };
    let qualified = if group.is_empty() {
        resource.plural.clone()
    } else {
        format!("{}.{group}", resource.plural)
    };
    if !caps.subresources.iter().any(|(r, _)| r.plural == "scale") {
        return Err(SyncError::NoScale(qualified));
    }
    let api = Api::<DynamicObject>::namespaced_with(ctx.client.clone(), ns, &resource);
    match api.get_scale(&owner.name).await {
        Ok(scale) if scale.metadata.uid.as_deref() == Some(owner.uid.as_str()) => Ok(Some((
            owner.uid.clone(),
            scale.spec.and_then(|s| s.replicas).unwrap_or(0),
        ))),
        Ok(_) => Ok(None),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(api_err(format!(
            "reading the scale of {qualified} {ns}/{}",
            owner.name
        ))(e)),
    }
}

/// `buildDisruptedPodMap`: the evicted pods still within their two minutes (and not yet
/// terminating), and when the first of them runs out.
pub fn still_disrupted(
    pdb: &PodDisruptionBudget,
    pods: &[Arc<Pod>],
    now: Timestamp,
) -> (BTreeMap<String, Time>, Option<Timestamp>) {
    let recorded = pdb.status.as_ref().and_then(|s| s.disrupted_pods.as_ref());
    let mut kept = BTreeMap::new();
    let mut recheck: Option<Timestamp> = None;
    let Some(recorded) = recorded else {
        return (kept, None);
    };
    for pod in pods.iter().filter(|p| !pods::is_terminating(p)) {
        let name = pod.name_any();
        let Some(at) = recorded.get(&name) else {
            continue;
        };
        let Ok(expires) = at.0.checked_add(DELETION_TIMEOUT) else {
            continue;
        };
        if expires < now {
            tracing::info!(pod = %key_of(&pod.metadata), "pod was expected to be deleted but it wasn't, updating PDB");
            continue;
        }
        recheck = Some(recheck.map_or(expires, |r| r.min(expires)));
        kept.insert(name, at.clone());
    }
    (kept, recheck)
}

/// `countHealthyPods`: Ready pods that are neither terminating nor freshly evicted.
pub fn healthy(pods: &[Arc<Pod>], disrupted: &BTreeMap<String, Time>, now: Timestamp) -> i32 {
    let evicted = |p: &Pod| {
        disrupted
            .get(&p.name_any())
            .and_then(|at| at.0.checked_add(DELETION_TIMEOUT).ok())
            .is_some_and(|expires| expires > now)
    };
    let n = pods
        .iter()
        .filter(|p| !pods::is_terminating(p) && !evicted(p) && pods::is_ready(p))
        .count();
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `updatePdbStatus`: the status for these counts, with the `DisruptionAllowed` condition.
/// A budget that expects no pods allows no disruption (its first pods may not be counted
/// yet).
pub fn next_status(
    pdb: &PodDisruptionBudget,
    current: i32,
    desired: i32,
    expected: i32,
    disrupted: BTreeMap<String, Time>,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let allowed = if expected <= 0 {
        0
    } else {
        (current - desired).max(0)
    };
    let old = pdb.status.clone().unwrap_or_default();
    let generation = pdb.metadata.generation;
    let (status, reason) = if allowed > 0 {
        ("True", "SufficientPods")
    } else {
        ("False", "InsufficientPods")
    };
    let conditions = with_condition(old.conditions, status, reason, "", generation, now);
    PodDisruptionBudgetStatus {
        current_healthy: current,
        desired_healthy: desired,
        expected_pods: expected,
        disruptions_allowed: allowed,
        disrupted_pods: (!disrupted.is_empty()).then_some(disrupted),
        observed_generation: generation,
        conditions,
    }
}

/// `failSafe`: no disruptions, and `SyncFailed` with the error, keeping everything else.
pub fn fail_safe(
    pdb: &PodDisruptionBudget,
    err: &SyncError,
    now: Timestamp,
) -> PodDisruptionBudgetStatus {
    let mut status = pdb.status.clone().unwrap_or_default();
    status.disruptions_allowed = 0;
    let observed = status.observed_generation;
    status.conditions = with_condition(
        status.conditions.take(),
        "False",
        "SyncFailed",
        &controller_base::runner::chain(err),
        observed,
        now,
    );
    status
}

/// `meta.SetStatusCondition` of `DisruptionAllowed`: the transition time moves only when the
/// status does.
fn with_condition(
    conditions: Option<Vec<Condition>>,
    status: &str,
    reason: &str,
    message: &str,
    observed: Option<i64>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let mut list = conditions.unwrap_or_default();
    let since = list
        .iter()
        .find(|c| c.type_ == CONDITION && c.status == status)
        .map_or_else(|| Time(now), |c| c.last_transition_time.clone());
    let cond = Condition {
        type_: CONDITION.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: observed,
        last_transition_time: since,
    };
    match list.iter_mut().find(|c| c.type_ == CONDITION) {
        Some(c) => *c = cond,
        None => list.push(cond),
    }
    Some(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::policy::v1::PodDisruptionBudgetSpec;
    use serde_json::json;

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn spec(v: serde_json::Value) -> PodDisruptionBudgetSpec {
        serde_json::from_value(v).expect("spec")
    }

    fn pod(name: &str, ready: bool, deleting: bool) -> Arc<Pod> {
        let mut p = json!({"metadata": {"name": name, "namespace": "ns", "labels": {"app": "web"}},
            "status": {"phase": "Running", "conditions": [
                {"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-02T15:00:00Z");
        }
        Arc::new(serde_json::from_value(p).expect("pod"))
    }

    fn pdb(status: serde_json::Value) -> PodDisruptionBudget {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "generation": 2},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": status}))
        .expect("pdb")
    }

    #[test]
    fn percentages_round_up() {
        let pct = |s: &str| IntOrString::String(s.into());
        assert_eq!(scaled_up(&pct("50%"), 3).ok(), Some(2));
        assert_eq!(scaled_up(&pct("10%"), 1).ok(), Some(1));
        assert_eq!(scaled_up(&pct("0%"), 5).ok(), Some(0));
        assert_eq!(scaled_up(&pct("100%"), 4).ok(), Some(4));
        assert_eq!(scaled_up(&IntOrString::Int(2), 9).ok(), Some(2));
        assert!(matches!(
            scaled_up(&pct("5"), 3),
            Err(SyncError::NotAPercentage)
        ));
    }

    #[test]
    fn expected_and_desired_counts() {
        // An integer minAvailable counts the pods themselves.
        assert_eq!(
            budget(&spec(json!({"minAvailable": 2})), 3, 0).ok(),
            Some((3, 2))
        );
        // A percent of the controllers' scale, rounded up: 50% of 3 wants 2.
        assert_eq!(
            budget(&spec(json!({"minAvailable": "50%"})), 1, 3).ok(),
            Some((3, 2))
        );
        // maxUnavailable 25% of 5 rounds up to 2 unavailable, so 3 healthy are wanted.
        assert_eq!(
            budget(&spec(json!({"maxUnavailable": "25%"})), 5, 5).ok(),
            Some((5, 3))
        );
        assert_eq!(
            budget(&spec(json!({"maxUnavailable": 4})), 2, 2).ok(),
            Some((2, 0))
        );
        assert_eq!(budget(&spec(json!({})), 4, 0).ok(), Some((0, 0)));
        assert!(needs_scale(&spec(json!({"maxUnavailable": 1}))));
        assert!(needs_scale(&spec(json!({"minAvailable": "10%"}))));
        assert!(!needs_scale(&spec(json!({"minAvailable": 1}))));
    }

    #[test]
    fn evicted_pods_do_not_count_for_two_minutes() {
        let now = t("2026-01-02T15:01:00Z");
        let budget = pdb(json!({"disruptedPods": {
            "fresh": "2026-01-02T15:00:30Z", "stale": "2026-01-02T14:58:00Z",
            "going": "2026-01-02T15:00:30Z", "gone": "2026-01-02T15:00:30Z"}}));
        let pods = vec![
            pod("fresh", true, false),
            pod("stale", true, false),
            pod("going", true, true),
            pod("other", true, false),
            pod("sick", false, false),
        ];
        let (kept, recheck) = still_disrupted(&budget, &pods, now);
        assert_eq!(kept.keys().collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(recheck, Some(t("2026-01-02T15:02:30Z")));
        // stale and other are healthy; fresh is evicted, going terminating, sick not Ready.
        assert_eq!(healthy(&pods, &kept, now), 2);
    }

    #[test]
    fn status_allows_what_is_left_and_says_so() {
        let now = t("2026-01-02T15:01:00Z");
        let s = next_status(&pdb(json!({})), 3, 1, 3, BTreeMap::new(), now);
        assert_eq!(s.disruptions_allowed, 2);
        assert_eq!(s.observed_generation, Some(2));
        let c = &s.conditions.clone().unwrap_or_default()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", "SufficientPods")
        );
        assert_eq!(c.observed_generation, Some(2));
        assert!(s.disrupted_pods.is_none());

        // The same outcome later keeps the transition time; no expected pods allow nothing.
        let mut prev = pdb(json!({}));
        prev.status = Some(s.clone());
        let later = next_status(&prev, 3, 1, 3, BTreeMap::new(), t("2026-01-02T15:05:00Z"));
        assert_eq!(later, s);
        let none = next_status(&prev, 3, 1, 0, BTreeMap::new(), t("2026-01-02T15:05:00Z"));
        assert_eq!(none.disruptions_allowed, 0);
        let c = &none.conditions.unwrap_or_default()[0];
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InsufficientPods")
        );
        assert_eq!(c.last_transition_time, Time(t("2026-01-02T15:05:00Z")));
        assert_eq!(
            next_status(&prev, 1, 2, 3, BTreeMap::new(), now).disruptions_allowed,
            0
        );
    }

    #[test]
    fn failures_allow_nothing() {
        let now = t("2026-01-02T15:01:00Z");
        let b = pdb(json!({"disruptionsAllowed": 2, "currentHealthy": 3, "observedGeneration": 1}));
        let s = fail_safe(&b, &SyncError::NoScale("daemonsets.apps".into()), now);
        assert_eq!(s.disruptions_allowed, 0);
        assert_eq!(s.current_healthy, 3);
        let c = &s.conditions.unwrap_or_default()[0];
        assert_eq!(
            (c.reason.as_str(), c.message.as_str()),
            (
                "SyncFailed",
                "daemonsets.apps does not implement the scale subresource"
            )
        );
        assert_eq!(c.observed_generation, Some(1));
    }
}
