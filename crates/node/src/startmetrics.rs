//! The node's metrics on where a pod's start goes: kubelet's pod start and pod worker
//! histograms under their kubelet names, and `peapod_pod_start_phase_duration_seconds` by
//! phase for the steps kubelet does not break out; and kubelet's probe results counter. The
//! runtime observes its own phases (`sandbox`, `network`, `create`, `rootfs`, `spawn`) into
//! the same family; the agent observes the rest and serves the registry on the node API's
//! `/metrics`.

use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Family, Registry, DURATION_BUCKETS};

/// The phase family's name.
pub const PHASES: &str = "peapod_pod_start_phase_duration_seconds";
/// The stop phase family's name.
pub const STOP_PHASES: &str = "peapod_pod_stop_phase_duration_seconds";

/// The node's histograms and the registry that serves them.
#[derive(Debug, Clone)]
pub struct NodeMetrics {
    pub registry: Arc<Registry>,
    /// `peapod_pod_start_phase_duration_seconds{phase}`: one step of a pod's start.
    pub phases: Arc<Family>,
    /// `peapod_pod_stop_phase_duration_seconds{phase}`: one step of a deleted pod's end.
    pub stop_phases: Arc<Family>,
    /// `kubelet_pod_start_duration_seconds`: from the agent seeing a pod for the first time
    /// to its status showing it Running.
    pub pod_start: Arc<Family>,
    /// `kubelet_pod_start_sli_duration_seconds`: from the pod's creation to its status showing
    /// it Running, less the time spent getting its images (kubelet's pod startup SLI).
    pub pod_start_sli: Arc<Family>,
    /// `kubelet_pod_worker_start_duration_seconds`: from seeing a pod to its worker's first
    /// sync.
    pub worker_start: Arc<Family>,
    /// `kubelet_pod_worker_duration_seconds{operation_type}`: one sync of a pod (`create`
    /// for its first, `kill` while it is deleted, `sync` otherwise).
    pub worker: Arc<Family>,
    /// `prober_probe_total{probe_type,result,container,pod,namespace,pod_uid}`: every probe
    /// run and its result, the series of a pod dropped with the pod.
    pub probes: Arc<Counter>,
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
        let pod_start_sli = registry.register(Family::new(
            "kubelet_pod_start_sli_duration_seconds",
            "Duration in seconds to start a pod, excluding time to pull images, measured from the pod's creation timestamp to when its status first shows it running.",
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
        let stop_phases = registry.register(Family::labelled(
            STOP_PHASES,
            "Duration in seconds of one phase of a deleted pod's end on the node: not_ready_status, kill, terminated_status, sandbox_remove (the runtime's network_del, shim_stop, cgroups and files within it), volumes and the final delete.",
            "phase",
            DURATION_BUCKETS,
        ));
        let probes = registry.register_counter(Counter::new(
            "prober_probe_total",
            "[ALPHA] Cumulative number of a liveness, readiness or startup probe for a container by result.",
            probes::PROBE_RESULT_LABELS,
        ));
        Self {
            registry,
            probes,
            phases,
            stop_phases,
            pod_start,
            pod_start_sli,
            worker_start,
            worker,
        }
    }

    pub fn phase(&self, phase: &str, took: Duration) {
        self.phases.observe_with(phase, took);
    }

    pub fn stop_phase(&self, phase: &str, took: Duration) {
        self.stop_phases.observe_with(phase, took);
    }
}
