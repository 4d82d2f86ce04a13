//! PriorityClasses (scheduling.k8s.io/v1, cluster-scoped) and the `Priority` admission
//! plugin's pure part: the two built-in system classes, kube-apiserver's rules (user values up
//! to one billion, the `system-` prefix reserved, value and preemption policy immutable), the
//! NAME / VALUE / GLOBAL-DEFAULT / AGE / PREEMPTIONPOLICY columns, and how a new pod's
//! `priorityClassName` becomes its `spec.priority` and `spec.preemptionPolicy`.

use k8s_openapi::api::scheduling::v1::PriorityClass;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{set_str, str_at};
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "scheduling.k8s.io",
    version: "v1",
    plural: "priorityclasses",
    singular: "priorityclass",
    kind: "PriorityClass",
    list_kind: "PriorityClassList",
    namespaced: false,
    short_names: &["pc"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &PriorityClasses,
};

/// The highest value a user's class may have (`HighestUserDefinablePriority`); above it
/// only the system classes live.
pub const HIGHEST_USER_PRIORITY: i64 = 1_000_000_000;
/// The value from which a pod counts as critical (`SystemCriticalPriority`).
pub const SYSTEM_CRITICAL_PRIORITY: i64 = 2_000_000_000;
/// Names with this prefix belong to the system classes.
pub const SYSTEM_PREFIX: &str = "system-";
pub const SYSTEM_NODE_CRITICAL: &str = "system-node-critical";
pub const SYSTEM_CLUSTER_CRITICAL: &str = "system-cluster-critical";
/// The policy a class (and a pod without one) gets by default.
pub const PREEMPT_LOWER_PRIORITY: &str = "PreemptLowerPriority";
const POLICIES: &[&str] = &[PREEMPT_LOWER_PRIORITY, "Never"];

/// The built-in classes kube-apiserver creates at start: name, value, description.
pub const SYSTEM_CLASSES: &[(&str, i64, &str)] = &[
    (
        SYSTEM_NODE_CRITICAL,
        SYSTEM_CRITICAL_PRIORITY + 1000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        SYSTEM_CLUSTER_CRITICAL,
        SYSTEM_CRITICAL_PRIORITY,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];

/// The built-in classes as objects to create.
pub fn system_classes() -> Vec<Value> {
    SYSTEM_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                   "metadata": {"name": name}, "value": value, "description": description})
        })
        .collect()
}

fn value_of(pc: &Value) -> i64 {
    pc.get("value").and_then(Value::as_i64).unwrap_or(0)
}

fn is_global_default(pc: &Value) -> bool {
    pc.get("globalDefault")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

fn policy_of(pc: &Value) -> &str {
    pc.get("preemptionPolicy")
        .and_then(Value::as_str)
        .unwrap_or(PREEMPT_LOWER_PRIORITY)
}

/// Upstream `IsKnownSystemPriorityClass`: why a `system-` class is not one of the built-in
/// ones, if it is not.
fn unknown_system_class(pc: &Value) -> Option<String> {
    let name = str_at(pc, &["metadata", "name"]);
    let Some((_, value, _)) = SYSTEM_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Some(format!("{name} is not a known system priority class"));
    };
    if value_of(pc) != *value {
        return Some(format!("value of {name} PriorityClass must be {value}"));
    }
    if is_global_default(pc) {
        return Some(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    None
}

/// The global default class: the one marked `globalDefault` (the lowest value when a race
/// left several, as upstream picks).
pub fn global_default(classes: &[Value]) -> Option<&Value> {
    classes
        .iter()
        .filter(|c| is_global_default(c))
        .min_by_key(|c| value_of(c))
}

/// The Priority plugin on a PriorityClass create or update: the name of another class that
/// is already the global default when `pc` wants to be it, which refuses the write.
pub fn conflicting_default<'a>(classes: &'a [Value], pc: &Value) -> Option<&'a str> {
    if !is_global_default(pc) {
        return None;
    }
    let name = str_at(pc, &["metadata", "name"]);
    global_default(classes)
        .map(|d| str_at(d, &["metadata", "name"]))
        .filter(|d| *d != name)
}

/// Why the Priority plugin refuses a new pod (a 403 with this text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PodRefusal {
    #[error("no PriorityClass with name {0} was found")]
    UnknownClass(String),
    #[error("the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name")]
    PriorityGiven { given: i64, computed: i64 },
    #[error("the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {computed} from the given PriorityClass name")]
    PolicyGiven { given: String, computed: String },
}

