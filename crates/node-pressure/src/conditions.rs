//! The node conditions pressure raises (`MemoryPressure`, `DiskPressure`), how long they
//! stay after the thresholds clear (kubelet's `evictionPressureTransitionPeriod`), and the
//! admission the eviction manager does under them.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

/// kubelet's default `evictionPressureTransitionPeriod`.
pub const TRANSITION_PERIOD: Duration = Duration::from_secs(300);

/// The pressure conditions in force.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conditions {
    pub memory: bool,
    pub disk: bool,
}

impl Conditions {
    /// The condition types in force, in kubelet's order.
    pub fn names(self) -> Vec<&'static str> {
        let mut out = Vec::new();
        if self.memory {
            out.push("MemoryPressure");
        }
        if self.disk {
            out.push("DiskPressure");
        }
        out
    }

    /// kubelet's eviction admission: under no pressure every pod is admitted, and so are
    /// critical pods; under memory pressure alone only BestEffort pods are refused (unless
    /// they tolerate the memory-pressure taint); under disk pressure every pod is. `Err`
    /// carries the rejection message (the reason is `Evicted`).
    pub fn admit(self, pod: &Pod, best_effort: bool, critical: bool) -> Result<(), String> {
        if self == Conditions::default() || critical {
            return Ok(());
        }
        if !self.disk && (!best_effort || tolerates_memory_pressure(pod)) {
            return Ok(());
        }
        Err(format!(
            "The node had condition: [{}]. ",
            self.names().join(" ")
        ))
    }
}

fn tolerates_memory_pressure(pod: &Pod) -> bool {
    let key = "node.kubernetes.io/memory-pressure";
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_ref())
        .into_iter()
        .flatten()
        .any(|t| {
            let key_ok = match t.key.as_deref() {
                None | Some("") => t.operator.as_deref() == Some("Exists"),
                Some(k) => k == key,
            };
            let effect_ok = matches!(t.effect.as_deref(), None | Some("") | Some("NoSchedule"));
            key_ok && effect_ok
        })
}

/// Keeps each condition for the transition period after its thresholds were last met, so
/// the node does not flap (kubelet's `nodeConditionsLastObservedAt`).
#[derive(Debug, Clone)]
pub struct Tracker {
    period: Duration,
    memory: Option<Instant>,
    disk: Option<Instant>,
}

impl Tracker {
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            memory: None,
            disk: None,
        }
    }

    /// Records which conditions the thresholds raise `now`; returns those in force.
    pub fn observe(&mut self, met: Conditions, now: Instant) -> Conditions {
        if met.memory {
            self.memory = Some(now);
        }
        if met.disk {
            self.disk = Some(now);
        }
        let within = |t: Option<Instant>| t.is_some_and(|t| now.duration_since(t) < self.period);
        Conditions {
            memory: within(self.memory),
            disk: within(self.disk),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .expect("pod")
    }

    #[test]
    fn admission_under_pressure() {
        let plain = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        let memory = Conditions {
            memory: true,
            disk: false,
        };
        assert_eq!(Conditions::default().admit(&plain, true, false), Ok(()));
        assert_eq!(
            memory.admit(&plain, true, false),
            Err("The node had condition: [MemoryPressure]. ".to_string())
        );
        assert_eq!(memory.admit(&plain, false, false), Ok(()));
        assert_eq!(memory.admit(&plain, true, true), Ok(()));
        let tolerant = pod(
            serde_json::json!({"containers": [{"name": "c"}], "tolerations": [
                {"key": "node.kubernetes.io/memory-pressure", "operator": "Exists", "effect": "NoSchedule"}
            ]}),
        );
        assert_eq!(memory.admit(&tolerant, true, false), Ok(()));
        let both = Conditions {
            memory: true,
            disk: true,
        };
        assert_eq!(
            both.admit(&plain, false, false),
            Err("The node had condition: [MemoryPressure DiskPressure]. ".to_string())
        );
    }

    #[test]
    fn conditions_stay_for_the_transition_period() {
        let mut t = Tracker::new(Duration::from_secs(300));
        let start = Instant::now();
        let met = Conditions {
            memory: true,
            disk: false,
        };
        assert_eq!(t.observe(met, start), met);
        let later = start + Duration::from_secs(299);
        assert_eq!(t.observe(Conditions::default(), later), met);
        let after = start + Duration::from_secs(300);
        assert_eq!(
            t.observe(Conditions::default(), after),
            Conditions::default()
        );
    }
}
