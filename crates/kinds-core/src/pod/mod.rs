//! Pods: kube-apiserver's pod strategy. Create resets the status to `Pending` with the QoS
//! class; updates keep the status (it changes through `pods/status`); delete is graceful
//! once a node runs the pod; defaults, validation and the printed row live beside this file.

mod defaults;
mod hostspec;
mod resize;
mod table;
mod validation;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::str_at;
use apimachinery::printing::Column;
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, SelectableField, Strategy, ALL_VERBS, CONNECT_VERBS, STATUS_VERBS,
};

pub use defaults::{default_image_pull_policy, default_pod_spec};
pub use validation::{validate_overhead, validate_pod_template, validate_tolerations};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "pods",
    singular: "pod",
    kind: "Pod",
    list_kind: "PodList",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[
        sub("attach", "", "PodAttachOptions", CONNECT_VERBS),
        sub("binding", "", "Binding", &["create"]),
        sub("ephemeralcontainers", "", "Pod", STATUS_VERBS),
        sub("eviction", "policy", "Eviction", &["create"]),
        sub("exec", "", "PodExecOptions", CONNECT_VERBS),
        sub("log", "", "Pod", &["get"]),
        sub("portforward", "", "PodPortForwardOptions", CONNECT_VERBS),
        sub("resize", "", "Pod", STATUS_VERBS),
        sub("status", "", "Pod", STATUS_VERBS),
    ],
    strategy: &Pods,
};

/// The fields `fieldSelector` accepts besides name and namespace.
const SELECTABLE: &[SelectableField] = &[
    SelectableField::new("spec.nodeName"),
    SelectableField::new("spec.restartPolicy"),
    SelectableField::new("spec.schedulerName"),
    SelectableField::new("spec.serviceAccountName"),
    SelectableField::boolean("spec.hostNetwork"),
    SelectableField::new("status.phase"),
    SelectableField::new("status.podIP"),
    SelectableField::new("status.nominatedNodeName"),
];

#[derive(Debug)]
struct Pods;

impl Strategy for Pods {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Pod>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        defaults::default_pod(obj);
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        validation::validate_pod(e, obj);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        validation::validate_pod_update(e, old, new);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        // The QoS class counts a request missing beside a limit as the limit, as defaulting
        // will store it, so it may be computed before defaulting runs.
        let qos = apimachinery::qos::of_spec(obj.get("spec").unwrap_or(&Value::Null));
        reset_status(
            obj,
            Some(json!({"phase": "Pending", "qosClass": qos.as_str()})),
        );
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    /// `pods/status` (upstream's `podStatusStrategy`): the spec, the deletion timestamp and
    /// the owner references stay, but unlike most kinds' status the metadata a client may
    /// set (labels, annotations, finalizers) changes with it.
    fn prepare_for_status_update(&self, old: &Value, new: &mut Value) {
        let mut out = old.clone();
        if let Some(o) = out.as_object_mut() {
            match new.get_mut("status").map(Value::take) {
                Some(s) => {
                    o.insert("status".into(), s);
                }
                None => {
                    o.remove("status");
                }
            }
        }
        let from = new.get_mut("metadata").and_then(Value::as_object_mut);
        let into = out.get_mut("metadata").and_then(Value::as_object_mut);
        if let (Some(from), Some(into)) = (from, into) {
            for key in ["labels", "annotations", "finalizers"] {
                match from.remove(key) {
                    Some(v) => {
                        into.insert(key.into(), v);
                    }
                    None => {
                        into.remove(key);
                    }
                }
            }
        }
        *new = out;
    }

