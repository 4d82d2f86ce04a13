//! PersistentVolumeClaims (core/v1, namespaced): the `Filesystem` mode default, a new claim's
//! `Pending` phase, kube-apiserver's rules for access modes and `resources.requests.storage`,
//! a spec that is immutable after creation except for the binder's `volumeName`, a default
//! class set on a claim that had none, and a larger (or, down to the provisioned capacity,
//! smaller) storage request once bound; the NAME / STATUS / VOLUME / CAPACITY / ACCESS MODES /
//! STORAGECLASS / VOLUMEATTRIBUTESCLASS / AGE columns. (Picking the default StorageClass
//! needs the store, so the API server's admission does it.)

use k8s_openapi::api::core::v1::PersistentVolumeClaim;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{at, child, present, set_str, str_at};
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::quantity::Quantity;
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, Strategy, ALL_VERBS, STATUS_VERBS,
};

use crate::volumecommon::{
    access_modes, access_modes_text, attributes_class, class_name, positive_quantity, selector,
    volume_mode, volume_mode_cell,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "persistentvolumeclaims",
    singular: "persistentvolumeclaim",
    kind: "PersistentVolumeClaim",
    list_kind: "PersistentVolumeClaimList",
    namespaced: true,
    short_names: &["pvc"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[sub("status", "", "PersistentVolumeClaim", STATUS_VERBS)],
    strategy: &Claims,
};

/// The annotation kube-apiserver still honours in place of `spec.storageClassName`.
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

#[derive(Debug)]
struct Claims;

impl Strategy for Claims {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<PersistentVolumeClaim>(obj)
    }

    fn apply_defaults(&self, pvc: &mut Map<String, Value>) {
        if let Some(spec) = child(pvc, "spec") {
            set_str(spec, "volumeMode", "Filesystem");
        }
        if let Some(status) = child(pvc, "status") {
            set_str(status, "phase", "Pending");
        }
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        validate_claim(e, obj);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        validate_claim(e, new);
        immutable_spec(e, old, new);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({"phase": "Pending"})));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Status", "string", "", 0, "The phase of the claim."),
            ("Volume", "string", "", 0, "The volume bound to the claim."),
            ("Capacity", "string", "", 0, "The storage the bound volume provides."),
            ("Access Modes", "string", "", 0, "How the bound volume may be mounted."),
            ("StorageClass", "string", "", 0, "The storage class the claim asks for."),
            ("VolumeAttributesClass", "string", "", 0, "The volume attributes class the claim asks for."),
            AGE,
            ("VolumeMode", "string", "", 1, "Whether the claim wants a filesystem or a block device."),
        ]
    }

    fn cells(&self, pvc: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(pvc, now);
        let spec = pvc.get("spec");
        let phase = if present(pvc.pointer("/metadata/deletionTimestamp")) {
            "Terminating".to_string()
        } else {
            s(pvc, &["status", "phase"])
        };
        let volume = s(pvc, &["spec", "volumeName"]);
        // Capacity and modes are the bound volume's, shown once there is one.
        let (capacity, modes) = if volume.is_empty() {
            (String::new(), String::new())
        } else {
            (
                s(pvc, &["status", "capacity", "storage"]),
                access_modes_text(at(pvc, &["status", "accessModes"])),
            )
        };
        vec![
            name,
            json!(phase),
            json!(volume),
            json!(capacity),
            json!(modes),
            json!(claim_class(pvc)),
            json!(attributes_class(spec)),
            age,
            json!(volume_mode_cell(spec)),
        ]
    }
}

/// Upstream `GetPersistentVolumeClaimClass`: the beta annotation wins over the field.
fn claim_class(pvc: &Value) -> String {
    match at(pvc, &["metadata", "annotations", BETA_CLASS_ANNOTATION]).and_then(Value::as_str) {
        Some(c) => c.to_string(),
        None => s(pvc, &["spec", "storageClassName"]),
    }
}

/// `ValidatePersistentVolumeClaimSpec` for what peapod serves.
fn validate_claim(e: &mut FieldErrors, pvc: &Value) {
    let spec = pvc.get("spec").unwrap_or(&Value::Null);
    access_modes(
        e,
        spec,
        "spec.accessModes",
        "at least 1 access mode is required",
    );
    selector(e, spec, "spec.selector");
    match at(spec, &["resources", "requests", "storage"]) {
        Some(q) => positive_quantity(e, q, "spec.resources[storage]"),
        None => e.required("spec.resources[storage]", ""),
    }
    class_name(e, spec, "spec.storageClassName");
    volume_mode(e, spec, "spec.volumeMode");
}

fn storage(v: &Value, path: &[&str]) -> Option<Quantity> {
    at(v, path)
        .and_then(Value::as_str)
        .and_then(Quantity::parse)
}

