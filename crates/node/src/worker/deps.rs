//! What the pod workers share, built once by the agent. Only the worker's own files take
//! it; every other part of the agent is handed the two or three things it needs.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use k8s_openapi::api::core::v1::Pod;
use runtime::{ImageInfo, PodSandboxStatus, RuntimeError, RuntimeService};

use podapi::Clock;
use podapi::PodApi;
use podapi::{EventRecorder, EventType};

use crate::startmetrics::NodeMetrics;
use volumes::VolumeManager;

/// How long one sandbox listing serves every worker (kubelet's PLEG relist period).
pub const RELIST: Duration = Duration::from_secs(1);

/// The node's facts a pod's environment reads (`spec.nodeName`, `status.hostIP`, and what an
/// unset limit means to env resource refs).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeFacts {
    pub name: String,
    pub host_ip: String,
    /// Allocatable cpu cores.
    pub cpu: f64,
    /// Allocatable memory bytes.
    pub memory: f64,
    /// Allocatable ephemeral-storage bytes.
    pub ephemeral_storage: f64,
}

/// The pod workers' shared inputs.
pub struct WorkerDeps {
    pub runtime: Arc<dyn RuntimeService>,
    pub api: Arc<dyn PodApi>,
    pub events: Arc<EventRecorder>,
    pub clock: Arc<dyn Clock>,
    pub node: NodeFacts,
    /// `<state_dir>/logs`: pod log directories live below it.
    pub log_root: PathBuf,
    /// The shared sandbox listing (see `SandboxCache`).
    pub sandboxes: SandboxCache,
    /// Pods' volumes (emptyDir, hostPath, configMap, secret, downwardAPI, projected).
    pub volumes: Arc<VolumeManager>,
    /// kubelet's `syncFrequency`: how often a live pod is re-synced when nothing wakes its
    /// worker (container exits, probe results, pod updates and changes of the objects its
    /// volumes show all do).
    pub sync_frequency: Duration,
    /// Where the phases of pod starts are observed.
    pub metrics: NodeMetrics,
    /// The node's pods as the agent last saw them: what a resize must fit beside.
    pub pods: podapi::PodCache,
    /// The host ID ranges of `hostUsers: false` pods.
    pub userns: Arc<userns::Allocator>,
    /// Where pod cgroups go (`kubepods/<tier>/pod<uid>`); `None` lets the runtime choose.
    pub pod_cgroups: Option<podcgroups::Layout>,
    /// The node's image puller and its registry credentials.
    pub pulls: Arc<ImagePulls>,
}

/// The puller every pod worker shares (one download per image) and the node-wide
/// credentials it adds to each pod's pull Secrets.
pub struct ImagePulls {
    pub puller: imagepull::ImagePuller<ImageInfo, RuntimeError>,
    pub node_credentials: imagepull::NodeCredentials,
}

impl ImagePulls {
    pub fn new(
        runtime: Arc<dyn RuntimeService>,
        config: imagepull::PullerConfig,
        node_credentials: imagepull::NodeCredentials,
    ) -> Self {
        let pull: imagepull::PullFn<ImageInfo, RuntimeError> = Arc::new(move |image, auth| {
            let runtime = runtime.clone();
            async move { runtime.pull_image(&image, auth.as_ref()).await }.boxed()
        });
        Self {
            puller: imagepull::ImagePuller::new(config, pull),
            node_credentials,
        }
    }
}

impl WorkerDeps {
    /// The pod's user namespace mapping when it asks for one (`hostUsers: false`): the
    /// range it holds, or a new one (kubelet's `GetOrCreateUserNamespaceMappings`).
    pub fn user_namespace(
        &self,
        pod: &Pod,
    ) -> Result<Option<runtime::IdMapping>, userns::UsernsError> {
        if pod.spec.as_ref().and_then(|s| s.host_users) != Some(false) {
            return Ok(None);
        }
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        self.userns.get_or_allocate(uid).map(Some)
    }

    /// Records an event about the pod (or one of its containers) at the clock's time, in the
    /// background: a container's start does not wait for the API's answer. It is sent after
    /// every event `pending` holds, so a pod's events keep their order; `pending.flush()`
    /// waits until they are all sent.
    pub fn event_soon(
        &self,
        pending: &mut PendingEvents,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        let events = self.events.clone();
        let pod = pod.clone();
        let container = container.map(str::to_string);
        let (reason, message) = (reason.to_string(), message.to_string());
        let now = self.clock.now();
        let before = pending.last.take();
        pending.last = Some(tokio::spawn(async move {
            if let Some(before) = before {
                // A panicked send lost its event; the later ones still go.
                let _ = before.await;
            }
            events
                .record(&pod, container.as_deref(), kind, &reason, &message, now)
                .await;
        }));
    }

    /// Records an event about the pod (or one of its containers) at the clock's time.
    pub async fn event(
        &self,
        pod: &Pod,
        container: Option<&str>,
        kind: EventType,
        reason: &str,
        message: &str,
    ) {
        self.events
            .record(pod, container, kind, reason, message, self.clock.now())
            .await;
    }
}

/// The events a worker queued with `WorkerDeps::event_soon` and not yet waited for: the
/// newest one's task, which waits for the one before it.
#[derive(Debug, Default)]
pub struct PendingEvents {
    last: Option<tokio::task::JoinHandle<()>>,
}

impl PendingEvents {
    /// Waits until every queued event is sent (or failed, which is logged): the worker calls
    /// it before it writes the pod's status, so whoever sees the status also finds the
    /// events that led to it.
    pub async fn flush(&mut self) {
        if let Some(last) = self.last.take() {
            if let Err(err) = last.await {
                tracing::warn!(error = %err, "sending pod events failed");
            }
        }
    }
}

/// kubelet's PLEG relists the runtime once per period for all pods; likewise workers share
/// one sandbox listing per `RELIST` instead of each listing every sandbox on every sync
/// (which costs O(pods²) record reads a second). Sandbox changes made by this agent
/// invalidate it at once.
#[derive(Default)]
pub struct SandboxCache {
    slot: std::sync::Mutex<Option<(Instant, Arc<Vec<PodSandboxStatus>>)>>,
    generation: std::sync::atomic::AtomicU64,
}

impl SandboxCache {
    pub async fn list(
        &self,
        runtime: &dyn RuntimeService,
    ) -> Result<Arc<Vec<PodSandboxStatus>>, RuntimeError> {
        use std::sync::atomic::Ordering;
        if let Some((at, list)) = &*self.slot.lock().unwrap_or_else(|e| e.into_inner()) {
            if at.elapsed() < RELIST {
                return Ok(list.clone());
            }
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let list = Arc::new(runtime.list_pod_sandboxes().await?);
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        // A change made while we listed makes this listing stale: don't keep it.
        if self.generation.load(Ordering::SeqCst) == generation {
            *slot = Some((Instant::now(), list.clone()));
        }
        Ok(list)
    }

    /// Forgets the listing (a sandbox was created, stopped or removed).
    pub fn invalidate(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}
