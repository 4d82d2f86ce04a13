//! Preemption, as kube-scheduler's `DefaultPreemption` post-filter does it: a pod that fits
//! nowhere may evict pods of lower priority from one node. On each node where removing pods
//! could help, every lower-priority pod is taken away; if the pod then fits, the most
//! important of them (higher priority, then older) are put back one by one while it still
//! fits (those whose eviction would break a PodDisruptionBudget first), and the rest are the
//! victims. The node chosen breaks the fewest budgets, then has the lowest highest-priority
//! victim, the lowest sum of priorities, and the fewest victims. Pure: the controller gives
//! the fit check and carries the decision out.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::ResourceExt;

use crate::selectors;
use crate::snapshot::{NodeInfo, Snapshot};

/// The reason of the `DisruptionTarget` condition a victim gets.
pub const DISRUPTION_REASON: &str = "PreemptionByScheduler";

/// A pod's priority (`spec.priority`, 0 when unset).
pub fn priority(pod: &Pod) -> i32 {
    pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0)
}

/// The node a pending pod was nominated for, if any (`status.nominatedNodeName`).
pub fn nominated_node(pod: &Pod) -> Option<&str> {
    pod.status
        .as_ref()
        .and_then(|s| s.nominated_node_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Why a pod may not preempt at all (upstream `PodEligibleToPreemptOthers`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotEligible {
    /// `preemptionPolicy: Never`.
    PolicyNever,
    /// It preempted already and its victims on the nominated node are still terminating.
    VictimsTerminating,
}

impl fmt::Display for NotEligible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotEligible::PolicyNever => f.write_str("not eligible due to preemptionPolicy=Never."),
            NotEligible::VictimsTerminating => {
                f.write_str("not eligible due to a terminating pod on the nominated node.")
            }
        }
    }
}

/// A preemption this scheduler carried out and the pod cache may not show yet: the node the
/// preemptor was nominated for and its victims' uids (upstream keeps its nominations in the
/// scheduling queue for the same reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nomination {
    pub node: String,
    pub victims: Vec<String>,
}

/// Whether `pod` may preempt others in `snap`; `recorded` is its last preemption, which a
/// stale copy of the pod may not show.
pub fn eligible(
    pod: &Pod,
    snap: &Snapshot,
    recorded: Option<&Nomination>,
) -> Result<(), NotEligible> {
    let policy = pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref());
    if policy == Some("Never") {
        return Err(NotEligible::PolicyNever);
    }
    let victims = recorded.map_or(&[][..], |r| r.victims.as_slice());
    if let Some(node) = nominated_node(pod).or(recorded.map(|r| r.node.as_str())) {
        let mine = priority(pod);
        let terminating = snap
            .nodes
            .iter()
            .filter(|n| n.name == node)
            .flat_map(|n| &n.pods)
            .filter(|p| priority(p) < mine)
            .any(|p| {
                p.metadata.deletion_timestamp.is_some()
                    || p.metadata.uid.as_ref().is_some_and(|u| victims.contains(u))
            });
        if terminating {
            return Err(NotEligible::VictimsTerminating);
        }
    }
    Ok(())
}

/// One node where preemption makes room, and the pods to evict there.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub node: String,
    /// Most important first.
    pub victims: Vec<Arc<Pod>>,
    /// How many victims' eviction breaks a PodDisruptionBudget.
    pub pdb_violations: usize,
}

/// Why preemption found no node: `0/N nodes are available: …` counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoCandidate {
    pub nodes: usize,
    /// Nodes whose misfit no eviction can cure (taints, selectors, readiness).
    pub not_helpful: usize,
    /// Nodes where evicting every lower-priority pod would still not make room.
    pub no_victims: usize,
}

impl fmt::Display for NoCandidate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.no_victims > 0 {
            parts.push(format!(
                "{} No preemption victims found for incoming pod",
                self.no_victims
            ));
        }
        if self.not_helpful > 0 {
            parts.push(format!(
                "{} Preemption is not helpful for scheduling",
                self.not_helpful
            ));
        }
        // Sorted as strings, as kube-scheduler's FitError histogram is.
        parts.sort();
        write!(
            f,
            "0/{} nodes are available: {}.",
            self.nodes,
            parts.join(", ")
        )
    }
}

