//! kubelet's admission (`canAdmitPod`): a pod new to the node is refused when its requests
//! do not fit the node's allocatable cpu, memory and ephemeral-storage next to the pods
//! already admitted, or when it sets an unsafe sysctl; a refused (or evicted) pod ends
//! `Failed` with kubelet's reason and message.

use std::sync::Arc;

use crate::qos::parse_quantity;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition, PodSpec, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::pressure::is_critical;
use crate::qos::qos_class;
use containerspec::{is_safe_sysctl, normalize_sysctl, pod_requests, pod_sysctls};
use podapi::Clock;
use podapi::PodApi;
use podapi::{EventRecorder, EventType};

/// kubelet's eviction reason (`status.reason` and the event's reason).
pub const EVICTED: &str = "Evicted";

/// A pod kubelet refuses to run (the pod ends `Failed` with this reason and message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: String,
    pub message: String,
}

/// The node's allocatable resources, as admission counts them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocatable {
    /// Cores.
    pub cpu: f64,
    /// Bytes.
    pub memory: f64,
    /// Bytes.
    pub ephemeral_storage: u64,
}

/// kubelet's sysctl admission (`patternAllowlist`): every sysctl of the pod must be in the
/// safe set or in the KubeletConfiguration's `allowedUnsafeSysctls` (a name, or a prefix
/// ending in `*`), and none of a namespace the pod shares with the host; else the pod is
/// refused with `SysctlForbidden`.
pub fn admit_sysctls(pod: &Pod, allowed_unsafe: &[String]) -> Result<(), Rejection> {
    let spec = pod.spec.as_ref();
    let host_net = spec.and_then(|s| s.host_network).unwrap_or(false);
    let host_ipc = spec.and_then(|s| s.host_ipc).unwrap_or(false);
    for name in pod_sysctls(pod).keys() {
        let name = normalize_sysctl(name);
        let allowed = is_safe_sysctl(&name)
            || allowed_unsafe.iter().any(|p| match p.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => *p == name,
            });
        let ipc = ["kernel.shm", "kernel.msg", "fs.mqueue."]
            .iter()
            .any(|p| name.starts_with(p))
            || name == "kernel.sem";
        let why = if !allowed {
            format!("{name:?} not allowlisted")
        } else if host_net && name.starts_with("net.") {
            format!("{name:?} not allowed with host net enabled")
        } else if host_ipc && ipc {
            format!("{name:?} not allowed with host ipc enabled")
        } else {
            continue;
        };
        return Err(Rejection {
            reason: "SysctlForbidden".into(),
            message: format!("Pod was rejected: forbidden sysctl: {why}"),
        });
    }
    Ok(())
}

/// The operating system this node runs, as kubelet's `runtime.GOOS`.
const NODE_OS: &str = "linux";

/// kubelet's first predicates (`predicateAdmitHandler`), which preemption cannot help: a pod
/// whose `kubernetes.io/os` label names another system than the node's is refused with
/// `PodOSSelectorNodeLabelDoesNotMatch` (kubelet reads the pod's label, not its node
/// selector), and one whose `spec.os.name` does with `PodOSNotSupported`.
pub fn admit_os(pod: &Pod) -> Result<(), Rejection> {
    let label = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("kubernetes.io/os"));
    if label.is_some_and(|os| os != NODE_OS) {
        return Err(Rejection {
            reason: "PodOSSelectorNodeLabelDoesNotMatch".into(),
            message: "Pod was rejected: Failed to admit pod as the `kubernetes.io/os` label doesn't match node label".into(),
        });
    }
    let field = pod
        .spec
        .as_ref()
        .and_then(|s| s.os.as_ref())
        .map(|os| os.name.as_str());
    if field.is_some_and(|os| os != NODE_OS) {
        return Err(Rejection {
            reason: "PodOSNotSupported".into(),
            message: "Pod was rejected: Failed to admit pod as the OS field doesn't match node OS"
                .into(),
        });
    }
    Ok(())
}

/// kubelet's admission (`GeneralPredicates` in `canAdmitPod`): the pod is refused when its
/// requests plus those of the pods already admitted exceed allocatable (`OutOfcpu`,
/// `OutOfmemory`). `admitted` are the other active pods of the node; allocatable is
/// (millicores, bytes).
pub fn admit(pod: &Pod, admitted: &[&Pod], allocatable: (u64, u64)) -> Result<(), Rejection> {
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let (cpu, mem) = pod_requests(spec);
    let (mut used_cpu, mut used_mem) = (0u64, 0u64);
    for other in admitted {
        if let Some(s) = other.spec.as_ref() {
            let (c, m) = pod_requests(s);
            used_cpu += c;
            used_mem += m;
        }
    }
    let (alloc_cpu, alloc_mem) = allocatable;
    // kubelet's message: "Node didn't have enough resource: cpu, requested: 4000, used: 100,
    // capacity: 2000".
    if cpu > 0 && cpu + used_cpu > alloc_cpu {
        return Err(Rejection {
            reason: "OutOfcpu".into(),
            message: format!(
                "Pod was rejected: Node didn't have enough resource: cpu, requested: {cpu}, used: {used_cpu}, capacity: {alloc_cpu}"
            ),
        });
    }
    if mem > 0 && mem + used_mem > alloc_mem {
        return Err(Rejection {
            reason: "OutOfmemory".into(),
            message: format!(
                "Pod was rejected: Node didn't have enough resource: memory, requested: {mem}, used: {used_mem}, capacity: {alloc_mem}"
            ),
        });
    }
    Ok(())
}

