//! In-place pod resize as the kubelet v1.33 carries it out (its `computePodResizeAction` and
//! `doPodResizeAction`): a running container whose spec asks for other cpu or memory than
//! it was given is resized in place, or restarted when its `resizePolicy` says
//! `RestartContainer` for a resource that changed; a resize the node can never fit stays
//! pending (`PodResizePending`, `Infeasible`), one that does not fit beside the other pods
//! waits (`Deferred`) and is tried again at each sync; one that failed to apply shows as
//! `PodResizeInProgress` with the error. The status reports each container's allocated and
//! actual resources. The decisions are pure; `apply` is their one effect, through the
//! runtime's CRI-shaped update calls.

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use runtime::{ContainerStatus, LinuxResources, PodSandboxStatus, RuntimeService};

/// The conditions kubelet v1.33 reports a resize with.
pub const PENDING: &str = "PodResizePending";
pub const IN_PROGRESS: &str = "PodResizeInProgress";

/// What a running container's resize comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerResize {
    Unchanged,
    /// New cgroup limits for the running container, and the allocation to record.
    InPlace {
        resources: LinuxResources,
        allocation: String,
    },
    /// A resource whose `resizePolicy` is `RestartContainer` changed.
    Restart,
}

/// One container to resize in place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUpdate {
    pub id: String,
    pub name: String,
    pub resources: LinuxResources,
    pub allocation: String,
}

/// The restart policy `c` has for `resource` (`NotRequired` unless it says otherwise).
fn restarts_for(c: &Container, resource: &str) -> bool {
    c.resize_policy
        .iter()
        .flatten()
        .any(|p| p.resource_name == resource && p.restart_policy == "RestartContainer")
}

/// Compares a running container's recorded allocation with its spec. Containers created
/// before allocations were recorded count as unchanged.
pub fn container_resize(c: &Container, running: &ContainerStatus) -> ContainerResize {
    let Some(allocated) = containerspec::recorded_resources(&running.config.annotations) else {
        return ContainerResize::Unchanged;
    };
    let changed = containerspec::changed_resources(&allocated, c);
    if changed.is_empty() {
        return ContainerResize::Unchanged;
    }
    if changed.iter().any(|r| restarts_for(c, r)) {
        return ContainerResize::Restart;
    }
    ContainerResize::InPlace {
        resources: containerspec::container_resources(c),
        allocation: containerspec::resources_annotation(c),
    }
}

/// The newest attempt of container `name` among `containers` (one sandbox's).
fn newest<'a>(containers: &'a [ContainerStatus], name: &str) -> Option<&'a ContainerStatus> {
    containers
        .iter()
        .filter(|c| c.config.name == name)
        .max_by_key(|c| c.config.attempt)
}

/// `c` with the cpu and memory its `previous` attempt was given, for a container started
/// again while its resize waits; `c` itself when nothing was recorded.
pub fn as_allocated(c: &Container, previous: Option<&ContainerStatus>) -> Container {
    let Some(allocated) =
        previous.and_then(|p| containerspec::recorded_resources(&p.config.annotations))
    else {
        return c.clone();
    };
    let mut out = c.clone();
    let resources = out.resources.get_or_insert_with(Default::default);
    for (list, from) in [
        (&mut resources.requests, allocated.requests),
        (&mut resources.limits, allocated.limits),
    ] {
        let mut map = list.take().unwrap_or_default();
        map.retain(|k, _| !containerspec::RESIZABLE.contains(&k.as_str()));
        map.extend(from.unwrap_or_default());
        *list = (!map.is_empty()).then_some(map);
    }
    out
}

/// Whether the pod's containers (`current`: those of its ready sandbox, the newest attempt
/// of each, running or not) were given other cpu or memory than its spec asks for.
pub fn wanted(pod: &Pod, current: &[ContainerStatus]) -> bool {
    resizable(pod).any(|c| {
        newest(current, &c.name)
            .is_some_and(|r| container_resize(c, r) != ContainerResize::Unchanged)
    })
}

