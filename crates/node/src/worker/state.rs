//! What a pod's worker remembers between syncs.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Pod, PodStatus};
use runtime::ImageInfo;

use super::deps::PendingEvents;
use crate::backoff::Backoff;
use crate::podstatus::Waiting;
use podresize::ResizeState;
use probes::{KillRequest, ProbeView};

/// Where the worker is in the pod's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// Running containers and reporting status.
    Syncing,
    /// The pod reached Succeeded/Failed: its final status is written, its sandbox removed.
    Finished,
    /// The pod was being deleted: containers killed, final status written, API object deleted.
    Terminated,
}

/// Everything a worker remembers between syncs.
#[derive(Debug)]
pub struct WorkerState {
    pub lifecycle: Lifecycle,
    pub restart_backoff: Backoff,
    pub pull_backoff: Backoff,
    /// The last pull error by image, shown with `ImagePullBackOff` (kubelet v1.33 appends it
    /// to the waiting message); gone after a successful pull.
    pub pull_errors: HashMap<String, String>,
    /// Pending start failures by container name (ErrImagePull, CreateContainerConfigError…).
    pub waiting: HashMap<String, Waiting>,
    /// Containers whose start failed: not started again until their back-off has passed.
    pub failed_starts: HashMap<String, Timestamp>,
    pub image_refs: HashMap<String, String>,
    /// The status last written (or read from the API): writes happen only on change.
    pub last_status: Option<PodStatus>,
    /// Termination ran (containers killed, final status written, sandbox stopped).
    pub killed: bool,
    /// The sandboxes termination stopped, removed once the API object is gone.
    pub stopped_sandboxes: Vec<String>,
    /// The pod's volumes: set up before anything starts, released when the pod is done.
    pub volumes: PodVolumeState,
    /// Startup/readiness results of running containers, refreshed from the prober.
    pub probe_view: ProbeView,
    /// Running containers whose liveness or startup probe failed, by container id.
    pub probe_kills: HashMap<String, KillRequest>,
    /// When the last `BackOff` event of a container in CrashLoopBackOff was recorded; gone
    /// once the container leaves the back-off.
    pub backoff_events: HashMap<String, Timestamp>,
    /// When the agent first saw the pod, while its start is measured: from a pod not yet
    /// running until its status first shows it Running.
    pub starting: Option<Instant>,
    /// Time spent getting images while the start is measured (left out of the start SLI).
    pub image_time: std::time::Duration,
    /// The worker has synced the pod at least once.
    pub synced: bool,
    /// Why the node ended the pod itself (kubelet's `ShouldEvict`: `DeadlineExceeded`), as
    /// the reason and message of its `Failed` status.
    pub failure: Option<(String, String)>,
    /// The `DisruptionTarget` condition the node's own ending of the pod adds (node
    /// shutdown: reason `TerminationByKubelet`), made once so its time stays put.
    pub disruption: Option<k8s_openapi::api::core::v1::PodCondition>,
    /// Where the pod's in-place resize stands (pending, or failed to apply).
    pub resize: ResizeState,
    /// Events of container starts still being sent; flushed before the status is written.
    pub events: PendingEvents,
}

impl WorkerState {
    pub fn new(pod: &Pod) -> Self {
        Self {
            lifecycle: Lifecycle::Syncing,
            restart_backoff: Backoff::default(),
            pull_backoff: Backoff::default(),
            pull_errors: HashMap::new(),
            waiting: HashMap::new(),
            failed_starts: HashMap::new(),
            image_refs: HashMap::new(),
            last_status: pod.status.clone(),
            killed: false,
            stopped_sandboxes: Vec::new(),
            failure: None,
            disruption: None,
            resize: ResizeState::default(),
            events: PendingEvents::default(),
            volumes: Default::default(),
            probe_view: ProbeView::default(),
            probe_kills: HashMap::new(),
            backoff_events: HashMap::new(),
            starting: None,
            image_time: std::time::Duration::ZERO,
            synced: false,
        }
    }

    /// Measures the pod's start from `seen`, unless its status shows it started already
    /// (the agent restarted under a running pod).
    pub fn track_start(&mut self, pod: &Pod, seen: Instant) {
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if matches!(phase, None | Some("Pending" | "")) {
            self.starting = Some(seen);
        }
    }

    /// Remembers how the status shows an image: its repo digest, else its id.
    pub fn remember_image(&mut self, info: &ImageInfo) {
        let shown = info
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| info.id.clone());
        self.image_refs.insert(info.id.clone(), shown);
    }
}

/// A worker's view of its pod's volumes.
#[derive(Debug, Clone, Default)]
pub struct PodVolumeState {
    /// Volume name → host path, once every volume was set up.
    pub paths: Option<BTreeMap<String, PathBuf>>,
    /// When the API-data volumes were last written.
    pub last_sync: Option<Timestamp>,
    /// What of the pod its downward API files showed then (see `volumes::shown_fields`).
    pub shown: Option<String>,
}
