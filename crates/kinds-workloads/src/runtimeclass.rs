//! RuntimeClasses (node.k8s.io/v1, cluster-scoped) and the `RuntimeClass` admission plugin's
//! pure part. A class names the node runtime handler its pods run with (a DNS label that
//! never changes), the fixed overhead such pods cost beside their containers, and where they
//! may run (a node selector and tolerations). Printed as NAME / HANDLER / AGE. On a new pod
//! that names a class, the plugin copies the overhead into `spec.overhead`, merges the node
//! selector and adds the tolerations; a pod naming no class, or a class without overhead, may
//! not bring an overhead of its own.

use std::collections::BTreeMap;

use k8s_openapi::api::node::v1::RuntimeClass;
use serde_json::{json, Map, Value};

use apimachinery::checks::labels;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, obj, str_at};
use apimachinery::names::dns1123_label;
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::quantity::Quantity;
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "node.k8s.io",
    version: "v1",
    plural: "runtimeclasses",
    singular: "runtimeclass",
    kind: "RuntimeClass",
    list_kind: "RuntimeClassList",
    namespaced: false,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &RuntimeClasses,
};

#[derive(Debug)]
struct RuntimeClasses;

impl Strategy for RuntimeClasses {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<RuntimeClass>(obj)
    }

    /// `ValidateRuntimeClass`.
    fn validate(&self, rc: &Value, e: &mut FieldErrors) {
        let handler = rc.get("handler").and_then(Value::as_str).unwrap_or("");
        for m in dns1123_label(handler) {
            e.invalid("handler", &Value::from(handler), &m);
        }
        if let Some(fixed) = rc.pointer("/overhead/podFixed").filter(|v| !v.is_null()) {
            kinds_core::pod::validate_overhead(e, fixed, "overhead");
        }
        if let Some(scheduling) = rc.get("scheduling").filter(|v| !v.is_null()) {
            labels(e, scheduling.get("nodeSelector"), "scheduling.nodeSelector");
            kinds_core::pod::validate_tolerations(
                e,
                scheduling.get("tolerations"),
                "scheduling.tolerations",
            );
        }
    }

    /// `ValidateRuntimeClassUpdate`: the handler stays; the rest is checked as on create.
    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        if old.get("handler") != new.get("handler") {
            e.invalid(
                "handler",
                new.get("handler").unwrap_or(&Value::Null),
                "field is immutable",
            );
        }
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Handler", "string", "", 0, "Handler is the name of the underlying runtime and configuration that the CRI implementation will use to handle pods of this class."),
            AGE,
        ]
    }

    fn cells(&self, rc: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(rc, now);
        vec![name, json!(s(rc, &["handler"])), age]
    }
}

/// Why the RuntimeClass plugin refuses a new pod (a 403 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodRefusal {
    #[error("pod rejected: RuntimeClass {0:?} not found")]
    UnknownClass(String),
    #[error("pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead")]
    OverheadMismatch,
    #[error("pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead")]
    OverheadWithoutClass,
    #[error("conflict: runtimeClass.scheduling.nodeSelector[{key}] = {class_value}; pod.spec.nodeSelector[{key}] = {pod_value}")]
    NodeSelectorConflict {
        key: String,
        class_value: String,
        pod_value: String,
    },
}

/// The class a new pod names in `spec.runtimeClassName`, if it names one (an empty name is
/// still a name, which no class has, as upstream looks up whatever the pointer holds).
pub fn class_name_of(pod: &Value) -> Option<&str> {
    pod.pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
}

/// The RuntimeClass plugin on a new pod (its mutating and validating halves), given the class
/// the pod names (`None` when it names none): the class's overhead becomes `spec.overhead`,
/// its node selector is merged into the pod's and its tolerations are added.
pub fn admit_pod(pod: &mut Value, class: Option<&Value>) -> Result<(), PodRefusal> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let pod_overhead = spec.get("overhead").filter(|o| !o.is_null()).cloned();
    let class_overhead = class
        .and_then(|c| c.get("overhead"))
        .filter(|o| !o.is_null())
        .map(|o| o.get("podFixed").filter(|f| !f.is_null()));
    match (class_overhead, pod_overhead) {
        (Some(fixed), pod_overhead) => {
            if pod_overhead.is_some_and(|given| !same_resources(Some(&given), fixed)) {
                return Err(PodRefusal::OverheadMismatch);
            }
            match fixed {
                Some(fixed) => spec.insert("overhead".into(), fixed.clone()),
                None => spec.remove("overhead"),
            };
        }
        (None, Some(_)) => return Err(PodRefusal::OverheadWithoutClass),
        (None, None) => {}
    }
    if let Some(scheduling) = class
        .and_then(|c| c.get("scheduling"))
        .filter(|s| !s.is_null())
    {
        merge_node_selector(spec, scheduling.get("nodeSelector"))?;
        let merged = merge_tolerations(
            arr(spec.get("tolerations")),
            arr(scheduling.get("tolerations")),
        );
        if merged.is_empty() {
            spec.remove("tolerations");
        } else {
            spec.insert("tolerations".into(), Value::Array(merged));
        }
    }
    Ok(())
}

