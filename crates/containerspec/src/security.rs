//! Maps a pod's resources and security contexts onto the runtime's contract, as kubelet's
//! `kuberuntime_container_linux.go`, `pod_container_manager` and `security_context` do:
//! cpu shares and CFS quota from requests/limits, pod-level cgroup limits, capabilities,
//! privileged, no_new_privs, seccomp, sysctls, shareProcessNamespace, the runAsNonRoot check,
//! and the requests admission counts. Pure functions of the pod, so each rule has a unit
//! test.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use runtime::{LinuxResources, SeccompProfile, SecurityConfig, UserSpec};

use api::quantity::parse_quantity;

/// kubelet's CFS period (`--cpu-cfs-quota-period`, default 100ms), in microseconds.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Smallest cpu.shares kubelet writes (`MinShares`).
pub const MIN_SHARES: u64 = 2;
/// Largest cpu.shares (`MaxShares`).
pub const MAX_SHARES: u64 = 262_144;
/// Smallest CFS quota kubelet writes (`MinQuotaPeriod`, 1ms).
pub const MIN_QUOTA_US: i64 = 1_000;

/// kubelet's default set of "safe" sysctls (`pkg/kubelet/sysctl/safe_sysctls.go`): namespaced
/// and unable to affect other pods, so any pod may set them.
pub const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];

/// Why a container's security settings cannot be honoured; kubelet reports these as
/// `CreateContainerConfigError` with exactly these messages.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})")]
    RunAsUserRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})")]
    ImageRunsAsRoot { pod: String, container: String },
    #[error("container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})")]
    NonNumericUser {
        user: String,
        pod: String,
        container: String,
    },
    #[error("seccomp profile type {kind:?} is not supported (use RuntimeDefault, Unconfined or Localhost)")]
    UnsupportedSeccomp { kind: String },
    #[error("localhostProfile must be set if seccompProfile type is Localhost.")]
    LocalhostProfileMissing,
}

