//! Pod status as kubelet v1.33 generates it (`generateAPIPodStatus`, `getPhase`,
//! `convertToAPIContainerStatuses`, the condition generators), from the pod, what the
//! runtime reports, the worker's pending start failures and the probers' results. Pure: time
//! is an input. Init containers (regular and restartable "sidecars", KEP-753) follow
//! kubelet v1.33's rules for their statuses, the `Initialized` condition and the phase.

use std::collections::HashMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStateWaiting,
    ContainerStatus, ContainerUser, HostIP, LinuxContainerUser, Pod, PodCondition, PodIP,
    PodStatus, VolumeMountStatus,
};
use runtime::ContainerState as RtState;

use crate::qos::qos_class;
use podapi::api_time;
use probes::ProbeView;

/// Why a container is not running right now (kubelet's waiting reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

impl Waiting {
    pub fn new(reason: &str, message: impl Into<String>) -> Self {
        Self {
            reason: reason.to_string(),
            message: message.into(),
        }
    }
}

/// Whether `c` is a sidecar: an init container with `restartPolicy: Always` (KEP-753).
pub fn is_sidecar(c: &k8s_openapi::api::core::v1::Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

/// The pod's init containers.
pub fn init_containers(pod: &Pod) -> &[k8s_openapi::api::core::v1::Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or_default()
}

/// One of the pod's ephemeral containers: what it shares with a container (upstream's
/// `EphemeralContainerCommon`) and the container whose PID namespace it joins.
#[derive(Debug, Clone)]
pub struct Ephemeral {
    pub container: k8s_openapi::api::core::v1::Container,
    pub target: Option<String>,
}

/// The pod's ephemeral containers.
pub fn ephemeral_containers(pod: &Pod) -> Vec<Ephemeral> {
    pod.spec
        .as_ref()
        .and_then(|s| s.ephemeral_containers.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| {
            let mut v = serde_json::to_value(e).ok()?;
            v.as_object_mut()?.remove("targetContainerName");
            Some(Ephemeral {
                container: serde_json::from_value(v).ok()?,
                target: e.target_container_name.clone().filter(|t| !t.is_empty()),
            })
        })
        .collect()
}

/// Everything the status is computed from.
pub struct StatusInput<'a> {
    pub pod: &'a Pod,
    /// The pod's runtime handler makes recursively read-only mounts (KEP-3857).
    pub recursive_read_only_mounts: bool,
    /// Every runtime container of this pod (all attempts, all sandboxes).
    pub containers: &'a [runtime::ContainerStatus],
    pub sandbox_ready: bool,
    /// Pending start failures and back-offs by container name.
    pub waiting: &'a HashMap<String, Waiting>,
    /// Image id (`sha256:…`) → what kubelet shows as imageID (`repo@sha256:…`).
    pub image_refs: &'a HashMap<String, String>,
    pub host_ip: &'a str,
    pub now: Timestamp,
    /// The pod is being terminated and will not run containers again.
    pub terminal: bool,
    /// Startup and readiness results of running containers.
    pub probes: &'a ProbeView,
}

/// Runtime containers of `name`, newest attempt first.
pub fn attempts_of<'a>(
    containers: &'a [runtime::ContainerStatus],
    name: &str,
) -> Vec<&'a runtime::ContainerStatus> {
    let mut list: Vec<_> = containers
        .iter()
        .filter(|c| c.config.name == name)
        .collect();
    list.sort_by_key(|c| std::cmp::Reverse((c.config.attempt, c.created_at)));
    list
}

/// Whether the pod's restartPolicy restarts a container that exited with `exit_code`.
pub fn should_restart(pod: &Pod, exit_code: i32) -> bool {
    match restart_policy(pod) {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

pub fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn terminated_of(c: &runtime::ContainerStatus) -> ContainerStateTerminated {
    let exit_code = c.exit_code.unwrap_or(0);
    let reason = c
        .reason
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| if exit_code == 0 { "Completed" } else { "Error" }.to_string());
    // Exit codes above 128 are "killed by signal (code - 128)" as the runtime reports them.
    let signal = (exit_code > 128 && exit_code < 160).then_some(exit_code - 128);
    ContainerStateTerminated {
        exit_code,
        reason: Some(reason),
        message: c.message.clone().filter(|m| !m.is_empty()),
        started_at: c.started_at.map(api_time),
        finished_at: c.finished_at.map(api_time),
        container_id: Some(format!("peapod://{}", c.id)),
        signal,
    }
}

/// kubelet's default waiting reason: `PodInitializing` for every container of a pod with
/// init containers, else `ContainerCreating`.
fn waiting_state(w: Option<&Waiting>, has_init: bool) -> ContainerState {
    let default = if has_init {
        "PodInitializing"
    } else {
        "ContainerCreating"
    };
    let (reason, message) = match w {
        Some(w) => (
            w.reason.clone(),
            (!w.message.is_empty()).then(|| w.message.clone()),
        ),
        None => (default.to_string(), None),
    };
    ContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason),
            message,
        }),
        ..Default::default()
    }
}

