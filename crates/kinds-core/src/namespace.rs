//! Namespaces: the `kubernetes` finalizer, phase `Active` and the name label defaults, DNS
//! label names, the status subresource and the STATUS column.

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{json, Map, Value};

use apimachinery::checks::NameRule;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at, child, set, set_str, str_at};
use apimachinery::names::qualified_name;
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, deletion_finished, initial_generation, keep_status, reset_status, sub,
    typed_round_trip, DeleteStep, ResourceInfo, SelectableField, Strategy, STATUS_VERBS,
};

/// Namespaces a cluster cannot do without; kube-apiserver refuses to delete them.
const UNDELETABLE: &[&str] = &["default", "kube-system", "kube-public"];

/// Namespaces have no deletecollection in kube-apiserver.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    list_kind: "NamespaceList",
    namespaced: false,
    short_names: &["ns"],
    categories: &[],
    verbs: NAMESPACE_VERBS,
    subresources: &[
        sub("finalize", "", "Namespace", &["update"]),
        sub("status", "", "Namespace", STATUS_VERBS),
    ],
    strategy: &Namespaces,
};

/// The fields `fieldSelector` accepts besides name and namespace.
const SELECTABLE: &[SelectableField] = &[SelectableField::new("status.phase")];

#[derive(Debug)]
struct Namespaces;

impl Strategy for Namespaces {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Namespace>(obj)
    }

    fn apply_defaults(&self, ns: &mut Map<String, Value>) {
        if let Some(spec) = child(ns, "spec") {
            set(spec, "finalizers", json!(["kubernetes"]));
        }
        if let Some(status) = child(ns, "status") {
            set_str(status, "phase", "Active");
        }
        // The NamespaceDefaultLabelName gate (GA) labels each namespace with its own name.
        let name = ns
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .map(str::to_string);
        if let (Some(name), Some(meta)) =
            (name, ns.get_mut("metadata").and_then(Value::as_object_mut))
        {
            if let Some(labels) = child(meta, "labels") {
                labels.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Label
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        for (i, f) in arr(at(obj, &["spec", "finalizers"])).iter().enumerate() {
            let s = f.as_str().unwrap_or("");
            for m in qualified_name(s) {
                e.invalid(&format!("spec.finalizers[{i}]"), f, &m);
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({"phase": "Active"})));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    #[rustfmt::skip]
    /// A namespace with finalizers is not removed by DELETE: it turns `Terminating`, and the
    /// namespace controller empties it and removes the `kubernetes` finalizer through
    /// `namespaces/finalize`.
    fn before_delete(&self, ns: &Value, now: &str) -> DeleteStep {
        if UNDELETABLE.contains(&str_at(ns, &["metadata", "name"])) {
            return DeleteStep::Forbid("this namespace may not be deleted");
        }
        let finalizers = ["/spec/finalizers", "/metadata/finalizers"]
            .iter()
            .any(|p| ns.pointer(p).and_then(Value::as_array).is_some_and(|f| !f.is_empty()));
        if !finalizers {
            return DeleteStep::Proceed;
        }
        if ns.pointer("/metadata/deletionTimestamp").is_some() {
            return DeleteStep::AlreadyPending;
        }
        let mut marked = ns.clone();
        if let Some(meta) = marked.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("deletionTimestamp".into(), json!(now));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
        }
        marked["status"]["phase"] = json!("Terminating");
        DeleteStep::MarkDeleting(marked)
    }

    /// Upstream's `ShouldDeleteNamespaceDuringUpdate`: `spec.finalizers` hold it too.
    fn delete_during_update(&self, ns: &Value) -> bool {
        deletion_finished(ns) && arr(at(ns, &["spec", "finalizers"])).is_empty()
    }

    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Status", "string", "", 0, "The status of the namespace"),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![name, json!(s(obj, &["status", "phase"])), age]
    }

    fn selectable_fields(&self) -> &'static [SelectableField] {
        SELECTABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    #[test]
    fn defaults() {
        let mut ns = json!({"metadata":{"name":"dev"}});
        RESOURCE.apply_defaults(&mut ns);
        assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "dev"
        );
    }

    #[test]
    fn cluster_scoped_label_names() {
        let ns = json!({"metadata":{"name":"dev","namespace":"x"}});
        assert_eq!(
            messages(RESOURCE.validate_create(&ns)),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
        let dotted = json!({"metadata":{"name":"a.b"}});
        assert!(messages(RESOURCE.validate_create(&dotted))[0]
            .starts_with("metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"));
    }

    #[test]
    fn delete_marks_terminating() {
        let s = RESOURCE.strategy;
        let mut ns = json!({"metadata":{"name":"dev"}});
        RESOURCE.apply_defaults(&mut ns);
        let DeleteStep::MarkDeleting(marked) = s.before_delete(&ns, "2026-01-02T15:00:00Z") else {
            panic!("a namespace with finalizers is marked");
        };
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert_eq!(
            marked["metadata"]["deletionTimestamp"],
            "2026-01-02T15:00:00Z"
        );
        assert_eq!(
            s.before_delete(&marked, "later"),
            DeleteStep::AlreadyPending
        );
        assert!(!s.delete_during_update(&marked));
        let mut finalized = marked.clone();
        finalized["spec"]["finalizers"] = json!([]);
        assert!(s.delete_during_update(&finalized));
        let bare = json!({"metadata":{"name":"tmp"},"spec":{}});
        assert_eq!(s.before_delete(&bare, "now"), DeleteStep::Proceed);
        let default = json!({"metadata":{"name":"default"}});
        assert!(matches!(
            s.before_delete(&default, "now"),
            DeleteStep::Forbid(_)
        ));
    }

    #[test]
    fn create_resets_status_and_rows() {
        let mut ns = json!({"metadata":{"name":"dev"},"status":{"phase":"Terminating"}});
        RESOURCE.strategy.prepare_for_create(&mut ns);
        assert_eq!(ns["status"], json!({"phase": "Active"}));
        let ns = json!({"metadata":{"name":"default","creationTimestamp":"2026-01-02T14:59:30Z"},"status":{"phase":"Active"}});
        assert_eq!(
            RESOURCE.strategy.cells(&ns, now()),
            vec![json!("default"), json!("Active"), json!("30s")]
        );
    }
}
