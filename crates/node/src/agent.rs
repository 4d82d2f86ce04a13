//! The agent's main loop: start the node API, register the Node and keep it and its Lease
//! fresh, watch the pods bound to this node, and run one worker task per pod; beside it,
//! the reclaim of this node's local-path volume directories. Sandboxes of
//! pods that no longer exist are torn down once the first pod list is in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use runtime::ContainerEvent;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{mpsc, watch, Notify};

use crate::qos::parse_quantity;
use crilog::pod_log_dir;

use crate::admission::{admission_check, Allocatable, Rejecter, Rejection, EVICTED};
use crate::config::{AgentConfig, AgentError};
use crate::eviction;
use crate::machine::{HostMachine, Machine, MachineFacts};
use crate::nodestatus::{self, NodeIdentity};
use crate::sandbox;
use crate::worker::{ImagePulls, NodeFacts, PodWorker, WorkerDeps};
use nodeapi::{router, NodeApiState, RuntimeLiveness};
use podapi::EventRecorder;
use podapi::PodCache;
use podapi::{Clock, SystemClock};
use podapi::{KubePodApi, PodApi};
use podapi::{ObjectChange, ObjectKind};
use staticpods::{Change, FileSource, MirrorStatusApi, StaticPods};
use volumes::VolumeManager;

/// Why the node itself ends a pod that runs.
enum End {
    /// Node shutdown, with the pod's grace period; its worker is done after it.
    Shutdown(Duration),
    /// Node-pressure eviction.
    Evict(Box<eviction::Request>),
}

/// One worker: its task, the channel carrying the latest pod (`None`: gone from the API),
/// and the one that asks it to end the pod (node shutdown, eviction).
struct WorkerHandle {
    tx: watch::Sender<Option<Arc<Pod>>>,
    /// Wakes the worker to re-read its pod's containers (one of them exited).
    poke: Arc<Notify>,
    /// Wakes the worker to rewrite its pod's volumes (an object they show changed).
    refresh: Arc<Notify>,
    end: mpsc::UnboundedSender<End>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs one pod's worker until the pod is gone, the node drains it, or the agent stops
/// (`stop`). `seen` is when the agent first saw the pod.
async fn worker_loop(
    deps: Arc<WorkerDeps>,
    poke: Arc<Notify>,
    refresh: Arc<Notify>,
    mut rx: watch::Receiver<Option<Arc<Pod>>>,
    mut ends: mpsc::UnboundedReceiver<End>,
    mut stop: watch::Receiver<bool>,
    seen: Instant,
) {
    let Some(first) = rx.borrow_and_update().clone() else {
        return;
    };
    let mut worker = PodWorker::new(&first, poke.clone());
    worker.state.track_start(&first, seen);
    deps.metrics.worker_start.observe(seen.elapsed());
    let mut last = first;
    let mut operation = "create";
    loop {
        let current = rx.borrow_and_update().clone();
        let requeue = match current {
            Some(pod) => {
                last = pod.clone();
                if pod.metadata.deletion_timestamp.is_some() {
                    operation = "kill";
                }
                let t = Instant::now();
                let requeue = worker.sync(&deps, &pod).await;
                deps.metrics.worker.observe_with(operation, t.elapsed());
                operation = "sync";
                requeue
            }
            None => {
                worker.cleanup_gone(&deps, &last).await;
                return;
            }
        };
        let wait = requeue.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
            _ = poke.notified() => {}
            _ = refresh.notified() => worker.refresh_volumes(),
            Some(end) = ends.recv() => match end {
                End::Shutdown(grace) => {
                    worker.shut_down(&deps, &last, grace).await;
                    return;
                }
                End::Evict(request) => {
                    worker.evict(&deps, &last, &request.message, request.grace).await;
                    let _ = request.done.send(());
                }
            },
            _ = stop.changed() => return,
        }
    }
}

fn uid_of(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone()
}

