//! StorageClasses (storage.k8s.io/v1, cluster-scoped): the `Delete` reclaim policy and
//! `Immediate` binding mode defaults, kube-apiserver's rules (a provisioner, known policies
//! and modes, no changes to what provisioning depends on), the default-class annotation, and
//! the NAME / PROVISIONER / RECLAIMPOLICY / VOLUMEBINDINGMODE / ALLOWVOLUMEEXPANSION / AGE
//! columns with `(default)` after the default class's name.

use k8s_openapi::api::storage::v1::StorageClass;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{at, obj, set_str, str_at};
use apimachinery::names::qualified_name;
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "storage.k8s.io",
    version: "v1",
    plural: "storageclasses",
    singular: "storageclass",
    kind: "StorageClass",
    list_kind: "StorageClassList",
    namespaced: false,
    short_names: &["sc"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &StorageClasses,
};

/// The annotation that makes a class the default, and its beta spelling.
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Upstream `IsDefaultAnnotation`: either annotation set to `"true"`.
pub fn is_default_class(class: &Value) -> bool {
    [DEFAULT_CLASS_ANNOTATION, BETA_DEFAULT_CLASS_ANNOTATION]
        .iter()
        .any(|a| at(class, &["metadata", "annotations", a]).and_then(Value::as_str) == Some("true"))
}

/// Upstream `GetDefaultClass`: among the classes marked default, the newest (then the first
/// by name), so that adding a new default takes over from an old one.
pub fn default_class(classes: &[Value]) -> Option<&str> {
    classes
        .iter()
        .filter(|c| is_default_class(c))
        .max_by(|a, b| {
            let created = |c: &Value| str_at(c, &["metadata", "creationTimestamp"]).to_string();
            let name = |c: &Value| str_at(c, &["metadata", "name"]).to_string();
            created(a)
                .cmp(&created(b))
                .then_with(|| name(b).cmp(&name(a)))
        })
        .map(|c| str_at(c, &["metadata", "name"]))
}

const MAX_PARAMETERS: usize = 512;
const MAX_PARAMETERS_SIZE: usize = 256 * 1024;

#[derive(Debug)]
struct StorageClasses;

