//! The node's metrics on where a pod's start goes: kubelet's pod start and pod worker
//! histograms under their kubelet names, and `peapod_pod_start_phase_duration_seconds` by
//! phase for the steps kubelet does not break out. The runtime observes its own phases
//! (`sandbox`, `network`, `create`, `rootfs`, `spawn`) into the same family; the agent
//! observes the rest and serves the registry on the node API's `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Family, Registry, DURATION_BUCKETS};

/// The phase family's name.
pub const PHASES: &str = "peapod_pod_start_phase_duration_seconds";

/// The node's histograms and the registry that serves them.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    pub registry: Arc<Registry>,
    /// `peapod_pod_start_phase_duration_seconds{phase}`: one step of a pod's start.
    pub phases: Arc<Family>,
    /// `kubelet_pod_start_duration_seconds`: from the agent seeing a pod for the first time
    /// to its status showing it Running.
    pub pod_start: Arc<Family>,
    /// `kubelet_pod_worker_start_duration_seconds`: from seeing a pod to its worker's first
    /// sync.
    pub worker_start: Arc<Family>,
    /// `kubelet_pod_worker_duration_seconds{operation_type}`: one sync of a pod (`create`
    /// for its first, `kill` while it is deleted, `sync` otherwise).
    pub worker: Arc<Family>,
}

impl Default for NodeMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeMetrics {
    pub fn new() -> Self {
        let registry = Arc::new(Registry::default());
        let pod_start = registry.register(Family::new(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from the node agent seeing a pod for the first time to the pod starting to run.",
            DURATION_BUCKETS,
        ));
        let worker_start = registry.register(Family::new(
            "kubelet_pod_worker_start_duration_seconds",
            "Duration in seconds from the node agent seeing a pod to starting its worker.",
            DURATION_BUCKETS,
        ));
        let worker = registry.register(Family::labelled(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod, by operation type: create, sync or kill.",
            "operation_type",
            DURATION_BUCKETS,
        ));
        let phases = registry.register(Family::labelled(
            PHASES,
            "Duration in seconds of one phase of a pod's start on the node: admission, observe, volumes, sandbox, network, and per container image, spec, create, rootfs, spawn, plus event and status_patch API round trips.",
            "phase",
            DURATION_BUCKETS,
        ));
        Self {
            registry,
            phases,
            pod_start,
            worker_start,
            worker,
        }
    }

    pub fn phase(&self, phase: &str, took: Duration) {
        self.phases.observe_with(phase, took);
    }
}
