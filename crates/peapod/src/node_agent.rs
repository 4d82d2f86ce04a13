//! The node agent's half of a process, as `peapod up` and `peapod agent` both run it: the
//! runtime that reports its phases into the agent's metrics, the agent task itself, and the
//! way it ends (a signal drains the node when the configuration asks for graceful shutdown,
//! else the pods keep running).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cli::StaticPodArgs;
use crate::process;
use crate::static_pods::StaticPodSettings;

/// The runtime of `state_dir` on the node's pod network, with the agent's metrics it
/// observes pod starts and stops into.
pub fn open_runtime(
    state_dir: &Path,
    network: runtime::NetworkConfig,
    settings: &StaticPodSettings,
) -> anyhow::Result<(runtime::Runtime, node::NodeMetrics)> {
    let metrics = node::NodeMetrics::new();
    let runtime = runtime::Runtime::new(runtime::RuntimeConfig {
        network: Some(network),
        phases: Some(metrics.phases.clone()),
        stop_phases: Some(metrics.stop_phases.clone()),
        container_logs: settings.container_logs,
        ..runtime::RuntimeConfig::new(
            state_dir.to_path_buf(),
            std::env::current_exe().context("locating the peapod binary for the shim")?,
        )
    })
    .context("opening the runtime")?;
    Ok((runtime, metrics))
}

/// The address the API server is told to reach the node API at: the listen address, or
/// loopback when it listens on all of them.
pub fn advertise_ip(listen: SocketAddr) -> IpAddr {
    match listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    }
}

/// Who the node is and how its API serves.
pub struct NodeIdentity {
    pub name: String,
    pub state_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub api_tls: (String, String),
    pub api_token: String,
}

/// A started node agent and what its end needs.
pub struct RunningAgent {
    task: JoinHandle<Result<(), node::AgentError>>,
    drain: node_shutdown::Policy,
}

/// Starts the node agent (it writes as `kubelet`) with the kubelet settings of `settings`.
pub fn spawn(
    client: &kube::Client,
    runtime: runtime::Runtime,
    metrics: node::NodeMetrics,
    node: NodeIdentity,
    settings: StaticPodSettings,
    args: &StaticPodArgs,
    shutdown: watch::Receiver<bool>,
) -> RunningAgent {
    let pod_cgroups = process::pod_cgroups(runtime.config());
    let drain = settings.shutdown.clone();
    let registry_credentials = imagepull::NodeCredentials::search(
        args.registry_auth_file.clone(),
        &node.state_dir,
        std::env::var_os("DOCKER_CONFIG").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    );
    let task = tokio::spawn(node::run(
        controller_base::useragent::named(client, "kubelet"),
        Arc::new(runtime),
        node::AgentConfig {
            node_name: node.name,
            node_api_advertise_ip: advertise_ip(node.api_listen),
            state_dir: node.state_dir,
            node_api_listen: node.api_listen,
            node_api_tls: node.api_tls,
            node_api_token: node.api_token,
            static_pod_path: settings.path,
            file_check_frequency: settings.file_check_frequency,
            allowed_unsafe_sysctls: settings.allowed_unsafe_sysctls,
            eviction_period: None,
            eviction: settings.eviction,
            image_gc: settings.image_gc,
            image_gc_period: Some(args.image_gc_period),
            image_pulls: settings.image_pulls,
            registry_credentials,
            shutdown: settings.shutdown,
            node_status: settings.node_status,
            sync_frequency: settings.sync_frequency,
            metrics,
            pod_cgroups,
        },
        shutdown,
    ));
    RunningAgent { task, drain }
}

impl RunningAgent {
    /// Runs until the agent fails or a signal comes; on a signal, tells every task through
    /// `shutdown` and, when graceful node shutdown is configured, lets the agent terminate
    /// the pods (within its grace periods) while the API still answers.
    pub async fn until_signal(mut self, shutdown: &watch::Sender<bool>) -> anyhow::Result<()> {
        tokio::select! {
            r = &mut self.task => match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::Error::new(e).context("node agent failed")),
                Err(e) => Err(anyhow::anyhow!("node agent task: {e}")),
            },
            _ = process::shutdown_signal() => {
                let _ = shutdown.send(true);
                if self.drain.enabled() {
                    eprintln!("peapod: shutting down, terminating the pods");
                    let bound = self.drain.total() + std::time::Duration::from_secs(10);
                    let _ = tokio::time::timeout(bound, &mut self.task).await;
                } else {
                    eprintln!("peapod: shutting down (pods keep running; `peapod reset` stops them)");
                }
                Ok(())
            }
        }
    }
}
