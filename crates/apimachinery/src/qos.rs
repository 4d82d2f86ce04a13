//! The pod QoS class (`status.qosClass`), computed once for the API server and the node.
//!
//! This follows kubelet v1.33's `GetPodQOS`/`ComputePodQOS`: only cpu and memory count;
//! requests and limits of the regular and init containers (ephemeral containers cannot set
//! resources) are summed per resource, zero amounts ignored; the pod is Guaranteed when every
//! container limits both cpu and memory and the summed requests equal the summed limits,
//! BestEffort when nothing is requested or limited, else Burstable. Quantities are compared as
//! amounts, so `1` and `1000m` agree. Pod-level resources (`spec.resources`) are an alpha
//! feature, off by default in v1.33, and are not considered.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::PodSpec;
use serde_json::Value;

use crate::quantity::Quantity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The API's spelling (`Guaranteed`, `Burstable`, `BestEffort`).
    pub fn as_str(self) -> &'static str {
        match self {
            QosClass::Guaranteed => "Guaranteed",
            QosClass::Burstable => "Burstable",
            QosClass::BestEffort => "BestEffort",
        }
    }

    fn parse(s: &str) -> Option<QosClass> {
        [
            QosClass::Guaranteed,
            QosClass::Burstable,
            QosClass::BestEffort,
        ]
        .into_iter()
        .find(|c| c.as_str() == s)
    }
}

/// The resources QoS looks at (upstream's `isSupportedQoSComputeResource`).
const COMPUTE: [&str; 2] = ["cpu", "memory"];

/// One container's cpu and memory requests and limits.
#[derive(Debug, Clone, Default)]
pub struct ContainerResources {
    pub requests: BTreeMap<&'static str, Quantity>,
    pub limits: BTreeMap<&'static str, Quantity>,
}

impl ContainerResources {
    /// From (resource name, quantity text) pairs; other resources and unparsable amounts
    /// (which validation rejects) are left out.
    pub fn new<'a>(
        requests: impl IntoIterator<Item = (&'a str, &'a str)>,
        limits: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        fn compute(
            list: impl IntoIterator<Item = (&'static str, Quantity)>,
        ) -> BTreeMap<&'static str, Quantity> {
            list.into_iter().collect()
        }
        let parse = |(name, text): (&str, &str)| {
            let name = COMPUTE.into_iter().find(|c| *c == name)?;
            Quantity::parse(text).map(|q| (name, q))
        };
        ContainerResources {
            requests: compute(requests.into_iter().filter_map(parse)),
            limits: compute(limits.into_iter().filter_map(parse)),
        }
    }
}

/// `ComputePodQOS` over the pod's regular and init containers.
///
/// A request missing beside a limit counts as equal to the limit, which is what defaulting
/// (`SetDefaults_Pod`) stores, so the answer is the same before and after defaulting.
pub fn compute(containers: impl IntoIterator<Item = ContainerResources>) -> QosClass {
    let mut requests: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut limits: BTreeMap<&str, Quantity> = BTreeMap::new();
    let mut guaranteed = true;
    let add = |sum: &mut BTreeMap<&'static str, Quantity>, name: &'static str, q: Quantity| {
        let total = sum.entry(name).or_default();
        *total = total.saturating_add(q);
    };
    for c in containers {
        let defaulted = c
            .limits
            .iter()
            .filter(|(name, _)| !c.requests.contains_key(*name));
        for (name, q) in c.requests.iter().chain(defaulted) {
            if q.is_positive() {
                add(&mut requests, name, *q);
            }
        }
        let mut limited = BTreeSet::new();
        for (name, q) in &c.limits {
            if q.is_positive() {
                limited.insert(*name);
                add(&mut limits, name, *q);
            }
        }
        if !COMPUTE.iter().all(|r| limited.contains(r)) {
            guaranteed = false;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return QosClass::BestEffort;
    }
    let equal = requests.len() == limits.len()
        && requests
            .iter()
            .all(|(name, req)| limits.get(name) == Some(req));
    if guaranteed && equal {
        QosClass::Guaranteed
    } else {
        QosClass::Burstable
    }
}

/// The class of a pod spec in JSON form (`cpu: 1` may be a number there).
pub fn of_spec(spec: &Value) -> QosClass {
    fn pairs(list: Option<&Value>) -> Vec<(&str, String)> {
        list.and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter_map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return None,
                };
                Some((k.as_str(), text))
            })
            .collect()
    }
    let containers = ["containers", "initContainers"]
        .into_iter()
        .flat_map(|key| crate::json::arr(spec.get(key)))
        .map(|c| {
            let requests = pairs(c.pointer("/resources/requests"));
            let limits = pairs(c.pointer("/resources/limits"));
            ContainerResources::new(
                requests.iter().map(|(k, v)| (*k, v.as_str())),
                limits.iter().map(|(k, v)| (*k, v.as_str())),
            )
        });
    compute(containers)
}