/// Upstream's semantic equality of two resource lists: the same names with equal amounts
/// (`1` and `1000m` agree); an absent list equals an empty one.
fn same_resources(a: Option<&Value>, b: Option<&Value>) -> bool {
    let amounts = |v: Option<&Value>| -> BTreeMap<String, Option<Quantity>> {
        obj(v)
            .into_iter()
            .flatten()
            .map(|(k, q)| (k.clone(), quantity_of(q)))
            .collect()
    };
    amounts(a) == amounts(b)
}

fn quantity_of(q: &Value) -> Option<Quantity> {
    match q {
        Value::String(s) => Quantity::parse(s),
        Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

/// The class's node selector over the pod's: a key both set to different values refuses the
/// pod.
fn merge_node_selector(
    spec: &mut Map<String, Value>,
    class_selector: Option<&Value>,
) -> Result<(), PodRefusal> {
    let Some(class_selector) = obj(class_selector) else {
        return Ok(());
    };
    let mut merged = obj(spec.get("nodeSelector")).cloned().unwrap_or_default();
    for (key, class_value) in class_selector {
        if let Some(pod_value) = merged.get(key) {
            if pod_value != class_value {
                return Err(PodRefusal::NodeSelectorConflict {
                    key: key.clone(),
                    class_value: class_value.as_str().unwrap_or("").to_string(),
                    pod_value: pod_value.as_str().unwrap_or("").to_string(),
                });
            }
        }
        merged.insert(key.clone(), class_value.clone());
    }
    spec.insert("nodeSelector".into(), Value::Object(merged));
    Ok(())
}

/// Upstream's `MergeTolerations`: the pod's then the class's, leaving out each toleration
/// that another one already covers (of two equal ones, the first stays).
pub fn merge_tolerations(first: &[Value], second: &[Value]) -> Vec<Value> {
    let all: Vec<&Value> = first.iter().chain(second).collect();
    let mut merged: Vec<Value> = Vec::new();
    for (i, t) in all.iter().enumerate() {
        if merged.iter().any(|kept| covers(kept, t)) {
            continue;
        }
        if all[i + 1..]
            .iter()
            .any(|later| *later != *t && covers(later, t))
        {
            continue;
        }
        merged.push((*t).clone());
    }
    merged
}

/// Upstream's `isSuperset`: whether toleration `ss` tolerates every taint `t` does.
fn covers(ss: &Value, t: &Value) -> bool {
    if ss == t {
        return true;
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (ss_key, t_key) = (text(ss, "key"), text(t, "key"));
    let ss_op = text(ss, "operator");
    // An empty key with `Exists` matches every key.
    if t_key != ss_key && (!ss_key.is_empty() || ss_op != "Exists") {
        return false;
    }
    let (ss_effect, t_effect) = (text(ss, "effect"), text(t, "effect"));
    // An empty effect matches every effect.
    if t_effect != ss_effect && !ss_effect.is_empty() {
        return false;
    }
    if ss_effect == "NoExecute" {
        let seconds = |v: &Value| v.get("tolerationSeconds").and_then(Value::as_i64);
        if let Some(limit) = seconds(ss) {
            if seconds(t).is_none_or(|own| own > limit) {
                return false;
            }
        }
    }
    match ss_op.as_str() {
        "" | "Equal" => text(t, "operator") == "Equal" && text(t, "value") == text(ss, "value"),
        "Exists" => true,
        _ => false,
    }
}

/// The handler of class `rc` (what the node's runtime is asked to run the pod with).
pub fn handler_of(rc: &Value) -> &str {
    str_at(rc, &["handler"])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn class(spec: Value) -> Value {
        let mut rc =
            json!({"metadata": {"name": "kata", "creationTimestamp": "2026-01-02T14:00:00Z"}});
        if let (Some(rc), Some(extra)) = (rc.as_object_mut(), spec.as_object()) {
            rc.extend(extra.clone());
        }
        rc
    }

    fn refusal(pod_spec: Value, rc: Option<&Value>) -> String {
        let mut pod = json!({"spec": pod_spec});
        admit_pod(&mut pod, rc)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn classes_are_validated_as_upstream() {
        let good = class(json!({"handler": "runc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
            "scheduling": {"nodeSelector": {"kubernetes.io/hostname": "n1"},
                           "tolerations": [{"key": "sandboxed", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert!(RESOURCE.validate_create(&good).is_ok());
        let bad = class(json!({"handler": "Kata_Fast",
            "overhead": {"podFixed": {"cpu": "-1"}},
            "scheduling": {"nodeSelector": {"bad key!": "v"},
                           "tolerations": [{"operator": "Equal", "value": "x"}]}}));
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec![
                "handler: Invalid value: \"Kata_Fast\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')",
                "overhead.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                "scheduling.nodeSelector: Invalid value: \"bad key!\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
                "scheduling.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
            ]
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&class(json!({"handler": ""})))).len(),
            1
        );
    }

    #[test]
    fn handler_is_immutable() {
        let old = class(json!({"handler": "runc"}));
        let mut new = old.clone();
        new["handler"] = json!("kata");
        assert_eq!(
            messages(RESOURCE.validate_update(&old, &new)),
            vec!["handler: Invalid value: \"kata\": field is immutable"]
        );
        let mut fine = old.clone();
        fine["overhead"] = json!({"podFixed": {"cpu": "1"}});
        assert!(RESOURCE.validate_update(&old, &fine).is_ok());
    }

    #[test]
    fn rows() {
        assert_eq!(
            RESOURCE
                .strategy
                .cells(&class(json!({"handler": "runc"})), now()),
            vec![json!("kata"), json!("runc"), json!("60m")]
        );
    }

    #[test]
    fn overhead_is_set_from_the_class() {
        let rc = class(json!({"handler": "runc",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}}}));
        let mut pod = json!({"spec": {"runtimeClassName": "kata"}});
        admit_pod(&mut pod, Some(&rc)).expect("admitted");
        assert_eq!(
            pod["spec"]["overhead"],
            json!({"cpu": "250m", "memory": "120Mi"})
        );
        // An overhead equal in amount is accepted and takes the class's form.
        let mut pod = json!({"spec": {"overhead": {"cpu": "0.25", "memory": "120Mi"}}});
        admit_pod(&mut pod, Some(&rc)).expect("admitted");
        assert_eq!(pod["spec"]["overhead"]["cpu"], "250m");
        // A class without overhead leaves a pod without one alone.
        let plain = class(json!({"handler": "runc"}));
        let mut pod = json!({"spec": {"containers": []}});
        admit_pod(&mut pod, Some(&plain)).expect("admitted");
        assert_eq!(pod, json!({"spec": {"containers": []}}));
    }

    #[test]
    fn overheads_the_class_does_not_give_are_refused() {
        let rc = class(json!({"handler": "runc", "overhead": {"podFixed": {"cpu": "250m"}}}));
        assert_eq!(
            refusal(json!({"overhead": {"cpu": "1"}}), Some(&rc)),
            "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
        );
        assert_eq!(
            refusal(json!({"overhead": {"cpu": "1"}}), None),
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
        );
        let plain = class(json!({"handler": "runc"}));
        assert_eq!(
            refusal(json!({"overhead": {}}), Some(&plain)),
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
        );
        assert_eq!(
            PodRefusal::UnknownClass("gone".into()).to_string(),
            "pod rejected: RuntimeClass \"gone\" not found"
        );
    }

    #[test]
    fn scheduling_is_merged_into_the_pod() {
        let rc = class(json!({"handler": "runc", "scheduling": {
            "nodeSelector": {"sandbox": "yes", "zone": "a"},
            "tolerations": [
                {"key": "sandbox", "operator": "Exists"},
                {"key": "zone", "operator": "Equal", "value": "a", "effect": "NoSchedule"}]}}));
        let mut pod = json!({"spec": {
            "nodeSelector": {"zone": "a", "disk": "ssd"},
            "tolerations": [
                {"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "other", "operator": "Exists"}]}});
        admit_pod(&mut pod, Some(&rc)).expect("admitted");
        assert_eq!(
            pod["spec"]["nodeSelector"],
            json!({"disk": "ssd", "sandbox": "yes", "zone": "a"})
        );
        // The pod's NoSchedule-only toleration is covered by the class's for every effect.
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "other", "operator": "Exists"},
                {"key": "sandbox", "operator": "Exists"},
                {"key": "zone", "operator": "Equal", "value": "a", "effect": "NoSchedule"}])
        );
        assert_eq!(
            refusal(json!({"nodeSelector": {"zone": "b"}}), Some(&rc)),
            "conflict: runtimeClass.scheduling.nodeSelector[zone] = a; pod.spec.nodeSelector[zone] = b"
        );
    }

    #[test]
    fn tolerations_merge_as_upstream() {
        let merge = |a: &[&Value], b: &[&Value]| {
            let owned = |l: &[&Value]| l.iter().map(|v| (*v).clone()).collect::<Vec<_>>();
            merge_tolerations(&owned(a), &owned(b))
        };
        let short = json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10});
        let long = json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60});
        // The longer toleration covers the shorter one, whichever list holds it.
        assert_eq!(merge(&[&short], &[&long]), vec![long.clone()]);
        assert_eq!(merge(&[&long], &[&short]), vec![long.clone()]);
        // Equal tolerations are kept once; an empty key with Exists covers everything.
        assert_eq!(merge(&[&short], &[&short]), vec![short.clone()]);
        let all = json!({"operator": "Exists"});
        assert_eq!(merge(&[&short, &long], &[&all]), vec![all.clone()]);
        let eq = json!({"key": "k", "operator": "Equal", "value": "v"});
        let other_value = json!({"key": "k", "operator": "Equal", "value": "w"});
        assert_eq!(merge(&[&eq], &[&other_value]), vec![eq, other_value]);
    }
}
