//! What the workload kinds share about the pods they stamp out: defaults of `spec.template`,
//! the selector and template rules of `ValidateReplicaSetSpec` and its siblings (selector
//! required and not empty, template labels it matches, `restartPolicy: Always`, an immutable
//! selector), and the CONTAINERS / IMAGES / SELECTOR cells of `-o wide`.

use serde_json::{json, Map, Value};

use apimachinery::field_errors::{go_quote, FieldErrors};
use apimachinery::json::{arr, at, obj};
use apimachinery::labelselector;
use apimachinery::printing::Column;

/// Pod spec defaults inside `spec.template` (`SetDefaults_PodSpec`; templates do not get
/// the defaults only pods get).
pub fn default_template(spec: &mut Map<String, Value>) {
    if let Some(pod_spec) = spec
        .get_mut("template")
        .and_then(Value::as_object_mut)
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    {
        kinds_core::pod::default_pod_spec(pod_spec);
    }
}

/// Go's `%#v` of a string map, as field errors print label maps.
pub fn go_string_map(v: Option<&Value>) -> String {
    match obj(v) {
        None => "map[string]string(nil)".into(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v.as_str().unwrap_or(""))))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// Go's `%#v` of a LabelSelector, as the "field is immutable" error prints it.
pub fn go_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel.filter(|s| !s.is_null()) else {
        return "null".into();
    };
    let reqs = arr(sel.get("matchExpressions"));
    let exprs = if reqs.is_empty() {
        "[]v1.LabelSelectorRequirement(nil)".to_string()
    } else {
        let items: Vec<String> = reqs
            .iter()
            .map(|r| {
                let text = |k: &str| go_quote(r.get(k).and_then(Value::as_str).unwrap_or(""));
                let values: Vec<String> = arr(r.get("values"))
                    .iter()
                    .map(|v| go_quote(v.as_str().unwrap_or("")))
                    .collect();
                let values = if r.get("values").is_some_and(|v| !v.is_null()) {
                    format!("[]string{{{}}}", values.join(", "))
                } else {
                    "[]string(nil)".to_string()
                };
                format!(
                    "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{values}}}",
                    text("key"),
                    text("operator")
                )
            })
            .collect();
        format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{exprs}}}",
        go_string_map(sel.get("matchLabels"))
    )
}

/// The selector rules of `ValidateReplicaSetSpec` / `ValidateDeploymentSpec` at
/// `spec.selector`, and the template rules for pods that must keep running
/// (`ValidatePodTemplateSpecForReplicaSet`); `kind` names the owner in upstream's messages.
pub fn validate_selector_and_template(e: &mut FieldErrors, spec: &Value, kind: &str) {
    let selector = spec.get("selector").filter(|s| !s.is_null());
    match selector {
        None => e.required("spec.selector", ""),
        Some(sel) => {
            labelselector::validate(e, sel, "spec.selector");
            if labelselector::is_empty(sel) {
                e.invalid_text(
                    "spec.selector",
                    &go_selector(Some(sel)),
                    &format!(
                        "empty selector is invalid for {}",
                        empty_selector_word(kind)
                    ),
                );
            }
        }
    }
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        e.required("spec.template", "");
        return;
    };
    let labels = template.get("metadata").and_then(|m| m.get("labels"));
    if let Some(sel) = selector.filter(|s| !labelselector::is_empty(s)) {
        if !labelselector::matches(sel, labels) {
            e.invalid_text(
                "spec.template.metadata.labels",
                &go_string_map(labels),
                "`selector` does not match template `labels`",
            );
        }
    }
    kinds_core::pod::validate_pod_template(e, template, "spec.template");
    let policy = at(template, &["spec", "restartPolicy"])
        .and_then(Value::as_str)
        .unwrap_or("");
    // An empty or unknown policy was reported by the pod rules already.
    if matches!(policy, "OnFailure" | "Never") {
        e.not_supported(
            "spec.template.spec.restartPolicy",
            &Value::from(policy),
            &["Always"],
        );
    }
    if at(template, &["spec", "activeDeadlineSeconds"]).is_some_and(|v| !v.is_null()) {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        );
    }
}

/// The owner upstream's "empty selector" message names: ReplicaSets share the Deployment's
/// wording; the others name themselves.
fn empty_selector_word(kind: &str) -> String {
    match kind {
        "ReplicaSet" | "Deployment" => "deployment".into(),
        other => other.to_lowercase(),
    }
}

/// apps/v1 selectors may not change.
pub fn immutable_selector(e: &mut FieldErrors, old: &Value, new: &Value) {
    let o = at(old, &["spec", "selector"]).filter(|v| !v.is_null());
    let n = at(new, &["spec", "selector"]).filter(|v| !v.is_null());
    if o != n {
        e.invalid_text("spec.selector", &go_selector(n), "field is immutable");
    }
}

/// `spec.replicas`, `spec.minReadySeconds` and the like must not be negative.
pub fn nonnegative_ints(e: &mut FieldErrors, obj: &Value, paths: &[&[&str]]) {
    for path in paths {
        if let Some(n) = at(obj, path).and_then(Value::as_i64) {
            if n < 0 {
                e.invalid(
                    &path.join("."),
                    &Value::from(n),
                    "must be greater than or equal to 0",
                );
            }
        }
    }
}

