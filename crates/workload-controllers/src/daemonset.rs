//! The DaemonSet controller (kube-controller-manager's `daemonset` controller): one pod of
//! the template on every node the pod may run on, replaced node by node when the template
//! changes.
//!
//! As upstream v1.33:
//! - a node is eligible when the daemon pod (the template plus the tolerations upstream adds
//!   to every daemon pod) matches its `nodeSelector` and required node affinity and
//!   tolerates its NoSchedule/NoExecute taints; a pod already there stays through a
//!   NoSchedule taint it does not tolerate, but not through a NoExecute one;
//! - pods are made pinned, not bound: required node affinity `metadata.name In [node]`, and
//!   the scheduler binds them;
//! - failed pods are deleted and made again, extra pods on a node go (oldest stays), pods on
//!   nodes that should not run them go;
//! - the template's revision is a ControllerRevision (`history`); pods carry its hash in
//!   `controller-revision-hash` and the template generation in `pod-template-generation`;
//! - `RollingUpdate` replaces old pods while at most `maxUnavailable` nodes lack an
//!   available daemon pod, or (with `maxSurge`) starts the new pod beside the old one and
//!   deletes the old once the new is available; `OnDelete` waits for the user to delete;
//! - the status counts desired, current, ready, up-to-date, available and misscheduled
//!   nodes, as `kubectl rollout status ds/NAME` reads them.
//!
//! The decision ([`plan`]) is pure and unit-tested; the reconcile reads the nodes from a
//! watch cache, lists the DaemonSet's pods and revisions fresh, and applies the plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::nodefit::{self, NODE_NAME_FIELD};
use controller_base::Shared;

use crate::history::{self, Owner, REVISION_HASH_LABEL};
use controller_base::ownership::{self, controller_ref};
use controller_base::pods;

const COMPONENT: &str = "daemonset-controller";
/// The label with the DaemonSet's template generation on each pod.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

struct Ctx {
    client: Client,
    nodes: Store<Node>,
    recorder: Recorder,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<DaemonSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let (nodes, node_writer) = kube::runtime::reflector::store();
    let node_events = kube::runtime::reflector::reflector(
        node_writer,
        controller_base::cache::watch(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    // A node that comes, goes or changes labels or taints may change every DaemonSet.
    let controller = controller
        .owns_shared_stream(shared.pods.touched())
        .watches_stream(node_events, move |_node: Node| {
            sets.state()
                .iter()
                .map(|ds| ObjectRef::from_obj(&**ds))
                .collect::<Vec<_>>()
        });
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        nodes,
    });
    controller_base::runner::drive("daemonset", controller, ctx, reconcile).boxed()
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if ds.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let ns = ds.namespace().unwrap_or_default();
    let name = ds.name_any();
    let Some(spec) = ds.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    controller_base::cache::ready(&ctx.nodes)
        .await
        .map_err(|e| Error::Cache("node", e))?;
    let nodes = ctx.nodes.state();
    let Some(selector) = ownership::label_selector(&spec.selector) else {
        return Ok(Action::await_change());
    };
    let uid = ds.metadata.uid.clone().unwrap_or_default();