/// `ValidatePersistentVolumeClaimUpdate`: the spec stays as created, except that the binder
/// sets `volumeName` once, a claim without a class may get one (the default class, set
/// retroactively), and a bound claim's storage request may change — never below what was
/// asked before unless back down towards the provisioned capacity.
fn immutable_spec(e: &mut FieldErrors, old: &Value, new: &Value) {
    let mut old_spec = old.get("spec").cloned().unwrap_or_else(|| json!({}));
    let mut new_spec = new.get("spec").cloned().unwrap_or_else(|| json!({}));
    if str_at(old, &["spec", "volumeName"]).is_empty() {
        old_spec["volumeName"] = new_spec.get("volumeName").cloned().unwrap_or(Value::Null);
    }
    let old_class_unset = !present(old_spec.get("storageClassName"))
        && at(old, &["metadata", "annotations", BETA_CLASS_ANNOTATION]).is_none();
    if old_class_unset {
        old_spec["storageClassName"] = new_spec
            .get("storageClassName")
            .cloned()
            .unwrap_or(Value::Null);
    }
    let bound = str_at(new, &["status", "phase"]) == "Bound";
    if bound {
        if let Some(q) = at(&old_spec, &["resources", "requests", "storage"]).cloned() {
            if let Some(r) = new_spec
                .pointer_mut("/resources/requests")
                .and_then(Value::as_object_mut)
            {
                r.insert("storage".into(), q);
            }
        }
    }
    let strip = |v: &mut Value| {
        if let Some(m) = v.as_object_mut() {
            m.retain(|_, x| !x.is_null());
        }
    };
    strip(&mut old_spec);
    strip(&mut new_spec);
    if old_spec != new_spec {
        e.forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        );
    }
    let path = ["spec", "resources", "requests", "storage"];
    if let (Some(before), Some(after)) = (storage(old, &path), storage(new, &path)) {
        if after < before {
            let provisioned = storage(old, &["status", "capacity", "storage"]);
            if provisioned.is_none_or(|p| after <= p) {
                e.forbidden(
                    "spec.resources.requests.storage",
                    "field can not be less than status.capacity",
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn claim() -> Value {
        let mut v = json!({"metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        RESOURCE.apply_defaults(&mut v);
        v
    }

    #[test]
    fn defaults_and_rules() {
        let v = claim();
        assert_eq!(v["spec"]["volumeMode"], "Filesystem");
        assert_eq!(v["status"]["phase"], "Pending");
        assert!(RESOURCE.validate_create(&v).is_ok());
        let bad = json!({"metadata": {"name": "data", "namespace": "default"},
            "spec": {"resources": {"requests": {"storage": "0"}}}});
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
            ]
        );
        let none = json!({"metadata": {"name": "data", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"]}});
        assert_eq!(
            messages(RESOURCE.validate_create(&none)),
            vec!["spec.resources[storage]: Required value"]
        );
    }

    #[test]
    fn spec_is_immutable_but_binding_and_default_class_go_through() {
        let old = claim();
        let mut bound = old.clone();
        bound["spec"]["volumeName"] = json!("pv1");
        bound["spec"]["storageClassName"] = json!("local-path");
        assert!(RESOURCE.validate_update(&old, &bound).is_ok());
        let mut moved = bound.clone();
        moved["spec"]["volumeName"] = json!("pv2");
        assert_eq!(
            messages(RESOURCE.validate_update(&bound, &moved)),
            vec!["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"]
        );
        let mut grown = old.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("2Gi");
        assert_eq!(messages(RESOURCE.validate_update(&old, &grown)).len(), 1);
        grown["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}});
        let mut was_bound = old.clone();
        was_bound["status"] = grown["status"].clone();
        assert!(RESOURCE.validate_update(&was_bound, &grown).is_ok());
        let mut shrunk = grown.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("512Mi");
        assert_eq!(
            messages(RESOURCE.validate_update(&grown, &shrunk)),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than status.capacity"]
        );
    }

    #[test]
    fn rows() {
        let mut v = claim();
        v["metadata"]["creationTimestamp"] = json!("2026-01-02T14:59:00Z");
        v["spec"]["storageClassName"] = json!("local-path");
        let pending = RESOURCE.strategy.cells(&v, now());
        assert_eq!(
            pending[..7],
            [
                json!("data"),
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("local-path"),
                json!("<unset>")
            ]
        );
        v["spec"]["volumeName"] = json!("pvc-1");
        v["status"] = json!({"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]});
        let bound = RESOURCE.strategy.cells(&v, now());
        assert_eq!(
            bound[1..5],
            [json!("Bound"), json!("pvc-1"), json!("1Gi"), json!("RWO")]
        );
        assert_eq!(bound[7], "60s");
        assert_eq!(bound[8], "Filesystem");
    }
}
