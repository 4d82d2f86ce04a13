//! What the worker reports: the probers' current results taken into its state, and the pod
//! status computed from what it observed and written only when it changed (kubelet's status
//! manager).

use k8s_openapi::api::core::v1::{Pod, PodStatus};

use super::deps::WorkerDeps;
use super::observe::pod_net;
use super::plan::{pod_key, probe_targets, Observed};
use super::state::WorkerState;
use crate::network;
use crate::podstatus::{pod_status, StatusInput};
use probes::{PodProber, ProbeDeps, ProbeView};

/// Starts and stops probe tasks to match the running containers and takes the probers'
/// current results into the state.
pub fn refresh_probes(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    prober: &mut PodProber,
    pod: &Pod,
    observed: &Observed,
) {
    let targets = probe_targets(pod, observed);
    let probe_deps = ProbeDeps {
        runtime: deps.runtime.clone(),
        events: deps.events.clone(),
        clock: deps.clock.clone(),
        results: Some(deps.metrics.probes.clone()),
    };
    let net = pod_net(deps, pod, observed);
    prober.reconcile(&probe_deps, pod, &targets, &net);
    let (view, kills) = prober.view(&targets);
    let all_unready = state.probe_view.all_unready;
    state.probe_view = ProbeView {
        all_unready,
        ..view
    };
    state.probe_kills = kills;
}

/// The runtime handler the pod runs with: its newest sandbox's, else the default one when
/// it names no RuntimeClass; unknown until its sandbox exists otherwise.
fn runtime_handler<'a>(pod: &Pod, observed: &'a Observed) -> Option<&'a str> {
    match observed.sandboxes.iter().max_by_key(|s| s.created_at) {
        Some(sandbox) => Some(sandbox.config.runtime_handler.as_str()),
        None => pod
            .spec
            .as_ref()
            .and_then(|s| s.runtime_class_name.as_deref())
            .is_none_or(str::is_empty)
            .then_some(""),
    }
}

/// Computes the status and writes it when it differs from the last one written.
pub async fn write_status(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
    observed: &Observed,
    terminal: bool,
) -> PodStatus {
    let mut status = pod_status(&StatusInput {
        pod,
        recursive_read_only_mounts: runtime_handler(pod, observed)
            .is_some_and(|h| deps.runtime.status().recursive_read_only_mounts(h)),
        containers: &observed.containers,
        sandbox_ready: observed.ready_sandbox().is_some(),
        waiting: &state.waiting,
        image_refs: &state.image_refs,
        host_ip: &deps.node.host_ip,
        now: deps.clock.now(),
        terminal,
        probes: &state.probe_view,
    });
    network::fill_status(pod, observed.ready_sandbox(), &mut status);
    let current = observed.current();
    if !podresize::wanted(pod, &current) {
        state.resize.error = None;
    }
    podresize::fill_status(
        &mut status,
        pod,
        &current,
        &state.resize,
        state.last_status.as_ref(),
        deps.clock.now(),
    );
    if let Some((reason, message)) = &state.failure {
        status.phase = Some("Failed".into());
        status.reason = Some(reason.clone());
        status.message = Some(message.clone());
    }
    if let Some(cond) = &state.disruption {
        let conds = status.conditions.get_or_insert_with(Vec::new);
        conds.retain(|c| c.type_ != cond.type_);
        conds.push(cond.clone());
    }
    // Whoever sees the status must find the events that led to it.
    state.events.flush().await;
    if state.last_status.as_ref() != Some(&status) {
        let (ns, name, _) = pod_key(pod);
        let t = std::time::Instant::now();
        let patched = deps.api.patch_pod_status(&ns, &name, &status).await;
        if state.starting.is_some() {
            deps.metrics.phase("status_patch", t.elapsed());
        }
        match patched {
            Ok(()) => state.last_status = Some(status.clone()),
            Err(err) => {
                tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "status update failed")
            }
        }
    }
    status
}