/// The class of a typed pod spec.
pub fn of_typed_spec(spec: &PodSpec) -> QosClass {
    type List = BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>;
    fn pairs(list: Option<&List>) -> impl Iterator<Item = (&str, &str)> {
        list.into_iter()
            .flatten()
            .map(|(k, q)| (k.as_str(), q.0.as_str()))
    }
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| {
            let res = c.resources.as_ref();
            ContainerResources::new(
                pairs(res.and_then(|r| r.requests.as_ref())),
                pairs(res.and_then(|r| r.limits.as_ref())),
            )
        });
    compute(containers)
}

/// `GetPodQOS`: the class the pod's status records, else the one its spec yields.
pub fn of_pod(pod: &Value) -> QosClass {
    pod.pointer("/status/qosClass")
        .and_then(Value::as_str)
        .and_then(QosClass::parse)
        .unwrap_or_else(|| of_spec(pod.get("spec").unwrap_or(&Value::Null)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(resources: &[Value]) -> Value {
        let containers: Vec<Value> = resources
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"name": format!("c{i}"), "image": "x", "resources": r}))
            .collect();
        json!({ "containers": containers })
    }

    fn class(resources: &[Value]) -> &'static str {
        let s = spec(resources);
        let typed: PodSpec = serde_json::from_value(s.clone()).expect("typed spec");
        let from_json = of_spec(&s);
        assert_eq!(from_json, of_typed_spec(&typed), "{s}");
        from_json.as_str()
    }

    #[test]
    fn best_effort() {
        assert_eq!(class(&[json!({})]), "BestEffort");
        assert_eq!(class(&[json!({}), json!({})]), "BestEffort");
        assert_eq!(of_spec(&json!({})), QosClass::BestEffort);
        // Zero amounts and other resources do not count.
        assert_eq!(
            class(&[json!({"limits": {"cpu": "0", "memory": "0"}})]),
            "BestEffort"
        );
        assert_eq!(
            class(&[json!({"limits": {"ephemeral-storage": "1Gi"}})]),
            "BestEffort"
        );
    }

    #[test]
    fn guaranteed() {
        assert_eq!(
            class(&[json!({"limits": {"cpu": "1", "memory": "64Mi"}})]),
            "Guaranteed"
        );
        // Quantities compare as amounts: "1" and "1000m", "64Mi" and its bytes agree.
        assert_eq!(
            class(&[json!({
                "limits": {"cpu": "1", "memory": "64Mi"},
                "requests": {"cpu": "1000m", "memory": "67108864"}
            })]),
            "Guaranteed"
        );
        assert_eq!(
            class(&[
                json!({"limits": {"cpu": "500m", "memory": "1Gi"}}),
                json!({"limits": {"cpu": "2", "memory": "1G"}, "requests": {"cpu": "2000m"}}),
            ]),
            "Guaranteed"
        );
        assert_eq!(
            of_spec(
                &json!({"containers": [{"resources": {"limits": {"cpu": 1, "memory": "1Gi"}, "requests": {"cpu": "1000m"}}}]})
            ),
            QosClass::Guaranteed
        );
    }

    #[test]
    fn burstable() {
        assert_eq!(class(&[json!({"requests": {"cpu": "100m"}})]), "Burstable");
        assert_eq!(
            class(&[
                json!({"limits": {"cpu": "1", "memory": "64Mi"}, "requests": {"cpu": "500m"}})
            ]),
            "Burstable"
        );
        assert_eq!(class(&[json!({"limits": {"cpu": "1"}})]), "Burstable");
        // One container without limits spoils Guaranteed for the pod.
        assert_eq!(
            class(&[json!({"limits": {"cpu": "1", "memory": "1Gi"}}), json!({})]),
            "Burstable"
        );
        // An explicit zero request beside a limit is not defaulted to the limit.
        assert_eq!(
            class(&[json!({"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "0"}})]),
            "Burstable"
        );
    }

    #[test]
    fn init_containers_count() {
        let mut s = spec(&[json!({"limits": {"cpu": "1", "memory": "1Gi"}})]);
        s["initContainers"] = json!([{"name": "i", "image": "x"}]);
        assert_eq!(of_spec(&s), QosClass::Burstable);
        s["initContainers"][0]["resources"] = json!({"limits": {"cpu": "1", "memory": "1Gi"}});
        assert_eq!(of_spec(&s), QosClass::Guaranteed);
        let mut only_init = json!({"containers": [{"name": "a"}]});
        only_init["initContainers"] =
            json!([{"name": "i", "resources": {"requests": {"memory": "1Mi"}}}]);
        assert_eq!(of_spec(&only_init), QosClass::Burstable);
        // Ephemeral containers are not considered.
        let mut eph = spec(&[json!({"limits": {"cpu": "1", "memory": "1Gi"}})]);
        eph["ephemeralContainers"] = json!([{"name": "d", "image": "x"}]);
        assert_eq!(of_spec(&eph), QosClass::Guaranteed);
    }

    #[test]
    fn status_wins_in_get_pod_qos() {
        let pod = json!({"spec": spec(&[json!({})]), "status": {"qosClass": "Burstable"}});
        assert_eq!(of_pod(&pod), QosClass::Burstable);
        let pod = json!({"spec": spec(&[json!({})]), "status": {}});
        assert_eq!(of_pod(&pod), QosClass::BestEffort);
    }
}
