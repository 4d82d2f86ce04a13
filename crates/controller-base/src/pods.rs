//! What workload controllers read from a Pod's status (upstream `podutil` and
//! `controller.FilterActivePods`): whether it still counts, is Ready, and has been Ready for
//! `minReadySeconds` (available).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::jiff::{SignedDuration, Timestamp};

fn phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// Not finished and not being deleted: the pods a controller counts as its replicas.
pub fn is_active(pod: &Pod) -> bool {
    !matches!(phase(pod), Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

fn ready_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default()
        .iter()
        .find(|c| c.type_ == "Ready")
}

/// The pod's Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    ready_condition(pod).is_some_and(|c| c.status == "True")
}

/// Ready for at least `min_ready_seconds` at `now` (upstream `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> bool {
    let Some(c) = ready_condition(pod).filter(|c| c.status == "True") else {
        return false;
    };
    if min_ready_seconds <= 0 {
        return true;
    }
    c.last_transition_time.as_ref().is_some_and(|t| {
        t.0.saturating_add(SignedDuration::from_secs(i64::from(min_ready_seconds)))
            .is_ok_and(|at| at <= now)
    })
}

/// When a Ready pod becomes available (`None` when it is not Ready).
pub fn available_at(pod: &Pod, min_ready_seconds: i32) -> Option<Timestamp> {
    let c = ready_condition(pod).filter(|c| c.status == "True")?;
    let since = c.last_transition_time.as_ref()?.0;
    since
        .saturating_add(SignedDuration::from_secs(i64::from(
            min_ready_seconds.max(0),
        )))
        .ok()
}

/// Being deleted (a deletion timestamp is set).
pub fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

/// Upstream's `isRunningAndReady` (StatefulSets): phase Running and Ready.
pub fn is_running_and_ready(pod: &Pod) -> bool {
    phase(pod) == Some("Running") && is_ready(pod)
}

/// The pod's phase, `""` when it has none yet.
pub fn phase_of(pod: &Pod) -> &str {
    phase(pod).unwrap_or("")
}

/// How long until a Ready pod becomes available; `None` when it is not Ready or already
/// available (for a reconcile's requeue).
pub fn available_in(pod: &Pod, min_ready_seconds: i32, now: Timestamp) -> Option<Duration> {
    let at = available_at(pod, min_ready_seconds)?;
    let left = at.as_second().saturating_sub(now.as_second());
    u64::try_from(left)
        .ok()
        .filter(|s| *s > 0)
        .map(Duration::from_secs)
}

/// The sum of the restart counts of the pod's containers.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_deref())
        .unwrap_or_default()
        .iter()
        .map(|c| c.restart_count)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(phase: &str, ready: Option<&str>) -> Pod {
        let conds =
            ready.map(|t| json!([{"type": "Ready", "status": "True", "lastTransitionTime": t}]));
        serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "status": {"phase": phase, "conditions": conds,
                       "containerStatuses": [
                           {"name": "a", "restartCount": 2, "ready": true, "image": "i", "imageID": ""},
                           {"name": "b", "restartCount": 1, "ready": true, "image": "i", "imageID": ""}]}
        }))
        .expect("pod")
    }

    #[test]
    fn availability_waits_min_ready_seconds() {
        let now: Timestamp = "2026-01-01T00:00:10Z".parse().expect("time");
        let p = pod("Running", Some("2026-01-01T00:00:00Z"));
        assert!(is_ready(&p));
        assert!(is_available(&p, 0, now));
        assert!(is_available(&p, 10, now));
        assert!(!is_available(&p, 11, now));
        assert_eq!(
            available_at(&p, 11),
            Some("2026-01-01T00:00:11Z".parse().expect("time"))
        );
        let not_ready = pod("Running", None);
        assert!(!is_ready(&not_ready));
        assert!(!is_available(&not_ready, 0, now));
        assert_eq!(restarts(&p), 3);
        assert_eq!(available_in(&p, 15, now), Some(Duration::from_secs(5)));
        assert_eq!(available_in(&p, 5, now), None);
        assert!(is_running_and_ready(&p) && !is_terminating(&p));
    }

    #[test]
    fn finished_and_deleting_pods_are_inactive() {
        assert!(is_active(&pod("Running", None)));
        assert!(is_active(&pod("Pending", None)));
        assert!(!is_active(&pod("Failed", None)));
        assert!(!is_active(&pod("Succeeded", None)));
        let mut d = pod("Running", None);
        d.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("time"));
        assert!(!is_active(&d));
    }
}