struct Dispatcher {
    deps: Arc<WorkerDeps>,
    /// What admission checks against, and how it records a refusal.
    allocatable: Allocatable,
    /// The KubeletConfiguration's `allowedUnsafeSysctls`.
    allowed_unsafe_sysctls: Vec<String>,
    /// The node-pressure conditions in force, for the eviction manager's admission.
    pressure: watch::Receiver<node_pressure::Conditions>,
    rejecter: Arc<Rejecter>,
    pods: PodCache,
    workers: HashMap<String, WorkerHandle>,
    /// Stops the workers (after the drain, when there is one).
    stop: watch::Receiver<bool>,
    statics: StaticPods,
    /// (namespace, name) of each static pod's worker, by uid.
    static_names: HashMap<String, (String, String)>,
    /// Static pods waiting for the previous pod of their name to finish: kubelet starts an
    /// edited static pod only once the old one has terminated.
    pending_static: Vec<Pod>,
    /// Where the QoS tiers' settings go, and the allocatable they start from; `None` without
    /// cgroups.
    qos: Option<(
        watch::Sender<podcgroups::TierSettings>,
        podcgroups::NodeAllocatable,
    )>,
}

impl Dispatcher {
    /// Recomputes the QoS tiers from the active pods (admitted, worker running, not in a
    /// terminal phase), as kubelet's `UpdateQOSCgroups` does whenever pods come and go.
    fn update_qos(&mut self) {
        let Some((tx, allocatable)) = &self.qos else {
            return;
        };
        self.workers.retain(|_, w| !w.task.is_finished());
        let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
        let active = self
            .workers
            .keys()
            .filter_map(|uid| pods.get(uid))
            .filter(|pod| {
                !matches!(
                    pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Succeeded" | "Failed")
                )
            })
            .filter_map(|pod| pod.spec.as_ref());
        let settings = podcgroups::tier_settings(*allocatable, active);
        tx.send_if_modified(|current| {
            let changed = *current != settings;
            *current = settings;
            changed
        });
    }

