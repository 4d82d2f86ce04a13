//! kube-scheduler's PodTopologySpread plugin. Each constraint counts the pods its selector
//! matches (in the pod's namespace, not terminating) per domain of its `topologyKey` over
//! the nodes its policies admit (by default: nodes matching the pod's node affinity, taints
//! ignored). `DoNotSchedule` constraints filter: placing the pod must not raise the domain's
//! count above the smallest domain's by more than `maxSkew` (the smallest counts as 0 while
//! fewer than `minDomains` domains exist). `ScheduleAnyway` constraints score: emptier
//! domains score higher. A pod without constraints that a Service, ReplicaSet or StatefulSet
//! selects gets upstream's system defaults: `ScheduleAnyway` over hostnames (`maxSkew` 3)
//! and zones (`maxSkew` 5), counting the pods those selectors match.

use std::collections::BTreeMap;

use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service, TopologySpreadConstraint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
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

/// The system default constraints' keys and skews (kube-scheduler v1.33).
const SYSTEM_DEFAULTS: [(&str, i64); 2] = [
    ("kubernetes.io/hostname", 3),
    ("topology.kubernetes.io/zone", 5),
];

/// The plugin's state for one pod against one snapshot.
#[derive(Debug)]
pub struct Spread {
    hard: Vec<Constraint>,
    soft: Vec<Constraint>,
    /// Whether a node must carry every soft constraint's key to be scored (not so for the
    /// system defaults: a node without zones still spreads by hostname).
    require_all_keys: bool,
}

/// What selects the pod among the Services of its namespace and its controlling ReplicaSet
/// or StatefulSet, as one selector (upstream's `DefaultSelector`); None when nothing does.
pub fn default_selector(
    pod: &Pod,
    services: &[Arc<Service>],
    replicasets: &[Arc<ReplicaSet>],
    statefulsets: &[Arc<StatefulSet>],
) -> Option<LabelSelector> {
    let ns = pod.namespace();
    let labels = pod.labels();
    let mut match_labels = BTreeMap::new();
    let mut match_expressions: Vec<LabelSelectorRequirement> = Vec::new();
    for svc in services.iter().filter(|s| s.namespace() == ns) {
        let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if !sel.is_empty() && sel.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            match_labels.extend(sel.clone());
        }
    }
    let owner = pod
        .owner_references()
        .iter()
        .find(|o| o.controller == Some(true));
    let mut add = |sel: &LabelSelector| {
        match_labels.extend(sel.match_labels.clone().unwrap_or_default());
        match_expressions.extend(sel.match_expressions.clone().unwrap_or_default());
    };
    if let Some(o) = owner {
        let same = |name: Option<String>, other_ns: Option<String>| {
            name.as_deref() == Some(o.name.as_str()) && other_ns == ns
        };
        match o.kind.as_str() {
            "ReplicaSet" => replicasets
                .iter()
                .filter(|r| same(r.metadata.name.clone(), r.namespace()))
                .filter_map(|r| r.spec.as_ref())
                .for_each(|s| add(&s.selector)),
            "StatefulSet" => statefulsets
                .iter()
                .filter(|r| same(r.metadata.name.clone(), r.namespace()))
                .filter_map(|r| r.spec.as_ref())
                .for_each(|s| add(&s.selector)),
            _ => {}
        }
    }
    if match_labels.is_empty() && match_expressions.is_empty() {
        return None;
    }
    Some(LabelSelector {
        match_labels: Some(match_labels),
        match_expressions: (!match_expressions.is_empty()).then_some(match_expressions),
    })
}

