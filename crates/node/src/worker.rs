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
use crate::hooks::{self, Hook};
use crate::podstatus::{
    attempts_of, init_containers, is_sidecar, pod_status, restart_policy, should_restart,
    ProbeView, StatusInput, Waiting,
};
use crate::probe::net::Dialer;
use crate::probe::{KillRequest, PodNet, PodProber, ProbeDeps, ProbeKind, Target};
use crate::termination;

/// How often a live pod is re-observed, like kubelet's PLEG relist period.
pub const RESYNC: Duration = Duration::from_secs(1);
/// kubelet never gives a container less than this to stop (`minimumGracePeriodInSeconds`).
pub const MIN_GRACE: Duration = Duration::from_secs(2);
/// kubelet's pod worker retries a sync that failed (one skipped by CrashLoopBackOff among
/// them) after `backOffPeriod`, 10 s; each such sync records one `BackOff` event.
const BACKOFF_EVENT_PERIOD: Duration = Duration::from_secs(10);

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
    /// Allocatable ephemeral-storage bytes (admission).
    pub node_ephemeral_storage: u64,
    /// The shared sandbox listing (see `SandboxCache`).
    pub sandboxes: SandboxCache,
    /// Pods' volumes (emptyDir, hostPath, configMap, secret, downwardAPI, projected).
    pub volumes: Arc<crate::volumes::VolumeManager>,
}

/// How long one sandbox listing serves every worker (kubelet's PLEG relist period).
pub const RELIST: Duration = Duration::from_secs(1);

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
    /// Stop a running container (failed liveness/startup probe, sidecar of a completing
    /// pod): `Killing` event with `message`, preStop hook, stop signal, `grace_secs`.
    KillContainer {
        id: String,
        name: String,
        message: String,
        grace_secs: i64,
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
    /// The pod's volumes: set up before anything starts, released when the pod is done.
    pub volumes: crate::volumes::PodVolumeState,
    /// Startup/readiness results of running containers, refreshed from the prober.
    pub probe_view: ProbeView,
    /// Running containers whose liveness or startup probe failed, by container id.
    pub probe_kills: HashMap<String, KillRequest>,
    /// When the last `BackOff` event of a container in CrashLoopBackOff was recorded; gone
    /// once the container leaves the back-off.
    pub backoff_events: HashMap<String, Timestamp>,
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
            volumes: Default::default(),
            probe_view: ProbeView::default(),
            probe_kills: HashMap::new(),
            backoff_events: HashMap::new(),
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

/// Where one container stands after planning.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    /// Running (or state unknown) and not being killed.
    Running { id: String },
    /// Exited and not to be restarted.
    Done { exit_code: i32 },
    /// Being started, killed, or waiting out a back-off.
    Pending,
}

/// The next attempt number of container `name`: one past anything the runtime or the log
/// directory knows (restartCount carries on across sandboxes, as kubelet's does).
fn next_attempt(observed: &Observed, name: &str) -> u32 {
    let runtime = observed
        .containers
        .iter()
        .filter(|c| c.config.name == name)
        .map(|c| c.config.attempt + 1)
        .max();
    let logs = observed.log_attempts.get(name).map(|a| a + 1);
    runtime.max(logs).unwrap_or(0)
}

/// The spec of a container, app or init.
fn spec_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    spec_containers(pod)
        .iter()
        .chain(init_containers(pod).iter())
        .find(|c| c.name == name)
}

/// The grace period of a kill by probe: the probe's `terminationGracePeriodSeconds`, else
/// the pod's (kubelet v1.33, `ProbeTerminationGracePeriod`).
fn probe_kill_grace(pod: &Pod, c: &Container, kind: ProbeKind) -> i64 {
    kind.of(c)
        .and_then(|p| p.termination_grace_period_seconds)
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
}

struct Planner<'a> {
    pod: &'a Pod,
    observed: &'a Observed,
    state: &'a WorkerState,
    now: Timestamp,
    /// Containers of the ready sandbox: a new sandbox starts from the first init container.
    current: Vec<runtime::ContainerStatus>,
    out: Plan,
}

