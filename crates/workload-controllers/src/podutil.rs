//! Small pod and ownership helpers the DaemonSet and StatefulSet controllers share: pod
//! readiness and availability as upstream's `podutil` judges them, controller
//! ownerReferences, label selectors as list queries, and adopting the orphans a selector
//! matches (upstream's `ClaimPods`, adoption half).

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use serde_json::json;

use controller_base::error::{is_conflict, is_not_found};

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// When the pod's Ready condition last turned True, if it is True.
fn ready_since(pod: &Pod) -> Option<Option<Timestamp>> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready" && c.status == "True")
        .map(|c| c.last_transition_time.as_ref().map(|t| t.0))
}

/// Upstream `IsPodAvailable`: Ready for at least `min_ready_seconds` at `now`.
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    available_after(pod, min_ready_seconds, now) == Some(Duration::ZERO)
}

/// How long until a Ready pod counts as available (zero when it already does); `None`
/// for a pod that is not Ready.
pub fn available_after(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    let since = ready_since(pod)?;
    if min_ready_seconds <= 0 {
        return Some(Duration::ZERO);
    }
    let Some(since) = since else {
        return Some(Duration::ZERO);
    };
    let due = since.as_second() + i64::from(min_ready_seconds);
    let left = due - now.as_second();
    Some(Duration::from_secs(u64::try_from(left).unwrap_or(0)))
}

pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream `isRunningAndReady`: phase Running and Ready.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == "Running" && is_ready(pod)
}

/// The creation time, for "oldest first" orderings.
pub fn created(pod: &Pod) -> Option<Timestamp> {
    pod.metadata.creation_timestamp.as_ref().map(|t| t.0)
}

/// The controller ownerReference that points at `owner` (apps/v1 `kind`), as upstream's
/// `NewControllerRef`.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The object's controller ownerReference, if it has one.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

/// Whether `meta`'s controller is the object with this uid.
pub fn controlled_by(meta: &ObjectMeta, uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == uid)
}

/// The selector as a `labelSelector=` query (`app=web,tier in (a,b)`).
pub fn selector_query(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .flatten()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for r in sel.match_expressions.iter().flatten() {
        let values = r.values.as_deref().unwrap_or(&[]).join(",");
        parts.push(match r.operator.as_str() {
            "In" => format!("{} in ({values})", r.key),
            "NotIn" => format!("{} notin ({values})", r.key),
            "DoesNotExist" => format!("!{}", r.key),
            _ => r.key.clone(),
        });
    }
    parts.join(",")
}

/// The pods among `pods` (listed by the owner's selector) that `owner` controls, after
/// adopting the orphans among them; pods another controller owns are left alone. An orphan
/// that went away or changed meanwhile is skipped.
pub async fn claim_pods<K: Resource<DynamicType = ()>>(
    api: &Api<Pod>,
    owner: &K,
    pods: Vec<Pod>,
) -> Result<Vec<Pod>, kube::Error> {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    let deleting = owner.meta().deletion_timestamp.is_some();
    let mut mine = Vec::new();
    for pod in pods {
        match controller_of(&pod.metadata) {
            Some(r) if r.uid == uid => mine.push(pod),
            Some(_) => {}
            // Upstream does not adopt for an owner that is going away, nor a pod that is.
            None if deleting || is_terminating(&pod) => {}
            None => {
                let mut refs = pod.metadata.owner_references.clone().unwrap_or_default();
                refs.push(controller_ref(owner));
                let patch = json!({"metadata": {"ownerReferences": refs,
                                                "uid": pod.metadata.uid}});
                match api
                    .patch(
                        &pod.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(adopted) => mine.push(adopted),
                    Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(mine)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().expect("time");
        let p = pod(json!({"status": {"phase": "Running", "conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"}]}}));
        assert!(is_running_and_ready(&p));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 5, now));
        assert!(!is_available(&p, 8, now));
        assert_eq!(available_after(&p, 8, now), Some(Duration::from_secs(3)));
        let not_ready = pod(json!({"status": {"phase": "Running"}}));
        assert_eq!(available_after(&not_ready, 0, now), None);
    }

    #[test]
    fn selectors() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                 {"key": "old", "operator": "DoesNotExist"}]}))
        .expect("selector");
        assert_eq!(selector_query(&sel), "app=web,tier in (a,b),!old");
    }
}