/// The Priority plugin on a new pod, given every PriorityClass: the named class (or the
/// global default, or priority 0 with `PreemptLowerPriority`) sets `spec.priority` and
/// `spec.preemptionPolicy`; values the pod gave itself must agree with the class's.
pub fn admit_pod(pod: &mut Value, classes: &[Value]) -> Result<(), PodRefusal> {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let named = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let (class_name, priority, policy) = match named {
        Some(name) => {
            let class = classes
                .iter()
                .find(|c| str_at(c, &["metadata", "name"]) == name)
                .ok_or_else(|| PodRefusal::UnknownClass(name.clone()))?;
            (name, value_of(class), policy_of(class).to_string())
        }
        None => match global_default(classes) {
            Some(d) => (
                str_at(d, &["metadata", "name"]).to_string(),
                value_of(d),
                policy_of(d).to_string(),
            ),
            None => (String::new(), 0, PREEMPT_LOWER_PRIORITY.to_string()),
        },
    };
    if let Some(given) = spec.get("priority").and_then(Value::as_i64) {
        if given != priority {
            return Err(PodRefusal::PriorityGiven {
                given,
                computed: priority,
            });
        }
    }
    if let Some(given) = spec.get("preemptionPolicy").and_then(Value::as_str) {
        if given != policy {
            return Err(PodRefusal::PolicyGiven {
                given: given.to_string(),
                computed: policy,
            });
        }
    }
    if !class_name.is_empty() {
        spec.insert("priorityClassName".into(), json!(class_name));
    }
    spec.insert("priority".into(), json!(priority));
    spec.insert("preemptionPolicy".into(), json!(policy));
    Ok(())
}

#[derive(Debug)]
struct PriorityClasses;

impl PriorityClasses {
    fn check_policy(pc: &Value, e: &mut FieldErrors) {
        if let Some(policy) = pc.get("preemptionPolicy") {
            if !policy.as_str().is_some_and(|p| POLICIES.contains(&p)) {
                e.not_supported("preemptionPolicy", policy, POLICIES);
            }
        }
    }
}