/// The ephemeral-storage a pod requests as admission counts it: the larger of the sum of
/// its app containers and its biggest init container.
pub fn pod_storage_request(spec: &PodSpec) -> u64 {
    let request = |c: &Container| -> u64 {
        let r = c.resources.as_ref();
        let q = r
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get("ephemeral-storage"))
            .or_else(|| {
                r.and_then(|r| r.limits.as_ref())
                    .and_then(|m| m.get("ephemeral-storage"))
            });
        q.and_then(|q| parse_quantity(&q.0))
            .map_or(0, |b| b.max(0.0).ceil() as u64)
    };
    let apps: u64 = spec.containers.iter().map(request).sum();
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .map(request)
        .max()
        .unwrap_or(0);
    apps.max(init)
}

/// kubelet's admission for `ephemeral-storage`: refused when the pod's request plus those
/// of the `admitted` pods exceed `allocatable` bytes.
pub fn admit_storage(pod: &Pod, admitted: &[&Pod], allocatable: u64) -> Option<Rejection> {
    let requested = pod.spec.as_ref().map_or(0, pod_storage_request);
    if requested == 0 {
        return None;
    }
    let used: u64 = admitted
        .iter()
        .filter_map(|p| p.spec.as_ref())
        .map(pod_storage_request)
        .sum();
    (requested + used > allocatable).then(|| Rejection {
        reason: "OutOfephemeral-storage".into(),
        message: format!(
            "Pod was rejected: Node didn't have enough resource: ephemeral-storage, requested: {requested}, used: {used}, capacity: {allocatable}"
        ),
    })
}

/// The agent's admission hook: `None` to run `pod`, or why kubelet would refuse it. Only a
/// pod never admitted before is checked (Pending, no startTime, not being deleted), so an
/// agent restart never rejects what already runs. `others` are the node's pods that have a
/// worker; the terminal ones among them free their resources.
pub fn admission_check(
    pod: &Pod,
    others: &[impl std::borrow::Borrow<Pod>],
    allocatable: &Allocatable,
    allowed_unsafe_sysctls: &[String],
    pressure: node_pressure::Conditions,
) -> Option<Rejection> {
    let status = pod.status.as_ref();
    let pending = status
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    if !pending
        || status.is_some_and(|s| s.start_time.is_some())
        || pod.metadata.deletion_timestamp.is_some()
    {
        return None;
    }
    let active: Vec<&Pod> = others
        .iter()
        .map(|p| p.borrow())
        .filter(|p| p.metadata.uid != pod.metadata.uid)
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .collect();
    // kubelet's first admit handler is the eviction manager's.
    let best_effort = pod
        .spec
        .as_ref()
        .is_some_and(|s| qos_class(s) == "BestEffort");
    if let Err(message) = pressure.admit(pod, best_effort, is_critical(pod)) {
        return Some(Rejection {
            reason: EVICTED.into(),
            message,
        });
    }
    if let Err(r) = admit_sysctls(pod, allowed_unsafe_sysctls) {
        return Some(r);
    }
    if let Err(r) = admit_os(pod) {
        return Some(r);
    }
    let cpu_memory = (
        (allocatable.cpu * 1000.0).floor().max(0.0) as u64,
        allocatable.memory.floor().max(0.0) as u64,
    );
    admit(pod, &active, cpu_memory)
        .err()
        .or_else(|| admit_storage(pod, &active, allocatable.ephemeral_storage))
}

/// What recording a rejection needs: the API for the pod's status, the event recorder and
/// the clock.
pub struct Rejecter {
    pub api: Arc<dyn PodApi>,
    pub events: Arc<EventRecorder>,
    pub clock: Arc<dyn Clock>,
}

impl Rejecter {
    /// Records kubelet's rejection: the pod ends `Failed` with the reason and message, and a
    /// Warning event says why (kubelet's `rejectPod`).
    pub async fn reject(&self, pod: Pod, rejection: Rejection) {
        self.record(pod, rejection, false).await;
    }

    /// Records kubelet's eviction: a rejection that also gives the pod the `DisruptionTarget`
    /// condition (reason `TerminationByKubelet`, the eviction message), as its eviction
    /// manager does.
    pub async fn evict(&self, pod: Pod, rejection: Rejection) {
        self.record(pod, rejection, true).await;
    }

