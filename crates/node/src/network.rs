//! Pod networking through CNI, the part of kubelet + its runtime that gives each pod an IP:
//! after the sandbox runs, its network namespace is pinned to a file and attached with CNI
//! `ADD` (port mappings from `hostPort`, kubelet's `K8S_POD_*` args); the pod IP goes into
//! `status.podIP(s)` and the pod's hosts file. Every teardown (`teardown_sandbox`, the one
//! way a sandbox is released) runs `DEL` while the namespace still exists, and at startup
//! attachments whose sandbox is gone (a crash) are released. hostNetwork pods are never
//! attached.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, PodIP, PodStatus};
use runtime::{PodSandboxStatus, RuntimeError, RuntimeService};
use serde_json::{json, Map, Value};

use podapi::Clock;
use podapi::{EventRecorder, EventType};

/// The interface name kubelet asks for (`CNI_IFNAME`).
pub const POD_IFNAME: &str = "eth0";
/// How long after a failed attachment the sandbox is tried again (kubelet retries sandbox
/// creation on its next sync, with the pod worker's back-off).
pub const RETRY: Duration = Duration::from_secs(10);

/// Where the agent finds its CNI config and plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// The first conflist here is used; the default one is written here when there is none.
    pub conf_dir: PathBuf,
    /// Plugin binaries, searched in order (`CNI_PATH`).
    pub bin_dirs: Vec<PathBuf>,
    /// The node's pod CIDR, used by the default conflist's host-local IPAM.
    pub pod_cidr: String,
    /// The bridge of the default conflist.
    pub bridge: String,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        Self {
            conf_dir: PathBuf::from("/etc/cni/net.d"),
            bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            pod_cidr: "10.244.0.0/24".to_string(),
            bridge: "peapod0".to_string(),
        }
    }
}

/// Why a pod's network could not be set up or released.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("loading the CNI config")]
    Config(#[from] cni::ConfigError),
    #[error(transparent)]
    Cni(#[from] cni::CniError),
    #[error("pinning network namespace {netns} at {pin}")]
    Pin {
        netns: PathBuf,
        pin: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("sandbox {0} has no network namespace (not running)")]
    NoNetns(String),
    #[error("sandbox id {0:?} is not a runtime id")]
    BadId(String),
    #[error("listing sandboxes to find the network namespace")]
    ListSandboxes(#[source] RuntimeError),
    #[error("network task")]
    Task(#[source] tokio::task::JoinError),
}

/// One step of `teardown_sandbox` that failed; the other steps ran anyway.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("releasing the network of sandbox {id} (CNI DEL)")]
    Network {
        id: String,
        #[source]
        source: NetworkError,
    },
    #[error("stopping sandbox {id}")]
    Stop {
        id: String,
        #[source]
        source: RuntimeError,
    },
    #[error("removing sandbox {id}")]
    Remove {
        id: String,
        #[source]
        source: RuntimeError,
    },
}

/// The agent's CNI client plus where it pins namespaces.
pub struct PodNetwork {
    config: NetworkConfig,
    client: cni::Client,
    pin_dir: PathBuf,
}

/// Sandbox ids are 64 lowercase hex characters; nothing else may name a file.
fn is_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `<state_dir>/cni`: the attachments (results) of this peapod's pods.
pub fn cache_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("cni")
}

/// `<state_dir>/netns`: one pinned namespace per attached sandbox.
pub fn pin_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("netns")
}

/// kubelet's `runtimeConfig.portMappings`: one entry per container port with a hostPort.
pub fn port_mappings(pod: &Pod) -> Vec<Value> {
    let mut out = Vec::new();
    let containers = pod.spec.iter().flat_map(|s| s.containers.iter());
    for port in containers.flat_map(|c| c.ports.iter().flatten()) {
        let Some(host_port) = port.host_port.filter(|p| *p > 0) else {
            continue;
        };
        let protocol = port
            .protocol
            .as_deref()
            .unwrap_or("TCP")
            .to_ascii_lowercase();
        let mut m = json!({
            "hostPort": host_port,
            "containerPort": port.container_port,
            "protocol": protocol,
        });
        if let Some(ip) = port.host_ip.as_deref().filter(|ip| !ip.is_empty()) {
            m["hostIP"] = json!(ip);
        }
        out.push(m);
    }
    out
}

