//! Label selectors: the `labelSelector=` query syntax and the API's `LabelSelector` object.
#![no_main]

use std::collections::BTreeMap;

use api::selectors::LabelSelector;
use libfuzzer_sys::fuzz_target;
use serde_json::{json, Value};

fuzz_target!(|data: &[u8]| {
    let labels: BTreeMap<String, String> = [("app", "web"), ("tier", "front"), ("env", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(sel) = LabelSelector::parse(s) {
            let _ = sel.matches(&labels);
            let _ = sel.is_empty();
            let _ = sel.matches_object(&json!({"metadata": {"labels": labels}}));
        }
    }
    if let Ok(v) = serde_json::from_slice::<Value>(data) {
        if let Ok(sel) = LabelSelector::from_api(&v) {
            let _ = sel.matches(&labels);
        }
        let mut errs = api::field_errors::FieldErrors::default();
        api::labelselector::validate(&mut errs, &v, "spec.selector");
        let _ = api::labelselector::matches(&v, Some(&json!(labels)));
        let _ = api::labelselector::format(Some(&v));
        let _ = api::labelselector::to_string(Some(&v));
    }
});
