//! The kubelet's graceful node shutdown (`shutdownGracePeriod`,
//! `shutdownGracePeriodCriticalPods`): when the node stops, its pods are terminated in two
//! phases, regular pods first and critical pods (static and mirror pods, or priority of at
//! least `system-cluster-critical`'s) last. Each phase has its share of the whole period
//! (the critical one `shutdownGracePeriodCriticalPods`, the regular one the rest), and a pod
//! gets its own grace period capped by its phase's. The pods end `Failed` with [`REASON`] and
//! [`MESSAGE`], and the Node is reported not ready with [`NODE_MESSAGE`]. Pure: the agent
//! carries the plan out.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;

/// The pod status reason of a pod ended by node shutdown (kubelet's `nodeShutdownReason`).
pub const REASON: &str = "Terminated";
/// kubelet's `nodeShutdownMessage`.
pub const MESSAGE: &str = "Pod was terminated in response to imminent node shutdown.";
/// Why the Node is not ready while it shuts down.
pub const NODE_MESSAGE: &str = "node is shutting down";
/// `SystemCriticalPriority`: from this priority a pod is critical.
pub const CRITICAL_PRIORITY: i32 = 2_000_000_000;
/// The annotation that marks a static pod's source (`file`) and its mirror pod.
const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// The KubeletConfiguration's shutdown settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Policy {
    /// `shutdownGracePeriod`: the whole time shutdown may take; zero turns the drain off.
    pub grace_period: Duration,
    /// `shutdownGracePeriodCriticalPods`: the part of it kept for critical pods.
    pub critical_grace_period: Duration,
}

impl Policy {
    /// Whether stopping the node drains it (kubelet: a non-zero `shutdownGracePeriod`).
    pub fn enabled(&self) -> bool {
        !self.grace_period.is_zero()
    }
}

/// kubelet's `IsCriticalPod`: a static or mirror pod, or one of critical priority.
pub fn is_critical(pod: &Pod) -> bool {
    let annotations = pod.metadata.annotations.as_ref();
    let is_static = annotations.is_some_and(|a| {
        a.contains_key(MIRROR_ANNOTATION) || a.get(SOURCE_ANNOTATION).is_some_and(|s| s != "api")
    });
    let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
    is_static || priority >= CRITICAL_PRIORITY
}

/// One phase of the drain: the pods to stop, each with its grace period, and how long the
/// phase may take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    /// (pod uid, grace period).
    pub pods: Vec<(String, Duration)>,
    pub period: Duration,
}

fn own_grace(pod: &Pod) -> Duration {
    let secs = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0))
}

/// The drain of `pods`: regular pods, then critical ones; phases with no pods are left out.
pub fn plan(policy: &Policy, pods: &[Pod]) -> Vec<Phase> {
    let critical_period = policy.critical_grace_period.min(policy.grace_period);
    let regular_period = policy.grace_period.saturating_sub(critical_period);
    [(false, regular_period), (true, critical_period)]
        .into_iter()
        .map(|(critical, period)| Phase {
            pods: pods
                .iter()
                .filter(|p| is_critical(p) == critical)
                .filter_map(|p| {
                    let uid = p.metadata.uid.clone()?;
                    Some((uid, own_grace(p).min(period)))
                })
                .collect(),
            period,
        })
        .filter(|phase| !phase.pods.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, priority: i32, grace: i64, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"uid": uid, "annotations": annotations},
            "spec": {"priority": priority, "terminationGracePeriodSeconds": grace, "containers": []}
        }))
        .expect("pod")
    }

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn regular_pods_go_first_and_critical_ones_last() {
        let policy = Policy {
            grace_period: S(30),
            critical_grace_period: S(10),
        };
        let pods = vec![
            pod("web", 0, 60, json!({})),
            pod("quick", 100, 2, json!({})),
            pod("dns", CRITICAL_PRIORITY, 30, json!({})),
            pod(
                "static",
                0,
                5,
                json!({"kubernetes.io/config.source": "file"}),
            ),
        ];
        assert_eq!(
            plan(&policy, &pods),
            vec![
                Phase {
                    pods: vec![("web".into(), S(20)), ("quick".into(), S(2))],
                    period: S(20)
                },
                Phase {
                    pods: vec![("dns".into(), S(10)), ("static".into(), S(5))],
                    period: S(10)
                },
            ]
        );
    }

    #[test]
    fn empty_phases_are_skipped_and_zero_turns_the_drain_off() {
        let policy = Policy {
            grace_period: S(10),
            critical_grace_period: S(0),
        };
        let pods = vec![pod(
            "web",
            0,
            30,
            json!({"kubernetes.io/config.source": "api"}),
        )];
        assert_eq!(
            plan(&policy, &pods),
            vec![Phase {
                pods: vec![("web".into(), S(10))],
                period: S(10)
            }]
        );
        assert!(policy.enabled());
        assert!(!Policy::default().enabled());
        assert!(is_critical(&pod(
            "m",
            0,
            1,
            json!({"kubernetes.io/config.mirror": "x"})
        )));
        assert!(!is_critical(&pod("u", CRITICAL_PRIORITY - 1, 1, json!({}))));
    }
}
