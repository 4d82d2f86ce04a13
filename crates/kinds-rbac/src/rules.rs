//! What Roles and bindings share: the checks of upstream's `ValidatePolicyRule`,
//! `ValidateRoleBindingSubject` and the roleRef rules, and the v1 defaults of subjects and
//! roleRefs.

use serde_json::{Map, Value};

use apimachinery::field_errors::{go_quote, FieldErrors};
use apimachinery::json::{arr, at, str_at};
use apimachinery::names::{dns1123_subdomain, path_segment_name};

/// The RBAC group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// `ValidatePolicyRule` for every rule of `rules`; namespaced rules (a Role's) may not name
/// non-resource URLs.
pub fn policy_rules(e: &mut FieldErrors, rules: Option<&Value>, namespaced: bool) {
    for (i, rule) in arr(rules).iter().enumerate() {
        let path = format!("rules[{i}]");
        let list = |k: &str| arr(rule.get(k));
        if list("verbs").is_empty() {
            e.required(
                &format!("{path}.verbs"),
                "verbs must contain at least one value",
            );
        }
        let urls = list("nonResourceURLs");
        if !urls.is_empty() {
            let field = format!("{path}.nonResourceURLs");
            // Go's `%#v` of the []string upstream reports.
            let urls = format!(
                "[]string{{{}}}",
                urls.iter()
                    .map(|u| go_quote(u.as_str().unwrap_or_default()))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if namespaced {
                e.invalid_text(
                    &field,
                    &urls,
                    "namespaced rules cannot apply to non-resource URLs",
                );
            }
            if !list("apiGroups").is_empty()
                || !list("resources").is_empty()
                || !list("resourceNames").is_empty()
            {
                e.invalid_text(
                    &field,
                    &urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                );
            }
            continue;
        }
        if list("apiGroups").is_empty() {
            e.required(
                &format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            );
        }
        if list("resources").is_empty() {
            e.required(
                &format!("{path}.resources"),
                "resource rules must supply at least one resource",
            );
        }
    }
}

/// The roleRef checks of `ValidateRoleBinding` / `ValidateClusterRoleBinding`.
pub fn role_ref(e: &mut FieldErrors, obj: &Value, kinds: &[&str]) {
    let group = str_at(obj, &["roleRef", "apiGroup"]);
    if group != GROUP {
        e.not_supported("roleRef.apiGroup", &Value::from(group), &[GROUP]);
    }
    let kind = str_at(obj, &["roleRef", "kind"]);
    if !kinds.contains(&kind) {
        e.not_supported("roleRef.kind", &Value::from(kind), kinds);
    }
    let name = str_at(obj, &["roleRef", "name"]);
    if name.is_empty() {
        e.required("roleRef.name", "");
    } else {
        for m in path_segment_name(name, false) {
            e.invalid("roleRef.name", &Value::from(name), &m);
        }
    }
}

/// `ValidateRoleBindingSubject` for every subject; a ClusterRoleBinding's ServiceAccount
/// subjects must name their namespace.
pub fn subjects(e: &mut FieldErrors, obj: &Value, namespaced: bool) {
    for (i, subject) in arr(obj.get("subjects")).iter().enumerate() {
        let path = format!("subjects[{i}]");
        let name = str_at(subject, &["name"]);
        if name.is_empty() {
            e.required(&format!("{path}.name"), "");
        }
        let group = str_at(subject, &["apiGroup"]);
        match str_at(subject, &["kind"]) {
            "ServiceAccount" => {
                if !name.is_empty() {
                    for m in dns1123_subdomain(name) {
                        e.invalid(&format!("{path}.name"), &Value::from(name), &m);
                    }
                }
                if !group.is_empty() {
                    e.not_supported(&format!("{path}.apiGroup"), &Value::from(group), &[""]);
                }
                if !namespaced && str_at(subject, &["namespace"]).is_empty() {
                    e.required(&format!("{path}.namespace"), "");
                }
            }
            "User" | "Group" => {
                if group != GROUP {
                    e.not_supported(&format!("{path}.apiGroup"), &Value::from(group), &[GROUP]);
                }
            }
            other => e.not_supported(
                &format!("{path}.kind"),
                &Value::from(other),
                &["ServiceAccount", "User", "Group"],
            ),
        }
    }
}

/// `ValidateRoleBindingUpdate`: the role a binding grants never changes (delete and create
/// the binding instead), reported with the old reference as Go prints the struct.
pub fn role_ref_unchanged(e: &mut FieldErrors, old: &Value, new: &Value) {
    if at(old, &["roleRef"]) != at(new, &["roleRef"]) {
        let printed = format!(
            "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
            str_at(new, &["roleRef", "apiGroup"]),
            str_at(new, &["roleRef", "kind"]),
            str_at(new, &["roleRef", "name"]),
        );
        e.invalid_text("roleRef", &printed, "cannot change roleRef");
    }
}

/// `SetDefaults_RoleBinding`/`SetDefaults_Subject` (v1): an empty roleRef group is RBAC's,
/// and so is a User or Group subject's.
pub fn binding_defaults(obj: &mut Map<String, Value>) {
    if let Some(r) = obj.get_mut("roleRef").and_then(Value::as_object_mut) {
        default_group(r);
    }
    if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
        for s in subjects.iter_mut().filter_map(Value::as_object_mut) {
            if matches!(
                s.get("kind").and_then(Value::as_str),
                Some("User" | "Group")
            ) {
                default_group(s);
            }
        }
    }
}

fn default_group(m: &mut Map<String, Value>) {
    if m.get("apiGroup")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        m.insert("apiGroup".into(), Value::from(GROUP));
    }
}
