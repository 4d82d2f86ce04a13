//! The pure half of one probe worker (kubelet's `prober/worker.go` `doProbe`): thresholds,
//! the initial delay and "on hold" after a liveness/startup failure, advanced by outcomes
//! and the time, so tests drive it without sleeping.

use std::time::Duration;

use jiff::Timestamp;

use crate::spec::{ProbeKind, ProbeSpec};

/// One probe's counters and its reported result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    kind: ProbeKind,
    initial_delay: Duration,
    success_threshold: u32,
    failure_threshold: u32,
    started_at: Timestamp,
    /// What the probe reports right now (`None`: kubelet's `Unknown`, i.e. no result yet).
    reported: Option<bool>,
    last: Option<bool>,
    run: u32,
    /// After a liveness/startup failure kubelet stops probing this container until it is
    /// replaced (a new container id gets a new worker).
    on_hold: bool,
}

fn since(from: Timestamp, to: Timestamp) -> Duration {
    let nanos = to.as_nanosecond().saturating_sub(from.as_nanosecond());
    Duration::from_nanos(u64::try_from(nanos.max(0)).unwrap_or(u64::MAX))
}

impl ProbeState {
    /// kubelet's initial values: readiness starts failed (not ready until a success),
    /// liveness starts successful, startup unknown.
    pub fn new(kind: ProbeKind, spec: &ProbeSpec, started_at: Timestamp) -> Self {
        let reported = match kind {
            ProbeKind::Readiness => Some(false),
            ProbeKind::Liveness => Some(true),
            ProbeKind::Startup => None,
        };
        Self {
            kind,
            initial_delay: spec.initial_delay,
            success_threshold: spec.success_threshold.max(1),
            failure_threshold: spec.failure_threshold.max(1),
            started_at,
            reported,
            last: None,
            run: 0,
            on_hold: false,
        }
    }

    /// Whether a probe should run at `now` (past the initial delay, not on hold).
    pub fn due(&self, now: Timestamp) -> bool {
        !self.on_hold && since(self.started_at, now) >= self.initial_delay
    }

    /// How long until the initial delay has passed.
    pub fn delay_left(&self, now: Timestamp) -> Duration {
        self.initial_delay
            .saturating_sub(since(self.started_at, now))
    }

    /// The result last reported (tests).
    #[cfg(test)]
    pub fn reported(&self) -> Option<bool> {
        self.reported
    }

    /// Applies one probe outcome (`true`: success). Returns the newly reported result when it
    /// changed. A result is reported only after `successThreshold` successes or
    /// `failureThreshold` failures in a row.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if self.on_hold {
            return None;
        }
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let threshold = if ok {
            self.success_threshold
        } else {
            self.failure_threshold
        };
        if self.run < threshold {
            return None;
        }
        let changed = self.reported != Some(ok);
        self.reported = Some(ok);
        if !ok && matches!(self.kind, ProbeKind::Liveness | ProbeKind::Startup) {
            // The container is about to be killed; the count starts over for its successor.
            self.on_hold = true;
            self.run = 0;
        }
        changed.then_some(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Handler;

    fn spec(delay: u64, success: u32, failure: u32) -> ProbeSpec {
        ProbeSpec {
            handler: Handler::Exec {
                command: vec!["true".into()],
            },
            initial_delay: Duration::from_secs(delay),
            period: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
            termination_grace: None,
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("time")
    }

    #[test]
    fn initial_delay_gates_probing() {
        let st = ProbeState::new(ProbeKind::Liveness, &spec(5, 1, 3), t(0));
        assert!(!st.due(t(4)));
        assert_eq!(st.delay_left(t(4)), Duration::from_secs(1));
        assert!(st.due(t(5)));
    }

    #[test]
    fn readiness_needs_success_threshold_and_flips_back() {
        let mut st = ProbeState::new(ProbeKind::Readiness, &spec(0, 2, 3), t(0));
        assert_eq!(st.reported(), Some(false));
        assert_eq!(st.observe(true), None);
        assert_eq!(st.observe(true), Some(true));
        assert_eq!(st.observe(false), None);
        assert_eq!(st.observe(true), None, "a success breaks the failure run");
        assert_eq!(st.observe(false), None);
        assert_eq!(st.observe(false), None);
        assert_eq!(st.observe(false), Some(false));
        // Readiness never goes on hold.
        assert!(st.due(t(100)));
        assert_eq!(st.observe(true), None);
        assert_eq!(st.observe(true), Some(true));
    }

    #[test]
    fn liveness_failure_reports_once_then_holds() {
        let mut st = ProbeState::new(ProbeKind::Liveness, &spec(0, 1, 3), t(0));
        assert_eq!(st.reported(), Some(true));
        assert_eq!(st.observe(false), None);
        assert_eq!(st.observe(false), None);
        assert_eq!(st.observe(false), Some(false));
        assert!(!st.due(t(100)));
        assert_eq!(st.observe(true), None);
    }

    #[test]
    fn startup_is_unknown_until_success() {
        let mut st = ProbeState::new(ProbeKind::Startup, &spec(0, 1, 2), t(0));
        assert_eq!(st.reported(), None);
        assert_eq!(st.observe(false), None);
        assert_eq!(st.observe(true), Some(true));
        let mut st = ProbeState::new(ProbeKind::Startup, &spec(0, 1, 2), t(0));
        assert_eq!(st.observe(false), None);
        assert_eq!(st.observe(false), Some(false));
        assert!(!st.due(t(1)));
    }
}
