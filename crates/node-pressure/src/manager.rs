//! The eviction manager's memory between rounds (kubelet's `synchronize`): which thresholds
//! are met now (or, having acted, are not yet back above their minimum reclaim) and since
//! when each has been met without a break, the pressure conditions the node reports, which
//! thresholds act (hard ones at once, soft ones once met for their grace period), whether
//! reclaiming on the node relieved them, and the grace period a pod evicted for one of them
//! gets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

use crate::conditions::{Conditions, Tracker, TRANSITION_PERIOD};
use crate::threshold::{default_hard, Observation, Resource, Signal, Threshold, Value};

/// kubelet's `immediateEvictionGracePeriodSeconds`: what a pod evicted for a hard threshold
/// (or a local storage limit) gets.
pub const IMMEDIATE_GRACE_PERIOD: Duration = Duration::from_secs(1);

/// The KubeletConfiguration's eviction settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// `evictionHard`.
    pub hard: Vec<Threshold>,
    /// `evictionSoft`, each with its `evictionSoftGracePeriod`.
    pub soft: Vec<Threshold>,
    /// `evictionMaxPodGracePeriod`, in seconds.
    pub max_pod_grace_period: i64,
    /// `evictionPressureTransitionPeriod`.
    pub transition_period: Duration,
    /// `evictionMinimumReclaim`: how far above its threshold a signal must get back once
    /// the threshold acted.
    pub minimum_reclaim: BTreeMap<Signal, Value>,
}

impl Default for Settings {
    /// The kubelet's defaults (with peapod's disk thresholds, see [`default_hard`]).
    fn default() -> Self {
        Self {
            hard: default_hard(),
            soft: Vec::new(),
            max_pod_grace_period: 0,
            transition_period: TRANSITION_PERIOD,
            minimum_reclaim: BTreeMap::new(),
        }
    }
}

impl Settings {
    /// The grace period kubelet v1.33 gives a pod evicted for `threshold`: 1 s for a hard
    /// one; for a soft one `evictionMaxPodGracePeriod`, or the pod's own
    /// `terminationGracePeriodSeconds` when that is smaller. Then as its pod worker settles
    /// an override: zero stands for the pod's own grace period, and less than 1 s is 1 s.
    pub fn pod_grace_period(&self, threshold: &Threshold, pod: &Pod) -> Duration {
        if threshold.is_hard() {
            return IMMEDIATE_GRACE_PERIOD;
        }
        let own = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds);
        let wanted = match own {
            Some(own) => self.max_pod_grace_period.min(own),
            None => self.max_pod_grace_period,
        };
        let effective = if wanted == 0 {
            own.unwrap_or(0)
        } else {
            wanted
        };
        Duration::from_secs(u64::try_from(effective).unwrap_or(0).max(1))
    }
}

/// What one round decides.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The pressure conditions the node reports.
    pub conditions: Conditions,
    /// The thresholds to reclaim for (met, and for at least their grace period), with what
    /// was observed; memory's first, a hard threshold before a soft one of the same signal.
    pub reclaim: Vec<(Threshold, Observation)>,
}

/// kubelet's event reason on the node when a threshold acts, before it reclaims.
pub const EVICTION_THRESHOLD_MET: &str = "EvictionThresholdMet";

/// The message of kubelet's `EvictionThresholdMet` event for `resource`.
pub fn reclaim_message(resource: Resource) -> String {
    format!("Attempting to reclaim {}", resource.name())
}

/// One threshold, its minimum reclaim, and what the rounds so far observed of it.
#[derive(Debug, Clone)]
struct Tracked {
    threshold: Threshold,
    min_reclaim: Option<Value>,
    /// When it was first met in the current unbroken run of rounds that met it.
    first_met: Option<Instant>,
    /// Whether it acted in the last round (kubelet's `thresholdsMet`).
    acted: bool,
}

/// The thresholds and what the rounds so far observed of them.
#[derive(Debug, Clone)]
pub struct Evaluator {
    tracked: Vec<Tracked>,
    conditions: Tracker,
}

