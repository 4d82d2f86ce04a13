//! `backoffLimitPerIndex` (Indexed jobs, v1.33): each index may fail that many times before
//! it is marked failed (`status.failedIndexes`) and not run again; the other indexes go on.
//! An index's pods carry how many of its pods failed before them (and how many failures the
//! pod failure policy ignored), so a failed pod tells whether its index is exhausted, and
//! its replacement is created with the counts one higher, after the back-off those failures
//! earned (counted from the last one, per index rather than per job).

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;

use super::backoff;
use super::pods::{failure_counts, finished_at, index, state, State};

/// Whether failed `pod` used up its index's `limit`.
pub(super) fn exhausted(pod: &Pod, limit: i32) -> bool {
    failure_counts(pod).0 >= limit
}

/// What index `i`'s next pod carries, and when it may be created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Next {
    pub failures: i32,
    pub ignored: i32,
    pub last_failure: Option<Timestamp>,
}

impl Next {
    /// The counts for index `i` from the last of its failed pods among `pods`; `ignored`
    /// says whether the pod failure policy ignored a failure.
    pub(super) fn of(
        pods: &[Pod],
        i: i32,
        completions: i32,
        only_failed: bool,
        ignored: &dyn Fn(&Pod) -> bool,
    ) -> Next {
        let last = pods
            .iter()
            .filter(|p| index(p, completions) == Some(i))
            .filter(|p| state(p, only_failed) == State::Failed)
            .filter_map(|p| Some((finished_at(p)?, p)))
            .max_by_key(|(at, _)| *at);
        let Some((at, pod)) = last else {
            return Next::default();
        };
        let (failures, skipped) = failure_counts(pod);
        let (failures, skipped) = if ignored(pod) {
            (failures, skipped.saturating_add(1))
        } else {
            (failures.saturating_add(1), skipped)
        };
        Next {
            failures,
            ignored: skipped,
            last_failure: Some(at),
        }
    }

    /// How long to wait at `now` before the index's next pod.
    pub(super) fn wait(&self, now: Timestamp) -> Duration {
        let n = u32::try_from(self.failures.saturating_add(self.ignored)).unwrap_or(0);
        let Some(last) = self.last_failure.filter(|_| n > 0) else {
            return Duration::ZERO;
        };
        let elapsed = Duration::try_from(now.duration_since(last)).unwrap_or(Duration::ZERO);
        backoff::delay(n).saturating_sub(elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, i: i32, failures: i32, phase: &str, at: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": name, "annotations": {
                "batch.kubernetes.io/job-completion-index": i.to_string(),
                "batch.kubernetes.io/job-index-failure-count": failures.to_string()}},
            "status": {"phase": phase, "containerStatuses": [{"name": "main", "image": "b",
                "imageID": "", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 1, "finishedAt": at}}}]}}))
        .expect("pod")
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    #[test]
    fn the_last_failed_pod_of_the_index_gives_the_next_counts() {
        let pods = [
            pod("a", 0, 0, "Failed", "2026-01-01T00:00:00Z"),
            pod("b", 0, 1, "Failed", "2026-01-01T00:00:20Z"),
            pod("c", 1, 0, "Running", "2026-01-01T00:00:30Z"),
        ];
        let next = Next::of(&pods, 0, 3, false, &|_| false);
        assert_eq!(next.failures, 2);
        assert_eq!(next.ignored, 0);
        // Two failures: 20 s from the last one.
        assert_eq!(
            next.wait(at("2026-01-01T00:00:30Z")),
            Duration::from_secs(10)
        );
        assert_eq!(Next::of(&pods, 1, 3, false, &|_| false), Next::default());
        let ignored = Next::of(&pods, 0, 3, false, &|_| true);
        assert_eq!((ignored.failures, ignored.ignored), (1, 1));
        assert!(exhausted(&pods[1], 1));
        assert!(!exhausted(&pods[0], 1));
    }
}