/// The containers a resize applies to: app containers and sidecars (restartable init
/// containers).
fn resizable(pod: &Pod) -> impl Iterator<Item = &Container> {
    let spec = pod.spec.as_ref();
    spec.map(|s| s.containers.as_slice())
        .unwrap_or_default()
        .iter()
        .chain(
            spec.and_then(|s| s.init_containers.as_deref())
                .unwrap_or_default()
                .iter()
                .filter(|c| c.restart_policy.as_deref() == Some("Always")),
        )
}

/// Why a resize waits: kubelet's `canResizePod` reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// More than the node's allocatable: never possible here.
    Infeasible(String),
    /// It fits the node but not beside the other pods now; retried as they change.
    Deferred(String),
}

impl Pending {
    fn reason_message(&self) -> (&'static str, &str) {
        match self {
            Pending::Infeasible(m) => ("Infeasible", m),
            Pending::Deferred(m) => ("Deferred", m),
        }
    }
}

/// The node's allocatable as a resize must fit it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Allocatable {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// kubelet's `canResizePod`: the pod's new requests against the node's allocatable
/// (`Infeasible`), then against what the node's other active pods request (`Deferred`).
pub fn pending<'a>(
    pod: &Pod,
    node: Allocatable,
    others: impl IntoIterator<Item = &'a Pod>,
) -> Option<Pending> {
    let (cpu, memory) = pod
        .spec
        .as_ref()
        .map(containerspec::pod_requests)
        .unwrap_or_default();
    let capacity = [
        ("cpu", cpu, node.cpu_millis),
        ("memory", memory, node.memory_bytes),
    ];
    for (name, requested, capacity) in capacity {
        if capacity > 0 && requested > capacity {
            return Some(Pending::Infeasible(format!(
                "Node didn't have enough capacity: {name}, requested: {requested}, capacity: {capacity}"
            )));
        }
    }
    let uid = pod.metadata.uid.as_deref();
    let (used_cpu, used_memory) = others
        .into_iter()
        .filter(|p| p.metadata.uid.as_deref() != uid)
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| p.spec.as_ref())
        .map(containerspec::pod_requests)
        .fold((0u64, 0u64), |(c, m), (pc, pm)| {
            (c.saturating_add(pc), m.saturating_add(pm))
        });
    let used = [
        ("cpu", cpu, used_cpu, node.cpu_millis),
        ("memory", memory, used_memory, node.memory_bytes),
    ];
    for (name, requested, used, capacity) in used {
        if capacity > 0 && requested.saturating_add(used) > capacity {
            return Some(Pending::Deferred(format!(
                "Node didn't have enough resource: {name}, requested: {requested}, used: {used}, capacity: {capacity}"
            )));
        }
    }
    None
}

/// The larger of each limit: what the pod cgroup holds while its containers change, so
/// that it never holds less than they do.
fn widest(a: &LinuxResources, b: &LinuxResources) -> LinuxResources {
    let max = |x: Option<i64>, y: Option<i64>| match (x, y) {
        (Some(x), Some(y)) => Some(x.max(y)),
        // No limit on either side is the widest.
        _ => None,
    };
    let quota = max(a.cpu_quota_us, b.cpu_quota_us);
    LinuxResources {
        cpu_shares: a.cpu_shares.max(b.cpu_shares),
        cpu_quota_us: quota,
        cpu_period_us: quota.and(a.cpu_period_us.or(b.cpu_period_us)),
        memory_limit_bytes: max(a.memory_limit_bytes, b.memory_limit_bytes),
        pids_limit: a.pids_limit.or(b.pids_limit),
    }
}