const PERCENT_MSG: &str = "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')";

/// An int-or-string field's value: `(n, false)` for a number, `(n, true)` for a percent
/// string `"n%"`; `None` for anything else.
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

/// `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent` of the field at `path`
/// (rolling update bounds such as `maxUnavailable`).
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

/// The `-o wide` columns every apps kind ends with.
#[rustfmt::skip]
pub const WIDE_COLUMNS: [Column; 3] = [
    ("Containers", "string", "", 1, "Names of each container in the template."),
    ("Images", "string", "", 1, "Images referenced by each container in the template."),
    ("Selector", "string", "", 1, "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment."),
];

/// The cells of [`WIDE_COLUMNS`] for an object with `spec.template` and `spec.selector`.
pub fn wide_cells(obj: &Value) -> [Value; 3] {
    let containers = arr(at(obj, &["spec", "template", "spec", "containers"]));
    let field = |k: &str| {
        containers
            .iter()
            .map(|c| c.get(k).and_then(Value::as_str).unwrap_or(""))
            .collect::<Vec<_>>()
            .join(",")
    };
    [
        json!(field("name")),
        json!(field("image")),
        json!(labelselector::format(at(obj, &["spec", "selector"]))),
    ]
}

/// Upstream's `FormatLabels`: sorted `k=v` pairs joined by commas, or `<none>`.
pub fn format_labels(labels: Option<&Value>) -> String {
    let pairs: Vec<String> = labels
        .and_then(Value::as_object)
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

/// An integer cell (0 when absent, as upstream's int32 fields are).
pub fn int_cell(obj: &Value, path: &[&str]) -> Value {
    json!(at(obj, path).and_then(Value::as_i64).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(spec: Value) -> Vec<String> {
        let mut e = FieldErrors::default();
        validate_selector_and_template(&mut e, &spec, "ReplicaSet");
        e.finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|f| f.message)
            .collect()
    }

    fn template(labels: Value) -> Value {
        json!({"metadata": {"labels": labels},
               "spec": {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                        "containers": [{"name": "c", "image": "busybox",
                                        "imagePullPolicy": "Always",
                                        "terminationMessagePolicy": "File"}]}})
    }

    #[test]
    fn selector_must_match_the_template() {
        let ok = json!({"selector": {"matchLabels": {"app": "web"}},
                        "template": template(json!({"app": "web", "x": "y"}))});
        assert_eq!(messages(ok), Vec::<String>::new());
        let off = json!({"selector": {"matchLabels": {"app": "web"}},
                         "template": template(json!({"app": "db"}))});
        assert_eq!(
            messages(off),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"]
        );
        let missing = json!({"template": template(json!({"app": "web"}))});
        assert_eq!(messages(missing), vec!["spec.selector: Required value"]);
        let empty = json!({"selector": {}, "template": template(json!({"app": "web"}))});
        assert_eq!(
            messages(empty),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"]
        );
    }

    #[test]
    fn templates_keep_running() {
        let mut t = template(json!({"app": "web"}));
        t["spec"]["restartPolicy"] = json!("Never");
        t["spec"]["activeDeadlineSeconds"] = json!(5);
        let spec = json!({"selector": {"matchLabels": {"app": "web"}}, "template": t});
        assert_eq!(
            messages(spec),
            vec![
                "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\"",
                "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in ReplicaSet is not Supported",
            ]
        );
        let mut t = template(json!({"app": "web"}));
        t["spec"]["containers"][0]["image"] = json!("");
        let spec = json!({"selector": {"matchLabels": {"app": "web"}}, "template": t});
        assert_eq!(
            messages(spec),
            vec!["spec.template.spec.containers[0].image: Required value"]
        );
    }

    #[test]
    fn selectors_are_immutable() {
        let old = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}});
        let new = json!({"spec": {"selector": {"matchLabels": {"app": "web2"}}}});
        let mut e = FieldErrors::default();
        immutable_selector(&mut e, &old, &old);
        immutable_selector(&mut e, &old, &new);
        let errs = e.finish().err().unwrap_or_default();
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0].message,
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"
        );
    }

    #[test]
    fn empty_selectors_name_the_kind() {
        let empty = json!({"selector": {}, "template": template(json!({"app": "web"}))});
        let mut e = FieldErrors::default();
        validate_selector_and_template(&mut e, &empty, "DaemonSet");
        let m = e.finish().err().unwrap_or_default();
        assert!(
            m[0].message
                .ends_with("empty selector is invalid for daemonset"),
            "{m:?}"
        );
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

    #[test]
    fn wide_cells_list_containers_and_the_selector() {
        let rs = json!({"spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"spec": {"containers": [{"name": "a", "image": "x:1"}, {"name": "b", "image": "y"}]}}}});
        assert_eq!(
            wide_cells(&rs),
            [json!("a,b"), json!("x:1,y"), json!("app=web")]
        );
    }
}
