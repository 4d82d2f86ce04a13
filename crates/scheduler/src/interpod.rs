//! kube-scheduler's InterPodAffinity plugin. The filter: the pod's required affinity finds
//! a matching pod in the node's topology domain (or the pod is the first of a group that
//! matches its own terms), its required anti-affinity finds none there, and no pod already
//! placed has required anti-affinity that the pod would break. The score: preferred terms,
//! the pod's and (symmetrically) the placed pods', weigh each topology domain.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Pod, PodAffinityTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::ResourceExt;

use crate::misfit::Misfit;
use crate::selectors::{self, Labels, Namespaces};
use crate::snapshot::{NodeInfo, Snapshot};

/// Upstream's `hardPodAffinityWeight`: how much a placed pod's required affinity towards
/// the incoming pod counts in the score.
const HARD_AFFINITY_WEIGHT: i64 = 1;

/// An affinity term with its selector and namespaces resolved for the pod that owns it.
#[derive(Debug, Clone)]
struct Term {
    selector: Option<LabelSelector>,
    namespaces: Namespaces,
    topology_key: String,
    weight: i64,
}

impl Term {
    fn new(term: &PodAffinityTerm, owner: &Pod, weight: i64) -> Term {
        let owner_labels = owner.labels();
        Term {
            selector: selectors::with_label_keys(
                term.label_selector.as_ref(),
                term.match_label_keys.as_deref(),
                term.mismatch_label_keys.as_deref(),
                owner_labels,
            ),
            namespaces: Namespaces::new(
                term.namespaces.as_deref(),
                term.namespace_selector.as_ref(),
                &owner.namespace().unwrap_or_default(),
            ),
            topology_key: term.topology_key.clone(),
            weight,
        }
    }

    /// A term without a selector matches no pod.
    fn matches(&self, pod: &Pod, namespaces: &BTreeMap<String, Labels>) -> bool {
        let ns = pod.namespace().unwrap_or_default();
        self.selector
            .as_ref()
            .is_some_and(|s| selectors::matches(s, pod.labels()))
            && self.namespaces.covers(&ns, namespaces)
    }
}

/// A pod's affinity terms, by kind.
#[derive(Debug, Default)]
struct Terms {
    affinity: Vec<Term>,
    anti_affinity: Vec<Term>,
    preferred_affinity: Vec<Term>,
    preferred_anti_affinity: Vec<Term>,
}

