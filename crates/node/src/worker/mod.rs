//! One pod's worker, kubelet's `syncPod`: `plan` is the pure step that turns the desired
//! pod, what the runtime reports and the worker's state into actions; `sync` here observes
//! the runtime, runs the actions (`start`, `terminate`), and writes status and events
//! (`status`). `env` builds the pod's environment, `volumes` calls the volume manager, and
//! `deps` is what all workers share.

mod deps;
mod env;
mod observe;
mod plan;
mod start;
mod state;
mod status;
mod terminate;
mod volumes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use runtime::ContainerState;
use tokio::sync::Notify;

pub use deps::{ImagePulls, NodeFacts, WorkerDeps};

use crate::podstatus::{attempts_of, ephemeral_containers, Waiting};
use observe::{observe, pod_net};
use plan::{
    api_phase, is_deleting, min_requeue, pid_target, plan, pod_key, spec_container, Action,
    Observed, Plan, MIN_GRACE, PENDING_RESIZE_RETRY, RESYNC,
};
use podapi::EventType;
use probes::PodProber;
use state::{Lifecycle, WorkerState};
use status::{refresh_probes, write_status};
use volumes::{ensure_volumes, teardown_volumes};

/// kubelet's pod worker retries a sync that failed (one skipped by CrashLoopBackOff among
/// them) after `backOffPeriod`, 10 s; each such sync records one `BackOff` event.
const BACKOFF_EVENT_PERIOD: Duration = Duration::from_secs(10);

/// A pod's worker: its state plus the effectful half of the sync.
pub struct PodWorker {
    pub state: WorkerState,
    /// The pod's probes (tasks keyed by container id).
    pub prober: PodProber,
}

impl PodWorker {
    /// Makes the next sync rewrite the pod's volumes whatever their last refresh.
    pub fn refresh_volumes(&mut self) {
        self.state.volumes.last_sync = None;
    }

    /// A worker for `pod`; `poke` wakes it when a probe's result changes.
    pub fn new(pod: &Pod, poke: Arc<Notify>) -> Self {
        Self {
            state: WorkerState::new(pod),
            prober: PodProber::new(poke),
        }
    }

