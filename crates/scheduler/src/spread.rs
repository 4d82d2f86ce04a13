//! kube-scheduler's PodTopologySpread plugin. Each constraint counts the pods its selector
//! matches (in the pod's namespace, not terminating) per domain of its `topologyKey` over
//! the nodes its policies admit (by default: nodes matching the pod's node affinity, taints
//! ignored). `DoNotSchedule` constraints filter: placing the pod must not raise the domain's
//! count above the smallest domain's by more than `maxSkew` (the smallest counts as 0 while
//! fewer than `minDomains` domains exist). `ScheduleAnyway` constraints score: emptier
//! domains score higher.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, PodSpec, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use controller_base::nodefit;

use crate::misfit::Misfit;
use crate::selectors;
use crate::snapshot::{NodeInfo, Snapshot};

#[derive(Debug, Clone)]
struct Constraint {
    max_skew: i64,
    key: String,
    selector: Option<LabelSelector>,
    min_domains: i64,
    honor_affinity: bool,
    honor_taints: bool,
    /// Whether the incoming pod itself matches the selector.
    self_match: i64,
    /// Matching pods per domain value, every admitted domain present.
    counts: BTreeMap<String, i64>,
}

impl Constraint {
    fn new(c: &TopologySpreadConstraint, pod: &Pod) -> Constraint {
        let selector = selectors::with_label_keys(
            c.label_selector.as_ref(),
            c.match_label_keys.as_deref(),
            None,
            pod.labels(),
        );
        let self_match = selector
            .as_ref()
            .is_some_and(|s| selectors::matches(s, pod.labels()));
        Constraint {
            max_skew: i64::from(c.max_skew),
            key: c.topology_key.clone(),
            selector,
            min_domains: c.min_domains.map_or(1, i64::from),
            honor_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
            honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            self_match: i64::from(self_match),
            counts: BTreeMap::new(),
        }
    }

    fn admits(&self, spec: &PodSpec, node: &NodeInfo) -> bool {
        let hard_effects = |e: &str| matches!(e, "NoSchedule" | "NoExecute");
        (!self.honor_affinity || nodefit::matches_node(spec, &node.node))
            && (!self.honor_taints
                || nodefit::untolerated_taint(spec, &node.node, hard_effects).is_none())
    }

    fn matching_pods(&self, pod: &Pod, node: &NodeInfo) -> i64 {
        let ns = pod.namespace();
        let Some(sel) = &self.selector else {
            return 0;
        };
        let n = node
            .pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none() && p.namespace() == ns)
            .filter(|p| selectors::matches(sel, p.labels()))
            .count();
        i64::try_from(n).unwrap_or(i64::MAX)
    }

    fn min_count(&self) -> i64 {
        let domains = i64::try_from(self.counts.len()).unwrap_or(i64::MAX);
        if domains < self.min_domains {
            return 0;
        }
        self.counts.values().copied().min().unwrap_or(0)
    }
}

/// The plugin's state for one pod against one snapshot.
#[derive(Debug)]
pub struct Spread {
    hard: Vec<Constraint>,
    soft: Vec<Constraint>,
}

/// Counts each constraint's matching pods per domain over the nodes that carry every key of
/// `group` and that the constraint's policies admit.
fn count(group: &mut [Constraint], pod: &Pod, snap: &Snapshot) {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let keys: Vec<String> = group.iter().map(|c| c.key.clone()).collect();
    for node in &snap.nodes {
        let labels = node.labels();
        if !keys.iter().all(|k| labels.contains_key(k)) {
            continue;
        }
        for c in group.iter_mut() {
            if !c.admits(spec, node) {
                continue;
            }
            let Some(value) = labels.get(&c.key) else {
                continue;
            };
            let n = c.matching_pods(pod, node);
            *c.counts.entry(value.clone()).or_default() += n;
        }
    }
}

