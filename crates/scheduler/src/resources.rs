//! kube-scheduler's NodeResourcesFit filter and its LeastAllocated and BalancedAllocation
//! scores: what a pod requests (containers summed, init containers as their peak, sidecars
//! running beside them, plus the pod overhead), what a node has left of its allocatable
//! once the requests of the pods bound there are taken off, and how full a node would be.

use std::collections::BTreeMap;

use apimachinery::quantity::Quantity as Exact;
use k8s_openapi::api::core::v1::{Container, Node, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::misfit::Misfit;

const CPU: &str = "cpu";
const MEMORY: &str = "memory";
const EPHEMERAL: &str = "ephemeral-storage";
const PODS: &str = "pods";
/// What scoring assumes a container without a cpu request uses (upstream
/// `DefaultMilliCPURequest`), so pods without requests still spread.
const DEFAULT_MILLI_CPU: i128 = 100;
/// Likewise for memory (upstream `DefaultMemoryRequest`, 200 MiB).
const DEFAULT_MEMORY: i128 = 200 * 1024 * 1024;
/// The best node score of one plugin (upstream `MaxNodeScore`).
pub const MAX_SCORE: i64 = 100;

/// Amounts of resources: cpu in millicores, the rest in whole units (bytes, counts).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i128,
    pub memory: i128,
    pub ephemeral: i128,
    /// Extended resources (`example.com/gpu`) and huge pages, by name.
    pub scalar: BTreeMap<String, i128>,
}

impl Resources {
    /// Reads a resource list (`requests`, `allocatable`, `overhead`); names the scheduler
    /// does not count (`pods`, `storage`) are left out.
    pub fn from_list(list: Option<&BTreeMap<String, Quantity>>) -> Resources {
        let mut r = Resources::default();
        for (name, q) in list.into_iter().flatten() {
            let Some(q) = Exact::parse(&q.0) else {
                continue;
            };
            match name.as_str() {
                CPU => r.milli_cpu = q.milli_value(),
                MEMORY => r.memory = q.value(),
                EPHEMERAL => r.ephemeral = q.value(),
                other if is_scalar(other) => {
                    r.scalar.insert(other.to_string(), q.value());
                }
                _ => {}
            }
        }
        r
    }

    pub fn add(&mut self, other: &Resources) {
        self.milli_cpu += other.milli_cpu;
        self.memory += other.memory;
        self.ephemeral += other.ephemeral;
        for (name, v) in &other.scalar {
            *self.scalar.entry(name.clone()).or_default() += v;
        }
    }

    /// Each resource raised to `other`'s amount where that is larger.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral = self.ephemeral.max(other.ephemeral);
        for (name, v) in &other.scalar {
            let e = self.scalar.entry(name.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

/// Extended resources (a domain-qualified name outside `kubernetes.io/`) and huge pages.
fn is_scalar(name: &str) -> bool {
    name.starts_with("hugepages-") || (name.contains('/') && !name.starts_with("kubernetes.io/"))
}

/// How requests are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requests {
    /// As written (the fit check).
    Declared,
    /// A container without a cpu or memory request counts the scoring defaults.
    NonZero,
}

fn container_requests(c: &Container, how: Requests) -> Resources {
    let res = c.resources.as_ref();
    let mut requests = res.and_then(|r| r.requests.clone()).unwrap_or_default();
    // Defaulting copies limits into missing requests; do the same for objects that skipped it.
    for (name, q) in res.and_then(|r| r.limits.as_ref()).into_iter().flatten() {
        requests.entry(name.clone()).or_insert_with(|| q.clone());
    }
    let mut r = Resources::from_list(Some(&requests));
    if how == Requests::NonZero {
        if !requests.contains_key(CPU) {
            r.milli_cpu = DEFAULT_MILLI_CPU;
        }
        if !requests.contains_key(MEMORY) {
            r.memory = DEFAULT_MEMORY;
        }
    }
    r
}

/// What the pod requests, as upstream's `PodRequests` computes it: the containers summed
/// with the sidecars (init containers with `restartPolicy: Always`), raised to the peak of
/// any one init container (plus the sidecars started before it), plus `overhead`.
pub fn pod_requests(spec: &PodSpec, how: Requests) -> Resources {
    let mut total = Resources::default();
    for c in &spec.containers {
        total.add(&container_requests(c, how));
    }
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, how);
        let during = if c.restart_policy.as_deref() == Some("Always") {
            total.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut with_sidecars = own;
            with_sidecars.add(&sidecars);
            with_sidecars
        };
        init_peak.max_with(&during);
    }
    total.max_with(&init_peak);
    total.add(&Resources::from_list(spec.overhead.as_ref()));
    total
}