impl Strategy for StorageClasses {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<StorageClass>(obj)
    }

    fn apply_defaults(&self, sc: &mut Map<String, Value>) {
        set_str(sc, "reclaimPolicy", "Delete");
        set_str(sc, "volumeBindingMode", "Immediate");
    }

    fn validate(&self, sc: &Value, e: &mut FieldErrors) {
        let provisioner = str_at(sc, &["provisioner"]);
        if provisioner.is_empty() {
            e.required("provisioner", "");
        } else {
            for m in qualified_name(&provisioner.to_lowercase()) {
                e.invalid("provisioner", &Value::from(provisioner), &m);
            }
        }
        if let Some(params) = obj(sc.get("parameters")) {
            if params.len() > MAX_PARAMETERS {
                e.invalid(
                    "parameters",
                    &Value::from(params.len()),
                    &format!("must have at most {MAX_PARAMETERS} parameters"),
                );
            }
            let mut size = 0;
            for (k, v) in params {
                if k.is_empty() {
                    e.invalid("parameters", &Value::from(""), "field can not be empty.");
                }
                size += k.len() + v.as_str().map_or(0, str::len);
            }
            if size > MAX_PARAMETERS_SIZE {
                e.too_long("parameters", MAX_PARAMETERS_SIZE);
            }
        }
        let policy = sc.get("reclaimPolicy").unwrap_or(&Value::Null);
        const POLICIES: &[&str] = &["Delete", "Retain"];
        if !policy.as_str().is_some_and(|p| POLICIES.contains(&p)) {
            e.not_supported("reclaimPolicy", policy, POLICIES);
        }
        let mode = sc.get("volumeBindingMode").unwrap_or(&Value::Null);
        const MODES: &[&str] = &["Immediate", "WaitForFirstConsumer"];
        if !mode.as_str().is_some_and(|m| MODES.contains(&m)) {
            e.not_supported("volumeBindingMode", mode, MODES);
        }
    }

    /// `ValidateStorageClassUpdate`: what provisioned volumes were made from stays.
    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        let params = |v: &Value| obj(v.get("parameters")).cloned().unwrap_or_default();
        if params(old) != params(new) {
            e.forbidden("parameters", "updates to parameters are forbidden.");
        }
        if str_at(old, &["provisioner"]) != str_at(new, &["provisioner"]) {
            e.forbidden("provisioner", "updates to provisioner are forbidden.");
        }
        if str_at(old, &["reclaimPolicy"]) != str_at(new, &["reclaimPolicy"]) {
            e.forbidden("reclaimPolicy", "updates to reclaimPolicy are forbidden.");
        }
        let mode = str_at(new, &["volumeBindingMode"]);
        if str_at(old, &["volumeBindingMode"]) != mode {
            e.invalid(
                "volumeBindingMode",
                &Value::from(mode),
                "field is immutable",
            );
        }
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Provisioner", "string", "", 0, "The provisioner that creates volumes of this class."),
            ("ReclaimPolicy", "string", "", 0, "What happens to a provisioned volume when its claim goes."),
            ("VolumeBindingMode", "string", "", 0, "When claims are bound and volumes provisioned."),
            ("AllowVolumeExpansion", "string", "", 0, "Whether claims of this class may grow."),
            AGE,
        ]
    }

    fn cells(&self, sc: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(sc, now);
        let name = match name.as_str() {
            Some(n) if is_default_class(sc) => json!(format!("{n} (default)")),
            _ => name,
        };
        let or = |v: String, d: &str| if v.is_empty() { d.to_string() } else { v };
        vec![
            name,
            json!(s(sc, &["provisioner"])),
            json!(or(s(sc, &["reclaimPolicy"]), "Delete")),
            json!(or(s(sc, &["volumeBindingMode"]), "Immediate")),
            json!(sc
                .get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)),
            age,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn class() -> Value {
        let mut v = json!({"metadata": {"name": "local-path", "creationTimestamp": "2026-01-02T14:00:00Z",
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}}, "provisioner": "peapod.io/local-path"});
        RESOURCE.apply_defaults(&mut v);
        v
    }

    #[test]
    fn defaults_and_rules() {
        let v = class();
        assert_eq!(v["reclaimPolicy"], "Delete");
        assert_eq!(v["volumeBindingMode"], "Immediate");
        assert!(RESOURCE.validate_create(&v).is_ok());
        let bad = json!({"metadata": {"name": "x"}, "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"});
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec![
                "provisioner: Required value",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ]
        );
        let mut changed = v.clone();
        changed["provisioner"] = json!("example.com/other");
        changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
        assert_eq!(
            messages(RESOURCE.validate_update(&v, &changed)),
            vec![
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
    }

    #[test]
    fn newest_default_wins() {
        let old = class();
        let mut newer = class();
        newer["metadata"]["name"] = json!("fast");
        newer["metadata"]["creationTimestamp"] = json!("2026-01-02T14:30:00Z");
        let mut plain = class();
        plain["metadata"]["name"] = json!("plain");
        plain["metadata"]["annotations"] = json!({});
        plain["metadata"]["creationTimestamp"] = json!("2026-01-02T14:50:00Z");
        assert_eq!(
            default_class(&[old.clone(), newer, plain.clone()]),
            Some("fast")
        );
        assert_eq!(default_class(&[old, plain.clone()]), Some("local-path"));
        assert_eq!(default_class(&[plain]), None);
    }

    #[test]
    fn default_class_row() {
        assert_eq!(
            RESOURCE.strategy.cells(&class(), now()),
            vec![
                json!("local-path (default)"),
                json!("peapod.io/local-path"),
                json!("Delete"),
                json!("Immediate"),
                json!(false),
                json!("60m"),
            ]
        );
        let mut plain = class();
        plain["metadata"]["annotations"] = json!({});
        assert_eq!(RESOURCE.strategy.cells(&plain, now())[0], "local-path");
    }
}
