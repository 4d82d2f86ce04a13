//! The StatefulSet controller (kube-controller-manager's `statefulset` controller): pods with
//! stable names `NAME-0 … NAME-(N-1)`, stable DNS names through the governing Service, and
//! one PersistentVolumeClaim per claim template and ordinal that outlives its pod.
//!
//! As upstream v1.33:
//! - pod `NAME-i` carries `statefulset.kubernetes.io/pod-name`, `apps.kubernetes.io/pod-index`
//!   and `controller-revision-hash` (the revision's name), with hostname `NAME-i` and
//!   subdomain `serviceName`; its claims `TEMPLATE-NAME-i` are made before it;
//! - `OrderedReady` makes one pod at a time in ordinal order, each only once all before it
//!   are Running, Ready and available, and removes pods beyond `replicas` one at a time from
//!   the highest ordinal; `Parallel` makes and removes them all at once;
//! - a failed or finished pod is deleted and made again under the same name;
//! - the template's revisions are ControllerRevisions (`history`); `RollingUpdate` deletes
//!   the highest-ordinal pod not at the update revision, down to `partition`, one at a time,
//!   each once the previous one is healthy again; a missing pod below the partition is made
//!   at the current revision; `OnDelete` leaves updates to the user;
//! - the status counts replicas, ready, available, current and updated pods and names the
//!   current and update revisions, the current one moving on when the rollout is complete.
//!
//! The decision ([`plan`]) is pure and unit-tested; the reconcile lists the set's pods and
//! revisions fresh and applies the plan's steps in order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::{PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::Shared;

use crate::history::{self, Owner, REVISION_HASH_LABEL};
pub use claims::claims_for;
use controller_base::ownership::{self, controller_ref};
use controller_base::pods;

mod claims;

const COMPONENT: &str = "statefulset-controller";
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

struct Ctx {
    client: Client,
    recorder: Recorder,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<StatefulSet>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_shared_stream(shared.pods.touched());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
    });
    controller_base::runner::drive("statefulset", controller, ctx, reconcile).boxed()
}

async fn reconcile(set: Arc<StatefulSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if set.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let Some(spec) = set.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let uid = set.metadata.uid.clone().unwrap_or_default();
    let Some(selector) = ownership::label_selector(&spec.selector) else {
        return Ok(Action::await_change());
    };

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
    let status = set.status.clone().unwrap_or_default();
    let owner = Owner {
        reference: controller_ref(&*set),
        namespace: &ns,
        name: &name,
        labels: spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
    };
    let (update, collisions) = history::ensure_current(
        &revisions,
        &owner,
        &revs,
        &data,
        status.collision_count.unwrap_or(0),
    )
    .await
    .map_err(Error::api(format!("recording the revision of {ns}/{name}")))?;
    let current = status
        .current_revision
        .as_deref()
        .and_then(|c| revs.iter().find(|r| r.name_any() == c))
        .cloned()
        .unwrap_or_else(|| update.clone());
    let current_template: PodTemplateSpec = history::template_of(&current)
        .and_then(|t| serde_json::from_value(t).ok())
        .unwrap_or_else(|| spec.template.clone());

    // Read fresh, not from a cache: the ordered steps must see the last one's result.
    let pods: Vec<Pod> = ownership::claim_fresh(&ctx.client, &*set, &selector).await?;
    let pods_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);

    let revisions_named = Revisions {
        current: current.name_any(),
        update: update.name_any(),
    };
    let numbered: Vec<(i32, &Pod)> = pods
        .iter()
        .filter_map(|p| Some((ordinal_of(&name, &p.name_any())?, p)))
        .collect();
    claims::sync_owners(&ctx.client, &set, &numbered).await?;
    let plan = plan(&set, &pods, &revisions_named, Timestamp::now());
    for step in &plan.steps {
        apply(
            &ctx,
            &set,
            &pods_api,
            &current_template,
            &revisions_named,
            step,
        )
        .await?;
    }
    for pod in pods.iter().filter(|p| pods::phase_of(p) == "Pending") {
        if let Some(ordinal) = ordinal_of(&name, &pod.name_any()) {
            claims::ensure(&ctx.client, &ctx.recorder, &set, &pod.name_any(), ordinal).await?;
        }
    }

    let mut live: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.labels().get(REVISION_HASH_LABEL).cloned())
        .collect();
    live.insert(current.name_any());
    live.insert(update.name_any());
    let limit = spec.revision_history_limit.unwrap_or(10);
    history::truncate(&revisions, &revs, &live, limit)
        .await
        .map_err(Error::api(format!("pruning the revisions of {ns}/{name}")))?;

    let mut status = plan.status;
    status.observed_generation = set.metadata.generation;
    status.collision_count = (collisions > 0).then_some(collisions);
    write_status(&ctx, &set, status).await?;
    Ok(match plan.requeue {
        Some(d) => Action::requeue(d),
        None => Action::await_change(),
    })
}

