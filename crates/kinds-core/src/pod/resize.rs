//! The `resize` subresource of pods (kube-apiserver v1.33's in-place resize): a write keeps
//! of the new pod only its containers' `resources` and `resizePolicy`, and is valid when it
//! changes nothing but cpu and memory, keeps the QoS class and lowers no memory limit of a
//! container that would have to keep running.

use serde_json::Value;

use super::validation::{validate_pod, MIRROR_POD_ANNOTATION};
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at, obj};
use apimachinery::quantity::parse_quantity;

/// The containers a resize may touch: the app containers and the sidecars (restartable init
/// containers), as v1.33 resizes both.
const LISTS: [&str; 2] = ["containers", "initContainers"];

/// The resources a resize may change.
const MUTABLE: [&str; 2] = ["cpu", "memory"];

fn resizable(list: &str, c: &Value) -> bool {
    list == "containers" || c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
}

/// upstream's `dropNonResizeUpdates`: the stored pod with each resizable container's
/// `resources` and `resizePolicy` taken from the container of the same name in `new`.
pub(super) fn prepare(old: &Value, new: &mut Value) {
    let mut out = old.clone();
    for list in LISTS {
        let Some(containers) = out
            .pointer_mut(&format!("/spec/{list}"))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        let sent = arr(new.pointer(&format!("/spec/{list}")));
        for c in containers.iter_mut() {
            if !resizable(list, c) {
                continue;
            }
            let name = c.get("name").cloned();
            let Some(from) = sent.iter().find(|n| n.get("name") == name.as_ref()) else {
                continue;
            };
            let Some(c) = c.as_object_mut() else {
                continue;
            };
            for key in ["resources", "resizePolicy"] {
                match from.get(key) {
                    Some(v) if !v.is_null() => {
                        c.insert(key.into(), v.clone());
                    }
                    _ => {
                        c.remove(key);
                    }
                }
            }
        }
    }
    *new = out;
}

/// upstream's `ValidatePodResize`.
pub(super) fn validate(e: &mut FieldErrors, old: &Value, new: &Value) {
    if at(old, &["metadata", "annotations", MIRROR_POD_ANNOTATION]).is_some() {
        e.forbidden("", "static pods cannot be resized");
        return;
    }
    validate_pod(e, new);
    for list in LISTS {
        let old_list = arr(old.pointer(&format!("/spec/{list}")));
        for (i, c) in arr(new.pointer(&format!("/spec/{list}")))
            .iter()
            .enumerate()
        {
            let path = format!("spec.{list}[{i}]");
            resize_policy(e, c, &path);
            let Some(before) = old_list.iter().find(|o| o.get("name") == c.get("name")) else {
                continue;
            };
            resource_changes(e, before, c, &path);
        }
    }
    let was = apimachinery::qos::of_pod(old);
    let becomes = apimachinery::qos::of_spec(new.get("spec").unwrap_or(&Value::Null));
    if was != becomes {
        e.forbidden(
            "spec",
            "Pod QOS Class may not change as a result of resizing",
        );
    }
}

/// `resizePolicy`: one entry per resource, cpu or memory, each `NotRequired` or
/// `RestartContainer`.
fn resize_policy(e: &mut FieldErrors, c: &Value, path: &str) {
    let mut seen = Vec::new();
    for (j, p) in arr(c.get("resizePolicy")).iter().enumerate() {
        let fp = format!("{path}.resizePolicy[{j}]");
        let name = p.get("resourceName").and_then(Value::as_str).unwrap_or("");
        if !MUTABLE.contains(&name) {
            e.not_supported(&format!("{fp}.resourceName"), &Value::from(name), &MUTABLE);
        } else if seen.contains(&name) {
            e.duplicate(&format!("{fp}.resourceName"), &Value::from(name));
        }
        seen.push(name);
        let policy = p.get("restartPolicy").and_then(Value::as_str).unwrap_or("");
        if !matches!(policy, "NotRequired" | "RestartContainer") {
            e.not_supported(
                &format!("{fp}.restartPolicy"),
                &Value::from(policy),
                &["NotRequired", "RestartContainer"],
            );
        }
    }
}

/// The policy `c` has for `resource` (`NotRequired` when it names none, the API default).
pub(super) fn policy_of<'a>(c: &'a Value, resource: &str) -> &'a str {
    arr(c.get("resizePolicy"))
        .iter()
        .find(|p| p.get("resourceName").and_then(Value::as_str) == Some(resource))
        .and_then(|p| p.get("restartPolicy").and_then(Value::as_str))
        .unwrap_or("NotRequired")
}