/// Which list a container belongs to, and so how its readiness is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    App,
    Init,
    Sidecar,
    Ephemeral,
}

/// kubelet's `status.volumeMounts` (RecursiveReadOnlyMounts, on by default since v1.31): every
/// mount of the spec, and for a read-only one whether it is recursively so (`Enabled`, or
/// `Disabled`, also when the mode cannot be honoured: the container then never starts).
fn volume_mount_statuses(
    spec: &k8s_openapi::api::core::v1::Container,
    rro_supported: bool,
) -> Option<Vec<VolumeMountStatus>> {
    let mounts = spec.volume_mounts.as_ref().filter(|m| !m.is_empty())?;
    Some(
        mounts
            .iter()
            .map(|m| {
                let read_only = m.read_only.unwrap_or(false);
                let recursive = volumes::rro::resolve(m, rro_supported).unwrap_or(false);
                VolumeMountStatus {
                    name: m.name.clone(),
                    mount_path: m.mount_path.clone(),
                    read_only: m.read_only.filter(|r| *r),
                    recursive_read_only: read_only
                        .then(|| if recursive { "Enabled" } else { "Disabled" }.to_string()),
                }
            })
            .collect(),
    )
}

/// The identity the runtime says the container's first process got (`status.user`,
/// SupplementalGroupsPolicy, beta and on by default in v1.33).
fn container_user(user: &runtime::ContainerUser) -> ContainerUser {
    ContainerUser {
        linux: Some(LinuxContainerUser {
            uid: i64::from(user.uid),
            gid: i64::from(user.gid),
            supplemental_groups: Some(
                user.supplemental_groups
                    .iter()
                    .map(|g| i64::from(*g))
                    .collect(),
            ),
        }),
    }
}

