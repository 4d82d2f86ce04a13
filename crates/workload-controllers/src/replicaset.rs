//! The ReplicaSet controller of kube-controller-manager: keeps `spec.replicas` active pods
//! matching the selector. It claims pods (adopting matching orphans, releasing pods whose
//! labels stopped matching), creates missing pods from the template in slow-start batches,
//! deletes the surplus in upstream's order (see [`deletion_order`]), and reports
//! `replicas`, `fullyLabeledReplicas`, `readyReplicas`, `availableReplicas` (Ready for
//! `minReadySeconds`) and `observedGeneration`, with `SuccessfulCreate` /
//! `SuccessfulDelete` events.
//!
//! Creations and deletions are counted in [`Expectations`] until the pod cache shows them,
//! so a reconcile that runs before the cache caught up never acts twice.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{ReplicaSet, ReplicaSetCondition, ReplicaSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::Store;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::Shared;

use controller_base::ownership::{
    claim, key_of, label_selector, owners_to_sync, pod_from_template, selects, slow_start_batch,
    watch_children, Expectations, EXPECTATIONS_TTL,
};
use controller_base::pods;

/// Upstream's `BurstReplicas`: at most this many creations or deletions per sync.
const BURST_REPLICAS: usize = 500;
/// Upstream's `SlowStartInitialBatchSize`.
const SLOW_START_INITIAL_BATCH: usize = 1;
const COMPONENT: &str = "replicaset-controller";
/// Upstream's `controller.kubernetes.io/pod-deletion-cost`: pods with a lower cost go first.
const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

struct Ctx {
    client: Client,
    pods: Store<Pod>,
    expectations: Arc<Expectations>,
    recorder: Recorder,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let expectations = Arc::new(Expectations::default());
    let controller = controller_base::cache::controller(
        Api::<ReplicaSet>::all(client.clone()),
        watcher::Config::default(),
    );
    let sets = controller.store();
    let pods = shared.pods.store();
    let pod_events = watch_children(&shared.pods, "ReplicaSet", expectations.clone());
    let controller = controller.watches_shared_stream(pod_events, move |pod: Arc<Pod>| {
        owners_to_sync(&*pod, &sets, |rs: &ReplicaSet| {
            rs.spec.as_ref().map(|s| &s.selector)
        })
    });
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        pods,
        expectations,
    });
    controller_base::runner::drive("replicaset", controller, ctx, reconcile)
        .map(|_| ())
        .boxed()
}

async fn reconcile(rs: Arc<ReplicaSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = key_of(&rs.metadata);
    let ns = rs.namespace().unwrap_or_default();
    let Some(spec) = rs.spec.as_ref() else {
        return Ok(Action::await_change());
    };
    // Validation keeps a selector here that parses; one that does not selects nothing.
    let Some(selector) = label_selector(&spec.selector) else {
        return Ok(Action::await_change());
    };
    controller_base::cache::ready(&ctx.pods)
        .await
        .map_err(|e| Error::Cache("pod", e))?;
    let needs_sync = ctx.expectations.satisfied(&key);
    let candidates = ctx
        .pods
        .state()
        .into_iter()
        .filter(|p| p.namespace().as_deref() == Some(ns.as_str()) && pods::is_active(p));
    let claimed = claim(&ctx.client, &*rs, &selector, candidates).await?;
    let managed = if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        manage_replicas(&ctx, &rs, &key, &claimed).await
    } else {
        Ok(())
    };
    let now = Timestamp::now();
    let status = calculate_status(&rs, &claimed, managed.as_ref().err(), now);
    if rs.status.as_ref() != Some(&status) {
        Api::<ReplicaSet>::namespaced(ctx.client.clone(), &ns)
            .patch_status(
                &rs.name_any(),
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({ "status": status_patch(&status) })),
            )
            .await
            .map_err(Error::api(format!(
                "updating the status of ReplicaSet {key}"
            )))?;
    }
    managed.map_err(|m| m.source)?;
    if !ctx.expectations.satisfied(&key) {
        // The pod events that meet the expectations requeue it; this is the safety net
        // for a lost one.
        return Ok(Action::requeue(EXPECTATIONS_TTL));
    }
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    Ok(next_availability(&claimed, min_ready, now)
        .map(Action::requeue)
        .unwrap_or_else(Action::await_change))
}

/// How long until the next Ready pod becomes available, if any is waiting.
fn next_availability(pods: &[Arc<Pod>], min_ready: i32, now: Timestamp) -> Option<Duration> {
    if min_ready <= 0 {
        return None;
    }
    pods.iter()
        .filter(|p| !pods::is_available(p, min_ready, now))
        .filter_map(|p| pods::available_at(p, min_ready))
        .min()
        .map(|at| {
            let wait = now.duration_until(at).unsigned_abs();
            wait.max(Duration::from_millis(100)) + Duration::from_millis(100)
        })
}