impl Planner<'_> {
    /// Plans one container; `restart(exit_code)` says whether an exit is restarted.
    fn container(&mut self, c: &Container, restart: &dyn Fn(i32) -> bool) -> Step {
        let attempts = attempts_of(&self.current, &c.name);
        let Some(latest) = attempts.first() else {
            self.out.actions.push(Action::StartContainer {
                name: c.name.clone(),
                attempt: next_attempt(self.observed, &c.name),
                restart: false,
            });
            return Step::Pending;
        };
        match latest.state {
            ContainerState::Running | ContainerState::Unknown => {
                match self.state.probe_kills.get(&latest.id) {
                    Some(kill) => {
                        // kubelet's computePodActions: "Container x failed liveness probe,
                        // will be restarted".
                        let probe = match kill.kind {
                            ProbeKind::Startup => "startup",
                            _ => "liveness",
                        };
                        let mut message = format!("Container {} failed {probe} probe", c.name);
                        if restart(137) {
                            message.push_str(", will be restarted");
                        }
                        self.out.actions.push(Action::KillContainer {
                            id: latest.id.clone(),
                            name: c.name.clone(),
                            message,
                            grace_secs: probe_kill_grace(self.pod, c, kill.kind),
                        });
                        Step::Pending
                    }
                    None => Step::Running {
                        id: latest.id.clone(),
                    },
                }
            }
            ContainerState::Created => {
                if self.state.failed_starts.contains_key(&latest.id) {
                    // Its start failed: wait out the back-off, then replace it.
                    match self
                        .state
                        .restart_backoff
                        .remaining_since_update(&c.name, self.now)
                    {
                        Some(left) => self.back_off(c, left),
                        None => {
                            self.out.actions.push(Action::RemoveContainer {
                                id: latest.id.clone(),
                            });
                            self.out.actions.push(Action::StartContainer {
                                name: c.name.clone(),
                                attempt: next_attempt(self.observed, &c.name),
                                restart: true,
                            });
                        }
                    }
                } else {
                    self.out.actions.push(Action::StartCreated {
                        id: latest.id.clone(),
                        name: c.name.clone(),
                    });
                }
                Step::Pending
            }
            ContainerState::Exited => {
                let exit_code = latest.exit_code.unwrap_or(0);
                if !restart(exit_code) {
                    return Step::Done { exit_code };
                }
                let finished = latest.finished_at.unwrap_or(latest.created_at);
                match self
                    .state
                    .restart_backoff
                    .remaining_since(&c.name, finished, self.now)
                {
                    Some(left) => self.back_off(c, left),
                    None => {
                        // Keep the exited attempt for `--previous`; older ones go.
                        for old in attempts.iter().skip(1) {
                            self.out
                                .actions
                                .push(Action::RemoveContainer { id: old.id.clone() });
                        }
                        self.out.actions.push(Action::StartContainer {
                            name: c.name.clone(),
                            attempt: next_attempt(self.observed, &c.name),
                            restart: true,
                        });
                    }
                }
                Step::Pending
            }
        }
    }

    fn back_off(&mut self, c: &Container, left: Duration) {
        if let Some(delay) = self.state.restart_backoff.delay(&c.name, self.now) {
            self.out
                .waiting
                .insert(c.name.clone(), crash_loop(self.pod, &c.name, delay));
        }
        self.out.requeue = min_requeue(self.out.requeue, left);
    }
}

/// The pure step: what to do next for a pod that should be running. Init containers run one
/// at a time, each to exit 0 (retried with back-off unless `restartPolicy: Never`); a sidecar
/// (`restartPolicy: Always` init container) lets the next one start once it is started (its
/// startup probe passed) and keeps running, restarted whenever it exits. App containers
/// start once initialization is done. When every app container of a `Never`/`OnFailure` pod
/// is done, the sidecars are stopped in reverse order so the pod can complete (KEP-753).
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
    let current: Vec<_> = observed
        .containers
        .iter()
        .filter(|c| Some(c.sandbox_id.as_str()) == sandbox_id)
        .cloned()
        .collect();
    let mut p = Planner {
        pod,
        observed,
        state,
        now,
        current,
        out,
    };
    let policy = restart_policy(pod).to_string();
    let apps = spec_containers(pod);
    // kubelet: once a regular container ran in this sandbox, init containers are done for
    // good (only sidecars are kept running).
    let regular_started = apps
        .iter()
        .any(|c| p.current.iter().any(|r| r.config.name == c.name));
    let completing = policy != "Always"
        && regular_started
        && apps.iter().all(|c| {
            attempts_of(&p.current, &c.name).first().is_some_and(|l| {
                l.state == ContainerState::Exited && !should_restart(pod, l.exit_code.unwrap_or(0))
            })
        });
    if completing {
        // Sidecars go last, in reverse order.
        for c in init_containers(pod).iter().rev().filter(|c| is_sidecar(c)) {
            if let Some(l) = attempts_of(&p.current, &c.name)
                .first()
                .filter(|l| matches!(l.state, ContainerState::Running | ContainerState::Unknown))
            {
                p.out.actions.push(Action::KillContainer {
                    id: l.id.clone(),
                    name: c.name.clone(),
                    message: format!("Stopping container {}", c.name),
                    grace_secs: grace_period(pod).as_secs().try_into().unwrap_or(30),
                });
            }
        }
        return p.out;
    }
    let mut initialized = true;
    for c in init_containers(pod) {
        if is_sidecar(c) {
            let step = p.container(c, &|_| true);
            let started = match &step {
                Step::Running { id } => !state.probe_view.not_started.contains(id),
                Step::Done { .. } | Step::Pending => false,
            };
            if !started && !regular_started {
                initialized = false;
                break;
            }
        } else if !regular_started {
            let never = policy == "Never";
            match p.container(c, &|code| code != 0 && !never) {
                Step::Done { exit_code: 0 } => {}
                // Failed under `Never` (the pod fails) or still running / restarting.
                Step::Done { .. } | Step::Running { .. } | Step::Pending => {
                    initialized = false;
                    break;
                }
            }
        }
    }
    if initialized {
        for c in apps {
            p.container(c, &|code| should_restart(pod, code));
        }
    }
    p.out
}

