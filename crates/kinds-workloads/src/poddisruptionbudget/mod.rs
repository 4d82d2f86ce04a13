//! policy/v1 PodDisruptionBudgets: how many of the pods a selector picks may be disrupted
//! (evicted) at once, as `minAvailable` or `maxUnavailable`, a count or a percent; not both.
//! The spec may change (the generation follows it); the status, which the disruption
//! controller and the pod `eviction` subresource write, changes through
//! `poddisruptionbudgets/status`. Printed as MIN AVAILABLE / MAX UNAVAILABLE / ALLOWED
//! DISRUPTIONS. What the pod `eviction` subresource decides by a budget is in [`eviction`].

pub mod eviction;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde_json::{json, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at};
use apimachinery::labelselector;
use apimachinery::names::qualified_name;
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, Strategy, ALL_VERBS, STATUS_VERBS,
};

use crate::template::{int_cell, nonnegative_ints, validate_int_or_percent};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "policy",
    version: "v1",
    plural: "poddisruptionbudgets",
    singular: "poddisruptionbudget",
    kind: "PodDisruptionBudget",
    list_kind: "PodDisruptionBudgetList",
    namespaced: true,
    short_names: &["pdb"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[sub("status", "policy", "PodDisruptionBudget", STATUS_VERBS)],
    strategy: &PodDisruptionBudgets,
};

/// `spec.unhealthyPodEvictionPolicy` values (unset means `IfHealthyBudget`).
pub const UNHEALTHY_POLICIES: &[&str] = &["AlwaysAllow", "IfHealthyBudget"];

#[derive(Debug)]
struct PodDisruptionBudgets;

impl Strategy for PodDisruptionBudgets {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<PodDisruptionBudget>(obj)
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        validate_spec(e, obj.get("spec").unwrap_or(&Value::Null));
        validate_status(e, obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(empty_status()));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![
            name,
            json!(budget_text(at(obj, &["spec", "minAvailable"]))),
            json!(budget_text(at(obj, &["spec", "maxUnavailable"]))),
            int_cell(obj, &["status", "disruptionsAllowed"]),
            age,
        ]
    }
}

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    NAME,
    ("Min Available", "string", "", 0, "The minimum number of pods that must be available."),
    ("Max Unavailable", "string", "", 0, "The maximum number of pods that may be unavailable."),
    ("Allowed Disruptions", "integer", "", 0, "Calculated number of pods that may be disrupted at this time."),
    AGE,
];

/// The status a new budget starts with: upstream's four counters are not `omitempty`.
fn empty_status() -> Value {
    json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
}

/// An int-or-string as `IntOrString.String()` prints it; `N/A` when unset.
fn budget_text(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "N/A".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// Go's `%#v` of the spec pointers, as the "cannot be both set" error prints the spec.
fn spec_text(spec: &Value) -> String {
    let field = |k: &str, ty: &str| match spec.get(k).filter(|v| !v.is_null()) {
        Some(v) => format!("({ty})({})", budget_text(Some(v))),
        None => format!("({ty})(nil)"),
    };
    format!(
        "policy.PodDisruptionBudgetSpec{{MinAvailable:{}, Selector:{}, MaxUnavailable:{}, UnhealthyPodEvictionPolicy:{}}}",
        field("minAvailable", "*intstr.IntOrString"),
        field("selector", "*v1.LabelSelector"),
        field("maxUnavailable", "*intstr.IntOrString"),
        field("unhealthyPodEvictionPolicy", "*policy.UnhealthyPodEvictionPolicyType"),
    )
}

/// `ValidatePodDisruptionBudgetSpec`: at most one of the two budgets, each a non-negative
/// count or a percent up to 100%; a valid selector; a known unhealthy-pod policy.
fn validate_spec(e: &mut FieldErrors, spec: &Value) {
    let set = |k: &str| spec.get(k).filter(|v| !v.is_null());
    if set("minAvailable").is_some() && set("maxUnavailable").is_some() {
        e.invalid_text(
            "spec",
            &spec_text(spec),
            "minAvailable and maxUnavailable cannot be both set",
        );
    }
    validate_int_or_percent(e, set("minAvailable"), "spec.minAvailable");
    validate_int_or_percent(e, set("maxUnavailable"), "spec.maxUnavailable");
    if let Some(sel) = set("selector") {
        labelselector::validate(e, sel, "spec.selector");
    }
    if let Some(p) = set("unhealthyPodEvictionPolicy") {
        if !p.as_str().is_some_and(|p| UNHEALTHY_POLICIES.contains(&p)) {
            e.not_supported("spec.unhealthyPodEvictionPolicy", p, UNHEALTHY_POLICIES);
        }
    }
}

/// `ValidatePodDisruptionBudgetStatusUpdate` for policy/v1: the counters are not negative
/// and the conditions are well formed (`ValidateConditions`).
fn validate_status(e: &mut FieldErrors, obj: &Value) {
    nonnegative_ints(
        e,
        obj,
        &[
            &["status", "disruptionsAllowed"],
            &["status", "currentHealthy"],
            &["status", "desiredHealthy"],
            &["status", "expectedPods"],
            &["status", "observedGeneration"],
        ],
    );
    let mut seen = Vec::new();
    for (i, c) in arr(at(obj, &["status", "conditions"])).iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("");
        let ty = text("type");
        if ty.is_empty() {
            e.required(&format!("{path}.type"), "");
        } else {
            for m in qualified_name(ty) {
                e.invalid(&format!("{path}.type"), &Value::from(ty), &m);
            }
            if seen.contains(&ty) {
                e.duplicate(&format!("{path}.type"), &Value::from(ty));
            }
            seen.push(ty);
        }
        let status = c.get("status").cloned().unwrap_or(Value::Null);
        if !matches!(text("status"), "True" | "False" | "Unknown") {
            e.not_supported(
                &format!("{path}.status"),
                &status,
                &["False", "True", "Unknown"],
            );
        }
        if text("lastTransitionTime").is_empty() {
            e.required(&format!("{path}.lastTransitionTime"), "must be set");
        }
        if text("reason").is_empty() {
            e.required(&format!("{path}.reason"), "");
        } else if !is_condition_reason(text("reason")) {
            e.invalid(
                &format!("{path}.reason"),
                &Value::from(text("reason")),
                "a condition reason must start with alphabetic character, optionally followed by a string of alphanumeric characters or '_,:', and must end with an alphanumeric character or '_' (e.g. 'my_name',  or 'MY_NAME',  or 'MyName',  or 'ReasonA,ReasonB',  or 'ReasonA:ReasonB', regex used for validation is '[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?')",
            );
        }
        if c.get("observedGeneration")
            .and_then(Value::as_i64)
            .is_some_and(|g| g < 0)
        {
            e.invalid(
                &format!("{path}.observedGeneration"),
                c.get("observedGeneration").unwrap_or(&Value::Null),
                "must be greater than or equal to zero",
            );
        }
    }
}