    async fn record(&self, pod: Pod, rejection: Rejection, disruption: bool) {
        let now = self.clock.now();
        self.events
            .record(
                &pod,
                None,
                EventType::Warning,
                &rejection.reason,
                &rejection.message,
                now,
            )
            .await;
        let status = PodStatus {
            phase: Some("Failed".into()),
            reason: Some(rejection.reason.clone()),
            message: Some(rejection.message.clone()),
            qos_class: pod.spec.as_ref().map(|s| qos_class(s).to_string()),
            conditions: disruption.then(|| {
                vec![PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("TerminationByKubelet".into()),
                    message: Some(rejection.message.clone()),
                    last_transition_time: Some(Time(now)),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        };
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        if let Err(err) = self.api.patch_pod_status(&ns, &name, &status).await {
            tracing::warn!(pod = %format!("{ns}/{name}"), error = %err, "recording the pod's rejection failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1"},
            "spec": spec
        }))
        .expect("pod")
    }

    #[test]
    fn admission() {
        let big = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "3", "memory": "1Gi"}}}
        ]}));
        let small = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "100Mi"}}}
        ]}));
        let alloc = (2000, 2 << 30);
        let r = admit(&big, &[], alloc).expect_err("too big");
        assert_eq!(r.reason, "OutOfcpu");
        assert!(
            r.message
                .contains("requested: 3000, used: 0, capacity: 2000"),
            "{}",
            r.message
        );
        assert!(admit(&small, &[&small, &small], alloc).is_ok());
        let r = admit(&small, &[&small, &small, &small, &small], alloc).expect_err("full");
        assert_eq!(r.reason, "OutOfcpu");
        let mem = pod(json!({"containers": [
            {"name": "a", "resources": {"requests": {"memory": "3Gi"}}}
        ]}));
        assert_eq!(
            admit(&mem, &[], alloc).expect_err("mem").reason,
            "OutOfmemory"
        );
        let sys = pod(json!({"containers": [], "securityContext": {"sysctls": [
            {"name": "net.ipv4.tcp_syncookies", "value": "1"}, {"name": "kernel.msgmax", "value": "1"}
        ]}}));
        assert_eq!(
            admit_sysctls(&sys, &[]).expect_err("sysctl").message,
            "Pod was rejected: forbidden sysctl: \"kernel.msgmax\" not allowlisted"
        );
        assert!(admit_sysctls(&sys, &["kernel.msg*".to_string()]).is_ok());
        assert!(admit_sysctls(&sys, &["kernel.msgmax".to_string()]).is_ok());
        let host = pod(
            json!({"containers": [], "hostNetwork": true, "securityContext": {"sysctls": [
                {"name": "net/ipv4/tcp_syncookies", "value": "1"}
            ]}}),
        );
        assert_eq!(
            admit_sysctls(&host, &[]).expect_err("host net").message,
            "Pod was rejected: forbidden sysctl: \"net.ipv4.tcp_syncookies\" not allowed with host net enabled"
        );
        assert!(is_safe_sysctl("net/ipv4/ip_local_port_range"));
    }

    #[test]
    fn pods_for_another_os_are_refused_by_field_or_label() {
        let windows = pod(json!({"os": {"name": "windows"}, "containers": []}));
        let r = admit_os(&windows).expect_err("windows field");
        assert_eq!(r.reason, "PodOSNotSupported");
        assert_eq!(
            r.message,
            "Pod was rejected: Failed to admit pod as the OS field doesn't match node OS"
        );
        let mut labelled = pod(json!({"containers": []}));
        labelled.metadata.labels =
            Some([("kubernetes.io/os".to_string(), "windows".to_string())].into());
        let r = admit_os(&labelled).expect_err("windows label");
        assert_eq!(r.reason, "PodOSSelectorNodeLabelDoesNotMatch");
        assert!(admit_os(&pod(json!({"os": {"name": "linux"}, "containers": []}))).is_ok());
        // kubelet reads the label, not the node selector (the scheduler handles that).
        let selector =
            pod(json!({"nodeSelector": {"kubernetes.io/os": "windows"}, "containers": []}));
        assert!(admit_os(&selector).is_ok());
    }

    #[test]
    fn admission_refuses_storage_over_allocatable() {
        let big = pod(json!({"containers": [
            {"name": "c", "resources": {"requests": {"ephemeral-storage": "2Gi"}}}
        ]}));
        let small = pod(json!({"containers": [
            {"name": "c", "resources": {"limits": {"ephemeral-storage": "1Gi"}}}
        ]}));
        let gi = 1u64 << 30;
        assert!(admit_storage(&big, &[], 2 * gi).is_none());
        let r = admit_storage(&big, &[&small], 2 * gi).expect("rejected");
        assert_eq!(r.reason, "OutOfephemeral-storage");
        assert_eq!(
            r.message,
            format!("Pod was rejected: Node didn't have enough resource: ephemeral-storage, requested: {}, used: {}, capacity: {}", 2 * gi, gi, 2 * gi)
        );
        let none = pod(json!({"containers": [{"name": "c"}]}));
        assert!(admit_storage(&none, &[&big], 0).is_none());
    }
}