/// Running containers (newest attempts in the ready sandbox) that have probes.
fn probe_targets(pod: &Pod, observed: &Observed) -> Vec<Target> {
    let Some(sandbox) = observed.ready_sandbox() else {
        return Vec::new();
    };
    spec_containers(pod)
        .iter()
        .chain(init_containers(pod).iter().filter(|c| is_sidecar(c)))
        .filter(|c| ProbeKind::ALL.iter().any(|k| k.of(c).is_some()))
        .filter_map(|c| {
            let current: Vec<_> = observed
                .containers
                .iter()
                .filter(|r| r.sandbox_id == sandbox.id)
                .cloned()
                .collect();
            let latest = attempts_of(&current, &c.name)
                .first()
                .map(|l| (*l).clone())?;
            (latest.state == ContainerState::Running).then(|| Target {
                container: c.clone(),
                id: latest.id.clone(),
                started_at: latest.started_at.unwrap_or(latest.created_at),
            })
        })
        .collect()
}

/// Where probes and hooks of the pod connect from and to.
fn pod_net(env: &WorkerEnv, pod: &Pod, observed: &Observed) -> PodNet {
    let sandbox = observed.ready_sandbox();
    PodNet {
        dialer: Dialer {
            netns: sandbox.and_then(|s| s.netns_path.clone()),
        },
        pod_ip: crate::network::pod_ip(&env.host_ip, pod, sandbox)
            .parse()
            .ok(),
    }
}