/// What the CNI plugins are told about the pod (kubelet's `CNI_ARGS`); `IgnoreUnknown`
/// keeps plugins that parse their args strictly (host-local) from rejecting the rest.
pub fn cni_args(pod: &Pod, sandbox_id: &str) -> Vec<(String, String)> {
    let m = &pod.metadata;
    vec![
        ("IgnoreUnknown".into(), "1".into()),
        (
            "K8S_POD_NAMESPACE".into(),
            m.namespace.clone().unwrap_or_default(),
        ),
        ("K8S_POD_NAME".into(), m.name.clone().unwrap_or_default()),
        ("K8S_POD_INFRA_CONTAINER_ID".into(), sandbox_id.to_string()),
        ("K8S_POD_UID".into(), m.uid.clone().unwrap_or_default()),
    ]
}

pub fn is_host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NetworkError> + Send + 'static,
) -> Result<T, NetworkError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(NetworkError::Task)?
}

impl PodNetwork {
    pub fn new(config: NetworkConfig, state_dir: &Path, exec: Arc<dyn cni::PluginExec>) -> Self {
        let client = cni::Client::new(config.bin_dirs.clone(), cache_dir(state_dir), exec);
        Self {
            config,
            client,
            pin_dir: pin_dir(state_dir),
        }
    }

    /// The conflist in use, writing the default one when the dir has none (read on every
    /// attachment, as runtimes watch their config dir).
    pub fn conflist(&self) -> Result<cni::ConfList, NetworkError> {
        let (_, list) = cni::config::ensure_default(
            &self.config.conf_dir,
            &self.config.bridge,
            &self.config.pod_cidr,
        )?;
        Ok(list)
    }

    fn pin_path(&self, sandbox_id: &str) -> Result<PathBuf, NetworkError> {
        if !is_id(sandbox_id) {
            return Err(NetworkError::BadId(sandbox_id.to_string()));
        }
        Ok(self.pin_dir.join(sandbox_id))
    }

    /// Pins the sandbox's namespace and runs ADD; returns the pod's addresses. On error
    /// the caller runs `detach` to release whatever was made.
    pub async fn attach(
        self: &Arc<Self>,
        pod: &Pod,
        sandbox_id: &str,
        netns: &Path,
    ) -> Result<Vec<IpAddr>, NetworkError> {
        let pin = self.pin_path(sandbox_id)?;
        let mut caps = Map::new();
        let mappings = port_mappings(pod);
        if !mappings.is_empty() {
            caps.insert("portMappings".into(), Value::Array(mappings));
        }
        let rt = cni::RuntimeConf {
            container_id: sandbox_id.to_string(),
            netns: pin.clone(),
            if_name: POD_IFNAME.to_string(),
            args: cni_args(pod, sandbox_id),
            capability_args: caps,
        };
        let netns = netns.to_path_buf();
        let this = self.clone();
        blocking(move || {
            let list = this.conflist()?;
            cni::netns::pin(&netns, &pin).map_err(|source| NetworkError::Pin {
                netns,
                pin: pin.clone(),
                source,
            })?;
            Ok(this.client.add(&list, &rt)?.ips)
        })
        .await
    }

    /// Runs DEL for every attachment of the sandbox, then drops the pin. A failed DEL keeps
    /// both (the namespace stays alive), so a later `detach` or `gc` can finish the job.
    pub async fn detach(self: &Arc<Self>, sandbox_id: &str) -> Result<(), NetworkError> {
        let pin = self.pin_path(sandbox_id)?;
        let this = self.clone();
        let id = sandbox_id.to_string();
        blocking(move || {
            this.client.del(&id)?;
            cni::netns::unpin(&pin).map_err(|source| NetworkError::Pin {
                netns: PathBuf::new(),
                pin,
                source,
            })
        })
        .await
    }

    /// The addresses of the sandbox's finished attachment, if it has one.
    pub fn pod_ips(&self, sandbox_id: &str) -> Option<Vec<IpAddr>> {
        self.client
            .cached_for(sandbox_id)
            .into_iter()
            .find_map(|e| e.result.map(|r| cni::result_ips(&r)))
    }

