//! What the apps kinds that own pods share: their label selector (`ValidateLabelSelector`,
//! matching and upstream's printed form), the pod template's defaults and rules as
//! kube-apiserver applies them to a controller's spec, int-or-percent fields, and the
//! CONTAINERS / IMAGES cells of `-o wide`.

use serde_json::{Map, Value};

use apimachinery::checks::labels;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at, obj, str_at};
use apimachinery::names::{label_value, qualified_name};

/// Fills the template's `SetDefaults_PodSpec` under `spec.template.spec`.
pub fn default_template(spec: &mut Map<String, Value>) {
    if let Some(pod_spec) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        kinds_core::pod::default_template_spec(pod_spec);
    }
}

/// `ValidateLabelSelector` of `sel` at `path`.
pub fn validate_selector(e: &mut FieldErrors, sel: &Value, path: &str) {
    labels(e, sel.get("matchLabels"), &format!("{path}.matchLabels"));
    for (i, r) in arr(sel.get("matchExpressions")).iter().enumerate() {
        let rp = format!("{path}.matchExpressions[{i}]");
        let values = arr(r.get("values"));
        match str_at(r, &["operator"]) {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.required(
                        &format!("{rp}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    e.forbidden(
                        &format!("{rp}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    );
                }
            }
            other => e.invalid(
                &format!("{rp}.operator"),
                &Value::from(other),
                "not a valid selector operator",
            ),
        }
        let key = str_at(r, &["key"]);
        for m in qualified_name(key) {
            e.invalid(&format!("{rp}.key"), &Value::from(key), &m);
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for m in label_value(v) {
                e.invalid(&format!("{rp}.values[{j}]"), &Value::from(v), &m);
            }
        }
    }
}

/// Whether the label selector `sel` selects an object with `labels` (an absent label map
/// is empty). An empty selector selects everything; an unknown operator nothing.
pub fn selector_matches(sel: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    let by_labels = obj(sel.get("matchLabels"))
        .into_iter()
        .flatten()
        .all(|(k, v)| get(k) == v.as_str());
    let by_expressions = arr(sel.get("matchExpressions")).iter().all(|r| {
        let have = get(str_at(r, &["key"]));
        let mut values = arr(r.get("values")).iter().filter_map(Value::as_str);
        match str_at(r, &["operator"]) {
            "In" => have.is_some_and(|h| values.any(|v| v == h)),
            "NotIn" => have.is_none_or(|h| !values.any(|v| v == h)),
            "Exists" => have.is_some(),
            "DoesNotExist" => have.is_none(),
            _ => false,
        }
    });
    by_labels && by_expressions
}

/// True when the selector has neither labels nor expressions.
fn selector_is_empty(sel: &Value) -> bool {
    obj(sel.get("matchLabels")).is_none_or(Map::is_empty)
        && arr(sel.get("matchExpressions")).is_empty()
}

/// The rules every pod-owning apps kind applies to `spec.selector` and `spec.template`:
/// the selector is required, not empty, and selects the template's labels; the template is
/// a valid pod template whose pods always restart and have no deadline. `kind` is the word
/// upstream's messages use (`daemonset`, `statefulset`).
pub fn validate_selector_and_template(e: &mut FieldErrors, spec: &Value, kind: &str) {
    let template = spec.get("template").unwrap_or(&Value::Null);
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => e.required("spec.selector", ""),
        Some(sel) => {
            validate_selector(e, sel, "spec.selector");
            if selector_is_empty(sel) {
                e.invalid(
                    "spec.selector",
                    sel,
                    &format!("empty selector is invalid for {kind}"),
                );
            } else if !selector_matches(sel, obj(at(template, &["metadata", "labels"]))) {
                let labels = at(template, &["metadata", "labels"])
                    .cloned()
                    .unwrap_or(Value::Object(Map::new()));
                e.invalid(
                    "spec.template.metadata.labels",
                    &labels,
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
    kinds_core::pod::validate_template(e, template, "spec.template");
    let restart = str_at(template, &["spec", "restartPolicy"]);
    if restart != "Always" {
        e.not_supported(
            "spec.template.spec.restartPolicy",
            &Value::from(restart),
            &["Always"],
        );
    }
    if at(template, &["spec", "activeDeadlineSeconds"]).is_some_and(|v| !v.is_null()) {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!(
                "activeDeadlineSeconds in {} is not Supported",
                kind_title(kind)
            ),
        );
    }
}

fn kind_title(kind: &str) -> &str {
    match kind {
        "daemonset" => "DaemonSet",
        "statefulset" => "StatefulSet",
        other => other,
    }
}

/// `field is immutable` when `path` differs between `old` and `new`.
pub fn immutable(e: &mut FieldErrors, old: &Value, new: &Value, keys: &[&str], path: &str) {
    let o = at(old, keys);
    let n = at(new, keys);
    if o != n {
        e.invalid(path, n.unwrap_or(&Value::Null), "field is immutable");
    }
}

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// An int-or-string field's value: a number, or a percent string's number; `None` for
/// anything else.
pub fn int_or_percent(v: &Value) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => n.as_i64().map(|n| (n, false)),
        Value::String(s) => {
            let digits = s.strip_suffix('%')?;
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok().map(|n| (n, true))
        }
        _ => None,
    }
}

/// `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent` of the field at `path`.
pub fn validate_int_or_percent(e: &mut FieldErrors, v: Option<&Value>, path: &str) {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return;
    };
    match int_or_percent(v) {
        None if v.is_string() => e.invalid(path, v, PERCENT_MSG),
        None => e.invalid(path, v, "must be an integer or percentage (e.g '5%')"),
        Some((n, _)) if n < 0 => e.invalid(path, v, "must be greater than or equal to 0"),
        Some((n, true)) if n > 100 => e.invalid(path, v, "must not be greater than 100%"),
        Some(_) => {}
    }
}

