//! Whether a pod may go to a node, as kube-scheduler's NodeAffinity and TaintToleration
//! filters decide (the DaemonSet controller asks the same questions before it makes a pod
//! for a node): `nodeSelector` labels, required node affinity terms (label expressions and
//! the `metadata.name` field), and taints against tolerations.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, NodeSelectorTerm, PodSpec, Taint, Toleration,
};

/// The field a node selector term's `matchFields` may name (upstream `metav1.ObjectNameField`).
pub const NODE_NAME_FIELD: &str = "metadata.name";

/// Upstream `Toleration.ToleratesTaint`: key (or an empty key with `Exists`), effect (empty
/// matches all) and value (unless `Exists`) agree.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let key = t.key.as_deref().unwrap_or("");
    let effect = t.effect.as_deref().unwrap_or("");
    let op = t.operator.as_deref().unwrap_or("Equal");
    let key_ok = (key.is_empty() && op == "Exists") || key == taint.key;
    let effect_ok = effect.is_empty() || effect == taint.effect;
    let value_ok = match op {
        "Exists" => true,
        "Equal" | "" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    };
    key_ok && effect_ok && value_ok
}

/// The node's first taint whose effect `considered` accepts and that no toleration of
/// `spec` tolerates.
pub fn untolerated_taint<'a>(
    spec: &PodSpec,
    node: &'a Node,
    considered: impl Fn(&str) -> bool,
) -> Option<&'a Taint> {
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .filter(|t| considered(&t.effect))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
}

/// The NodeAffinity filter: the pod's `nodeSelector` labels all match, and one of the terms
/// of its required node affinity (if any) matches.
pub fn matches_node(spec: &PodSpec, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    let by_selector = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let name = node.metadata.name.as_deref().unwrap_or("");
    let by_affinity = required.is_none_or(|sel| {
        sel.node_selector_terms
            .iter()
            .any(|t| term_matches(t, labels, name))
    });
    by_selector && by_affinity
}

/// Whether one node selector term (as in a preferred node affinity term) matches `node`.
pub fn term_matches_node(term: &NodeSelectorTerm, node: &Node) -> bool {
    let empty = BTreeMap::new();
    let labels = node.metadata.labels.as_ref().unwrap_or(&empty);
    term_matches(term, labels, node.metadata.name.as_deref().unwrap_or(""))
}

/// A term matches when it has requirements and all of them hold; an empty term matches
/// nothing (upstream's `nodeaffinity` package).
fn term_matches(term: &NodeSelectorTerm, labels: &BTreeMap<String, String>, name: &str) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let exprs_ok = exprs
        .iter()
        .all(|r| requirement_holds(r, labels.get(&r.key).map(String::as_str)));
    let fields_ok = fields.iter().all(|r| {
        let value = (r.key == NODE_NAME_FIELD).then_some(name);
        r.key == NODE_NAME_FIELD && requirement_holds(r, value)
    });
    exprs_ok && fields_ok
}

fn requirement_holds(r: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let number = |s: &str| s.parse::<i64>().ok();
    let bound = || values.first().and_then(|v| number(v));
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|x| x == v)),
        "NotIn" => value.is_none_or(|v| !values.iter().any(|x| x == v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v > b),
        "Lt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v < b),
        _ => false,
    }
}

/// The node a pod is meant for: its `nodeName`, else the single node its required affinity
/// pins through `metadata.name In [node]` (how DaemonSet pods wait for the scheduler).
pub fn target_node(spec: &PodSpec) -> Option<&str> {
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|r| r.key == NODE_NAME_FIELD && r.operator == "In")
        .and_then(|r| match r.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spec(v: Value) -> PodSpec {
        serde_json::from_value(v).expect("pod spec")
    }

    fn node(v: Value) -> Node {
        serde_json::from_value(v).expect("node")
    }

    #[test]
    fn selector_and_affinity() {
        let n = node(json!({"metadata": {"name": "n1", "labels": {"disk": "ssd", "cores": "8"}}}));
        assert!(matches_node(&spec(json!({"containers": []})), &n));
        assert!(matches_node(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "ssd"}})),
            &n
        ));
        assert!(!matches_node(
            &spec(json!({"containers": [], "nodeSelector": {"disk": "hdd"}})),
            &n
        ));
        let affinity = |terms: Value| {
            spec(json!({"containers": [], "affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}))
        };
        let by_name = affinity(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
        );
        assert!(matches_node(&by_name, &n));
        assert_eq!(target_node(&by_name), Some("n1"));
        let other = affinity(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
        );
        assert!(!matches_node(&other, &n));
        let either = affinity(json!([
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
            {"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]},
                                  {"key": "gpu", "operator": "DoesNotExist"}]}]));
        assert!(matches_node(&either, &n));
        assert!(!matches_node(&affinity(json!([{}])), &n));
        assert!(!matches_node(&affinity(json!([])), &n));
    }

    #[test]
    fn taints_and_tolerations() {
        let n = node(json!({"metadata": {"name": "n1"}, "spec": {"taints": [
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
            {"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"}]}}));
        let none = spec(json!({"containers": []}));
        let any = |e: &str| e == "NoSchedule" || e == "NoExecute";
        assert_eq!(
            untolerated_taint(&none, &n, any).map(|t| t.key.as_str()),
            Some("dedicated")
        );
        let some = spec(json!({"containers": [], "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "db"},
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]}));
        assert_eq!(untolerated_taint(&some, &n, any), None);
        let wrong_value = spec(json!({"containers": [], "tolerations": [
            {"key": "dedicated", "value": "web", "effect": "NoSchedule"}]}));
        assert_eq!(
            untolerated_taint(&wrong_value, &n, |e| e == "NoSchedule").map(|t| t.key.as_str()),
            Some("dedicated")
        );
        let all = spec(json!({"containers": [], "tolerations": [{"operator": "Exists"}]}));
        assert_eq!(untolerated_taint(&all, &n, any), None);
    }
}