    let revisions = Api::<ControllerRevision>::namespaced(ctx.client.clone(), &ns);
    let mut revs: Vec<ControllerRevision> = revisions
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("listing the revisions of {ns}/{name}")))?
        .items
        .into_iter()
        .filter(|r| ownership::is_controlled_by(&r.metadata, &uid))
        .collect();
    history::sort(&mut revs);
    let template = serde_json::to_value(&spec.template).unwrap_or_default();
    let data = history::template_patch(&template);
    let collisions = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let owner = Owner {
        reference: controller_ref(&*ds),
        namespace: &ns,
        name: &name,
        labels: spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
    };
    let (current, collisions) =
        history::ensure_current(&revisions, &owner, &revs, &data, collisions)
            .await
            .map_err(Error::api(format!("recording the revision of {ns}/{name}")))?;
    let hash = current
        .labels()
        .get(REVISION_HASH_LABEL)
        .cloned()
        .unwrap_or_else(|| history::hash(&data, collisions));

    // Read fresh, not from a cache: a pod made a moment ago must not be made twice.
    let pods: Vec<Pod> = ownership::claim_fresh(&ctx.client, &*ds, &selector).await?;
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);

    let now = Timestamp::now();
    let generation = template_generation(&ds);
    let plan = plan(&ds, &nodes, &pods, &hash, generation, now);

    for (pod, why) in &plan.delete {
        delete_pod(&ctx, &ds, &pods_api, pod, *why).await?;
    }
    for node in &plan.create {
        create_pod(&ctx, &ds, &pods_api, node, &hash, generation).await?;
    }

    let mut live: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.labels().get(REVISION_HASH_LABEL).cloned())
        .map(|h| history::revision_name(&name, &h))
        .collect();
    live.insert(current.name_any());
    let limit = spec.revision_history_limit.unwrap_or(10);
    history::truncate(&revisions, &revs, &live, limit)
        .await
        .map_err(Error::api(format!("pruning the revisions of {ns}/{name}")))?;

    let mut status = plan.status;
    status.observed_generation = ds.metadata.generation;
    status.collision_count = (collisions > 0).then_some(collisions);
    write_status(&ctx, &ds, status).await?;
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// Why a pod is deleted (for its event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deletion {
    /// It failed or finished; a new one takes its place.
    Failed,
    /// An extra pod on the node, a pod on a node that no longer takes it, or an old pod
    /// being replaced.
    Unwanted,
}

/// What one reconcile does.
#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create: Vec<String>,
    /// Pods to delete, by name.
    pub delete: Vec<(String, Deletion)>,
    /// The counters of the status (observed generation and collisions aside).
    pub status: DaemonSetStatus,
    /// When to look again without an event (a pod waiting out `minReadySeconds`).
    pub requeue: Option<Duration>,
}

/// Whether a node should run the daemon pod, and whether a pod already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eligibility {
    pub should_run: bool,
    pub should_continue: bool,
}

/// Upstream `NodeShouldRunDaemonPod` for the daemon pod spec `spec` (with the daemon
/// tolerations).
pub fn eligibility(spec: &PodSpec, node: &Node) -> Eligibility {
    let no = Eligibility {
        should_run: false,
        should_continue: false,
    };
    let node_name = node.metadata.name.as_deref().unwrap_or("");
    if spec
        .node_name
        .as_deref()
        .is_some_and(|n| !n.is_empty() && n != node_name)
    {
        return no;
    }
    if !nodefit::matches_node(spec, node) {
        return no;
    }
    if nodefit::untolerated_taint(spec, node, |e| e == "NoExecute").is_some() {
        return no;
    }
    let schedulable = nodefit::untolerated_taint(spec, node, |e| e == "NoSchedule").is_none();
    Eligibility {
        should_run: schedulable,
        should_continue: true,
    }
}

