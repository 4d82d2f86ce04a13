//! Pod QoS class (`status.qosClass`) for the node: the one computation in `api`
//! (kubelet's `GetPodQOS`), so the node and the API server always agree.

use k8s_openapi::api::core::v1::PodSpec;

/// Quantities (`500m`, `1.5Gi`, `2e3`) as numbers: one parser for the API server and agent.
pub use api::quantity::parse_quantity;

/// `Guaranteed`, `Burstable` or `BestEffort`.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    api::qos::of_typed_spec(spec).as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: serde_json::Value) -> PodSpec {
        serde_json::from_value(serde_json::json!({
            "containers": [{"name": "a", "image": "x", "resources": resources}]
        }))
        .expect("spec")
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1Ki"), Some(1024.0));
        assert_eq!(parse_quantity("2e3"), Some(2000.0));
        assert_eq!(parse_quantity("1.5"), Some(1.5));
        assert_eq!(parse_quantity("bogus"), None);
        assert_eq!(parse_quantity("1Zi"), None);
    }

    #[test]
    fn classes() {
        assert_eq!(qos_class(&spec(serde_json::json!({}))), "BestEffort");
        assert_eq!(
            qos_class(&spec(serde_json::json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(
                serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(serde_json::json!({
                "limits": {"cpu": "1", "memory": "64Mi"},
                "requests": {"cpu": "1000m", "memory": "67108864"}
            }))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&spec(serde_json::json!({
                "limits": {"cpu": "1", "memory": "64Mi"},
                "requests": {"cpu": "500m"}
            }))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&spec(serde_json::json!({"limits": {"cpu": "1"}}))),
            "Burstable"
        );
    }
}