/// The node's allocatable resources and how many pods it may run.
pub fn allocatable(node: &Node) -> (Resources, i128) {
    let list = node.status.as_ref().and_then(|s| s.allocatable.as_ref());
    let pods = list
        .and_then(|l| l.get(PODS))
        .and_then(|q| Exact::parse(&q.0))
        .map_or(0, Exact::value);
    (Resources::from_list(list), pods)
}

/// The NodeResourcesFit filter: every resource the pod requests fits beside `used` (the
/// requests of the `pod_count` pods already on the node). All shortfalls are reported, the
/// pod count first, as upstream does.
pub fn fit(
    request: &Resources,
    node: &Node,
    used: &Resources,
    pod_count: usize,
) -> Result<(), Vec<Misfit>> {
    let (alloc, max_pods) = allocatable(node);
    let mut misfits = Vec::new();
    if i128::try_from(pod_count)
        .unwrap_or(i128::MAX)
        .saturating_add(1)
        > max_pods
    {
        misfits.push(Misfit::TooManyPods);
    }
    if !request.is_zero() {
        let short = |want: i128, have: i128, used: i128| want > 0 && want > have - used;
        if short(request.milli_cpu, alloc.milli_cpu, used.milli_cpu) {
            misfits.push(Misfit::Insufficient(CPU.into()));
        }
        if short(request.memory, alloc.memory, used.memory) {
            misfits.push(Misfit::Insufficient(MEMORY.into()));
        }
        if short(request.ephemeral, alloc.ephemeral, used.ephemeral) {
            misfits.push(Misfit::Insufficient(EPHEMERAL.into()));
        }
        for (name, want) in &request.scalar {
            let have = alloc.scalar.get(name).copied().unwrap_or(0);
            let taken = used.scalar.get(name).copied().unwrap_or(0);
            if short(*want, have, taken) {
                misfits.push(Misfit::Insufficient(name.clone()));
            }
        }
    }
    if misfits.is_empty() {
        Ok(())
    } else {
        Err(misfits)
    }
}

/// (requested, allocatable) of cpu and memory once the pod is added, for the scores.
fn cpu_memory(request: &Resources, node: &Node, used: &Resources) -> [(i128, i128); 2] {
    let (alloc, _) = allocatable(node);
    [
        (used.milli_cpu + request.milli_cpu, alloc.milli_cpu),
        (used.memory + request.memory, alloc.memory),
    ]
}

/// LeastAllocated (NodeResourcesFit's default score): the share of cpu and memory left
/// free once the pod is placed, averaged, 0–100. `request` and `used` are non-zero requests.
pub fn least_allocated(request: &Resources, node: &Node, used: &Resources) -> i64 {
    let scores = cpu_memory(request, node, used).map(|(requested, capacity)| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * i128::from(MAX_SCORE) / capacity
        }
    });
    i64::try_from(scores.iter().sum::<i128>() / 2).unwrap_or(0)
}

