//! ResourceQuotas (core v1, namespaced, short name `quota`): how much of each resource the
//! objects of a namespace may use in total. The kind: `ValidateResourceQuota` (names valid
//! for quota, non-negative amounts, whole numbers for counts, scopes that fit the resources
//! and do not conflict, scope selector operators, scopes immutable), a status reset on
//! create and kept over updates, and the NAME / AGE / REQUEST / LIMIT columns of `used/hard`
//! pairs. What each kind of object uses and the admission check are in [`usage`].

pub mod usage;

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::ResourceQuota;
use serde_json::{json, Value};

use apimachinery::field_errors::{go_quote, FieldErrors};
use apimachinery::json::{arr, obj};
use apimachinery::names::qualified_name;
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::quantity_text::go_debug;
use apimachinery::strategy::{
    keep_status, reset_status, sub, typed_round_trip, ResourceInfo, Strategy, ALL_VERBS,
    STATUS_VERBS,
};

use crate::limitrange::{is_standard_resource, Amount, QUANTITY_MSG};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "resourcequotas",
    singular: "resourcequota",
    kind: "ResourceQuota",
    list_kind: "ResourceQuotaList",
    namespaced: true,
    short_names: &["quota"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[sub("status", "", "ResourceQuota", STATUS_VERBS)],
    strategy: &ResourceQuotas,
};

pub const TERMINATING: &str = "Terminating";
pub const NOT_TERMINATING: &str = "NotTerminating";
pub const BEST_EFFORT: &str = "BestEffort";
pub const NOT_BEST_EFFORT: &str = "NotBestEffort";
pub const PRIORITY_CLASS: &str = "PriorityClass";
pub const CROSS_NAMESPACE_POD_AFFINITY: &str = "CrossNamespacePodAffinity";

/// `IsStandardResourceQuotaScope`.
const SCOPES: &[&str] = &[
    TERMINATING,
    NOT_TERMINATING,
    BEST_EFFORT,
    NOT_BEST_EFFORT,
    PRIORITY_CLASS,
    CROSS_NAMESPACE_POD_AFFINITY,
];

