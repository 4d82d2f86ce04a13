//! The typed request/response protocol between the runtime (client) and a pod's shim
//! (server), and the on-disk layout and records they share: one JSON message per line on a
//! unix socket, one connection per request, so a client crash never leaves the shim stuck
//! mid-conversation.

use std::io;
use std::path::{Path, PathBuf};

use cri::{ContainerConfig, PodSandboxConfig};
use serde::{Deserialize, Serialize};

/// Longest request or response line accepted, so a bad peer cannot make the other side
/// buffer without bound.
pub const MAX_MESSAGE: u64 = 4 << 20;

/// What the shim needs to know about its sandbox; the runtime writes it to
/// `<pod dir>/shim.json` before spawning the shim.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShimConfig {
    pub sandbox_id: String,
    /// Root of the host's cgroup hierarchies (normally `/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// The pod's cgroup relative to the hierarchy roots (`peapod/pod<uid>`); each container
    /// gets `<pod cgroup>/<container id>`.
    pub pod_cgroup: PathBuf,
    /// The cgroup the shim moves itself into first thing (relative to the hierarchy roots,
    /// created by the runtime); `None`: it stays where it was started.
    #[serde(default)]
    pub shim_cgroup: Option<PathBuf>,
    /// The sandbox as the agent asked for it. The shim uses its hostname, its
    /// `shareProcessNamespace` (the shim becomes PID 1 of a PID namespace every container
    /// joins, as the `pidns` module sets up), its namespaced sysctls (set at start) and `hostNetwork`
    /// (stay in the node's network and UTS namespaces).
    pub sandbox: PodSandboxConfig,
}

/// Everything needed to start one container process: the agent's config plus what the
/// runtime resolved for it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ContainerSpec {
    /// 64 hex characters; also the name of its directory and cgroup.
    pub id: String,
    /// Image layer directories, lowest first.
    pub lowerdirs: Vec<PathBuf>,
    /// Absolute path of the CRI log file.
    pub log_path: PathBuf,
    /// When the log file is rotated; `None` lets it grow.
    #[serde(default)]
    pub log_rotation: Option<crilog::Rotation>,
    /// Argv, env, working dir, user, mounts, cgroup limits and security settings.
    pub config: ContainerConfig,
    /// The profile file a Localhost seccomp profile names, as the runtime read it.
    #[serde(default)]
    pub localhost_seccomp: Option<seccomp_profile::Profile>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    CreateContainer(Box<ContainerSpec>),
    StartContainer {
        id: String,
    },
    Signal {
        id: String,
        signal: i32,
    },
    /// Forget a container that is not running (its files are the runtime's to delete).
    RemoveContainer {
        id: String,
    },
    State,
    /// Kill every container, record their exits, and exit.
    Shutdown,
    /// Run a process in a running container's namespaces and cgroup (`kubectl exec`). The
    /// answer is `ExecStarted` with the process's stdio attached (see [`ExecSpec`]); the
    /// connection then stays open until the shim writes `ExecExited`.
    Exec(Box<ExecSpec>),
    /// Connect to a running container's main process (`kubectl attach`). The answer is
    /// `AttachStarted` with the session's fds attached (see [`AttachStarted`](Response::AttachStarted)).
    Attach {
        id: String,
        /// The caller wants to write the process's stdin.
        stdin: bool,
    },
}

/// First byte of a message on an attach session's socket, shim to caller: the rest is what
/// the process wrote on stdout (or its terminal).
pub const ATTACH_STDOUT: u8 = 1;
/// Shim to caller: the rest is what the process wrote on stderr.
pub const ATTACH_STDERR: u8 = 2;
/// Caller to shim (the whole message): the caller's stdin ended. With `stdinOnce` the
/// process then sees EOF on its stdin, as it does when the first session ends.
pub const ATTACH_CLOSE_STDIN: u8 = 255;

/// A process to run inside a running container, as `runc exec` runs one: the container's
/// env, user and working directory, with `args` as its argv.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecSpec {
    /// The container to run in.
    pub id: String,
    /// Full argv; never empty.
    pub args: Vec<String>,
    /// Give the process a pseudo-terminal as stdin/stdout/stderr. The `ExecStarted` answer
    /// then carries one fd, the pty master.
    pub tty: bool,
    /// Without a tty: hand back the write end of a stdin pipe (else stdin is /dev/null).
    /// The fds carried are then `[stdin (if asked), stdout, stderr]`.
    pub stdin: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Created,
    Running,
    Exited,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerReport {
    pub id: String,
    pub phase: Phase,
    pub pid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Response {
    Ok,
    Started {
        pid: u32,
        /// Microseconds from the container process being released into its cgroup until
        /// its root filesystem (overlay, /proc, /dev, binds) was ready; 0 from a shim that
        /// does not measure it.
        #[serde(default)]
        rootfs_us: u64,
    },
    State {
        pid: u32,
        containers: Vec<ContainerReport>,
    },
    Error {
        message: String,
    },
    /// An exec'd process runs as `pid` (in the shim's PID namespace); its stdio fds travel
    /// with this line as SCM_RIGHTS.
    ExecStarted {
        pid: u32,
    },
    /// The exec'd process ended: exit status, or 128 + signal number.
    ExecExited {
        exit_code: i32,
    },
    /// An attach session: its fds travel with this line as SCM_RIGHTS. The first is a
    /// SEQPACKET socket carrying the process's output (one message per chunk, tagged
    /// [`ATTACH_STDOUT`] or [`ATTACH_STDERR`]) until the process exits, and
    /// [`ATTACH_CLOSE_STDIN`] the other way; closing it ends the session. With `input`, the
    /// second is where the caller writes the process's stdin: the pty master with `tty` (also
    /// for resizing), else the stdin pipe.
    AttachStarted {
        tty: bool,
        input: bool,
    },
}

/// Why a container's process ended, as CRI runtimes report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExitReason {
    Completed,
    Error,
    OOMKilled,
    StartError,
    /// The shim went away without seeing the exit.
    Unknown,
}

