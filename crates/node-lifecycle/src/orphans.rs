//! The pod garbage collector's orphan pass (kube-controller-manager's
//! `pod-garbage-collector`, `gcOrphaned`): a pod bound to a Node that no longer exists can
//! never be confirmed terminated by a kubelet, so once the node has been missing for a
//! quarantine (and a fresh read agrees) the pod is marked `Failed` with the
//! `DisruptionTarget` condition and deleted outright. This is what lets controllers that
//! wait for a pod to be gone (StatefulSets) replace the pods of a node an administrator
//! removed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use serde_json::json;

use controller_base::error::{is_conflict, is_not_found, Error};

/// Upstream's quarantine before a missing node's pods are collected (a node may be in a
/// cache's blind spot for a moment, never for this long).
pub const QUARANTINE: Duration = Duration::from_secs(40);
const RETRY_RACE: Duration = Duration::from_millis(200);

/// How long the pod must still wait, if its node went missing at `since`.
pub fn quarantine_left(since: Timestamp, now: Timestamp) -> Option<Duration> {
    let end = since.checked_add(QUARANTINE).unwrap_or(Timestamp::MAX);
    Duration::try_from(end.duration_since(now))
        .ok()
        .filter(|d| !d.is_zero())
}

/// The condition and status upstream writes before the deletion.
fn failed_status(pod: &Pod, now: Timestamp) -> serde_json::Value {
    let mut conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    conditions.retain(|c| c.type_ != "DisruptionTarget");
    conditions.push(PodCondition {
        type_: "DisruptionTarget".into(),
        status: "True".into(),
        reason: Some("DeletionByPodGC".into()),
        message: Some("PodGC: node no longer exists".into()),
        last_transition_time: Some(Time(now)),
        ..Default::default()
    });
    let phase = match pod.status.as_ref().and_then(|s| s.phase.as_deref()) {
        Some(done @ ("Succeeded" | "Failed")) => done.to_string(),
        _ => "Failed".to_string(),
    };
    json!({
        "metadata": {"resourceVersion": pod.resource_version()},
        "status": {"phase": phase, "conditions": conditions},
    })
}

/// Pods whose node is missing, by `namespace/name`: (uid, first seen missing).
#[derive(Default)]
pub struct Orphans(Mutex<HashMap<String, (String, Timestamp)>>);

impl Orphans {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Timestamp)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn forget(&self, key: &str) {
        self.lock().remove(key);
    }

    /// The pass for a pod whose node `node` is not in the cache.
    pub async fn collect(
        &self,
        client: &Client,
        pod: &Pod,
        key: &str,
        node: &str,
    ) -> Result<Action, Error> {
        let now = Timestamp::now();
        let uid = pod.uid().unwrap_or_default();
        let since = {
            let mut seen = self.lock();
            let entry = seen.entry(key.to_string()).or_insert((uid.clone(), now));
            if entry.0 != uid {
                *entry = (uid.clone(), now);
            }
            entry.1
        };
        if let Some(left) = quarantine_left(since, now) {
            return Ok(Action::requeue(left));
        }
        match Api::<Node>::all(client.clone()).get_opt(node).await {
            Ok(None) => {}
            Ok(Some(_)) => {
                self.forget(key);
                return Ok(Action::await_change());
            }
            Err(e) => return Err(Error::api(format!("reading node {node}"))(e)),
        }
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        tracing::info!(pod = %key, node, "deleting a pod whose node no longer exists");
        let api = Api::<Pod>::namespaced(client.clone(), &ns);
        let patch = failed_status(pod, now);
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {
                self.forget(key);
                return Ok(Action::await_change());
            }
            Err(e) if is_conflict(&e) => return Ok(Action::requeue(RETRY_RACE)),
            Err(e) => return Err(Error::api(format!("marking pod {key} failed"))(e)),
        }
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&name, &params).await {
            Ok(_) => {}
            Err(e) if is_not_found(&e) || is_conflict(&e) => {}
            Err(e) => return Err(Error::api(format!("deleting pod {key}"))(e)),
        }
        self.forget(key);
        Ok(Action::await_change())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid time")
    }

    #[test]
    fn collected_only_after_the_quarantine() {
        assert_eq!(
            quarantine_left(ts(0), ts(10)),
            Some(Duration::from_secs(30))
        );
        assert_eq!(quarantine_left(ts(0), ts(40)), None);
        assert_eq!(quarantine_left(ts(0), ts(400)), None);
    }

    #[test]
    fn the_pod_fails_with_the_pod_gc_condition_unless_already_done() {
        let running: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p", "resourceVersion": "7"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]},
        }))
        .expect("pod");
        let v = failed_status(&running, ts(0));
        assert_eq!(v["metadata"]["resourceVersion"], "7");
        assert_eq!(v["status"]["phase"], "Failed");
        assert_eq!(v["status"]["conditions"][1]["reason"], "DeletionByPodGC");
        assert_eq!(v["status"]["conditions"][0]["type"], "Ready");
        let done: Pod =
            serde_json::from_value(json!({"status": {"phase": "Succeeded"}})).expect("pod");
        assert_eq!(failed_status(&done, ts(0))["status"]["phase"], "Succeeded");
    }
}
