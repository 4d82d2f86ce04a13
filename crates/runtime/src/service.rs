//! `Runtime`, the `RuntimeService` implementation: sandboxes are shim processes with their
//! files under `<state dir>/pods/<sandbox id>/`, containers are requests to those shims, and
//! every status is read back from the records on disk, so a new `Runtime` over the same
//! state directory (an agent restart) sees everything the old one created.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cgroups::Hierarchy;
use shim::protocol::{
    read_json, write_json_atomic, write_json_volatile, write_volatile, ContainerSpec, ExitReason,
    ExitRecord, PodDir, Request, Response, ShimConfig, StateRecord,
};
use tokio::io::AsyncReadExt;

use crate::client;
mod exec;
mod network;
mod resize;
mod stats;
use crate::exits::ExitWatcher;
use crate::image_backend::ImageBackend;
use crate::network::{NetworkConfig, PodNetwork};
use crate::procs;
use crate::records::{
    container_status, host_network_hosts_file, hosts_file, ContainerRecord, SandboxRecord, ShimPid,
};
use crate::{
    ContainerConfig, ContainerEvent, ContainerState, ContainerStatus, FsStats, ImageInfo,
    LinuxResources, PodSandboxConfig, PodSandboxStatus, RuntimeError, RuntimeService,
    SeccompProfile, ShimError, ShimStartError,
};

/// Localhost seccomp profiles live in `<state dir>/seccomp`.
const SECCOMP_DIR: &str = "seccomp";
/// The runtime handlers this runtime serves (what a RuntimeClass's `handler` may name): it
/// has one way to run containers, known as the default (empty) handler and as `runc`, the
/// name containerd and CRI-O give their default runc runtime, so a RuntimeClass written for
/// those runs here unchanged. Any other handler fails the sandbox as containerd fails it.
pub const RUNTIME_HANDLERS: &[&str] = &["", "runc"];

/// How long a fresh shim may take to answer.
const SHIM_READY_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of ordinary requests to a shim.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Deadline of a start (the shim builds the rootfs and waits for the exec).
const START_TIMEOUT: Duration = Duration::from_secs(70);
/// How long to wait for a SIGKILLed container or shim to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Interval of the polls above.
const POLL: Duration = Duration::from_millis(20);

/// Where the runtime keeps its state and how it starts shims.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `--state-dir`: `pods/` and `images/` live below it.
    pub state_dir: PathBuf,
    /// Root of the cgroup hierarchies (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Our cgroup below the root; pods whose sandbox config names no cgroup go to
    /// `<cgroup_parent>/pod<uid>` (the agent places them in its QoS tiers below it).
    pub cgroup_parent: PathBuf,
    /// The binary run as the shim (`std::env::current_exe()` in production).
    pub shim_binary: PathBuf,
    /// Arguments before the pod directory (`["shim"]`: `peapod shim <pod dir>`).
    pub shim_args: Vec<OsString>,
    /// The host's resolver config, copied into each pod.
    pub resolv_conf: PathBuf,
    /// The host's hosts file, copied into hostNetwork pods.
    pub hosts_file: PathBuf,
    /// Where /proc is (for process liveness checks).
    pub proc_root: PathBuf,
    /// The pod network sandboxes are attached to; `None` gives them loopback only.
    pub network: Option<NetworkConfig>,
    /// Where the runtime's share of a pod start is observed, by phase (`sandbox`,
    /// `network`, `create`, `rootfs`, `spawn`); `None` measures nothing.
    pub phases: Option<Arc<metrics::Family>>,
    /// Where the runtime's share of a sandbox's end is observed, by phase (`network_del`,
    /// `shim_stop`, `shim_cgroup_kill`, `cgroups`, `files`); `None` measures nothing.
    pub stop_phases: Option<Arc<metrics::Family>>,
    /// When containers' log files are rotated (the kubelet's `containerLogMaxSize` and
    /// `containerLogMaxFiles`).
    pub container_logs: crilog::Rotation,
}

impl RuntimeConfig {
    /// Production defaults for `state_dir`, with `shim_binary` as the shim.
    pub fn new(state_dir: impl Into<PathBuf>, shim_binary: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            cgroup_root: PathBuf::from(cgroups::DEFAULT_ROOT),
            cgroup_parent: PathBuf::from("peapod"),
            shim_binary: shim_binary.into(),
            shim_args: vec![OsString::from("shim")],
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts_file: PathBuf::from("/etc/hosts"),
            proc_root: PathBuf::from("/proc"),
            network: None,
            phases: None,
            stop_phases: None,
            container_logs: crilog::Rotation::default(),
        }
    }
}

/// The container runtime; cheap to share behind an `Arc`.
pub struct Runtime {
    config: RuntimeConfig,
    images: Arc<dyn ImageBackend>,
    cgroups: Option<Hierarchy>,
    network: Arc<PodNetwork>,
    /// Container exits as they happen; `None` where inotify is unavailable.
    exits: Option<ExitWatcher>,
}