/// Counts each constraint's matching pods per domain over the nodes that the constraint's
/// policies admit and that carry every key of `group` (or, without `require_all_keys`, the
/// constraint's own key).
fn count(group: &mut [Constraint], pod: &Pod, snap: &Snapshot, require_all_keys: bool) {
    let empty = PodSpec::default();
    let spec = pod.spec.as_ref().unwrap_or(&empty);
    let keys: Vec<String> = group.iter().map(|c| c.key.clone()).collect();
    for node in &snap.nodes {
        let labels = node.labels();
        if require_all_keys && !keys.iter().all(|k| labels.contains_key(k)) {
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
    /// `defaults` is the pod's [`default_selector`], used when it has no constraints.
    pub fn new(pod: &Pod, snap: &Snapshot, defaults: Option<&LabelSelector>) -> Spread {
        let constraints = pod
            .spec
            .as_ref()
            .and_then(|s| s.topology_spread_constraints.as_deref())
            .unwrap_or(&[]);
        let system: Vec<TopologySpreadConstraint> = match defaults {
            Some(sel) if constraints.is_empty() => SYSTEM_DEFAULTS
                .iter()
                .map(|(key, skew)| TopologySpreadConstraint {
                    max_skew: i32::try_from(*skew).unwrap_or(1),
                    topology_key: key.to_string(),
                    when_unsatisfiable: "ScheduleAnyway".into(),
                    label_selector: Some(sel.clone()),
                    ..Default::default()
                })
                .collect(),
            _ => Vec::new(),
        };
        let require_all_keys = system.is_empty();
        let (hard, soft): (Vec<_>, Vec<_>) = constraints
            .iter()
            .chain(&system)
            .map(|c| {
                (
                    c.when_unsatisfiable == "DoNotSchedule",
                    Constraint::new(c, pod),
                )
            })
            .partition(|(h, _)| *h);
        let mut hard: Vec<Constraint> = hard.into_iter().map(|(_, c)| c).collect();
        let mut soft: Vec<Constraint> = soft.into_iter().map(|(_, c)| c).collect();
        count(&mut hard, pod, snap, true);
        count(&mut soft, pod, snap, require_all_keys);
        Spread {
            hard,
            soft,
            require_all_keys,
        }
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
            let value = match labels.get(&c.key) {
                Some(v) => v,
                None if self.require_all_keys => return None,
                None => continue,
            };
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
        let s = Spread::new(&incoming, &snap, None);
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
        let s = Spread::new(&wants_three, &snap, None);
        assert_eq!(s.filter(&snap.nodes[1]), Err(Misfit::Spread));
        let s = Spread::new(&incoming, &snap, None);
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
            Spread::new(&in_z1(json!({})), &snap, None).filter(&snap.nodes[0]),
            Ok(())
        );
        let ignore = in_z1(json!({"nodeAffinityPolicy": "Ignore"}));
        assert_eq!(
            Spread::new(&ignore, &snap, None).filter(&snap.nodes[0]),
            Err(Misfit::Spread)
        );
    }

    #[test]
    fn schedule_anyway_prefers_emptier_domains() {
        let incoming = pod("", "web", zone_constraint("ScheduleAnyway", json!({})));
        let placed = vec![pod("a", "web", json!([])), pod("a", "web", json!([]))];
        let snap = Snapshot::new(&nodes(), &placed, &[]);
        let s = Spread::new(&incoming, &snap, None);
        let got: Vec<_> = snap.nodes.iter().map(|n| s.raw_score(n)).collect();
        // Two pods weighted by ln(2 domains + 2) ≈ 1.39.
        assert_eq!(got, vec![Some(3), Some(0), None]);
        assert!(snap.nodes.iter().all(|n| s.filter(n).is_ok()));
    }

    #[test]
    fn system_defaults_spread_what_a_service_or_owner_selects() {
        let svc: Arc<Service> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "web", "namespace": "default"},
                "spec": {"selector": {"app": "web"}}}))
            .expect("service"),
        );
        let other: Arc<Service> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "db", "namespace": "default"},
                "spec": {"selector": {"app": "db"}}}))
            .expect("service"),
        );
        let rs: Arc<ReplicaSet> = Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "web-1", "namespace": "default"},
                "spec": {"selector": {"matchLabels": {"hash": "1"}}, "template": {}}}),
            )
            .expect("replicaset"),
        );
        let mut incoming = (*pod("", "web", json!(null))).clone();
        incoming.metadata.owner_references = Some(vec![serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "u",
            "controller": true}))
        .expect("owner")]);
        let sel = default_selector(&incoming, &[svc, other], &[rs], &[]).expect("selector");
        assert_eq!(
            sel.match_labels,
            Some(BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("hash".to_string(), "1".to_string())
            ]))
        );
        let lone = pod("", "lone", json!(null));
        assert_eq!(default_selector(&lone, &[], &[], &[]), None);

        // These nodes carry no topology.kubernetes.io/zone: they are still scored, by hostname.
        let web = |n: &str| {
            let mut p = (*pod(n, "web", json!(null))).clone();
            p.metadata.labels = Some(BTreeMap::from([
                ("app".to_string(), "web".to_string()),
                ("hash".to_string(), "1".to_string()),
            ]));
            Arc::new(p)
        };
        let snap = Snapshot::new(&nodes(), &[web("a")], &[]);
        let s = Spread::new(&incoming, &snap, Some(&sel));
        let got: Vec<_> = snap.nodes.iter().map(|n| s.raw_score(n)).collect();
        // a: 1 × ln(3 domains + 2) + (maxSkew 3 - 1) ≈ 3.6; b and c: 2.
        assert_eq!(got, vec![Some(4), Some(2), Some(2)]);
        // Explicit constraints replace the defaults.
        let own = pod("", "web", zone_constraint("ScheduleAnyway", json!({})));
        let s = Spread::new(&own, &snap, Some(&sel));
        assert_eq!(s.raw_score(&snap.nodes[2]), None);
    }
}
