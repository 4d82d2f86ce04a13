//! `metav1.LabelSelector` as kube-apiserver treats it in objects (a workload's
//! `spec.selector`): `ValidateLabelSelector` with its field paths, and the text form
//! (`FormatLabelSelector`) that tables and the `scale` subresource show.

use serde_json::Value;

use crate::checks::labels;
use crate::field_errors::FieldErrors;
use crate::json::{arr, obj};
use crate::names::{label_value, qualified_name};

/// `ValidateLabelSelector` at `path` (e.g. `spec.selector`).
pub fn validate(e: &mut FieldErrors, sel: &Value, path: &str) {
    labels(e, sel.get("matchLabels"), &format!("{path}.matchLabels"));
    for (i, req) in arr(sel.get("matchExpressions")).iter().enumerate() {
        let rp = format!("{path}.matchExpressions[{i}]");
        let values = arr(req.get("values"));
        match req.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" | "NotIn" if values.is_empty() => e.required(
                &format!("{rp}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            ),
            "Exists" | "DoesNotExist" if !values.is_empty() => e.forbidden(
                &format!("{rp}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            ),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => e.invalid(
                &format!("{rp}.operator"),
                &Value::from(other),
                "not a valid selector operator",
            ),
        }
        let key = req.get("key").and_then(Value::as_str).unwrap_or("");
        for m in qualified_name(key) {
            e.invalid(&format!("{rp}.key"), &Value::from(key), &m);
        }
        for (j, v) in values.iter().enumerate() {
            let text = v.as_str().unwrap_or("");
            for m in label_value(text) {
                e.invalid(&format!("{rp}.values[{j}]"), v, &m);
            }
        }
    }
}

/// Whether the selector selects nothing in particular (no labels, no expressions), which
/// workloads refuse.
pub fn is_empty(sel: &Value) -> bool {
    obj(sel.get("matchLabels")).is_none_or(|m| m.is_empty())
        && arr(sel.get("matchExpressions")).is_empty()
}

/// Whether the selector selects an object with `labels` (absent selector parts match).
pub fn matches(sel: &Value, labels: Option<&Value>) -> bool {
    let label = |k: &str| obj(labels).and_then(|m| m.get(k)).and_then(Value::as_str);
    let by_labels = obj(sel.get("matchLabels"))
        .into_iter()
        .flatten()
        .all(|(k, v)| label(k) == v.as_str());
    by_labels
        && arr(sel.get("matchExpressions")).iter().all(|req| {
            let key = req.get("key").and_then(Value::as_str).unwrap_or("");
            let mut values = arr(req.get("values")).iter().filter_map(Value::as_str);
            match req.get("operator").and_then(Value::as_str).unwrap_or("") {
                "In" => label(key).is_some_and(|l| values.any(|v| v == l)),
                "NotIn" => label(key).is_none_or(|l| !values.any(|v| v == l)),
                "Exists" => label(key).is_some(),
                "DoesNotExist" => label(key).is_none(),
                _ => false,
            }
        })
}

/// The selector as text (`app=web,tier in (be,fe)`): requirements sorted by key, values
/// sorted; `<none>` when it selects everything or is absent.
pub fn format(sel: Option<&Value>) -> String {
    let text = to_string(sel);
    if text.is_empty() {
        "<none>".to_string()
    } else {
        text
    }
}

/// The selector as a label-selector query string (empty when it has no requirements), as
/// `labels.Selector.String()`; the `scale` subresource reports this.
pub fn to_string(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in obj(sel.get("matchLabels")).into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", v.as_str().unwrap_or(""))));
    }
    for req in arr(sel.get("matchExpressions")) {
        let key = req.get("key").and_then(Value::as_str).unwrap_or("");
        let mut values: Vec<&str> = arr(req.get("values"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        values.dedup();
        let text = match req.get("operator").and_then(Value::as_str).unwrap_or("") {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        reqs.push((key.to_string(), text));
    }
    reqs.sort();
    reqs.into_iter()
        .map(|(_, t)| t)
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats_sorted_by_key() {
        let sel = json!({"matchLabels": {"tier": "fe", "app": "web"},
            "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]},
                                 {"key": "zz", "operator": "DoesNotExist"},
                                 {"key": "b", "operator": "Exists"}]});
        assert_eq!(
            format(Some(&sel)),
            "app=web,b,env in (dev,prod),tier=fe,!zz"
        );
        assert_eq!(format(Some(&json!({}))), "<none>");
        assert_eq!(format(None), "<none>");
        assert_eq!(
            to_string(Some(&json!({"matchLabels": {"app": "web"}}))),
            "app=web"
        );
    }

    #[test]
    fn validation_names_the_requirement() {
        let mut e = FieldErrors::default();
        let sel = json!({"matchLabels": {"app": "-bad"},
            "matchExpressions": [{"key": "a", "operator": "In"},
                                 {"key": "b", "operator": "Exists", "values": ["x"]},
                                 {"key": "c", "operator": "Near"}]});
        validate(&mut e, &sel, "spec.selector");
        let fields: Vec<String> = e
            .finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.field)
            .collect();
        assert_eq!(
            fields,
            vec![
                "spec.selector.matchLabels",
                "spec.selector.matchExpressions[0].values",
                "spec.selector.matchExpressions[1].values",
                "spec.selector.matchExpressions[2].operator",
            ]
        );
        assert!(is_empty(&json!({})));
        assert!(!is_empty(&json!({"matchLabels": {"a": "b"}})));
    }

    #[test]
    fn matching() {
        let sel = json!({"matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]});
        assert!(matches(&sel, Some(&json!({"app": "web"}))));
        assert!(matches(&sel, Some(&json!({"app": "web", "tier": "fe"}))));
        assert!(!matches(&sel, Some(&json!({"app": "web", "tier": "db"}))));
        assert!(!matches(&sel, None));
    }
}
