//! Stopping things, kubelet's `killPod` and pod cleanup: one container with its `Killing`
//! event, preStop hook and grace period; all of a pod's containers (sidecars last, in
//! reverse order); the termination of a pod being deleted (not ready, kill, final status,
//! sandbox and volumes released, API object deleted); and the cleanup of a pod gone from its
//! source.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use runtime::ContainerState;

use super::deps::WorkerDeps;
use super::observe::{observe, pod_net};
use super::plan::{grace_period, pod_key, spec_container, Observed, MIN_GRACE, RESYNC};
use super::state::{Lifecycle, WorkerState};
use super::status::write_status;
use super::volumes::teardown_volumes;
use crate::podstatus::{init_containers, is_sidecar};
use crate::sandbox;
use podapi::EventType;
use probes::{run_hook, Hook};
use probes::{PodNet, PodProber};

/// Stops one container as kubelet's killContainer does: `Killing` event, the preStop hook
/// (which counts against the grace period), then the stop signal with what is left of it
/// (never less than `MIN_GRACE`).
pub async fn kill_one(
    deps: &WorkerDeps,
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
        deps.event(
            pod,
            Some(name),
            EventType::Normal,
            "Killing",
            message.unwrap_or(&default),
        )
        .await;
        let spec = spec_container(pod, name);
        if let Some((spec, handler)) = spec.and_then(|s| Hook::PreStop.of(s).map(|h| (s, h))) {
            let started = Instant::now();
            let result = tokio::time::timeout(
                grace,
                run_hook(deps.runtime.as_ref(), pod, spec, &c.id, handler, net, grace),
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
                deps.event(
                    pod,
                    Some(name),
                    EventType::Warning,
                    "FailedPreStopHook",
                    &msg,
                )
                .await;
            }
            grace = grace.saturating_sub(started.elapsed()).max(MIN_GRACE);
        }
    }
    if let Err(err) = deps.runtime.stop_container(&c.id, grace).await {
        tracing::warn!(container = %c.id, error = %err, "stopping container failed");
    }
}

/// Stops every live container of the pod with `grace` (each with a Killing event and its
/// preStop hook): app and init containers at once, then sidecars one by one in reverse
/// order (KEP-753).
async fn kill_all(deps: &WorkerDeps, pod: &Pod, observed: &Observed, grace: Duration) {
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
    let net = pod_net(deps, pod, observed);
    let (sidecars, others): (Vec<_>, Vec<_>) = live
        .into_iter()
        .partition(|c| sidecar_names.contains(&c.config.name.as_str()));
    let stops = others
        .iter()
        .map(|c| kill_one(deps, pod, c, grace, None, &net));
    futures::future::join_all(stops).await;
    for name in sidecar_names.iter().rev() {
        for c in sidecars.iter().filter(|c| c.config.name == *name) {
            kill_one(deps, pod, c, grace, None, &net).await;
        }
    }
}

/// Releases one sandbox (network, processes, files) and forgets the sandbox listing.
pub async fn teardown_sandbox(deps: &WorkerDeps, id: &str, what: &str) {
    let result = sandbox::teardown(deps.runtime.as_ref(), id).await;
    deps.sandboxes.invalidate();
    sandbox::log_teardown(result, what);
}

/// Stops every sandbox of the pod: network down, processes gone.
async fn stop_sandboxes(deps: &WorkerDeps, observed: &Observed) {
    for s in &observed.sandboxes {
        let result = sandbox::stop(deps.runtime.as_ref(), &s.id).await;
        sandbox::log_teardown(result.map_err(|e| vec![e]), "stopping sandbox failed");
    }
    deps.sandboxes.invalidate();
}

/// Releases every sandbox of the pod.
pub async fn remove_sandboxes(deps: &WorkerDeps, observed: &Observed) {
    for s in &observed.sandboxes {
        teardown_sandbox(deps, &s.id, "removing sandbox failed").await;
    }
}

/// kubelet's termination of a pod being deleted: kill with the grace period, write the
/// terminal status, stop the sandbox (network and processes) and unmount the volumes, then
/// delete the API object; the sandbox's files and cgroups go after it, as the kubelet leaves
/// a stopped sandbox to its garbage collection (an agent that stops in between finds the
/// sandbox orphaned when it starts, and removes it then).
pub async fn terminate(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    prober: &mut PodProber,
    pod: &Pod,
) -> Option<Duration> {
    if !state.killed {
        let observed = match observe(deps, state, pod).await {
            Ok(o) => o,
            Err(err) => {
                tracing::warn!(error = %err, "observing runtime failed");
                return Some(RESYNC);
            }
        };
        let mut t = Instant::now();
        let mut phase = |name: &str| {
            deps.metrics.stop_phase(name, t.elapsed());
            t = Instant::now();
        };
        // kubelet reports a terminating pod not ready before it stops anything.
        state.probe_view.all_unready = true;
        write_status(deps, state, pod, &observed, false).await;
        phase("not_ready_status");
        prober.stop();
        kill_all(deps, pod, &observed, grace_period(pod)).await;
        phase("kill");
        let observed = observe(deps, state, pod).await.unwrap_or(observed);
        state.waiting.clear();
        write_status(deps, state, pod, &observed, true).await;
        phase("terminated_status");
        stop_sandboxes(deps, &observed).await;
        phase("sandbox_stop");
        teardown_volumes(deps, &mut state.volumes, pod);
        phase("volumes");
        state.killed = true;
        state.stopped_sandboxes = observed.sandboxes.iter().map(|s| s.id.clone()).collect();
    }
    let t = Instant::now();
    delete_from_api(deps, state, pod).await;
    deps.metrics.stop_phase("delete", t.elapsed());
    if state.lifecycle == Lifecycle::Terminated {
        let t = Instant::now();
        for id in std::mem::take(&mut state.stopped_sandboxes) {
            teardown_sandbox(deps, &id, "removing sandbox failed").await;
        }
        deps.metrics.stop_phase("sandbox_remove", t.elapsed());
    }
    retry_unless_terminated(state)
}