impl Strategy for PriorityClasses {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<PriorityClass>(obj)
    }

    fn apply_defaults(&self, pc: &mut Map<String, Value>) {
        set_str(pc, "preemptionPolicy", PREEMPT_LOWER_PRIORITY);
    }

    /// `ValidatePriorityClass`.
    fn validate(&self, pc: &Value, e: &mut FieldErrors) {
        if str_at(pc, &["metadata", "name"]).starts_with(SYSTEM_PREFIX) {
            if let Some(why) = unknown_system_class(pc) {
                e.forbidden(
                    "metadata.name",
                    &format!("priority class names with '{SYSTEM_PREFIX}' prefix are reserved for system use only. error: {why}"),
                );
            }
        } else if value_of(pc) > HIGHEST_USER_PRIORITY {
            e.forbidden(
                "value",
                &format!(
                    "maximum allowed value of a user defined priority is {HIGHEST_USER_PRIORITY}"
                ),
            );
        }
        Self::check_policy(pc, e);
    }

    /// `ValidatePriorityClassUpdate`: value and preemption policy stay.
    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        if value_of(old) != value_of(new) {
            e.forbidden("value", "may not be changed in an update.");
        }
        if old.get("preemptionPolicy") != new.get("preemptionPolicy") {
            e.invalid(
                "preemptionPolicy",
                new.get("preemptionPolicy").unwrap_or(&Value::Null),
                "field is immutable",
            );
        }
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Value", "integer", "", 0, "The value of this priority class."),
            ("Global-Default", "boolean", "", 0, "Whether pods without a priority class get this one."),
            AGE,
            ("PreemptionPolicy", "string", "", 0, "Whether pods of this class may preempt lower-priority pods."),
        ]
    }

    fn cells(&self, pc: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(pc, now);
        vec![
            name,
            json!(value_of(pc)),
            json!(is_global_default(pc)),
            age,
            json!(s(pc, &["preemptionPolicy"])),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn class(name: &str, value: i64, default: bool) -> Value {
        let mut v = json!({"metadata": {"name": name, "creationTimestamp": "2026-01-02T14:00:00Z"},
                           "value": value, "globalDefault": default});
        RESOURCE.apply_defaults(&mut v);
        v
    }

    #[test]
    fn user_and_system_classes_are_validated_as_upstream() {
        assert!(RESOURCE
            .validate_create(&class("high", 1_000_000_000, false))
            .is_ok());
        for sys in system_classes() {
            let mut sys = sys;
            RESOURCE.apply_defaults(&mut sys);
            assert!(RESOURCE.validate_create(&sys).is_ok());
        }
        assert_eq!(
            messages(RESOURCE.validate_create(&class("huge", 1_000_000_001, false))),
            vec![
                "value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
            ]
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&class("system-mine", 5, false))),
            vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&class(SYSTEM_NODE_CRITICAL, 5, false))),
            vec!["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: value of system-node-critical PriorityClass must be 2000001000"]
        );
        let mut bad = class("p", 1, false);
        bad["preemptionPolicy"] = json!("Sometimes");
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec!["preemptionPolicy: Unsupported value: \"Sometimes\": supported values: \"PreemptLowerPriority\", \"Never\""]
        );
    }

    #[test]
    fn value_and_policy_are_immutable() {
        let old = class("p", 10, false);
        let mut new = old.clone();
        new["value"] = json!(11);
        new["preemptionPolicy"] = json!("Never");
        new["description"] = json!("may change");
        assert_eq!(
            messages(RESOURCE.validate_update(&old, &new)),
            vec![
                "value: Forbidden: may not be changed in an update.",
                "preemptionPolicy: Invalid value: \"Never\": field is immutable",
            ]
        );
        let mut fine = old.clone();
        fine["globalDefault"] = json!(true);
        assert!(RESOURCE.validate_update(&old, &fine).is_ok());
    }

    #[test]
    fn only_one_global_default() {
        let classes = [class("a", 5, true), class("b", 7, false)];
        assert_eq!(
            conflicting_default(&classes, &class("c", 1, true)),
            Some("a")
        );
        assert_eq!(conflicting_default(&classes, &class("a", 5, true)), None);
        assert_eq!(conflicting_default(&classes, &class("c", 1, false)), None);
        assert_eq!(
            conflicting_default(&classes[1..], &class("c", 1, true)),
            None
        );
    }

    #[test]
    fn pods_get_the_priority_of_their_class() {
        let mut never = class("batch", 100, false);
        never["preemptionPolicy"] = json!("Never");
        let classes = vec![class("high", 1000, false), never];
        let mut pod = json!({"spec": {"priorityClassName": "high"}});
        admit_pod(&mut pod, &classes).expect("admitted");
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");

        let mut pod = json!({"spec": {"priorityClassName": "batch"}});
        admit_pod(&mut pod, &classes).expect("admitted");
        assert_eq!(pod["spec"]["preemptionPolicy"], "Never");

        // No class and no default: 0, and no class name is made up.
        let mut pod = json!({"spec": {}});
        admit_pod(&mut pod, &classes).expect("admitted");
        assert_eq!(
            pod["spec"],
            json!({"priority": 0, "preemptionPolicy": "PreemptLowerPriority"})
        );

        // The global default names itself on the pod.
        let mut with_default = classes.clone();
        with_default.push(class("everyone", 3, true));
        let mut pod = json!({"spec": {}});
        admit_pod(&mut pod, &with_default).expect("admitted");
        assert_eq!(pod["spec"]["priority"], 3);
        assert_eq!(pod["spec"]["priorityClassName"], "everyone");

        // A priority that agrees is fine.
        let mut pod = json!({"spec": {"priorityClassName": "high", "priority": 1000}});
        assert!(admit_pod(&mut pod, &classes).is_ok());
    }

    #[test]
    fn pods_are_refused_as_upstream() {
        let classes = vec![class("high", 1000, false)];
        let refusal = |spec: Value| {
            let mut pod = json!({"spec": spec});
            admit_pod(&mut pod, &classes)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            refusal(json!({"priorityClassName": "nope"})),
            "no PriorityClass with name nope was found"
        );
        assert_eq!(
            refusal(json!({"priorityClassName": "high", "priority": 7})),
            "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 1000 from the given PriorityClass name"
        );
        assert_eq!(
            refusal(json!({"priority": 7})),
            "the integer value of priority (7) must not be provided in pod spec; priority admission controller computed 0 from the given PriorityClass name"
        );
        assert_eq!(
            refusal(json!({"preemptionPolicy": "Never"})),
            "the string value of PreemptionPolicy (Never) must not be provided in pod spec; priority admission controller computed PreemptLowerPriority from the given PriorityClass name"
        );
    }

    #[test]
    fn rows() {
        let mut pc = class("high", 1000, true);
        pc["preemptionPolicy"] = json!("Never");
        assert_eq!(
            RESOURCE.strategy.cells(&pc, now()),
            vec![
                json!("high"),
                json!(1000),
                json!(true),
                json!("60m"),
                json!("Never")
            ]
        );
    }
}