    fn apply(&mut self, pod: Pod) {
        let seen = Instant::now();
        // One copy of the pod, shared by the cache and its worker.
        let pod = Arc::new(pod);
        // Mirror pods are the API's view of static pods, which run from their manifests.
        if staticpods::is_mirror_pod(&pod) {
            self.statics.kick();
            return;
        }
        let Some(uid) = uid_of(&pod) else { return };
        self.pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone(), pod.clone());
        self.workers.retain(|_, w| !w.task.is_finished());
        if let Some(w) = self.workers.get(&uid) {
            w.tx.send_replace(Some(pod));
            return;
        }
        // kubelet's admission against allocatable and the safe sysctls.
        let admitted: Vec<Arc<Pod>> = {
            let pods = self.pods.read().unwrap_or_else(|e| e.into_inner());
            self.workers
                .keys()
                .filter_map(|u| pods.get(u).cloned())
                .collect()
        };
        if let Some(r) = admission_check(
            &pod,
            &admitted,
            &self.allocatable,
            &self.allowed_unsafe_sysctls,
            *self.pressure.borrow(),
        ) {
            let rejecter = self.rejecter.clone();
            tokio::spawn(async move { rejecter.reject(Arc::unwrap_or_clone(pod), r).await });
            return;
        }
        self.deps.metrics.phase("admission", seen.elapsed());
        let (tx, rx) = watch::channel(Some(pod));
        let (end, ends) = mpsc::unbounded_channel();
        let poke = Arc::new(Notify::new());
        let refresh = Arc::new(Notify::new());
        let task = tokio::spawn(worker_loop(
            self.deps.clone(),
            poke.clone(),
            refresh.clone(),
            rx,
            ends,
            self.stop.clone(),
            seen,
        ));
        self.workers.insert(
            uid,
            WorkerHandle {
                tx,
                poke,
                refresh,
                end,
                task,
            },
        );
    }

    /// A container exited (`None`: some may have, the events were lost): its pod's worker
    /// looks at once.
    fn container_exited(&self, event: Result<ContainerEvent, RecvError>) {
        match event {
            Ok(event) => {
                if let Some(w) = self.workers.get(&event.pod_uid) {
                    w.poke.notify_one();
                }
            }
            Err(RecvError::Lagged(_)) => {
                for w in self.workers.values() {
                    w.poke.notify_one();
                }
            }
            Err(RecvError::Closed) => {}
        }
    }

    /// A ConfigMap or Secret changed: the pods of its namespace whose volumes show it
    /// rewrite them now (kubelet waits for each pod's next periodic sync); when changes were
    /// lost, every pod does.
    fn object_changed(&self, change: Result<ObjectChange, RecvError>) {
        let change = match change {
            Ok(change) => change,
            Err(RecvError::Lagged(_)) => {
                for w in self.workers.values() {
                    w.refresh.notify_one();
                }
                return;
            }
            Err(RecvError::Closed) => return,
        };
        for w in self.workers.values() {
            let shows = w.tx.borrow().as_ref().is_some_and(|pod| {
                if pod.metadata.namespace.as_deref() != Some(change.namespace.as_str()) {
                    return false;
                }
                let (maps, secrets) = volumes::referenced_objects(pod);
                match change.kind {
                    ObjectKind::ConfigMap => maps.contains(&change.name),
                    ObjectKind::Secret => secrets.contains(&change.name),
                }
            });
            if shows {
                w.refresh.notify_one();
            }
        }
    }

    /// Hands the eviction manager's request to the pod's worker; a pod without one (never
    /// admitted, or its worker already gone) only gets the eviction's status and event.
    fn evict(&mut self, request: eviction::Request) {
        let Some(uid) = uid_of(&request.pod) else {
            return;
        };
        self.workers.retain(|_, w| !w.task.is_finished());
        let request = match self.workers.get(&uid) {
            Some(w) => match w.end.send(End::Evict(Box::new(request))) {
                Ok(()) => return,
                Err(mpsc::error::SendError(End::Evict(request))) => *request,
                Err(mpsc::error::SendError(End::Shutdown(_))) => return,
            },
            None => request,
        };
        let rejecter = self.rejecter.clone();
        tokio::spawn(async move {
            let rejection = Rejection {
                reason: EVICTED.into(),
                message: request.message,
            };
            rejecter.evict(request.pod, rejection).await;
            let _ = request.done.send(());
        });
    }

    fn delete(&mut self, uid: &str) {
        self.pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        if let Some(w) = self.workers.get(uid) {
            w.tx.send_replace(None);
        }
    }

    /// After a (re)list: pods we knew that were not listed are gone.
    fn resync(&mut self, listed: &HashSet<String>) {
        let known: Vec<String> = self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, pod)| !staticpods::is_static_pod(pod))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in known.iter().filter(|u| !listed.contains(*u)) {
            self.delete(uid);
        }
    }

    /// A static pod added, edited (remove + add) or removed by the file source.
    fn static_change(&mut self, change: Change) {
        match change {
            Change::Add(pod) => self.pending_static.push(*pod),
            Change::Remove {
                uid,
                namespace,
                name,
            } => {
                self.pending_static
                    .retain(|p| p.metadata.uid.as_deref() != Some(uid.as_str()));
                self.statics.remove(&namespace, &name, &uid);
                self.delete(&uid);
            }
        }
        self.start_pending();
    }

    /// Starts the pending static pods whose name is free (no worker of another pod of that
    /// name is still running).
    fn start_pending(&mut self) {
        self.workers.retain(|_, w| !w.task.is_finished());
        let workers = &self.workers;
        self.static_names.retain(|uid, _| workers.contains_key(uid));
        let pending = std::mem::take(&mut self.pending_static);
        for pod in pending {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            let key = (
                pod.metadata.namespace.clone().unwrap_or_default(),
                pod.metadata.name.clone().unwrap_or_default(),
            );
            let busy = self
                .static_names
                .iter()
                .any(|(u, k)| *u != uid && *k == key);
            if busy {
                self.pending_static.push(pod);
                continue;
            }
            self.statics.set(&pod);
            self.static_names.insert(uid, key);
            self.apply(pod);
        }
    }

    /// Tears down sandboxes whose pod is not bound here any more (deleted while the agent
    /// was down), with their logs.
    async fn remove_orphans(&self) {
        let sandboxes = match self.deps.runtime.list_pod_sandboxes().await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "listing sandboxes failed");
                return;
            }
        };
        let known: HashSet<String> = self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        self.deps.volumes.cleanup_orphans(&known);
        for err in self.deps.userns.retain(&known) {
            tracing::warn!(error = %err, "releasing an orphaned user namespace range failed");
        }
        for s in sandboxes.iter().filter(|s| !known.contains(&s.config.uid)) {
            tracing::info!(sandbox = %s.id, pod = %format!("{}/{}", s.config.namespace, s.config.name), "removing orphaned sandbox");
            sandbox::log_teardown(
                sandbox::teardown(self.deps.runtime.as_ref(), &s.id).await,
                "removing orphaned sandbox failed",
            );
            let dir = pod_log_dir(
                &self.deps.log_root,
                &s.config.namespace,
                &s.config.name,
                &s.config.uid,
            );
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %err, "removing orphaned logs failed");
                }
            }
        }
    }
}

