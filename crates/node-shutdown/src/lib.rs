//! The kubelet's graceful node shutdown (`shutdownGracePeriod`,
//! `shutdownGracePeriodCriticalPods`): when the node stops, its pods are terminated in two
//! phases, regular pods first and critical pods (static and mirror pods, or priority of at
//! least `system-cluster-critical`'s) last. Each phase has its share of the whole period
//! (the critical one `shutdownGracePeriodCriticalPods`, the regular one the rest), and a pod
//! gets its own grace period capped by its phase's. With `shutdownGracePeriodByPodPriority`
//! instead, the pods are terminated in groups by priority, lowest first, each with its own
//! period. The pods end `Failed` with [`REASON`] and [`MESSAGE`], and the Node is reported
//! not ready with [`NODE_MESSAGE`]. Pure: the agent carries the plan out.

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

/// One entry of `shutdownGracePeriodByPodPriority`: pods of at least `priority` (and below
/// the next entry's) are given `grace_period` (`shutdownGracePeriodSeconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriorityGrace {
    pub priority: i32,
    pub grace_period: Duration,
}

/// The KubeletConfiguration's shutdown settings; `by_priority` is used instead of the two
/// periods when it is not empty (the kubelet refuses a configuration with both).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Policy {
    /// `shutdownGracePeriod`: the whole time shutdown may take; zero turns the drain off.
    pub grace_period: Duration,
    /// `shutdownGracePeriodCriticalPods`: the part of it kept for critical pods.
    pub critical_grace_period: Duration,
    /// `shutdownGracePeriodByPodPriority`.
    pub by_priority: Vec<PriorityGrace>,
}

impl Policy {
    /// Whether stopping the node drains it (kubelet: a non-zero `shutdownGracePeriod`, or
    /// any `shutdownGracePeriodByPodPriority` entry).
    pub fn enabled(&self) -> bool {
        !self.grace_period.is_zero() || !self.by_priority.is_empty()
    }

    /// The longest the drain may take: the sum of the groups' periods (the kubelet's
    /// shutdown inhibit delay), or `shutdownGracePeriod`.
    pub fn total(&self) -> Duration {
        if self.by_priority.is_empty() {
            return self.grace_period;
        }
        self.by_priority.iter().map(|g| g.grace_period).sum()
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

/// The drain of `pods`: regular pods, then critical ones, or the priority groups lowest
/// first; phases with no pods are left out.
pub fn plan(policy: &Policy, pods: &[Pod]) -> Vec<Phase> {
    if !policy.by_priority.is_empty() {
        return plan_by_priority(&policy.by_priority, pods);
    }
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

/// kubelet's grouping by priority: a pod (priority 0 when unset) joins the group of the
/// highest priority not above its own, or the lowest group when it is below them all; the
/// groups are stopped lowest priority first, a pod getting its own grace period capped by
/// its group's.
fn plan_by_priority(groups: &[PriorityGrace], pods: &[Pod]) -> Vec<Phase> {
    let mut groups = groups.to_vec();
    groups.sort_by_key(|g| g.priority);
    let mut phases: Vec<Phase> = groups
        .iter()
        .map(|g| Phase {
            pods: Vec::new(),
            period: g.grace_period,
        })
        .collect();
    for pod in pods {
        let Some(uid) = pod.metadata.uid.clone() else {
            continue;
        };
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let index = groups
            .iter()
            .rposition(|g| g.priority <= priority)
            .unwrap_or(0);
        let phase = &mut phases[index];
        phase.pods.push((uid, own_grace(pod).min(phase.period)));
    }
    phases.retain(|phase| !phase.pods.is_empty());
    phases
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
            by_priority: Vec::new(),
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
            by_priority: Vec::new(),
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

    #[test]
    fn priority_groups_go_lowest_first_each_with_its_period() {
        let group = |priority, secs| PriorityGrace {
            priority,
            grace_period: S(secs),
        };
        let policy = Policy {
            by_priority: vec![group(100000, 20), group(0, 10), group(CRITICAL_PRIORITY, 5)],
            ..Policy::default()
        };
        assert!(policy.enabled());
        assert_eq!(policy.total(), S(35));
        let pods = vec![
            pod("batch", -10, 30, json!({})),
            pod("web", 0, 30, json!({})),
            pod("quick", 5000, 3, json!({})),
            pod("db", 100000, 60, json!({})),
            pod("above", 150000, 60, json!({})),
            pod("dns", CRITICAL_PRIORITY + 1000, 30, json!({})),
        ];
        assert_eq!(
            plan(&policy, &pods),
            vec![
                Phase {
                    pods: vec![
                        ("batch".into(), S(10)),
                        ("web".into(), S(10)),
                        ("quick".into(), S(3))
                    ],
                    period: S(10)
                },
                Phase {
                    pods: vec![("db".into(), S(20)), ("above".into(), S(20))],
                    period: S(20)
                },
                Phase {
                    pods: vec![("dns".into(), S(5))],
                    period: S(5)
                },
            ]
        );
        // Groups without pods are left out; a static pod goes by its priority alone.
        let only_static = vec![pod(
            "static",
            0,
            30,
            json!({"kubernetes.io/config.source": "file"}),
        )];
        assert_eq!(
            plan(&policy, &only_static),
            vec![Phase {
                pods: vec![("static".into(), S(10))],
                period: S(10)
            }]
        );
    }
}