impl Evaluator {
    pub fn new(settings: &Settings) -> Self {
        let tracked = settings
            .hard
            .iter()
            .chain(&settings.soft)
            .map(|t| Tracked {
                threshold: t.clone(),
                min_reclaim: settings.minimum_reclaim.get(&t.signal).cloned(),
                first_met: None,
                acted: false,
            })
            .collect();
        Self {
            tracked,
            conditions: Tracker::new(settings.transition_period),
        }
    }

    /// One round at `now`, with `observe` giving each signal's observation (`None`: not
    /// observable, so its thresholds are not met). As the kubelet does, a threshold raises
    /// its condition as soon as it is met, grace period or not; it is reclaimed for only
    /// once it has been met in every round for its grace period. A threshold that acted in
    /// the last round stays met until the signal is above it by its minimum reclaim.
    pub fn step(
        &mut self,
        observe: impl Fn(Signal) -> Option<Observation>,
        now: Instant,
    ) -> Decision {
        let mut raised = Conditions::default();
        let mut reclaim = Vec::new();
        for tracked in &mut self.tracked {
            let t = &tracked.threshold;
            let min_reclaim = tracked
                .acted
                .then_some(tracked.min_reclaim.as_ref())
                .flatten();
            tracked.acted = false;
            let Some(observed) =
                observe(t.signal).filter(|o| t.met(*o) || t.met_reclaiming(*o, min_reclaim))
            else {
                tracked.first_met = None;
                continue;
            };
            let since = *tracked.first_met.get_or_insert(now);
            match t.signal.resource() {
                Resource::Memory => raised.memory = true,
                Resource::EphemeralStorage | Resource::Inodes => raised.disk = true,
            }
            if now.saturating_duration_since(since) >= t.grace_period {
                tracked.acted = true;
                reclaim.push((t.clone(), observed));
            }
        }
        reclaim.sort_by_key(|(t, _)| (t.signal, !t.is_hard()));
        Decision {
            conditions: self.conditions.observe(raised, now),
            reclaim,
        }
    }