/// How long the drain still waits, after its last phase, for pods that were killed at the
/// end of their phase's period to be torn down, so that none is left running.
const DRAIN_TEARDOWN_ALLOWANCE: Duration = Duration::from_secs(5);

/// kubelet's graceful node shutdown: the Node is reported not ready, then each phase of
/// [`node_shutdown::plan`] asks its pods' workers to end them and waits for them, at most
/// the phase's period, before the next phase starts (as the kubelet moves on to its next
/// priority group); at the end it waits a little for workers still tearing down.
async fn drain_node(
    client: &kube::Client,
    node: &str,
    policy: &node_shutdown::Policy,
    dispatcher: &mut Dispatcher,
) {
    tracing::info!(node, "shutting down: terminating the pods");
    if let Err(err) = nodestatus::mark_shutting_down(client, node).await {
        tracing::warn!(error = %err, "reporting the node's shutdown failed");
    }
    dispatcher.workers.retain(|_, w| !w.task.is_finished());
    let pods: Vec<Pod> = {
        let cache = dispatcher.pods.read().unwrap_or_else(|e| e.into_inner());
        dispatcher
            .workers
            .keys()
            .filter_map(|uid| cache.get(uid).map(|p| Pod::clone(p)))
            .collect()
    };
    let mut asked: Vec<String> = Vec::new();
    for phase in node_shutdown::plan(policy, &pods) {
        asked.extend(phase.pods.iter().map(|(uid, _)| uid.clone()));
        let deadline = tokio::time::Instant::now() + phase.period;
        let graces: HashMap<&String, Duration> = phase.pods.iter().map(|(u, g)| (u, *g)).collect();
        let mut waiting = Vec::new();
        for (uid, w) in dispatcher.workers.iter_mut() {
            if let Some(grace) = graces.get(uid) {
                if w.end.send(End::Shutdown(*grace)).is_ok() {
                    waiting.push(&mut w.task);
                }
            }
        }
        let done = futures::future::join_all(waiting);
        if tokio::time::timeout_at(deadline, done).await.is_err() {
            tracing::warn!(
                node,
                "pods still terminating at the end of their shutdown phase"
            );
        }
    }
    // Only tasks never seen finished are awaited again (a finished JoinHandle must not be
    // polled twice).
    let left = dispatcher
        .workers
        .iter_mut()
        .filter(|(uid, w)| asked.contains(uid) && !w.task.is_finished())
        .map(|(_, w)| &mut w.task);
    let left = futures::future::join_all(left);
    if tokio::time::timeout(DRAIN_TEARDOWN_ALLOWANCE, left)
        .await
        .is_err()
    {
        tracing::warn!(node, "pods still terminating after the shutdown");
    }
}