/// Why managing replicas failed (kept in the status as the `ReplicaFailure` condition).
#[derive(Debug)]
struct ManageError {
    reason: &'static str,
    source: Error,
}

/// Creates or deletes pods so that `claimed` (active, owned) pods number `spec.replicas`.
async fn manage_replicas(
    ctx: &Ctx,
    rs: &ReplicaSet,
    key: &str,
    claimed: &[Arc<Pod>],
) -> Result<(), ManageError> {
    let want = usize::try_from(
        rs.spec
            .as_ref()
            .and_then(|s| s.replicas)
            .unwrap_or(1)
            .max(0),
    )
    .unwrap_or(0);
    let have = claimed.len();
    let ns = rs.namespace().unwrap_or_default();
    let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    if have < want {
        let n = (want - have).min(BURST_REPLICAS);
        let Some(template) = rs.spec.as_ref().and_then(|s| s.template.as_ref()) else {
            return Ok(());
        };
        let pod = pod_from_template(rs, template);
        ctx.expectations.expect(key, n, []);
        let (created, err) = slow_start_batch(n, SLOW_START_INITIAL_BATCH, |_| {
            let api = api.clone();
            let pod = pod.clone();
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        record(
                            ctx,
                            rs,
                            EventType::Normal,
                            "SuccessfulCreate",
                            &format!("Created pod: {}", p.name_any()),
                        )
                        .await;
                        Ok(())
                    }
                    Err(e) => {
                        record(
                            ctx,
                            rs,
                            EventType::Warning,
                            "FailedCreate",
                            &format!("Error creating: {}", error_text(&e)),
                        )
                        .await;
                        Err(e)
                    }
                }
            }
        })
        .await;
        // Creations that failed or never ran will not show up in the cache.
        for _ in created..n {
            ctx.expectations.creation_observed(key);
        }
        if let Some(e) = err {
            return Err(ManageError {
                reason: "FailedCreate",
                source: Error::api(format!("creating pods for ReplicaSet {key}"))(e),
            });
        }
    } else if have > want {
        let n = (have - want).min(BURST_REPLICAS);
        let doomed = deletion_order(claimed, Timestamp::now());
        let doomed = &doomed[..n];
        let pod_keys: Vec<String> = doomed.iter().map(|p| key_of(&p.metadata)).collect();
        ctx.expectations.expect(key, 0, pod_keys);
        let results = futures::future::join_all(doomed.iter().map(|p| {
            let api = api.clone();
            async move {
                let name = p.name_any();
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {
                        record(
                            ctx,
                            rs,
                            EventType::Normal,
                            "SuccessfulDelete",
                            &format!("Deleted pod: {name}"),
                        )
                        .await;
                        Ok(())
                    }
                    // Already gone: what we wanted, and its deletion event may never come.
                    Err(e) if is_not_found(&e) => {
                        ctx.expectations
                            .deletion_observed(key, &key_of(&p.metadata));
                        Ok(())
                    }
                    Err(e) => {
                        ctx.expectations
                            .deletion_observed(key, &key_of(&p.metadata));
                        record(
                            ctx,
                            rs,
                            EventType::Warning,
                            "FailedDelete",
                            &format!("Error deleting: {}", error_text(&e)),
                        )
                        .await;
                        Err(e)
                    }
                }
            }
        }))
        .await;
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(ManageError {
                reason: "FailedDelete",
                source: Error::api(format!("deleting pods of ReplicaSet {key}"))(e),
            });
        }
    }
    Ok(())
}

