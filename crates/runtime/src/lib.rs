//! The container runtime behind a CRI-shaped interface: the node agent asks for sandboxes and
//! containers; this crate turns them into image lookups (crate `images`) and requests to the
//! per-pod shim (crate `shim`). It knows nothing of the Kubernetes API.
//!
//! INTERFACE CONTRACT (fixed; the node agent is written against it): the types and the
//! `RuntimeService` trait below. Implementations may add fields with defaults but must not
//! rename or remove any.

pub mod attach;
mod client;
mod error;
mod exits;
pub mod image_backend;
mod network;
mod pidns;
mod procs;
pub mod records;
mod service;
pub mod stdio;

pub use attach::{AttachOutput, AttachSession};
pub use client::ClientError;
/// The sandbox and container configs the agent hands in (CRI `PodSandboxConfig`,
/// `ContainerConfig` and their parts); the shim carries them out as they are.
pub use cri::{
    ContainerConfig, ContainerUser, DnsConfig, HostAlias, IdMapping, LinuxResources, Mount,
    PodSandboxConfig, PortMapping, Protocol, SeccompProfile, SecurityConfig,
    SupplementalGroupsPolicy, UserSpec,
};
pub use error::{RuntimeError, ShimError, ShimStartError};
pub use image_backend::ImageBackend;
pub use images::Credentials;
pub use network::{NetworkConfig, NetworkError, PodCidr};
pub use service::{image_store_dir, Runtime, RuntimeConfig, RUNTIME_HANDLERS};
pub use stdio::ExecIo;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Image configuration the kubelet needs to build a container (OCI image config `config`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` strings, as in the image config.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// Raw `User` of the image config (`"1000"`, `"1000:1000"`, `"nobody"`, `"app:grp"`).
    pub user: Option<String>,
    /// Raw `StopSignal` (`"SIGQUIT"`, `"3"`).
    pub stop_signal: Option<String>,
}

/// The filesystem holding the image store (CRI `ImageFsInfo`, as kubelet's image GC reads
/// it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FsStats {
    pub capacity_bytes: u64,
    /// Bytes an unprivileged writer may still use.
    pub available_bytes: u64,
}

/// An image in the local store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    /// `sha256:<hex>` of the image config blob (what kubelet shows as the image ID's digest).
    pub id: String,
    /// Normalised references that point at it, e.g. `127.0.0.1:5000/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `repo@sha256:<manifest digest>` references.
    pub repo_digests: Vec<String>,
    pub size_bytes: u64,
    pub config: ImageConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PodSandboxStatus {
    pub id: String,
    pub config: PodSandboxConfig,
    pub state: SandboxState,
    pub created_at: jiff::Timestamp,
    /// PID of the shim (the pod's infra process), when it runs.
    pub pid: Option<u32>,
    /// The pod's network namespace (`/proc/<shim pid>/ns/net`), for probes and
    /// port-forward; `None` when the sandbox is not running.
    #[serde(default)]
    pub netns_path: Option<PathBuf>,
    /// The pod's addresses from its CNI attachment, the first one primary (CRI
    /// `PodSandboxNetworkStatus`); empty on the host network or without a pod network.
    #[serde(default)]
    pub ips: Vec<std::net::IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

/// A container that has stopped (CRI's `CONTAINER_STOPPED_EVENT`), with the sandbox and the
/// pod it belongs to, as CRI's `ContainerEventResponse` names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerEvent {
    pub container_id: String,
    pub sandbox_id: String,
    pub pod_uid: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Runtime-assigned id (hex, 64 chars); kubelet shows it as `peapod://<id>`.
    pub id: String,
    pub sandbox_id: String,
    pub config: ContainerConfig,
    pub state: ContainerState,
    pub created_at: jiff::Timestamp,
    pub started_at: Option<jiff::Timestamp>,
    pub finished_at: Option<jiff::Timestamp>,
    pub exit_code: Option<i32>,
    /// `Completed`, `Error`, `OOMKilled`, `StartError`…, as CRI runtimes report them.
    pub reason: Option<String>,
    pub message: Option<String>,
    pub pid: Option<u32>,
    /// Absolute path of the log file.
    pub log_path: PathBuf,
    /// The identity the container's first process got, once it has started (CRI
    /// `ContainerStatus.user`).
    #[serde(default)]
    pub user: Option<ContainerUser>,
}

/// One way the runtime runs containers, named by a RuntimeClass's `handler`, and what it
/// can do (CRI `RuntimeHandler`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeHandler {
    /// `""` for the default handler.
    pub name: String,
    /// Read-only mounts can be made read-only down to every mount below them (KEP-3857).
    pub recursive_read_only_mounts: bool,
    /// Pods with `hostUsers: false` can run.
    pub user_namespaces: bool,
}