/// The tolerations upstream gives every daemon pod, so node conditions never evict it and
/// a cordoned node keeps it (`util.AddOrUpdateDaemonPodTolerations`).
fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let t = |key: &str, effect: &str| Toleration {
        key: Some(key.into()),
        operator: Some("Exists".into()),
        effect: Some(effect.into()),
        ..Default::default()
    };
    let mut list = vec![
        t("node.kubernetes.io/not-ready", "NoExecute"),
        t("node.kubernetes.io/unreachable", "NoExecute"),
        t("node.kubernetes.io/disk-pressure", "NoSchedule"),
        t("node.kubernetes.io/memory-pressure", "NoSchedule"),
        t("node.kubernetes.io/pid-pressure", "NoSchedule"),
        t("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        list.push(t("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    list
}

/// The template's pod spec with the daemon tolerations added (a toleration with the same
/// key, operator and effect is replaced, as upstream's `AddOrUpdateTolerationInPodSpec`).
pub fn daemon_pod_spec(template: &PodTemplateSpec) -> PodSpec {
    let mut spec = template.spec.clone().unwrap_or_default();
    let mut tolerations = spec.tolerations.take().unwrap_or_default();
    for add in daemon_tolerations(spec.host_network == Some(true)) {
        let same = |t: &Toleration| {
            t.key == add.key
                && t.effect == add.effect
                && t.operator.as_deref().unwrap_or("Equal")
                    == add.operator.as_deref().unwrap_or("Equal")
        };
        match tolerations.iter_mut().find(|t| same(t)) {
            Some(t) => *t = add,
            None => tolerations.push(add),
        }
    }
    spec.tolerations = Some(tolerations);
    spec
}

/// Upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`: the pod's required node affinity
/// becomes the single term `metadata.name In [node]`; the rest of its affinity stays.
fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NODE_NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
        match_expressions: None,
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

/// The pod the DaemonSet runs on `node`.
pub fn new_pod(ds: &DaemonSet, node: &str, hash: &str, generation: i64) -> Pod {
    let template = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(REVISION_HASH_LABEL.into(), hash.to_string());
    labels.insert(TEMPLATE_GENERATION_LABEL.into(), generation.to_string());
    let mut spec = daemon_pod_spec(&template);
    pin_to_node(&mut spec, node);
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(format!("{}-", ds.name_any())),
            namespace: ds.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(ds)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// The template generation recorded in the DaemonSet's annotation.
fn template_generation(ds: &DaemonSet) -> i64 {
    ds.annotations()
        .get(TEMPLATE_GENERATION_ANNOTATION)
        .and_then(|g| g.parse().ok())
        .unwrap_or(0)
}

/// Upstream `IsPodUpdated`: the pod carries the current hash, or the current template
/// generation (pods made before revisions existed).
fn is_updated(pod: &Pod, hash: &str, generation: i64) -> bool {
    let labels = pod.labels();
    labels.get(REVISION_HASH_LABEL).map(String::as_str) == Some(hash)
        || labels.get(TEMPLATE_GENERATION_LABEL) == Some(&generation.to_string())
}

/// Resolves an int-or-percent bound against `total`, rounding percentages up.
fn scaled(v: Option<&IntOrString>, total: i32) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let v = (pct * i64::from(total) + 99) / 100;
            i32::try_from(v).unwrap_or(i32::MAX)
        }
    }
}

/// Pods by the node they run on or are pinned to; pods for no node are left out.
fn pods_by_node(pods: &[Pod]) -> BTreeMap<String, Vec<&Pod>> {
    let mut map: BTreeMap<String, Vec<&Pod>> = BTreeMap::new();
    for p in pods {
        if let Some(node) = p.spec.as_ref().and_then(nodefit::target_node) {
            map.entry(node.to_string()).or_default().push(p);
        }
    }
    for list in map.values_mut() {
        list.sort_by_key(|p| (p.metadata.creation_timestamp.clone(), p.name_any()));
    }
    map
}