fn container_status(
    input: &StatusInput<'_>,
    spec: &k8s_openapi::api::core::v1::Container,
    kind: Kind,
) -> ContainerStatus {
    let has_init = !init_containers(input.pod).is_empty();
    let old = input
        .pod
        .status
        .as_ref()
        .and_then(|s| match kind {
            Kind::App => s.container_statuses.as_ref(),
            Kind::Init | Kind::Sidecar => s.init_container_statuses.as_ref(),
            Kind::Ephemeral => s.ephemeral_container_statuses.as_ref(),
        })
        .and_then(|l| l.iter().find(|c| c.name == spec.name));
    let attempts = attempts_of(input.containers, &spec.name);
    let waiting = input.waiting.get(&spec.name);
    let mut out = ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone().unwrap_or_default(),
        volume_mounts: volume_mount_statuses(spec, input.recursive_read_only_mounts),
        ..Default::default()
    };
    let Some(latest) = attempts.first() else {
        // Nothing in the runtime yet (or any more): keep what the API knew of earlier runs.
        out.restart_count = old.map_or(0, |o| o.restart_count);
        out.last_state = old.and_then(|o| o.last_state.clone());
        out.image_id = old.map(|o| o.image_id.clone()).unwrap_or_default();
        out.container_id = old.and_then(|o| o.container_id.clone());
        out.state = Some(if input.terminal {
            // kubelet marks containers it never found as killed when the pod ends.
            ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 137,
                    reason: Some("ContainerStatusUnknown".to_string()),
                    message: Some(
                        "The container could not be located when the pod was terminated"
                            .to_string(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }
        } else {
            waiting_state(waiting, has_init)
        });
        out.started = Some(false);
        return out;
    };
    out.restart_count = i32::try_from(latest.config.attempt).unwrap_or(i32::MAX);
    out.user = latest.user.as_ref().map(container_user);
    out.container_id = Some(format!("peapod://{}", latest.id));
    out.image_id = input
        .image_refs
        .get(&latest.config.image_id)
        .cloned()
        .unwrap_or_else(|| latest.config.image_id.clone());
    let previous = attempts
        .get(1)
        .filter(|p| p.state == RtState::Exited)
        .map(|p| terminated_of(p));
    let last_from = |prev: Option<ContainerStateTerminated>| {
        prev.map(|t| ContainerState {
            terminated: Some(t),
            ..Default::default()
        })
    };
    match latest.state {
        RtState::Running => {
            out.state = Some(ContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(api_time(latest.started_at.unwrap_or(latest.created_at))),
                }),
                ..Default::default()
            });
            // Regular init containers are never ready while they run (kubelet's prober
            // manager only marks them ready once they exited 0).
            out.ready =
                !matches!(kind, Kind::Init | Kind::Ephemeral) && input.probes.ready(&latest.id);
            out.started = Some(input.probes.started(&latest.id));
            out.last_state = last_from(previous);
        }
        RtState::Exited => {
            let term = terminated_of(latest);
            match waiting.filter(|_| !input.terminal) {
                // Waiting to be restarted (back-off, pull failure…): kubelet shows the
                // waiting reason with the exit as lastState.
                Some(w) => {
                    out.state = Some(waiting_state(Some(w), has_init));
                    out.last_state = last_from(Some(term));
                }
                None => {
                    out.ready = kind == Kind::Init && term.exit_code == 0;
                    out.state = Some(ContainerState {
                        terminated: Some(term),
                        ..Default::default()
                    });
                    out.last_state = last_from(previous);
                }
            }
            out.started = Some(false);
        }
        RtState::Created | RtState::Unknown => {
            out.state = Some(waiting_state(waiting, has_init));
            out.started = Some(false);
            out.last_state = last_from(previous);
        }
    }
    if out.last_state.is_none() {
        out.last_state = Some(ContainerState::default());
    }
    out
}

/// Whether a regular container has run: kubelet then treats the pod as initialized for good
/// (`HasAnyRegularContainerStarted`).
fn any_regular_started(statuses: &[ContainerStatus]) -> bool {
    statuses.iter().any(|s| {
        s.state
            .as_ref()
            .is_some_and(|st| st.running.is_some() || st.terminated.is_some())
    })
}

fn restarted(status: &ContainerStatus) -> bool {
    status
        .last_state
        .as_ref()
        .is_some_and(|l| l.terminated.is_some())
}

/// kubelet's `getPhase`, init containers and sidecars included.
pub fn phase(
    pod: &Pod,
    statuses: &[ContainerStatus],
    init_statuses: &[ContainerStatus],
    terminal: bool,
) -> &'static str {
    let (mut pending_init, mut failed_init) = (0, 0);
    let (mut unknown, mut running, mut waiting, mut stopped, mut succeeded) = (0, 0, 0, 0, 0);
    let find =
        |list: &'_ [ContainerStatus], name: &str| -> Option<(ContainerStatus, ContainerState)> {
            list.iter()
                .find(|s| s.name == name)
                .and_then(|s| s.state.clone().map(|st| (s.clone(), st)))
        };
    for spec in init_containers(pod).iter().filter(|c| !is_sidecar(c)) {
        let Some((status, state)) = find(init_statuses, &spec.name) else {
            pending_init += 1;
            continue;
        };
        if let Some(t) = &state.terminated {
            if t.exit_code != 0 {
                failed_init += 1;
            }
        } else if state.waiting.is_some() && restarted(&status) {
            let code = status
                .last_state
                .as_ref()
                .and_then(|l| l.terminated.as_ref())
                .map_or(0, |t| t.exit_code);
            if code != 0 {
                failed_init += 1;
            }
        } else {
            pending_init += 1;
        }
    }
    for spec in pod.spec.iter().flat_map(|s| s.containers.iter()) {
        let Some((status, state)) = find(statuses, &spec.name) else {
            unknown += 1;
            continue;
        };
        if state.running.is_some() {
            running += 1;
        } else if let Some(t) = &state.terminated {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if state.waiting.is_some() {
            if restarted(&status) {
                stopped += 1;
            } else {
                waiting += 1;
            }
        } else {
            unknown += 1;
        }
    }
    // Sidecars count as running while they run; their exits never decide the phase.
    for spec in init_containers(pod).iter().filter(|c| is_sidecar(c)) {
        let Some((status, state)) = find(init_statuses, &spec.name) else {
            unknown += 1;
            continue;
        };
        if state.running.is_some() {
            if status.started != Some(true) {
                pending_init += 1;
            }
            running += 1;
        } else if state.terminated.is_some() || restarted(&status) {
        } else {
            pending_init += 1;
            waiting += 1;
        }
    }
    if failed_init > 0 && restart_policy(pod) == "Never" {
        return "Failed";
    }
    if (pending_init > 0 && !any_regular_started(statuses)) || waiting > 0 {
        return "Pending";
    }
    if running > 0 && unknown == 0 {
        return "Running";
    }
    if running == 0 && stopped > 0 && unknown == 0 {
        if terminal {
            return if stopped == succeeded {
                "Succeeded"
            } else {
                "Failed"
            };
        }
        return match restart_policy(pod) {
            "Always" => "Running",
            _ if stopped == succeeded => "Succeeded",
            "Never" => "Failed",
            _ => "Running",
        };
    }
    "Pending"
}