/// Registers the Node (retrying until the API answers), then, until shutdown, computes the
/// node status every `periods.update` and posts it when it changed or was last posted
/// `periods.report` ago, and renews the Lease every quarter of its duration.
async fn heartbeat(
    client: kube::Client,
    id: NodeIdentity,
    facts: MachineFacts,
    periods: nodestatus::Periods,
    mut pressure: watch::Receiver<node_pressure::Conditions>,
    mut shutdown: watch::Receiver<bool>,
) {
    use tokio::time::Instant;
    let mut uid = None;
    let mut last_report = Instant::now();
    let mut next_status = Instant::now();
    let mut next_lease = Instant::now();
    let mut registered = false;
    loop {
        let now = Instant::now();
        if !registered {
            let conditions = *pressure.borrow_and_update();
            match nodestatus::register(&client, &id, &facts, conditions).await {
                Ok(u) => {
                    registered = true;
                    uid = u;
                    last_report = now;
                    next_status = now + periods.update;
                    tracing::info!(node = %id.name, "node registered");
                }
                Err(err) => tracing::warn!(error = %err, "node registration failed; retrying"),
            }
        } else if now >= next_status {
            let conditions = *pressure.borrow_and_update();
            let due = last_report.elapsed() >= periods.report;
            match nodestatus::update_status(&client, &id, &facts, conditions, due).await {
                Ok(true) => last_report = Instant::now(),
                Ok(false) => {}
                Err(err) => tracing::warn!(error = %err, "node status update failed"),
            }
            next_status = now + periods.update;
        }
        if registered && now >= next_lease {
            let lease_seconds = periods.lease_duration_seconds;
            if let Err(err) =
                nodestatus::renew_lease(&client, &id.name, uid.as_deref(), lease_seconds).await
            {
                tracing::warn!(error = %err, "node lease renewal failed");
            }
            next_lease = now + periods.lease_renew();
        }
        let wake = if registered {
            next_status.min(next_lease)
        } else {
            now + Duration::from_secs(1)
        };
        // A pressure change is reported at once, as kubelet's eviction manager does.
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            Ok(()) = pressure.changed() => next_status = Instant::now(),
            _ = shutdown.changed() => return,
        }
    }
}

