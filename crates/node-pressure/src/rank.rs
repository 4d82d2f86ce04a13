//! The order pods are evicted in under pressure, and the message an evicted pod carries
//! (kubelet's `rankMemoryPressure` / `rankDiskPressureFunc` and `evictionMessage`).

use apimachinery::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, Pod};

use crate::threshold::{format_binary, Observation, Resource, Threshold};

/// A pod up for eviction: its priority and its usage and request of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub uid: String,
    pub priority: i32,
    pub usage: u64,
    pub request: u64,
}

impl Candidate {
    fn exceeds(&self) -> bool {
        self.usage > self.request
    }

    fn above_request(&self) -> i128 {
        i128::from(self.usage) - i128::from(self.request)
    }
}

/// Sorts `pods` into eviction order: pods using more than they request first, then lower
/// priority first, then larger usage above the request first.
pub fn rank(pods: &mut [Candidate]) {
    pods.sort_by(|a, b| {
        b.exceeds()
            .cmp(&a.exceeds())
            .then(a.priority.cmp(&b.priority))
            .then(b.above_request().cmp(&a.above_request()))
    });
}

fn container_request(c: &Container, resource: Resource) -> (u64, &str) {
    let Some(q) = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get(resource.name()))
    else {
        return (0, "0");
    };
    let amount = Quantity::parse(&q.0)
        .map(|q| u64::try_from(q.value()).unwrap_or(0))
        .unwrap_or(0);
    (amount, q.0.as_str())
}

/// The pod's request of `resource` as the kubelet sums it: its containers' requests, or the
/// largest init container's when that is more.
pub fn pod_request(pod: &Pod, resource: Resource) -> u64 {
    let Some(spec) = &pod.spec else { return 0 };
    let sum: u64 = spec
        .containers
        .iter()
        .map(|c| container_request(c, resource).0)
        .fold(0, u64::saturating_add);
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| container_request(c, resource).0)
        .max()
        .unwrap_or(0);
    sum.max(init)
}

/// One container's measured usage of the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUsage {
    pub name: String,
    pub usage: u64,
}

/// The message of a pod evicted for `resource`: the node's shortage, the threshold met and
/// what was available, and every container using more than it requests.
pub fn eviction_message(
    resource: Resource,
    met: Option<(&Threshold, Observation)>,
    pod: &Pod,
    containers: &[ContainerUsage],
) -> String {
    let mut message = format!("The node was low on resource: {}. ", resource.name());
    if let Some((threshold, observed)) = met {
        message += &format!(
            "Threshold quantity: {}, available: {}. ",
            threshold.text(observed.capacity),
            resource.format(observed.available)
        );
    }
    let spec_containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[]);
    for used in containers {
        let Some(c) = spec_containers.iter().find(|c| c.name == used.name) else {
            continue;
        };
        let (request, request_text) = container_request(c, resource);
        if used.usage > request {
            message += &format!(
                "Container {} was using {}, request is {}, has larger consumption of {}. ",
                c.name,
                format_binary(used.usage),
                request_text,
                resource.name()
            );
        }
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::threshold::default_hard;

    fn candidate(uid: &str, priority: i32, usage: u64, request: u64) -> Candidate {
        Candidate {
            uid: uid.into(),
            priority,
            usage,
            request,
        }
    }

    fn order(mut pods: Vec<Candidate>) -> Vec<String> {
        rank(&mut pods);
        pods.into_iter().map(|c| c.uid).collect()
    }

    #[test]
    fn over_request_first_then_priority_then_excess() {
        assert_eq!(
            order(vec![
                candidate("within", 0, 10, 100),
                candidate("besteffort", 0, 10, 0),
            ]),
            ["besteffort", "within"]
        );
        assert_eq!(
            order(vec![
                candidate("high", 1000, 50, 0),
                candidate("low", 0, 10, 0),
                candidate("low-big", 0, 30, 0),
            ]),
            ["low-big", "low", "high"]
        );
        assert_eq!(
            order(vec![
                candidate("within-low", -5, 1, 100),
                candidate("over-high", 100, 200, 100),
            ]),
            ["over-high", "within-low"]
        );
    }

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({"metadata": {"name": "p"}, "spec": spec}))
            .expect("pod")
    }

    #[test]
    fn requests_sum_containers_or_the_largest_init() {
        let p = pod(serde_json::json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"memory": "64Mi"}}},
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"memory": "1Gi"}}}],
        }));
        assert_eq!(pod_request(&p, Resource::Memory), 1 << 30);
        assert_eq!(pod_request(&p, Resource::EphemeralStorage), 0);
    }

    #[test]
    fn message_names_threshold_and_offending_containers() {
        let p = pod(serde_json::json!({"containers": [
            {"name": "main"},
            {"name": "side", "resources": {"requests": {"memory": "64Mi"}}},
        ]}));
        let used = [
            ContainerUsage {
                name: "main".into(),
                usage: 20 << 20,
            },
            ContainerUsage {
                name: "side".into(),
                usage: 1 << 20,
            },
        ];
        let threshold = &default_hard()[0];
        let observed = Observation {
            available: 12 << 10,
            capacity: 1 << 30,
        };
        assert_eq!(
            eviction_message(Resource::Memory, Some((threshold, observed)), &p, &used),
            "The node was low on resource: memory. Threshold quantity: 100Mi, available: 12Ki. \
             Container main was using 20Mi, request is 0, has larger consumption of memory. "
        );
    }
}