/// The whole decision for one DaemonSet: which nodes get a pod, which pods go, the status.
pub fn plan(
    ds: &DaemonSet,
    nodes: &[Arc<Node>],
    pods: &[Pod],
    hash: &str,
    generation: i64,
    now: Timestamp,
) -> Plan {
    let default_spec = Default::default();
    let spec = ds.spec.as_ref().unwrap_or(&default_spec);
    let pod_spec = daemon_pod_spec(&spec.template);
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let rolling = spec.update_strategy.as_ref().and_then(|s| {
        (s.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate")
            .then(|| s.rolling_update.clone().unwrap_or_default())
    });
    let surge_allowed = rolling
        .as_ref()
        .is_some_and(|r| scaled(r.max_surge.as_ref(), 1) > 0);
    let by_node = pods_by_node(pods);
    let mut out = Plan::default();
    let mut status = DaemonSetStatus::default();
    let (mut available, mut updated) = (0, 0);
    let mut should_run: Vec<(&str, Vec<&Pod>)> = Vec::new();

    for node in nodes {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let here: Vec<&Pod> = by_node.get(name).cloned().unwrap_or_default();
        let e = eligibility(&pod_spec, node);
        let exists = !here.is_empty();
        if e.should_run && !exists {
            out.create.push(name.to_string());
        } else if e.should_continue {
            let mut running = Vec::new();
            for p in here.iter().filter(|p| !pods::is_terminating(p)) {
                match pods::phase_of(p) {
                    "Failed" | "Succeeded" => out.delete.push((p.name_any(), Deletion::Failed)),
                    _ => running.push(*p),
                }
            }
            if !surge_allowed {
                for p in running.iter().skip(1) {
                    out.delete.push((p.name_any(), Deletion::Unwanted));
                }
            }
        } else {
            for p in here.iter().filter(|p| !pods::is_terminating(p)) {
                out.delete.push((p.name_any(), Deletion::Unwanted));
            }
        }
        // Status, as upstream's updateDaemonSetStatus counts it.
        if e.should_run {
            status.desired_number_scheduled += 1;
            if let Some(first) = here.first() {
                status.current_number_scheduled += 1;
                if pods::is_ready(first) {
                    status.number_ready += 1;
                    if pods::is_available(first, min_ready, now) {
                        available += 1;
                    } else if let Some(wait) = pods::available_in(first, min_ready, now) {
                        let soonest = out.requeue.map_or(wait, |r| r.min(wait));
                        out.requeue = Some(soonest + Duration::from_secs(1));
                    }
                }
                if is_updated(first, hash, generation) {
                    updated += 1;
                }
            }
            should_run.push((name, here));
        } else if exists {
            status.number_misscheduled += 1;
        }
    }
    // Pods pinned to nodes that are gone and not yet bound anywhere.
    let known: BTreeSet<&str> = nodes
        .iter()
        .filter_map(|n| n.metadata.name.as_deref())
        .collect();
    for (node, list) in &by_node {
        if known.contains(node.as_str()) {
            continue;
        }
        for p in list {
            let unbound = p
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_none_or(str::is_empty);
            if unbound && !pods::is_terminating(p) {
                out.delete.push((p.name_any(), Deletion::Unwanted));
            }
        }
    }

    status.number_available = (available > 0).then_some(available);
    status.updated_number_scheduled = (updated > 0).then_some(updated);
    let unavailable = status.desired_number_scheduled - available;
    status.number_unavailable = (unavailable > 0).then_some(unavailable);
    out.status = status;

    // Upstream rolls only once the creations and deletions above have been observed.
    if let Some(ru) = rolling.filter(|_| out.create.is_empty() && out.delete.is_empty()) {
        let desired = out.status.desired_number_scheduled;
        let mut max_unavailable = scaled(ru.max_unavailable.as_ref(), desired);
        let max_surge = scaled(ru.max_surge.as_ref(), desired);
        if desired > 0 && max_unavailable == 0 && max_surge == 0 {
            max_unavailable = 1;
        }
        let ctx = Rollout {
            hash,
            generation,
            min_ready,
            now,
        };
        if max_surge > 0 {
            surge(&ctx, &should_run, max_surge, &mut out);
        } else {
            replace(&ctx, &should_run, max_unavailable, &mut out);
        }
    }
    out
}

struct Rollout<'a> {
    hash: &'a str,
    generation: i64,
    min_ready: i32,
    now: Timestamp,
}

impl Rollout<'_> {
    /// Upstream `findUpdatedPodsOnNode`: the node's new and old live pod; `None` when a node
    /// has two of either (the next manage pass sorts it out).
    fn split<'p>(&self, pods: &[&'p Pod]) -> Option<(Option<&'p Pod>, Option<&'p Pod>)> {
        let (mut new, mut old) = (None, None);
        for p in pods.iter().filter(|p| !pods::is_terminating(p)) {
            let slot = if is_updated(p, self.hash, self.generation) {
                &mut new
            } else {
                &mut old
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(*p);
        }
        Some((new, old))
    }

    fn available(&self, pod: &Pod) -> bool {
        pods::is_available(pod, self.min_ready, self.now)
    }
}

