//! When a pod on a node with `NoExecute` taints must go (upstream's taint eviction
//! controller, `processPodOnNode`): at once if one taint is not tolerated; after the
//! smallest `tolerationSeconds` of the tolerations in use, counted from when the controller
//! first scheduled the eviction; never if those tolerations have no limit. Pure.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Taint, Toleration};
use k8s_openapi::jiff::Timestamp;

use controller_base::nodefit::tolerates;

use crate::taints::NO_EXECUTE;

/// What to do about one pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    /// No eviction (pending or not): the taints are gone or tolerated forever.
    Cancel,
    /// Delete the pod now.
    EvictNow,
    /// Delete the pod at `at`; the countdown began at `since`.
    EvictAt { since: Timestamp, at: Timestamp },
}

/// The node's `NoExecute` taints.
pub fn no_execute(taints: &[Taint]) -> Vec<&Taint> {
    taints.iter().filter(|t| t.effect == NO_EXECUTE).collect()
}

/// How long the pod may stay: the least `tolerationSeconds` among the tolerations that
/// match a taint (zero or less means none), or `None` for as long as the taints last.
fn min_toleration(taints: &[&Taint], tolerations: &[Toleration]) -> Option<Duration> {
    tolerations
        .iter()
        .filter(|t| taints.iter().any(|taint| tolerates(t, taint)))
        .filter_map(|t| t.toleration_seconds)
        .map(|s| Duration::from_secs(u64::try_from(s).unwrap_or(0)))
        .min()
}

/// The plan for a pod with `tolerations` on a node with `taints` (all effects; only
/// `NoExecute` ones count), given when an eviction already scheduled for it began.
pub fn plan(
    taints: &[Taint],
    tolerations: &[Toleration],
    scheduled_since: Option<Timestamp>,
    now: Timestamp,
) -> Plan {
    let taints = no_execute(taints);
    if taints.is_empty() {
        return Plan::Cancel;
    }
    let all_tolerated = taints
        .iter()
        .all(|taint| tolerations.iter().any(|t| tolerates(t, taint)));
    if !all_tolerated {
        return Plan::EvictNow;
    }
    match min_toleration(&taints, tolerations) {
        None => Plan::Cancel,
        Some(wait) => {
            let since = scheduled_since.unwrap_or(now);
            let at = since.checked_add(wait).unwrap_or(Timestamp::MAX);
            Plan::EvictAt { since, at }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::taints::{NOT_READY, UNREACHABLE};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid time")
    }

    fn taint(key: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            ..Default::default()
        }
    }

    fn toleration(key: &str, seconds: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: seconds,
            ..Default::default()
        }
    }

    #[test]
    fn no_no_execute_taint_means_no_eviction() {
        let taints = [taint(UNREACHABLE, "NoSchedule")];
        assert_eq!(plan(&taints, &[], Some(ts(0)), ts(5)), Plan::Cancel);
        assert_eq!(plan(&[], &[], None, ts(5)), Plan::Cancel);
    }

    #[test]
    fn an_untolerated_taint_evicts_at_once() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE), taint("other", NO_EXECUTE)];
        let tol = [toleration(UNREACHABLE, None)];
        assert_eq!(plan(&taints, &tol, None, ts(5)), Plan::EvictNow);
    }

    #[test]
    fn tolerating_forever_cancels() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE)];
        let tol = [
            toleration(UNREACHABLE, None),
            toleration(NOT_READY, Some(5)),
        ];
        assert_eq!(plan(&taints, &tol, Some(ts(0)), ts(5)), Plan::Cancel);
        // An empty key with Exists tolerates every taint.
        let all = [Toleration {
            operator: Some("Exists".into()),
            ..Default::default()
        }];
        assert_eq!(plan(&taints, &all, None, ts(5)), Plan::Cancel);
    }

    #[test]
    fn the_smallest_toleration_in_use_counts_from_the_first_schedule() {
        let taints = [taint(UNREACHABLE, NO_EXECUTE)];
        let tol = [
            toleration(UNREACHABLE, Some(300)),
            toleration(UNREACHABLE, Some(30)),
            toleration(NOT_READY, Some(1)),
        ];
        assert_eq!(
            plan(&taints, &tol, None, ts(10)),
            Plan::EvictAt {
                since: ts(10),
                at: ts(40)
            }
        );
        assert_eq!(
            plan(&taints, &tol, Some(ts(10)), ts(25)),
            Plan::EvictAt {
                since: ts(10),
                at: ts(40)
            }
        );
        let zero = [toleration(UNREACHABLE, Some(-4))];
        assert_eq!(
            plan(&taints, &zero, None, ts(10)),
            Plan::EvictAt {
                since: ts(10),
                at: ts(10)
            }
        );
    }
}
