//! Defaulting by kind name, for callers that hold a kind rather than its resource entry
//! (static pod manifests). Each kind's defaults live in its strategy under `kinds/`.

use serde_json::Value;

/// Fills defaults in place for an object of `kind` (e.g. `"Pod"`), as kube-apiserver's
/// `SetDefaults_*` do. A kind that is not served has no defaults, as upstream has no
/// defaulting function for it; [`crate::validation::validate_create`] rejects it.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    if let Some(info) = crate::resources::lookup_any_kind(kind) {
        info.apply_defaults(obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn by_kind_name() {
        let mut p = json!({"spec": {"containers": [{"name": "a", "image": "nginx"}]}});
        apply_defaults("Pod", &mut p);
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        let mut w = json!({"spec": {}});
        apply_defaults("Widget", &mut w);
        assert_eq!(w, json!({"spec": {}}));
    }
}