/// kubelet's `format.Pod`: `name_namespace(uid)`.
fn pod_name(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

fn quantity(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    name: &str,
) -> Option<f64> {
    list.and_then(|l| l.get(name))
        .and_then(|q| parse_quantity(&q.0))
}

/// (request, limit) of one resource of a container; the request defaults to the limit, as
/// the API server's defaulting does.
pub(crate) fn request_limit(container: &Container, name: &str) -> (Option<f64>, Option<f64>) {
    let res = container.resources.as_ref();
    let limit = quantity(res.and_then(|r| r.limits.as_ref()), name).filter(|v| *v > 0.0);
    let request = quantity(res.and_then(|r| r.requests.as_ref()), name)
        .filter(|v| *v > 0.0)
        .or(limit);
    (request, limit)
}

/// kubelet's `MilliCPUToShares`: milliCPU * 1024 / 1000, clamped to [2, 262144].
pub fn milli_cpu_to_shares(milli: u64) -> u64 {
    if milli == 0 {
        return MIN_SHARES;
    }
    (milli.saturating_mul(1024) / 1000).clamp(MIN_SHARES, MAX_SHARES)
}

/// kubelet's `MilliCPUToQuota`: milliCPU * period / 1000, at least 1ms; `None` for no limit.
pub fn milli_cpu_to_quota(milli: u64, period_us: u64) -> Option<i64> {
    if milli == 0 {
        return None;
    }
    let quota = i64::try_from(milli.saturating_mul(period_us) / 1000).unwrap_or(i64::MAX);
    Some(quota.max(MIN_QUOTA_US))
}

fn millis(cores: f64) -> u64 {
    // Kubernetes rounds a cpu quantity up to whole millicores. The cast saturates (and maps
    // NaN to 0), so an absurd quantity becomes u64::MAX millicores, never a panic.
    (cores * 1000.0).ceil().max(0.0) as u64
}

/// A container's cgroup limits (kubelet's `calculateLinuxResources`).
pub fn container_resources(container: &Container) -> LinuxResources {
    let (cpu_req, cpu_lim) = request_limit(container, "cpu");
    let (_, mem_lim) = request_limit(container, "memory");
    let cpu_quota_us = cpu_lim.and_then(|l| milli_cpu_to_quota(millis(l), CPU_PERIOD_US));
    LinuxResources {
        cpu_shares: Some(milli_cpu_to_shares(cpu_req.map_or(0, millis))),
        cpu_period_us: cpu_quota_us.map(|_| CPU_PERIOD_US),
        cpu_quota_us,
        memory_limit_bytes: mem_lim.map(|m| m.ceil() as i64),
        pids_limit: None,
    }
}

/// The pod cgroup's limits (kubelet's `ResourceConfigForPod`): shares from the sum of cpu
/// requests; a cpu quota and memory limit only when every container has that limit.
pub fn pod_resources(spec: &PodSpec) -> LinuxResources {
    let mut cpu_req = 0u64;
    let mut cpu_lim = Some(0u64);
    let mut mem_lim = Some(0f64);
    for c in &spec.containers {
        let (req, lim) = request_limit(c, "cpu");
        cpu_req = cpu_req.saturating_add(req.map_or(0, millis));
        cpu_lim = cpu_lim
            .zip(lim)
            .map(|(sum, l)| sum.saturating_add(millis(l)));
        let (_, mlim) = request_limit(c, "memory");
        mem_lim = mem_lim.zip(mlim).map(|(sum, l)| sum + l);
    }
    // Init containers run one at a time: the pod needs the largest of them (kubelet takes the
    // max of the init containers' and the sum of the app containers').
    for c in spec.init_containers.iter().flatten() {
        let (req, lim) = request_limit(c, "cpu");
        cpu_req = cpu_req.max(req.map_or(0, millis));
        cpu_lim = match (cpu_lim, lim) {
            (Some(sum), Some(l)) => Some(sum.max(millis(l))),
            _ => None,
        };
        let (_, mlim) = request_limit(c, "memory");
        mem_lim = match (mem_lim, mlim) {
            (Some(sum), Some(l)) => Some(sum.max(l)),
            _ => None,
        };
    }
    // kubelet v1.33 sizes the pod cgroup from `PodRequests` and `PodLimits`, which both add
    // `spec.overhead` (set from the pod's RuntimeClass): to the requests, and to each limit
    // that every container declares. A BestEffort pod keeps the minimum shares.
    if api::qos::of_typed_spec(spec) != api::qos::QosClass::BestEffort {
        let (overhead_cpu, overhead_mem) = overhead(spec);
        cpu_req = cpu_req.saturating_add(overhead_cpu);
        cpu_lim = cpu_lim.map(|l| l.saturating_add(overhead_cpu));
        mem_lim = mem_lim.map(|m| m + overhead_mem);
    }
    let cpu_quota_us = cpu_lim.and_then(|l| milli_cpu_to_quota(l, CPU_PERIOD_US));
    LinuxResources {
        cpu_shares: Some(milli_cpu_to_shares(cpu_req)),
        cpu_period_us: cpu_quota_us.map(|_| CPU_PERIOD_US),
        cpu_quota_us,
        memory_limit_bytes: mem_lim.filter(|m| *m > 0.0).map(|m| m.ceil() as i64),
        pids_limit: None,
    }
}

/// A container's security settings from its securityContext over the pod's.
pub fn container_security(
    pod: &Pod,
    container: &Container,
) -> Result<SecurityConfig, SecurityError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let privileged = sc.and_then(|s| s.privileged).unwrap_or(false);
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let capabilities_add: Vec<String> = caps.and_then(|c| c.add.clone()).unwrap_or_default();
    let capabilities_drop: Vec<String> = caps.and_then(|c| c.drop.clone()).unwrap_or_default();
    let adds_sys_admin = capabilities_add
        .iter()
        .any(|c| matches!(c.trim_start_matches("CAP_"), "SYS_ADMIN" | "ALL"));
    // Kubernetes forces allowPrivilegeEscalation for privileged containers and those with
    // CAP_SYS_ADMIN. Unset, peapod sets no_new_privs (DESIGN.md: secure by default), which
    // is stricter than kubelet's "unset means allowed".
    let allow_privilege_escalation =
        privileged || adds_sys_admin || sc.and_then(|s| s.allow_privilege_escalation) == Some(true);
    let profile = sc
        .and_then(|s| s.seccomp_profile.as_ref())
        .or_else(|| pod_sc.and_then(|s| s.seccomp_profile.as_ref()));
    let seccomp = match profile.map(|p| (p.type_.as_str(), p.localhost_profile.as_ref())) {
        None | Some(("RuntimeDefault", _)) => SeccompProfile::RuntimeDefault,
        Some(("Unconfined", _)) => SeccompProfile::Unconfined,
        // kubelet hands the runtime the file below its profile root; the runtime reads it.
        Some(("Localhost", Some(name))) => SeccompProfile::Localhost {
            profile: name.clone(),
        },
        Some(("Localhost", None)) => return Err(SecurityError::LocalhostProfileMissing),
        Some((other, _)) => {
            return Err(SecurityError::UnsupportedSeccomp {
                kind: other.to_string(),
            })
        }
    };
    // procMount: Unmasked turns the runtime's masked and read-only /proc paths off.
    let unmasked = sc.and_then(|s| s.proc_mount.as_deref()) == Some("Unmasked");
    Ok(SecurityConfig {
        privileged,
        capabilities_add,
        capabilities_drop,
        allow_privilege_escalation,
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        seccomp,
        masked_paths: unmasked.then(Vec::new),
        readonly_paths: unmasked.then(Vec::new),
    })
}

/// kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot: true`, the uid the process will run
/// as must be known and non-zero.
pub fn verify_run_as_non_root(
    pod: &Pod,
    container: &Container,
    user: &UserSpec,
) -> Result<(), SecurityError> {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let sc = container.security_context.as_ref();
    let non_root = sc
        .and_then(|s| s.run_as_non_root)
        .or_else(|| pod_sc.and_then(|s| s.run_as_non_root))
        .unwrap_or(false);
    if !non_root {
        return Ok(());
    }
    let names = || (pod_name(pod), container.name.clone());
    if let Some(uid) = user.run_as_user {
        if uid == 0 {
            let (pod, container) = names();
            return Err(SecurityError::RunAsUserRoot { pod, container });
        }
        return Ok(());
    }
    // The image's `User` is `uid`, `uid:gid`, `name` or `name:group`; unset means root.
    let raw = user.image_user.as_deref().unwrap_or_default();
    let user_part = raw.split(':').next().unwrap_or_default();
    if user_part.is_empty() {
        let (pod, container) = names();
        return Err(SecurityError::ImageRunsAsRoot { pod, container });
    }
    match user_part.parse::<u32>() {
        Ok(0) => {
            let (pod, container) = names();
            Err(SecurityError::ImageRunsAsRoot { pod, container })
        }
        Ok(_) => Ok(()),
        Err(_) => {
            let (pod, container) = names();
            Err(SecurityError::NonNumericUser {
                user: user_part.to_string(),
                pod,
                container,
            })
        }
    }
}

/// The pod's sysctls (`spec.securityContext.sysctls`) in order.
pub fn pod_sysctls(pod: &Pod) -> BTreeMap<String, String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.sysctls.as_ref())
        .map(|list| {
            list.iter()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `name` is in kubelet's safe set (`/` separators are accepted as the API does).
pub fn is_safe_sysctl(name: &str) -> bool {
    SAFE_SYSCTLS.contains(&normalize_sysctl(name).as_str())
}

/// kubelet's `NormalizeName`: a name whose first separator is `/` has its dots and slashes
/// swapped (`net/ipv4/conf/eth0.1/forwarding` → `net.ipv4.conf.eth0/1.forwarding`).
pub fn normalize_sysctl(name: &str) -> String {
    match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name
            .chars()
            .map(|c| match c {
                '/' => '.',
                '.' => '/',
                c => c,
            })
            .collect(),
        _ => name.to_string(),
    }
}

/// `spec.shareProcessNamespace`.
pub fn share_process_namespace(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.share_process_namespace)
        .unwrap_or(false)
}

/// The cpu (millicores) and memory (bytes) a pod asks for, as the scheduler and kubelet's
/// admission count it: the larger of the sum of app containers and the biggest init
/// container, plus the pod's overhead.
pub fn pod_requests(spec: &PodSpec) -> (u64, u64) {
    let mut cpu = 0u64;
    let mut mem = 0f64;
    for c in &spec.containers {
        cpu += request_limit(c, "cpu").0.map_or(0, millis);
        mem += request_limit(c, "memory").0.unwrap_or(0.0);
    }
    for c in spec.init_containers.iter().flatten() {
        cpu = cpu.max(request_limit(c, "cpu").0.map_or(0, millis));
        mem = mem.max(request_limit(c, "memory").0.unwrap_or(0.0));
    }
    let (overhead_cpu, overhead_mem) = overhead(spec);
    (
        cpu.saturating_add(overhead_cpu),
        (mem + overhead_mem).ceil() as u64,
    )
}