impl ExitReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::OOMKilled => "OOMKilled",
            ExitReason::StartError => "StartError",
            ExitReason::Unknown => "Unknown",
        }
    }

    /// The reason for a normal exit with `code`, given whether the cgroup saw an OOM kill.
    pub fn for_exit(code: i32, oom_killed: bool) -> Self {
        match (oom_killed, code) {
            (true, _) => ExitReason::OOMKilled,
            (false, 0) => ExitReason::Completed,
            (false, _) => ExitReason::Error,
        }
    }
}

/// `containers/<id>/state.json`: the process is running (written once it has exec'd).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateRecord {
    pub pid: u32,
    pub started_at: jiff::Timestamp,
    /// The uid, gid and groups the process got, as it reported them before the exec.
    #[serde(default)]
    pub user: Option<cri::ContainerUser>,
}

/// `containers/<id>/exit.json`: how the process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit status, or 128 + signal number when killed by a signal (as shells and CRI do).
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub reason: ExitReason,
    pub message: Option<String>,
    pub finished_at: jiff::Timestamp,
}

/// The files of one pod sandbox under `<state dir>/pods/<sandbox id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodDir {
    root: PathBuf,
}

impl PodDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn shim_config(&self) -> PathBuf {
        self.root.join("shim.json")
    }
    pub fn socket(&self) -> PathBuf {
        self.root.join("shim.sock")
    }
    pub fn shim_pid(&self) -> PathBuf {
        self.root.join("shim.pid")
    }
    pub fn shim_log(&self) -> PathBuf {
        self.root.join("shim.log")
    }
    pub fn hostname(&self) -> PathBuf {
        self.root.join("hostname")
    }
    pub fn hosts(&self) -> PathBuf {
        self.root.join("hosts")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.root.join("resolv.conf")
    }
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }
    pub fn container(&self, id: &str) -> ContainerDir {
        ContainerDir {
            root: self.containers().join(id),
        }
    }
}

/// The files of one container under `<pod dir>/containers/<id>/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerDir {
    root: PathBuf,
}

impl ContainerDir {
    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    pub fn exit(&self) -> PathBuf {
        self.root.join("exit.json")
    }
    pub fn upper(&self) -> PathBuf {
        self.root.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.root.join("rootfs")
    }
}

/// Writes `value` as JSON to `path` through a temp file and rename, so readers see the old
/// or the new record, never half of one, even if the writer dies mid-way.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_atomic(path, &data)
}

/// Writes bytes through a temp file in the same directory, fsync, and rename: after a power
/// loss the file holds the old or the new bytes.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, true)
}

/// As [`write_atomic`] without the fsync, for files only a live sandbox uses (its hostname,
/// hosts and resolv.conf, the shim's config and pid): readers never see half of one while
/// the machine runs, and a reboot ends the sandbox they belong to, so their durability buys
/// nothing and costs a disk flush each on the pod start path.
pub fn write_volatile(path: &Path, data: &[u8]) -> io::Result<()> {
    replace(path, data, false)
}

/// As [`write_json_atomic`] without the fsync; see [`write_volatile`].
pub fn write_json_volatile<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    write_volatile(path, &data)
}

fn replace(path: &Path, data: &[u8], sync: bool) -> io::Result<()> {
    use std::io::Write;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    // Records hold the container's config, Secret-sourced env values included.
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?
    };
    f.write_all(data)?;
    if sync {
        f.sync_all()?;
    }
    drop(f);
    std::fs::rename(&tmp, path)
}

/// Reads a JSON record; `Ok(None)` when the file does not exist.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(data) => serde_json::from_slice(&data)
            .map(Some)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_round_trips_as_one_line() {
        let req = Request::Signal {
            id: "abc".into(),
            signal: 15,
        };
        let line = serde_json::to_string(&req).expect("encode");
        assert!(!line.contains('\n'));
        assert_eq!(serde_json::from_str::<Request>(&line).expect("decode"), req);
    }

    #[test]
    fn atomic_records() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("exit.json");
        assert_eq!(read_json::<ExitRecord>(&path).expect("read"), None);
        let rec = ExitRecord {
            exit_code: 3,
            signal: None,
            reason: ExitReason::for_exit(3, false),
            message: None,
            finished_at: jiff::Timestamp::now(),
        };
        write_json_atomic(&path, &rec).expect("write");
        assert_eq!(read_json::<ExitRecord>(&path).expect("read"), Some(rec));
        assert_eq!(
            std::fs::read_dir(tmp.path()).expect("ls").count(),
            1,
            "no temp file left"
        );
    }

    #[test]
    fn exit_reasons() {
        assert_eq!(ExitReason::for_exit(0, false), ExitReason::Completed);
        assert_eq!(ExitReason::for_exit(137, false), ExitReason::Error);
        assert_eq!(ExitReason::for_exit(137, true), ExitReason::OOMKilled);
    }
}
