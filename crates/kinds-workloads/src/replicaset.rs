//! apps/v1 ReplicaSets: `replicas` defaults to 1; the selector is required, must select the
//! template's labels and never changes; the template must keep its pods running; status
//! changes through `replicasets/status` and the count through `replicasets/scale`. Printed
//! as DESIRED / CURRENT / READY.

use k8s_openapi::api::apps::v1::ReplicaSet;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{at, set};
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, ScalePaths, SelectableField, Strategy, ALL_VERBS, REPLICAS_SCALE, STATUS_VERBS,
};

use crate::template::{
    default_template, immutable_selector, int_cell, nonnegative_ints,
    validate_selector_and_template, wide_cells, WIDE_COLUMNS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "apps",
    version: "v1",
    plural: "replicasets",
    singular: "replicaset",
    kind: "ReplicaSet",
    list_kind: "ReplicaSetList",
    namespaced: true,
    short_names: &["rs"],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[
        sub("scale", "autoscaling", "Scale", STATUS_VERBS),
        sub("status", "apps", "ReplicaSet", STATUS_VERBS),
    ],
    strategy: &ReplicaSets,
};

#[derive(Debug)]
struct ReplicaSets;

impl Strategy for ReplicaSets {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<ReplicaSet>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            set(spec, "replicas", json!(1));
            default_template(spec);
        }
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        nonnegative_ints(
            e,
            obj,
            &[&["spec", "replicas"], &["spec", "minReadySeconds"]],
        );
        validate_selector_and_template(e, spec, "ReplicaSet");
        validate_status(e, obj);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        immutable_selector(e, old, new);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({"replicas": 0})));
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
        let [containers, images, selector] = wide_cells(obj);
        vec![
            name,
            int_cell(obj, &["spec", "replicas"]),
            int_cell(obj, &["status", "replicas"]),
            int_cell(obj, &["status", "readyReplicas"]),
            age,
            containers,
            images,
            selector,
        ]
    }

    fn selectable_fields(&self) -> &'static [SelectableField] {
        SELECTABLE
    }

    fn scale(&self) -> Option<&'static ScalePaths> {
        Some(&REPLICAS_SCALE)
    }
}

/// Upstream's field label conversion for ReplicaSets.
const SELECTABLE: &[SelectableField] = &[SelectableField::new("status.replicas")];

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    NAME,
    ("Desired", "integer", "", 0, "Replicas is the number of desired pods."),
    ("Current", "integer", "", 0, "Replicas is the most recently observed number of replicas."),
    ("Ready", "integer", "", 0, "The number of ready replicas for this replica set."),
    AGE,
    WIDE_COLUMNS[0],
    WIDE_COLUMNS[1],
    WIDE_COLUMNS[2],
];

/// `ValidateReplicaSetStatus`: counts are not negative and none exceeds what contains it.
fn validate_status(e: &mut FieldErrors, obj: &Value) {
    let Some(status) = obj.get("status").filter(|s| s.is_object()) else {
        return;
    };
    let n = |k: &str| at(status, &[k]).and_then(Value::as_i64).unwrap_or(0);
    nonnegative_ints(
        e,
        obj,
        &[
            &["status", "replicas"],
            &["status", "fullyLabeledReplicas"],
            &["status", "readyReplicas"],
            &["status", "availableReplicas"],
            &["status", "observedGeneration"],
        ],
    );
    for (field, limit, what) in [
        ("fullyLabeledReplicas", "replicas", "status.replicas"),
        ("readyReplicas", "replicas", "status.replicas"),
        ("availableReplicas", "replicas", "status.replicas"),
        ("availableReplicas", "readyReplicas", "readyReplicas"),
    ] {
        if n(field) > n(limit) {
            e.invalid(
                &format!("status.{field}"),
                &Value::from(n(field)),
                &format!("cannot be greater than {what}"),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-02T14:00:00Z"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}})
    }

    fn messages(r: Result<(), Vec<apimachinery::field_errors::FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn defaults_and_create() {
        let mut r = rs();
        RESOURCE.apply_defaults(&mut r);
        assert_eq!(r["spec"]["replicas"], 1);
        let pod_spec = &r["spec"]["template"]["spec"];
        assert_eq!(pod_spec["restartPolicy"], "Always");
        assert_eq!(pod_spec["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert!(pod_spec.get("serviceAccountName").is_none());
        assert_eq!(messages(RESOURCE.validate_create(&r)), Vec::<String>::new());
        RESOURCE.strategy.prepare_for_create(&mut r);
        assert_eq!(r["status"], json!({"replicas": 0}));
        assert_eq!(r["metadata"]["generation"], 1);
    }

    #[test]
    fn negative_replicas_and_changed_selectors_are_refused() {
        let mut r = rs();
        r["spec"]["replicas"] = json!(-1);
        RESOURCE.apply_defaults(&mut r);
        assert_eq!(
            messages(RESOURCE.validate_create(&r)),
            vec!["spec.replicas: Invalid value: -1: must be greater than or equal to 0"]
        );
        let mut old = rs();
        RESOURCE.apply_defaults(&mut old);
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "web", "v": "2"}});
        new["spec"]["template"]["metadata"]["labels"] = json!({"app": "web", "v": "2"});
        let msgs = messages(RESOURCE.validate_update(&old, &new));
        assert_eq!(msgs.len(), 1);
        assert!(msgs[0].ends_with("field is immutable"), "{msgs:?}");
    }

    #[test]
    fn status_counts_nest() {
        let mut r = rs();
        RESOURCE.apply_defaults(&mut r);
        r["status"] = json!({"replicas": 2, "readyReplicas": 3, "availableReplicas": 1});
        assert_eq!(
            messages(RESOURCE.validate_create(&r)),
            vec!["status.readyReplicas: Invalid value: 3: cannot be greater than status.replicas"]
        );
    }

    #[test]
    fn table_row() {
        let mut r = rs();
        RESOURCE.apply_defaults(&mut r);
        r["spec"]["replicas"] = json!(3);
        r["status"] = json!({"replicas": 3, "readyReplicas": 2});
        let now = "2026-01-02T15:00:00Z".parse().expect("time");
        let cells = RESOURCE.strategy.cells(&r, now);
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!(3),
                json!(3),
                json!(2),
                json!("60m"),
                json!("c"),
                json!("busybox:1"),
                json!("app=web")
            ]
        );
        assert_eq!(RESOURCE.strategy.columns().len(), cells.len());
        assert!(RESOURCE.strategy.scale().is_some());
    }
}