/// The runtime's handlers and features (CRI `StatusResponse.runtime_handlers` and
/// `features`), which the kubelet publishes on its Node and consults for each pod.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeStatus {
    pub handlers: Vec<RuntimeHandler>,
    /// `supplementalGroupsPolicy: Strict` is carried out (KEP-3619).
    pub supplemental_groups_policy: bool,
}

impl RuntimeStatus {
    /// Whether the pod's `handler` makes recursively read-only mounts (kubelet's
    /// `runtimeHandlerSupportsRecursiveReadOnlyMounts`): an unknown handler does not.
    pub fn recursive_read_only_mounts(&self, handler: &str) -> bool {
        self.handlers
            .iter()
            .find(|h| h.name == handler)
            .is_some_and(|h| h.recursive_read_only_mounts)
    }
}

/// A running sandbox's resource use and its running containers' (CRI `PodSandboxStats`);
/// the figures are cumulative, read when the stats were listed.
#[derive(Debug, Clone, PartialEq)]
pub struct PodSandboxStats {
    pub id: String,
    pub config: PodSandboxConfig,
    pub created_at: jiff::Timestamp,
    /// The pod cgroup's use: every container of the pod and its infra process.
    pub usage: cgroups::Usage,
    pub containers: Vec<ContainerStats>,
}

/// One running container's resource use (CRI `ContainerStats`).
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerStats {
    pub id: String,
    /// The container's name in the pod.
    pub name: String,
    pub started_at: jiff::Timestamp,
    pub usage: cgroups::Usage,
}