fn read_err(path: &Path) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Read { path, source }
}

fn write_err(path: &Path) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Write { path, source }
}

fn create_err(path: &Path) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.to_path_buf();
    move |source| RuntimeError::Create { path, source }
}

/// Ids are 64 lowercase hex characters; anything else names nothing (and never a path).
fn is_id(id: &str) -> bool {
    id.len() == 64
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn new_id() -> Result<String, RuntimeError> {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| RuntimeError::NewId { source })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The shim's own cgroup inside the pod's: one per sandbox, since a pod's next sandbox
/// shares the pod cgroup while the old one is being torn down.
fn shim_cgroup(sandbox_id: &str) -> String {
    format!("shim-{sandbox_id}")
}

/// A name safe as one cgroup path component (pod UIDs are UUIDs; anything else is cleaned).
fn cgroup_name(uid: &str, fallback: &str) -> String {
    let clean: String = uid
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    if clean.is_empty() {
        format!("pod{fallback}")
    } else {
        format!("pod{clean}")
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, RuntimeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| RuntimeError::Task { source })
}

/// Where the image store of a state dir lives (`<state dir>/images`): the runtime's, the
/// `peapod image` commands', and the directory whose filesystem is the node's image
/// filesystem.
pub fn image_store_dir(state_dir: &std::path::Path) -> PathBuf {
    state_dir.join("images")
}

impl Runtime {
    /// A runtime over `config.state_dir`, with the image store at [`image_store_dir`].
    pub fn new(config: RuntimeConfig) -> Result<Self, RuntimeError> {
        let root = image_store_dir(&config.state_dir);
        std::fs::create_dir_all(&root).map_err(create_err(&root))?;
        let store =
            images::ImageStore::open(&root).map_err(|source| RuntimeError::OpenImageStore {
                path: root,
                source: Box::new(source),
            })?;
        Self::with_images(config, Arc::new(store))
    }

    /// A runtime with another image backend (tests serve plain directories). Network
    /// attachments left by sandboxes that are gone (a crash between removal and CNI DEL)
    /// are released here, before any sandbox can be created.
    pub fn with_images(
        config: RuntimeConfig,
        images: Arc<dyn ImageBackend>,
    ) -> Result<Self, RuntimeError> {
        let pods = config.state_dir.join("pods");
        std::fs::create_dir_all(&pods).map_err(create_err(&pods))?;
        let profiles = config.state_dir.join(SECCOMP_DIR);
        std::fs::create_dir_all(&profiles).map_err(create_err(&profiles))?;
        crate::records::secure_record_modes(&pods);
        let cgroups = match Hierarchy::detect(&config.cgroup_root) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "cgroups unavailable; containers run without resource control");
                None
            }
        };
        let network = Arc::new(PodNetwork::new(
            config.network.clone(),
            &config.state_dir,
            Arc::new(cni::RealExec),
        ));
        let exits = match ExitWatcher::new() {
            Ok(w) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, "inotify unavailable; container exits are seen on a timer only");
                None
            }
        };
        let runtime = Self {
            config,
            images,
            cgroups,
            network,
            exits,
        };
        let live = runtime.sandbox_ids()?.into_iter().collect();
        runtime.network.gc(&live);
        Ok(runtime)
    }

    /// Where Localhost seccomp profiles are looked up: `<state dir>/seccomp` (kubelet's
    /// `<root dir>/seccomp`).
    pub fn seccomp_dir(&self) -> PathBuf {
        self.config.state_dir.join(SECCOMP_DIR)
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Records that `phase` took `took`, when phases are measured.
    fn observe(&self, phase: &str, took: Duration) {
        if let Some(f) = &self.config.phases {
            f.observe_with(phase, took);
        }
    }

    /// Records that `phase` of a sandbox's end took `took`, when stop phases are measured.
    fn observe_stop(&self, phase: &str, took: Duration) {
        if let Some(f) = &self.config.stop_phases {
            f.observe_with(phase, took);
        }
    }

    fn pods_dir(&self) -> PathBuf {
        self.config.state_dir.join("pods")
    }

    fn pod(&self, id: &str) -> PodDir {
        PodDir::new(self.pods_dir().join(id))
    }

    fn sandbox_record(&self, id: &str) -> Result<SandboxRecord, RuntimeError> {
        if !is_id(id) {
            return Err(RuntimeError::SandboxNotFound { id: id.to_string() });
        }
        let path = self.pod(id).root().join("sandbox.json");
        read_json(&path)
            .map_err(read_err(&path))?
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })
    }

    fn shim_pid(&self, pod: &PodDir) -> Option<ShimPid> {
        read_json(&pod.shim_pid()).ok().flatten()
    }

    fn shim_alive(&self, pod: &PodDir) -> bool {
        self.shim_pid(pod)
            .is_some_and(|p| procs::alive(&self.config.proc_root, &p))
    }

    /// Every sandbox directory (ids only; records may be missing after a crash).
    fn sandbox_ids(&self) -> Result<Vec<String>, RuntimeError> {
        let dir = self.pods_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(read_err(&dir)(e)),
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| is_id(n))
            .collect();
        ids.sort();
        Ok(ids)
    }

    /// Every container on disk, with its directory and the event its exit makes.
    fn containers_on_disk(&self) -> Vec<(PathBuf, ContainerEvent)> {
        let mut out = Vec::new();
        for sandbox_id in self.sandbox_ids().unwrap_or_default() {
            let Ok(record) = self.sandbox_record(&sandbox_id) else {
                continue;
            };
            let pod = self.pod(&sandbox_id);
            let Ok(entries) = std::fs::read_dir(pod.containers()) else {
                continue;
            };
            for name in entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
            {
                if !is_id(&name) {
                    continue;
                }
                let event = ContainerEvent {
                    container_id: name.clone(),
                    sandbox_id: sandbox_id.clone(),
                    pod_uid: record.config.uid.clone(),
                };
                out.push((pod.container(&name).root().to_path_buf(), event));
            }
        }
        out
    }

    /// The sandbox holding container `id`.
    fn find_container(&self, id: &str) -> Result<String, RuntimeError> {
        if is_id(id) {
            for sandbox in self.sandbox_ids()? {
                if self.pod(&sandbox).container(id).config().exists() {
                    return Ok(sandbox);
                }
            }
        }
        Err(RuntimeError::ContainerNotFound { id: id.to_string() })
    }

    fn read_status(&self, sandbox_id: &str, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let pod = self.pod(sandbox_id);
        let dir = pod.container(id);
        let record: ContainerRecord = read_json(&dir.config())
            .map_err(read_err(&dir.config()))?
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        let state: Option<StateRecord> = read_json(&dir.state()).map_err(read_err(&dir.state()))?;
        let exit: Option<ExitRecord> = read_json(&dir.exit()).map_err(read_err(&dir.exit()))?;
        Ok(container_status(
            &record,
            state.as_ref(),
            exit.as_ref(),
            self.shim_alive(&pod),
        ))
    }

    async fn request(
        &self,
        sandbox_id: &str,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response, RuntimeError> {
        let socket = self.pod(sandbox_id).socket();
        client::call(&socket, req, timeout)
            .await
            .map_err(|e| RuntimeError::Shim {
                id: sandbox_id.to_string(),
                source: e.into(),
            })
    }

    async fn request_ok(&self, sandbox_id: &str, req: &Request) -> Result<(), RuntimeError> {
        match self.request(sandbox_id, req, REQUEST_TIMEOUT).await? {
            Response::Error { message } => Err(RuntimeError::Shim {
                id: sandbox_id.to_string(),
                source: ShimError::Refused { message },
            }),
            Response::Ok | Response::Started { .. } | Response::State { .. } => Ok(()),
            Response::ExecStarted { .. }
            | Response::ExecExited { .. }
            | Response::AttachStarted { .. } => Ok(()),
        }
    }

    /// Writes the sandbox's files and starts its shim; returns the shim's pid. The caller
    /// cleans up on error.
    async fn start_sandbox(
        &self,
        id: &str,
        config: &PodSandboxConfig,
    ) -> Result<u32, RuntimeError> {
        let pod = self.pod(id);
        let root = pod.root().to_path_buf();
        std::fs::create_dir_all(pod.containers()).map_err(create_err(&pod.containers()))?;
        let pod_cgroup = config
            .cgroup_parent
            .clone()
            .unwrap_or_else(|| self.config.cgroup_parent.join(cgroup_name(&config.uid, id)));
        let attached = config.host_network || !self.network.enabled();
        let record = SandboxRecord {
            id: id.to_string(),
            config: config.clone(),
            created_at: jiff::Timestamp::now(),
            pod_cgroup: pod_cgroup.clone(),
            // Set once CNI ADD gave the addresses; until then the sandbox is not ready.
            ips: attached.then(Vec::new),
        };
        let write =
            |path: PathBuf, data: &[u8]| write_volatile(&path, data).map_err(write_err(&path));
        if config.host_network {
            // kubelet: a hostNetwork pod sees the node's name and a copy of its hosts file.
            let node = nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default();
            write(pod.hostname(), format!("{node}\n").as_bytes())?;
            let host = std::fs::read_to_string(&self.config.hosts_file).unwrap_or_default();
            write(
                pod.hosts(),
                host_network_hosts_file(&host, &config.host_aliases).as_bytes(),
            )?;
        } else {
            write(pod.hostname(), format!("{}\n", config.hostname).as_bytes())?;
            write(
                pod.hosts(),
                hosts_file(
                    &config.hostname,
                    config.domain.as_deref(),
                    &[],
                    &config.host_aliases,
                )
                .as_bytes(),
            )?;
        }
        let resolv = match std::fs::read(&self.config.resolv_conf) {
            // The agent's DNS policy decides (cluster DNS for ClusterFirst pods).
            _ if config.dns.is_some() => config
                .dns
                .as_ref()
                .map(|d| d.resolv_conf().into_bytes())
                .unwrap_or_default(),
            Ok(data) => data,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(read_err(&self.config.resolv_conf)(e)),
        };
        write(pod.resolv_conf(), &resolv)?;
        // The shim moves itself into its cgroup as it starts (the fast way,
        // `cgroups::JoinFiles`).
        let shim_cgroup = self
            .cgroups
            .as_ref()
            .map(|_| pod_cgroup.join(shim_cgroup(id)));
        let shim_config = ShimConfig {
            sandbox_id: id.to_string(),
            cgroup_root: self.config.cgroup_root.clone(),
            pod_cgroup: pod_cgroup.clone(),
            shim_cgroup: shim_cgroup.clone(),
            sandbox: config.clone(),
        };
        write_json_volatile(&pod.shim_config(), &shim_config)
            .map_err(write_err(&pod.shim_config()))?;
        write_json_atomic(&root.join("sandbox.json"), &record)
            .map_err(write_err(&root.join("sandbox.json")))?;
        if let (Some(h), Some(shim_cgroup)) = (&self.cgroups, &shim_cgroup) {
            // kubelet's pod-level cgroup limits, before any process joins it. Created once
            // the record names the cgroup, so a failed start's removal finds it.
            let pod_cg = h.cgroup(&pod_cgroup);
            if let Err(e) = pod_cg
                .create()
                .and_then(|()| pod_cg.apply(&config.resources))
            {
                tracing::warn!(sandbox = id, error = %e, "could not set the pod cgroup's limits");
            }
            if let Err(e) = h.cgroup(shim_cgroup).create() {
                tracing::warn!(sandbox = id, error = %e, "could not create the shim's cgroup");
            }
        }

        let start_err = |source| RuntimeError::StartShim {
            id: id.to_string(),
            source,
        };
        let log_err = |source| {
            start_err(ShimStartError::Log {
                path: pod.shim_log(),
                source,
            })
        };
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(pod.shim_log())
            .map_err(log_err)?;
        let mut cmd = tokio::process::Command::new(&self.config.shim_binary);
        // stdout is the shim's readiness pipe (see `shim::server`); it logs to stderr.
        cmd.args(&self.config.shim_args)
            .arg(&root)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(log)
            .current_dir("/");
        // SAFETY: setsid is async-signal-safe; it detaches the shim from the agent's session
        // so the shim outlives the agent and its terminal.
        unsafe {
            cmd.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(io::Error::from));
        }
        // Dropping the child handle leaves it to tokio to reap the shim if it exits while
        // we run; after an agent restart init reaps it.
        let mut child = cmd.spawn().map_err(|source| {
            start_err(ShimStartError::Spawn {
                binary: self.config.shim_binary.clone(),
                source,
            })
        })?;
        let ready = child.stdout.take();
        let pid = if config.share_process_namespace {
            // The shim forks PID 1 of the pod's PID namespace, records that pid and exits
            // (shim::pidns).
            crate::pidns::wait_for_forked_shim(child, &pod, SHIM_READY_TIMEOUT)
                .await
                .map_err(start_err)?
        } else {
            let pid = child
                .id()
                .ok_or_else(|| start_err(ShimStartError::ExitedAtOnce))?;
            drop(child);
            let start_time = procs::stat(&self.config.proc_root, pid)
                .map(|(s, _)| s)
                .unwrap_or(0);
            write_json_volatile(&pod.shim_pid(), &ShimPid { pid, start_time })
                .map_err(write_err(&pod.shim_pid()))?;
            pid
        };
        let deadline = Instant::now() + SHIM_READY_TIMEOUT;
        if let Some(mut ready) = ready {
            // One byte once the shim's socket listens; EOF when it died before. Either way
            // the loop below has the last word (and polls, should the byte never come).
            let mut byte = [0u8; 1];
            let _ = tokio::time::timeout(SHIM_READY_TIMEOUT, ready.read(&mut byte)).await;
        }
        loop {
            match client::call(&pod.socket(), &Request::State, REQUEST_TIMEOUT).await {
                Ok(Response::State { .. }) => return Ok(pid),
                Ok(other) => {
                    return Err(start_err(ShimStartError::Unexpected {
                        answer: Box::new(other),
                    }))
                }
                Err(e) => {
                    let dead = !self.shim_alive(&pod);
                    if dead || Instant::now() > deadline {
                        let tail = std::fs::read_to_string(pod.shim_log()).unwrap_or_default();
                        let log_tail: String = tail
                            .lines()
                            .rev()
                            .take(5)
                            .collect::<Vec<_>>()
                            .into_iter()
                            .rev()
                            .collect::<Vec<_>>()
                            .join("; ");
                        return Err(start_err(ShimStartError::NotReady {
                            log_tail,
                            source: e,
                        }));
                    }
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// StopPodSandbox; `measured`: its phases are observed (not when removal stops a
    /// sandbox again, which finds nothing left to do).
    async fn stop_sandbox(&self, id: &str, measured: bool) -> Result<(), RuntimeError> {
        let observe = |phase: &str, t: Instant| {
            if measured {
                self.observe_stop(phase, t.elapsed());
            }
        };
        if !is_id(id) || !self.pod(id).root().exists() {
            return Ok(());
        }
        let mut first = None;
        // kubelet's StopPodSandbox tears the network down first, while the namespace exists
        // (it is pinned, so even a dead shim leaves it for DEL).
        let t = Instant::now();
        if let Err(e) = self.detach_network(id).await {
            tracing::warn!(sandbox = %id, error = %e, "CNI DEL failed");
            first = Some(e);
        }
        observe("network_del", t);
        let t = Instant::now();
        let pod = self.pod(id);
        if let Some(shim) = self
            .shim_pid(&pod)
            .filter(|p| procs::alive(&self.config.proc_root, p))
        {
            // The shim kills its containers and records their exits before it exits.
            if let Err(e) = self
                .request(id, &Request::Shutdown, KILL_WAIT + REQUEST_TIMEOUT)
                .await
            {
                tracing::warn!(sandbox = %id, error = %e, "shim shutdown request failed; killing it");
            }
            if !procs::wait_gone(&self.config.proc_root, &shim, KILL_WAIT, POLL).await {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(shim.pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        for cid in self.container_ids(id) {
            if let Err(e) = self.kill_orphaned_container(id, &cid).await {
                first.get_or_insert(e);
            }
        }
        observe("shim_stop", t);
        let t = Instant::now();
        if let (Some(h), Some(pod_cgroup)) = (&self.cgroups, self.pod_cgroup(id)) {
            // Only this sandbox's cgroups: the pod's may also hold its next sandbox.
            let cg = h.cgroup(&pod_cgroup.join(shim_cgroup(id)));
            if let Err(source) = blocking(move || cg.kill_all(KILL_WAIT)).await? {
                first.get_or_insert(RuntimeError::Cgroup {
                    id: id.to_string(),
                    source,
                });
            }
        }
        observe("shim_cgroup_kill", t);
        first.map_or(Ok(()), Err)
    }

    /// Waits until the container's records say it exited, up to `timeout`.
    async fn wait_exited(
        &self,
        sandbox_id: &str,
        id: &str,
        timeout: Duration,
    ) -> Result<bool, RuntimeError> {
        let deadline = Instant::now() + timeout;
        // Subscribed before the status is read, so an exit recorded in between still wakes
        // the wait; the poll stays for a runtime without exit events.
        let mut exits = RuntimeService::container_events(self);
        let mut exits_open = true;
        loop {
            let st = self.read_status(sandbox_id, id)?;
            match st.state {
                ContainerState::Exited | ContainerState::Created | ContainerState::Unknown => {
                    return Ok(true)
                }
                ContainerState::Running => {}
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::select! {
                event = exits.recv(), if exits_open => {
                    exits_open = !matches!(event, Err(tokio::sync::broadcast::error::RecvError::Closed));
                }
                _ = tokio::time::sleep(POLL) => {}
            }
        }
    }

    /// Kills what is left in a container's cgroup (after its shim died) and records an exit
    /// for a container that had started but has none.
    async fn kill_orphaned_container(
        &self,
        sandbox_id: &str,
        id: &str,
    ) -> Result<(), RuntimeError> {
        if let (Some(h), Some(pod_cgroup)) = (&self.cgroups, self.pod_cgroup(sandbox_id)) {
            let cg = h.cgroup(&pod_cgroup.join(id));
            blocking(move || cg.kill_all(KILL_WAIT))
                .await?
                .map_err(|source| RuntimeError::Cgroup {
                    id: id.to_string(),
                    source,
                })?;
        }
        let dir = self.pod(sandbox_id).container(id);
        if dir.state().exists() && !dir.exit().exists() {
            let exit = ExitRecord {
                exit_code: 137,
                signal: Some(9),
                reason: ExitReason::Error,
                message: Some("killed by the runtime: the pod's shim was gone".into()),
                finished_at: jiff::Timestamp::now(),
            };
            write_json_atomic(&dir.exit(), &exit).map_err(write_err(&dir.exit()))?;
        }
        Ok(())
    }

    fn container_ids(&self, sandbox_id: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.pod(sandbox_id).containers()) else {
            return Vec::new();
        };
        let mut ids: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter(|n| is_id(n))
            .collect();
        ids.sort();
        ids
    }

    /// Stops and removes every sandbox of this state directory (`peapod reset`), even when
    /// shims are dead or records are damaged; keeps going on errors and returns the first.
    pub async fn reset(&self) -> Result<(), RuntimeError> {
        let mut first = None;
        // Every attachment on record, from the record alone, while the namespaces are
        // still pinned. A failed DEL is reported but does not stop the reset.
        let network = self.network.clone();
        for err in blocking(move || network.reset()).await? {
            tracing::warn!(error = %crate::network::chain(&err), "reset: releasing pod network failed");
        }
        for id in self.sandbox_ids()? {
            if let Err(e) = self.remove_pod_sandbox(&id).await {
                tracing::warn!(sandbox = %id, error = %e, "reset: removing sandbox");
                first.get_or_insert(e);
            }
        }
        // The parent cgroup (`peapod/`) stays, as kubelet's `kubepods` does: it is shared by
        // every peapod on the machine, and removing it races with one creating a pod.
        first.map_or(Ok(()), Err)
    }

    /// The pod cgroup of a sandbox, from whichever record survived.
    fn pod_cgroup(&self, id: &str) -> Option<PathBuf> {
        let pod = self.pod(id);
        if let Ok(Some(r)) = read_json::<SandboxRecord>(&pod.root().join("sandbox.json")) {
            return Some(r.pod_cgroup);
        }
        read_json::<ShimConfig>(&pod.shim_config())
            .ok()
            .flatten()
            .map(|c| c.pod_cgroup)
    }

    /// `create_container` proper: the container's record and directories, then the shim
    /// learns its spec.
    async fn create_container_impl(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let sandbox = self.sandbox_record(sandbox_id)?;
        let shim_err = |source: ShimError| RuntimeError::CreateContainer {
            name: config.name.clone(),
            source,
        };
        if config.args.is_empty() {
            return Err(RuntimeError::NoCommand {
                name: config.name.clone(),
            });
        }
        if !self.shim_alive(&self.pod(sandbox_id)) {
            return Err(RuntimeError::SandboxNotRunning {
                id: sandbox_id.into(),
            });
        }
        let reference = if config.image_id.is_empty() {
            config.image.clone()
        } else {
            config.image_id.clone()
        };
        let images = self.images.clone();
        let lookup = reference.clone();
        let lowerdirs = blocking(move || images.layer_dirs(&lookup)).await??;
        if lowerdirs.is_empty() {
            return Err(RuntimeError::ImageNotFound { reference });
        }
        for m in &config.mounts {
            if !m.host_path.exists() {
                return Err(RuntimeError::MountSourceMissing {
                    name: config.name.clone(),
                    path: m.host_path.clone(),
                });
            }
        }
        let localhost_seccomp = match &config.security.seccomp {
            SeccompProfile::Localhost { profile } if !config.security.privileged => {
                let dir = self.seccomp_dir();
                let profile = profile.clone();
                let loaded = blocking(move || seccomp_profile::load(&dir, &profile)).await?;
                Some(loaded.map_err(|source| RuntimeError::SeccompProfile {
                    name: config.name.clone(),
                    source,
                })?)
            }
            _ => None,
        };
        let id = new_id()?;
        let dir = self.pod(sandbox_id).container(&id);
        let log_path = sandbox.config.log_directory.join(&config.log_path);
        let log_dir = log_path.parent().map(Path::to_path_buf);
        for d in [dir.upper(), dir.work(), dir.rootfs()]
            .into_iter()
            .chain(log_dir)
        {
            std::fs::create_dir_all(&d).map_err(create_err(&d))?;
        }
        let record = ContainerRecord {
            id: id.clone(),
            sandbox_id: sandbox_id.to_string(),
            config: config.clone(),
            created_at: jiff::Timestamp::now(),
            log_path: log_path.clone(),
        };
        write_json_atomic(&dir.config(), &record).map_err(write_err(&dir.config()))?;
        if let Some(exits) = &self.exits {
            let event = ContainerEvent {
                container_id: id.clone(),
                sandbox_id: sandbox_id.to_string(),
                pod_uid: sandbox.config.uid.clone(),
            };
            if let Err(e) = exits.watch(dir.root(), event) {
                tracing::warn!(container = %id, error = %e, "watching the container for its exit failed; it is seen on a timer only");
            }
        }
        let spec = ContainerSpec {
            id: id.clone(),
            lowerdirs,
            log_path,
            log_rotation: Some(self.config.container_logs),
            config: config.clone(),
            localhost_seccomp,
        };
        let result = match self
            .request(
                sandbox_id,
                &Request::CreateContainer(Box::new(spec)),
                REQUEST_TIMEOUT,
            )
            .await
        {
            Ok(Response::Ok) => Ok(id.clone()),
            Ok(other) => Err(shim_err(other.into())),
            Err(e) => Err(e),
        };
        if result.is_err() {
            let _ = std::fs::remove_dir_all(dir.root());
        }
        result
    }
}

#[async_trait::async_trait]
impl RuntimeService for Runtime {
    /// Every handler runs containers the same way: recursive read-only mounts and the
    /// idmapped layers of user namespaces both need `mount_setattr`.
    fn status(&self) -> crate::RuntimeStatus {
        let mount_setattr = shim::mountattr::supported();
        let user_namespaces = mount_setattr && std::path::Path::new("/proc/self/ns/user").exists();
        crate::RuntimeStatus {
            handlers: RUNTIME_HANDLERS
                .iter()
                .map(|name| crate::RuntimeHandler {
                    name: name.to_string(),
                    recursive_read_only_mounts: mount_setattr,
                    user_namespaces,
                })
                .collect(),
            supplemental_groups_policy: true,
        }
    }

    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&crate::Credentials>,
    ) -> Result<ImageInfo, RuntimeError> {
        self.images.pull(reference, auth).await
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        let images = self.images.clone();
        let reference = reference.to_string();
        blocking(move || images.get(&reference)).await?
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        let images = self.images.clone();
        blocking(move || images.list()).await?
    }

    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError> {
        let images = self.images.clone();
        let id = id.to_string();
        blocking(move || images.remove(&id)).await?
    }

    async fn image_fs_stats(&self) -> Result<FsStats, RuntimeError> {
        let images = self.images.clone();
        blocking(move || images.fs_stats()).await?
    }

    async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
    ) -> Result<PodSandboxStatus, RuntimeError> {
        if !RUNTIME_HANDLERS.contains(&config.runtime_handler.as_str()) {
            return Err(RuntimeError::UnknownRuntimeHandler {
                handler: config.runtime_handler.clone(),
            });
        }
        let id = new_id()?;
        let t0 = Instant::now();
        let started = match self.start_sandbox(&id, config).await {
            Ok(pid) => {
                let t1 = Instant::now();
                self.observe("sandbox", t1 - t0);
                let attached = self.attach_network(&id, config, pid).await;
                self.observe("network", t1.elapsed());
                attached
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            // containerd releases a sandbox whose start or network failed at once (DEL first).
            if let Err(cleanup) = self.remove_pod_sandbox(&id).await {
                tracing::warn!(sandbox = %id, error = %cleanup, "cleaning up a sandbox that failed to start");
            }
            return Err(e);
        }
        tracing::info!(sandbox = %id, pod = %config.name, "sandbox running");
        let record = self.sandbox_record(&id)?;
        Ok(self.sandbox_status(record))
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        self.stop_sandbox(id, true).await
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        if !is_id(id) || !self.pod(id).root().exists() {
            return Ok(());
        }
        let mut errors = Vec::new();
        if let Err(e) = self.stop_sandbox(id, false).await {
            errors.push(e);
        }
        let t = Instant::now();
        if let (Some(h), Some(pod_cgroup)) = (&self.cgroups, self.pod_cgroup(id)) {
            let mine: Vec<_> = self
                .container_ids(id)
                .into_iter()
                .chain([shim_cgroup(id)])
                .map(|name| h.cgroup(&pod_cgroup.join(name)))
                .collect();
            let pod_cg = h.cgroup(&pod_cgroup);
            let removed = blocking(move || {
                for cg in mine {
                    cg.kill_all(KILL_WAIT)?;
                    cg.remove(KILL_WAIT)?;
                }
                pod_cg.remove_if_empty()
            });
            match removed.await {
                Ok(Ok(())) => {}
                Ok(Err(source)) => errors.push(RuntimeError::Cgroup {
                    id: id.to_string(),
                    source,
                }),
                Err(e) => errors.push(e),
            }
        }
        self.observe_stop("cgroups", t.elapsed());
        let t = Instant::now();
        let root = self.pod(id).root().to_path_buf();
        let path = root.clone();
        match blocking(move || std::fs::remove_dir_all(&root)).await? {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => errors.push(RuntimeError::Remove { path, source }),
        }
        self.observe_stop("files", t.elapsed());
        for e in &errors {
            tracing::warn!(sandbox = %id, error = %e, "removing sandbox");
        }
        errors.into_iter().next().map_or(Ok(()), Err)
    }

    async fn list_pod_sandbox_stats(&self) -> Result<Vec<crate::PodSandboxStats>, RuntimeError> {
        self.sandbox_stats().await
    }

    fn container_events(&self) -> tokio::sync::broadcast::Receiver<ContainerEvent> {
        match &self.exits {
            Some(exits) => exits.subscribe(|| self.containers_on_disk()),
            None => tokio::sync::broadcast::channel(1).1,
        }
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>, RuntimeError> {
        let mut out = Vec::new();
        for id in self.sandbox_ids()? {
            // A sandbox whose record is missing was half-created before a crash: not listed
            // (reset and removal still find it by its directory).
            let Ok(record) = self.sandbox_record(&id) else {
                continue;
            };
            out.push(self.sandbox_status(record));
        }
        Ok(out)
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let t0 = Instant::now();
        let created = self.create_container_impl(sandbox_id, config).await;
        self.observe("create", t0.elapsed());
        created
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let t0 = Instant::now();
        let sandbox_id = self.find_container(id)?;
        let socket = self.pod(&sandbox_id).socket();
        let request = Request::StartContainer { id: id.to_string() };
        let answer = client::call(&socket, &request, START_TIMEOUT).await;
        match answer.map_err(ShimError::from) {
            Ok(Response::Started { rootfs_us, .. }) => {
                // The shim tells how long the container's rootfs took inside the start.
                let rootfs = Duration::from_micros(rootfs_us);
                self.observe("rootfs", rootfs);
                self.observe("spawn", t0.elapsed().saturating_sub(rootfs));
                Ok(())
            }
            Ok(other) => Err(RuntimeError::StartContainer {
                id: id.to_string(),
                source: other.into(),
            }),
            Err(source) => Err(RuntimeError::StartContainer {
                id: id.to_string(),
                source,
            }),
        }
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let sandbox_id = self.find_container(id)?;
        let status = self.read_status(&sandbox_id, id)?;
        match status.state {
            ContainerState::Running => {}
            ContainerState::Created | ContainerState::Exited => return Ok(()),
            ContainerState::Unknown => return self.kill_orphaned_container(&sandbox_id, id).await,
        }
        let signal = if status.config.stop_signal > 0 {
            status.config.stop_signal
        } else {
            libc::SIGTERM
        };
        if !timeout.is_zero() {
            self.request_ok(
                &sandbox_id,
                &Request::Signal {
                    id: id.to_string(),
                    signal,
                },
            )
            .await?;
            if self.wait_exited(&sandbox_id, id, timeout).await? {
                return Ok(());
            }
        }
        self.request_ok(
            &sandbox_id,
            &Request::Signal {
                id: id.to_string(),
                signal: libc::SIGKILL,
            },
        )
        .await?;
        if self.wait_exited(&sandbox_id, id, KILL_WAIT).await? {
            return Ok(());
        }
        Err(RuntimeError::KillTimedOut { id: id.to_string() })
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let sandbox_id = match self.find_container(id) {
            Ok(s) => s,
            Err(RuntimeError::ContainerNotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut errors = Vec::new();
        if let Err(e) = self.stop_container(id, Duration::ZERO).await {
            errors.push(e);
        }
        if self.shim_alive(&self.pod(&sandbox_id)) {
            if let Err(e) = self
                .request_ok(
                    &sandbox_id,
                    &Request::RemoveContainer { id: id.to_string() },
                )
                .await
            {
                errors.push(e);
            }
        }
        if let (Some(h), Ok(record)) = (&self.cgroups, self.sandbox_record(&sandbox_id)) {
            let cg = h.cgroup(&record.pod_cgroup.join(id));
            let removed =
                blocking(move || cg.kill_all(KILL_WAIT).and_then(|()| cg.remove(KILL_WAIT)))
                    .await?;
            if let Err(source) = removed {
                errors.push(RuntimeError::Cgroup {
                    id: id.to_string(),
                    source,
                });
            }
        }
        let root = self.pod(&sandbox_id).container(id).root().to_path_buf();
        let path = root.clone();
        match blocking(move || std::fs::remove_dir_all(&root)).await? {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => errors.push(RuntimeError::Remove { path, source }),
        }
        errors.into_iter().next().map_or(Ok(()), Err)
    }

    async fn list_containers(
        &self,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        let sandboxes = match sandbox_id {
            Some(s) if is_id(s) => vec![s.to_string()],
            Some(_) => Vec::new(),
            None => self.sandbox_ids()?,
        };
        let mut out = Vec::new();
        for s in sandboxes {
            for cid in self.container_ids(&s) {
                match self.read_status(&s, &cid) {
                    Ok(st) => out.push(st),
                    // Removed meanwhile, or half-created before a crash.
                    Err(RuntimeError::ContainerNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(out)
    }

    async fn update_container_resources(
        &self,
        id: &str,
        resources: &LinuxResources,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        self.update_container(id, resources, annotations).await
    }

    async fn update_pod_sandbox_resources(
        &self,
        id: &str,
        resources: &LinuxResources,
    ) -> Result<(), RuntimeError> {
        self.update_sandbox(id, resources).await
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        let sandbox_id = self.find_container(id)?;
        self.read_status(&sandbox_id, id)
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<crate::ExecSyncResult, RuntimeError> {
        self.exec_sync_impl(id, cmd, timeout).await
    }

    async fn exec(
        &self,
        id: &str,
        options: &crate::ExecOptions,
    ) -> Result<crate::ExecSession, RuntimeError> {
        self.exec_session(id, options).await
    }

    async fn attach(&self, id: &str, stdin: bool) -> Result<crate::AttachSession, RuntimeError> {
        self.attach_session(id, stdin).await
    }

    async fn port_forward(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError> {
        self.port_forward_impl(sandbox_id, port).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_names() {
        let id = new_id().expect("id");
        assert!(is_id(&id));
        assert!(!is_id("../../etc"));
        assert!(!is_id(&id.to_uppercase()));
        assert_eq!(cgroup_name("1234-abcd", "x"), "pod1234-abcd");
        assert_eq!(cgroup_name("../..", "x"), "podx");
    }
}