/// Upstream `MoreImportantPod`: higher priority, then started earlier.
fn more_important_first(a: &Arc<Pod>, b: &Arc<Pod>) -> std::cmp::Ordering {
    let start = |p: &Pod| {
        p.status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0)
            .or_else(|| p.metadata.creation_timestamp.as_ref().map(|t| t.0))
    };
    priority(b)
        .cmp(&priority(a))
        .then_with(|| match (start(a), start(b)) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        })
        // Not upstream's: equals are ordered by name, so a decision made again on the same
        // pods picks the same victims.
        .then_with(|| a.name_any().cmp(&b.name_any()))
}

/// Splits `pods` (most important first) into those whose eviction would break a budget and
/// the others, spending each budget's `disruptionsAllowed` in order.
fn split_by_budgets(
    pods: Vec<Arc<Pod>>,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let mut allowed: HashMap<usize, i32> = pdbs
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let n = b.status.as_ref().map_or(0, |s| s.disruptions_allowed);
            (i, n)
        })
        .collect();
    let mut violating = Vec::new();
    let mut fine = Vec::new();
    for pod in pods {
        let labels = pod.labels().clone();
        let ns = pod.namespace();
        let mut breaks = false;
        for (i, pdb) in pdbs.iter().enumerate() {
            let selector = pdb.spec.as_ref().and_then(|s| s.selector.as_ref());
            let covers = pdb.namespace() == ns
                && selector.is_some_and(|sel| {
                    // An empty selector matches nothing in policy/v1 for this purpose.
                    (sel.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                        || sel
                            .match_expressions
                            .as_ref()
                            .is_some_and(|e| !e.is_empty()))
                        && selectors::matches(sel, &labels)
                });
            if covers {
                let left = allowed.entry(i).or_insert(0);
                *left -= 1;
                if *left < 0 {
                    breaks = true;
                }
            }
        }
        if breaks {
            violating.push(pod);
        } else {
            fine.push(pod);
        }
    }
    (violating, fine)
}

