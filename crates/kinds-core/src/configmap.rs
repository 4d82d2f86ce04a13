//! ConfigMaps: key syntax, the 1 MiB size limit, and `immutable`.

use k8s_openapi::api::core::v1::ConfigMap;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

use apimachinery::field_errors::FieldErrors;
use apimachinery::names::config_map_key;
use apimachinery::printing::{len_of, name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    list_kind: "ConfigMapList",
    namespaced: true,
    short_names: &["cm"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &ConfigMaps,
};

#[derive(Debug)]
struct ConfigMaps;

impl Strategy for ConfigMaps {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<ConfigMap>(obj)
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        config_data(e, obj, false);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        immutable_data(e, old, new, &["data", "binaryData"]);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Data", "string", "", 0, "Number of keys in data and binaryData."),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        let n = len_of(obj.get("data")) + len_of(obj.get("binaryData"));
        vec![name, json!(n), age]
    }
}

const MAX_CONFIG_SIZE: usize = 1024 * 1024;

pub(super) fn config_data(e: &mut FieldErrors, obj: &Value, secret: bool) {
    let mut total = 0;
    let parts: &[&str] = if secret {
        &["data", "stringData"]
    } else {
        &["data", "binaryData"]
    };
    let mut keys = BTreeSet::new();
    for part in parts {
        let Some(map) = obj.get(*part).and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in map {
            let fp = format!("{part}[{k}]");
            for m in config_map_key(k) {
                e.invalid(&fp, &Value::from(k.as_str()), &m);
            }
            if !secret && !keys.insert(k.clone()) {
                e.invalid(
                    &fp,
                    &Value::from(k.as_str()),
                    "duplicate of key present in data",
                );
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_CONFIG_SIZE {
        let what = if secret { "data" } else { "" };
        e.too_long(what, MAX_CONFIG_SIZE);
    }
}

/// Once `immutable` is set, it stays set and the data `parts` may not change.
pub(super) fn immutable_data(e: &mut FieldErrors, old: &Value, new: &Value, parts: &[&str]) {
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        e.forbidden("immutable", MSG);
    }
    for part in parts {
        let empty = Value::Object(Map::new());
        let o = old.get(*part).filter(|v| !v.is_null()).unwrap_or(&empty);
        let n = new.get(*part).filter(|v| !v.is_null()).unwrap_or(&empty);
        if o != n {
            e.forbidden(part, MSG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    #[test]
    fn keys_and_immutability() {
        let cm = json!({"metadata":{"name":"c","namespace":"d"},"data":{"a b":"x"}});
        let m = messages(RESOURCE.validate_create(&cm));
        assert_eq!(m, vec!["data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]);
        let old =
            json!({"metadata":{"name":"c","namespace":"d"},"immutable":true,"data":{"a":"1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        assert_eq!(
            messages(RESOURCE.validate_update(&old, &new)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    #[test]
    fn rows() {
        let cm = json!({"metadata":{"name":"c"},"data":{"a":"1","b":"2"},"binaryData":{"c":""}});
        assert_eq!(RESOURCE.strategy.cells(&cm, now())[1], 3);
        // stringData is a Secret's; a ConfigMap keeps what it was sent.
        let mut with_strings = json!({"stringData": {"k": "v"}});
        RESOURCE.strategy.normalize(&mut with_strings);
        assert!(with_strings.get("stringData").is_some());
    }
}