impl Terms {
    fn of(pod: &Pod) -> Terms {
        let Some(aff) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
            return Terms::default();
        };
        let required = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<Term> {
            terms
                .into_iter()
                .flatten()
                .map(|t| Term::new(t, pod, 0))
                .collect()
        };
        let pa = aff.pod_affinity.as_ref();
        let paa = aff.pod_anti_affinity.as_ref();
        let preferred =
            |terms: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
                terms
                    .into_iter()
                    .flatten()
                    .map(|w| Term::new(&w.pod_affinity_term, pod, i64::from(w.weight)))
                    .collect()
            };
        Terms {
            affinity: required(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            anti_affinity: required(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: preferred(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: preferred(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
        }
    }

    fn is_empty(&self) -> bool {
        self.affinity.is_empty()
            && self.anti_affinity.is_empty()
            && self.preferred_affinity.is_empty()
            && self.preferred_anti_affinity.is_empty()
    }
}

/// A topology domain: a label key and its value.
type Domain = (String, String);

/// The plugin's state for one pod against one snapshot.
#[derive(Debug)]
pub struct InterPod {
    affinity: Vec<Term>,
    /// Placed pods matching all of the pod's required affinity terms, per domain.
    affinity_counts: HashMap<Domain, i64>,
    /// Placed pods matching one of the pod's required anti-affinity terms, per domain.
    anti_counts: HashMap<Domain, i64>,
    /// Domains where a placed pod's required anti-affinity matches the pod.
    existing_anti: HashMap<Domain, i64>,
    /// Preference weight per domain.
    scores: HashMap<Domain, i64>,
    /// Whether the pod matches its own required affinity terms (the first of a group).
    self_affine: bool,
}

fn domain(key: &str, labels: &Labels) -> Option<Domain> {
    labels.get(key).map(|v| (key.to_string(), v.clone()))
}

impl InterPod {
    pub fn new(pod: &Pod, snap: &Snapshot) -> InterPod {
        let own = Terms::of(pod);
        let ns = &snap.namespace_labels;
        let mut state = InterPod {
            self_affine: !own.affinity.is_empty()
                && own.affinity.iter().all(|t| t.matches(pod, ns)),
            affinity: own.affinity.clone(),
            affinity_counts: HashMap::new(),
            anti_counts: HashMap::new(),
            existing_anti: HashMap::new(),
            scores: HashMap::new(),
        };
        let add = |map: &mut HashMap<Domain, i64>, key: &str, node: &NodeInfo, n: i64| {
            if let Some(d) = domain(key, node.labels()) {
                *map.entry(d).or_default() += n;
            }
        };
        for node in &snap.nodes {
            for placed in &node.pods {
                if !own.affinity.is_empty() && own.affinity.iter().all(|t| t.matches(placed, ns)) {
                    for t in &own.affinity {
                        add(&mut state.affinity_counts, &t.topology_key, node, 1);
                    }
                }
                for t in own.anti_affinity.iter().filter(|t| t.matches(placed, ns)) {
                    add(&mut state.anti_counts, &t.topology_key, node, 1);
                }
                for t in own
                    .preferred_affinity
                    .iter()
                    .filter(|t| t.matches(placed, ns))
                {
                    add(&mut state.scores, &t.topology_key, node, t.weight);
                }
                for t in own
                    .preferred_anti_affinity
                    .iter()
                    .filter(|t| t.matches(placed, ns))
                {
                    add(&mut state.scores, &t.topology_key, node, -t.weight);
                }
                let theirs = Terms::of(placed);
                if theirs.is_empty() {
                    continue;
                }
                for t in theirs.anti_affinity.iter().filter(|t| t.matches(pod, ns)) {
                    add(&mut state.existing_anti, &t.topology_key, node, 1);
                }
                for t in theirs.affinity.iter().filter(|t| t.matches(pod, ns)) {
                    add(
                        &mut state.scores,
                        &t.topology_key,
                        node,
                        HARD_AFFINITY_WEIGHT,
                    );
                }
                for t in theirs
                    .preferred_affinity
                    .iter()
                    .filter(|t| t.matches(pod, ns))
                {
                    add(&mut state.scores, &t.topology_key, node, t.weight);
                }
                for t in theirs
                    .preferred_anti_affinity
                    .iter()
                    .filter(|t| t.matches(pod, ns))
                {
                    add(&mut state.scores, &t.topology_key, node, -t.weight);
                }
            }
        }
        state
    }

    /// The filter, in upstream's order: the pod's affinity, the pod's anti-affinity, the
    /// placed pods' anti-affinity.
    pub fn filter(&self, node: &NodeInfo) -> Result<(), Misfit> {
        let labels = node.labels();
        let mut pods_exist = true;
        for t in &self.affinity {
            let Some(d) = domain(&t.topology_key, labels) else {
                return Err(Misfit::Affinity);
            };
            if self.affinity_counts.get(&d).copied().unwrap_or(0) <= 0 {
                pods_exist = false;
            }
        }
        // The first pod of a group affine to itself may go where its terms' keys exist.
        let first_of_group = self.affinity_counts.is_empty() && self.self_affine;
        if !(pods_exist || first_of_group) {
            return Err(Misfit::Affinity);
        }
        let hit = |map: &HashMap<Domain, i64>| {
            labels
                .iter()
                .any(|(k, v)| map.get(&(k.clone(), v.clone())).is_some_and(|n| *n > 0))
        };
        if hit(&self.anti_counts) {
            return Err(Misfit::AntiAffinity);
        }
        if hit(&self.existing_anti) {
            return Err(Misfit::ExistingAntiAffinity);
        }
        Ok(())
    }

    /// The node's raw score: the weights of the domains it is in.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        node.labels()
            .iter()
            .filter_map(|(k, v)| self.scores.get(&(k.clone(), v.clone())))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::Snapshot;
    use k8s_openapi::api::core::v1::{Namespace, Node};
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn node(name: &str, zone: &str) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": {
                "kubernetes.io/hostname": name, "zone": zone}}}))
            .expect("node"),
        )
    }

    fn pod(ns: &str, labels: Value, node: &str, affinity: Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": "p", "namespace": ns, "labels": labels},
                "spec": {"nodeName": node, "containers": [], "affinity": affinity}}),
            )
            .expect("pod"),
        )
    }

    fn term(app: &str, key: &str) -> Value {
        json!({"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key})
    }

    fn results(p: &Pod, placed: Vec<Arc<Pod>>) -> Vec<Result<(), Misfit>> {
        let nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        let ns: Vec<Arc<Namespace>> = Vec::new();
        let snap = Snapshot::new(&nodes, &placed, &ns);
        let state = InterPod::new(p, &snap);
        snap.nodes.iter().map(|n| state.filter(n)).collect()
    }

    #[test]
    fn required_anti_affinity_keeps_pods_apart() {
        let anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("web", "kubernetes.io/hostname")]}});
        let p = pod("default", json!({"app": "web"}), "", anti.clone());
        let placed = vec![pod("default", json!({"app": "web"}), "a", json!({}))];
        assert_eq!(
            results(&p, placed),
            vec![Err(Misfit::AntiAffinity), Ok(()), Ok(())]
        );
        // Replicas with the same rule: the pod's own anti-affinity is reported first.
        let replica = vec![pod("default", json!({"app": "web"}), "b", anti.clone())];
        assert_eq!(
            results(&p, replica),
            vec![Ok(()), Err(Misfit::AntiAffinity), Ok(())]
        );
        // Another namespace's pods are not counted.
        let elsewhere = vec![pod("other", json!({"app": "web"}), "a", json!({}))];
        assert_eq!(results(&p, elsewhere), vec![Ok(()), Ok(()), Ok(())]);
        // A placed pod's anti-affinity by zone turns the plain pod away from its zone.
        let plain = pod("default", json!({"app": "web"}), "", json!({}));
        let zone_anti = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("web", "zone")]}});
        let placed = vec![pod("default", json!({"app": "db"}), "b", zone_anti)];
        assert_eq!(
            results(&plain, placed),
            vec![
                Err(Misfit::ExistingAntiAffinity),
                Err(Misfit::ExistingAntiAffinity),
                Ok(())
            ]
        );
    }

    #[test]
    fn required_affinity_follows_matching_pods() {
        let aff = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            term("db", "zone")]}});
        let p = pod("default", json!({"app": "web"}), "", aff.clone());
        // Nothing to follow: no node fits.
        assert_eq!(
            results(&p, vec![]),
            vec![
                Err(Misfit::Affinity),
                Err(Misfit::Affinity),
                Err(Misfit::Affinity)
            ]
        );
        let placed = vec![pod("default", json!({"app": "db"}), "c", json!({}))];
        assert_eq!(
            results(&p, placed),
            vec![Err(Misfit::Affinity), Err(Misfit::Affinity), Ok(())]
        );
        // The first pod of a group affine to itself may go anywhere.
        let first = pod("default", json!({"app": "db"}), "", aff);
        assert_eq!(results(&first, vec![]), vec![Ok(()), Ok(()), Ok(())]);
        // namespaceSelector {} looks at every namespace.
        let any_ns = json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "zone", "namespaceSelector": {}}]}});
        let p = pod("default", json!({"app": "web"}), "", any_ns);
        let placed = vec![pod("other", json!({"app": "db"}), "a", json!({}))];
        assert_eq!(
            results(&p, placed),
            vec![Ok(()), Ok(()), Err(Misfit::Affinity)]
        );
    }

    #[test]
    fn preferences_weigh_domains() {
        let pref = json!({
            "podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 10, "podAffinityTerm": term("db", "zone")}]},
            "podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 4, "podAffinityTerm": term("web", "kubernetes.io/hostname")}]}});
        let p = pod("default", json!({"app": "web"}), "", pref);
        let placed = vec![
            pod("default", json!({"app": "db"}), "a", json!({})),
            pod("default", json!({"app": "web"}), "a", json!({})),
        ];
        let nodes = [node("a", "z1"), node("b", "z1"), node("c", "z2")];
        let snap = Snapshot::new(&nodes, &placed, &[]);
        let state = InterPod::new(&p, &snap);
        let scores: Vec<i64> = snap.nodes.iter().map(|n| state.score(n)).collect();
        assert_eq!(scores, vec![6, 10, 0]);
    }
}