/// Upstream's `layoutContainerCells`: container names and images, comma-separated.
pub fn containers_and_images(template_spec: &Value) -> (String, String) {
    let cs = arr(template_spec.get("containers"));
    let names: Vec<&str> = cs.iter().map(|c| str_at(c, &["name"])).collect();
    let images: Vec<&str> = cs.iter().map(|c| str_at(c, &["image"])).collect();
    (names.join(","), images.join(","))
}

/// Upstream's `FormatLabelSelector`: `app=web,tier in (a,b),!gone`, or `<none>`.
pub fn selector_text(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return "<none>".into();
    };
    let mut parts: Vec<String> = obj(sel.get("matchLabels"))
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    for r in arr(sel.get("matchExpressions")) {
        let key = str_at(r, &["key"]);
        let mut values: Vec<&str> = arr(r.get("values"))
            .iter()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        parts.push(match str_at(r, &["operator"]) {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return "<error>".into(),
        });
    }
    if parts.is_empty() {
        "<none>".into()
    } else {
        parts.join(",")
    }
}

/// Upstream's `FormatLabels` of a label map: sorted `k=v` pairs, or `<none>`.
pub fn labels_text(labels: Option<&Value>) -> String {
    let pairs: Vec<String> = obj(labels)
        .into_iter()
        .flatten()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
        .collect();
    if pairs.is_empty() {
        "<none>".into()
    } else {
        pairs.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_match_labels_and_expressions() {
        let labels = json!({"app": "web", "tier": "front"});
        let l = labels.as_object();
        assert!(selector_matches(&json!({"matchLabels": {"app": "web"}}), l));
        assert!(!selector_matches(&json!({"matchLabels": {"app": "db"}}), l));
        let expr = |op: &str, values: Value| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]});
        assert!(selector_matches(&expr("In", json!(["front", "x"])), l));
        assert!(!selector_matches(&expr("NotIn", json!(["front"])), l));
        assert!(selector_matches(&expr("Exists", json!([])), l));
        assert!(!selector_matches(&expr("DoesNotExist", json!([])), l));
        assert!(!selector_matches(&expr("Near", json!([])), l));
        assert!(selector_matches(&json!({}), None));
        assert_eq!(
            selector_text(Some(&json!({"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "t", "operator": "In", "values": ["b", "a"]},
                                     {"key": "g", "operator": "DoesNotExist"}]}))),
            "app=web,t in (a,b),!g"
        );
        assert_eq!(selector_text(Some(&json!({}))), "<none>");
    }

    #[test]
    fn selector_validation() {
        let mut e = FieldErrors::default();
        validate_selector(
            &mut e,
            &json!({"matchExpressions": [{"key": "a", "operator": "In"},
                                          {"key": "b", "operator": "Exists", "values": ["x"]},
                                          {"key": "c", "operator": "Near"}]}),
            "spec.selector",
        );
        let msgs: Vec<String> = e
            .finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.message)
            .collect();
        assert_eq!(msgs.len(), 3, "{msgs:?}");
        assert!(msgs[0].starts_with("spec.selector.matchExpressions[0].values: Required value"));
        assert!(msgs[1].starts_with("spec.selector.matchExpressions[1].values: Forbidden"));
        assert!(msgs[2].starts_with("spec.selector.matchExpressions[2].operator: Invalid value"));
    }

    #[test]
    fn percents() {
        assert_eq!(int_or_percent(&json!("25%")), Some((25, true)));
        assert_eq!(int_or_percent(&json!(3)), Some((3, false)));
        assert_eq!(int_or_percent(&json!("x%")), None);
        assert_eq!(int_or_percent(&json!("5")), None);
        let mut e = FieldErrors::default();
        validate_int_or_percent(&mut e, Some(&json!("150%")), "a");
        validate_int_or_percent(&mut e, Some(&json!(-1)), "b");
        validate_int_or_percent(&mut e, Some(&json!("1.5")), "c");
        validate_int_or_percent(&mut e, Some(&json!("10%")), "d");
        assert_eq!(e.finish().err().map(|v| v.len()), Some(3));
    }
}