pub async fn run(
    client: kube::Client,
    runtime: Arc<dyn runtime::RuntimeService>,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let log_root = config.state_dir.join("logs");
    std::fs::create_dir_all(&log_root).map_err(|source| AgentError::StateDir {
        path: log_root.clone(),
        source,
    })?;
    crilog::secure_log_modes(&log_root);
    let facts = HostMachine.facts(&config.state_dir);

    let listener = tokio::net::TcpListener::bind(config.node_api_listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.node_api_listen,
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| AgentError::Bind {
            addr: config.node_api_listen,
            source,
        })?
        .port();
    let tls = nodeapi::tls_config(&config.node_api_tls.0, &config.node_api_tls.1)?;
    let pods: PodCache = Default::default();
    let stats = Arc::new(nodestats::Collector::new(
        Arc::new(nodestats::FromRuntime(runtime.clone())),
        std::path::PathBuf::from("/proc"),
        config.node_name.clone(),
    ));
    let stats_task = tokio::spawn(stats.clone().run(shutdown.clone()));
    let api_state = NodeApiState {
        pods: pods.clone(),
        log_root: log_root.clone(),
        token: config.node_api_token.clone(),
        liveness: Arc::new(RuntimeLiveness(runtime.clone())),
        runtime: Some(runtime.clone()),
        metrics: Some(config.metrics.registry.clone()),
        stats: Some(stats.clone()),
        sessions: Default::default(),
    };
    let server_task = tokio::spawn(nodeapi::serve(
        listener,
        tls,
        router(api_state),
        shutdown.clone(),
    ));

    // Published in the Node for the provisioner, which never sees this machine's paths.
    let state_dir =
        std::path::absolute(&config.state_dir).unwrap_or_else(|_| config.state_dir.clone());
    let local_path_root = volumes::localpath::root(&state_dir);
    let id = NodeIdentity {
        name: config.node_name.clone(),
        ip: config.node_api_advertise_ip,
        port,
        local_path_root: local_path_root.to_string_lossy().into_owned(),
        eviction_hard: config.eviction.hard.clone(),
        runtime: runtime.status(),
    };
    let local_path_task = tokio::spawn(crate::localpath::run(
        client.clone(),
        config.node_name.clone(),
        local_path_root,
        shutdown.clone(),
    ));
    let (pressure_tx, pressure) = watch::channel(node_pressure::Conditions::default());
    let heartbeat_task = tokio::spawn(heartbeat(
        client.clone(),
        id,
        facts.clone(),
        config.node_status,
        pressure.clone(),
        shutdown.clone(),
    ));

    // Volumes' ConfigMaps and Secrets come from watches of those objects, not a GET per
    // pod per refresh.
    let pod_api = Arc::new(podapi::WatchingPodApi::new(
        Arc::new(KubePodApi::new(client.clone())),
        client.clone(),
    ));
    let mut object_changes = pod_api.changes();
    let statics = StaticPods::default();
    let api: Arc<dyn PodApi> = Arc::new(MirrorStatusApi {
        inner: pod_api.clone(),
        statics: statics.clone(),
    });
    let events = Arc::new(
        EventRecorder::new(pod_api, &config.node_name).observed_by(config.metrics.phases.clone()),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let sync_frequency = config
        .sync_frequency
        .unwrap_or(crate::config::DEFAULT_SYNC_FREQUENCY);
    let node = NodeFacts {
        name: config.node_name.clone(),
        host_ip: config.node_api_advertise_ip.to_string(),
        cpu: f64::from(facts.cpus),
        // The node's allocatable, as nodestatus reports it: memory less the 100Mi hard
        // eviction threshold, 90% of the state dir's disk.
        memory: parse_quantity(&format!("{}Ki", facts.memory_ki.saturating_sub(100 * 1024)))
            .unwrap_or(0.0),
        ephemeral_storage: (facts.ephemeral_storage_bytes / 10 * 9) as f64,
    };
    let allocatable = Allocatable {
        cpu: node.cpu,
        memory: node.memory,
        ephemeral_storage: facts.ephemeral_storage_bytes / 10 * 9,
    };
    let rejecter = Arc::new(Rejecter {
        api: api.clone(),
        events: events.clone(),
        clock: clock.clone(),
    });
    let deps = Arc::new(WorkerDeps {
        runtime: runtime.clone(),
        api,
        events,
        clock,
        node,
        log_root: log_root.clone(),
        sandboxes: Default::default(),
        volumes: Arc::new(VolumeManager::for_state_dir(
            &config.state_dir,
            sync_frequency,
        )),
        sync_frequency,
        metrics: config.metrics.clone(),
        pods: pods.clone(),
        userns: Arc::new(userns::Allocator::for_state_dir(
            &config.state_dir,
            userns::HostRange::from_system(crate::nodestatus::MAX_PODS)?,
        )?),
        pod_cgroups: config.pod_cgroups.as_ref().map(|c| c.layout().clone()),
        pulls: Arc::new(ImagePulls::new(
            runtime.clone(),
            config.image_pulls,
            config.registry_credentials.clone(),
        )),
    });
    // kubelet's image garbage collection by disk thresholds; the eviction manager reclaims
    // through the same collector.
    let image_gc = Arc::new(crate::imagegc::ImageGc::new(
        runtime.clone(),
        config.image_gc,
    ));
    let image_gc_task = tokio::spawn(crate::imagegc::run(
        image_gc.clone(),
        deps.events.clone(),
        config
            .image_gc_period
            .unwrap_or(crate::imagegc::DEFAULT_PERIOD),
        shutdown.clone(),
    ));
    // kubelet's eviction manager for local ephemeral storage limits and node pressure.
    let (evictor, mut evictions) = mpsc::unbounded_channel();
    let eviction_task = tokio::spawn(eviction::run(
        runtime,
        evictor,
        pods.clone(),
        eviction::Layout {
            runtime_dir: config.state_dir.clone(),
            log_root,
            volumes_root: deps.volumes.root().to_path_buf(),
        },
        crate::pressure::Monitor::new(
            config.eviction.clone(),
            stats.clone(),
            crate::pressure::Filesystems {
                node: config.state_dir.clone(),
                images: runtime::image_store_dir(&config.state_dir),
            },
            facts.memory_ki.saturating_mul(1024),
            pressure_tx,
            crate::pressure::NodeReclaim {
                images: image_gc,
                events: deps.events.clone(),
            },
        ),
        config.eviction_period.unwrap_or(eviction::DEFAULT_PERIOD),
        shutdown.clone(),
    ));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut dispatcher = Dispatcher {
        deps,
        allocatable,
        allowed_unsafe_sysctls: config.allowed_unsafe_sysctls.clone(),
        pressure,
        rejecter,
        pods,
        workers: HashMap::new(),
        stop: stop_rx,
        statics: statics.clone(),
        static_names: HashMap::new(),
        pending_static: Vec::new(),
        qos: None,
    };
    // kubelet's node allocatable cgroup and QoS tiers, kept in force beside the workers.
    let qos_task = config.pod_cgroups.clone().map(|cgroups| {
        let allocatable = podcgroups::NodeAllocatable {
            cpu_millis: u64::from(facts.cpus).saturating_mul(1000),
            memory_bytes: facts.memory_ki.saturating_mul(1024),
        };
        let (tx, rx) = watch::channel(podcgroups::tier_settings(allocatable, []));
        dispatcher.qos = Some((tx, allocatable));
        tokio::spawn(podcgroups::run(cgroups, rx, shutdown.clone()))
    });

    // Static pods run from their manifests whether or not the API server answers: the first
    // scan happens before the pod watch, so that their sandboxes are never taken for orphans.
    let (static_tx, mut static_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut static_task = None;
    if let Some(path) = config.static_pod_path.clone() {
        let mut source = FileSource::new(path, config.node_name.clone());
        for change in source.scan(jiff::Timestamp::now()) {
            dispatcher.static_change(change);
        }
        let period = config
            .file_check_frequency
            .unwrap_or(staticpods::DEFAULT_FILE_CHECK);
        static_task = Some(tokio::spawn(source.watch(
            static_tx,
            period,
            shutdown.clone(),
        )));
    } else {
        drop(static_tx);
    }
    let mirror_task = tokio::spawn(staticpods::mirror_loop(
        client.clone(),
        config.node_name.clone(),
        statics,
        shutdown.clone(),
    ));

    let node_client = client.clone();
    let api: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", config.node_name);
    // The agent never reads managedFields, so its pods are kept without them (as
    // kube-controller-manager's informers drop them); its status writes are patches, which
    // leave the stored ones alone.
    let stream = watcher(api, watcher::Config::default().fields(&selector))
        .modify(|pod| pod.metadata.managed_fields = None);
    futures::pin_mut!(stream);
    let mut listing: Option<HashSet<String>> = None;
    let mut orphans_checked = false;
    let mut exits = dispatcher.deps.runtime.container_events();
    let mut exits_open = true;
    let mut changes_open = true;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            exited = exits.recv(), if exits_open => {
                exits_open = !matches!(exited, Err(RecvError::Closed));
                dispatcher.container_exited(exited);
                continue;
            }
            changed = object_changes.recv(), if changes_open => {
                changes_open = !matches!(changed, Err(RecvError::Closed));
                dispatcher.object_changed(changed);
                continue;
            }
            Some(change) = static_rx.recv() => {
                dispatcher.static_change(change);
                dispatcher.update_qos();
                continue;
            }
            Some(request) = evictions.recv() => {
                dispatcher.evict(request);
                dispatcher.update_qos();
                continue;
            }
            _ = tokio::time::sleep(Duration::from_millis(200)), if !dispatcher.pending_static.is_empty() => {
                dispatcher.start_pending();
                dispatcher.update_qos();
                continue;
            }
            _ = shutdown.changed() => break,
        };
        let Some(event) = event else { break };
        match event {
            Ok(watcher::Event::Apply(pod)) => dispatcher.apply(pod),
            Ok(watcher::Event::Delete(pod)) if staticpods::is_mirror_pod(&pod) => {
                // A deleted mirror pod is recreated; its static pod keeps running.
                dispatcher.statics.kick();
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = uid_of(&pod) {
                    dispatcher.delete(&uid);
                }
            }
            Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(set), Some(uid)) = (listing.as_mut(), uid_of(&pod)) {
                    set.insert(uid);
                }
                dispatcher.apply(pod);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(set) = listing.take() {
                    dispatcher.resync(&set);
                }
                if !orphans_checked {
                    dispatcher.remove_orphans().await;
                    orphans_checked = true;
                }
            }
            Err(err) => {
                // The watcher re-lists by itself; back off a little so a down API server
                // is not hammered.
                tracing::warn!(error = %err, "pod watch failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
        dispatcher.update_qos();
    }
    heartbeat_task.abort();
    if config.shutdown.enabled() {
        drain_node(
            &node_client,
            &config.node_name,
            &config.shutdown,
            &mut dispatcher,
        )
        .await;
    }
    // Otherwise pods survive the agent: workers just stop, containers keep running.
    let _ = stop_tx.send(true);
    for (_, w) in dispatcher.workers.drain() {
        w.task.abort();
    }
    local_path_task.abort();
    eviction_task.abort();
    image_gc_task.abort();
    server_task.abort();
    stats_task.abort();
    mirror_task.abort();
    if let Some(t) = qos_task {
        t.abort();
    }
    if let Some(t) = static_task {
        t.abort();
    }
    Ok(())
}