/// `standardQuotaResources`.
const QUOTA_RESOURCES: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Resources counted in whole objects (`integerResources`).
const INTEGER_RESOURCES: &[&str] = &[
    "pods",
    "resourcequotas",
    "services",
    "replicationcontrollers",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

#[derive(Debug)]
struct ResourceQuotas;

impl Strategy for ResourceQuotas {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<ResourceQuota>(obj)
    }

    /// Upstream keeps no generation for quotas; a new one starts without status.
    fn prepare_for_create(&self, obj: &mut Value) {
        reset_status(obj, None);
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
    }

    fn validate(&self, quota: &Value, e: &mut FieldErrors) {
        validate_spec(quota.get("spec").unwrap_or(&Value::Null), e);
        validate_status(quota, e);
    }

    /// `ValidateResourceQuotaUpdate`: the spec's rules, and scopes that stay as they were.
    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        validate_spec(new.get("spec").unwrap_or(&Value::Null), e);
        validate_status(new, e);
        let scopes = |q: &Value| -> BTreeSet<String> {
            arr(q.pointer("/spec/scopes"))
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        };
        if scopes(old) != scopes(new) {
            e.invalid_text(
                "spec.scopes",
                &scopes_debug(new.pointer("/spec/scopes")),
                "field is immutable",
            );
        }
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, quota: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(quota, now);
        let (request, limit) = used_of_hard(quota);
        vec![name, age, json!(request), json!(limit)]
    }
}

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    NAME,
    AGE,
    ("Request", "string", "", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
    ("Limit", "string", "", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
];

/// The REQUEST and LIMIT cells: `name: used/hard` for each resource of `status.hard` in
/// name order, the `limits.*` ones in LIMIT.
fn used_of_hard(quota: &Value) -> (String, String) {
    let used = obj(quota.pointer("/status/used"));
    let (mut request, mut limit) = (Vec::new(), Vec::new());
    for (name, hard) in obj(quota.pointer("/status/hard")).into_iter().flatten() {
        let shown = |v: Option<&Value>| {
            v.and_then(Amount::from_json)
                .map(Amount::shown)
                .unwrap_or_else(|| "0".into())
        };
        let pair = format!(
            "{name}: {}/{}",
            shown(used.and_then(|u| u.get(name))),
            shown(Some(hard))
        );
        let mut pieces = name.split('.');
        if pieces.next() == Some("limits") && pieces.next().is_some() {
            limit.push(pair);
        } else {
            request.push(pair);
        }
    }
    (request.join(", "), limit.join(", "))
}

/// `IsStandardQuotaResourceName`.
pub fn is_standard_quota_resource(name: &str) -> bool {
    QUOTA_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// `IsResourceQuotaScopeValidForResource`: BestEffort goes only with `pods`, the other
/// scopes with `pods` and the cpu and memory resources.
fn scope_fits_resource(scope: &str, resource: &str) -> bool {
    const COMPUTE: &[&str] = &[
        "cpu",
        "memory",
        "limits.cpu",
        "limits.memory",
        "requests.cpu",
        "requests.memory",
    ];
    match scope {
        BEST_EFFORT => resource == "pods",
        TERMINATING
        | NOT_TERMINATING
        | NOT_BEST_EFFORT
        | PRIORITY_CLASS
        | CROSS_NAMESPACE_POD_AFFINITY => resource == "pods" || COMPUTE.contains(&resource),
        _ => true,
    }
}

/// `ValidateResourceQuotaResourceName`.
fn quota_resource_name(e: &mut FieldErrors, name: &str, path: &str) {
    let errs = qualified_name(name);
    let plain = !name.contains('/');
    if !errs.is_empty() {
        for m in errs {
            e.invalid(path, &json!(name), &m);
        }
    } else if plain && !is_standard_resource(name) {
        e.invalid(
            path,
            &json!(name),
            "must be a standard resource type or fully qualified",
        );
    }
    if plain && !is_standard_quota_resource(name) {
        e.invalid(path, &json!(name), "must be a standard resource for quota");
    }
}

/// `ValidateResourceQuantityValue`: not negative; whole for counted resources.
fn quota_amount(e: &mut FieldErrors, name: &str, v: &Value, path: &str) {
    let Some(a) = Amount::from_json(v) else {
        e.invalid(path, v, QUANTITY_MSG);
        return;
    };
    if a.q.is_negative() {
        e.invalid(
            path,
            &json!(a.shown()),
            "must be greater than or equal to 0",
        );
    }
    let integer = INTEGER_RESOURCES.contains(&name) || crate::limitrange::is_extended(name);
    if integer && a.q.milli_value() % 1000 != 0 {
        let text = match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let shown = go_debug(&text).unwrap_or_else(|| go_quote(&a.shown()));
        e.invalid_text(path, &shown, "must be an integer");
    }
}

/// The names and amounts of a resource list (`spec.hard`, `status.used`) at `field`.
fn resource_list(e: &mut FieldErrors, list: Option<&Value>, field: &str) {
    for (name, v) in obj(list).into_iter().flatten() {
        let path = format!("{field}[{name}]");
        quota_resource_name(e, name, &path);
        quota_amount(e, name, v, &path);
    }
}

/// `ValidateResourceQuotaStatus`.
fn validate_status(quota: &Value, e: &mut FieldErrors) {
    resource_list(e, quota.pointer("/status/hard"), "status.hard");
    resource_list(e, quota.pointer("/status/used"), "status.used");
}

/// Go's `%#v` of a quota's `[]core.ResourceQuotaScope`.
fn scopes_debug(scopes: Option<&Value>) -> String {
    let items: Vec<String> = arr(scopes)
        .iter()
        .map(|s| go_quote(s.as_str().unwrap_or_default()))
        .collect();
    if scopes.is_none_or(Value::is_null) {
        return "[]core.ResourceQuotaScope(nil)".into();
    }
    format!("[]core.ResourceQuotaScope{{{}}}", items.join(", "))
}

/// Go's `%#v` of a quota's `core.ScopeSelector`.
fn scope_selector_debug(sel: &Value) -> String {
    let reqs: Vec<String> = arr(sel.get("matchExpressions"))
        .iter()
        .map(|r| {
            let values = match r.get("values").and_then(Value::as_array) {
                None => "[]string(nil)".to_string(),
                Some(vs) => format!(
                    "[]string{{{}}}",
                    vs.iter()
                        .map(|v| go_quote(v.as_str().unwrap_or_default()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            };
            format!(
                "core.ScopedResourceSelectorRequirement{{ScopeName:{}, Operator:{}, Values:{values}}}",
                go_quote(r.get("scopeName").and_then(Value::as_str).unwrap_or_default()),
                go_quote(r.get("operator").and_then(Value::as_str).unwrap_or_default()),
            )
        })
        .collect();
    let list = if sel.get("matchExpressions").is_none_or(Value::is_null) {
        "[]core.ScopedResourceSelectorRequirement(nil)".to_string()
    } else {
        format!(
            "[]core.ScopedResourceSelectorRequirement{{{}}}",
            reqs.join(", ")
        )
    };
    format!("core.ScopeSelector{{MatchExpressions:{list}}}")
}

/// Scope pairs no quota may hold both of.
const CONFLICTING: &[(&str, &str)] = &[
    (BEST_EFFORT, NOT_BEST_EFFORT),
    (TERMINATING, NOT_TERMINATING),
];

/// `ValidateResourceQuotaSpec`.
fn validate_spec(spec: &Value, e: &mut FieldErrors) {
    resource_list(e, spec.get("hard"), "spec.hard");
    let hard: BTreeSet<&str> = obj(spec.get("hard"))
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect();
    let unfit = |scope: &str| {
        hard.iter()
            .filter(|k| is_standard_quota_resource(k) && !scope_fits_resource(scope, k))
            .count()
    };
    // validateResourceQuotaScopes
    let scopes: Vec<&str> = arr(spec.get("scopes"))
        .iter()
        .map(|s| s.as_str().unwrap_or_default())
        .collect();
    if !scopes.is_empty() {
        let shown = scopes_debug(spec.get("scopes"));
        for scope in &scopes {
            if !SCOPES.contains(scope) {
                e.invalid_text("spec.scopes", &shown, "unsupported scope");
            }
            for _ in 0..unfit(scope) {
                e.invalid_text(
                    "spec.scopes",
                    &shown,
                    "unsupported scope applied to resource",
                );
            }
        }
        for (a, b) in CONFLICTING {
            if scopes.contains(a) && scopes.contains(b) {
                e.invalid_text("spec.scopes", &shown, "conflicting scopes");
            }
        }
    }
    // validateScopeSelector
    let Some(sel) = spec.get("scopeSelector").filter(|s| !s.is_null()) else {
        return;
    };
    let path = "spec.scopeSelector.matchExpressions";
    let shown = scope_selector_debug(sel);
    let mut names = Vec::new();
    for req in arr(sel.get("matchExpressions")) {
        let scope = req
            .get("scopeName")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let op = req
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !SCOPES.contains(&scope) {
            e.invalid(
                &format!("{path}.scopeName"),
                &json!(scope),
                "unsupported scope",
            );
        }
        for _ in 0..unfit(scope) {
            e.invalid_text(path, &shown, "unsupported scope applied to resource");
        }
        if [
            BEST_EFFORT,
            NOT_BEST_EFFORT,
            TERMINATING,
            NOT_TERMINATING,
            CROSS_NAMESPACE_POD_AFFINITY,
        ]
        .contains(&scope)
            && op != "Exists"
        {
            e.invalid(
                &format!("{path}.operator"),
                &json!(op),
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            );
        }
        let values = arr(req.get("values"));
        match op {
            "In" | "NotIn" => {
                if values.is_empty() {
                    e.required(
                        &format!("{path}.values"),
                        "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                    );
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    let shown = format!(
                        "[]string{{{}}}",
                        values
                            .iter()
                            .map(|v| go_quote(v.as_str().unwrap_or_default()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                    e.invalid_text(
                        &format!("{path}.values"),
                        &shown,
                        "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                    );
                }
            }
            _ => e.invalid(
                &format!("{path}.operator"),
                &json!(op),
                "not a valid selector operator",
            ),
        }
        names.push(scope);
    }
    for (a, b) in CONFLICTING {
        if names.contains(a) && names.contains(b) {
            e.invalid_text(path, &shown, "conflicting scopes");
        }
    }
}

#[cfg(test)]
mod tests;