fn quantity(res: &Value, part: &str, name: &str) -> Option<f64> {
    match res.pointer(&format!("/resources/{part}/{name}"))? {
        Value::String(s) => parse_quantity(s),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

/// Only cpu and memory may change, and a memory limit may shrink only when the container is
/// restarted for it.
fn resource_changes(e: &mut FieldErrors, before: &Value, after: &Value, path: &str) {
    for part in ["limits", "requests"] {
        let empty = serde_json::Map::new();
        let old_map = obj(before.pointer(&format!("/resources/{part}"))).unwrap_or(&empty);
        let new_map = obj(after.pointer(&format!("/resources/{part}"))).unwrap_or(&empty);
        let names = old_map.keys().chain(new_map.keys());
        for name in names {
            if MUTABLE.contains(&name.as_str()) {
                continue;
            }
            if quantity(before, part, name) != quantity(after, part, name) {
                e.forbidden(
                    &format!("{path}.resources.{part}[{name}]"),
                    "only cpu and memory resources are mutable",
                );
            }
        }
    }
    if let (Some(was), Some(now)) = (
        quantity(before, "limits", "memory"),
        quantity(after, "limits", "memory"),
    ) {
        if now < was && policy_of(after, "memory") != "RestartContainer" {
            e.forbidden(
                &format!("{path}.resources.limits[memory]"),
                "memory limits cannot be decreased unless resizePolicy is RestartContainer",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(resources: Value, policy: Value) -> Value {
        let mut p = json!({
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "x", "resources": resources,
                "resizePolicy": policy, "env": [{"name": "A", "value": "1"}]}]},
            "status": {"qosClass": apimachinery::qos::of_spec(&json!({"containers": [{"resources": resources}]})).as_str()}
        });
        super::super::RESOURCE.apply_defaults(&mut p);
        p
    }

    fn errors(old: &Value, new: &Value) -> Vec<String> {
        let mut e = FieldErrors::default();
        validate(&mut e, old, new);
        e.finish()
            .err()
            .unwrap_or_default()
            .iter()
            .map(|f| f.message.clone())
            .collect()
    }

    #[test]
    fn prepare_keeps_only_resources_and_policy() {
        let old = pod(
            json!({"limits": {"cpu": "1", "memory": "64Mi"}}),
            json!(null),
        );
        let mut new = old.clone();
        new["spec"]["containers"][0]["resources"] =
            json!({"limits": {"cpu": "2", "memory": "64Mi"}});
        new["spec"]["containers"][0]["image"] = json!("other");
        new["spec"]["containers"][0]["resizePolicy"] =
            json!([{"resourceName": "cpu", "restartPolicy": "RestartContainer"}]);
        new["metadata"]["labels"] = json!({"a": "b"});
        prepare(&old, &mut new);
        assert_eq!(new["spec"]["containers"][0]["image"], "x");
        assert_eq!(new["metadata"].get("labels"), None);
        assert_eq!(
            new["spec"]["containers"][0]["resources"]["limits"]["cpu"],
            "2"
        );
        assert_eq!(
            new["spec"]["containers"][0]["resizePolicy"][0]["restartPolicy"],
            "RestartContainer"
        );
    }

    #[test]
    fn cpu_and_memory_change_qos_stays() {
        let old = pod(
            json!({"limits": {"cpu": "1", "memory": "64Mi"}}),
            json!(null),
        );
        let up = pod(
            json!({"limits": {"cpu": "2", "memory": "128Mi"}}),
            json!(null),
        );
        assert_eq!(errors(&old, &up), Vec::<String>::new());
        let burstable = pod(
            json!({"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "2", "memory": "64Mi"}}),
            json!(null),
        );
        assert_eq!(
            errors(&old, &burstable),
            ["spec: Forbidden: Pod QOS Class may not change as a result of resizing"]
        );
    }

    #[test]
    fn memory_limit_shrinks_only_with_restart() {
        let old = pod(
            json!({"limits": {"cpu": "1", "memory": "128Mi"}}),
            json!(null),
        );
        let down = pod(
            json!({"limits": {"cpu": "1", "memory": "64Mi"}}),
            json!(null),
        );
        assert_eq!(
            errors(&old, &down),
            ["spec.containers[0].resources.limits[memory]: Forbidden: memory limits cannot be decreased unless resizePolicy is RestartContainer"]
        );
        let restart = pod(
            json!({"limits": {"cpu": "1", "memory": "64Mi"}}),
            json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"}]),
        );
        assert!(errors(&old, &restart).is_empty());
    }

    #[test]
    fn other_resources_and_static_pods_refused() {
        let old = pod(
            json!({"limits": {"cpu": "1", "memory": "64Mi", "ephemeral-storage": "1Gi"}}),
            json!(null),
        );
        let new = pod(
            json!({"limits": {"cpu": "1", "memory": "64Mi", "ephemeral-storage": "2Gi"}}),
            json!([{"resourceName": "disk", "restartPolicy": "Sometimes"}]),
        );
        let errs = errors(&old, &new);
        assert!(
            errs.iter()
                .any(|e| e.contains("limits[ephemeral-storage]: Forbidden: only cpu and memory")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("resizePolicy[0].resourceName: Unsupported value")),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.contains("resizePolicy[0].restartPolicy: Unsupported value")),
            "{errs:?}"
        );
        let mut mirror = old.clone();
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "h"});
        assert_eq!(
            errors(&mirror, &new),
            ["Forbidden: static pods cannot be resized"]
        );
    }
}
