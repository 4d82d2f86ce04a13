//! What PersistentVolumes and PersistentVolumeClaims share: access modes (their rules and
//! the `RWO,ROX,RWX,RWOP` text kubectl prints), positive storage quantities, volume modes,
//! node selector terms (a PV's `nodeAffinity`) and the VOLUMEATTRIBUTESCLASS cell.

use serde_json::Value;

use apimachinery::checks::labels;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at, obj, str_at};
use apimachinery::names::qualified_name;
use apimachinery::quantity::Quantity;

/// Access modes as upstream lists them in its "supported values".
const ACCESS_MODES: &[&str] = &[
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];

/// `ValidatePersistentVolumeSpec`'s and `ValidatePersistentVolumeClaimSpec`'s access mode
/// rules: at least one, each known, and `ReadWriteOncePod` alone.
pub fn access_modes(e: &mut FieldErrors, spec: &Value, path: &str, required_detail: &str) {
    let modes = arr(spec.get("accessModes"));
    if modes.is_empty() {
        e.required(path, required_detail);
    }
    let (mut once_pod, mut other) = (false, false);
    for m in modes {
        let s = m.as_str().unwrap_or("");
        if !ACCESS_MODES.contains(&s) {
            e.not_supported(path, m, ACCESS_MODES);
        } else if s == "ReadWriteOncePod" {
            once_pod = true;
        } else {
            other = true;
        }
    }
    if once_pod && other {
        e.forbidden(path, "may not use ReadWriteOncePod with other access modes");
    }
}

/// Upstream `GetAccessModesAsString`: the short names in a fixed order, comma-separated.
pub fn access_modes_text(modes: Option<&Value>) -> String {
    let modes = arr(modes);
    let has = |m: &str| modes.iter().any(|v| v.as_str() == Some(m));
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(long, _)| has(long))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// `ValidatePositiveQuantityValue` of a resource quantity at `path`.
pub fn positive_quantity(e: &mut FieldErrors, v: &Value, path: &str) {
    match v.as_str().and_then(Quantity::parse) {
        Some(q) if q.is_positive() => {}
        Some(_) => e.invalid(path, v, "must be greater than zero"),
        None => e.invalid(
            path,
            v,
            "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
        ),
    }
}

/// `volumeMode`, when set: `Block` or `Filesystem`.
pub fn volume_mode(e: &mut FieldErrors, spec: &Value, path: &str) {
    if let Some(m) = spec.get("volumeMode").filter(|v| !v.is_null()) {
        const MODES: &[&str] = &["Block", "Filesystem"];
        if !m.as_str().is_some_and(|s| MODES.contains(&s)) {
            e.not_supported(path, m, MODES);
        }
    }
}

/// A `storageClassName` that is set must be a DNS subdomain (kube-apiserver's
/// `ValidateClassName`).
pub fn class_name(e: &mut FieldErrors, spec: &Value, path: &str) {
    let name = str_at(spec, &["storageClassName"]);
    if !name.is_empty() {
        for m in apimachinery::names::dns1123_subdomain(name) {
            e.invalid(path, &Value::from(name), &m);
        }
    }
}

/// `ValidateNodeSelector` of a PV's `nodeAffinity.required`.
pub fn node_selector(e: &mut FieldErrors, selector: &Value, path: &str) {
    let terms = arr(selector.get("nodeSelectorTerms"));
    if terms.is_empty() {
        e.required(
            &format!("{path}.nodeSelectorTerms"),
            "must have at least one node selector term",
        );
    }
    for (i, term) in terms.iter().enumerate() {
        let tp = format!("{path}.nodeSelectorTerms[{i}]");
        for (j, req) in arr(term.get("matchExpressions")).iter().enumerate() {
            requirement(e, req, &format!("{tp}.matchExpressions[{j}]"), true);
        }
        for (j, req) in arr(term.get("matchFields")).iter().enumerate() {
            requirement(e, req, &format!("{tp}.matchFields[{j}]"), false);
        }
    }
}

/// One `NodeSelectorRequirement`: a valid key (a label name, or `metadata.name` for
/// fields), a known operator and the values that operator needs.
fn requirement(e: &mut FieldErrors, req: &Value, path: &str, label_key: bool) {
    let key = str_at(req, &["key"]);
    if label_key {
        for m in qualified_name(key) {
            e.invalid(&format!("{path}.key"), &Value::from(key), &m);
        }
    } else if key != "metadata.name" {
        e.invalid(
            &format!("{path}.key"),
            &Value::from(key),
            "not a valid field selector key",
        );
    }
    let values = arr(req.get("values"));
    let op = str_at(req, &["operator"]);
    let vp = format!("{path}.values");
    match op {
        "In" | "NotIn" if values.is_empty() => {
            e.required(&vp, "must be specified when `operator` is 'In' or 'NotIn'")
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => e.forbidden(
            &vp,
            "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
        ),
        "Gt" | "Lt" if values.len() != 1 => e.required(
            &vp,
            "must be specified single value when `operator` is 'Lt' or 'Gt'",
        ),
        "In" | "NotIn" | "Exists" | "DoesNotExist" | "Gt" | "Lt" => {}
        _ => e.invalid(
            &format!("{path}.operator"),
            &Value::from(op),
            "not a valid selector operator",
        ),
    }
}

/// A label selector (`spec.selector` of a claim): its `matchLabels` follow the label rules.
pub fn selector(e: &mut FieldErrors, spec: &Value, path: &str) {
    if obj(spec.get("selector")).is_some() {
        labels(
            e,
            at(spec, &["selector", "matchLabels"]),
            &format!("{path}.matchLabels"),
        );
    }
}

/// The VOLUMEATTRIBUTESCLASS cell: the name, `<unset>` when none.
pub fn attributes_class(spec: Option<&Value>) -> String {
    match spec
        .and_then(|s| s.get("volumeAttributesClassName"))
        .and_then(Value::as_str)
    {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => "<unset>".to_string(),
    }
}

/// The VOLUMEMODE cell (`-o wide`): the mode, `<unset>` when none.
pub fn volume_mode_cell(spec: Option<&Value>) -> String {
    match spec
        .and_then(|s| s.get("volumeMode"))
        .and_then(Value::as_str)
    {
        Some(m) => m.to_string(),
        None => "<unset>".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn modes_text_in_upstream_order() {
        let modes = json!(["ReadWriteMany", "ReadWriteOnce"]);
        assert_eq!(access_modes_text(Some(&modes)), "RWO,RWX");
        assert_eq!(access_modes_text(None), "");
    }

    #[test]
    fn mode_rules() {
        let mut e = FieldErrors::default();
        access_modes(
            &mut e,
            &json!({"accessModes": ["ReadWriteOncePod", "ReadWriteOnce", "Sometimes"]}),
            "spec.accessModes",
            "",
        );
        let msgs: Vec<String> = e
            .finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].starts_with("spec.accessModes: Unsupported value: \"Sometimes\""));
        assert_eq!(
            msgs[1],
            "spec.accessModes: Forbidden: may not use ReadWriteOncePod with other access modes"
        );
    }
}
