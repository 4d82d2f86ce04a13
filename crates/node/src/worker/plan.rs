//! The pure half of a pod's sync (kubelet's `computePodActions`): from the desired pod,
//! what the runtime reports and the worker's state, decide what to do next (create the
//! sandbox, start or restart containers, wait out a back-off, clean up old attempts), with
//! the time as an input so tests drive it without sleeping. Also the small pure facts about
//! a pod the other worker files share.

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::{ContainerState, PodSandboxStatus, SandboxState};

use super::state::WorkerState;
use crate::backoff::go_duration;
use crate::podstatus::{
    attempts_of, ephemeral_containers, init_containers, is_sidecar, restart_policy, should_restart,
    Waiting,
};
use podresize::{container_resize, ContainerResize, ContainerUpdate};
use probes::{ProbeKind, Target};

/// How soon a sync that could not do its work (the runtime unreadable, volumes not ready, a
/// start that failed) is tried again.
pub const RESYNC: Duration = Duration::from_secs(1);
/// How often a pod whose resize waits for room (`Deferred`) looks again: the room comes
/// from other pods leaving, which does not wake its worker.
pub const PENDING_RESIZE_RETRY: Duration = Duration::from_secs(5);
/// kubelet never gives a container less than this to stop (`minimumGracePeriodInSeconds`).
pub const MIN_GRACE: Duration = Duration::from_secs(2);

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
    /// The containers of the ready sandbox.
    pub fn current(&self) -> Vec<runtime::ContainerStatus> {
        let sandbox = self.ready_sandbox().map(|s| s.id.as_str());
        self.containers
            .iter()
            .filter(|c| Some(c.sandbox_id.as_str()) == sandbox)
            .cloned()
            .collect()
    }

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
    /// Resize running containers in place (new cgroup limits, no restart).
    ResizeContainers {
        containers: Vec<ContainerUpdate>,
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

pub(super) fn pod_key(pod: &Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

pub(super) fn spec_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or_default()
}

pub(super) fn min_requeue(a: Option<Duration>, b: Duration) -> Option<Duration> {
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
pub(super) fn spec_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    spec_containers(pod)
        .iter()
        .chain(init_containers(pod).iter())
        .find(|c| c.name == name)
}

/// The key of a container's restart back-off. kubelet's `getStableKey` puts the container's
/// hash in it, so a container whose definition changed (a new image) starts again at the
/// initial delay instead of the back-off its crashes had reached.
pub(super) fn restart_backoff_key(pod: &Pod, name: &str) -> String {
    match spec_container(pod, name) {
        Some(c) => format!("{name}_{}", containerspec::container_hash(c)),
        None => name.to_string(),
    }
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
    /// Running containers to resize in place, applied together after the rest of the plan.
    resizes: Vec<ContainerUpdate>,
    out: Plan,
}

/// Whether a runtime container was created from another definition than `c` (kubelet's
/// `containerChanged`). Containers from before the hash was recorded count as unchanged.
fn definition_changed(c: &Container, running: &runtime::ContainerStatus) -> bool {
    running
        .config
        .annotations
        .get(containerspec::ANNOTATION_CONTAINER_HASH)
        .is_some_and(|h| {
            *h != containerspec::container_hash(c) && *h != containerspec::full_container_hash(c)
        })
}

impl Planner<'_> {
    /// Plans one container; `restart(exit_code)` says whether an exit is restarted.
    /// `follows_spec`: a running container whose definition changed is restarted (app
    /// containers and sidecars, whatever the restart policy, as the kubelet does).
    fn container(
        &mut self,
        c: &Container,
        restart: &dyn Fn(i32) -> bool,
        follows_spec: bool,
    ) -> Step {
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
            ContainerState::Running if follows_spec && definition_changed(c, latest) => {
                self.out.actions.push(Action::KillContainer {
                    id: latest.id.clone(),
                    name: c.name.clone(),
                    message: format!("Container {} definition changed, will be restarted", c.name),
                    grace_secs: grace_period(self.pod).as_secs().try_into().unwrap_or(30),
                });
                self.out.actions.push(Action::StartContainer {
                    name: c.name.clone(),
                    attempt: next_attempt(self.observed, &c.name),
                    restart: false,
                });
                Step::Pending
            }
            ContainerState::Running
                if follows_spec
                    && self.state.resize.pending.is_none()
                    && container_resize(c, latest) == ContainerResize::Restart =>
            {
                // kubelet v1.33: a resource whose resizePolicy is RestartContainer changed.
                self.out.actions.push(Action::KillContainer {
                    id: latest.id.clone(),
                    name: c.name.clone(),
                    message: format!("Container {} resize requires restart", c.name),
                    grace_secs: grace_period(self.pod).as_secs().try_into().unwrap_or(30),
                });
                self.out.actions.push(Action::StartContainer {
                    name: c.name.clone(),
                    attempt: next_attempt(self.observed, &c.name),
                    restart: false,
                });
                Step::Pending
            }
            ContainerState::Running | ContainerState::Unknown => {
                if follows_spec && self.state.resize.pending.is_none() {
                    if let ContainerResize::InPlace {
                        resources,
                        allocation,
                    } = container_resize(c, latest)
                    {
                        self.resizes.push(ContainerUpdate {
                            id: latest.id.clone(),
                            name: c.name.clone(),
                            resources,
                            allocation,
                        });
                    }
                }
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
                        .remaining_since_update(&restart_backoff_key(self.pod, &c.name), self.now)
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
                match self.state.restart_backoff.remaining_since(
                    &restart_backoff_key(self.pod, &c.name),
                    finished,
                    self.now,
                ) {
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

    /// kubelet starts an ephemeral container once, whenever the pod's sandbox is up (even
    /// before initialization is done), and never restarts it: one that exited, or whose
    /// log shows it ran, stays as it is.
    fn ephemeral(&mut self, name: &str) {
        match attempts_of(&self.observed.containers, name).first() {
            None if !self.observed.log_attempts.contains_key(name) => {
                self.out.actions.push(Action::StartContainer {
                    name: name.to_string(),
                    attempt: 0,
                    restart: false,
                });
            }
            Some(l)
                if l.state == ContainerState::Created
                    && !self.state.failed_starts.contains_key(&l.id) =>
            {
                self.out.actions.push(Action::StartCreated {
                    id: l.id.clone(),
                    name: name.to_string(),
                });
            }
            None | Some(_) => {}
        }
    }

    fn back_off(&mut self, c: &Container, left: Duration) {
        let key = restart_backoff_key(self.pod, &c.name);
        if let Some(delay) = self.state.restart_backoff.delay(&key, self.now) {
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
    let current = observed.current();
    let mut p = Planner {
        pod,
        observed,
        state,
        now,
        current,
        resizes: Vec::new(),
        out,
    };
    if sandbox.is_some() {
        for e in ephemeral_containers(pod) {
            p.ephemeral(&e.container.name);
        }
    }
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
            let step = p.container(c, &|_| true, true);
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
            match p.container(c, &|code| code != 0 && !never, false) {
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
            p.container(c, &|code| should_restart(pod, code), true);
        }
    }
    if !p.resizes.is_empty() {
        let containers = std::mem::take(&mut p.resizes);
        p.out.actions.push(Action::ResizeContainers { containers });
    }
    p.out
}

/// The container id whose PID namespace ephemeral container `name` joins: its target's
/// newest running attempt in the ready sandbox. `Ok(None)` without a target; `Err` with
/// the target's name when it does not run.
pub(super) fn pid_target(
    observed: &Observed,
    target: Option<&str>,
) -> Result<Option<String>, String> {
    let Some(target) = target else {
        return Ok(None);
    };
    let sandbox = observed.ready_sandbox().map(|s| s.id.as_str());
    observed
        .containers
        .iter()
        .filter(|c| Some(c.sandbox_id.as_str()) == sandbox && c.config.name == target)
        .filter(|c| c.state == ContainerState::Running)
        .max_by_key(|c| c.config.attempt)
        .map(|c| Some(c.id.clone()))
        .ok_or_else(|| target.to_string())
}

/// Running containers (newest attempts in the ready sandbox) that have probes.
pub(super) fn probe_targets(pod: &Pod, observed: &Observed) -> Vec<Target> {
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

pub(super) fn is_deleting(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
}

pub(super) fn api_phase(pod: &Pod) -> Option<&str> {
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

/// kubelet's `activeDeadlineHandler`: the reason and message a pod ends `Failed` with once it
/// has been active on the node for `activeDeadlineSeconds` since its `startTime`.
pub const DEADLINE_REASON: &str = "DeadlineExceeded";
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";

/// Whether the pod's `activeDeadlineSeconds` has passed at `now`, counted from the start
/// time in `status` (the last one written, or the API's). The deadline may be set or
/// lowered while the pod runs, so it is read from the current spec at every sync.
pub fn deadline_exceeded(
    pod: &Pod,
    status: Option<&k8s_openapi::api::core::v1::PodStatus>,
    now: Timestamp,
) -> bool {
    until_deadline(pod, status, now).is_some_and(|left| left.is_zero())
}

/// What is left of the pod's `activeDeadlineSeconds` (zero once it has passed), when it has
/// one and has started.
pub fn until_deadline(
    pod: &Pod,
    status: Option<&k8s_openapi::api::core::v1::PodStatus>,
    now: Timestamp,
) -> Option<Duration> {
    let limit = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds)?;
    let start = status
        .and_then(|s| s.start_time.as_ref())
        .or_else(|| pod.status.as_ref().and_then(|s| s.start_time.as_ref()))?;
    let limit = Duration::from_secs(u64::try_from(limit).unwrap_or(0));
    let ran = Duration::try_from(now.duration_since(start.0)).unwrap_or(Duration::ZERO);
    Some(limit.saturating_sub(ran))
}