/// Applies a resize: the pod cgroup widened to hold both the old and the new limits, then
/// the containers, then the pod cgroup at its new limits (kubelet grows the pod cgroup
/// before its containers and shrinks it after them). Errors are the message the
/// `PodResizeInProgress` condition shows.
pub async fn apply(
    runtime: &dyn RuntimeService,
    pod: &Pod,
    sandbox: &PodSandboxStatus,
    containers: &[ContainerUpdate],
) -> Result<(), String> {
    let target = pod
        .spec
        .as_ref()
        .map(containerspec::pod_resources)
        .unwrap_or_default();
    let wide = widest(&sandbox.config.resources, &target);
    runtime
        .update_pod_sandbox_resources(&sandbox.id, &wide)
        .await
        .map_err(|e| e.to_string())?;
    for c in containers {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            containerspec::ANNOTATION_RESOURCES.to_string(),
            c.allocation.clone(),
        );
        runtime
            .update_container_resources(&c.id, &c.resources, &annotations)
            .await
            .map_err(|e| format!("updating resources of container {:?}: {e}", c.name))?;
    }
    runtime
        .update_pod_sandbox_resources(&sandbox.id, &target)
        .await
        .map_err(|e| e.to_string())
}

/// What the worker knows of the pod's resize when it writes the status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResizeState {
    /// Why the resize waits (`Infeasible`, `Deferred`).
    pub pending: Option<Pending>,
    /// Why applying it failed (the resize stays in progress and is retried).
    pub error: Option<String>,
}