/// NodeResourcesBalancedAllocation: nodes whose cpu and memory would be equally full score
/// best (100 minus the standard deviation of the two fractions, in percent).
pub fn balanced_allocation(request: &Resources, node: &Node, used: &Resources) -> i64 {
    let fractions: Vec<f64> = cpu_memory(request, node, used)
        .iter()
        .filter(|(_, capacity)| *capacity > 0)
        .map(|(requested, capacity)| (*requested as f64 / *capacity as f64).min(1.0))
        .collect();
    let std_dev = match fractions.as_slice() {
        [a, b] => (a - b).abs() / 2.0,
        _ => 0.0,
    };
    ((1.0 - std_dev) * MAX_SCORE as f64) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn spec(v: Value) -> PodSpec {
        serde_json::from_value(v).expect("pod spec")
    }

    fn node(alloc: Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "n"}, "status": {"allocatable": alloc}}))
            .expect("node")
    }

    fn req(cpu: i128, memory: i128) -> Resources {
        Resources {
            milli_cpu: cpu,
            memory,
            ..Default::default()
        }
    }

    #[test]
    fn pod_requests_sum_containers_and_peak_init_containers() {
        let s = spec(json!({
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m", "example.com/gpu": "1"}}}],
            "initContainers": [
                {"name": "big", "resources": {"requests": {"cpu": "1", "ephemeral-storage": "1Gi"}}},
                {"name": "side", "restartPolicy": "Always", "resources": {"requests": {"memory": "100Mi"}}},
                {"name": "late", "resources": {"requests": {"memory": "50Mi"}}}],
            "overhead": {"cpu": "10m"}}));
        let r = pod_requests(&s, Requests::Declared);
        assert_eq!(r.milli_cpu, 1010);
        // Containers 64Mi plus the sidecar's 100Mi beats "late" (50Mi + 100Mi sidecar).
        assert_eq!(r.memory, 164 * 1024 * 1024);
        assert_eq!(r.ephemeral, 1024 * 1024 * 1024);
        assert_eq!(r.scalar.get("example.com/gpu"), Some(&1));

        let bare = spec(json!({"containers": [{"name": "a"}, {"name": "b",
            "resources": {"requests": {"cpu": "1"}}}]}));
        assert!(pod_requests(&bare, Requests::Declared).memory == 0);
        let nonzero = pod_requests(&bare, Requests::NonZero);
        assert_eq!(nonzero.milli_cpu, 1100);
        assert_eq!(nonzero.memory, 2 * DEFAULT_MEMORY);
    }

    #[test]
    fn fit_names_every_short_resource() {
        let n = node(json!({"cpu": "2", "memory": "1Gi", "pods": "3", "example.com/gpu": "1"}));
        let used = req(1500, 512 * 1024 * 1024);
        assert_eq!(fit(&req(500, 0), &n, &used, 2), Ok(()));
        assert_eq!(
            fit(&req(600, 600 * 1024 * 1024), &n, &used, 3),
            Err(vec![
                Misfit::TooManyPods,
                Misfit::Insufficient("cpu".into()),
                Misfit::Insufficient("memory".into())
            ])
        );
        let mut gpus = Resources::default();
        gpus.scalar.insert("example.com/gpu".into(), 2);
        assert_eq!(
            fit(&gpus, &n, &Resources::default(), 0),
            Err(vec![Misfit::Insufficient("example.com/gpu".into())])
        );
        // A pod that requests nothing only needs a pod slot.
        assert_eq!(fit(&Resources::default(), &n, &req(9000, 0), 0), Ok(()));
        assert_eq!(
            fit(
                &Resources::default(),
                &node(json!({})),
                &Resources::default(),
                0
            ),
            Err(vec![Misfit::TooManyPods])
        );
    }

    #[test]
    fn emptier_and_balanced_nodes_score_higher() {
        let n = node(json!({"cpu": "4", "memory": "4Gi", "pods": "110"}));
        let gi = 1024 * 1024 * 1024;
        let pod = req(1000, gi);
        assert_eq!(least_allocated(&pod, &n, &Resources::default()), 75);
        assert_eq!(least_allocated(&pod, &n, &req(2000, 2 * gi)), 25);
        assert_eq!(least_allocated(&pod, &n, &req(4000, 0)), 37);
        assert_eq!(balanced_allocation(&pod, &n, &Resources::default()), 100);
        assert_eq!(balanced_allocation(&pod, &n, &req(2000, 0)), 75);
    }
}