/// Stops one container as kubelet's killContainer does: `Killing` event, the preStop hook
/// (which counts against the grace period), then the stop signal with what is left of it
/// (never less than `MIN_GRACE`).
async fn kill_one(
    env: &WorkerEnv,
    pod: &Pod,
    c: &runtime::ContainerStatus,
    grace: Duration,
    message: Option<&str>,
    net: &PodNet,
) {
    let name = c.config.name.as_str();
    let mut grace = grace;
    if c.state == ContainerState::Running {
        let default = format!("Stopping container {name}");
        env.events
            .record(
                pod,
                Some(name),
                EventType::Normal,
                "Killing",
                message.unwrap_or(&default),
                env.clock.now(),
            )
            .await;
        let spec = spec_container(pod, name);
        if let Some((spec, handler)) = spec.and_then(|s| Hook::PreStop.of(s).map(|h| (s, h))) {
            let started = Instant::now();
            let result = tokio::time::timeout(
                grace,
                hooks::run(env.runtime.as_ref(), pod, spec, &c.id, handler, net, grace),
            )
            .await;
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(err)) => Some(err.to_string()),
                Err(_) => Some(format!(
                    "PreStop hook for Container {name:?} did not complete within {}s",
                    grace.as_secs()
                )),
            };
            if let Some(msg) = failure {
                env.events
                    .record(
                        pod,
                        Some(name),
                        EventType::Warning,
                        "FailedPreStopHook",
                        &msg,
                        env.clock.now(),
                    )
                    .await;
            }
            grace = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
        }
    }
    if let Err(err) = env.runtime.stop_container(&c.id, grace).await {
        tracing::warn!(container = %c.id, error = %err, "stopping container failed");
    }
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
    let message = err.container_message();
    let reason = match (stage, err) {
        (StartStage::Pull, _)
        | (_, RuntimeError::ImageNotFound { .. } | RuntimeError::PullImage { .. }) => {
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
    /// The pod's probes (tasks keyed by container id).
    pub prober: PodProber,
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
            prober: PodProber::default(),
        }
    }

    /// Reads what the runtime holds for the pod.
    pub async fn observe(&mut self, env: &WorkerEnv, pod: &Pod) -> Result<Observed, RuntimeError> {
        let (ns, name, uid) = pod_key(pod);
        let sandboxes: Vec<_> = env
            .sandboxes
            .list(env.runtime.as_ref())
            .await?
            .iter()
            .filter(|s| s.config.uid == uid)
            .cloned()
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
        for c in spec_containers(pod).iter().chain(init_containers(pod)) {
            if let Some(max) = crate::logs::log_attempts(&dir.join(&c.name)).last() {
                log_attempts.insert(c.name.clone(), *max);
            }
        }
        for c in containers
            .iter_mut()
            .filter(|c| c.state == ContainerState::Exited)
        {
            if c.message.as_deref().is_none_or(str::is_empty) {
                let fallback = spec_container(pod, &c.config.name)
                    .and_then(|s| s.termination_message_policy.as_deref())
                    == Some("FallbackToLogsOnError");
                c.message = termination::read_message(c, fallback);
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
            self.teardown_volumes(env, pod);
            self.state.lifecycle = Lifecycle::Finished;
            return None;
        }
        self.refresh_probes(env, pod, &observed);
        let now = env.clock.now();
        // kubelet's WaitForAttachAndMount: nothing of the pod starts before its volumes.
        let step = if self.ensure_volumes(env, pod).await {
            plan(pod, &observed, &self.state, now)
        } else {
            Plan {
                requeue: Some(RESYNC),
                ..Plan::default()
            }
        };
        // Back-off decisions replace older reasons; start failures are set by `run`.
        // kubelet records `BackOff` on each sync skipped by the back-off: the one that follows
        // the exit (PLEG), then its pod worker's retries every 10 s. We re-observe every
        // second, so record on entering the back-off and then once per BACKOFF_EVENT_PERIOD.
        self.state.backoff_events.retain(|name, _| {
            step.waiting
                .get(name)
                .is_some_and(|w| w.reason == "CrashLoopBackOff")
        });
        for (name, w) in &step.waiting {
            self.state.waiting.insert(name.clone(), w.clone());
            let due = self.state.backoff_events.get(name).is_none_or(|last| {
                now.duration_since(*last).unsigned_abs() >= BACKOFF_EVENT_PERIOD
            });
            if w.reason == "CrashLoopBackOff" && due {
                self.state.backoff_events.insert(name.clone(), now);
                let (ns, pod_name, uid) = pod_key(pod);
                let msg = format!(
                    "Back-off restarting failed container {name} in pod {pod_name}_{ns}({uid})"
                );
                env.events
                    .record(pod, Some(name), EventType::Warning, "BackOff", &msg, now)
                    .await;
            }
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
        self.refresh_probes(env, pod, &observed);
        let status = self.write_status(env, pod, &observed, false).await;
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            self.prober.stop();
            // kubelet stops a finished pod's sandbox; logs stay until the pod is deleted.
            self.remove_sandboxes(env, &observed).await;
            self.teardown_volumes(env, pod);
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
        let mut sandbox = observed.ready_sandbox().cloned();
        let mut result = Ok(());
        for action in actions {
            match action {
                Action::RemoveSandbox { id } => {
                    if let Err(err) = self.teardown_sandbox(env, id).await {
                        tracing::warn!(sandbox = %id, error = %err, "removing stale sandbox failed");
                    }
                }
                Action::CreateSandbox { attempt } => {
                    let created = env
                        .runtime
                        .run_pod_sandbox(&self.sandbox_config(env, pod, *attempt))
                        .await;
                    env.sandboxes.invalidate();
                    match created {
                        Ok(status) => sandbox = Some(status),
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
                Action::KillContainer {
                    id,
                    name,
                    message,
                    grace_secs,
                } => {
                    let Some(c) = observed.containers.iter().find(|c| &c.id == id) else {
                        continue;
                    };
                    let grace =
                        Duration::from_secs(u64::try_from(*grace_secs).unwrap_or(0)).max(MIN_GRACE);
                    let net = pod_net(env, pod, observed);
                    kill_one(env, pod, c, grace, Some(message), &net).await;
                    self.state.probe_kills.remove(id);
                    tracing::debug!(container = %name, "killed");
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
                    let Some(sandbox) = sandbox.as_ref() else {
                        continue;
                    };
                    let Some(container) = spec_container(pod, name) else {
                        continue;
                    };
                    if *restart {
                        self.state.restart_backoff.next(name, env.clock.now());
                    }
                    if self
                        .start_container(env, pod, container, sandbox, *attempt)
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
            host_network: crate::network::is_host_network(pod),
            port_mappings: crate::network::port_mappings(pod),
            // kubelet's `--resolv-conf` default supplies the node's search domains.
            dns: crate::dnsconfig::pod_dns_config(
                pod,
                &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            ),
            share_process_namespace: crate::security::share_process_namespace(pod),
            sysctls: crate::security::pod_sysctls(pod),
            resources: spec.map(crate::security::pod_resources).unwrap_or_default(),
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
        sandbox: &PodSandboxStatus,
        attempt: u32,
    ) -> Result<(), ()> {
        let name = container.name.as_str();
        let image = match self.ensure_image(env, pod, container).await {
            Ok(info) => info,
            Err(w) => {
                let text = format!("Error: {}", w.reason);
                return self.create_failed(env, pod, name, &text, w).await;
            }
        };
        let sources = match self.env_sources(env, pod, container).await {
            Ok(s) => s,
            Err(message) => {
                let text = format!("Error: {message}");
                let w = Waiting::new("CreateContainerConfigError", message);
                return self.create_failed(env, pod, name, &text, w).await;
            }
        };
        let ctx = PodContext {
            node_name: env.node_name.clone(),
            host_ip: env.host_ip.clone(),
            pod_ip: crate::network::pod_ip(&env.host_ip, pod, Some(sandbox)),
            node_cpu: env.node_cpu,
            node_memory: env.node_memory,
        };
        let input = BuildInput {
            image: &image,
            attempt,
            ctx: &ctx,
            sources: &sources,
        };
        let mut config = match containerspec::build_container_config(pod, container, &input) {
            Ok(c) => c,
            Err(err) => {
                let reason = if err.is_config_error() {
                    "CreateContainerConfigError"
                } else {
                    "CreateContainerError"
                };
                let w = Waiting::new(reason, err.to_string());
                return self
                    .create_failed(env, pod, name, &format!("Error: {err}"), w)
                    .await;
            }
        };
        if self
            .apply_volume_mounts(env, pod, container, &mut config)
            .await
            .is_err()
        {
            return Err(());
        }
        termination::add_mount(env, pod, container, &mut config);
        let id = match env.runtime.create_container(&sandbox.id, &config).await {
            Ok(id) => id,
            Err(err) => {
                let w = waiting_for_runtime_error(StartStage::Create, &err);
                let text = format!("Error: {}", w.message);
                return self.create_failed(env, pod, name, &text, w).await;
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
        self.post_start(env, pod, container, &id, sandbox).await
    }

    /// kubelet runs postStart right after the start and waits for it; a failed hook kills
    /// the container (`FailedPostStartHook`), which is then restarted per policy.
    async fn post_start(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        container: &Container,
        id: &str,
        sandbox: &PodSandboxStatus,
    ) -> Result<(), ()> {
        let Some(handler) = Hook::PostStart.of(container) else {
            return Ok(());
        };
        let name = container.name.as_str();
        let net = PodNet {
            dialer: Dialer {
                netns: sandbox.netns_path.clone(),
            },
            pod_ip: crate::network::pod_ip(&env.host_ip, pod, Some(sandbox))
                .parse()
                .ok(),
        };
        let grace = grace_period(pod);
        let Err(err) = hooks::run(
            env.runtime.as_ref(),
            pod,
            container,
            id,
            handler,
            &net,
            grace,
        )
        .await
        else {
            return Ok(());
        };
        let msg = err.to_string();
        let now = env.clock.now();
        env.events
            .record(
                pod,
                Some(name),
                EventType::Warning,
                "FailedPostStartHook",
                &msg,
                now,
            )
            .await;
        env.events
            .record(
                pod,
                Some(name),
                EventType::Normal,
                "Killing",
                "FailedPostStartHook",
                now,
            )
            .await;
        if let Err(err) = env.runtime.stop_container(id, grace).await {
            tracing::warn!(container = %id, error = %err, "stopping container after postStart failed");
        }
        self.state
            .waiting
            .insert(name.to_string(), Waiting::new("PostStartHookError", msg));
        Err(())
    }

    /// Starts and stops probe tasks to match the running containers and takes the probers'
    /// current results into the state.
    fn refresh_probes(&mut self, env: &WorkerEnv, pod: &Pod, observed: &Observed) {
        let targets = probe_targets(pod, observed);
        let deps = ProbeDeps {
            runtime: env.runtime.clone(),
            events: env.events.clone(),
            clock: env.clock.clone(),
        };
        let net = pod_net(env, pod, observed);
        self.prober.reconcile(&deps, pod, &targets, &net);
        let (view, kills) = self.prober.view(&targets);
        let all_unready = self.state.probe_view.all_unready;
        self.state.probe_view = ProbeView {
            all_unready,
            ..view
        };
        self.state.probe_kills = kills;
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
        let mut status = pod_status(&StatusInput {
            pod,
            containers: &observed.containers,
            sandbox_ready: observed.ready_sandbox().is_some(),
            waiting: &self.state.waiting,
            image_refs: &self.state.image_refs,
            host_ip: &env.host_ip,
            now: env.clock.now(),
            terminal,
            probes: &self.state.probe_view,
        });
        crate::network::fill_status(pod, observed.ready_sandbox(), &mut status);
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
        // The runtime releases the sandbox's network (CNI DEL) as it stops it.
        let stopped = env.runtime.stop_pod_sandbox(id).await;
        let removed = env.runtime.remove_pod_sandbox(id).await;
        env.sandboxes.invalidate();
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

    /// Stops every live container of the pod with `grace` (each with a Killing event and its
    /// preStop hook): app and init containers at once, then sidecars one by one in reverse
    /// order (KEP-753).
    async fn kill_all(&self, env: &WorkerEnv, pod: &Pod, observed: &Observed, grace: Duration) {
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
        let sidecar_names: Vec<&str> = init_containers(pod)
            .iter()
            .filter(|c| is_sidecar(c))
            .map(|c| c.name.as_str())
            .collect();
        let net = pod_net(env, pod, observed);
        let (sidecars, others): (Vec<_>, Vec<_>) = live
            .into_iter()
            .partition(|c| sidecar_names.contains(&c.config.name.as_str()));
        let stops = others
            .iter()
            .map(|c| kill_one(env, pod, c, grace, None, &net));
        futures::future::join_all(stops).await;
        for name in sidecar_names.iter().rev() {
            for c in sidecars.iter().filter(|c| c.config.name == *name) {
                kill_one(env, pod, c, grace, None, &net).await;
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
            // kubelet reports a terminating pod not ready before it stops anything.
            self.state.probe_view.all_unready = true;
            self.write_status(env, pod, &observed, false).await;
            self.prober.stop();
            self.kill_all(env, pod, &observed, grace_period(pod)).await;
            let observed = self.observe(env, pod).await.unwrap_or(observed);
            self.state.waiting.clear();
            self.write_status(env, pod, &observed, true).await;
            self.remove_sandboxes(env, &observed).await;
            self.teardown_volumes(env, pod);
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
    /// A container that could not be created: the `Failed` warning event kubelet records, and
    /// the waiting reason its status shows until the next attempt.
    async fn create_failed(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        name: &str,
        event_message: &str,
        waiting: Waiting,
    ) -> Result<(), ()> {
        let now = env.clock.now();
        env.events
            .record(
                pod,
                Some(name),
                EventType::Warning,
                "Failed",
                event_message,
                now,
            )
            .await;
        self.state.waiting.insert(name.to_string(), waiting);
        Err(())
    }

    pub async fn cleanup_gone(&mut self, env: &WorkerEnv, pod: &Pod) {
        let (ns, name, uid) = pod_key(pod);
        if let Ok(observed) = self.observe(env, pod).await {
            // kubelet kills a pod that left its source (force-deleted from the API, a static
            // pod's file removed) with the pod's own grace period, at least 2 s.
            self.kill_all(env, pod, &observed, grace_period(pod)).await;
            self.remove_sandboxes(env, &observed).await;
        }
        self.teardown_volumes(env, pod);
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
            node_ephemeral_storage: 1 << 40,
            sandboxes: Default::default(),
            volumes: Arc::new(crate::volumes::VolumeManager::new(
                dir.path().join("volumes"),
                Arc::new(crate::volumes::HostMounter),
                crate::volumes::DEFAULT_SYNC_PERIOD,
            )),
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

    /// The aggregated count of the pod's `BackOff` events (0 when none).
    fn backoff_count(api: &FakeApi) -> i32 {
        api.lock()
            .events
            .iter()
            .filter(|e| e.1 == "BackOff")
            .map(|e| e.3)
            .sum()
    }

    #[tokio::test]
    async fn crash_loop_back_off_event_counts_retries_not_syncs() {
        let h = harness();
        let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        // First crash restarts at once; the second enters a 10 s back-off.
        for _ in 0..2 {
            h.clock.advance(Duration::from_secs(1));
            h.rt.exit("app", 1);
            p = with_status(p, &h.api);
            w.sync(&h.env, &p).await;
        }
        assert_eq!(backoff_count(&h.api), 1);
        // One sync a second through the window: no more events.
        for _ in 0..9 {
            h.clock.advance(Duration::from_secs(1));
            w.sync(&h.env, &p).await;
        }
        assert_eq!(backoff_count(&h.api), 1);
        assert_eq!(h.rt.containers_named("app").len(), 2);
        // Window over: restarted; it crashes again into a 20 s back-off, a new BackOff.
        h.clock.advance(Duration::from_secs(2));
        w.sync(&h.env, &p).await;
        assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
        h.rt.exit("app", 1);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(backoff_count(&h.api), 2);
        // Twenty one-second syncs: one retry event at 10 s (kubelet's backOffPeriod), then
        // the restart.
        for _ in 0..19 {
            h.clock.advance(Duration::from_secs(1));
            w.sync(&h.env, &p).await;
        }
        assert_eq!(backoff_count(&h.api), 3);
        h.clock.advance(Duration::from_secs(2));
        w.sync(&h.env, &p).await;
        assert_eq!(backoff_count(&h.api), 3);
        assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
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
            "Failed to pull image \"missing:1\": image \"missing:1\" not found"
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

    // ---- init containers, sidecars, probes, hooks ----

    fn lifecycle_pod(policy: &str, spec: serde_json::Value) -> Pod {
        let mut spec = spec;
        spec["restartPolicy"] = json!(policy);
        spec["nodeName"] = json!("node-a");
        spec["terminationGracePeriodSeconds"] = json!(30);
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
            "spec": spec
        }))
        .expect("pod")
    }

    fn c(name: &str) -> serde_json::Value {
        json!({"name": name, "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent"})
    }

    fn started_names(h: &Harness) -> Vec<String> {
        let st = h.rt.state.lock().expect("lock");
        let mut v: Vec<_> = st
            .containers
            .values()
            .map(|c| (c.created_at, c.config.name.clone(), c.config.attempt))
            .collect();
        v.sort();
        v.into_iter().map(|(_, n, a)| format!("{n}#{a}")).collect()
    }

    fn init_reason(status: &PodStatus, i: usize) -> Option<String> {
        status.init_container_statuses.as_ref().expect("init")[i]
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
    }

    fn cond_status(status: &PodStatus, kind: &str) -> String {
        status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == kind)
            .map(|c| c.status.clone())
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn init_containers_run_one_at_a_time_then_apps() {
        let h = harness();
        let mut p = lifecycle_pod(
            "Always",
            json!({"initContainers": [c("i1"), c("i2")], "containers": [c("app")]}),
        );
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        assert_eq!(started_names(&h), vec!["i1#0"]);
        let s = h.api.last_status().expect("status");
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(init_reason(&s, 1).as_deref(), Some("PodInitializing"));
        assert_eq!(state_of(&s).1.as_deref(), Some("PodInitializing"));
        assert_eq!(cond_status(&s, "Initialized"), "False");
        // Still running: nothing else starts.
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(started_names(&h), vec!["i1#0"]);
        h.clock.advance(Duration::from_secs(1));
        h.rt.exit("i1", 0);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(started_names(&h), vec!["i1#0", "i2#0"]);
        h.clock.advance(Duration::from_secs(1));
        h.rt.exit("i2", 0);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(started_names(&h), vec!["i1#0", "i2#0", "app#0"]);
        let s = h.api.last_status().expect("status");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond_status(&s, "Initialized"), "True");
        let inits = s.init_container_statuses.as_ref().expect("init");
        assert!(inits.iter().all(|i| i.ready), "completed inits are ready");
        let fields = h.api.lock().field_paths.clone();
        assert!(
            fields.iter().any(|f| f == "spec.initContainers{i1}"),
            "{fields:?}"
        );
    }

    #[tokio::test]
    async fn failing_init_backs_off_or_fails_the_pod() {
        let h = harness();
        let mut p = lifecycle_pod(
            "Always",
            json!({"initContainers": [c("i1")], "containers": [c("app")]}),
        );
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        h.clock.advance(Duration::from_secs(1));
        h.rt.exit("i1", 1);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(started_names(&h), vec!["i1#0", "i1#1"]);
        h.clock.advance(Duration::from_secs(1));
        h.rt.exit("i1", 1);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let s = h.api.last_status().expect("status");
        assert_eq!(init_reason(&s, 0).as_deref(), Some("CrashLoopBackOff"));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert!(h.api.reasons().contains(&"BackOff".to_string()));
        assert!(h.api.messages().contains(
            &"Back-off restarting failed container i1 in pod web_default(uid-1)".to_string()
        ));

        let h = harness();
        let mut p = lifecycle_pod(
            "Never",
            json!({"initContainers": [c("i1"), c("i2")], "containers": [c("app")]}),
        );
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        h.rt.exit("i1", 2);
        p = with_status(p, &h.api);
        assert_eq!(w.sync(&h.env, &p).await, None);
        let s = h.api.last_status().expect("status");
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        assert_eq!(w.state.lifecycle, Lifecycle::Finished);
        assert!(h.rt.containers_named("app").is_empty());
    }

    #[tokio::test]
    async fn sidecars_start_first_and_stop_last_in_reverse() {
        let h = harness();
        let mut sc1 = c("sc1");
        sc1["restartPolicy"] = json!("Always");
        let mut sc2 = c("sc2");
        sc2["restartPolicy"] = json!("Always");
        let mut p = lifecycle_pod(
            "Never",
            json!({"initContainers": [sc1, c("i1"), sc2], "containers": [c("app")]}),
        );
        let mut w = PodWorker::new(&p);
        for _ in 0..3 {
            w.sync(&h.env, &p).await;
            p = with_status(p, &h.api);
            h.clock.advance(Duration::from_secs(1));
        }
        assert_eq!(started_names(&h), vec!["sc1#0", "i1#0"]);
        h.rt.exit("i1", 0);
        w.sync(&h.env, &p).await;
        p = with_status(p, &h.api);
        h.clock.advance(Duration::from_secs(1));
        w.sync(&h.env, &p).await;
        assert_eq!(started_names(&h), vec!["sc1#0", "i1#0", "sc2#0", "app#0"]);
        // A sidecar that exits is restarted even under Never.
        h.clock.advance(Duration::from_secs(1));
        h.rt.exit("sc1", 1);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(h.rt.containers_named("sc1").len(), 2);
        let s = h.api.last_status().expect("status");
        assert_eq!(s.phase.as_deref(), Some("Running"));
        // The app finishes: sidecars are stopped, sc2 before sc1, and the pod succeeds.
        let sc2_id = h.rt.containers_named("sc2")[0].id.clone();
        h.clock.advance(Duration::from_secs(1));
        h.rt.exit("app", 0);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let stops: Vec<String> =
            h.rt.calls()
                .iter()
                .filter(|c| c.starts_with("stop_container"))
                .cloned()
                .collect();
        assert!(stops[0].contains(&sc2_id), "{stops:?}");
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let s = h.api.last_status().expect("status");
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
    }

    #[tokio::test]
    async fn liveness_failure_kills_with_probe_grace_and_restarts() {
        let h = harness();
        let mut app = c("app");
        app["livenessProbe"] = json!({"exec": {"command": ["check"]}, "initialDelaySeconds": 1000,
            "terminationGracePeriodSeconds": 7});
        let mut p = lifecycle_pod("Always", json!({"containers": [app]}));
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        let id = h.rt.containers_named("app")[0].id.clone();
        w.prober.set(&id, ProbeKind::Liveness, false);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert!(h.rt.calls().contains(&format!("stop_container {id} 7")));
        assert!(h
            .api
            .messages()
            .contains(&"Container app failed liveness probe, will be restarted".to_string()));
        h.clock.advance(Duration::from_secs(1));
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        assert_eq!(started_names(&h), vec!["app#0", "app#1"]);
    }

    #[tokio::test]
    async fn readiness_and_startup_gate_ready() {
        let h = harness();
        let mut app = c("app");
        app["readinessProbe"] = json!({"exec": {"command": ["r"]}, "initialDelaySeconds": 1000});
        app["startupProbe"] = json!({"exec": {"command": ["s"]}, "initialDelaySeconds": 1000});
        let mut p = lifecycle_pod("Always", json!({"containers": [app]}));
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        let s = h.api.last_status().expect("status");
        let cs = &s.container_statuses.as_ref().expect("cs")[0];
        assert_eq!((cs.ready, cs.started), (false, Some(false)));
        assert_eq!(cond_status(&s, "Ready"), "False");
        let id = h.rt.containers_named("app")[0].id.clone();
        w.prober.set(&id, ProbeKind::Startup, true);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let s = h.api.last_status().expect("status");
        let cs = &s.container_statuses.as_ref().expect("cs")[0];
        assert_eq!((cs.ready, cs.started), (false, Some(true)));
        w.prober.set(&id, ProbeKind::Readiness, true);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        let s = h.api.last_status().expect("status");
        assert_eq!(cond_status(&s, "Ready"), "True");
        // Deleting: not ready first, then killed.
        p = with_status(p, &h.api);
        p.metadata.deletion_timestamp = Some(crate::podstatus::api_time(h.clock.now()));
        w.sync(&h.env, &p).await;
        let statuses = h.api.lock().statuses.clone();
        let before_last = &statuses[statuses.len() - 2];
        assert_eq!(cond_status(before_last, "Ready"), "False");
        assert_eq!(before_last.phase.as_deref(), Some("Running"));
    }

    #[tokio::test]
    async fn post_start_failure_kills_and_pre_stop_runs_before_stop() {
        let h = harness();
        let mut app = c("app");
        app["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}},
                                  "preStop": {"exec": {"command": ["bye"]}}});
        h.rt.state.lock().expect("lock").exec_results.insert(
            "app".into(),
            runtime::ExecSyncResult {
                stdout: b"nope".to_vec(),
                stderr: Vec::new(),
                exit_code: 3,
            },
        );
        let p = lifecycle_pod("Always", json!({"containers": [app]}));
        let mut w = PodWorker::new(&p);
        w.sync(&h.env, &p).await;
        assert!(h.api.reasons().contains(&"FailedPostStartHook".to_string()));
        let msg = h
            .api
            .lock()
            .events
            .iter()
            .find(|e| e.1 == "FailedPostStartHook")
            .map(|e| e.2.clone())
            .expect("event");
        assert!(msg.starts_with("Exec lifecycle hook ([\"sh\", \"-c\", \"exit 3\"]) for Container \"app\" in Pod \"web_default(uid-1)\" failed"), "{msg}");
        assert!(msg.ends_with("message: \"nope\""), "{msg}");
        let s = h.api.last_status().expect("status");
        assert_eq!(state_of(&s).1.as_deref(), Some("PostStartHookError"));

        // preStop: exec'd before the stop, on deletion.
        h.rt.state.lock().expect("lock").exec_results.clear();
        h.clock.advance(Duration::from_secs(1));
        let mut p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
        p = with_status(p, &h.api);
        p.metadata.deletion_timestamp = Some(crate::podstatus::api_time(h.clock.now()));
        w.sync(&h.env, &p).await;
        let calls = h.rt.calls();
        let bye = calls
            .iter()
            .position(|c| c == "exec app bye")
            .expect("preStop ran");
        let last_stop = calls
            .iter()
            .rposition(|c| c.starts_with("stop_container"))
            .expect("stop");
        assert!(bye < last_stop, "{calls:?}");
    }
}