/// Output of a command run to completion in a container (CRI `ExecSync`), e.g. exec probes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSyncResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// CRI-shaped runtime interface used by the node agent. Every method is idempotent where CRI
/// says so (stopping a stopped container, removing a removed sandbox succeed).
#[async_trait::async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    /// The handlers and features (CRI `Status`); a runtime that reports none supports no
    /// optional feature.
    fn status(&self) -> RuntimeStatus {
        RuntimeStatus::default()
    }

    /// Pulls (or re-pulls) an image by reference with the registry credentials `auth` (CRI
    /// `AuthConfig`; anonymously when `None`); HTTP allowed only for localhost/127.0.0.0/8.
    /// A re-pull resolves the reference again and downloads only layers not yet stored.
    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&Credentials>,
    ) -> Result<ImageInfo, RuntimeError>;
    /// The local image for a reference, if present.
    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError>;
    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError>;
    /// Removes an image by id with its blobs and unpacked layers no other image uses (CRI
    /// `RemoveImage`). The caller makes sure no container uses it.
    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError>;
    /// Capacity and free space of the image filesystem (CRI `ImageFsInfo`).
    async fn image_fs_stats(&self) -> Result<FsStats, RuntimeError>;

    /// Starts a sandbox and, unless it is on the host network, attaches it to the pod
    /// network (CNI ADD in its new network namespace, as containerd's `RunPodSandbox`);
    /// returns it ready, its addresses in `ips`. A sandbox whose network failed is released
    /// again before the error returns.
    async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
    ) -> Result<PodSandboxStatus, RuntimeError>;
    /// Releases the sandbox's network (CNI DEL) and stops every container of the sandbox
    /// (SIGKILL) and its infra process.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    /// Releases everything the sandbox holds: network, processes, cgroups, mounts, files.
    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>, RuntimeError>;

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError>;
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// Sends the container's stop signal, waits up to `timeout`, then SIGKILL; returns once it
    /// has exited.
    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError>;
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    async fn list_containers(
        &self,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError>;
    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError>;
    /// Writes new cgroup limits for a running container and records them, with
    /// `annotations` added to its config, so that its status shows them from then on (CRI
    /// `UpdateContainerResources`; kubelet's in-place resize).
    async fn update_container_resources(
        &self,
        id: &str,
        resources: &LinuxResources,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError>;
    /// Writes new limits for the pod cgroup of a sandbox and records them (CRI
    /// `UpdatePodSandboxResources`).
    async fn update_pod_sandbox_resources(
        &self,
        id: &str,
        resources: &LinuxResources,
    ) -> Result<(), RuntimeError>;

    /// Containers' exits as they happen (CRI `GetContainerEvents`): a hint to re-read a
    /// pod's containers now, lossy when the receiver lags. A runtime that cannot tell closes
    /// the channel at once, and its callers re-read on a timer only.
    fn container_events(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent> {
        tokio::sync::broadcast::channel(1).1
    }

    /// The resource use of every ready sandbox and its running containers (CRI
    /// `ListPodSandboxStats`); empty where the runtime has no cgroups to read.
    async fn list_pod_sandbox_stats(&self) -> Result<Vec<PodSandboxStats>, RuntimeError> {
        Ok(Vec::new())
    }

    /// Runs `cmd` in the container's namespaces and cgroup to completion or `timeout` (then
    /// killed), capturing its output (CRI `ExecSync`).
    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult, RuntimeError> {
        let _ = (cmd, timeout);
        Err(RuntimeError::Unsupported {
            operation: "exec",
            id: id.to_string(),
        })
    }

    /// Starts `options.cmd` in the container's namespaces and cgroup with its stdio handed to
    /// the caller (CRI `Exec`, streamed by the agent). Dropping the session before the exit
    /// kills the process.
    async fn exec(&self, id: &str, options: &ExecOptions) -> Result<ExecSession, RuntimeError> {
        let _ = options;
        Err(RuntimeError::Unsupported {
            operation: "exec",
            id: id.to_string(),
        })
    }

    /// Connects to the running container's main process (CRI `Attach`): its output from now
    /// on, and its stdin (the pty with `tty`) when the container has one and `stdin` asks.
    async fn attach(&self, id: &str, stdin: bool) -> Result<AttachSession, RuntimeError> {
        let _ = stdin;
        Err(RuntimeError::Unsupported {
            operation: "attach",
            id: id.to_string(),
        })
    }

    /// A TCP connection to `127.0.0.1:<port>` inside the sandbox's network namespace (CRI
    /// `PortForward`).
    async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError> {
        let _ = port;
        Err(RuntimeError::Unsupported {
            operation: "port-forward",
            id: sandbox_id.to_string(),
        })
    }
}

/// What to run for a streaming exec (CRI `ExecRequest`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOptions {
    /// Full argv; never empty.
    pub cmd: Vec<String>,
    /// Allocate a pseudo-terminal (then stdout and stderr are one stream, `tty`).
    pub tty: bool,
    /// Give the process a stdin the caller writes (else /dev/null).
    pub stdin: bool,
}

/// How an exec'd process ends, resolved once the runtime has seen its exit.
pub type ExecExit =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<i32, RuntimeError>> + Send>>;

/// A running exec: the caller's ends of its stdio and its exit status. With a tty only `tty`
/// is set (read: the terminal's output; write: its input; `resize`).
pub struct ExecSession {
    pub stdin: Option<ExecIo>,
    pub stdout: Option<ExecIo>,
    pub stderr: Option<ExecIo>,
    pub tty: Option<ExecIo>,
    /// Resolves to the exit status (128 + signal when killed).
    pub exit: ExecExit,
}