/// Why and how the node ends a running pod itself: the `Failed` status's reason and message,
/// and the grace period its containers get.
pub struct Ending<'a> {
    pub reason: &'a str,
    pub message: &'a str,
    pub grace: Duration,
    /// The pod is disrupted, not failed by its own doing: kubelet adds the `DisruptionTarget`
    /// condition (reason `TerminationByKubelet`) with the message.
    pub disruption: bool,
    /// The type of the event that says why (`Warning` for an eviction).
    pub event: EventType,
}

/// kubelet's reason on the `DisruptionTarget` condition of pods it ends itself.
pub const TERMINATION_BY_KUBELET: &str = "TerminationByKubelet";

/// kubelet's end of a pod the node fails itself while it runs (`ShouldEvict`: an exceeded
/// `activeDeadlineSeconds`; node-pressure eviction; node shutdown): an event with the
/// reason, not ready,
/// every container killed with `grace`, then the `Failed` status with the reason
/// and message; the sandbox and volumes are released and the pod is finished.
pub async fn fail_running(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    prober: &mut PodProber,
    pod: &Pod,
    observed: &Observed,
    ending: Ending<'_>,
) {
    deps.event(pod, None, ending.event, ending.reason, ending.message)
        .await;
    state.failure = Some((ending.reason.to_string(), ending.message.to_string()));
    if ending.disruption {
        state.disruption = Some(k8s_openapi::api::core::v1::PodCondition {
            type_: "DisruptionTarget".into(),
            status: "True".into(),
            reason: Some(TERMINATION_BY_KUBELET.into()),
            message: Some(ending.message.to_string()),
            last_transition_time: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
                deps.clock.now(),
            )),
            last_probe_time: None,
            observed_generation: None,
        });
    }
    state.probe_view.all_unready = true;
    prober.stop();
    kill_all(deps, pod, observed, ending.grace).await;
    let observed = observe(deps, state, pod)
        .await
        .unwrap_or_else(|_| observed.clone());
    state.waiting.clear();
    write_status(deps, state, pod, &observed, true).await;
    remove_sandboxes(deps, &observed).await;
    teardown_volumes(deps, &mut state.volumes, pod);
    state.lifecycle = Lifecycle::Finished;
}

/// Resync until the API object is gone.
pub fn retry_unless_terminated(state: &WorkerState) -> Option<Duration> {
    (state.lifecycle != Lifecycle::Terminated).then_some(RESYNC)
}

/// kubelet's final delete of the API object (grace 0, uid precondition).
pub async fn delete_from_api(deps: &WorkerDeps, state: &mut WorkerState, pod: &Pod) {
    let (ns, name, uid) = pod_key(pod);
    match deps.api.delete_pod(&ns, &name, &uid).await {
        Ok(()) => state.lifecycle = Lifecycle::Terminated,
        Err(err) => {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "deleting pod failed")
        }
    }
}

/// The pod is gone from the API (force-deleted, or deleted while the agent was down):
/// kill what is left, release the sandbox and drop its logs.
pub async fn cleanup_gone(deps: &WorkerDeps, state: &mut WorkerState, pod: &Pod) {
    let (ns, name, uid) = pod_key(pod);
    if let Ok(observed) = observe(deps, state, pod).await {
        // kubelet kills a pod that left its source (force-deleted from the API, a static
        // pod's file removed) with the pod's own grace period, at least 2 s.
        kill_all(deps, pod, &observed, grace_period(pod)).await;
        remove_sandboxes(deps, &observed).await;
    }
    teardown_volumes(deps, &mut state.volumes, pod);
    let dir = crilog::pod_log_dir(&deps.log_root, &ns, &name, &uid);
    if let Err(err) = std::fs::remove_dir_all(&dir) {
        if err.kind() != std::io::ErrorKind::NotFound {
            tracing::warn!(dir = %dir.display(), error = %err, "removing pod logs failed");
        }
    }
    deps.events.forget(&uid);
    state.lifecycle = Lifecycle::Terminated;
}