    /// Whether reclaiming on the node (deleting unused images) relieved the node, given
    /// what `observe` sees afterwards: as kubelet's `reclaimNodeLevelResources`, every
    /// threshold, grace period or not, must be back above its value plus its minimum
    /// reclaim; otherwise a pod is still evicted.
    pub fn relieved(&self, observe: impl Fn(Signal) -> Option<Observation>) -> bool {
        !self.tracked.iter().any(|tracked| {
            let t = &tracked.threshold;
            observe(t.signal).is_some_and(|o| t.met_reclaiming(o, tracked.min_reclaim.as_ref()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::{parse_hard, parse_soft};
    use std::collections::BTreeMap;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn settings(max_pod_grace_period: i64) -> Settings {
        Settings {
            hard: parse_hard(&map(&[("memory.available", "<100Mi")])).expect("hard"),
            soft: parse_soft(
                &map(&[("memory.available", "<1Gi")]),
                &map(&[("memory.available", "30s")]),
            )
            .expect("soft"),
            max_pod_grace_period,
            transition_period: S(60),
            minimum_reclaim: BTreeMap::new(),
        }
    }

    fn memory(available: u64) -> impl Fn(Signal) -> Option<Observation> {
        move |signal| {
            (signal == Signal::MemoryAvailable).then_some(Observation {
                available,
                capacity: 8 << 30,
            })
        }
    }

    fn reclaiming(d: &Decision) -> Vec<bool> {
        d.reclaim.iter().map(|(t, _)| t.is_hard()).collect()
    }

    #[test]
    fn soft_threshold_acts_after_its_grace_period_and_raises_the_condition_at_once() {
        let mut e = Evaluator::new(&settings(0));
        let start = Instant::now();
        let short = 512 << 20;
        let d = e.step(memory(short), start);
        assert!(d.conditions.memory);
        assert!(d.reclaim.is_empty());
        assert!(e.step(memory(short), start + S(29)).reclaim.is_empty());
        assert_eq!(reclaiming(&e.step(memory(short), start + S(30))), [false]);
        // A round that does not meet it starts the grace period over.
        let d = e.step(memory(2 << 30), start + S(40));
        assert!(d.reclaim.is_empty());
        assert!(d.conditions.memory, "kept for the transition period");
        assert!(e.step(memory(short), start + S(50)).reclaim.is_empty());
        assert!(e.step(memory(short), start + S(79)).reclaim.is_empty());
        assert_eq!(reclaiming(&e.step(memory(short), start + S(80))), [false]);
        // The hard threshold acts at once, before the soft one.
        assert_eq!(
            reclaiming(&e.step(memory(50 << 20), start + S(90))),
            [true, false]
        );
        // The condition goes once nothing was met for the transition period.
        assert!(e.step(memory(4 << 30), start + S(149)).conditions.memory);
        assert!(!e.step(memory(4 << 30), start + S(150)).conditions.memory);
        // A signal that cannot be observed meets nothing.
        assert_eq!(
            e.step(|_| None, start + S(500)),
            Decision {
                conditions: Conditions::default(),
                reclaim: Vec::new()
            }
        );
    }

    fn disk(available: u64) -> impl Fn(Signal) -> Option<Observation> {
        move |signal| {
            (signal == Signal::ImagefsAvailable).then_some(Observation {
                available,
                capacity: 100 << 20,
            })
        }
    }

    /// `imagefs.available<20Mi` (hard, or soft with 30 s), minimum reclaim 10Mi.
    fn reclaiming_settings(soft: bool) -> Settings {
        let thresholds = map(&[("imagefs.available", "<20Mi")]);
        let (hard, soft) = if soft {
            let grace = map(&[("imagefs.available", "30s")]);
            (Vec::new(), parse_soft(&thresholds, &grace).expect("soft"))
        } else {
            (parse_hard(&thresholds).expect("hard"), Vec::new())
        };
        Settings {
            hard,
            soft,
            max_pod_grace_period: 0,
            transition_period: S(1),
            minimum_reclaim: crate::threshold::parse_minimum_reclaim(&map(&[(
                "imagefs.available",
                "10Mi",
            )]))
            .expect("minimum reclaim"),
        }
    }

    const MI: u64 = 1 << 20;

    #[test]
    fn an_acted_threshold_stays_until_its_minimum_reclaim() {
        let mut e = Evaluator::new(&reclaiming_settings(false));
        let start = Instant::now();
        // Between the threshold and threshold + minimum reclaim: nothing acted yet, so
        // nothing is met.
        let d = e.step(disk(25 * MI), start);
        assert!(d.reclaim.is_empty() && !d.conditions.disk);
        let d = e.step(disk(19 * MI), start + S(10));
        assert_eq!(reclaiming(&d), [true]);
        assert!(d.conditions.disk);
        // Back above the threshold, below threshold + minimum reclaim: still acting, and
        // the condition is reported (the transition period is only 1 s).
        let d = e.step(disk(25 * MI), start + S(20));
        assert_eq!(reclaiming(&d), [true]);
        assert!(d.conditions.disk);
        assert_eq!(d.reclaim[0].1.available, 25 * MI);
        let d = e.step(disk(30 * MI - 1), start + S(30));
        assert_eq!(reclaiming(&d), [true]);
        // At threshold + minimum reclaim it is resolved.
        let d = e.step(disk(30 * MI), start + S(40));
        assert!(d.reclaim.is_empty() && !d.conditions.disk);
        // And not met again until it falls below the threshold itself.
        let d = e.step(disk(25 * MI), start + S(50));
        assert!(d.reclaim.is_empty() && !d.conditions.disk);
        // A signal that cannot be observed ends it too.
        assert_eq!(reclaiming(&e.step(disk(MI), start + S(60))), [true]);
        assert!(e.step(|_| None, start + S(70)).reclaim.is_empty());
        assert!(e.step(disk(25 * MI), start + S(80)).reclaim.is_empty());
    }

    #[test]
    fn a_soft_threshold_keeps_acting_without_a_new_grace_period_until_its_minimum_reclaim() {
        let mut e = Evaluator::new(&reclaiming_settings(true));
        let start = Instant::now();
        let d = e.step(disk(19 * MI), start);
        assert!(d.reclaim.is_empty() && d.conditions.disk);
        // Not yet acted: above the threshold it is not met, and its grace period restarts.
        assert!(!e.step(disk(25 * MI), start + S(10)).conditions.disk);
        assert!(e.step(disk(19 * MI), start + S(20)).reclaim.is_empty());
        assert_eq!(reclaiming(&e.step(disk(19 * MI), start + S(50))), [false]);
        assert_eq!(reclaiming(&e.step(disk(25 * MI), start + S(60))), [false]);
        assert!(e.step(disk(31 * MI), start + S(70)).reclaim.is_empty());
    }

    #[test]
    fn reclaim_relieves_only_above_every_threshold_plus_its_minimum_reclaim() {
        let mut settings = reclaiming_settings(false);
        settings
            .hard
            .extend(parse_hard(&map(&[("memory.available", "<100Mi")])).expect("memory"));
        let e = Evaluator::new(&settings);
        let both = |disk_available: u64, memory_available: u64| {
            move |signal| match signal {
                Signal::ImagefsAvailable => Some(Observation {
                    available: disk_available,
                    capacity: 100 * MI,
                }),
                Signal::MemoryAvailable => Some(Observation {
                    available: memory_available,
                    capacity: 8 << 30,
                }),
                _ => None,
            }
        };
        assert!(!e.relieved(both(19 * MI, 1 << 30)));
        // Above the threshold but within the minimum reclaim: not relieved, a pod is evicted.
        assert!(!e.relieved(both(25 * MI, 1 << 30)));
        assert!(e.relieved(both(30 * MI, 1 << 30)));
        // Every threshold counts, not only the one reclaimed for.
        assert!(!e.relieved(both(30 * MI, 50 * MI)));
        // What cannot be observed meets nothing.
        assert!(e.relieved(|_| None));
    }

    #[test]
    fn the_reclaim_event_names_the_resource() {
        assert_eq!(EVICTION_THRESHOLD_MET, "EvictionThresholdMet");
        assert_eq!(
            reclaim_message(Resource::EphemeralStorage),
            "Attempting to reclaim ephemeral-storage"
        );
        assert_eq!(
            reclaim_message(Resource::Memory),
            "Attempting to reclaim memory"
        );
    }

    fn pod(grace: Option<i64>) -> Pod {
        let mut spec = serde_json::json!({"containers": [{"name": "c"}]});
        if let Some(g) = grace {
            spec["terminationGracePeriodSeconds"] = g.into();
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .expect("pod")
    }

    #[test]
    fn pod_grace_period_of_hard_and_soft_evictions() {
        let s = settings(20);
        let (hard, soft) = (&s.hard[0], &s.soft[0]);
        assert_eq!(s.pod_grace_period(hard, &pod(Some(30))), S(1));
        assert_eq!(s.pod_grace_period(soft, &pod(Some(30))), S(20));
        assert_eq!(s.pod_grace_period(soft, &pod(Some(5))), S(5));
        assert_eq!(s.pod_grace_period(soft, &pod(None)), S(20));
        assert_eq!(s.pod_grace_period(soft, &pod(Some(0))), S(1));
        // Zero leaves the pod its own grace period; a negative maximum is the 1 s floor.
        assert_eq!(settings(0).pod_grace_period(soft, &pod(Some(30))), S(30));
        assert_eq!(settings(0).pod_grace_period(soft, &pod(None)), S(1));
        assert_eq!(settings(-5).pod_grace_period(soft, &pod(Some(30))), S(1));
    }
}