impl Spread {
    pub fn new(pod: &Pod, snap: &Snapshot) -> Spread {
        let constraints = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_ref());
        let (mut hard, mut soft): (Vec<_>, Vec<_>) = constraints
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c.when_unsatisfiable == "DoNotSchedule",
                    Constraint::new(c, pod),
                )
            })
            .partition(|(h, _)| *h);
        let mut hard: Vec<Constraint> = hard.drain(..).map(|(_, c)| c).collect();
        let mut soft: Vec<Constraint> = soft.drain(..).map(|(_, c)| c).collect();
        count(&mut hard, pod, snap);
        count(&mut soft, pod, snap);
        Spread { hard, soft }
    }

    /// The `DoNotSchedule` constraints.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Misfit> {
        let labels = node.labels();
        for c in &self.hard {
            let Some(value) = labels.get(&c.key) else {
                return Err(Misfit::SpreadMissingLabel);
            };
            let here = c.counts.get(value).copied().unwrap_or(0);
            if here + c.self_match - c.min_count() > c.max_skew {
                return Err(Misfit::Spread);
            }
        }
        Ok(())
    }

    /// The `ScheduleAnyway` constraints' raw score (lower is better), or None for a node
    /// missing one of their keys (it scores 0).
    pub fn raw_score(&self, node: &NodeInfo) -> Option<i64> {
        if self.soft.is_empty() {
            return Some(0);
        }
        let labels = node.labels();
        let mut total = 0.0;
        for c in &self.soft {
            let value = labels.get(&c.key)?;
            let here = c.counts.get(value).copied().unwrap_or(0) as f64;
            // Upstream weighs each constraint by the log of its domain count, so a
            // constraint over many domains is not drowned by one over few.
            let weight = ((c.counts.len() + 2) as f64).ln();
            total += here * weight + (c.max_skew - 1) as f64;
        }
        Some(total.round() as i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Node;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(name: &str, zone: Option<&str>, extra: Value) -> Arc<Node> {
        let mut labels = json!({"kubernetes.io/hostname": name});
        if let Some(z) = zone {
            labels["zone"] = json!(z);
        }
        let mut v = json!({"metadata": {"name": name, "labels": labels}});
        if let (Some(obj), Some(more)) = (v.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        Arc::new(serde_json::from_value(v).expect("node"))
    }

    fn pod(node: &str, app: &str, constraints: Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "default",
                "labels": {"app": app}},
                "spec": {"nodeName": node, "containers": [], "topologySpreadConstraints": constraints}}))
            .expect("pod"),
        )
    }

    fn zone_constraint(when: &str, extra: Value) -> Value {
        let mut c = json!({"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}});
        if let (Some(obj), Some(more)) = (c.as_object_mut(), extra.as_object()) {
            obj.extend(more.clone());
        }
        json!([c])
    }

    fn nodes() -> Vec<Arc<Node>> {
        vec![
            node("a", Some("z1"), json!({})),
            node("b", Some("z2"), json!({})),
            node("c", None, json!({})),
        ]
    }

    #[test]
    fn do_not_schedule_keeps_skew_within_max() {
        let incoming = pod("", "web", zone_constraint("DoNotSchedule", json!({})));
        let placed = vec![pod("a", "web", json!([])), pod("a", "db", json!([]))];
        let snap = Snapshot::new(&nodes(), &placed, &[]);
        let s = Spread::new(&incoming, &snap);
        let got: Vec<_> = snap.nodes.iter().map(|n| s.filter(n)).collect();
        assert_eq!(
            got,
            vec![Err(Misfit::Spread), Ok(()), Err(Misfit::SpreadMissingLabel)]
        );
        // With three domains wanted and two present, the minimum counts as zero: z2 still
        // takes a pod while z1 holds one.
        let wants_three = pod(
            "",
            "web",
            zone_constraint("DoNotSchedule", json!({"minDomains": 3})),
        );
        let placed = vec![pod("a", "web", json!([])), pod("b", "web", json!([]))];
        let snap = Snapshot::new(&nodes(), &placed, &[]);
        let s = Spread::new(&wants_three, &snap);
        assert_eq!(s.filter(&snap.nodes[1]), Err(Misfit::Spread));
        let s = Spread::new(&incoming, &snap);
        assert_eq!(s.filter(&snap.nodes[1]), Ok(()));
    }

    #[test]
    fn node_affinity_policy_limits_the_domains() {
        let in_z1 = |extra: Value| {
            let mut p = (*pod("", "web", zone_constraint("DoNotSchedule", extra))).clone();
            if let Some(spec) = p.spec.as_mut() {
                spec.node_selector = Some([("zone".to_string(), "z1".to_string())].into());
            }
            p
        };
        let placed = vec![pod("a", "web", json!([]))];
        let snap = Snapshot::new(&nodes(), &placed, &[]);
        // Only z1 is a domain, so z1 is also the smallest: the pod may join it.
        assert_eq!(
            Spread::new(&in_z1(json!({})), &snap).filter(&snap.nodes[0]),
            Ok(())
        );
        let ignore = in_z1(json!({"nodeAffinityPolicy": "Ignore"}));
        assert_eq!(
            Spread::new(&ignore, &snap).filter(&snap.nodes[0]),
            Err(Misfit::Spread)
        );
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let incoming = pod("", "web", zone_constraint("ScheduleAnyway", json!({})));
        let placed = vec![pod("a", "web", json!([])), pod("a", "web", json!([]))];
        let snap = Snapshot::new(&nodes(), &placed, &[]);
        let s = Spread::new(&incoming, &snap);
        let got: Vec<_> = snap.nodes.iter().map(|n| s.raw_score(n)).collect();
        // Two pods weighted by ln(2 domains + 2) ≈ 1.39.
        assert_eq!(got, vec![Some(3), Some(0), None]);
        assert!(snap.nodes.iter().all(|n| s.filter(n).is_ok()));
    }
}