fn condition(
    old: Option<&PodStatus>,
    now: Timestamp,
    kind: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    // lastTransitionTime only moves when the status flips.
    let since = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|l| l.iter().find(|c| c.type_ == kind && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| api_time(now));
    PodCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: None,
    }
}

const OUR_CONDITIONS: [&str; 5] = [
    "PodReadyToStartContainers",
    "Initialized",
    "Ready",
    "ContainersReady",
    "PodScheduled",
];

/// kubelet's `GeneratePodReadyCondition` once the containers are ready: the pod is Ready
/// only when the condition of every `readinessGates` entry (set by another client through
/// the status subresource) is True; otherwise False with `ReadinessGatesNotReady` and why.
fn readiness_gates(pod: &Pod) -> (bool, Option<&'static str>, Option<String>) {
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or_default();
    let unready: Vec<String> = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|gate| {
            let ty = &gate.condition_type;
            match conditions.iter().find(|c| &c.type_ == ty) {
                None => Some(format!(
                    "corresponding condition of pod readiness gate \"{ty}\" does not exist."
                )),
                Some(c) if c.status != "True" => Some(format!(
                    "the status of pod readiness gate \"{ty}\" is not \"True\", but {}",
                    c.status
                )),
                Some(_) => None,
            }
        })
        .collect();
    if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ReadinessGatesNotReady"),
            Some(unready.join(", ")),
        )
    }
}

