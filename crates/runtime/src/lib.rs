//! The container runtime behind a CRI-shaped interface: the node agent asks for sandboxes and
//! containers; this crate turns them into image lookups (crate `images`) and requests to the
//! per-pod shim (crate `shim`). It knows nothing of the Kubernetes API.
//!
//! INTERFACE CONTRACT (fixed; the node agent is written against it): the types and the
//! `RuntimeService` trait below. Implementations may add fields with defaults but must not
//! rename or remove any.

mod client;
pub mod image_backend;
mod procs;
pub mod records;
mod service;

pub use image_backend::ImageBackend;
pub use service::{Runtime, RuntimeConfig};

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

/// What the agent wants of a pod sandbox (CRI `PodSandboxConfig`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PodSandboxConfig {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub attempt: u32,
    pub hostname: String,
    /// Directory for this pod's container logs (kubelet: `/var/log/pods/<ns>_<name>_<uid>`).
    pub log_directory: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
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
    /// The pod's network namespace (`/proc/<shim pid>/ns/net` or a bind-mounted path), for
    /// CNI, probes and port-forward; `None` when the sandbox is not running.
    #[serde(default)]
    pub netns_path: Option<PathBuf>,
}

/// User and groups to run a container's process as; names are resolved in the container's
/// rootfs (`/etc/passwd`, `/etc/group`) by the runtime.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserSpec {
    /// From `securityContext.runAsUser`; wins over the image's `User`.
    pub run_as_user: Option<u32>,
    pub run_as_group: Option<u32>,
    /// The image's raw `User` string, used when `run_as_user` is `None`.
    pub image_user: Option<String>,
    pub supplemental_groups: Vec<u32>,
}

/// A bind mount into the container (volumes arrive in a later issue).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub readonly: bool,
}

/// What the agent wants of a container (CRI `ContainerConfig`). The agent has already merged
/// `command`/`args`/`env` with the image config per Kubernetes' rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerConfig {
    pub name: String,
    /// Restart count of this container in the pod (CRI metadata.attempt).
    pub attempt: u32,
    /// The image reference as written in the pod spec (for status).
    pub image: String,
    /// The resolved image id (`sha256:…`), as returned by `pull_image`/`image_status`.
    pub image_id: String,
    /// Full argv; never empty.
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub user: UserSpec,
    /// Log file path relative to the sandbox's `log_directory` (kubelet: `<name>/<attempt>.log`).
    pub log_path: PathBuf,
    /// Signal number sent by `stop_container` before SIGKILL (image STOPSIGNAL, else SIGTERM).
    pub stop_signal: i32,
    pub mounts: Vec<Mount>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
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
}

/// Output of a command run to completion in a container (CRI `ExecSync`), e.g. exec probes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecSyncResult {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: i32,
}

/// Failures of runtime operations, turned into pod status reasons by the agent.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {reference:?} not found in the local store")]
    ImageNotFound { reference: String },
    #[error("pulling image {reference:?}: {message}")]
    ImagePull { reference: String, message: String },
    #[error("sandbox {id} not found")]
    SandboxNotFound { id: String },
    #[error("container {id} not found")]
    ContainerNotFound { id: String },
    #[error("creating container {name:?}: {message}")]
    CreateContainer { name: String, message: String },
    #[error("starting container {id}: {message}")]
    StartContainer { id: String, message: String },
    #[error("{operation}: {source}")]
    Io {
        operation: String,
        #[source]
        source: std::io::Error,
    },
    #[error("shim of sandbox {id}: {message}")]
    Shim { id: String, message: String },
}

/// CRI-shaped runtime interface used by the node agent. Every method is idempotent where CRI
/// says so (stopping a stopped container, removing a removed sandbox succeed).
#[async_trait::async_trait]
pub trait RuntimeService: Send + Sync + 'static {
    /// Pulls (or re-pulls) an image by reference; HTTP allowed only for localhost/127.0.0.0/8.
    async fn pull_image(&self, reference: &str) -> Result<ImageInfo, RuntimeError>;
    /// The local image for a reference, if present.
    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError>;
    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError>;

    async fn run_pod_sandbox(&self, config: &PodSandboxConfig) -> Result<String, RuntimeError>;
    /// Stops every container of the sandbox (SIGKILL) and its infra process.
    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError>;
    /// Releases everything the sandbox holds: processes, cgroups, mounts, files.
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

    /// Runs `cmd` in the container's namespaces and cgroup to completion or `timeout` (then
    /// killed), capturing its output (CRI `ExecSync`).
    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult, RuntimeError> {
        let _ = (cmd, timeout);
        Err(RuntimeError::Shim {
            id: id.to_string(),
            message: "exec is not supported by this runtime".to_string(),
        })
    }
}
