//! ClusterRole aggregation (kube-controller-manager's `clusterrole-aggregation` controller,
//! its pure part): a ClusterRole with an `aggregationRule` holds the rules of every other
//! ClusterRole a selector of it matches, in the order of the selectors and then of the
//! roles' names, each rule once.

use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule};

/// The rules `role` should hold given every ClusterRole in `all`; `None` when it does not
/// aggregate.
pub fn aggregated_rules(role: &ClusterRole, all: &[&ClusterRole]) -> Option<Vec<PolicyRule>> {
    let rule = role.aggregation_rule.as_ref()?;
    let mut sorted: Vec<&ClusterRole> = all.to_vec();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut rules: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        let selector = serde_json::to_value(selector).unwrap_or_default();
        for other in &sorted {
            if other.metadata.name == role.metadata.name {
                continue;
            }
            let labels = other
                .metadata
                .labels
                .as_ref()
                .and_then(|l| serde_json::to_value(l).ok());
            if !apimachinery::labelselector::matches(&selector, labels.as_ref()) {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !rules.contains(r) {
                    rules.push(r.clone());
                }
            }
        }
    }
    Some(rules)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(v: serde_json::Value) -> ClusterRole {
        serde_json::from_value(v).expect("cluster role")
    }

    #[test]
    fn gathers_labelled_roles_once() {
        let view = role(json!({"metadata": {"name": "view"}, "aggregationRule": {
            "clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]}}));
        let pods = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        let widgets =
            json!({"verbs": ["list"], "apiGroups": ["example.com"], "resources": ["widgets"]});
        let a = role(
            json!({"metadata": {"name": "b-widgets", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [widgets, pods]}),
        );
        let b = role(
            json!({"metadata": {"name": "a-pods", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
            "rules": [pods]}),
        );
        let other = role(
            json!({"metadata": {"name": "other"}, "rules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]}),
        );
        let rules = aggregated_rules(&view, &[&view, &a, &b, &other]).expect("aggregates");
        assert_eq!(
            serde_json::to_value(&rules).expect("json"),
            json!([pods, widgets])
        );
        assert!(aggregated_rules(&other, &[&view]).is_none());
    }
}
