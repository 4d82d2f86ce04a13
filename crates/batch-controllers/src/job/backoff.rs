//! The Job controller's back-off before it replaces failed pods (kube-controller-manager
//! v1.33): 10 s after the first failure since the last success, doubling with each further
//! one, capped at 6 minutes, counted from the last failure.

use std::time::Duration;

use jiff::Timestamp;

const FIRST: Duration = Duration::from_secs(10);
const MAX: Duration = Duration::from_secs(360);

/// Failures of a job's pods since its last success, and when the last one happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Record {
    pub failures_after_success: u32,
    pub last_failure: Option<Timestamp>,
}

impl Record {
    /// The record of pods that finished at the given times (`true` for a failure).
    pub(super) fn of(finished: impl IntoIterator<Item = (Timestamp, bool)>) -> Record {
        let mut events: Vec<(Timestamp, bool)> = finished.into_iter().collect();
        events.sort();
        let mut rec = Record::default();
        for (at, failed) in events {
            if failed {
                rec.failures_after_success += 1;
                rec.last_failure = Some(at);
            } else {
                rec.failures_after_success = 0;
            }
        }
        rec
    }

    /// How long to wait at `now` before creating a replacement pod.
    pub(super) fn remaining(&self, now: Timestamp) -> Duration {
        let Some(last) = self
            .last_failure
            .filter(|_| self.failures_after_success > 0)
        else {
            return Duration::ZERO;
        };
        let wait = delay(self.failures_after_success);
        let elapsed = now.duration_since(last);
        let elapsed = Duration::try_from(elapsed).unwrap_or(Duration::ZERO);
        wait.saturating_sub(elapsed)
    }
}

/// The back-off after `failures` consecutive failures (at least one).
pub(super) fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST.saturating_mul(1 << doublings).min(MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("time")
    }

    #[test]
    fn doubles_from_ten_seconds_to_six_minutes() {
        let secs: Vec<u64> = (1..=7).map(|n| delay(n).as_secs()).collect();
        assert_eq!(secs, vec![10, 20, 40, 80, 160, 320, 360]);
        assert_eq!(delay(40), MAX);
    }

    #[test]
    fn counts_failures_since_the_last_success() {
        let rec = Record::of([
            (at(0), true),
            (at(5), false),
            (at(10), true),
            (at(20), true),
        ]);
        assert_eq!(rec.failures_after_success, 2);
        assert_eq!(rec.last_failure, Some(at(20)));
        // Two failures: 20 s from the last one.
        assert_eq!(rec.remaining(at(25)), Duration::from_secs(15));
        assert_eq!(rec.remaining(at(45)), Duration::ZERO);
        let ok = Record::of([(at(0), true), (at(5), false)]);
        assert_eq!(ok.remaining(at(5)), Duration::ZERO);
        assert_eq!(Record::default().remaining(at(0)), Duration::ZERO);
    }
}