    /// One sync of a pod that exists in the API; returns when to sync again (`None`: only
    /// on a pod update).
    pub async fn sync(&mut self, deps: &WorkerDeps, pod: &Pod) -> Option<Duration> {
        match self.state.lifecycle {
            Lifecycle::Terminated => return None,
            Lifecycle::Finished if is_deleting(pod) => {
                terminate::delete_from_api(deps, &mut self.state, pod).await;
                return terminate::retry_unless_terminated(&self.state);
            }
            Lifecycle::Finished => return None,
            Lifecycle::Syncing => {}
        }
        if is_deleting(pod) {
            return self.terminate(deps, pod).await;
        }
        // A pod's start is measured over its first sync and the syncs that act on it.
        let first = !std::mem::replace(&mut self.state.synced, true);
        let measuring = self.state.starting.is_some();
        let measure = |phase: &str, since: Instant, acted: bool| {
            if measuring && (first || acted) {
                deps.metrics.phase(phase, since.elapsed());
            }
        };
        let t = Instant::now();
        let observed = match observe(deps, &mut self.state, pod).await {
            Ok(o) => o,
            Err(err) => {
                tracing::warn!(pod = ?pod_key(pod), error = %err, "observing runtime failed");
                return Some(RESYNC);
            }
        };
        measure("observe", t, false);
        // A pod the API already shows as finished never runs again (agent restarted after
        // it ended): only make sure nothing of it is left.
        if matches!(api_phase(pod), Some("Succeeded" | "Failed")) {
            terminate::remove_sandboxes(deps, &observed).await;
            teardown_volumes(deps, &mut self.state.volumes, pod);
            self.state.lifecycle = Lifecycle::Finished;
            return None;
        }
        let now = deps.clock.now();
        if plan::deadline_exceeded(pod, self.state.last_status.as_ref(), now) {
            terminate::fail_running(
                deps,
                &mut self.state,
                &mut self.prober,
                pod,
                &observed,
                terminate::Ending {
                    reason: plan::DEADLINE_REASON,
                    message: plan::DEADLINE_MESSAGE,
                    grace: plan::grace_period(pod),
                    disruption: false,
                    event: EventType::Normal,
                },
            )
            .await;
            return None;
        }
        refresh_probes(deps, &mut self.state, &mut self.prober, pod, &observed);
        // kubelet's WaitForAttachAndMount: nothing of the pod starts before its volumes.
        let t = Instant::now();
        let volumes_ready = ensure_volumes(deps, &mut self.state.volumes, pod).await;
        measure("volumes", t, false);
        let current = observed.current();
        self.state.resize.pending = podresize::wanted(pod, &current)
            .then(|| {
                let pods = deps.pods.read().unwrap_or_else(|e| e.into_inner());
                let node = podresize::Allocatable {
                    cpu_millis: (deps.node.cpu * 1000.0) as u64,
                    memory_bytes: deps.node.memory as u64,
                };
                podresize::pending(pod, node, pods.values().map(|p| &**p))
            })
            .flatten();
        let step = if volumes_ready {
            plan(pod, &observed, &self.state, now)
        } else {
            Plan {
                requeue: Some(RESYNC),
                ..Plan::default()
            }
        };
        self.record_back_offs(deps, pod, &step, now).await;
        let acted = !step.actions.is_empty();
        let mut requeue = step.requeue;
        if acted {
            if let Err(delay) = self.run(deps, pod, &observed, &step.actions).await {
                requeue = min_requeue(requeue, delay);
            }
        }
        let observed = if acted {
            let t = Instant::now();
            let again = match observe(deps, &mut self.state, pod).await {
                Ok(o) => o,
                Err(_) => observed,
            };
            measure("observe", t, true);
            again
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
        refresh_probes(deps, &mut self.state, &mut self.prober, pod, &observed);
        let status = write_status(deps, &mut self.state, pod, &observed, false).await;
        self.started(deps, pod, status.phase.as_deref());
        if matches!(status.phase.as_deref(), Some("Succeeded" | "Failed")) {
            self.prober.stop();
            // kubelet stops a finished pod's sandbox; logs stay until the pod is deleted.
            terminate::remove_sandboxes(deps, &observed).await;
            teardown_volumes(deps, &mut self.state.volumes, pod);
            self.state.lifecycle = Lifecycle::Finished;
            return None;
        }
        // Exits, probe results, pod updates and changes of the objects its volumes show wake
        // the worker as they happen; it re-syncs every `syncFrequency` all the same (kubelet's
        // periodic sync), sooner when a back-off or the deadline ends or a resize waits.
        let requeue = match plan::until_deadline(pod, self.state.last_status.as_ref(), now) {
            Some(left) => min_requeue(requeue, left),
            None => requeue,
        };
        let requeue = match &self.state.resize.pending {
            Some(podresize::Pending::Deferred(_)) => min_requeue(requeue, PENDING_RESIZE_RETRY),
            _ => requeue,
        };
        Some(requeue.map_or(deps.sync_frequency, |r| r.min(deps.sync_frequency)))
    }

    /// Ends the measure of the pod's start once its written status shows it Running (kubelet's
    /// pod start duration, and its startup SLI: from the pod's creation, image pulls left
    /// out), or drops it when the pod finished without being seen running.
    fn started(&mut self, deps: &WorkerDeps, pod: &Pod, phase: Option<&str>) {
        let Some(seen) = self.state.starting else {
            return;
        };
        let written = self
            .state
            .last_status
            .as_ref()
            .and_then(|s| s.phase.as_deref());
        match phase {
            Some("Running") if written == Some("Running") => {
                deps.metrics.pod_start.observe(seen.elapsed());
                if let Some(created) = pod.metadata.creation_timestamp.as_ref() {
                    let since = deps.clock.now().duration_since(created.0);
                    let since = Duration::try_from(since).unwrap_or_default();
                    let sli = since.saturating_sub(self.state.image_time);
                    deps.metrics.pod_start_sli.observe(sli);
                }
                self.state.starting = None;
            }
            Some("Succeeded" | "Failed") => self.state.starting = None,
            _ => {}
        }
    }

    /// Back-off decisions replace older reasons; start failures are set by `run`. kubelet
    /// records `BackOff` on each sync skipped by the back-off: the one that follows the exit
    /// (PLEG), then its pod worker's retries every 10 s. We re-observe every second, so
    /// record on entering the back-off and then once per `BACKOFF_EVENT_PERIOD`.
    async fn record_back_offs(
        &mut self,
        deps: &WorkerDeps,
        pod: &Pod,
        step: &Plan,
        now: Timestamp,
    ) {
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
                deps.events
                    .record(pod, Some(name), EventType::Warning, "BackOff", &msg, now)
                    .await;
            }
        }
    }

    /// Runs the planned actions in order. `Err(delay)` when a step failed and the pod
    /// should be retried after `delay`.
    async fn run(
        &mut self,
        deps: &WorkerDeps,
        pod: &Pod,
        observed: &Observed,
        actions: &[Action],
    ) -> Result<(), Duration> {
        let mut sandbox = observed.ready_sandbox().cloned();
        let mut result = Ok(());
        for action in actions {
            if !matches!(
                action,
                Action::StartContainer { .. } | Action::StartCreated { .. }
            ) {
                // What the other actions record goes after the starts' events.
                self.state.events.flush().await;
            }
            match action {
                Action::RemoveSandbox { id } => {
                    terminate::teardown_sandbox(deps, id, "removing stale sandbox failed").await;
                }
                Action::CreateSandbox { attempt } => {
                    sandbox = Some(start::create_sandbox(deps, pod, *attempt).await?);
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
                    let net = pod_net(deps, pod, observed);
                    terminate::kill_one(deps, pod, c, grace, Some(message), &net).await;
                    self.state.probe_kills.remove(id);
                    tracing::debug!(container = %name, "killed");
                }
                Action::ResizeContainers { containers } => {
                    let Some(sandbox) = sandbox.as_ref() else {
                        continue;
                    };
                    self.state.resize.error =
                        podresize::apply(deps.runtime.as_ref(), pod, sandbox, containers)
                            .await
                            .err();
                    if self.state.resize.error.is_some() {
                        result = Err(RESYNC);
                    }
                }
                Action::RemoveContainer { id } => {
                    if let Err(err) = deps.runtime.remove_container(id).await {
                        tracing::debug!(container = %id, error = %err, "removing old container failed");
                    }
                }
                Action::StartCreated { id, name } => {
                    // The failure is recorded; the plan retries the container after its
                    // back-off.
                    if let Err(err) =
                        start::start_created(deps, &mut self.state, pod, id, name).await
                    {
                        tracing::debug!(container = %name, error = %err, "starting created container failed");
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
                    let (container, target) = match spec_container(pod, name) {
                        // A resize that waits is not in force: a restart keeps what the
                        // container was given (kubelet starts from the allocation).
                        Some(c) if self.state.resize.pending.is_some() => {
                            let previous = attempts_of(&observed.containers, name);
                            (podresize::as_allocated(c, previous.first().copied()), None)
                        }
                        Some(c) => (c.clone(), None),
                        None => match ephemeral_containers(pod)
                            .into_iter()
                            .find(|e| e.container.name == *name)
                        {
                            Some(e) => (e.container, e.target),
                            None => continue,
                        },
                    };
                    let pid_target = match pid_target(observed, target.as_deref()) {
                        Ok(t) => t,
                        Err(target) => {
                            // CRI refuses a target that does not run; kubelet retries.
                            let message = format!("container {target:?} is not running");
                            self.state.waiting.insert(
                                name.clone(),
                                Waiting::new("CreateContainerError", message),
                            );
                            result = Err(RESYNC);
                            continue;
                        }
                    };
                    if *restart {
                        let key = plan::restart_backoff_key(pod, name);
                        self.state.restart_backoff.next(&key, deps.clock.now());
                    }
                    if let Err(err) = start::start_container(
                        deps,
                        &mut self.state,
                        pod,
                        &container,
                        sandbox,
                        *attempt,
                        pid_target,
                    )
                    .await
                    {
                        tracing::debug!(container = %name, error = %err, "container did not start");
                        result = Err(RESYNC);
                    }
                }
            }
        }
        result
    }

    /// kubelet's termination of a pod being deleted: kill with the grace period, write the
    /// terminal status, release the sandbox, then delete the API object.
    pub async fn terminate(&mut self, deps: &WorkerDeps, pod: &Pod) -> Option<Duration> {
        terminate::terminate(deps, &mut self.state, &mut self.prober, pod).await
    }

    /// kubelet's node shutdown of a pod still running: killed with `grace`, it ends `Failed`
    /// with the shutdown reason and message.
    pub async fn shut_down(&mut self, deps: &WorkerDeps, pod: &Pod, grace: Duration) {
        let ending = terminate::Ending {
            reason: node_shutdown::REASON,
            message: node_shutdown::MESSAGE,
            grace: grace.max(MIN_GRACE),
            disruption: true,
            event: EventType::Normal,
        };
        self.end_running(deps, pod, ending).await;
    }

    /// kubelet's node-pressure eviction of a pod still running (`killPodNow` with the
    /// eviction's grace period, which overrides the pod's own, as it does): a Warning
    /// `Evicted` event, the `DisruptionTarget` condition, its containers killed with `grace`,
    /// and the pod ends `Failed` with reason `Evicted` and `message`.
    pub async fn evict(&mut self, deps: &WorkerDeps, pod: &Pod, message: &str, grace: Duration) {
        let ending = terminate::Ending {
            reason: crate::admission::EVICTED,
            message,
            grace,
            disruption: true,
            event: EventType::Warning,
        };
        self.end_running(deps, pod, ending).await;
    }

    /// The node's own ending of a pod it still runs (shutdown, eviction); a pod already
    /// ending or ended is left to that.
    async fn end_running(&mut self, deps: &WorkerDeps, pod: &Pod, ending: terminate::Ending<'_>) {
        if self.state.lifecycle != Lifecycle::Syncing {
            return;
        }
        let Ok(observed) = observe(deps, &mut self.state, pod).await else {
            return;
        };
        terminate::fail_running(
            deps,
            &mut self.state,
            &mut self.prober,
            pod,
            &observed,
            ending,
        )
        .await;
    }

    /// The pod is gone from the API (force-deleted, or deleted while the agent was down):
    /// kill what is left, release the sandbox and drop its logs.
    pub async fn cleanup_gone(&mut self, deps: &WorkerDeps, pod: &Pod) {
        terminate::cleanup_gone(deps, &mut self.state, pod).await;
    }
}

#[cfg(test)]
mod tests;
