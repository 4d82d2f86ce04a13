//! How the binary configures the node agent, and why the agent could not run.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use nodeapi::TlsError;

/// How `peapod up` and `peapod agent` configure the node agent.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub node_name: String,
    /// Logs go under `<state_dir>/logs/<ns>_<pod>_<uid>/<container>/<attempt>.log`.
    pub state_dir: PathBuf,
    /// Node API (TLS) listen address; port 0 picks a free port (reported in the Node).
    pub node_api_listen: SocketAddr,
    /// InternalIP written into the Node (and pods' hostIP).
    pub node_api_advertise_ip: IpAddr,
    /// (certificate PEM, private key PEM) of the node API.
    pub node_api_tls: (String, String),
    /// Bearer token every node API request must carry.
    pub node_api_token: String,
    /// kubelet's `staticPodPath`: a directory (or one file) of pod manifests run as static
    /// pods, without the API server.
    pub static_pod_path: Option<PathBuf>,
    /// kubelet's `fileCheckFrequency`: how often `static_pod_path` is rescanned besides
    /// inotify (`staticpods::DEFAULT_FILE_CHECK` when unset).
    pub file_check_frequency: Option<std::time::Duration>,
    /// kubelet's `allowedUnsafeSysctls`: sysctls (or prefixes ending in `*`) outside the
    /// safe set that pods may set.
    pub allowed_unsafe_sysctls: Vec<String>,
    /// How often local ephemeral storage is measured for eviction
    /// (`eviction::DEFAULT_PERIOD`, kubelet's 10 s, when unset).
    pub eviction_period: Option<std::time::Duration>,
    /// The KubeletConfiguration's eviction thresholds and settings (`evictionHard`,
    /// `evictionSoft`, ...; the kubelet's defaults when absent).
    pub eviction: node_pressure::Settings,
    /// The KubeletConfiguration's image GC thresholds and minimum age.
    pub image_gc: crate::imagegc::Policy,
    /// How often image GC runs (`imagegc::DEFAULT_PERIOD`, kubelet's 5 min, when unset).
    pub image_gc_period: Option<std::time::Duration>,
    /// The KubeletConfiguration's `serializeImagePulls` / `maxParallelImagePulls`.
    pub image_pulls: imagepull::PullerConfig,
    /// The node-wide docker `config.json` search (kubelet reads its root dir's).
    pub registry_credentials: imagepull::NodeCredentials,
    /// The KubeletConfiguration's graceful node shutdown: when set, stopping the agent
    /// terminates the pods (by default they keep running).
    pub shutdown: node_shutdown::Policy,
    /// The histograms served on the node API's `/metrics` (the runtime observes its
    /// phases into `metrics.phases`).
    pub metrics: crate::NodeMetrics,
    /// The node allocatable cgroup and QoS tiers pods are placed in (kubelet's
    /// `cgroupsPerQOS`); `None` leaves pod cgroups to the runtime and sets no tiers.
    pub pod_cgroups: Option<podcgroups::QosCgroups>,
    /// `nodeStatusUpdateFrequency`, `nodeStatusReportFrequency`, `nodeLeaseDurationSeconds`.
    pub node_status: crate::nodestatus::Periods,
    /// kubelet's `syncFrequency`: how often a pod is re-synced (and its volumes refreshed)
    /// when nothing wakes its worker (`DEFAULT_SYNC_FREQUENCY`, kubelet's 1 min, when unset).
    pub sync_frequency: Option<std::time::Duration>,
}

/// kubelet's default `syncFrequency`.
pub const DEFAULT_SYNC_FREQUENCY: std::time::Duration = std::time::Duration::from_secs(60);

/// Why the agent could not run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("creating state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("binding the node API on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("node API TLS")]
    Tls(#[from] TlsError),
    #[error("loading the pods' user namespace ranges")]
    UserNamespaces(#[from] userns::UsernsError),
    #[error("the node's host ID range for user namespaces")]
    HostIdRange(#[from] userns::HostRangeError),
}
