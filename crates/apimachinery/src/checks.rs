//! Field checks several kinds share: `ValidateObjectMeta` and its update rules, labels,
//! annotations, enumerations, non-negative numbers and ports.

use serde_json::Value;

use crate::deletion::{FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::field_errors::FieldErrors;
use crate::json::{arr, at, obj, str_at};
use crate::names::{
    dns1035_label, dns1123_label, dns1123_subdomain, label_value, path_segment_name, port_name,
    qualified_name, PORT_RANGE_MSG,
};

/// Which syntax a kind's object names follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameRule {
    Subdomain,
    Label,
    Dns1035,
    /// `path.ValidatePathSegmentName`: anything that fits in one URL path segment (RBAC
    /// names such as `system:discovery`).
    PathSegment,
}

fn name_errors(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    // A generateName prefix may end in '-' (upstream's maskTrailingDash).
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 1])
    } else {
        name.to_string()
    };
    match rule {
        NameRule::Subdomain => dns1123_subdomain(&name),
        NameRule::Label => dns1123_label(&name),
        NameRule::Dns1035 => dns1035_label(&name),
        NameRule::PathSegment => path_segment_name(&name, prefix),
    }
}

/// `ValidateObjectMeta`.
pub fn object_meta(e: &mut FieldErrors, obj: &Value, namespaced: bool, rule: NameRule) {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let generate = meta
        .and_then(|m| m.get("generateName"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !generate.is_empty() {
        for m in name_errors(rule, generate, true) {
            e.invalid("metadata.generateName", &Value::from(generate), &m);
        }
    }
    if name.is_empty() {
        if generate.is_empty() {
            e.required("metadata.name", "name or generateName is required");
        }
    } else {
        for m in name_errors(rule, name, false) {
            e.invalid("metadata.name", &Value::from(name), &m);
        }
    }
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if namespaced {
        if ns.is_empty() {
            e.required("metadata.namespace", "");
        } else {
            for m in dns1123_label(ns) {
                e.invalid("metadata.namespace", &Value::from(ns), &m);
            }
        }
    } else if !ns.is_empty() {
        e.forbidden("metadata.namespace", "not allowed on this type");
    }
    if let Some(g) = meta
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
    {
        if g < 0 {
            e.invalid(
                "metadata.generation",
                &Value::from(g),
                "must be greater than or equal to 0",
            );
        }
    }
    labels(
        e,
        obj.get("metadata").and_then(|m| m.get("labels")),
        "metadata.labels",
    );
    annotations(e, meta.and_then(|m| m.get("annotations")));
    owner_references(e, arr(meta.and_then(|m| m.get("ownerReferences"))));
    finalizers(e, arr(meta.and_then(|m| m.get("finalizers"))));
}

/// `ValidateOwnerReferences`: each reference names apiVersion, kind, name and uid; Events
/// may not own anything; at most one reference is the controller. Upstream reports them at
/// `metadata.ownerReferences` without an index.
fn owner_references(e: &mut FieldErrors, refs: &[Value]) {
    let p = "metadata.ownerReferences";
    let mut controller: Option<String> = None;
    for r in refs {
        let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let kind = r.get("kind").and_then(Value::as_str).unwrap_or("");
        let version = api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            e.invalid(
                &format!("{p}.apiVersion"),
                &Value::from(api_version),
                "version must not be empty",
            );
        }
        for (k, what) in [("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if r.get(k).and_then(Value::as_str).unwrap_or("").is_empty() {
                e.invalid(
                    &format!("{p}.{k}"),
                    &Value::from(""),
                    &format!("{what} must not be empty"),
                );
            }
        }
        if api_version == "v1" && kind == "Event" {
            e.invalid(p, r, "/v1, Kind=Event is disallowed from being an owner");
        }
        if r.get("controller").and_then(Value::as_bool) == Some(true) {
            let name = r.get("name").and_then(Value::as_str).unwrap_or("");
            let this = format!("{kind}/{name}");
            match &controller {
                Some(first) => e.invalid(
                    p,
                    &Value::Array(refs.to_vec()),
                    &format!(
                        "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                    ),
                ),
                None => controller = Some(this),
            }
        }
    }
}

/// Finalizer names are qualified names, and an object is either orphaned or deleted in the
/// foreground, never both.
fn finalizers(e: &mut FieldErrors, list: &[Value]) {
    for f in list {
        let s = f.as_str().unwrap_or("");
        for m in qualified_name(s) {
            e.invalid("metadata.finalizers", f, &m);
        }
    }
    let has = |name: &str| list.iter().any(|f| f.as_str() == Some(name));
    if has(ORPHAN_FINALIZER) && has(FOREGROUND_FINALIZER) {
        e.invalid(
            "metadata.finalizers",
            &Value::Array(list.to_vec()),
            &format!("finalizer {ORPHAN_FINALIZER} and {FOREGROUND_FINALIZER} cannot be both set"),
        );
    }
}

/// `ValidateLabels` at `path` (also node selectors and service selectors).
pub fn labels(e: &mut FieldErrors, labels: Option<&Value>, path: &str) {
    let Some(map) = obj(labels) else { return };
    for (k, v) in map {
        for m in qualified_name(k) {
            e.invalid(path, &Value::from(k.as_str()), &m);
        }
        let v = v.as_str().unwrap_or("");
        for m in label_value(v) {
            e.invalid(path, &Value::from(v), &m);
        }
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn annotations(e: &mut FieldErrors, ann: Option<&Value>) {
    annotations_at(e, ann, "metadata.annotations");
}

/// `ValidateAnnotations` at `path` (pod templates keep theirs under the template).
pub fn annotations_at(e: &mut FieldErrors, ann: Option<&Value>, path: &str) {
    let Some(map) = obj(ann) else { return };
    let mut total = 0;
    for (k, v) in map {
        for m in qualified_name(&k.to_lowercase()) {
            e.invalid(path, &Value::from(k.as_str()), &m);
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        e.too_long(path, TOTAL_ANNOTATION_SIZE);
    }
}

pub fn enum_field(e: &mut FieldErrors, v: Option<&Value>, path: &str, supported: &[&str]) {
    match v.and_then(Value::as_str) {
        None | Some("") => e.required(path, ""),
        Some(s) if supported.contains(&s) => {}
        Some(s) => e.not_supported(path, &Value::from(s), supported),
    }
}

pub fn nonnegative(e: &mut FieldErrors, v: Option<&Value>, path: &str) {
    if let Some(n) = v.and_then(Value::as_i64) {
        if n < 0 {
            e.invalid(path, &Value::from(n), "must be greater than or equal to 0");
        }
    }
}

/// A port given as a number (1-65535) or an IANA name.
pub fn port_or_name(e: &mut FieldErrors, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                e.invalid(path, &Value::from(n), PORT_RANGE_MSG);
            }
        }
        Some(Value::String(s)) => {
            if let Ok(n) = s.parse::<i64>() {
                if !(1..=65535).contains(&n) {
                    e.invalid(path, &Value::from(n), PORT_RANGE_MSG);
                }
            } else {
                for m in port_name(s) {
                    e.invalid(path, &Value::from(s.as_str()), &m);
                }
            }
        }
        _ => e.invalid(path, &Value::from(0), PORT_RANGE_MSG),
    }
}

/// Metadata no update may change (`ValidateObjectMetaUpdate`).
pub fn meta_update(e: &mut FieldErrors, old: &Value, new: &Value) {
    for (field, key) in [
        ("metadata.name", "name"),
        ("metadata.namespace", "namespace"),
        ("metadata.uid", "uid"),
        ("metadata.creationTimestamp", "creationTimestamp"),
    ] {
        let o = str_at(old, &["metadata", key]);
        let n = str_at(new, &["metadata", key]);
        // An empty new value is filled from the stored object by the server.
        if !n.is_empty() && o != n {
            e.invalid(field, &Value::from(n), "field is immutable");
        }
    }
    // An object being deleted takes no new finalizers.
    if at(old, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        let before: Vec<&str> = arr(at(old, &["metadata", "finalizers"]))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let mut added: Vec<&str> = arr(at(new, &["metadata", "finalizers"]))
            .iter()
            .filter_map(Value::as_str)
            .filter(|f| !before.contains(f))
            .collect();
        added.sort_unstable();
        added.dedup();
        if !added.is_empty() {
            let list: Vec<String> = added
                .iter()
                .map(|f| crate::field_errors::go_quote(f))
                .collect();
            e.forbidden(
                "metadata.finalizers",
                &format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    list.join(", ")
                ),
            );
        }
    }
    let o_del = at(old, &["metadata", "deletionGracePeriodSeconds"]).filter(|v| !v.is_null());
    let n_del = at(new, &["metadata", "deletionGracePeriodSeconds"]).filter(|v| !v.is_null());
    if o_del.is_some() && n_del != o_del {
        e.invalid(
            "metadata.deletionGracePeriodSeconds",
            n_del.unwrap_or(&Value::Null),
            "field is immutable; may only be changed via deletion",
        );
    }
}