/// Fills in each container's allocated and actual resources and the resize conditions.
/// `current` holds the containers of the pod's ready sandbox.
pub fn fill_status(
    status: &mut PodStatus,
    pod: &Pod,
    current: &[ContainerStatus],
    resize: &ResizeState,
    last: Option<&PodStatus>,
    now: Timestamp,
) {
    let lists = [
        status.container_statuses.as_mut(),
        status.init_container_statuses.as_mut(),
    ];
    for cs in lists.into_iter().flatten().flatten() {
        let Some(c) = resizable(pod).find(|c| c.name == cs.name) else {
            continue;
        };
        let Some(recorded) = newest(current, &c.name)
            .and_then(|r| containerspec::recorded_resources(&r.config.annotations))
        else {
            continue;
        };
        cs.allocated_resources = recorded.requests.clone();
        cs.resources = Some(recorded);
    }
    let mut conditions: Vec<PodCondition> = status
        .conditions
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.type_ != PENDING && c.type_ != IN_PROGRESS)
        .collect();
    let since = |kind: &str, reason: Option<&str>| {
        last.and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == kind))
            .filter(|c| c.reason.as_deref() == reason)
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or(Time(now))
    };
    let condition = |kind: &str, reason: Option<&str>, message: &str| PodCondition {
        type_: kind.to_string(),
        status: "True".into(),
        reason: reason.map(str::to_string),
        message: Some(message.to_string()),
        last_transition_time: Some(since(kind, reason)),
        ..Default::default()
    };
    if let Some(pending) = &resize.pending {
        let (reason, message) = pending.reason_message();
        conditions.push(condition(PENDING, Some(reason), message));
    } else if let Some(message) = &resize.error {
        conditions.push(condition(IN_PROGRESS, Some("Error"), message));
    }
    status.conditions = (!conditions.is_empty()).then_some(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    fn running(c: &Container) -> ContainerStatus {
        let mut annotations = BTreeMap::new();
        annotations.insert(
            containerspec::ANNOTATION_RESOURCES.to_string(),
            containerspec::resources_annotation(c),
        );
        ContainerStatus {
            id: "id".into(),
            sandbox_id: "s".into(),
            config: runtime::ContainerConfig {
                name: c.name.clone(),
                annotations,
                ..Default::default()
            },
            state: runtime::ContainerState::Running,
            created_at: Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            exit_code: None,
            reason: None,
            message: None,
            pid: None,
            log_path: Default::default(),
            user: None,
        }
    }

    #[test]
    fn policies_pick_in_place_or_restart() {
        let was = container(
            json!({"name": "c", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}},
            "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}),
        );
        let r = running(&was);
        assert_eq!(container_resize(&was, &r), ContainerResize::Unchanged);
        let more_cpu = container(
            json!({"name": "c", "resources": {"limits": {"cpu": "2", "memory": "64Mi"}},
            "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}),
        );
        match container_resize(&more_cpu, &r) {
            ContainerResize::InPlace { resources, .. } => {
                assert_eq!(resources.cpu_quota_us, Some(200_000));
                assert_eq!(resources.cpu_shares, Some(2048));
            }
            other => panic!("{other:?}"),
        }
        let more_memory = container(
            json!({"name": "c", "resources": {"limits": {"cpu": "1", "memory": "128Mi"}},
            "resizePolicy": [{"resourceName": "memory", "restartPolicy": "RestartContainer"}]}),
        );
        assert_eq!(container_resize(&more_memory, &r), ContainerResize::Restart);
    }

    #[test]
    fn a_restart_while_pending_keeps_the_allocation() {
        let was = container(json!({"name": "c", "resources": {
            "requests": {"cpu": "1", "ephemeral-storage": "1Gi"}, "limits": {"memory": "64Mi"}}}));
        let wants = container(json!({"name": "c", "resources": {
            "requests": {"cpu": "9", "ephemeral-storage": "1Gi"}, "limits": {"memory": "64Mi"}}}));
        let started = as_allocated(&wants, Some(&running(&was)));
        assert_eq!(started.resources, was.resources);
        assert_eq!(as_allocated(&wants, None), wants);
    }

    #[test]
    fn too_much_for_the_node_is_infeasible_beside_others_deferred() {
        let node = Allocatable {
            cpu_millis: 2000,
            memory_bytes: 1_000_000_000,
        };
        let pod = |uid: &str, cpu: &str| -> Pod {
            serde_json::from_value(json!({"metadata": {"uid": uid}, "spec": {"containers": [
                {"name": "c", "resources": {"requests": {"cpu": cpu}}}]}}))
            .expect("pod")
        };
        assert_eq!(pending(&pod("a", "2"), node, []), None);
        assert_eq!(
            pending(&pod("a", "3"), node, []),
            Some(Pending::Infeasible(
                "Node didn't have enough capacity: cpu, requested: 3000, capacity: 2000".into()
            ))
        );
        let me = pod("a", "1500m");
        let other = pod("b", "1");
        assert_eq!(
            pending(&me, node, [&me, &other]),
            Some(Pending::Deferred(
                "Node didn't have enough resource: cpu, requested: 1500, used: 1000, capacity: 2000"
                    .into()
            ))
        );
        let mut done = other.clone();
        done.status = Some(serde_json::from_value(json!({"phase": "Succeeded"})).expect("status"));
        assert_eq!(pending(&me, node, [&me, &done]), None);
    }

    #[test]
    fn the_pod_cgroup_holds_both_while_containers_change() {
        let old = LinuxResources {
            cpu_shares: Some(1024),
            cpu_quota_us: Some(100_000),
            cpu_period_us: Some(100_000),
            memory_limit_bytes: Some(128),
            pids_limit: None,
        };
        let new = LinuxResources {
            cpu_shares: Some(512),
            cpu_quota_us: Some(200_000),
            cpu_period_us: Some(100_000),
            memory_limit_bytes: Some(64),
            pids_limit: None,
        };
        let w = widest(&old, &new);
        assert_eq!(w.cpu_shares, Some(1024));
        assert_eq!(w.cpu_quota_us, Some(200_000));
        assert_eq!(w.memory_limit_bytes, Some(128));
        let unlimited = LinuxResources {
            memory_limit_bytes: None,
            ..new.clone()
        };
        assert_eq!(widest(&old, &unlimited).memory_limit_bytes, None);
    }
}
