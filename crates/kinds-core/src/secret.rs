//! Secrets: the `Opaque` default, the keys each built-in type requires, `immutable`, and
//! the write-only `stringData` folded into `data`.

use k8s_openapi::api::core::v1::Secret;
use serde_json::{json, Map, Value};

use super::configmap::{config_data, immutable_data};
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{set_str, str_at};
use apimachinery::printing::{len_of, name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{
    typed_round_trip, ResourceInfo, SelectableField, Strategy, ALL_VERBS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "secrets",
    singular: "secret",
    kind: "Secret",
    list_kind: "SecretList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &Secrets,
};

/// The fields `fieldSelector` accepts besides name and namespace.
const SELECTABLE: &[SelectableField] = &[SelectableField::new("type")];

#[derive(Debug)]
struct Secrets;

impl Strategy for Secrets {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Secret>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        // Upstream `SetDefaults_Secret` tests `Type == ""`: `kubectl create secret generic`
        // sends an empty type.
        set_str(obj, "type", "Opaque");
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        config_data(e, obj, true);
        secret_type(e, obj);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        let (o, n) = (str_at(old, &["type"]), str_at(new, &["type"]));
        if o != n {
            e.invalid("type", &Value::from(n), "field is immutable");
        }
        immutable_data(e, old, new, &["data"]);
    }

    fn normalize(&self, obj: &mut Value) {
        merge_string_data(obj);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Type", "string", "", 0, "The type of the secret"),
            ("Data", "string", "", 0, "The total number of data entries in the secret."),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![
            name,
            json!(s(obj, &["type"])),
            json!(len_of(obj.get("data"))),
            age,
        ]
    }

    fn selectable_fields(&self) -> &'static [SelectableField] {
        SELECTABLE
    }
}

/// The write-only `stringData` is merged into `data` (base64, overriding keys of the same
/// name) and never stored, as kube-apiserver's v1 conversion does.
fn merge_string_data(obj: &mut Value) {
    use base64::Engine as _;
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let Some(Value::Object(strings)) = root.remove("stringData") else {
        return;
    };
    if !root.get("data").is_some_and(Value::is_object) {
        root.insert("data".into(), json!({}));
    }
    if let Some(data) = root.get_mut("data").and_then(Value::as_object_mut) {
        for (k, v) in strings {
            let text = v.as_str().unwrap_or_default();
            let encoded = base64::engine::general_purpose::STANDARD.encode(text.as_bytes());
            data.insert(k, Value::String(encoded));
        }
    }
}

fn secret_type(e: &mut FieldErrors, obj: &Value) {
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let has = |k: &str| {
        ["data", "stringData"]
            .iter()
            .any(|p| obj.get(*p).and_then(|m| m.get(k)).is_some())
    };
    // Keys each built-in secret type requires (upstream ValidateSecret).
    let required: &[&str] = match ty {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        // Basic auth needs at least one of the two.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            &["username", "password"]
        }
        _ => &[],
    };
    for k in required.iter().filter(|k| !has(k)) {
        e.required(&format!("data[{k}]"), "");
    }
    let sa_annotation = str_at(
        obj,
        &[
            "metadata",
            "annotations",
            "kubernetes.io/service-account.name",
        ],
    );
    if ty == "kubernetes.io/service-account-token" && sa_annotation.is_empty() {
        e.required(
            "metadata.annotations[kubernetes.io/service-account.name]",
            "",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::messages;

    #[test]
    fn defaults_and_types() {
        let mut sec = json!({"data":{}});
        RESOURCE.apply_defaults(&mut sec);
        assert_eq!(sec["type"], "Opaque");
        let mut empty = json!({"type": ""});
        RESOURCE.apply_defaults(&mut empty);
        assert_eq!(empty["type"], "Opaque");
        let tls =
            json!({"metadata":{"name":"s","namespace":"d"},"type":"kubernetes.io/tls","data":{}});
        assert_eq!(
            messages(RESOURCE.validate_create(&tls)),
            vec![
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value"
            ]
        );
        let mut changed = tls.clone();
        changed["type"] = json!("Opaque");
        assert!(messages(RESOURCE.validate_update(&tls, &changed))
            .contains(&"type: Invalid value: \"Opaque\": field is immutable".to_string()));
    }

    #[test]
    fn string_data_merges_into_data() {
        let mut s =
            json!({"data": {"a": "b2xk", "keep": "eA=="}, "stringData": {"a": "new", "c": "hi"}});
        RESOURCE.strategy.normalize(&mut s);
        assert_eq!(
            s,
            json!({"data": {"a": "bmV3", "keep": "eA==", "c": "aGk="}})
        );
        let mut only = json!({"stringData": {"k": "v"}});
        RESOURCE.strategy.normalize(&mut only);
        assert_eq!(only, json!({"data": {"k": "dg=="}}));
    }
}