/// The whole pod status.
pub fn pod_status(input: &StatusInput<'_>) -> PodStatus {
    let pod = input.pod;
    let old = pod.status.as_ref();
    let spec_containers: Vec<_> = pod.spec.iter().flat_map(|s| s.containers.iter()).collect();
    let statuses: Vec<ContainerStatus> = spec_containers
        .iter()
        .map(|c| container_status(input, c, Kind::App))
        .collect();
    let init_statuses: Vec<ContainerStatus> = init_containers(pod)
        .iter()
        .map(|c| {
            let kind = if is_sidecar(c) {
                Kind::Sidecar
            } else {
                Kind::Init
            };
            container_status(input, c, kind)
        })
        .collect();
    let ephemeral_statuses: Vec<ContainerStatus> = ephemeral_containers(pod)
        .iter()
        .map(|e| container_status(input, &e.container, Kind::Ephemeral))
        .collect();
    let mut phase = phase(pod, &statuses, &init_statuses, input.terminal).to_string();
    // A terminal phase is final: kubelet never moves a pod out of Succeeded or Failed.
    if let Some(p) = old
        .and_then(|s| s.phase.as_deref())
        .filter(|p| matches!(*p, "Succeeded" | "Failed"))
    {
        phase = p.to_string();
    }

    // kubelet's ContainersReady counts sidecars first, then the app containers.
    let sidecars: Vec<&ContainerStatus> = init_containers(pod)
        .iter()
        .filter(|c| is_sidecar(c))
        .filter_map(|c| init_statuses.iter().find(|s| s.name == c.name))
        .collect();
    let unready: Vec<&str> = sidecars
        .into_iter()
        .chain(statuses.iter())
        .filter(|s| !s.ready)
        .map(|s| s.name.as_str())
        .collect();
    let (initialized, init_reason, init_message) =
        initialized(pod, &statuses, &init_statuses, &phase);
    let (ready, reason, message) = if phase == "Succeeded" {
        (false, Some("PodCompleted"), None)
    } else if unready.is_empty() {
        (true, None, None)
    } else {
        (
            false,
            Some("ContainersNotReady"),
            Some(format!(
                "containers with unready status: [{}]",
                unready.join(" ")
            )),
        )
    };

    let (pod_ready, ready_reason, ready_message) = if ready {
        readiness_gates(pod)
    } else {
        (ready, reason, message.clone())
    };

    let now = input.now;
    let mut conditions = vec![
        condition(
            old,
            now,
            "PodReadyToStartContainers",
            input.sandbox_ready,
            None,
            None,
        ),
        condition(
            old,
            now,
            "Initialized",
            initialized,
            init_reason,
            init_message,
        ),
        condition(old, now, "Ready", pod_ready, ready_reason, ready_message),
        condition(old, now, "ContainersReady", ready, reason, message),
    ];
    // The scheduler's PodScheduled is kept as it is; kubelet adds it when missing.
    match old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|l| l.iter().find(|c| c.type_ == "PodScheduled"))
    {
        Some(c) => conditions.push(c.clone()),
        None => conditions.push(condition(old, now, "PodScheduled", true, None, None)),
    }
    for c in old
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
    {
        if !OUR_CONDITIONS.contains(&c.type_.as_str()) {
            conditions.push(c.clone());
        }
    }

    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    let host_ip = (!input.host_ip.is_empty()).then(|| input.host_ip.to_string());
    let pod_ip = if host_network { host_ip.clone() } else { None };
    PodStatus {
        phase: Some(phase),
        conditions: Some(conditions),
        host_ip: host_ip.clone(),
        host_ips: host_ip.map(|ip| vec![HostIP { ip }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![PodIP { ip }]),
        start_time: Some(
            old.and_then(|s| s.start_time.clone())
                .unwrap_or_else(|| api_time(now)),
        ),
        qos_class: pod.spec.as_ref().map(|s| qos_class(s).to_string()),
        container_statuses: Some(statuses),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        ephemeral_container_statuses: (!ephemeral_statuses.is_empty())
            .then_some(ephemeral_statuses),
        ..old.cloned().map(keep_foreign).unwrap_or_default()
    }
}

/// kubelet's `GeneratePodInitializedCondition`: every regular init container exited 0 and
/// every sidecar started, or a regular container already ran.
fn initialized(
    pod: &Pod,
    statuses: &[ContainerStatus],
    init_statuses: &[ContainerStatus],
    phase: &str,
) -> (bool, Option<&'static str>, Option<String>) {
    let inits = init_containers(pod);
    if inits.is_empty() {
        return (true, None, None);
    }
    let mut incomplete = Vec::new();
    for c in inits {
        let Some(s) = init_statuses.iter().find(|s| s.name == c.name) else {
            incomplete.push(c.name.as_str());
            continue;
        };
        let done = if is_sidecar(c) {
            s.started == Some(true)
        } else {
            s.state
                .as_ref()
                .and_then(|st| st.terminated.as_ref())
                .is_some_and(|t| t.exit_code == 0)
        };
        if !done {
            incomplete.push(c.name.as_str());
        }
    }
    if phase == "Succeeded" {
        return (true, Some("PodCompleted"), None);
    }
    if incomplete.is_empty() || any_regular_started(statuses) {
        return (true, None, None);
    }
    (
        false,
        Some("ContainersNotInitialized"),
        Some(format!(
            "containers with incomplete status: [{}]",
            incomplete.join(" ")
        )),
    )
}

