//! One pod's worker, kubelet's `syncPod` in two halves: `plan` is a pure step that turns the
//! desired pod, what the runtime reports and the worker's state into actions (create the
//! sandbox, start or restart containers, wait out a back-off, clean up old attempts); `sync`
//! observes the runtime, runs the actions, and writes status and events. Termination
//! (deletion, terminal pods, pods gone from the API) lives here too.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodStatus};
use runtime::{
    ContainerState, ImageInfo, PodSandboxConfig, PodSandboxStatus, RuntimeError, RuntimeService,
    SandboxState,
};

use crate::apiclient::PodApi;
use crate::backoff::{go_duration, Backoff};
use crate::containerspec::{self, BuildInput, EnvSources, PodContext};
use crate::events::{EventRecorder, EventType};
use crate::podstatus::{attempts_of, pod_status, should_restart, StatusInput, Waiting};

/// How often a live pod is re-observed, like kubelet's PLEG relist period.
pub const RESYNC: Duration = Duration::from_secs(1);
/// kubelet never gives a container less than this to stop (`minimumGracePeriodInSeconds`).
pub const MIN_GRACE: Duration = Duration::from_secs(2);

/// A source of the current time (a fake in tests).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// What every worker shares.
pub struct WorkerEnv {
    pub runtime: Arc<dyn RuntimeService>,
    pub api: Arc<dyn PodApi>,
    pub events: Arc<EventRecorder>,
    pub clock: Arc<dyn Clock>,
    pub node_name: String,
    pub host_ip: String,
    /// `<state_dir>/logs`: pod log directories live below it.
    pub log_root: PathBuf,
    /// Allocatable cpu cores and memory bytes (what unset limits mean to env resource refs).
    pub node_cpu: f64,
    pub node_memory: f64,
}

/// Kubelet's pod log directory name, `<namespace>_<name>_<uid>`.
pub fn pod_log_dir(log_root: &std::path::Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    log_root.join(format!("{namespace}_{name}_{uid}"))
}

/// What the runtime holds for one pod.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    pub sandboxes: Vec<PodSandboxStatus>,
    pub containers: Vec<runtime::ContainerStatus>,
    /// Highest `<attempt>.log` per container in the pod's log directory: where kubelet
    /// resumes counting when the containers themselves are gone.
    pub log_attempts: HashMap<String, u32>,
}

impl Observed {
    pub fn ready_sandbox(&self) -> Option<&PodSandboxStatus> {
        self.sandboxes
            .iter()
            .filter(|s| s.state == SandboxState::Ready)
            .max_by_key(|s| s.created_at)
    }
}

/// One step of work for the pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop and remove a sandbox that is no longer usable.
    RemoveSandbox {
        id: String,
    },
    CreateSandbox {
        attempt: u32,
    },
    /// Pull, create and start a new attempt; `restart` when it replaces an exited one.
    StartContainer {
        name: String,
        attempt: u32,
        restart: bool,
    },
    /// Start a container that was created but never started (agent died in between).
    StartCreated {
        id: String,
        name: String,
    },
    RemoveContainer {
        id: String,
    },
}

/// The result of `plan`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub actions: Vec<Action>,
    /// Containers held back (back-off), with kubelet's waiting reason.
    pub waiting: HashMap<String, Waiting>,
    pub requeue: Option<Duration>,
}

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
#[derive(Debug, Clone)]
pub struct WorkerState {
    pub lifecycle: Lifecycle,
    pub restart_backoff: Backoff,
    pub pull_backoff: Backoff,
    /// Pending start failures by container name (ErrImagePull, CreateContainerConfigError…).
    pub waiting: HashMap<String, Waiting>,
    /// Containers whose start failed: not started again until their back-off has passed.
    pub failed_starts: HashMap<String, Timestamp>,
    pub image_refs: HashMap<String, String>,
    /// The status last written (or read from the API): writes happen only on change.
    pub last_status: Option<PodStatus>,
    /// Termination ran (containers killed, final status written, sandbox released).
    pub killed: bool,
}

impl WorkerState {
    pub fn new(pod: &Pod) -> Self {
        Self {
            lifecycle: Lifecycle::Syncing,
            restart_backoff: Backoff::default(),
            pull_backoff: Backoff::default(),
            waiting: HashMap::new(),
            failed_starts: HashMap::new(),
            image_refs: HashMap::new(),
            last_status: pod.status.clone(),
            killed: false,
        }
    }
}

fn pod_key(pod: &Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

fn spec_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
}

