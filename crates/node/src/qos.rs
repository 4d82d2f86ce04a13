//! Pod QoS class (`status.qosClass`) from container resources, as kubelet's
//! `qos.GetPodQOS` computes it: Guaranteed when every container has cpu and memory limits
//! equal to its requests, BestEffort when no container asks for cpu or memory, else Burstable.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Quantities (`500m`, `1.5Gi`, `2e3`) as numbers: one parser for the API server and agent.
pub use api::validation::parse_quantity;

const COMPUTE: [&str; 2] = ["cpu", "memory"];

fn nonzero(list: Option<&BTreeMap<String, Quantity>>) -> BTreeMap<&'static str, f64> {
    let mut out = BTreeMap::new();
    for name in COMPUTE {
        if let Some(v) = list
            .and_then(|l| l.get(name))
            .and_then(|q| parse_quantity(&q.0))
        {
            if v != 0.0 {
                out.insert(name, v);
            }
        }
    }
    out
}

fn same(a: f64, b: f64) -> bool {
    (a - b).abs() <= a.abs().max(b.abs()) * 1e-12
}

/// `Guaranteed`, `Burstable` or `BestEffort`.
pub fn qos_class(spec: &PodSpec) -> &'static str {
    let containers: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in containers {
        let res = c.resources.as_ref();
        let requests = nonzero(res.and_then(|r| r.requests.as_ref()));
        let limits = nonzero(res.and_then(|r| r.limits.as_ref()));
        if !requests.is_empty() || !limits.is_empty() {
            any = true;
        }
        // Requests default to limits when unset, so only a differing request breaks it.
        let complete = COMPUTE.iter().all(|name| limits.contains_key(name));
        let equal = requests
            .iter()
            .all(|(name, req)| limits.get(name).is_some_and(|lim| same(*req, *lim)));
        if !complete || !equal {
            guaranteed = false;
        }
    }
    if !any {
        "BestEffort"
    } else if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
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