/// Fields of the old status that kubelet does not own and passes through.
fn keep_foreign(old: PodStatus) -> PodStatus {
    PodStatus {
        nominated_node_name: old.nominated_node_name,
        resize: old.resize,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{ContainerConfig, ContainerStatus as RtStatus};
    use serde_json::json;

    pub(crate) fn pod(policy: &str, names: &[&str]) -> Pod {
        let containers: Vec<_> = names
            .iter()
            .map(|n| json!({"name": n, "image": "busybox"}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": {"restartPolicy": policy, "containers": containers, "nodeName": "n"}
        }))
        .expect("pod")
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("time")
    }

    fn rt(name: &str, attempt: u32, state: RtState, exit: Option<i32>) -> RtStatus {
        RtStatus {
            id: format!("{name}{attempt}"),
            sandbox_id: "sb".into(),
            config: ContainerConfig {
                name: name.into(),
                attempt,
                image_id: "sha256:img".into(),
                ..Default::default()
            },
            state,
            created_at: t(i64::from(attempt) * 10),
            started_at: Some(t(i64::from(attempt) * 10 + 1)),
            finished_at: exit.map(|_| t(i64::from(attempt) * 10 + 5)),
            exit_code: exit,
            reason: None,
            message: None,
            pid: None,
            log_path: Default::default(),
            user: None,
        }
    }

    fn status(
        pod: &Pod,
        cs: &[RtStatus],
        waiting: &HashMap<String, Waiting>,
        terminal: bool,
    ) -> PodStatus {
        let refs = HashMap::from([(
            "sha256:img".to_string(),
            "docker.io/library/busybox@sha256:dd".to_string(),
        )]);
        pod_status(&StatusInput {
            pod,
            recursive_read_only_mounts: true,
            containers: cs,
            sandbox_ready: true,
            waiting,
            image_refs: &refs,
            host_ip: "10.0.0.1",
            now: t(100),
            terminal,
            probes: &ProbeView::default(),
        })
    }

    fn cond<'a>(s: &'a PodStatus, kind: &str) -> &'a PodCondition {
        s.conditions
            .as_ref()
            .and_then(|l| l.iter().find(|c| c.type_ == kind))
            .expect("condition")
    }

    #[test]
    fn readiness_gates_hold_ready_until_their_conditions_are_true() {
        let mut p = pod("Always", &["a"]);
        if let Some(spec) = p.spec.as_mut() {
            spec.readiness_gates = Some(vec![
                serde_json::from_value(json!({"conditionType": "example.com/lb"})).expect("gate"),
                serde_json::from_value(json!({"conditionType": "example.com/db"})).expect("gate"),
            ]);
        }
        let none = HashMap::new();
        let running = [rt("a", 0, RtState::Running, None)];
        let s = status(&p, &running, &none, false);
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        assert_eq!(cond(&s, "Ready").status, "False");
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ReadinessGatesNotReady")
        );
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("corresponding condition of pod readiness gate \"example.com/lb\" does not exist., corresponding condition of pod readiness gate \"example.com/db\" does not exist.")
        );
        let mut with = s.clone();
        let gate = |ty: &str, st: &str| -> PodCondition {
            serde_json::from_value(json!({"type": ty, "status": st})).expect("condition")
        };
        with.conditions.get_or_insert_with(Vec::new).extend([
            gate("example.com/lb", "True"),
            gate("example.com/db", "False"),
        ]);
        p.status = Some(with.clone());
        let s = status(&p, &running, &none, false);
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("the status of pod readiness gate \"example.com/db\" is not \"True\", but False")
        );
        // Foreign conditions are kept as they are.
        assert_eq!(cond(&s, "example.com/lb").status, "True");
        for c in with.conditions.iter_mut().flatten() {
            c.status = "True".into();
        }
        p.status = Some(with);
        let s = status(&p, &running, &none, false);
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "Ready").reason, None);
    }

    #[test]
    fn pending_then_running() {
        let p = pod("Always", &["a", "b"]);
        let none = HashMap::new();
        let s = status(&p, &[rt("a", 0, RtState::Running, None)], &none, false);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let b = &s.container_statuses.as_ref().expect("cs")[1];
        assert_eq!(
            b.state
                .as_ref()
                .and_then(|s| s.waiting.as_ref())
                .and_then(|w| w.reason.as_deref()),
            Some("ContainerCreating")
        );
        assert_eq!(
            cond(&s, "Ready").reason.as_deref(),
            Some("ContainersNotReady")
        );
        assert_eq!(
            cond(&s, "Ready").message.as_deref(),
            Some("containers with unready status: [b]")
        );

        let s = status(
            &p,
            &[
                rt("a", 0, RtState::Running, None),
                rt("b", 0, RtState::Running, None),
            ],
            &none,
            false,
        );
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(cond(&s, "ContainersReady").status, "True");
        let a = &s.container_statuses.as_ref().expect("cs")[0];
        assert!(a.ready);
        assert_eq!(a.image_id, "docker.io/library/busybox@sha256:dd");
        assert_eq!(a.container_id.as_deref(), Some("peapod://a0"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        assert_eq!(s.host_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(s.pod_ip, None);
        let names: Vec<_> = s
            .conditions
            .as_ref()
            .expect("c")
            .iter()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(names, OUR_CONDITIONS.to_vec());
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let mut p = pod("Always", &["a"]);
        let none = HashMap::new();
        let first = status(&p, &[rt("a", 0, RtState::Running, None)], &none, false);
        p.status = Some(first.clone());
        let later = pod_status(&StatusInput {
            pod: &p,
            recursive_read_only_mounts: true,
            containers: &[rt("a", 0, RtState::Running, None)],
            sandbox_ready: true,
            waiting: &none,
            image_refs: &HashMap::new(),
            host_ip: "10.0.0.1",
            now: t(500),
            terminal: false,
            probes: &ProbeView::default(),
        });
        assert_eq!(
            cond(&later, "Ready").last_transition_time,
            Some(api_time(t(100)))
        );
        assert_eq!(later.start_time, Some(api_time(t(100))));
        let flipped = pod_status(&StatusInput {
            pod: &p,
            recursive_read_only_mounts: true,
            containers: &[rt("a", 0, RtState::Exited, Some(1))],
            sandbox_ready: true,
            waiting: &none,
            image_refs: &HashMap::new(),
            host_ip: "10.0.0.1",
            now: t(500),
            terminal: false,
            probes: &ProbeView::default(),
        });
        assert_eq!(
            cond(&flipped, "Ready").last_transition_time,
            Some(api_time(t(500)))
        );
    }

    #[test]
    fn restart_policies_and_phases() {
        let none = HashMap::new();
        let ok = [rt("a", 0, RtState::Exited, Some(0))];
        let bad = [rt("a", 0, RtState::Exited, Some(2))];
        assert_eq!(
            status(&pod("Never", &["a"]), &ok, &none, false)
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            status(&pod("Never", &["a"]), &bad, &none, false)
                .phase
                .as_deref(),
            Some("Failed")
        );
        assert_eq!(
            status(&pod("OnFailure", &["a"]), &ok, &none, false)
                .phase
                .as_deref(),
            Some("Succeeded")
        );
        assert_eq!(
            status(&pod("OnFailure", &["a"]), &bad, &none, false)
                .phase
                .as_deref(),
            Some("Running")
        );
        assert_eq!(
            status(&pod("Always", &["a"]), &ok, &none, false)
                .phase
                .as_deref(),
            Some("Running")
        );
        // Terminated by deletion: terminal regardless of policy.
        assert_eq!(
            status(&pod("Always", &["a"]), &bad, &none, true)
                .phase
                .as_deref(),
            Some("Failed")
        );
        let s = status(&pod("Never", &["a"]), &ok, &none, false);
        assert_eq!(cond(&s, "Ready").reason.as_deref(), Some("PodCompleted"));
        let term = s.container_statuses.as_ref().expect("cs")[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!(term.reason.as_deref(), Some("Completed"));
        assert_eq!(term.finished_at, Some(api_time(t(5))));
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        let waiting = HashMap::from([(
            "a".to_string(),
            Waiting::new(
                "CrashLoopBackOff",
                "back-off 10s restarting failed container=a pod=p_default(u1)",
            ),
        )]);
        let cs = [
            rt("a", 0, RtState::Exited, Some(1)),
            rt("a", 1, RtState::Exited, Some(1)),
        ];
        let s = status(&pod("Always", &["a"]), &cs, &waiting, false);
        assert_eq!(s.phase.as_deref(), Some("Running"));
        let a = &s.container_statuses.as_ref().expect("cs")[0];
        assert_eq!(a.restart_count, 1);
        let w = a
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(w.reason.as_deref(), Some("CrashLoopBackOff"));
        let last = a
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("last");
        assert_eq!((last.exit_code, last.reason.as_deref()), (1, Some("Error")));
        assert_eq!(last.container_id.as_deref(), Some("peapod://a1"));
    }

    #[test]
    fn statuses_list_the_volume_mounts_and_their_recursive_read_only_mode() {
        let mut p = pod("Always", &["a", "b"]);
        let spec = p.spec.as_mut().expect("spec");
        spec.containers[0].volume_mounts = Some(
            serde_json::from_value(json!([
                {"name": "data", "mountPath": "/data"},
                {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true},
                {"name": "host", "mountPath": "/host", "readOnly": true, "recursiveReadOnly": "IfPossible"},
                {"name": "host", "mountPath": "/strict", "readOnly": true, "recursiveReadOnly": "Enabled"}
            ]))
            .expect("mounts"),
        );
        let none = HashMap::new();
        // Waiting (no runtime container yet) and running statuses both carry them.
        for cs in [vec![], vec![rt("a", 0, RtState::Running, None)]] {
            let s = status(&p, &cs, &none, false);
            let statuses = s.container_statuses.expect("statuses");
            let a = serde_json::to_value(&statuses[0].volume_mounts).expect("json");
            assert_eq!(
                a,
                json!([
                    {"name": "data", "mountPath": "/data"},
                    {"name": "token", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                     "readOnly": true, "recursiveReadOnly": "Disabled"},
                    {"name": "host", "mountPath": "/host", "readOnly": true, "recursiveReadOnly": "Enabled"},
                    {"name": "host", "mountPath": "/strict", "readOnly": true, "recursiveReadOnly": "Enabled"}
                ])
            );
            assert_eq!(statuses[1].volume_mounts, None);
        }
        // A runtime handler without recursive read-only mounts: IfPossible falls back, and
        // Enabled (whose container cannot start) shows Disabled, as the kubelet shows them.
        let s = pod_status(&StatusInput {
            pod: &p,
            recursive_read_only_mounts: false,
            containers: &[],
            sandbox_ready: true,
            waiting: &none,
            image_refs: &HashMap::new(),
            host_ip: "10.0.0.1",
            now: t(100),
            terminal: false,
            probes: &ProbeView::default(),
        });
        let modes: Vec<Option<String>> = s.container_statuses.expect("statuses")[0]
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.recursive_read_only.clone())
            .collect();
        assert_eq!(
            modes,
            [
                None,
                Some("Disabled".into()),
                Some("Disabled".into()),
                Some("Disabled".into())
            ]
        );
    }

    #[test]
    fn status_user_is_what_the_runtime_reports() {
        let p = pod("Always", &["a"]);
        let none = HashMap::new();
        let mut running = rt("a", 0, RtState::Running, None);
        running.user = Some(runtime::ContainerUser {
            uid: 1000,
            gid: 1000,
            supplemental_groups: vec![1000, 60000],
        });
        let s = status(&p, &[running], &none, false);
        let a = &s.container_statuses.expect("statuses")[0];
        assert_eq!(
            serde_json::to_value(&a.user).expect("json"),
            json!({"linux": {"uid": 1000, "gid": 1000, "supplementalGroups": [1000, 60000]}})
        );
        // No identity before the first start.
        let s = status(&p, &[rt("a", 0, RtState::Created, None)], &none, false);
        assert_eq!(s.container_statuses.expect("statuses")[0].user, None);
    }

    #[test]
    fn running_after_restart_keeps_previous_as_last_state() {
        let none = HashMap::new();
        let cs = [
            rt("a", 0, RtState::Exited, Some(137)),
            rt("a", 1, RtState::Running, None),
        ];
        let s = status(&pod("Always", &["a"]), &cs, &none, false);
        let a = &s.container_statuses.as_ref().expect("cs")[0];
        assert_eq!(a.restart_count, 1);
        let last = a
            .last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .expect("last");
        assert_eq!(last.signal, Some(9));
    }

    #[test]
    fn image_pull_waiting_keeps_pod_pending() {
        let waiting = HashMap::from([(
            "a".to_string(),
            Waiting::new("ImagePullBackOff", "Back-off pulling image \"x\""),
        )]);
        let s = status(&pod("Always", &["a"]), &[], &waiting, false);
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let a = &s.container_statuses.as_ref().expect("cs")[0];
        let w = a
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .expect("waiting");
        assert_eq!(w.reason.as_deref(), Some("ImagePullBackOff"));
        assert_eq!(w.message.as_deref(), Some("Back-off pulling image \"x\""));
    }
}
