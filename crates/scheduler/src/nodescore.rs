//! The node-only scores: NodeAffinity's preferred terms (the sum of the weights of the
//! terms a node matches) and TaintToleration's preference (how many `PreferNoSchedule`
//! taints of the node the pod does not tolerate; fewer is better).

use k8s_openapi::api::core::v1::{Node, PodSpec};

use controller_base::nodefit;

/// The weights of the pod's preferred node affinity terms that `node` matches, summed.
pub fn preferred_affinity(spec: &PodSpec, node: &Node) -> i64 {
    spec.affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|t| nodefit::term_matches_node(&t.preference, node))
        .map(|t| i64::from(t.weight))
        .sum()
}

/// How many `PreferNoSchedule` taints of `node` no toleration of the pod (with effect
/// `PreferNoSchedule` or none) tolerates.
pub fn intolerable_preferences(spec: &PodSpec, node: &Node) -> i64 {
    let tolerations: Vec<_> = spec
        .tolerations
        .iter()
        .flatten()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    let n = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|taint| taint.effect == "PreferNoSchedule")
        .filter(|taint| !tolerations.iter().any(|t| nodefit::tolerates(t, taint)))
        .count();
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn preferred_terms_add_their_weights() {
        let node: Node = serde_json::from_value(
            json!({"metadata": {"name": "n", "labels": {"disk": "ssd", "zone": "z1"}}}),
        )
        .expect("node");
        let spec: PodSpec = serde_json::from_value(json!({"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 5, "preference": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}},
                {"weight": 7, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}},
                {"weight": 11, "preference": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}]}}}))
        .expect("spec");
        assert_eq!(preferred_affinity(&spec, &node), 16);
        assert_eq!(
            preferred_affinity(
                &serde_json::from_value(json!({"containers": []})).expect("spec"),
                &node
            ),
            0
        );
    }

    #[test]
    fn prefer_no_schedule_taints_count_unless_tolerated() {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "n"}, "spec": {"taints": [
            {"key": "a", "effect": "PreferNoSchedule"},
            {"key": "b", "value": "x", "effect": "PreferNoSchedule"},
            {"key": "c", "effect": "NoSchedule"}]}}))
            .expect("node");
        let spec = |tolerations: serde_json::Value| -> PodSpec {
            serde_json::from_value(json!({"containers": [], "tolerations": tolerations}))
                .expect("spec")
        };
        assert_eq!(intolerable_preferences(&spec(json!([])), &node), 2);
        assert_eq!(
            intolerable_preferences(&spec(json!([{"key": "a", "operator": "Exists"}])), &node),
            1
        );
        // A NoSchedule toleration does not soften a preference.
        assert_eq!(
            intolerable_preferences(
                &spec(json!([{"key": "a", "operator": "Exists", "effect": "NoSchedule"}])),
                &node
            ),
            2
        );
    }
}