/// The API's message for an error (what upstream's events quote).
fn error_text(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

async fn record(ctx: &Ctx, rs: &ReplicaSet, type_: EventType, reason: &str, message: &str) {
    if let Err(e) = ctx.recorder.record(rs, type_, reason, message).await {
        tracing::debug!(error = %controller_base::runner::chain(&e), "event not recorded");
    }
}

/// The pods of `pods` in the order upstream's `ActivePodsWithRanks` deletes them: unassigned
/// before assigned; Pending before Unknown before Running; not Ready before Ready; lower
/// `pod-deletion-cost` first; pods sharing a node with more of their siblings first; Ready
/// for a shorter time first; more container restarts first; newer first.
pub fn deletion_order(pods: &[Arc<Pod>], now: Timestamp) -> Vec<Arc<Pod>> {
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    for p in pods {
        if let Some(node) = node_of(p) {
            *per_node.entry(node.to_string()).or_default() += 1;
        }
    }
    let mut ranked: Vec<_> = pods
        .iter()
        .map(|p| {
            let node = node_of(p);
            let phase = match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
                Some("Unknown") => 1,
                Some("Running") => 2,
                _ => 0,
            };
            let ready = pods::is_ready(p);
            let cost: i32 = p
                .annotations()
                .get(DELETION_COST)
                .and_then(|c| c.parse().ok())
                .unwrap_or(0);
            let doubled_up = node.map_or(0, |n| per_node.get(n).copied().unwrap_or(0));
            // Only compared between Ready pods: the later it became Ready, the sooner it goes.
            let ready_since = ready
                .then(|| pods::available_at(p, 0))
                .flatten()
                .unwrap_or(now);
            let restarts = max_restarts(p);
            let created = p
                .metadata
                .creation_timestamp
                .as_ref()
                .map(|t| t.0)
                .unwrap_or(now);
            let rank = (
                node.is_some(),
                phase,
                ready,
                cost,
                Reverse(doubled_up),
                Reverse(ready_since),
                Reverse(restarts),
                Reverse(created),
            );
            (rank, p.clone())
        })
        .collect();
    ranked.sort_by_key(|r| r.0);
    ranked.into_iter().map(|(_, p)| p).collect()
}

fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// The highest restart count among the pod's containers.
fn max_restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .max()
        .unwrap_or(0)
}

/// Upstream `calculateStatus`: counts over the owned active pods; a failed create or
/// delete shows as the `ReplicaFailure` condition until one succeeds.
fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    failure: Option<&ManageError>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.as_ref();
    let min_ready = spec.and_then(|s| s.min_ready_seconds).unwrap_or(0);
    let template_labels = spec
        .and_then(|s| s.template.as_ref())
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let template_selector: kube::core::Selector = template_labels.into_iter().collect();
    let count = |f: &dyn Fn(&Pod) -> bool| {
        i32::try_from(pods.iter().filter(|p| f(p)).count()).unwrap_or(i32::MAX)
    };
    let mut conditions: Vec<ReplicaSetCondition> = rs
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    match failure {
        Some(f) => {
            let message = controller_base::runner::chain(&f.source);
            let unchanged = conditions
                .iter()
                .any(|c| c.type_ == "ReplicaFailure" && c.reason.as_deref() == Some(f.reason));
            if !unchanged {
                conditions.retain(|c| c.type_ != "ReplicaFailure");
                conditions.push(ReplicaSetCondition {
                    type_: "ReplicaFailure".into(),
                    status: "True".into(),
                    reason: Some(f.reason.into()),
                    message: Some(message),
                    last_transition_time: Some(Time(now)),
                });
            }
        }
        None => conditions.retain(|c| c.type_ != "ReplicaFailure"),
    }
    ReplicaSetStatus {
        replicas: count(&|_| true),
        fully_labeled_replicas: Some(count(&|p| selects(&template_selector, &p.metadata))),
        ready_replicas: Some(count(&|p| pods::is_ready(p))),
        available_replicas: Some(count(&|p| pods::is_available(p, min_ready, now))),
        observed_generation: rs.metadata.generation,
        conditions: (!conditions.is_empty()).then_some(conditions),
        terminating_replicas: rs.status.as_ref().and_then(|s| s.terminating_replicas),
    }
}