/// metav1's condition reason syntax: `[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?`.
fn is_condition_reason(r: &str) -> bool {
    let b = r.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'_' | b',' | b':');
    b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.iter().all(inner)
        && b.last()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn pdb(spec: Value) -> Value {
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
               "metadata": {"name": "web", "namespace": "default",
                            "creationTimestamp": "2026-01-02T14:59:00Z"},
               "spec": spec})
    }

    #[test]
    fn budgets_are_counts_or_percents_and_not_both() {
        let ok = pdb(json!({"minAvailable": "50%", "selector": {"matchLabels": {"app": "web"}}}));
        assert_eq!(
            messages(RESOURCE.validate_create(&ok)),
            Vec::<String>::new()
        );
        // Neither budget is valid upstream (every pod may go).
        assert!(RESOURCE.validate_create(&pdb(json!({}))).is_ok());
        let both = pdb(json!({"minAvailable": 1, "maxUnavailable": "10%"}));
        assert_eq!(
            messages(RESOURCE.validate_create(&both)),
            vec!["spec: Invalid value: policy.PodDisruptionBudgetSpec{MinAvailable:(*intstr.IntOrString)(1), Selector:(*v1.LabelSelector)(nil), MaxUnavailable:(*intstr.IntOrString)(10%), UnhealthyPodEvictionPolicy:(*policy.UnhealthyPodEvictionPolicyType)(nil)}: minAvailable and maxUnavailable cannot be both set"]
        );
        let bad = pdb(json!({"maxUnavailable": "120%"}));
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec!["spec.maxUnavailable: Invalid value: \"120%\": must not be greater than 100%"]
        );
        let negative = pdb(json!({"minAvailable": -1}));
        assert_eq!(
            messages(RESOURCE.validate_create(&negative)),
            vec!["spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"]
        );
        let word = pdb(json!({"minAvailable": "half"}));
        assert_eq!(messages(RESOURCE.validate_create(&word)).len(), 1);
    }

    #[test]
    fn selector_and_policy_are_checked() {
        let bad = pdb(json!({"minAvailable": 1,
            "selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]},
            "unhealthyPodEvictionPolicy": "Sometimes"}));
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec![
                "spec.selector.matchExpressions[0].operator: Invalid value: \"Near\": not a valid selector operator",
                "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Sometimes\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\"",
            ]
        );
    }

    #[test]
    fn status_is_reset_on_create_and_kept_on_update() {
        let mut p = pdb(json!({"minAvailable": 1}));
        p["status"] = json!({"disruptionsAllowed": 5});
        RESOURCE.strategy.prepare_for_create(&mut p);
        assert_eq!(p["status"], empty_status());
        assert_eq!(p["metadata"]["generation"], 1);
        let mut new = p.clone();
        new["spec"]["minAvailable"] = json!(2);
        new["status"] = json!({"disruptionsAllowed": 3});
        RESOURCE.strategy.prepare_for_update(&p, &mut new);
        assert_eq!(new["status"], empty_status());
        assert_eq!(new["metadata"]["generation"], 2);
    }

    #[test]
    fn status_counters_and_conditions_are_validated() {
        let mut p = pdb(json!({"minAvailable": 1}));
        p["status"] = json!({"disruptionsAllowed": -1, "currentHealthy": 0, "desiredHealthy": 0,
            "expectedPods": 0,
            "conditions": [{"type": "DisruptionAllowed", "status": "Maybe", "reason": "",
                            "lastTransitionTime": "2026-01-02T14:59:00Z", "message": ""}]});
        assert_eq!(
            messages(RESOURCE.validate_update(&p, &p)),
            vec![
                "status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0",
                "status.conditions[0].status: Unsupported value: \"Maybe\": supported values: \"False\", \"True\", \"Unknown\"",
                "status.conditions[0].reason: Required value",
            ]
        );
        assert!(is_condition_reason("SufficientPods"));
        assert!(!is_condition_reason("no spaces"));
    }

    #[test]
    fn table_row() {
        let mut p = pdb(json!({"minAvailable": "50%"}));
        p["status"] = json!({"disruptionsAllowed": 2});
        let cells = RESOURCE.strategy.cells(&p, now());
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("50%"),
                json!("N/A"),
                json!(2),
                json!("60s")
            ]
        );
        let q = pdb(json!({"maxUnavailable": 1}));
        assert_eq!(RESOURCE.strategy.cells(&q, now())[2], json!("1"));
        assert_eq!(RESOURCE.strategy.columns().len(), cells.len());
    }
}