/// Upstream `SelectVictimsOnNode`: the fewest, least important pods of lower priority whose
/// eviction lets the pod fit on `info`, or None when no eviction does.
fn victims_on(
    preemptor: &Pod,
    snap: &Snapshot,
    info: &NodeInfo,
    fits: &impl Fn(&Snapshot, &str) -> bool,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Option<Candidate> {
    let mine = priority(preemptor);
    let (mut lower, mut kept): (Vec<Arc<Pod>>, Vec<Arc<Pod>>) =
        info.pods.iter().cloned().partition(|p| priority(p) < mine);
    if lower.is_empty() || !fits(&snap.with_node_pods(&info.name, kept.clone()), &info.name) {
        return None;
    }
    lower.sort_by(more_important_first);
    let (violating, fine) = split_by_budgets(lower, pdbs);
    let mut victims = Vec::new();
    let mut pdb_violations = 0;
    let violating_count = violating.len();
    for (i, pod) in violating.into_iter().chain(fine).enumerate() {
        kept.push(pod.clone());
        if !fits(&snap.with_node_pods(&info.name, kept.clone()), &info.name) {
            kept.pop();
            if i < violating_count {
                pdb_violations += 1;
            }
            victims.push(pod);
        }
    }
    victims.sort_by(more_important_first);
    Some(Candidate {
        node: info.name.clone(),
        victims,
        pdb_violations,
    })
}

/// Upstream `pickOneNodeForPreemption`, without its start-time tie-break: fewest budget
/// violations, lowest highest victim priority, lowest sum of priorities, fewest victims,
/// then the first node.
fn pick(candidates: Vec<Candidate>) -> Option<Candidate> {
    let key = |c: &Candidate| {
        let highest = c.victims.first().map_or(i32::MIN, |p| priority(p));
        // Shifted so negative priorities still add up in order, as upstream does.
        let sum: i64 = c
            .victims
            .iter()
            .map(|p| i64::from(priority(p)) + i64::from(i32::MAX) + 1)
            .sum();
        (c.pdb_violations, highest, sum, c.victims.len())
    };
    candidates.into_iter().min_by_key(key)
}

/// Where `preemptor` can make room, and what it evicts there. `helpful` says whether a
/// node's misfit is one eviction may cure; `fits` runs every filter for the pod on a node of
/// a snapshot.
pub fn find(
    preemptor: &Pod,
    snap: &Snapshot,
    helpful: impl Fn(&NodeInfo) -> bool,
    fits: impl Fn(&Snapshot, &str) -> bool,
    pdbs: &[Arc<PodDisruptionBudget>],
) -> Result<Candidate, NoCandidate> {
    let mut none = NoCandidate {
        nodes: snap.nodes.len(),
        not_helpful: 0,
        no_victims: 0,
    };
    let mut candidates = Vec::new();
    for info in &snap.nodes {
        if !helpful(info) {
            none.not_helpful += 1;
            continue;
        }
        match victims_on(preemptor, snap, info, &fits, pdbs) {
            Some(c) => candidates.push(c),
            None => none.no_victims += 1,
        }
    }
    pick(candidates).ok_or(none)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{pod_requests, Requests};
    use k8s_openapi::api::core::v1::Node;
    use serde_json::json;

    fn node(name: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
            .expect("node"),
        )
    }

    fn pod(name: &str, node: &str, cpu: &str, prio: i32, started: &str) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d",
                "labels": {"app": name}},
                "spec": {"nodeName": node, "priority": prio, "containers": [
                    {"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
                "status": {"phase": "Running", "startTime": started}}))
            .expect("pod"),
        )
    }

    /// The fit check of these tests: cpu only, 4 cores a node.
    fn cpu_fits(preemptor: &Pod) -> impl Fn(&Snapshot, &str) -> bool + '_ {
        move |snap: &Snapshot, name: &str| {
            let want = pod_requests(preemptor.spec.as_ref().expect("spec"), Requests::Declared);
            snap.nodes
                .iter()
                .find(|n| n.name == name)
                .is_some_and(|n| n.requested.milli_cpu + want.milli_cpu <= 4000)
        }
    }

    fn names(c: &Candidate) -> Vec<String> {
        c.victims.iter().map(|p| p.name_any()).collect()
    }

    const T1: &str = "2026-01-01T00:00:00Z";
    const T2: &str = "2026-01-01T01:00:00Z";

    #[test]
    fn evicts_the_fewest_least_important_lower_priority_pods() {
        let pods = vec![
            pod("big-low", "a", "2", 1, T1),
            pod("small-low", "a", "1", 1, T1),
            pod("other-low", "a", "1", 2, T1),
        ];
        let snap = Snapshot::new(&[node("a")], &pods, &[]);
        let high = pod("high", "", "2", 100, T2);
        let c = find(&high, &snap, |_| true, cpu_fits(&high), &[]).expect("candidate");
        assert_eq!(c.node, "a");
        // Put back most important first: other-low (1 + 2 fits) stays, big-low (1 + 2 + 2)
        // does not, small-low (1 + 1 + 2) does.
        assert_eq!(names(&c), vec!["big-low"]);
        assert_eq!(c.pdb_violations, 0);
    }

    #[test]
    fn equal_or_higher_priority_pods_are_never_victims() {
        let pods = vec![pod("same", "a", "3", 100, T1), pod("low", "a", "1", 1, T1)];
        let snap = Snapshot::new(&[node("a")], &pods, &[]);
        let high = pod("high", "", "2", 100, T2);
        let none = find(&high, &snap, |_| true, cpu_fits(&high), &[]).expect_err("no room");
        assert_eq!(
            none.to_string(),
            "0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );
        let none = find(&high, &snap, |_| false, cpu_fits(&high), &[]).expect_err("no room");
        assert_eq!(
            none.to_string(),
            "0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );
    }

    #[test]
    fn the_node_with_the_least_important_victims_is_chosen() {
        let pods = vec![
            pod("a-mid", "a", "4", 50, T1),
            pod("b-low", "b", "4", 10, T1),
            pod("c-two", "c", "2", 5, T1),
            pod("c-two-more", "c", "2", 5, T1),
        ];
        let snap = Snapshot::new(&[node("a"), node("b"), node("c")], &pods, &[]);
        let high = pod("high", "", "3", 100, T2);
        let c = find(&high, &snap, |_| true, cpu_fits(&high), &[]).expect("candidate");
        // c's victims have the lowest highest priority (5 < 10 < 50).
        assert_eq!(c.node, "c");
        assert_eq!(c.victims.len(), 2);
    }

    #[test]
    fn budgets_are_respected_when_another_pod_will_do() {
        let pods = vec![
            pod("guarded", "a", "2", 1, T2),
            pod("free", "a", "2", 1, T1),
        ];
        let pdb: Arc<PodDisruptionBudget> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "d"},
                "spec": {"selector": {"matchLabels": {"app": "guarded"}}},
                "status": {"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 1, "expectedPods": 1}}))
            .expect("pdb"),
        );
        let snap = Snapshot::new(&[node("a")], &pods, &[]);
        let high = pod("high", "", "2", 100, T2);
        let c = find(
            &high,
            &snap,
            |_| true,
            cpu_fits(&high),
            std::slice::from_ref(&pdb),
        )
        .expect("candidate");
        assert_eq!(names(&c), vec!["free"]);
        assert_eq!(c.pdb_violations, 0);
        // When only the guarded pod makes room, it goes anyway, counted as a violation.
        let big = pod("big", "", "4", 100, T2);
        let c = find(&big, &snap, |_| true, cpu_fits(&big), &[pdb]).expect("candidate");
        assert_eq!(c.victims.len(), 2);
        assert_eq!(c.pdb_violations, 1);
    }

    #[test]
    fn never_policy_and_terminating_victims_stop_preemption() {
        let mut never = (*pod("n", "", "1", 100, T2)).clone();
        if let Some(s) = never.spec.as_mut() {
            s.preemption_policy = Some("Never".into());
        }
        let snap = Snapshot::new(&[node("a")], &[], &[]);
        assert_eq!(eligible(&never, &snap, None), Err(NotEligible::PolicyNever));
        assert_eq!(
            NotEligible::PolicyNever.to_string(),
            "not eligible due to preemptionPolicy=Never."
        );
        let mut going = (*pod("victim", "a", "1", 1, T1)).clone();
        going.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(T2.parse().expect("time")),
        );
        let snap = Snapshot::new(&[node("a")], &[Arc::new(going)], &[]);
        let mut waiting = (*pod("high", "", "1", 100, T2)).clone();
        waiting.status = Some(k8s_openapi::api::core::v1::PodStatus {
            nominated_node_name: Some("a".into()),
            ..Default::default()
        });
        assert_eq!(
            eligible(&waiting, &snap, None),
            Err(NotEligible::VictimsTerminating)
        );
        let fresh = pod("fresh", "", "1", 100, T2);
        assert_eq!(eligible(&fresh, &snap, None), Ok(()));
        // A copy of the pod that does not show its nomination yet, whose victim the cache does
        // not show terminating yet, is held back by the scheduler's own record.
        let mut victim = (*pod("victim", "a", "1", 1, T1)).clone();
        victim.metadata.uid = Some("v1".into());
        let snap = Snapshot::new(&[node("a")], &[Arc::new(victim)], &[]);
        let recorded = Nomination {
            node: "a".into(),
            victims: vec!["v1".into()],
        };
        assert_eq!(
            eligible(&fresh, &snap, Some(&recorded)),
            Err(NotEligible::VictimsTerminating)
        );
        let elsewhere = Nomination {
            node: "b".into(),
            ..recorded
        };
        assert_eq!(eligible(&fresh, &snap, Some(&elsewhere)), Ok(()));
    }
}
