//! The worker's eyes: what the runtime holds for a pod (its sandboxes, containers with their
//! termination messages, and the log attempts left on disk), and where the pod's probes and
//! hooks connect.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use runtime::{ContainerState, PodSandboxStatus, RuntimeError};

use super::deps::WorkerDeps;
use super::plan::{pod_key, spec_container, spec_containers, Observed};
use super::state::WorkerState;
use crate::network;
use crate::podstatus::{ephemeral_containers, init_containers};
use crate::termination;
use probes::Dialer;
use probes::PodNet;

/// Reads what the runtime holds for the pod, remembering how its images are shown.
pub async fn observe(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
) -> Result<Observed, RuntimeError> {
    let (ns, name, uid) = pod_key(pod);
    let sandboxes: Vec<_> = deps
        .sandboxes
        .list(deps.runtime.as_ref())
        .await?
        .iter()
        .filter(|s| s.config.uid == uid)
        .cloned()
        .collect();
    let mut containers = Vec::new();
    for s in &sandboxes {
        containers.extend(deps.runtime.list_containers(Some(&s.id)).await?);
    }
    for c in &containers {
        if !state.image_refs.contains_key(&c.config.image_id) {
            if let Ok(Some(info)) = deps.runtime.image_status(&c.config.image).await {
                state.remember_image(&info);
            }
        }
    }
    let dir = crilog::pod_log_dir(&deps.log_root, &ns, &name, &uid);
    let mut log_attempts = HashMap::new();
    let ephemeral: Vec<String> = ephemeral_containers(pod)
        .into_iter()
        .map(|e| e.container.name)
        .collect();
    let names = spec_containers(pod)
        .iter()
        .chain(init_containers(pod))
        .map(|c| &c.name)
        .chain(&ephemeral);
    for name in names {
        if let Some(max) = crilog::log_attempts(&dir.join(name)).last() {
            log_attempts.insert(name.clone(), *max);
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

/// Where probes and hooks of the pod connect from and to: the sandbox's namespace and IP.
pub fn sandbox_net(deps: &WorkerDeps, pod: &Pod, sandbox: Option<&PodSandboxStatus>) -> PodNet {
    let pod_ip = network::pod_ip(&deps.node.host_ip, pod, sandbox)
        .parse()
        .ok();
    PodNet {
        dialer: Dialer {
            netns: sandbox.and_then(|s| s.netns_path.clone()),
            pod_ip,
        },
        pod_ip,
    }
}

/// Where probes and hooks of the pod connect from and to, for its ready sandbox.
pub fn pod_net(deps: &WorkerDeps, pod: &Pod, observed: &Observed) -> PodNet {
    sandbox_net(deps, pod, observed.ready_sandbox())
}