/// The names of the current and update revisions.
pub struct Revisions {
    pub current: String,
    pub update: String,
}

/// Which revision a new pod is made from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    Current,
    Update,
}

/// Why a pod is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// It failed; it is made again.
    Failed,
    /// It ran to completion; it is made again.
    Succeeded,
    /// Its ordinal is beyond `replicas`.
    ScaleDown,
    /// It is not at the update revision.
    Update,
}

/// One step of a reconcile, applied in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Create { ordinal: i32, from: Which },
    Delete { pod: String, why: Why },
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    /// The status counters and revisions (observed generation and collisions aside).
    pub status: StatefulSetStatus,
    /// When to look again without an event (a pod waiting out `minReadySeconds`).
    pub requeue: Option<Duration>,
}

/// `NAME-i`'s ordinal when `pod` is named so for the set `set`.
pub fn ordinal_of(set: &str, pod: &str) -> Option<i32> {
    let rest = pod.strip_prefix(set)?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn revision_of(pod: &Pod) -> &str {
    pod.labels()
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
        .unwrap_or("")
}

fn healthy(pod: &Pod) -> bool {
    pods::is_running_and_ready(pod) && !pods::is_terminating(pod)
}

/// The whole decision for one StatefulSet, given its pods.
pub fn plan(set: &StatefulSet, pods: &[Pod], revs: &Revisions, now: Timestamp) -> Plan {
    let default_spec = Default::default();
    let spec = set.spec.as_ref().unwrap_or(&default_spec);
    let name = set.name_any();
    let start = spec.ordinals.as_ref().and_then(|o| o.start).unwrap_or(0);
    let replicas = spec.replicas.unwrap_or(1).max(0);
    let end = start.saturating_add(replicas);
    let monotonic = spec.pod_management_policy.as_deref() != Some("Parallel");
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let strategy = spec.update_strategy.clone().unwrap_or_default();
    let rolling = strategy.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate";
    let partition = strategy
        .rolling_update
        .as_ref()
        .map(|r| r.partition.unwrap_or(0));

    let mut by_ordinal: BTreeMap<i32, &Pod> = BTreeMap::new();
    for p in pods {
        if let Some(o) = ordinal_of(&name, &p.name_any()) {
            by_ordinal.insert(o, p);
        }
    }
    let mut out = Plan {
        status: status_of(pods, &name, revs, rolling, min_ready, now),
        ..Plan::default()
    };
    let wait_for = |pod: &Pod, out: &mut Plan| {
        if let Some(left) = pods::available_in(pod, min_ready, now) {
            out.requeue = Some(left + Duration::from_secs(1));
        }
    };
    // Ready and available; the pod that blocks a monotonic scale-down otherwise.
    let is_available =
        |p: &Pod| pods::is_running_and_ready(p) && pods::is_available(p, min_ready, now);
    let live: Vec<(i32, Option<&Pod>)> = (start..end)
        .map(|o| (o, by_ordinal.get(&o).copied()))
        .collect();
    let mut condemned: Vec<&Pod> = by_ordinal
        .iter()
        .filter(|(o, _)| **o < start || **o >= end)
        .map(|(_, p)| *p)
        .collect();
    condemned.reverse();
    let first_unhealthy = live
        .iter()
        .filter_map(|(_, p)| *p)
        .chain(condemned.iter().copied())
        .find(|p| !healthy(p))
        .map(|p| p.name_any());

    // The pods that should exist, in ordinal order.
    for (ordinal, pod) in &live {
        let Some(pod) = pod else {
            let below_partition = match partition {
                Some(p) => *ordinal < start.saturating_add(p),
                None => {
                    rolling
                        && *ordinal
                            < start.saturating_add(
                                set.status
                                    .as_ref()
                                    .and_then(|s| s.current_replicas)
                                    .unwrap_or(0),
                            )
                }
            };
            let from = if rolling && below_partition {
                Which::Current
            } else {
                Which::Update
            };
            out.steps.push(Step::Create {
                ordinal: *ordinal,
                from,
            });
            if monotonic {
                return out;
            }
            continue;
        };
        let finished = match pods::phase_of(pod) {
            "Failed" => Some(Why::Failed),
            "Succeeded" => Some(Why::Succeeded),
            _ => None,
        };
        if let Some(why) = finished {
            if !pods::is_terminating(pod) {
                out.steps.push(Step::Delete {
                    pod: pod.name_any(),
                    why,
                });
            }
            if monotonic {
                return out;
            }
            continue;
        }
        if monotonic && (pods::is_terminating(pod) || !is_available(pod)) {
            wait_for(pod, &mut out);
            return out;
        }
    }

    // Pods beyond `replicas`, highest ordinal first.
    for pod in &condemned {
        if pods::is_terminating(pod) {
            if monotonic {
                return out;
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(pod.name_any().as_str());
        if monotonic && !is_available(pod) && !first {
            wait_for(pod, &mut out);
            return out;
        }
        out.steps.push(Step::Delete {
            pod: pod.name_any(),
            why: Why::ScaleDown,
        });
        if monotonic {
            return out;
        }
    }

    // Rolling update: the highest ordinal not at the update revision, down to the partition.
    if !rolling {
        return out;
    }
    let update_min = partition.unwrap_or(0).max(0);
    let targets = live
        .iter()
        .skip(usize::try_from(update_min).unwrap_or(usize::MAX));
    for (_, pod) in targets.rev() {
        let Some(pod) = pod else {
            continue;
        };
        if revision_of(pod) != revs.update && !pods::is_terminating(pod) {
            out.steps.push(Step::Delete {
                pod: pod.name_any(),
                why: Why::Update,
            });
            if let Some(c) = out.status.current_replicas.as_mut() {
                *c -= 1;
            }
            return out;
        }
        if !healthy(pod) {
            return out;
        }
    }
    out
}

/// The status counters over the set's pods (upstream's `updateStatus` and
/// `completeRollingUpdate`).
fn status_of(
    pods: &[Pod],
    set: &str,
    revs: &Revisions,
    rolling: bool,
    min_ready: i32,
    now: Timestamp,
) -> StatefulSetStatus {
    let (mut replicas, mut ready, mut available, mut current, mut updated) = (0, 0, 0, 0, 0);
    for p in pods
        .iter()
        .filter(|p| ordinal_of(set, &p.name_any()).is_some())
    {
        replicas += 1;
        if pods::is_running_and_ready(p) {
            ready += 1;
            if pods::is_available(p, min_ready, now) {
                available += 1;
            }
        }
        if !pods::is_terminating(p) {
            if revision_of(p) == revs.current {
                current += 1;
            }
            if revision_of(p) == revs.update {
                updated += 1;
            }
        }
    }
    let mut current_revision = revs.current.clone();
    if rolling && updated == replicas && ready == replicas {
        current = updated;
        current_revision = revs.update.clone();
    }
    let some = |n: i32| (n > 0).then_some(n);
    StatefulSetStatus {
        replicas,
        ready_replicas: some(ready),
        available_replicas: Some(available),
        current_replicas: some(current),
        updated_replicas: some(updated),
        current_revision: Some(current_revision),
        update_revision: Some(revs.update.clone()),
        ..Default::default()
    }
}

/// Pod `NAME-i` from `template` at revision `revision` (upstream `newStatefulSetPod`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = format!("{}-{ordinal}", set.name_any());
    let meta = template.metadata.clone().unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(REVISION_HASH_LABEL.into(), revision.to_string());
    let mut spec = template.spec.clone().unwrap_or_default();
    spec.hostname = Some(name.clone());
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // Each claim template becomes the volume of that name, replacing one in the template.
    let claims = claims_for(set, ordinal);
    let templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref());
    let mut volumes: Vec<Volume> = templates
        .into_iter()
        .flatten()
        .zip(&claims)
        .map(|(t, c)| Volume {
            name: t.metadata.name.clone().unwrap_or_default(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: c.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    let claimed: BTreeSet<String> = volumes.iter().map(|v| v.name.clone()).collect();
    volumes.extend(
        spec.volumes
            .take()
            .unwrap_or_default()
            .into_iter()
            .filter(|v| !claimed.contains(&v.name)),
    );
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: set.namespace(),
            labels: Some(labels),
            annotations: meta.annotations,
            finalizers: meta.finalizers,
            owner_references: Some(vec![controller_ref(set)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

async fn apply(
    ctx: &Ctx,
    set: &StatefulSet,
    pods: &Api<Pod>,
    current_template: &PodTemplateSpec,
    revs: &Revisions,
    step: &Step,
) -> Result<(), Error> {
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    match step {
        Step::Create { ordinal, from } => {
            let (template, revision) = match from {
                Which::Current => (current_template.clone(), revs.current.as_str()),
                Which::Update => (
                    set.spec
                        .as_ref()
                        .map(|s| s.template.clone())
                        .unwrap_or_default(),
                    revs.update.as_str(),
                ),
            };
            let pod = new_pod(set, &template, *ordinal, revision);
            let pod_name = pod.name_any();
            claims::ensure(&ctx.client, &ctx.recorder, set, &pod_name, *ordinal).await?;
            match pods.create(&PostParams::default(), &pod).await {
                Ok(_) => {
                    let msg = format!("create Pod {pod_name} in StatefulSet {set_name} successful");
                    ctx.recorder
                        .record(set, EventType::Normal, "SuccessfulCreate", &msg)
                        .await
                }
                // Made meanwhile (an earlier reconcile): its watch event comes.
                Err(e) if is_conflict(&e) => Ok(()),
                Err(e) => {
                    let msg = format!(
                        "create Pod {pod_name} in StatefulSet {set_name} failed error: {e}"
                    );
                    ctx.recorder
                        .record(set, EventType::Warning, "FailedCreate", &msg)
                        .await?;
                    Err(Error::api(format!("creating pod {ns}/{pod_name}"))(e))
                }
            }
        }
        Step::Delete { pod, why } => {
            let recreate = match why {
                Why::Failed => Some(("RecreatingFailedPod", "failed")),
                Why::Succeeded => Some(("RecreatingTerminatedPod", "terminated")),
                Why::ScaleDown | Why::Update => None,
            };
            if let Some((reason, what)) = recreate {
                let msg = format!("StatefulSet {ns}/{set_name} is recreating {what} Pod {pod}");
                ctx.recorder
                    .record(set, EventType::Warning, reason, &msg)
                    .await?;
            }
            match pods.delete(pod, &DeleteParams::default()).await {
                Ok(_) => {
                    let msg = format!("delete Pod {pod} in StatefulSet {set_name} successful");
                    ctx.recorder
                        .record(set, EventType::Normal, "SuccessfulDelete", &msg)
                        .await
                }
                Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
                Err(e) => Err(Error::api(format!("deleting pod {ns}/{pod}"))(e)),
            }
        }
    }
}

/// Writes the status when it changed (optimistic: a set changed meanwhile is looked at again
/// through its watch event).
async fn write_status(
    ctx: &Ctx,
    set: &StatefulSet,
    status: StatefulSetStatus,
) -> Result<(), Error> {
    if set.status.as_ref() == Some(&status) {
        return Ok(());
    }
    let mut new = set.clone();
    new.status = Some(status);
    controller_base::status::replace(&ctx.client, &new).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn set(replicas: i32, policy: &str, strategy: Value) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "sts-uid", "generation": 1},
            "spec": {"replicas": replicas, "serviceName": "nginx", "podManagementPolicy": policy,
                     "updateStrategy": strategy,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}],
                                           "volumes": [{"name": "data", "emptyDir": {}},
                                                       {"name": "scratch", "emptyDir": {}}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .expect("statefulset")
    }

    fn rolling(partition: i32) -> Value {
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}})
    }

    fn pod(name: &str, rev: &str, phase: &str, ready: bool) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "d",
                         "labels": {"app": "web", "controller-revision-hash": rev}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready",
                "status": if ready { "True" } else { "False" },
                "lastTransitionTime": "2026-01-01T00:00:00Z"}]}}))
        .expect("pod")
    }

    fn up(name: &str, rev: &str) -> Pod {
        pod(name, rev, "Running", true)
    }

    fn revs(current: &str, update: &str) -> Revisions {
        Revisions {
            current: current.into(),
            update: update.into(),
        }
    }

    fn now() -> Timestamp {
        "2026-01-01T00:10:00Z".parse().expect("time")
    }

    fn create(ordinal: i32, from: Which) -> Step {
        Step::Create { ordinal, from }
    }

    fn delete(pod: &str, why: Why) -> Step {
        Step::Delete {
            pod: pod.into(),
            why,
        }
    }

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_of("web", "web-0"), Some(0));
        assert_eq!(ordinal_of("web", "web-12"), Some(12));
        assert_eq!(ordinal_of("web", "web-x"), None);
        assert_eq!(ordinal_of("web", "web-"), None);
        assert_eq!(ordinal_of("web", "webby-1"), None);
        assert_eq!(ordinal_of("web", "web-1-2"), None);
    }

    #[test]
    fn ordered_ready_starts_one_at_a_time() {
        let s = set(3, "OrderedReady", rolling(0));
        let r = revs("web-a", "web-a");
        assert_eq!(
            plan(&s, &[], &r, now()).steps,
            vec![create(0, Which::Update)]
        );
        // web-0 is not ready yet: nothing more.
        let pods = vec![pod("web-0", "web-a", "Pending", false)];
        assert!(plan(&s, &pods, &r, now()).steps.is_empty());
        let pods = vec![up("web-0", "web-a")];
        assert_eq!(
            plan(&s, &pods, &r, now()).steps,
            vec![create(1, Which::Update)]
        );
        // A deleted middle pod comes back first, under its own name.
        let pods = vec![up("web-0", "web-a"), up("web-2", "web-a")];
        assert_eq!(
            plan(&s, &pods, &r, now()).steps,
            vec![create(1, Which::Update)]
        );
        // Parallel makes all of them at once.
        let p = set(3, "Parallel", rolling(0));
        assert_eq!(
            plan(&p, &[], &r, now()).steps,
            vec![
                create(0, Which::Update),
                create(1, Which::Update),
                create(2, Which::Update)
            ]
        );
    }

    #[test]
    fn failed_pods_are_replaced() {
        let s = set(2, "OrderedReady", rolling(0));
        let r = revs("web-a", "web-a");
        let pods = vec![pod("web-0", "web-a", "Failed", false), up("web-1", "web-a")];
        assert_eq!(
            plan(&s, &pods, &r, now()).steps,
            vec![delete("web-0", Why::Failed)]
        );
    }

    #[test]
    fn scale_down_removes_the_highest_first() {
        let r = revs("web-a", "web-a");
        let pods: Vec<Pod> = (0..4).map(|i| up(&format!("web-{i}"), "web-a")).collect();
        let s = set(2, "OrderedReady", rolling(0));
        assert_eq!(
            plan(&s, &pods, &r, now()).steps,
            vec![delete("web-3", Why::ScaleDown)]
        );
        let mut going = pods.clone();
        going[3].metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:09:00Z")).expect("time"));
        assert!(plan(&s, &going, &r, now()).steps.is_empty());
        let p = set(2, "Parallel", rolling(0));
        assert_eq!(
            plan(&p, &pods, &r, now()).steps,
            vec![
                delete("web-3", Why::ScaleDown),
                delete("web-2", Why::ScaleDown)
            ]
        );
        let status = plan(&s, &pods, &r, now()).status;
        assert_eq!(status.replicas, 4);
        assert_eq!(status.ready_replicas, Some(4));
    }

    #[test]
    fn rolling_update_goes_down_to_the_partition() {
        let s = set(3, "OrderedReady", rolling(1));
        let r = revs("web-a", "web-b");
        let pods: Vec<Pod> = (0..3).map(|i| up(&format!("web-{i}"), "web-a")).collect();
        let p = plan(&s, &pods, &r, now());
        assert_eq!(p.steps, vec![delete("web-2", Why::Update)]);
        assert_eq!(p.status.current_replicas, Some(2));
        assert_eq!(p.status.current_revision.as_deref(), Some("web-a"));
        // web-2 is back at the new revision and ready: web-1 is next, web-0 stays.
        let pods = vec![
            up("web-0", "web-a"),
            up("web-1", "web-a"),
            up("web-2", "web-b"),
        ];
        assert_eq!(
            plan(&s, &pods, &r, now()).steps,
            vec![delete("web-1", Why::Update)]
        );
        let pods = vec![
            up("web-0", "web-a"),
            up("web-1", "web-b"),
            up("web-2", "web-b"),
        ];
        let p = plan(&s, &pods, &r, now());
        assert!(p.steps.is_empty());
        assert_eq!(p.status.updated_replicas, Some(2));
        // The new web-2 is not ready yet: wait.
        let pods = vec![
            up("web-0", "web-a"),
            up("web-1", "web-a"),
            pod("web-2", "web-b", "Running", false),
        ];
        assert!(plan(&s, &pods, &r, now()).steps.is_empty());
        // A missing pod below the partition comes back at the current revision.
        let pods = vec![up("web-1", "web-a"), up("web-2", "web-b")];
        assert_eq!(
            plan(&s, &pods, &r, now()).steps,
            vec![create(0, Which::Current)]
        );
        // With partition 0 all are updated and the current revision moves on.
        let s0 = set(3, "OrderedReady", rolling(0));
        let pods: Vec<Pod> = (0..3).map(|i| up(&format!("web-{i}"), "web-b")).collect();
        let p = plan(&s0, &pods, &r, now());
        assert!(p.steps.is_empty());
        assert_eq!(p.status.current_revision.as_deref(), Some("web-b"));
        assert_eq!(p.status.current_replicas, Some(3));
        // OnDelete leaves old pods alone.
        let od = set(3, "OrderedReady", json!({"type": "OnDelete"}));
        let pods: Vec<Pod> = (0..3).map(|i| up(&format!("web-{i}"), "web-a")).collect();
        assert!(plan(&od, &pods, &r, now()).steps.is_empty());
    }

    #[test]
    fn pods_have_stable_identity_and_claims() {
        let s = set(3, "OrderedReady", rolling(0));
        let template = s
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let p = serde_json::to_value(new_pod(&s, &template, 2, "web-abc")).expect("json");
        assert_eq!(p["metadata"]["name"], "web-2");
        assert_eq!(
            p["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
            "web-2"
        );
        assert_eq!(p["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "2");
        assert_eq!(
            p["metadata"]["labels"]["controller-revision-hash"],
            "web-abc"
        );
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
        assert_eq!(p["spec"]["hostname"], "web-2");
        assert_eq!(p["spec"]["subdomain"], "nginx");
        assert_eq!(
            p["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}},
                   {"name": "scratch", "emptyDir": {}}])
        );
        let claims = claims_for(&s, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-web-2");
        assert_eq!(
            claims[0].labels().get("app").map(String::as_str),
            Some("web")
        );
        assert!(claims[0].metadata.owner_references.is_none());
    }
}