/// The pod's `spec.overhead`: (millicores, bytes).
fn overhead(spec: &PodSpec) -> (u64, f64) {
    let list = spec.overhead.as_ref();
    (
        quantity(list, "cpu").map_or(0, millis),
        quantity(list, "memory").unwrap_or(0.0),
    )
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

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn cpu_conversions_match_kubelet() {
        assert_eq!(milli_cpu_to_shares(0), 2);
        assert_eq!(milli_cpu_to_shares(1), 2);
        assert_eq!(milli_cpu_to_shares(100), 102);
        assert_eq!(milli_cpu_to_shares(1000), 1024);
        assert_eq!(milli_cpu_to_shares(10_000_000), MAX_SHARES);
        assert_eq!(milli_cpu_to_quota(0, CPU_PERIOD_US), None);
        assert_eq!(milli_cpu_to_quota(5, CPU_PERIOD_US), Some(1000));
        assert_eq!(milli_cpu_to_quota(250, CPU_PERIOD_US), Some(25_000));
        assert_eq!(milli_cpu_to_quota(2000, CPU_PERIOD_US), Some(200_000));
    }

    /// Huge cpu quantities once overflowed the millicore sums and the shares product.
    #[test]
    fn absurd_cpu_quantities_saturate() {
        let huge = json!({"cpu": "1e30", "memory": "9".repeat(80)});
        let p = pod(json!({
            "containers": [
                {"name": "a", "resources": {"limits": huge.clone(), "requests": huge.clone()}},
                {"name": "b", "resources": {"limits": huge.clone()}}
            ],
            "initContainers": [{"name": "i", "resources": {"limits": huge.clone()}}]
        }));
        let spec = p.spec.as_ref().expect("spec");
        let r = pod_resources(spec);
        assert_eq!(r.cpu_shares, Some(MAX_SHARES));
        // u64::MAX millicores times the period, saturated, over 1000.
        assert_eq!(r.cpu_quota_us, Some(18_446_744_073_709_551));
        assert!(r.memory_limit_bytes.is_some_and(|m| m > 0));
        let c = container_resources(&spec.containers[0]);
        assert_eq!(c.cpu_shares, Some(MAX_SHARES));
        assert_eq!(c.cpu_quota_us, r.cpu_quota_us);
        assert_eq!(milli_cpu_to_shares(u64::MAX), MAX_SHARES);
    }

    #[test]
    fn container_limits() {
        let c = container(json!({"name": "c", "resources": {
            "limits": {"cpu": "500m", "memory": "20Mi"}
        }}));
        let r = container_resources(&c);
        // The request defaults to the limit.
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpu_quota_us, Some(50_000));
        assert_eq!(r.cpu_period_us, Some(100_000));
        assert_eq!(r.memory_limit_bytes, Some(20 * 1024 * 1024));
        let none = container_resources(&container(json!({"name": "c"})));
        assert_eq!(none.cpu_shares, Some(2));
        assert_eq!((none.cpu_quota_us, none.memory_limit_bytes), (None, None));
        let req = container_resources(&container(
            json!({"name": "c", "resources": {"requests": {"cpu": "250m"}}}),
        ));
        assert_eq!((req.cpu_shares, req.cpu_quota_us), (Some(256), None));
    }

    #[test]
    fn overhead_joins_the_pod_cgroup_and_its_requests() {
        let overhead = json!({"cpu": "250m", "memory": "120Mi"});
        let p = pod(json!({"overhead": overhead, "containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}
        ]}));
        let spec = p.spec.as_ref().expect("spec");
        let r = pod_resources(spec);
        assert_eq!(r.cpu_shares, Some(1280));
        assert_eq!(r.cpu_quota_us, Some(125_000));
        assert_eq!(r.memory_limit_bytes, Some(184 * 1024 * 1024));
        assert_eq!(pod_requests(spec), (1250, 184 * 1024 * 1024));
        // Without a limit on every container there is no pod limit to add it to.
        let p = pod(json!({"overhead": overhead, "containers": [
            {"name": "a", "resources": {"requests": {"cpu": "500m"}}}, {"name": "b"}
        ]}));
        let r = pod_resources(p.spec.as_ref().expect("spec"));
        assert_eq!(r.cpu_shares, Some(768));
        assert_eq!((r.cpu_quota_us, r.memory_limit_bytes), (None, None));
        // A BestEffort pod keeps the minimum shares, though admission counts its overhead.
        let p = pod(json!({"overhead": overhead, "containers": [{"name": "a"}]}));
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(pod_resources(spec).cpu_shares, Some(MIN_SHARES));
        assert_eq!(pod_requests(spec), (250, 120 * 1024 * 1024));
    }

    #[test]
    fn pod_limits_only_when_every_container_has_one() {
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}},
            {"name": "b", "resources": {"limits": {"cpu": "500m", "memory": "32Mi"}}}
        ]}));
        let r = pod_resources(p.spec.as_ref().expect("spec"));
        assert_eq!(r.cpu_shares, Some(1536));
        assert_eq!(r.cpu_quota_us, Some(150_000));
        assert_eq!(r.memory_limit_bytes, Some(96 * 1024 * 1024));
        let p = pod(json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}},
            {"name": "b"}
        ]}));
        let r = pod_resources(p.spec.as_ref().expect("spec"));
        assert_eq!(r.cpu_shares, Some(1024));
        assert_eq!((r.cpu_quota_us, r.memory_limit_bytes), (None, None));
    }

    #[test]
    fn security_defaults_and_overrides() {
        let p = pod(json!({"containers": []}));
        let s = container_security(&p, &container(json!({"name": "c"}))).expect("sc");
        assert_eq!(s, SecurityConfig::default());
        assert!(!s.allow_privilege_escalation);
        assert_eq!(s.seccomp, SeccompProfile::RuntimeDefault);
        let s = container_security(
            &p,
            &container(json!({"name": "c", "securityContext": {
                "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]},
                "readOnlyRootFilesystem": true,
                "seccompProfile": {"type": "Unconfined"},
                "procMount": "Unmasked"
            }})),
        )
        .expect("sc");
        assert_eq!(s.capabilities_drop, vec!["ALL"]);
        assert_eq!(s.capabilities_add, vec!["NET_BIND_SERVICE"]);
        assert!(s.readonly_rootfs);
        assert_eq!(s.seccomp, SeccompProfile::Unconfined);
        assert_eq!(s.masked_paths, Some(vec![]));
        let s = container_security(
            &p,
            &container(json!({"name": "c", "securityContext": {"privileged": true}})),
        )
        .expect("sc");
        assert!(s.privileged && s.allow_privilege_escalation);
        let p = pod(
            json!({"containers": [], "securityContext": {"seccompProfile": {"type": "Localhost", "localhostProfile": "x.json"}}}),
        );
        let s = container_security(&p, &container(json!({"name": "c"}))).expect("sc");
        assert_eq!(
            s.seccomp,
            SeccompProfile::Localhost {
                profile: "x.json".into()
            }
        );
        // The container's own profile wins over the pod's.
        let c = container(
            json!({"name": "c", "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}}}),
        );
        assert_eq!(
            container_security(&p, &c).expect("sc").seccomp,
            SeccompProfile::RuntimeDefault
        );
        let p = pod(
            json!({"containers": [], "securityContext": {"seccompProfile": {"type": "Localhost"}}}),
        );
        assert_eq!(
            container_security(&p, &container(json!({"name": "c"}))),
            Err(SecurityError::LocalhostProfileMissing)
        );
        let p = pod(
            json!({"containers": [], "securityContext": {"seccompProfile": {"type": "Other"}}}),
        );
        assert!(container_security(&p, &container(json!({"name": "c"}))).is_err());
    }

    #[test]
    fn run_as_non_root() {
        let p = pod(json!({"containers": [], "securityContext": {"runAsNonRoot": true}}));
        let c = container(json!({"name": "c"}));
        let user = |uid: Option<u32>, image: Option<&str>| UserSpec {
            run_as_user: uid,
            image_user: image.map(str::to_string),
            ..Default::default()
        };
        let err = verify_run_as_non_root(&p, &c, &user(None, None)).expect_err("root");
        assert_eq!(
            err.to_string(),
            "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"
        );
        assert!(verify_run_as_non_root(&p, &c, &user(None, Some("0:0"))).is_err());
        assert!(verify_run_as_non_root(&p, &c, &user(None, Some("1000"))).is_ok());
        assert!(verify_run_as_non_root(&p, &c, &user(Some(1000), None)).is_ok());
        assert!(matches!(
            verify_run_as_non_root(&p, &c, &user(Some(0), None)),
            Err(SecurityError::RunAsUserRoot { .. })
        ));
        assert!(matches!(
            verify_run_as_non_root(&p, &c, &user(None, Some("nobody"))),
            Err(SecurityError::NonNumericUser { .. })
        ));
        let free = pod(json!({"containers": []}));
        assert!(verify_run_as_non_root(&free, &c, &user(None, None)).is_ok());
    }
}
