//! The runtime's errors: one variant per failed operation, carrying the sandbox or container
//! id (or the path) and the real cause, so the agent can turn each into a pod status reason
//! in one place and nothing is flattened to a string on the way.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use shim::protocol::Response;

use crate::client::ClientError;
use crate::network::{chain, NetworkError};

/// Failures of runtime operations, turned into pod status reasons by the agent. Each message
/// ends with its cause's, so the text the agent shows in events and statuses is complete.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {reference:?} not found in the local store")]
    ImageNotFound { reference: String },
    #[error("reading the image filesystem at {path}")]
    ImageFs {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pulling image {reference:?}: {source}")]
    PullImage {
        reference: String,
        #[source]
        source: Box<images::ImageError>,
    },
    #[error("image store lookup of {reference:?}: {source}")]
    ImageStore {
        reference: String,
        #[source]
        source: Box<images::ImageError>,
    },
    #[error("opening the image store {path}: {source}")]
    OpenImageStore {
        path: PathBuf,
        #[source]
        source: Box<images::ImageError>,
    },
    /// containerd's wording for a RuntimeClass handler it has no runtime for, which kubelet
    /// puts in the `FailedCreatePodSandBox` event.
    #[error("failed to get sandbox runtime: no runtime for {handler:?} is configured")]
    UnknownRuntimeHandler { handler: String },
    #[error("sandbox {id} not found")]
    SandboxNotFound { id: String },
    #[error("sandbox {id} is not running")]
    SandboxNotRunning { id: String },
    #[error("container {id} not found")]
    ContainerNotFound { id: String },
    #[error("container {id} is not running")]
    ContainerNotRunning { id: String },
    #[error("creating container {name:?}: no command given")]
    NoCommand { name: String },
    #[error("creating container {name:?}: mount source {path} does not exist")]
    MountSourceMissing { name: String, path: PathBuf },
    #[error("creating container {name:?}: {source}")]
    SeccompProfile {
        name: String,
        #[source]
        source: seccomp_profile::LocalhostError,
    },
    #[error("starting the shim of sandbox {id}: {source}")]
    StartShim {
        id: String,
        #[source]
        source: ShimStartError,
    },
    #[error("creating container {name:?}: {source}")]
    CreateContainer {
        name: String,
        #[source]
        source: ShimError,
    },
    #[error("starting container {id}: {source}")]
    StartContainer {
        id: String,
        #[source]
        source: ShimError,
    },
    #[error("container {id} did not exit after SIGKILL")]
    KillTimedOut { id: String },
    #[error("exec in container {id}: {source}")]
    Exec {
        id: String,
        #[source]
        source: ShimError,
    },
    #[error("attach to container {id}: {source}")]
    Attach {
        id: String,
        #[source]
        source: ShimError,
    },
    #[error("exec in container {id}: command {cmd:?} timed out after {timeout:?}")]
    ExecTimedOut {
        id: String,
        cmd: Vec<String>,
        timeout: Duration,
    },
    /// kubelet's wording for a failed port-forward dial inside the pod.
    #[error("failed to connect to localhost:{port} inside namespace {:?}, IPv4: dial tcp4 127.0.0.1:{port}: connect: {source}", netns.display().to_string())]
    PortForward {
        sandbox_id: String,
        port: u16,
        netns: PathBuf,
        #[source]
        source: io::Error,
    },
    /// A request to the sandbox's shim (signal, remove, shutdown) failed.
    #[error("shim of sandbox {id}: {source}")]
    Shim {
        id: String,
        #[source]
        source: ShimError,
    },
    /// containerd's wording, which kubelet puts in the `FailedCreatePodSandBox` event.
    #[error("failed to setup network for sandbox {id:?}: {}", chain(.source))]
    SetupNetwork {
        id: String,
        #[source]
        source: Box<NetworkError>,
    },
    #[error("failed to destroy network for sandbox {id:?}: {}", chain(.source))]
    TeardownNetwork {
        id: String,
        #[source]
        source: Box<NetworkError>,
    },
    #[error("cgroup of {id}: {source}")]
    Cgroup {
        id: String,
        #[source]
        source: cgroups::CgroupError,
    },
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("making a new id: {source}")]
    NewId {
        #[source]
        source: io::Error,
    },
    #[error("a background task of the runtime failed: {source}")]
    Task {
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("{operation} is not supported by this runtime (sandbox or container {id})")]
    Unsupported { operation: &'static str, id: String },
}

/// How a conversation with a running shim failed.
#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error(transparent)]
    Call(#[from] ClientError),
    /// The shim carried the request out and failed; `message` is its own report (e.g. the
    /// container process's exec error), which the agent shows as the container's message.
    #[error("{message}")]
    Refused { message: String },
    #[error("unexpected answer {answer:?}")]
    Unexpected { answer: Box<Response> },
    #[error("talking to the shim: {source}")]
    Io {
        #[source]
        source: io::Error,
    },
    #[error("the answer carried {got} fds, expected {expected}")]
    FdCount { got: usize, expected: usize },
    #[error("the shim went away before the exec's exit")]
    Gone,
}

impl ShimError {
    /// The shim's own words when it refused the request, else this error's text: what the
    /// agent puts in a container's waiting message.
    pub fn message(&self) -> String {
        match self {
            ShimError::Refused { message } => message.clone(),
            other => other.to_string(),
        }
    }
}

impl From<Response> for ShimError {
    /// An answer that is not what the request expects (`Error` is the shim's refusal).
    fn from(answer: Response) -> Self {
        match answer {
            Response::Error { message } => ShimError::Refused { message },
            other => ShimError::Unexpected {
                answer: Box::new(other),
            },
        }
    }
}

/// Why a freshly spawned shim never answered.
#[derive(Debug, thiserror::Error)]
pub enum ShimStartError {
    #[error("opening its log {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("spawning {binary}: {source}")]
    Spawn {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("it exited at once")]
    ExitedAtOnce,
    #[error("waiting for it to fork its PID namespace: {source}")]
    Wait {
        #[source]
        source: io::Error,
    },
    #[error("it did not fork its PID namespace within {timeout:?}")]
    ForkTimedOut { timeout: Duration },
    #[error("creating the pod PID namespace failed ({status}): {log_tail}")]
    PidNamespace {
        status: std::process::ExitStatus,
        log_tail: String,
    },
    #[error("it recorded no pid")]
    NoPid,
    #[error("reading its pid file {path}: {source}")]
    PidFile {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unexpected answer {answer:?}")]
    Unexpected { answer: Box<Response> },
    #[error("it did not become ready ({source}); its log: {log_tail}")]
    NotReady {
        log_tail: String,
        #[source]
        source: ClientError,
    },
}

impl RuntimeError {
    /// The message a container shows for this failure (kubelet puts the runtime's error
    /// text in the waiting state): the shim's own words when it refused, else the whole
    /// error.
    pub fn container_message(&self) -> String {
        match self {
            RuntimeError::CreateContainer { source, .. }
            | RuntimeError::StartContainer { source, .. }
            | RuntimeError::Exec { source, .. }
            | RuntimeError::Attach { source, .. }
            | RuntimeError::Shim { source, .. } => source.message(),
            RuntimeError::PullImage { source, .. } => source.to_string(),
            other => other.to_string(),
        }
    }
}