    /// Releases attachments and pins of sandboxes not in `live` (left by a crash between
    /// sandbox removal and DEL, or by a sandbox that died with the agent down).
    pub async fn gc(self: &Arc<Self>, live: &HashSet<String>) {
        let mut ids: HashSet<String> = self
            .client
            .cached()
            .into_iter()
            .map(|e| e.container_id)
            .collect();
        if let Ok(dir) = std::fs::read_dir(&self.pin_dir) {
            ids.extend(
                dir.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        for id in ids.iter().filter(|id| !live.contains(*id)) {
            tracing::info!(sandbox = %id, "releasing the network of a sandbox that is gone");
            if let Err(err) = self.detach(id).await {
                tracing::warn!(sandbox = %id, error = %err, "releasing leftover network failed");
            }
        }
    }
}

/// `peapod reset`: DEL every attachment of the state dir from its cache record alone
/// (config and bin dirs are in it) and drop every pin. Returns what failed.
pub fn reset(state_dir: &Path) -> Vec<NetworkError> {
    let client = cni::Client::new(Vec::new(), cache_dir(state_dir), Arc::new(cni::RealExec));
    let mut errors = Vec::new();
    for entry in client.cached() {
        if let Err(err) = client.del_entry(&entry) {
            errors.push(err.into());
        }
    }
    if let Ok(dir) = std::fs::read_dir(pin_dir(state_dir)) {
        for e in dir.filter_map(Result::ok) {
            if let Err(source) = cni::netns::unpin(&e.path()) {
                errors.push(NetworkError::Pin {
                    netns: PathBuf::new(),
                    pin: e.path(),
                    source,
                });
            }
        }
    }
    errors
}

/// Worker hook, right after `run_pod_sandbox`: attach the pod (unless hostNetwork) and give
/// the sandbox its IPs. On failure the sandbox is released and a `FailedCreatePodSandBox`
/// event carries the plugin's message, as kubelet reports a failed `RunPodSandbox`;
/// `Err(delay)` asks the worker to retry then.
pub async fn setup_sandbox(
    runtime: &dyn RuntimeService,
    network: Option<&Arc<PodNetwork>>,
    events: &EventRecorder,
    clock: &dyn Clock,
    pod: &Pod,
    sandbox_id: &str,
) -> Result<(), Duration> {
    let Some(net) = network else {
        return Ok(());
    };
    if is_host_network(pod) {
        return Ok(());
    }
    let started = Instant::now();
    let result = match sandbox_netns(runtime, sandbox_id).await {
        Ok(netns) => net.attach(pod, sandbox_id, &netns).await,
        Err(err) => Err(err),
    };
    match result {
        Ok(ips) => {
            tracing::debug!(
                sandbox = %sandbox_id,
                ips = ?ips,
                took_ms = started.elapsed().as_millis(),
                "CNI ADD done"
            );
            if let Err(err) = runtime.update_sandbox_network(sandbox_id, &ips).await {
                tracing::warn!(sandbox = %sandbox_id, error = %err, "writing the pod's hosts file failed");
            }
            Ok(())
        }
        Err(err) => {
            let msg = format!(
                "Failed to create pod sandbox: failed to setup network for sandbox {sandbox_id:?}: {}",
                error_chain(&err)
            );
            events
                .record(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedCreatePodSandBox",
                    &msg,
                    clock.now(),
                )
                .await;
            // containerd tears a sandbox whose network failed down at once (DEL first).
            log_teardown(
                teardown_sandbox(runtime, network, sandbox_id).await,
                "removing the failed sandbox failed",
            );
            Err(RETRY)
        }
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

async fn sandbox_netns(
    runtime: &dyn RuntimeService,
    sandbox_id: &str,
) -> Result<PathBuf, NetworkError> {
    let sandboxes = runtime
        .list_pod_sandboxes()
        .await
        .map_err(NetworkError::ListSandboxes)?;
    sandboxes
        .into_iter()
        .find(|s| s.id == sandbox_id)
        .and_then(|s| s.netns_path)
        .ok_or_else(|| NetworkError::NoNetns(sandbox_id.to_string()))
}

/// Releases a sandbox, the one way every caller does it: DEL while its namespace exists
/// (kubelet's `StopPodSandbox` tears the network down first), then stop and remove it.
/// Every step runs even when an earlier one failed, a sandbox that is already gone counts
/// as released, and running it again finishes what a failed run left (a failed DEL keeps
/// its record for the next run or the startup `gc`).
pub async fn teardown_sandbox(
    runtime: &dyn RuntimeService,
    network: Option<&Arc<PodNetwork>>,
    sandbox_id: &str,
) -> Result<(), Vec<TeardownError>> {
    let mut errors = Vec::new();
    if let Some(net) = network {
        if let Err(source) = net.detach(sandbox_id).await {
            errors.push(TeardownError::Network {
                id: sandbox_id.to_string(),
                source,
            });
        }
    }
    let gone = |r: Result<(), RuntimeError>| match r {
        Err(RuntimeError::SandboxNotFound { .. }) => Ok(()),
        other => other,
    };
    if let Err(source) = gone(runtime.stop_pod_sandbox(sandbox_id).await) {
        errors.push(TeardownError::Stop {
            id: sandbox_id.to_string(),
            source,
        });
    }
    if let Err(source) = gone(runtime.remove_pod_sandbox(sandbox_id).await) {
        errors.push(TeardownError::Remove {
            id: sandbox_id.to_string(),
            source,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Logs each failed step of a teardown with its causes.
pub fn log_teardown(result: Result<(), Vec<TeardownError>>, what: &str) {
    for err in result.err().into_iter().flatten() {
        tracing::warn!(error = %error_chain(&err), "{what}");
    }
}

/// Agent hook, once the first pod list is in and orphans are gone: release attachments
/// whose sandbox no longer exists (a crash between removal and DEL), and replace running
/// sandboxes from before `agent_start` that never finished their attachment (kubelet makes
/// a new sandbox for a pod whose sandbox has no IP).
pub async fn recover(
    runtime: &dyn RuntimeService,
    network: Option<&Arc<PodNetwork>>,
    agent_start: jiff::Timestamp,
) {
    let Some(net) = network else {
        return;
    };
    let sandboxes = match runtime.list_pod_sandboxes().await {
        Ok(s) => s,
        Err(err) => {
            tracing::warn!(error = %err, "listing sandboxes for network recovery failed");
            return;
        }
    };
    let live: HashSet<String> = sandboxes.iter().map(|s| s.id.clone()).collect();
    net.gc(&live).await;
    for s in sandboxes.iter().filter(|s| {
        s.state == runtime::SandboxState::Ready
            && !s.config.host_network
            && s.created_at < agent_start
            && net.pod_ips(&s.id).is_none()
    }) {
        tracing::info!(sandbox = %s.id, "sandbox has no network attachment; replacing it");
        log_teardown(
            teardown_sandbox(runtime, network, &s.id).await,
            "removing the unattached sandbox failed",
        );
    }
}

/// The IP a container's env sees as `status.podIP` (empty until known).
pub fn pod_ip(network: Option<&PodNetwork>, host_ip: &str, pod: &Pod, sandbox_id: &str) -> String {
    if is_host_network(pod) {
        return host_ip.to_string();
    }
    network
        .and_then(|n| n.pod_ips(sandbox_id))
        .and_then(|ips| ips.first().map(IpAddr::to_string))
        .unwrap_or_default()
}

/// Status hook: `status.podIP`/`podIPs` from the ready sandbox's attachment (kubelet reports
/// the sandbox's IPs; hostNetwork pods already carry the node's).
pub fn fill_status(
    network: Option<&PodNetwork>,
    pod: &Pod,
    ready_sandbox: Option<&PodSandboxStatus>,
    status: &mut PodStatus,
) {
    if is_host_network(pod) {
        return;
    }
    let Some(sandbox) = ready_sandbox else {
        return;
    };
    let ips = network
        .and_then(|n| n.pod_ips(&sandbox.id))
        .unwrap_or_default();
    if let Some(first) = ips.first() {
        status.pod_ip = Some(first.to_string());
        status.pod_ips = Some(ips.iter().map(|ip| PodIP { ip: ip.to_string() }).collect());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).expect("pod")
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [
                {"name": "a", "image": "x", "ports": [
                    {"containerPort": 80, "hostPort": 8080},
                    {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "192.0.2.2"},
                    {"containerPort": 9000}
                ]}
            ]}
        }));
        let m = port_mappings(&p);
        assert_eq!(
            m,
            vec![
                json!({"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}),
                json!({"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "192.0.2.2"}),
            ]
        );
    }

    #[test]
    fn cni_args_name_the_pod_like_kubelet() {
        let p = pod(json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u1"},
            "spec": {"containers": []}
        }));
        let args = cni_args(&p, "sb");
        let keys: Vec<_> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            keys,
            [
                "IgnoreUnknown=1",
                "K8S_POD_NAMESPACE=ns1",
                "K8S_POD_NAME=web",
                "K8S_POD_INFRA_CONTAINER_ID=sb",
                "K8S_POD_UID=u1"
            ]
        );
    }

    #[test]
    fn only_runtime_ids_name_pins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = PodNetwork::new(
            NetworkConfig::default(),
            dir.path(),
            Arc::new(cni::RealExec),
        );
        assert!(net.pin_path("../../etc/passwd").is_err());
        assert!(net.pin_path(&"a".repeat(64)).is_ok());
    }
}
