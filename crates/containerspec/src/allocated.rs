//! The resources a running container was given (kubelet's allocated resources, v1.33 in-place
//! resize): recorded on the runtime container as an annotation when it is created and when
//! it is resized, so that a changed spec is noticed as a resize, not a new definition, and
//! an agent restart knows what is in force.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::security::request_limit;

/// The annotation holding the container's allocated cpu and memory (`ResourceRequirements`
/// as JSON).
pub const ANNOTATION_RESOURCES: &str = "io.kubernetes.container.resources";

/// The resources a resize can change.
pub const RESIZABLE: [&str; 2] = ["cpu", "memory"];

/// The container's cpu and memory requests and limits as the spec says them.
pub fn resizable_resources(c: &Container) -> ResourceRequirements {
    let pick = |list: Option<&BTreeMap<String, Quantity>>| {
        let kept: BTreeMap<String, Quantity> = list
            .into_iter()
            .flatten()
            .filter(|(k, _)| RESIZABLE.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!kept.is_empty()).then_some(kept)
    };
    let res = c.resources.as_ref();
    ResourceRequirements {
        requests: pick(res.and_then(|r| r.requests.as_ref())),
        limits: pick(res.and_then(|r| r.limits.as_ref())),
        ..Default::default()
    }
}

/// The annotation's value for `c`.
pub fn resources_annotation(c: &Container) -> String {
    serde_json::to_string(&resizable_resources(c)).unwrap_or_default()
}

/// What a runtime container's annotations record as its allocation; `None` for containers
/// created before it was recorded.
pub fn recorded_resources(annotations: &BTreeMap<String, String>) -> Option<ResourceRequirements> {
    serde_json::from_str(annotations.get(ANNOTATION_RESOURCES)?).ok()
}

/// The resources (`cpu`, `memory`) whose request or limit differs between `allocated` and
/// the container's spec, compared as amounts (`1` and `1000m` are one cpu).
pub fn changed_resources(allocated: &ResourceRequirements, c: &Container) -> Vec<&'static str> {
    let was = Container {
        resources: Some(allocated.clone()),
        ..Default::default()
    };
    RESIZABLE
        .into_iter()
        .filter(|name| request_limit(&was, name) != request_limit(c, name))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(resources: serde_json::Value) -> Container {
        serde_json::from_value(json!({"name": "c", "resources": resources})).expect("container")
    }

    #[test]
    fn records_and_compares_cpu_and_memory() {
        let c = container(
            json!({"requests": {"cpu": "1", "memory": "64Mi", "ephemeral-storage": "1Gi"},
            "limits": {"cpu": "2"}}),
        );
        let mut annotations = BTreeMap::new();
        annotations.insert(ANNOTATION_RESOURCES.to_string(), resources_annotation(&c));
        let recorded = recorded_resources(&annotations).expect("recorded");
        assert_eq!(recorded.requests.as_ref().map(BTreeMap::len), Some(2));
        assert!(changed_resources(&recorded, &c).is_empty());
        let same = container(
            json!({"requests": {"cpu": "1000m", "memory": "65536Ki"}, "limits": {"cpu": "2"}}),
        );
        assert!(changed_resources(&recorded, &same).is_empty());
        let more_cpu =
            container(json!({"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "3"}}));
        assert_eq!(changed_resources(&recorded, &more_cpu), ["cpu"]);
        let more_mem =
            container(json!({"requests": {"cpu": "1", "memory": "128Mi"}, "limits": {"cpu": "2"}}));
        assert_eq!(changed_resources(&recorded, &more_mem), ["memory"]);
        assert_eq!(recorded_resources(&BTreeMap::new()), None);
    }

    #[test]
    fn the_hash_leaves_resources_out() {
        let c = container(json!({"limits": {"cpu": "1"}}));
        let resized = container(json!({"limits": {"cpu": "2"}}));
        assert_eq!(crate::container_hash(&c), crate::container_hash(&resized));
        assert_ne!(
            crate::full_container_hash(&c),
            crate::full_container_hash(&resized)
        );
        let other_image = Container {
            image: Some("other".into()),
            ..c.clone()
        };
        assert_ne!(
            crate::container_hash(&c),
            crate::container_hash(&other_image)
        );
    }
}