fn min_requeue(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// kubelet's back-off message.
fn crash_loop(pod: &Pod, container: &str, delay: Duration) -> Waiting {
    let (ns, name, uid) = pod_key(pod);
    Waiting::new(
        "CrashLoopBackOff",
        format!(
            "back-off {} restarting failed container={container} pod={name}_{ns}({uid})",
            go_duration(delay)
        ),
    )
}

/// The pure step: what to do next for a pod that should be running.
pub fn plan(pod: &Pod, observed: &Observed, state: &WorkerState, now: Timestamp) -> Plan {
    let mut out = Plan::default();
    let sandbox = observed.ready_sandbox();
    if sandbox.is_none() {
        for s in &observed.sandboxes {
            out.actions.push(Action::RemoveSandbox { id: s.id.clone() });
        }
        let attempt = observed
            .sandboxes
            .iter()
            .map(|s| s.config.attempt + 1)
            .max()
            .unwrap_or(0);
        out.actions.push(Action::CreateSandbox { attempt });
    }
    let sandbox_id = sandbox.map(|s| s.id.as_str());
    for c in spec_containers(pod) {
        let attempts = attempts_of(&observed.containers, &c.name);
        let Some(latest) = attempts.first() else {
            let attempt = observed.log_attempts.get(&c.name).map_or(0, |a| a + 1);
            out.actions.push(Action::StartContainer {
                name: c.name.clone(),
                attempt,
                restart: false,
            });
            continue;
        };
        match latest.state {
            ContainerState::Running | ContainerState::Unknown => {}
            ContainerState::Created => match state.failed_starts.get(&latest.id) {
                // Its start failed: wait out the back-off, then replace it with a new attempt.
                Some(_) => match state.restart_backoff.remaining_since_update(&c.name, now) {
                    Some(left) => {
                        if let Some(delay) = state.restart_backoff.delay(&c.name, now) {
                            out.waiting
                                .insert(c.name.clone(), crash_loop(pod, &c.name, delay));
                        }
                        out.requeue = min_requeue(out.requeue, left);
                    }
                    None => {
                        out.actions.push(Action::RemoveContainer {
                            id: latest.id.clone(),
                        });
                        out.actions.push(Action::StartContainer {
                            name: c.name.clone(),
                            attempt: latest.config.attempt + 1,
                            restart: true,
                        });
                    }
                },
                None if Some(latest.sandbox_id.as_str()) == sandbox_id => {
                    out.actions.push(Action::StartCreated {
                        id: latest.id.clone(),
                        name: c.name.clone(),
                    });
                }
                None => out.actions.push(Action::StartContainer {
                    name: c.name.clone(),
                    attempt: latest.config.attempt + 1,
                    restart: false,
                }),
            },
            ContainerState::Exited => {
                if !should_restart(pod, latest.exit_code.unwrap_or(0)) {
                    continue;
                }
                let finished = latest.finished_at.unwrap_or(latest.created_at);
                match state
                    .restart_backoff
                    .remaining_since(&c.name, finished, now)
                {
                    Some(left) => {
                        if let Some(delay) = state.restart_backoff.delay(&c.name, now) {
                            out.waiting
                                .insert(c.name.clone(), crash_loop(pod, &c.name, delay));
                        }
                        out.requeue = min_requeue(out.requeue, left);
                    }
                    None => {
                        // Keep the exited attempt for `--previous`; older ones go.
                        for old in attempts.iter().skip(1) {
                            out.actions
                                .push(Action::RemoveContainer { id: old.id.clone() });
                        }
                        out.actions.push(Action::StartContainer {
                            name: c.name.clone(),
                            attempt: latest.config.attempt + 1,
                            restart: true,
                        });
                    }
                }
            }
        }
    }
    out
}

/// kubelet's default pull policy when the API left it unset.
pub fn pull_policy(container: &Container) -> &str {
    if let Some(p) = container
        .image_pull_policy
        .as_deref()
        .filter(|p| !p.is_empty())
    {
        return p;
    }
    let image = container.image.as_deref().unwrap_or_default();
    if image.contains('@') {
        return "IfNotPresent";
    }
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

/// The one place runtime failures become kubelet waiting reasons.
pub fn waiting_for_runtime_error(stage: StartStage, err: &RuntimeError) -> Waiting {
    let message = match err {
        RuntimeError::ImagePull { message, .. }
        | RuntimeError::CreateContainer { message, .. }
        | RuntimeError::StartContainer { message, .. }
        | RuntimeError::Shim { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let reason = match (stage, err) {
        (StartStage::Pull, _)
        | (_, RuntimeError::ImageNotFound { .. } | RuntimeError::ImagePull { .. }) => {
            "ErrImagePull"
        }
        (StartStage::Create, _) => "CreateContainerError",
        (StartStage::Start, _) => "RunContainerError",
    };
    Waiting::new(reason, message)
}

/// Where in starting a container a runtime call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartStage {
    Pull,
    Create,
    Start,
}

/// A pod's worker: its state plus the effectful half of the sync.
pub struct PodWorker {
    pub state: WorkerState,
}

fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

fn api_phase(pod: &Pod) -> Option<&str> {
    pod.status.as_ref().and_then(|s| s.phase.as_deref())
}

/// The grace period a deleted pod's containers get.
pub fn grace_period(pod: &Pod) -> Duration {
    let secs = pod
        .metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30);
    Duration::from_secs(u64::try_from(secs).unwrap_or(0)).max(MIN_GRACE)
}

impl PodWorker {
    pub fn new(pod: &Pod) -> Self {
        Self {
            state: WorkerState::new(pod),
        }
    }

    /// Reads what the runtime holds for the pod.
    pub async fn observe(&mut self, env: &WorkerEnv, pod: &Pod) -> Result<Observed, RuntimeError> {
        let (ns, name, uid) = pod_key(pod);
        let sandboxes: Vec<_> = env
            .runtime
            .list_pod_sandboxes()
            .await?
            .into_iter()
            .filter(|s| s.config.uid == uid)
            .collect();
        let mut containers = Vec::new();
        for s in &sandboxes {
            containers.extend(env.runtime.list_containers(Some(&s.id)).await?);
        }
        for c in &containers {
            if !self.state.image_refs.contains_key(&c.config.image_id) {
                if let Ok(Some(info)) = env.runtime.image_status(&c.config.image).await {
                    self.remember_image(&info);
                }
            }
        }
        let dir = pod_log_dir(&env.log_root, &ns, &name, &uid);
        let mut log_attempts = HashMap::new();
        for c in spec_containers(pod) {
            if let Some(max) = crate::logs::log_attempts(&dir.join(&c.name)).last() {
                log_attempts.insert(c.name.clone(), *max);
            }
        }
        Ok(Observed {
            sandboxes,
            containers,
            log_attempts,
        })
    }

    fn remember_image(&mut self, info: &ImageInfo) {
        let shown = info
            .repo_digests
            .first()
            .cloned()
            .unwrap_or_else(|| info.id.clone());
        self.state.image_refs.insert(info.id.clone(), shown);
    }

    /// One sync of a pod that exists in the API; returns when to sync again (`None`: only
    /// on a pod update).
    pub async fn sync(&mut self, env: &WorkerEnv, pod: &Pod) -> Option<Duration> {
        match self.state.lifecycle {
            Lifecycle::Terminated => return None,
            Lifecycle::Finished if is_deleting(pod) => {
                self.delete_from_api(env, pod).await;
                return self.retry_unless_terminated();
            }
            Lifecycle::Finished => return None,
            Lifecycle::Syncing => {}
        }
        if is_deleting(pod) {
            return self.terminate(env, pod).await;
        }
        let observed = match self.observe(env, pod).await {
            Ok(o) => o,
            Err(err) => {
                tracing::warn!(pod = ?pod_key(pod), error = %err, "observing runtime failed");
                return Some(RESYNC);
            }
        };
        // A pod the API already shows as finished never runs again (agent restarted after
        // it ended): only make sure nothing of it is left.
        if matches!(api_phase(pod), Some("Succeeded" | "Failed")) {
            self.remove_sandboxes(env, &observed).await;
            self.state.lifecycle = Lifecycle::Finished;
            return None;
        }
        let now = env.clock.now();
        let step = plan(pod, &observed, &self.state, now);
        // Back-off decisions replace older reasons; start failures are set by `run`.
        for (name, w) in &step.waiting {
            self.state.waiting.insert(name.clone(), w.clone());
        }
        let acted = !step.actions.is_empty();
        let mut requeue = step.requeue;
        if acted {
            if let Err(delay) = self.run(env, pod, &observed, &step.actions).await {
                requeue = min_requeue(requeue, delay);
            }
        }
        let observed = if acted {
            match self.observe(env, pod).await {
                Ok(o) => o,
                Err(_) => observed,
            }
        } else {
            observed
        };
        // Containers now running have no pending reason any more.
        for c in &observed.containers {
            if c.state == ContainerState::Running {
                let newest = attempts_of(&observed.containers, &c.config.name)
                    .first()
                    .map(|l| l.id == c.id);
                if newest == Some(true) {
                    self.state.waiting.remove(&c.config.name);
                }
            }
        }
        let status = self.write_status(env, pod, &observed, false).await;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            // kubelet stops a finished pod's sandbox; logs stay until the pod is deleted.
            self.remove_sandboxes(env, &observed).await;
            self.state.lifecycle = Lifecycle::Finished;
            return None;
        }
        // Re-observe at least every RESYNC to notice exits, sooner when a back-off ends.
        Some(requeue.map_or(RESYNC, |r| r.min(RESYNC)))
    }

    /// Runs the planned actions in order. `Err(delay)` when a step failed and the pod
    /// should be retried after `delay`.
    async fn run(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        observed: &Observed,
        actions: &[Action],
    ) -> Result<(), Duration> {
        let mut sandbox_id = observed.ready_sandbox().map(|s| s.id.clone());
        let mut result = Ok(());
        for action in actions {
            match action {
                Action::RemoveSandbox { id } => {
                    if let Err(err) = self.teardown_sandbox(env, id).await {
                        tracing::warn!(sandbox = %id, error = %err, "removing stale sandbox failed");
                    }
                }
                Action::CreateSandbox { attempt } => {
                    match env
                        .runtime
                        .run_pod_sandbox(&self.sandbox_config(env, pod, *attempt))
                        .await
                    {
                        Ok(id) => sandbox_id = Some(id),
                        Err(err) => {
                            let now = env.clock.now();
                            let msg = format!("Failed to create pod sandbox: {err}");
                            env.events
                                .record(
                                    pod,
                                    None,
                                    EventType::Warning,
                                    "FailedCreatePodSandBox",
                                    &msg,
                                    now,
                                )
                                .await;
                            return Err(Duration::from_secs(10));
                        }
                    }
                }
                Action::RemoveContainer { id } => {
                    if let Err(err) = env.runtime.remove_container(id).await {
                        tracing::debug!(container = %id, error = %err, "removing old container failed");
                    }
                }
                Action::StartCreated { id, name } => {
                    if let Err(err) = env.runtime.start_container(id).await {
                        self.start_failed(env, pod, name, id, &err).await;
                    } else {
                        let now = env.clock.now();
                        env.events
                            .record(
                                pod,
                                Some(name),
                                EventType::Normal,
                                "Started",
                                &format!("Started container {name}"),
                                now,
                            )
                            .await;
                    }
                }
                Action::StartContainer {
                    name,
                    attempt,
                    restart,
                } => {
                    let Some(sandbox) = sandbox_id.clone() else {
                        continue;
                    };
                    let Some(container) = spec_containers(pod).iter().find(|c| &c.name == name)
                    else {
                        continue;
                    };
                    if *restart {
                        self.state.restart_backoff.next(name, env.clock.now());
                    }
                    if self
                        .start_container(env, pod, container, &sandbox, *attempt)
                        .await
                        .is_err()
                    {
                        result = Err(RESYNC);
                    }
                }
            }
        }
        result
    }

    fn sandbox_config(&self, env: &WorkerEnv, pod: &Pod, attempt: u32) -> PodSandboxConfig {
        let (namespace, name, uid) = pod_key(pod);
        let spec = pod.spec.as_ref();
        let hostname = if spec.and_then(|s| s.host_network).unwrap_or(false) {
            String::new()
        } else {
            let h = spec
                .and_then(|s| s.hostname.clone())
                .unwrap_or_else(|| name.clone());
            h.chars()
                .take(63)
                .collect::<String>()
                .trim_end_matches(['-', '.'])
                .to_string()
        };
        let mut labels: BTreeMap<String, String> = pod.metadata.labels.clone().unwrap_or_default();
        labels.insert(containerspec::LABEL_POD_NAME.to_string(), name.clone());
        labels.insert(
            containerspec::LABEL_POD_NAMESPACE.to_string(),
            namespace.clone(),
        );
        labels.insert(containerspec::LABEL_POD_UID.to_string(), uid.clone());
        PodSandboxConfig {
            log_directory: pod_log_dir(&env.log_root, &namespace, &name, &uid),
            name,
            namespace,
            uid,
            attempt,
            hostname,
            labels,
            annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        }
    }

    async fn start_failed(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        name: &str,
        id: &str,
        err: &RuntimeError,
    ) {
        let now = env.clock.now();
        let w = waiting_for_runtime_error(StartStage::Start, err);
        env.events
            .record(
                pod,
                Some(name),
                EventType::Warning,
                "Failed",
                &format!("Error: {}", w.message),
                now,
            )
            .await;
        self.state.failed_starts.insert(id.to_string(), now);
        self.state.restart_backoff.next(name, now);
        self.state.waiting.insert(name.to_string(), w);
    }

    /// Pulls (per policy), builds, creates and starts one container attempt; failures are
    /// recorded as the container's waiting reason and as events.
    async fn start_container(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        container: &Container,
        sandbox_id: &str,
        attempt: u32,
    ) -> Result<(), ()> {
        let name = container.name.as_str();
        let image = match self.ensure_image(env, pod, container).await {
            Ok(info) => info,
            Err(w) => {
                let now = env.clock.now();
                env.events
                    .record(
                        pod,
                        Some(name),
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {}", w.reason),
                        now,
                    )
                    .await;
                self.state.waiting.insert(name.to_string(), w);
                return Err(());
            }
        };
        let sources = match self.env_sources(env, pod, container).await {
            Ok(s) => s,
            Err(message) => {
                let now = env.clock.now();
                env.events
                    .record(
                        pod,
                        Some(name),
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {message}"),
                        now,
                    )
                    .await;
                self.state.waiting.insert(
                    name.to_string(),
                    Waiting::new("CreateContainerConfigError", message),
                );
                return Err(());
            }
        };
        let ctx = PodContext {
            node_name: env.node_name.clone(),
            host_ip: env.host_ip.clone(),
            pod_ip: if pod
                .spec
                .as_ref()
                .and_then(|s| s.host_network)
                .unwrap_or(false)
            {
                env.host_ip.clone()
            } else {
                String::new()
            },
            node_cpu: env.node_cpu,
            node_memory: env.node_memory,
        };
        let input = BuildInput {
            image: &image,
            attempt,
            ctx: &ctx,
            sources: &sources,
        };
        let config = match containerspec::build_container_config(pod, container, &input) {
            Ok(c) => c,
            Err(err) => {
                let now = env.clock.now();
                let reason = if err.is_config_error() {
                    "CreateContainerConfigError"
                } else {
                    "CreateContainerError"
                };
                env.events
                    .record(
                        pod,
                        Some(name),
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {err}"),
                        now,
                    )
                    .await;
                self.state
                    .waiting
                    .insert(name.to_string(), Waiting::new(reason, err.to_string()));
                return Err(());
            }
        };
        let id = match env.runtime.create_container(sandbox_id, &config).await {
            Ok(id) => id,
            Err(err) => {
                let now = env.clock.now();
                let w = waiting_for_runtime_error(StartStage::Create, &err);
                env.events
                    .record(
                        pod,
                        Some(name),
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {}", w.message),
                        now,
                    )
                    .await;
                self.state.waiting.insert(name.to_string(), w);
                return Err(());
            }
        };
        let now = env.clock.now();
        env.events
            .record(
                pod,
                Some(name),
                EventType::Normal,
                "Created",
                &format!("Created container: {name}"),
                now,
            )
            .await;
        if let Err(err) = env.runtime.start_container(&id).await {
            self.start_failed(env, pod, name, &id, &err).await;
            return Err(());
        }
        let now = env.clock.now();
        env.events
            .record(
                pod,
                Some(name),
                EventType::Normal,
                "Started",
                &format!("Started container {name}"),
                now,
            )
            .await;
        self.state.waiting.remove(name);
        Ok(())
    }

    /// kubelet's `EnsureImageExists`: honours imagePullPolicy and the pull back-off.
    async fn ensure_image(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        container: &Container,
    ) -> Result<ImageInfo, Waiting> {
        let name = container.name.as_str();
        let image = container.image.clone().unwrap_or_default();
        let policy = pull_policy(container).to_string();
        let present = match env.runtime.image_status(&image).await {
            Ok(p) => p,
            Err(err) => {
                tracing::warn!(image, error = %err, "image status failed");
                None
            }
        };
        let now = env.clock.now();
        if let Some(info) = present.clone().filter(|_| policy != "Always") {
            let msg = format!("Container image {image:?} already present on machine");
            env.events
                .record(pod, Some(name), EventType::Normal, "Pulled", &msg, now)
                .await;
            self.remember_image(&info);
            return Ok(info);
        }
        if policy == "Never" {
            let msg = format!("Container image {image:?} is not present with pull policy of Never");
            env.events
                .record(
                    pod,
                    Some(name),
                    EventType::Warning,
                    "ErrImageNeverPull",
                    &msg,
                    now,
                )
                .await;
            return Err(Waiting::new("ErrImageNeverPull", msg));
        }
        if self
            .state
            .pull_backoff
            .remaining_since_update(&image, now)
            .is_some()
        {
            let msg = format!("Back-off pulling image {image:?}");
            env.events
                .record(pod, Some(name), EventType::Normal, "BackOff", &msg, now)
                .await;
            return Err(Waiting::new("ImagePullBackOff", msg));
        }
        env.events
            .record(
                pod,
                Some(name),
                EventType::Normal,
                "Pulling",
                &format!("Pulling image {image:?}"),
                now,
            )
            .await;
        let started = Instant::now();
        match env.runtime.pull_image(&image).await {
            Ok(info) => {
                let took = Duration::from_millis(
                    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                );
                let msg = format!(
                    "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {} bytes.",
                    go_duration(took),
                    go_duration(took),
                    info.size_bytes
                );
                env.events
                    .record(
                        pod,
                        Some(name),
                        EventType::Normal,
                        "Pulled",
                        &msg,
                        env.clock.now(),
                    )
                    .await;
                self.state.pull_backoff.reset(&image);
                self.remember_image(&info);
                Ok(info)
            }
            Err(err) => {
                let now = env.clock.now();
                self.state.pull_backoff.next(&image, now);
                let w = waiting_for_runtime_error(StartStage::Pull, &err);
                let msg = format!("Failed to pull image {image:?}: {}", w.message);
                env.events
                    .record(pod, Some(name), EventType::Warning, "Failed", &msg, now)
                    .await;
                Err(w)
            }
        }
    }

    /// Fetches the config maps and secrets the container's env refers to.
    async fn env_sources(
        &self,
        env: &WorkerEnv,
        pod: &Pod,
        container: &Container,
    ) -> Result<EnvSources, String> {
        let (ns, _, _) = pod_key(pod);
        let (maps, secrets) = containerspec::referenced_sources(container);
        let mut out = EnvSources::default();
        for m in maps {
            let v = env
                .api
                .get_config_map(&ns, &m)
                .await
                .map_err(|e| e.to_string())?;
            out.config_maps.insert(m, v);
        }
        for s in secrets {
            let v = env
                .api
                .get_secret(&ns, &s)
                .await
                .map_err(|e| e.to_string())?;
            out.secrets.insert(s, v);
        }
        Ok(out)
    }

    /// Computes the status and writes it when it differs from the last one written.
    async fn write_status(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        observed: &Observed,
        terminal: bool,
    ) -> PodStatus {
        let status = pod_status(&StatusInput {
            pod,
            containers: &observed.containers,
            sandbox_ready: observed.ready_sandbox().is_some(),
            waiting: &self.state.waiting,
            image_refs: &self.state.image_refs,
            host_ip: &env.host_ip,
            now: env.clock.now(),
            terminal,
        });
        if self.state.last_status.as_ref() != Some(&status) {
            let (ns, name, _) = pod_key(pod);
            match env.api.patch_pod_status(&ns, &name, &status).await {
                Ok(()) => self.state.last_status = Some(status.clone()),
                Err(err) => {
                    tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "status update failed")
                }
            }
        }
        status
    }

    async fn teardown_sandbox(&self, env: &WorkerEnv, id: &str) -> Result<(), RuntimeError> {
        let stopped = env.runtime.stop_pod_sandbox(id).await;
        let removed = env.runtime.remove_pod_sandbox(id).await;
        // Keep going after a failed stop: removal releases what it can.
        stopped.and(removed)
    }

    async fn remove_sandboxes(&self, env: &WorkerEnv, observed: &Observed) {
        for s in &observed.sandboxes {
            if let Err(err) = self.teardown_sandbox(env, &s.id).await {
                tracing::warn!(sandbox = %s.id, error = %err, "removing sandbox failed");
            }
        }
    }

    /// Stops every live container of the pod at once with `grace`, with a Killing event each.
    async fn kill_all(&self, env: &WorkerEnv, pod: &Pod, observed: &Observed, grace: Duration) {
        let now = env.clock.now();
        let live: Vec<_> = observed
            .containers
            .iter()
            .filter(|c| {
                matches!(
                    c.state,
                    ContainerState::Running | ContainerState::Created | ContainerState::Unknown
                )
            })
            .collect();
        for c in &live {
            if c.state == ContainerState::Running {
                let msg = format!("Stopping container {}", c.config.name);
                env.events
                    .record(
                        pod,
                        Some(&c.config.name),
                        EventType::Normal,
                        "Killing",
                        &msg,
                        now,
                    )
                    .await;
            }
        }
        let stops = live
            .iter()
            .map(|c| env.runtime.stop_container(&c.id, grace));
        for (c, result) in live.iter().zip(futures::future::join_all(stops).await) {
            if let Err(err) = result {
                tracing::warn!(container = %c.id, error = %err, "stopping container failed");
            }
        }
    }

    /// kubelet's termination of a pod being deleted: kill with the grace period, write the
    /// terminal status, release the sandbox, then delete the API object.
    pub async fn terminate(&mut self, env: &WorkerEnv, pod: &Pod) -> Option<Duration> {
        if !self.state.killed {
            let observed = match self.observe(env, pod).await {
                Ok(o) => o,
                Err(err) => {
                    tracing::warn!(error = %err, "observing runtime failed");
                    return Some(RESYNC);
                }
            };
            self.kill_all(env, pod, &observed, grace_period(pod)).await;
            let observed = self.observe(env, pod).await.unwrap_or(observed);
            self.state.waiting.clear();
            self.write_status(env, pod, &observed, true).await;
            self.remove_sandboxes(env, &observed).await;
            self.state.killed = true;
        }
        self.delete_from_api(env, pod).await;
        self.retry_unless_terminated()
    }

    fn retry_unless_terminated(&self) -> Option<Duration> {
        (self.state.lifecycle != Lifecycle::Terminated).then_some(RESYNC)
    }

    async fn delete_from_api(&mut self, env: &WorkerEnv, pod: &Pod) {
        let (ns, name, uid) = pod_key(pod);
        match env.api.delete_pod(&ns, &name, &uid).await {
            Ok(()) => self.state.lifecycle = Lifecycle::Terminated,
            Err(err) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "deleting pod failed")
            }
        }
    }

    /// The pod is gone from the API (force-deleted, or deleted while the agent was down):
    /// kill what is left, release the sandbox and drop its logs.
    pub async fn cleanup_gone(&mut self, env: &WorkerEnv, pod: &Pod) {
        let (ns, name, uid) = pod_key(pod);
        if let Ok(observed) = self.observe(env, pod).await {
            self.kill_all(env, pod, &observed, MIN_GRACE).await;
            self.remove_sandboxes(env, &observed).await;
        }
        let dir = pod_log_dir(&env.log_root, &ns, &name, &uid);
        if let Err(err) = std::fs::remove_dir_all(&dir) {
            if err.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(dir = %dir.display(), error = %err, "removing pod logs failed");
            }
        }
        env.events.forget(&uid);
        self.state.lifecycle = Lifecycle::Terminated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsupport::{FakeApi, FakeClock, FakeRuntime};
    use serde_json::json;

    struct Harness {
        env: WorkerEnv,
        rt: Arc<FakeRuntime>,
        api: Arc<FakeApi>,
        clock: FakeClock,
        _dir: tempfile::TempDir,
    }

    fn harness() -> Harness {
        let clock = FakeClock::new();
        let rt = FakeRuntime::new(clock.clone());
        rt.with_registry_image("busybox:1.36");
        let api = Arc::new(FakeApi::default());
        let dir = tempfile::tempdir().expect("tempdir");
        let env = WorkerEnv {
            runtime: rt.clone(),
            api: api.clone(),
            events: Arc::new(EventRecorder::new(api.clone(), "node-a")),
            clock: Arc::new(clock.clone()),
            node_name: "node-a".into(),
            host_ip: "10.1.2.3".into(),
            log_root: dir.path().join("logs"),
            node_cpu: 2.0,
            node_memory: 1e9,
        };
        Harness {
            env,
            rt,
            api,
            clock,
            _dir: dir,
        }
    }

    fn pod(policy: &str, image: &str, pull: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
            "spec": {"restartPolicy": policy, "nodeName": "node-a", "terminationGracePeriodSeconds": 30,
                     "containers": [{"name": "app", "image": image, "imagePullPolicy": pull}]}
        }))
        .expect("pod")
    }

    fn state_of(status: &PodStatus) -> (String, Option<String>) {
        let cs = &status.container_statuses.as_ref().expect("statuses")[0];
        let st = cs.state.as_ref().expect("state");
        let kind = if st.running.is_some() {
            "running"
        } else if st.terminated.is_some() {
            "terminated"
        } else {
            "waiting"
        };
        (
            kind.to_string(),
            st.waiting.as_ref().and_then(|w| w.reason.clone()),
        )
    }

    /// Feeds the latest written status back into the pod, as the watch would.
    fn with_status(mut pod: Pod, api: &FakeApi) -> Pod {
        pod.status = api.last_status();
        pod
    }

    #[tokio::test]
    async fn starts_pod_and_reports_running() {
        let h = harness();
        let p = pod("Always", "busybox:1.36", "IfNotPresent");
        let mut w = PodWorker::new(&p);
        assert_eq!(w.sync(&h.env, &p).await, Some(RESYNC));
        assert_eq!(
            h.api.reasons(),
            vec!["Pulling", "Pulled", "Created", "Started"]
        );
        let msgs = h.api.messages();
        assert!(
            msgs[1].starts_with("Successfully pulled image \"busybox:1.36\" in "),
            "{}",
            msgs[1]
        );
        assert!(msgs[1].ends_with("Image size: 1234 bytes."), "{}", msgs[1]);
        assert_eq!(msgs[2], "Created container: app");
        assert_eq!(msgs[3], "Started container app");
        let status = h.api.last_status().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(state_of(&status).0, "running");
        let cs = &status.container_statuses.as_ref().expect("cs")[0];
        assert!(cs.ready);
        assert!(cs.image_id.starts_with("busybox@sha256:"));
        let created = h.rt.containers_named("app");
        assert_eq!(created[0].config.args, vec!["/bin/sh"]);
        assert_eq!(created[0].config.log_path, PathBuf::from("app/0.log"));

        // Nothing changed: no new status write, no runtime calls beyond listing.
        let writes = h.api.lock().statuses.len();
        let calls = h.rt.calls().len();
        let p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(h.api.lock().statuses.len(), writes);
        assert_eq!(h.rt.calls().len(), calls);

        // Second pull of a present image with IfNotPresent: no pull.
        let mut w2 = PodWorker::new(&p);
        h.rt.exit("app", 0);
        h.rt.state.lock().expect("lock").containers.clear();
        w2.sync(&h.env, &p).await;
        assert!(h
            .api
            .messages()
            .contains(&"Container image \"busybox:1.36\" already present on machine".to_string()));
    }

    #[tokio::test]
    async fn crash_restarts_with_backoff() {
        let h = harness();
        let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        // First crash: restarted at once.
        h.clock.advance(Duration::from_secs(5));
        h.rt.exit("app", 1);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let attempts: Vec<u32> =
            h.rt.containers_named("app")
                .iter()
                .map(|c| c.config.attempt)
                .collect();
        assert_eq!(attempts, vec![0, 1]);
        let status = h.api.last_status().expect("status");
        assert_eq!(state_of(&status).0, "running");
        assert_eq!(
            status.container_statuses.as_ref().expect("cs")[0].restart_count,
            1
        );

        // Second crash: CrashLoopBackOff for 10 s.
        h.clock.advance(Duration::from_secs(2));
        h.rt.exit("app", 1);
        p = with_status(p, &h.api);
        let requeue = w.sync(&h.env, &p).await;
        assert_eq!(requeue, Some(RESYNC));
        let status = h.api.last_status().expect("status");
        assert_eq!(
            state_of(&status),
            ("waiting".to_string(), Some("CrashLoopBackOff".to_string()))
        );
        let cs = &status.container_statuses.as_ref().expect("cs")[0];
        assert_eq!(
            cs.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.message.as_deref()),
            Some("back-off 10s restarting failed container=app pod=web_default(uid-1)")
        );
        assert_eq!(
            cs.last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code),
            Some(1)
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(h.rt.containers_named("app").len(), 2);

        // Still inside the window: nothing new.
        h.clock.advance(Duration::from_secs(9));
        w.sync(&h.env, &p).await;
        assert_eq!(h.rt.containers_named("app").len(), 2);
        // Window over: attempt 2 starts, attempt 0 is cleaned up, attempt 1 kept for --previous.
        h.clock.advance(Duration::from_secs(2));
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let attempts: Vec<u32> =
            h.rt.containers_named("app")
                .iter()
                .map(|c| c.config.attempt)
                .collect();
        assert_eq!(attempts, vec![1, 2]);
        assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");

        // Next crash doubles the back-off.
        h.rt.exit("app", 2);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let status = h.api.last_status().expect("status");
        let cs = &status.container_statuses.as_ref().expect("cs")[0];
        let msg = cs
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.message.clone());
        assert_eq!(
            msg.as_deref(),
            Some("back-off 20s restarting failed container=app pod=web_default(uid-1)")
        );
    }

    #[tokio::test]
    async fn never_policy_ends_failed_or_succeeded() {
        for (code, phase) in [(3, "Failed"), (0, "Succeeded")] {
            let h = harness();
            let mut p = pod("Never", "busybox:1.36", "IfNotPresent");
            let mut w = PodWorker::new(&p);
            w.sync(&h.env, &p).await;
            h.rt.exit("app", code);
            p = with_status(p, &h.api);
            assert_eq!(w.sync(&h.env, &p).await, None);
            let status = h.api.last_status().expect("status");
            assert_eq!(status.phase.as_deref(), Some(phase));
            let term = status.container_statuses.as_ref().expect("cs")[0]
                .state
                .as_ref()
                .and_then(|s| s.terminated.clone())
                .expect("terminated");
            assert_eq!(term.exit_code, code);
            assert_eq!(w.state.lifecycle, Lifecycle::Finished);
            assert!(
                h.rt.state.lock().expect("lock").sandboxes.is_empty(),
                "sandbox removed"
            );
            // Later syncs write nothing and start nothing.
            let writes = h.api.lock().statuses.len();
            p = with_status(p, &h.api);
            assert_eq!(w.sync(&h.env, &p).await, None);
            assert_eq!(h.api.lock().statuses.len(), writes);
            // A fresh worker (agent restart) leaves the finished pod alone.
            let mut again = PodWorker::new(&p);
            assert_eq!(again.sync(&h.env, &p).await, None);
            assert!(h.rt.containers_named("app").is_empty());
        }
    }

    #[tokio::test]
    async fn delete_kills_with_grace_then_deletes() {
        let h = harness();
        let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        p = with_status(p, &h.api);
        p.metadata.deletion_timestamp = Some(crate::podstatus::api_time(h.clock.now()));
        p.metadata.deletion_grace_period_seconds = Some(17);
        assert_eq!(w.sync(&h.env, &p).await, None);
        let calls = h.rt.calls();
        assert!(
            calls
                .iter()
                .any(|c| c.starts_with("stop_container ") && c.ends_with(" 17")),
            "{calls:?}"
        );
        assert!(
            calls.iter().any(|c| c.starts_with("remove_pod_sandbox")),
            "{calls:?}"
        );
        assert_eq!(h.api.reasons().last().map(String::as_str), Some("Killing"));
        assert_eq!(
            h.api.messages().last().map(String::as_str),
            Some("Stopping container app")
        );
        let status = h.api.last_status().expect("status");
        assert_eq!(status.phase.as_deref(), Some("Failed"));
        assert_eq!(
            h.api.lock().deleted,
            vec![("default".into(), "web".into(), "uid-1".into())]
        );
        assert_eq!(w.state.lifecycle, Lifecycle::Terminated);
    }

    #[tokio::test]
    async fn image_pull_failure_backs_off() {
        let h = harness();
        let p = pod("Always", "missing:1", "IfNotPresent");
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        assert_eq!(
            state_of(&h.api.last_status().expect("status")).1.as_deref(),
            Some("ErrImagePull")
        );
        assert_eq!(h.api.reasons(), vec!["Pulling", "Failed", "Failed"]);
        assert_eq!(
            h.api.messages()[1],
            "Failed to pull image \"missing:1\": missing:1: not found"
        );
        assert_eq!(h.api.messages()[2], "Error: ErrImagePull");
        h.clock.advance(Duration::from_secs(3));
        let p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let status = h.api.last_status().expect("status");
        assert_eq!(state_of(&status).1.as_deref(), Some("ImagePullBackOff"));
        assert_eq!(status.phase.as_deref(), Some("Pending"));
        assert!(h.api.reasons().contains(&"BackOff".to_string()));
        let pulls =
            h.rt.calls()
                .iter()
                .filter(|c| c.starts_with("pull"))
                .count();
        assert_eq!(pulls, 1);
        // Repeated back-off events are aggregated into one with a count.
        w.sync(&h.env, &p).await;
        let backoffs: Vec<i32> = h
            .api
            .lock()
            .events
            .iter()
            .filter(|e| e.1 == "BackOff")
            .map(|e| e.3)
            .collect();
        assert_eq!(backoffs, vec![2]);
        // After the window, it pulls again.
        h.clock.advance(Duration::from_secs(10));
        w.sync(&h.env, &p).await;
        assert_eq!(
            h.rt.calls()
                .iter()
                .filter(|c| c.starts_with("pull"))
                .count(),
            2
        );
    }

    #[tokio::test]
    async fn never_pull_policy_and_config_errors() {
        let h = harness();
        let p = pod("Always", "absent:2", "Never");
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        let status = h.api.last_status().expect("status");
        assert_eq!(state_of(&status).1.as_deref(), Some("ErrImageNeverPull"));
        assert_eq!(h.api.reasons(), vec!["ErrImageNeverPull", "Failed"]);

        let h = harness();
        let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
        if let Some(spec) = p.spec.as_mut() {
            spec.containers[0].env = Some(vec![serde_json::from_value(json!(
                {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}
            ))
            .expect("env")]);
        }
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        let status = h.api.last_status().expect("status");
        assert_eq!(
            state_of(&status).1.as_deref(),
            Some("CreateContainerConfigError")
        );
        assert!(h
            .api
            .messages()
            .contains(&"Error: configmap \"cm\" not found".to_string()));
        // Once the config map exists, the container starts.
        h.api.lock().config_maps.insert(
            "cm".into(),
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}))
                .expect("cm"),
        );
        let p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
        let c = &h.rt.containers_named("app")[0];
        assert!(c.config.env.contains(&("X".to_string(), "v".to_string())));
    }

    #[tokio::test]
    async fn restarted_agent_adopts_running_containers() {
        let h = harness();
        let p = pod("Always", "busybox:1.36", "IfNotPresent");
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        h.rt.exit("app", 1);
        let p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let p = with_status(p, &h.api);
        let before = h.rt.calls().len();
        let writes = h.api.lock().statuses.len();
        // A new worker, as after an agent restart.
        let mut fresh = PodWorker::new(&p);
        fresh.sync(&h.env, &p).await;
        assert_eq!(
            h.rt.calls().len(),
            before,
            "no container created or started"
        );
        assert_eq!(h.api.lock().statuses.len(), writes, "status unchanged");
        assert_eq!(
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .expect("cs")[0]
                .restart_count,
            1
        );
    }

    #[tokio::test]
    async fn gone_pod_is_torn_down_and_logs_removed() {
        let h = harness();
        let p = pod("Always", "busybox:1.36", "IfNotPresent");
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        let dir = pod_log_dir(&h.env.log_root, "default", "web", "uid-1");
        std::fs::create_dir_all(dir.join("app")).expect("mkdir");
        w.cleanup_gone(&h.env, &p).await;
        assert!(h.rt.state.lock().expect("lock").sandboxes.is_empty());
        assert!(!dir.exists());
    }

    #[test]
    fn default_pull_policy() {
        let c = |image: &str| -> Container {
            serde_json::from_value(json!({"name": "c", "image": image})).expect("c")
        };
        assert_eq!(pull_policy(&c("busybox")), "Always");
        assert_eq!(pull_policy(&c("busybox:latest")), "Always");
        assert_eq!(pull_policy(&c("localhost:5000/busybox")), "Always");
        assert_eq!(
            pull_policy(&c("localhost:5000/busybox:1.0")),
            "IfNotPresent"
        );
        assert_eq!(pull_policy(&c("busybox@sha256:abc")), "IfNotPresent");
    }
}