/// `maxUnavailable` rolling update: delete old pods while the nodes without an available
/// pod stay within the budget; an old pod that is not available anyway goes at once.
fn replace(ctx: &Rollout, nodes: &[(&str, Vec<&Pod>)], max_unavailable: i32, out: &mut Plan) {
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for (_, pods) in nodes {
        match ctx.split(pods) {
            None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
            Some((Some(new), None)) => {
                if !ctx.available(new) {
                    unavailable += 1;
                }
            }
            Some((None, Some(old))) => {
                if !ctx.available(old) {
                    replace_now.push(old.name_any());
                } else if unavailable < max_unavailable {
                    candidates.push(old.name_any());
                }
            }
        }
    }
    let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
    out.delete.extend(
        replace_now
            .into_iter()
            .chain(candidates.into_iter().take(room))
            .map(|n| (n, Deletion::Unwanted)),
    );
}

/// `maxSurge` rolling update: start the new pod beside the old one (at once when the old
/// one is not available), and delete the old one when the new one is available.
fn surge(ctx: &Rollout, nodes: &[(&str, Vec<&Pod>)], max_surge: i32, out: &mut Plan) {
    let mut surging = 0;
    let mut create_now = Vec::new();
    let mut candidates = Vec::new();
    for (node, pods) in nodes {
        match ctx.split(pods) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !ctx.available(old) {
                    create_now.push(node.to_string());
                } else if surging < max_surge {
                    candidates.push(node.to_string());
                }
            }
            Some((Some(new), Some(old))) => {
                if ctx.available(new) {
                    out.delete.push((old.name_any(), Deletion::Unwanted));
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
    out.create.extend(
        create_now
            .into_iter()
            .chain(candidates.into_iter().take(room)),
    );
}

async fn create_pod(
    ctx: &Ctx,
    ds: &DaemonSet,
    api: &Api<Pod>,
    node: &str,
    hash: &str,
    generation: i64,
) -> Result<(), Error> {
    let pod = new_pod(ds, node, hash, generation);
    match api.create(&PostParams::default(), &pod).await {
        Ok(created) => {
            let msg = format!("Created pod: {}", created.name_any());
            ctx.recorder
                .record(ds, EventType::Normal, "SuccessfulCreate", &msg)
                .await
        }
        Err(e) => {
            let msg = format!("Error creating: {e}");
            ctx.recorder
                .record(ds, EventType::Warning, "FailedCreate", &msg)
                .await?;
            Err(Error::api(format!(
                "creating a pod of {}/{} for node {node}",
                ds.namespace().unwrap_or_default(),
                ds.name_any()
            ))(e))
        }
    }
}

async fn delete_pod(
    ctx: &Ctx,
    ds: &DaemonSet,
    api: &Api<Pod>,
    pod: &str,
    why: Deletion,
) -> Result<(), Error> {
    if why == Deletion::Failed {
        let msg = format!(
            "Found failed daemon pod {}/{pod}, will try to kill it",
            ds.namespace().unwrap_or_default()
        );
        ctx.recorder
            .record(ds, EventType::Warning, "FailedDaemonPod", &msg)
            .await?;
    }
    match api.delete(pod, &DeleteParams::default()).await {
        Ok(_) => {
            let msg = format!("Deleted pod: {pod}");
            ctx.recorder
                .record(ds, EventType::Normal, "SuccessfulDelete", &msg)
                .await
        }
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::api(format!("deleting pod {pod}"))(e)),
    }
}

/// Writes the status when it changed (an optimistic update: a DaemonSet changed meanwhile
/// is looked at again through its watch event).
async fn write_status(ctx: &Ctx, ds: &DaemonSet, status: DaemonSetStatus) -> Result<(), Error> {
    if ds.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut new = ds.clone();
    new.status = Some(status);
    controller_base::status::replace(&ctx.client, &new).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(name: &str, extra: Value) -> Arc<Node> {
        let mut n = json!({"metadata": {"name": name, "labels": {"disk": "ssd"}}, "spec": {}});
        if let (Some(base), Some(add)) = (n.as_object_mut(), extra.as_object()) {
            for (k, v) in add {
                base.insert(k.clone(), v.clone());
            }
        }
        Arc::new(serde_json::from_value(n).expect("node"))
    }

    fn ds(strategy: Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "d", "uid": "ds-uid", "generation": 1},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "updateStrategy": strategy,
                     "template": {"metadata": {"labels": {"app": "agent"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}))
        .expect("daemonset")
    }

    fn rolling(max_unavailable: Value, max_surge: Value) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": max_unavailable, "maxSurge": max_surge}})
    }

    fn pod(name: &str, node: &str, hash: &str, ready: bool, created: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d", "creationTimestamp": created,
                         "labels": {"app": "agent", "controller-revision-hash": hash}},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .expect("pod")
    }

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().expect("time")
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.delete.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn eligibility_follows_selectors_and_taints() {
        let mut d = ds(rolling(json!(1), json!(0)));
        let spec = daemon_pod_spec(&d.spec.as_ref().expect("spec").template);
        // The daemon tolerations cover a cordoned, not-ready node.
        let cordoned = node(
            "n",
            json!({"spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}),
        );
        assert!(eligibility(&spec, &cordoned).should_run);
        let tainted = node(
            "n",
            json!({"spec": {"taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            eligibility(&spec, &tainted),
            Eligibility {
                should_run: false,
                should_continue: true
            }
        );
        let evicting = node(
            "n",
            json!({"spec": {"taints": [{"key": "dedicated", "effect": "NoExecute"}]}}),
        );
        assert!(!eligibility(&spec, &evicting).should_continue);
        if let Some(s) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
            s.node_selector = Some([("disk".to_string(), "hdd".to_string())].into());
        }
        let spec = daemon_pod_spec(&d.spec.as_ref().expect("spec").template);
        assert!(!eligibility(&spec, &node("n", json!({}))).should_run);
        // hostNetwork pods also tolerate an unavailable network.
        let t = PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                host_network: Some(true),
                ..Default::default()
            }),
        };
        assert_eq!(daemon_pod_spec(&t).tolerations.map(|t| t.len()), Some(7));
    }

    #[test]
    fn new_pods_are_pinned_and_labelled() {
        let d = ds(rolling(json!(1), json!(0)));
        let p = new_pod(&d, "n1", "abc", 3);
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["metadata"]["generateName"], "agent-");
        assert_eq!(v["metadata"]["labels"]["controller-revision-hash"], "abc");
        assert_eq!(v["metadata"]["labels"]["pod-template-generation"], "3");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
        assert_eq!(
            v["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]})
        );
        assert!(v["spec"].get("nodeName").is_none());
        assert_eq!(p.spec.as_ref().and_then(nodefit::target_node), Some("n1"));
    }

    #[test]
    fn one_pod_per_node() {
        let d = ds(rolling(json!(1), json!(0)));
        let nodes = vec![node("n1", json!({})), node("n2", json!({}))];
        let mut failed = pod("agent-f", "n2", "h", false, "2026-01-01T00:00:00Z");
        if let Some(s) = failed.status.as_mut() {
            s.phase = Some("Failed".into());
        }
        let pods = vec![
            pod("agent-a", "n1", "h", true, "2026-01-01T00:00:00Z"),
            pod("agent-b", "n1", "h", true, "2026-01-01T00:00:01Z"),
            failed,
            pod("agent-gone", "n9", "h", true, "2026-01-01T00:00:00Z"),
        ];
        let p = plan(&d, &nodes, &pods, "h", 1, now());
        assert!(p.create.is_empty());
        assert_eq!(names(&p), vec!["agent-b", "agent-f"]);
        assert_eq!(p.delete[1].1, Deletion::Failed);
        assert_eq!(p.status.desired_number_scheduled, 2);
        assert_eq!(p.status.current_number_scheduled, 2);
        assert_eq!(p.status.number_ready, 1);
        let fresh = plan(&d, &nodes, &[], "h", 1, now());
        assert_eq!(fresh.create, vec!["n1", "n2"]);
        assert_eq!(fresh.status.number_unavailable, Some(2));
    }

    #[test]
    fn rolling_update_respects_max_unavailable() {
        let nodes = vec![
            node("n1", json!({})),
            node("n2", json!({})),
            node("n3", json!({})),
        ];
        let old = |n: &str| pod(&format!("old-{n}"), n, "old", true, "2026-01-01T00:00:00Z");
        let pods = vec![old("n1"), old("n2"), old("n3")];
        let p = plan(
            &ds(rolling(json!(1), json!(0))),
            &nodes,
            &pods,
            "new",
            2,
            now(),
        );
        assert_eq!(names(&p), vec!["old-n1"]);
        assert_eq!(p.status.updated_number_scheduled, None);
        // One node is replaced but its new pod is not ready: nothing more goes.
        let pods = vec![
            pod("new-n1", "n1", "new", false, "2026-01-01T00:05:00Z"),
            old("n2"),
            old("n3"),
        ];
        let p = plan(
            &ds(rolling(json!(1), json!(0))),
            &nodes,
            &pods,
            "new",
            2,
            now(),
        );
        assert!(p.delete.is_empty() && p.create.is_empty());
        assert_eq!(p.status.updated_number_scheduled, Some(1));
        // A percentage rounds up: 67% of 3 is 3.
        let pods = vec![old("n1"), old("n2"), old("n3")];
        let p = plan(
            &ds(rolling(json!("67%"), json!(0))),
            &nodes,
            &pods,
            "new",
            2,
            now(),
        );
        assert_eq!(p.delete.len(), 3);
        // OnDelete never replaces.
        let p = plan(
            &ds(json!({"type": "OnDelete"})),
            &nodes,
            &pods,
            "new",
            2,
            now(),
        );
        assert!(p.delete.is_empty());
    }

    #[test]
    fn rolling_update_with_surge() {
        let nodes = vec![node("n1", json!({})), node("n2", json!({}))];
        let d = ds(rolling(json!(0), json!(1)));
        let pods = vec![
            pod("old-1", "n1", "old", true, "2026-01-01T00:00:00Z"),
            pod("old-2", "n2", "old", true, "2026-01-01T00:00:00Z"),
        ];
        let p = plan(&d, &nodes, &pods, "new", 2, now());
        assert_eq!(p.create, vec!["n1"]);
        assert!(p.delete.is_empty());
        let pods = vec![
            pod("old-1", "n1", "old", true, "2026-01-01T00:00:00Z"),
            pod("new-1", "n1", "new", true, "2026-01-01T00:05:00Z"),
            pod("old-2", "n2", "old", true, "2026-01-01T00:00:00Z"),
        ];
        let p = plan(&d, &nodes, &pods, "new", 2, now());
        assert_eq!(names(&p), vec!["old-1"]);
        assert_eq!(p.create, vec!["n2"]);
    }

    #[test]
    fn min_ready_seconds_requeues() {
        let mut d = ds(rolling(json!(1), json!(0)));
        if let Some(s) = d.spec.as_mut() {
            s.min_ready_seconds = Some(900);
        }
        let nodes = vec![node("n1", json!({}))];
        let pods = vec![pod("a", "n1", "h", true, "2026-01-01T00:00:00Z")];
        let p = plan(&d, &nodes, &pods, "h", 1, now());
        assert_eq!(p.status.number_ready, 1);
        assert_eq!(p.status.number_available, None);
        assert_eq!(p.requeue, Some(Duration::from_secs(301)));
    }
}