    fn object_subresources(&self) -> &'static [&'static str] {
        &["ephemeralcontainers", "resize"]
    }

    /// `resize`: of the new pod only its containers' resources and resize policies count;
    /// `ephemeralcontainers` (upstream's `dropNonEphemeralContainerUpdates`): only its
    /// ephemeral containers.
    fn prepare_for_subresource_update(&self, sub: &str, old: &Value, new: &mut Value) {
        if sub == "resize" {
            resize::prepare(old, new);
            return;
        }
        let mut out = old.clone();
        let ephemeral = new
            .pointer_mut("/spec/ephemeralContainers")
            .map(Value::take);
        if let Some(spec) = out.get_mut("spec").and_then(Value::as_object_mut) {
            match ephemeral {
                Some(list) if !list.is_null() => {
                    spec.insert("ephemeralContainers".into(), list);
                }
                _ => {
                    spec.remove("ephemeralContainers");
                }
            }
        }
        *new = out;
    }

    fn validate_subresource_update(
        &self,
        sub: &str,
        old: &Value,
        new: &Value,
        e: &mut FieldErrors,
    ) {
        if sub == "resize" {
            resize::validate(e, old, new);
            return;
        }
        validation::validate_ephemeral_update(e, old, new);
    }

    fn columns(&self) -> &'static [Column] {
        table::COLUMNS
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        table::pod_cells(obj, now)
    }

    fn row_conditions(&self, obj: &Value) -> Option<Value> {
        table::pod_row_conditions(obj)
    }

    fn selectable_fields(&self) -> &'static [SelectableField] {
        SELECTABLE
    }

    /// The request's grace period, else the pod's; 0 for pods that never ran on a node or
    /// already finished (nothing is left to stop).
    fn deletion_grace_period(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let scheduled = !str_at(pod, &["spec", "nodeName"]).is_empty();
        let terminal = matches!(str_at(pod, &["status", "phase"]), "Succeeded" | "Failed");
        if !scheduled || terminal {
            return 0;
        }
        let default = pod
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        match requested {
            Some(g) if g >= 0 => g,
            _ => default.max(0),
        }
    }

    fn return_deleted_object(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_updates_keep_the_spec_and_owners_but_take_labels_and_annotations() {
        let old = json!({"metadata": {"name": "web", "labels": {"a": "1"}, "annotations": {"x": "1"},
            "ownerReferences": [{"name": "rs"}], "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"nodeName": "n"}, "status": {"phase": "Running"}});
        let mut new = json!({"metadata": {"name": "other", "labels": {"a": "2"},
            "ownerReferences": [], "finalizers": ["f"]},
            "spec": {"nodeName": "m"}, "status": {"phase": "Running", "message": "patched"}});
        RESOURCE.strategy.prepare_for_status_update(&old, &mut new);
        assert_eq!(new["status"]["message"], "patched");
        assert_eq!(new["spec"], old["spec"]);
        assert_eq!(new["metadata"]["name"], "web");
        assert_eq!(new["metadata"]["labels"], json!({"a": "2"}));
        assert!(new["metadata"].get("annotations").is_none());
        assert_eq!(new["metadata"]["finalizers"], json!(["f"]));
        assert_eq!(
            new["metadata"]["ownerReferences"],
            old["metadata"]["ownerReferences"]
        );
        assert_eq!(
            new["metadata"]["deletionTimestamp"],
            old["metadata"]["deletionTimestamp"]
        );
    }

    #[test]
    fn create_resets_status_with_qos() {
        let mut p = json!({"metadata":{"name":"web"},"spec":{"containers":[{"name":"a","image":"x",
            "resources":{"limits":{"cpu":"1","memory":"1Gi"},"requests":{"cpu":"1000m"}}}]},
            "status":{"phase":"Running","podIP":"1.2.3.4"}});
        RESOURCE.strategy.prepare_for_create(&mut p);
        assert_eq!(
            p["status"],
            json!({"phase":"Pending","qosClass":"Guaranteed"})
        );
        assert_eq!(p["metadata"]["generation"], 1);
        let before = p.clone();
        RESOURCE.apply_defaults(&mut p);
        assert_eq!(
            apimachinery::qos::of_spec(&p["spec"]).as_str(),
            before["status"]["qosClass"]
        );
    }

    #[test]
    fn grace_periods() {
        let g = |pod: Value, req| RESOURCE.strategy.deletion_grace_period(&pod, req);
        let pod = json!({"spec": {"nodeName": "n", "terminationGracePeriodSeconds": 10}, "status": {"phase": "Running"}});
        assert_eq!(g(pod.clone(), None), 10);
        assert_eq!(g(pod, Some(3)), 3);
        let unscheduled = json!({"spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(g(unscheduled, Some(30)), 0);
        let done = json!({"spec": {"nodeName": "n"}, "status": {"phase": "Succeeded"}});
        assert_eq!(g(done, None), 0);
        assert!(RESOURCE.strategy.return_deleted_object());
    }
}
