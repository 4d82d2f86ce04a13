//! kube-apiserver's `DefaultTolerationSeconds` admission plugin: a new pod that does not
//! already tolerate the `node.kubernetes.io/not-ready` and `unreachable` `NoExecute` taints
//! gets tolerations for them lasting 300 s, so the taint eviction controller moves it off a
//! failed node five minutes after the node lifecycle controller taints it.

use serde_json::{json, Value};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// `--default-not-ready-toleration-seconds` and `--default-unreachable-toleration-seconds`.
const DEFAULT_SECONDS: i64 = 300;

/// Whether an existing toleration already covers `key`'s `NoExecute` taint, as upstream
/// checks it: the key or an empty key, and the effect `NoExecute` or empty.
fn covers(toleration: &Value, key: &str) -> bool {
    let field = |name: &str| toleration.get(name).and_then(Value::as_str).unwrap_or("");
    let k = field("key");
    let effect = field("effect");
    (k == key || k.is_empty()) && (effect == "NoExecute" || effect.is_empty())
}

/// Adds the missing tolerations to the pod's spec (a pod without a spec is left alone;
/// validation reports it).
pub fn add_default_tolerations(pod: &mut Value) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let list = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    let Some(list) = list.as_array_mut() else {
        return;
    };
    for key in [NOT_READY, UNREACHABLE] {
        if !list.iter().any(|t| covers(t, key)) {
            list.push(json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_SECONDS,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_without_tolerations_gets_both_for_300_seconds() {
        let mut pod = json!({"spec": {"containers": []}});
        add_default_tolerations(&mut pod);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            ])
        );
    }

    #[test]
    fn existing_tolerations_are_kept_and_not_duplicated() {
        let mine = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5});
        let mut pod = json!({"spec": {"tolerations": [mine.clone()]}});
        add_default_tolerations(&mut pod);
        let list = pod["spec"]["tolerations"].as_array().expect("list").clone();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0], mine);
        assert_eq!(list[1]["key"], NOT_READY);
        // A toleration of every taint (empty key, no effect) covers both.
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        add_default_tolerations(&mut all);
        assert_eq!(all["spec"]["tolerations"].as_array().map(Vec::len), Some(1));
        // A NoSchedule toleration of the same key does not.
        let mut other = json!({"spec": {"tolerations": [{"key": NOT_READY, "operator": "Exists", "effect": "NoSchedule"}]}});
        add_default_tolerations(&mut other);
        assert_eq!(
            other["spec"]["tolerations"].as_array().map(Vec::len),
            Some(3)
        );
    }
}