/// The status as a merge patch: every count written, conditions removed when none.
fn status_patch(status: &ReplicaSetStatus) -> serde_json::Value {
    let mut v = serde_json::to_value(status).unwrap_or_default();
    if let Some(m) = v.as_object_mut() {
        m.entry("conditions").or_insert(serde_json::Value::Null);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(
        name: &str,
        node: Option<&str>,
        phase: &str,
        ready_at: Option<&str>,
        restarts: i32,
        created: &str,
    ) -> Arc<Pod> {
        let conditions =
            ready_at.map(|t| json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]));
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created,
                             "labels": {"app": "web"}},
                "spec": {"nodeName": node, "containers": [{"name": "c"}]},
                "status": {"phase": phase, "conditions": conditions,
                           "containerStatuses": [{"name": "c", "restartCount": restarts, "ready": ready_at.is_some(),
                                                  "image": "i", "imageID": ""}]}
            }))
            .expect("pod"),
        )
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<String> {
        pods.iter().map(|p| p.name_any()).collect()
    }

    #[test]
    fn scale_down_takes_the_least_useful_pods_first() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().expect("time");
        let pods = vec![
            pod(
                "old-ready",
                Some("n1"),
                "Running",
                Some("2026-01-01T00:10:00Z"),
                0,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "new-ready",
                Some("n1"),
                "Running",
                Some("2026-01-01T00:50:00Z"),
                0,
                "2026-01-01T00:40:00Z",
            ),
            pod(
                "crashy",
                Some("n1"),
                "Running",
                Some("2026-01-01T00:10:00Z"),
                5,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "not-ready",
                Some("n1"),
                "Running",
                None,
                0,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "pending",
                Some("n1"),
                "Pending",
                None,
                0,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "unknown",
                Some("n1"),
                "Unknown",
                None,
                0,
                "2026-01-01T00:00:00Z",
            ),
            pod(
                "unassigned",
                None,
                "Pending",
                None,
                0,
                "2026-01-01T00:00:00Z",
            ),
        ];
        assert_eq!(
            names(&deletion_order(&pods, now)),
            vec![
                "unassigned",
                "pending",
                "unknown",
                "not-ready",
                "new-ready",
                "crashy",
                "old-ready"
            ]
        );
    }

    #[test]
    fn newer_pods_go_first_among_equals_and_deletion_cost_counts() {
        let now: Timestamp = "2026-01-01T01:00:00Z".parse().expect("time");
        let a = pod("a", Some("n1"), "Pending", None, 0, "2026-01-01T00:00:00Z");
        let b = pod("b", Some("n1"), "Pending", None, 0, "2026-01-01T00:30:00Z");
        assert_eq!(
            names(&deletion_order(&[a.clone(), b.clone()], now)),
            vec!["b", "a"]
        );
        let mut cheap = (*a).clone();
        cheap.metadata.annotations = Some([(DELETION_COST.to_string(), "-10".to_string())].into());
        assert_eq!(
            names(&deletion_order(&[b, Arc::new(cheap)], now)),
            vec!["a", "b"]
        );
    }

    fn rs(min_ready: i32) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1", "generation": 4},
            "spec": {"replicas": 3, "minReadySeconds": min_ready,
                     "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"replicas": 0}
        }))
        .expect("rs")
    }

    #[test]
    fn status_counts_ready_available_and_fully_labeled() {
        let now: Timestamp = "2026-01-01T00:00:30Z".parse().expect("time");
        let mut labeled = (*pod(
            "a",
            Some("n1"),
            "Running",
            Some("2026-01-01T00:00:00Z"),
            0,
            "2026-01-01T00:00:00Z",
        ))
        .clone();
        labeled.metadata.labels =
            Some([("app".into(), "web".into()), ("tier".into(), "fe".into())].into());
        let pods = vec![
            Arc::new(labeled),
            pod(
                "b",
                Some("n1"),
                "Running",
                Some("2026-01-01T00:00:20Z"),
                0,
                "2026-01-01T00:00:00Z",
            ),
            pod("c", Some("n1"), "Pending", None, 0, "2026-01-01T00:00:00Z"),
        ];
        let s = calculate_status(&rs(20), &pods, None, now);
        let v: Value = serde_json::to_value(&s).expect("json");
        assert_eq!(
            v,
            json!({"replicas": 3, "fullyLabeledReplicas": 1, "readyReplicas": 2,
                   "availableReplicas": 1, "observedGeneration": 4})
        );
        // b becomes available 20 s after it became Ready, 10 s from now (plus a margin).
        let wait = next_availability(&pods, 20, now).expect("a pod waits");
        assert!(
            wait >= Duration::from_secs(10) && wait < Duration::from_secs(11),
            "{wait:?}"
        );
        assert_eq!(next_availability(&pods, 0, now), None);
        let patch = status_patch(&s);
        assert_eq!(patch["conditions"], Value::Null);
    }

    #[test]
    fn failures_show_as_a_replica_failure_condition() {
        let now: Timestamp = "2026-01-01T00:00:30Z".parse().expect("time");
        let failure = ManageError {
            reason: "FailedCreate",
            source: Error::OwnerChanged {
                kind: "ReplicaSet".into(),
                namespace: "ns".into(),
                name: "web".into(),
                wanted: "u1".into(),
                found: None,
            },
        };
        let s = calculate_status(&rs(0), &[], Some(&failure), now);
        let conds = s.conditions.clone().unwrap_or_default();
        assert_eq!(conds.len(), 1);
        assert_eq!(conds[0].type_, "ReplicaFailure");
        assert_eq!(conds[0].reason.as_deref(), Some("FailedCreate"));
        let mut failed = rs(0);
        failed.status = Some(s);
        let cleared = calculate_status(&failed, &[], None, now);
        assert_eq!(cleared.conditions, None);
    }
}
