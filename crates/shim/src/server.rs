//! The shim's event loop: one thread, one `poll` over the signalfd (SIGCHLD, SIGTERM), the
//! listening socket and the containers' output pipes. Requests are handled one at a time,
//! each on its own connection; exits are recorded to disk as soon as they are reaped.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cgroups::{Cgroup, DeviceConfinement, Hierarchy};
use crilog::{LogWriter, Stream};
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{pipe2, Pid};

use crate::attach;
use crate::container::{self, ChildContext};
use crate::exec;
use crate::protocol::{
    read_json, write_json_atomic, ContainerReport, ContainerSpec, ExecSpec, ExitReason, ExitRecord,
    Phase, PodDir, Request, Response, ShimConfig, StateRecord, MAX_MESSAGE,
};
use crate::pty;

/// Stack for the cloned container child; it runs a short setup before exec.
const CHILD_STACK: usize = 1 << 21;
/// How long a start may take from clone to exec before the shim gives up on it.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Size of the pipe a container reports its identity on: uid, gid, count and up to
/// `NGROUPS_MAX` (65536) groups, 4 bytes each.
const IDENTITY_PIPE: i32 = 512 * 1024;
/// How long a client may take to send its request line.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long Shutdown waits for the containers' processes to die.
const KILL_TIMEOUT: Duration = Duration::from_secs(10);

/// Failures that stop the shim itself (a container's failure never does).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("reading the shim config {path}: {source}")]
    Config {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("missing shim config {path}")]
    MissingConfig { path: PathBuf },
    #[error("creating the pod namespaces: {0}")]
    Namespaces(#[source] nix::Error),
    #[error("setting the hostname {hostname:?}: {source}")]
    Hostname {
        hostname: String,
        #[source]
        source: nix::Error,
    },
    #[error("bringing up the loopback interface: {0}")]
    Loopback(#[source] io::Error),
    #[error("setting up signals: {0}")]
    Signals(#[source] nix::Error),
    #[error("listening on {path}: {source}")]
    Listen {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("waiting for events: {0}")]
    Poll(#[source] nix::Error),
    #[error(transparent)]
    PidNamespace(#[from] crate::pidns::PidNsError),
    #[error("setting the pod's sysctls: {0}")]
    Sysctls(#[source] io::Error),
    #[error(transparent)]
    UserNamespace(#[from] crate::userns::UsernsError),
}

/// The state of one container the shim knows.
struct Container {
    spec: ContainerSpec,
    phase: Phase,
    pid: Option<Pid>,
    cgroup: Option<Cgroup>,
    oom_before: u64,
    log: Option<LogWriter>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// The write end of the main process's stdin pipe (pod `stdin` without a tty), until
    /// `stdinOnce` closes it.
    input: Option<OwnedFd>,
    /// The pty master of a `tty` container (its output is read through `stdout`).
    tty: Option<OwnedFd>,
    /// `stdinOnce` has ended the process's stdin.
    stdin_closed: bool,
}

/// The PID namespaces a container with a target is cloned between.
struct TargetPidNs {
    target: OwnedFd,
    own: OwnedFd,
}

struct Server {
    pod: PodDir,
    config: ShimConfig,
    hierarchy: Option<Hierarchy>,
    containers: BTreeMap<String, Container>,
    /// Connections of running execs by pid, answered with `ExecExited` when reaped.
    execs: BTreeMap<i32, UnixStream>,
    attached: attach::Sessions,
    shutting_down: bool,
    /// The pod's user namespace (`hostUsers: false`), which containers enter.
    userns: Option<OwnedFd>,
}

/// Runs the shim for the pod directory `dir` until Shutdown or SIGTERM.
pub fn run(dir: &Path) -> Result<(), ServerError> {
    let pod = PodDir::new(dir);
    let config_path = pod.shim_config();
    let config: ShimConfig = read_json(&config_path)
        .map_err(|source| ServerError::Config {
            path: config_path.clone(),
            source,
        })?
        .ok_or(ServerError::MissingConfig { path: config_path })?;
    // Still single-threaded: the cheap way in (see `cgroups::JoinFiles`). Without its
    // cgroup the shim still runs its pod, as before, counted in the node's.
    let hierarchy = match Hierarchy::detect(&config.cgroup_root) {
        Ok(h) => Some(h),
        Err(e) => {
            log(&format!("cgroups unavailable, containers run without: {e}"));
            None
        }
    };
    if let (Some(h), Some(rel)) = (&hierarchy, &config.shim_cgroup) {
        if let Err(e) = h.cgroup(rel).join_files().and_then(|files| files.join()) {
            log(&format!("could not move the shim into its cgroup: {e}"));
        }
    }
    if config.sandbox.share_process_namespace {
        match crate::pidns::enter(&pod)? {
            crate::pidns::Role::Parent => return Ok(()),
            crate::pidns::Role::Init => {}
        }
    }

    // The pod's namespaces: containers join them by being cloned from us. A hostNetwork
    // pod keeps the node's network and UTS namespaces (CRI NamespaceMode::NODE; kubelet
    // gives such pods the node's hostname), so neither the hostname nor `lo` is touched.
    // A hostIPC pod keeps the node's IPC namespace likewise.
    let ipc = if config.sandbox.host_ipc {
        CloneFlags::empty()
    } else {
        CloneFlags::CLONE_NEWIPC
    };
    let others = if config.sandbox.host_network {
        ipc
    } else {
        CloneFlags::CLONE_NEWNET | ipc | CloneFlags::CLONE_NEWUTS
    };
    // hostUsers: false: the namespaces are created owned by the pod's user namespace.
    let userns = match &config.sandbox.user_namespace {
        Some(mapping) => Some(crate::userns::create_pod_namespaces(mapping, others)?),
        None => {
            nix::sched::unshare(others).map_err(ServerError::Namespaces)?;
            None
        }
    };
    if !config.sandbox.host_network {
        nix::unistd::sethostname(&config.sandbox.hostname).map_err(|source| {
            ServerError::Hostname {
                hostname: config.sandbox.hostname.clone(),
                source,
            }
        })?;
        crate::net::loopback_up().map_err(ServerError::Loopback)?;
        crate::security::set_sysctls(&config.sandbox.sysctls).map_err(ServerError::Sysctls)?;
    }
    // Orphans of containers (whose PID 1 died) are reparented to us and reaped here.
    nix::sys::prctl::set_child_subreaper(true).map_err(ServerError::Signals)?;

    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    mask.add(Signal::SIGTERM);
    mask.add(Signal::SIGINT);
    mask.thread_block().map_err(ServerError::Signals)?;
    // SAFETY: ignoring SIGPIPE installs no handler; a vanished client must not kill the shim.
    unsafe { nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn) }
        .map_err(ServerError::Signals)?;
    let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
        .map_err(ServerError::Signals)?;

    let listener = listen(&pod.socket())?;
    log(&format!("shim for sandbox {} ready", config.sandbox_id));
    announce_ready();
    let mut server = Server {
        pod,
        config,
        hierarchy,
        containers: BTreeMap::new(),
        execs: BTreeMap::new(),
        attached: attach::Sessions::default(),
        shutting_down: false,
        userns,
    };
    server.event_loop(&sigfd, &listener)?;
    let _ = std::fs::remove_file(server.pod.socket());
    log("shim exiting");
    Ok(())
}

fn listen(path: &Path) -> Result<UnixListener, ServerError> {
    let listen_err = |source| ServerError::Listen {
        path: path.to_path_buf(),
        source,
    };
    // A socket left by a previous shim of this pod that died: nobody listens on it.
    match std::fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(listen_err(e)),
    }
    // Bind relative to the pod directory so long state-dir paths fit sun_path (108 bytes).
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(d), Some(n)) => (d, n),
        _ => return Err(listen_err(io::Error::from(io::ErrorKind::InvalidInput))),
    };
    std::env::set_current_dir(dir).map_err(listen_err)?;
    let listener = UnixListener::bind(name).map_err(listen_err)?;
    listener.set_nonblocking(true).map_err(listen_err)?;
    Ok(listener)
}

/// Tells the runtime that started us that the socket listens: one byte on stdout, a pipe the
/// runtime waits on instead of polling the socket. stdout then points at the log (stderr),
/// so nothing later writes into a pipe nobody reads.
fn announce_ready() {
    let _ = nix::unistd::write(io::stdout(), b"r");
    let _ = nix::unistd::dup2_stdout(io::stderr());
}

fn log(message: &str) {
    eprintln!("{} {message}", jiff::Timestamp::now());
}

/// What became ready in one poll round.
enum Ready {
    Signal,
    Listener,
    Output(String, Stream),
    /// The caller of an exec closed its connection (or wrote to it).
    ExecCaller(i32),
    /// An attach session's caller wrote to or closed its socket.
    Attached(u64),
}

impl Server {
    fn event_loop(&mut self, sigfd: &SignalFd, listener: &UnixListener) -> Result<(), ServerError> {
        while !self.shutting_down {
            let ready = {
                let mut fds = vec![
                    PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                    PollFd::new(listener.as_fd(), PollFlags::POLLIN),
                ];
                let mut keys = vec![Ready::Signal, Ready::Listener];
                for (pid, conn) in &self.execs {
                    fds.push(PollFd::new(conn.as_fd(), PollFlags::POLLIN));
                    keys.push(Ready::ExecCaller(*pid));
                }
                for (key, fd) in self.attached.polled() {
                    fds.push(PollFd::new(fd, PollFlags::POLLIN));
                    keys.push(Ready::Attached(key));
                }
                for (id, c) in &self.containers {
                    for (fd, stream) in [(&c.stdout, Stream::Stdout), (&c.stderr, Stream::Stderr)] {
                        if let Some(fd) = fd {
                            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                            keys.push(Ready::Output(id.clone(), stream));
                        }
                    }
                }
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) => {}
                    Err(nix::Error::EINTR) => continue,
                    Err(e) => return Err(ServerError::Poll(e)),
                }
                fds.iter()
                    .zip(keys)
                    .filter(|(fd, _)| fd.revents().is_some_and(|r| !r.is_empty()))
                    .map(|(_, key)| key)
                    .collect::<Vec<_>>()
            };
            for r in ready {
                match r {
                    Ready::Output(id, stream) => self.read_output(&id, stream),
                    Ready::Signal => {
                        while let Ok(Some(info)) = sigfd.read_signal() {
                            if info.ssi_signo == Signal::SIGTERM as u32
                                || info.ssi_signo == Signal::SIGINT as u32
                            {
                                self.shutdown();
                            }
                        }
                        self.reap();
                    }
                    Ready::Listener => self.accept(listener),
                    Ready::ExecCaller(pid) => self.exec_caller_gone(pid),
                    Ready::Attached(key) => match self.attached.ready(key) {
                        attach::Event::None => {}
                        attach::Event::StdinEnded { container } => self.stdin_ended(&container),
                    },
                }
            }
        }
        Ok(())
    }

    /// Copies what a container wrote into its log; on EOF flushes a last partial line.
    fn read_output(&mut self, id: &str, stream: Stream) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let slot = match stream {
            Stream::Stdout => &mut c.stdout,
            Stream::Stderr => &mut c.stderr,
        };
        let Some(fd) = slot.as_ref() else { return };
        let mut buf = [0u8; 65536];
        match nix::unistd::read(fd, &mut buf) {
            // A pty master whose every slave fd is closed reads EIO: its EOF.
            Ok(0) | Err(nix::Error::EIO) => {
                *slot = None;
                if let Some(log) = c.log.as_mut() {
                    if let Err(e) = log.flush_partial(stream) {
                        log_error(id, "writing log", &e);
                    }
                }
            }
            Ok(n) => {
                if let Some(log) = c.log.as_mut() {
                    if let Err(e) = log.write(stream, &buf[..n]) {
                        log_error(id, "writing log", &e);
                    }
                }
                self.attached.broadcast(id, stream, &buf[..n]);
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => {}
            Err(e) => {
                log_error(id, "reading output", &e);
                *slot = None;
            }
        }
    }

    /// Drains whatever a container's pipes hold right now (before its exit is recorded, so
    /// the log has every line written before the exit).
    fn drain_output(&mut self, id: &str) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            for _ in 0..1024 {
                let open = self.containers.get(id).is_some_and(|c| match stream {
                    Stream::Stdout => c.stdout.is_some(),
                    Stream::Stderr => c.stderr.is_some(),
                });
                let readable = self.containers.get(id).and_then(|c| match stream {
                    Stream::Stdout => c.stdout.as_ref(),
                    Stream::Stderr => c.stderr.as_ref(),
                });
                let has_data = readable.is_some_and(|fd| {
                    let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
                    poll(&mut p, PollTimeout::ZERO).is_ok_and(|n| n > 0)
                });
                if !open || !has_data {
                    break;
                }
                self.read_output(id, stream);
            }
        }
    }

    fn reap(&mut self) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => self.exited(pid, code, None),
                Ok(WaitStatus::Signaled(pid, sig, _)) => {
                    self.exited(pid, 128 + sig as i32, Some(sig as i32))
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            }
        }
    }

    /// Records the exit of `pid` if it is a container's PID 1 (other pids are orphans).
    fn exited(&mut self, pid: Pid, code: i32, signal: Option<i32>) {
        if let Some(conn) = self.execs.remove(&pid.as_raw()) {
            exec_exited(conn, code);
            return;
        }
        let Some(id) = self
            .containers
            .iter()
            .find(|(_, c)| c.pid == Some(pid))
            .map(|(id, _)| id.clone())
        else {
            return;
        };
        self.drain_output(&id);
        self.attached.close_container(&id);
        let Some(c) = self.containers.get_mut(&id) else {
            return;
        };
        c.pid = None;
        if c.phase == Phase::Exited {
            // A StartError was recorded already; this is the failed child going away.
            return;
        }
        c.phase = Phase::Exited;
        let oom_now = c
            .cgroup
            .as_ref()
            .and_then(|g| g.oom_kill_count().ok())
            .unwrap_or(0);
        let record = ExitRecord {
            exit_code: code,
            signal,
            reason: ExitReason::for_exit(code, oom_now > c.oom_before),
            message: None,
            finished_at: jiff::Timestamp::now(),
        };
        let path = self.pod.container(&id).exit();
        if let Err(e) = write_json_atomic(&path, &record) {
            log_error(&id, "recording exit", &e);
        }
        log(&format!(
            "container {id} exited: code {code}, reason {}",
            record.reason.as_str()
        ));
    }

    fn accept(&mut self, listener: &UnixListener) {
        loop {
            match listener.accept() {
                Ok((stream, _)) => self.serve(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log(&format!("accept: {e}"));
                    return;
                }
            }
        }
    }

    fn serve(&mut self, stream: UnixStream) {
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(CLIENT_TIMEOUT));
        let _ = stream.set_write_timeout(Some(CLIENT_TIMEOUT));
        let mut line = String::new();
        let response = match BufReader::new((&stream).take(MAX_MESSAGE)).read_line(&mut line) {
            Ok(_) => match serde_json::from_str::<Request>(&line) {
                // An exec answers with fds and keeps its connection: handled apart.
                Ok(Request::Exec(spec)) => return self.exec(&spec, stream),
                Ok(Request::Attach { id, stdin }) => return self.attach(&id, stdin, stream),
                Ok(req) => self.handle(req),
                Err(e) => Response::Error {
                    message: format!("bad request: {e}"),
                },
            },
            Err(e) => Response::Error {
                message: format!("reading request: {e}"),
            },
        };
        let mut out = match serde_json::to_vec(&response) {
            Ok(v) => v,
            Err(e) => {
                log(&format!("encoding response: {e}"));
                return;
            }
        };
        out.push(b'\n');
        if let Err(e) = (&stream).write_all(&out) {
            log(&format!("writing response: {e}"));
        }
    }

    fn handle(&mut self, req: Request) -> Response {
        match req {
            Request::CreateContainer(spec) => self.create(*spec),
            Request::StartContainer { id } => match self.start(&id) {
                Ok((pid, rootfs)) => Response::Started {
                    pid: pid.as_raw() as u32,
                    rootfs_us: u64::try_from(rootfs.as_micros()).unwrap_or(u64::MAX),
                },
                Err(message) => Response::Error { message },
            },
            Request::Signal { id, signal } => self.signal(&id, signal),
            Request::RemoveContainer { id } => match self.containers.get(&id).map(|c| c.phase) {
                Some(Phase::Running) => Response::Error {
                    message: format!("container {id} is running"),
                },
                Some(Phase::Created) | Some(Phase::Exited) => {
                    self.containers.remove(&id);
                    Response::Ok
                }
                None => Response::Ok,
            },
            Request::State => Response::State {
                pid: std::process::id(),
                containers: self
                    .containers
                    .iter()
                    .map(|(id, c)| ContainerReport {
                        id: id.clone(),
                        phase: c.phase,
                        pid: c.pid.map(|p| p.as_raw() as u32),
                    })
                    .collect(),
            },
            Request::Shutdown => {
                self.shutdown();
                Response::Ok
            }
            Request::Exec(_) | Request::Attach { .. } => Response::Error {
                message: "exec and attach are answered on their own connection".into(),
            },
        }
    }

    /// Starts an exec (see `crate::exec`), answers `ExecStarted` with its stdio fds, and
    /// keeps the connection to report the exit.
    fn exec(&mut self, spec: &ExecSpec, stream: UnixStream) {
        let started = match self.containers.get(&spec.id) {
            Some(c) => match (c.phase, c.pid) {
                (Phase::Running, Some(pid)) => exec::start(&exec::ExecContext {
                    container_pid: pid,
                    spec: &c.spec,
                    hostname: &self.config.sandbox.hostname,
                    exec: spec,
                    cgroup: c.cgroup.as_ref(),
                })
                .map_err(|e| e.to_string()),
                _ => Err(format!("container {} is not running", spec.id)),
            },
            None => Err(format!("container {} not found", spec.id)),
        };
        let (response, fds, pid) = match started {
            Ok(s) => (
                Response::ExecStarted {
                    pid: s.pid.as_raw() as u32,
                },
                s.fds,
                Some(s.pid),
            ),
            Err(message) => (Response::Error { message }, Vec::new(), None),
        };
        let mut line = match serde_json::to_vec(&response) {
            Ok(v) => v,
            Err(e) => {
                log(&format!("encoding response: {e}"));
                return;
            }
        };
        line.push(b'\n');
        if let Err(e) = exec::send_started(&stream, &line, &fds) {
            log(&format!("answering exec: {e}"));
            if let Some(pid) = pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        drop(fds);
        if let Some(pid) = pid {
            log(&format!(
                "exec in container {} started as pid {pid}",
                spec.id
            ));
            self.execs.insert(pid.as_raw(), stream);
        }
    }

    /// Opens an attach session on a running container and answers `AttachStarted` with its
    /// fds; the output then flows from `read_output`.
    fn attach(&mut self, id: &str, stdin: bool, stream: UnixStream) {
        let (response, fds) = match self.open_attach(id, stdin) {
            Ok(opened) => opened,
            Err(message) => (Response::Error { message }, Vec::new()),
        };
        let mut line = match serde_json::to_vec(&response) {
            Ok(v) => v,
            Err(e) => {
                log(&format!("encoding response: {e}"));
                return;
            }
        };
        line.push(b'\n');
        // A caller gone before the answer leaves a session whose socket reads EOF at once.
        if let Err(e) = exec::send_started(&stream, &line, &fds) {
            log(&format!("answering attach: {e}"));
        }
    }

    fn open_attach(&mut self, id: &str, stdin: bool) -> Result<(Response, Vec<OwnedFd>), String> {
        let c = self
            .containers
            .get(id)
            .ok_or_else(|| format!("container {id} not found"))?;
        if c.phase != Phase::Running {
            return Err(format!("container {id} is not running"));
        }
        let dup = |fd: &OwnedFd| fd.try_clone().map_err(|e| format!("attaching: {e}"));
        // A tty's master is handed over even without stdin: the caller resizes through it.
        let input = match (&c.tty, &c.input) {
            (Some(master), _) => Some(dup(master)?),
            (None, Some(pipe)) if stdin => Some(dup(pipe)?),
            (None, _) => None,
        };
        let tty = c.tty.is_some();
        let writes_stdin = stdin && !c.stdin_closed && (tty || input.is_some());
        let sock = self
            .attached
            .open(id, writes_stdin)
            .map_err(|e| format!("attaching: {e}"))?;
        let response = Response::AttachStarted {
            tty,
            input: input.is_some(),
        };
        Ok((response, std::iter::once(sock).chain(input).collect()))
    }

    /// An attach session's stdin ended: with `stdinOnce` the process sees EOF on its stdin
    /// (kubelet: stdin is closed after the first attach session ends). For a pipe that is
    /// closing the shim's write end (the caller closed its copy); a terminal gets its EOF
    /// character, which a reader in canonical mode sees as end of input.
    fn stdin_ended(&mut self, id: &str) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        if !c.spec.config.stdin_once || c.stdin_closed {
            return;
        }
        c.stdin_closed = true;
        c.input = None;
        if let Some(master) = &c.tty {
            // ^D, the default VEOF of a fresh pty.
            if let Err(e) = nix::unistd::write(master, &[4]) {
                log_error(id, "closing the terminal's input", &e);
            }
        }
    }

    /// An exec's caller hung up before the exit: kill the process, as nobody can read its
    /// output or status any more (and an exec probe's timeout means exactly that).
    fn exec_caller_gone(&mut self, pid: i32) {
        if let Some(conn) = self.execs.remove(&pid) {
            drop(conn);
            match kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(e) => log(&format!("killing exec pid {pid}: {e}")),
            }
        }
    }

    fn create(&mut self, spec: ContainerSpec) -> Response {
        if spec.config.args.is_empty() {
            return Response::Error {
                message: "container has no command".into(),
            };
        }
        if !is_valid_id(&spec.id) {
            return Response::Error {
                message: format!("invalid container id {:?}", spec.id),
            };
        }
        if let Some(existing) = self.containers.get(&spec.id) {
            if existing.spec == spec {
                return Response::Ok;
            }
            return Response::Error {
                message: format!("container {} exists", spec.id),
            };
        }
        self.containers.insert(
            spec.id.clone(),
            Container {
                spec,
                phase: Phase::Created,
                pid: None,
                cgroup: None,
                oom_before: 0,
                log: None,
                stdout: None,
                stderr: None,
                input: None,
                tty: None,
                stdin_closed: false,
            },
        );
        Response::Ok
    }

    fn signal(&mut self, id: &str, signal: i32) -> Response {
        let Some(c) = self.containers.get(id) else {
            return Response::Error {
                message: format!("container {id} not found"),
            };
        };
        let Some(pid) = c.pid.filter(|_| c.phase == Phase::Running) else {
            // Not running: nothing to signal, which is what the caller wants.
            return Response::Ok;
        };
        let sig = match Signal::try_from(signal) {
            Ok(s) => s,
            Err(e) => {
                return Response::Error {
                    message: format!("signal {signal}: {e}"),
                }
            }
        };
        match kill(pid, sig) {
            Ok(()) | Err(nix::Error::ESRCH) => Response::Ok,
            Err(e) => Response::Error {
                message: format!("signalling {id}: {e}"),
            },
        }
    }

    /// Starts a created container; returns its pid and how long its root filesystem took,
    /// or the StartError message (recorded).
    fn start(&mut self, id: &str) -> Result<(Pid, Duration), String> {
        let Some(c) = self.containers.get(id) else {
            return Err(format!("container {id} not found"));
        };
        match c.phase {
            Phase::Created => {}
            Phase::Running | Phase::Exited => {
                return Err(format!("container {id} was started already"))
            }
        }
        match self.spawn(id) {
            Ok(started) => Ok(started),
            Err(message) => {
                let message = format!(
                    "OCI runtime start failed: unable to start container process: {message}"
                );
                let record = ExitRecord {
                    exit_code: 128,
                    signal: None,
                    reason: ExitReason::StartError,
                    message: Some(message.clone()),
                    finished_at: jiff::Timestamp::now(),
                };
                if let Err(e) = write_json_atomic(&self.pod.container(id).exit(), &record) {
                    log_error(id, "recording start error", &e);
                }
                if let Some(c) = self.containers.get_mut(id) {
                    c.phase = Phase::Exited;
                }
                Err(message)
            }
        }
    }

    /// The PID namespace of running container `target`, and the shim's own namespace for
    /// children to return to (as exec does).
    fn target_pid_namespace(&self, target: &str) -> Result<TargetPidNs, String> {
        let pid = self
            .containers
            .get(target)
            .filter(|c| c.phase == Phase::Running)
            .and_then(|c| c.pid)
            .ok_or_else(|| format!("target container {target} is not running"))?;
        let open = |path: String| {
            nix::fcntl::open(
                Path::new(&path),
                OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| format!("opening {path}: {e}"))
        };
        Ok(TargetPidNs {
            target: open(format!("/proc/{pid}/ns/pid"))?,
            own: open("/proc/self/ns/pid_for_children".to_string())?,
        })
    }

    fn spawn(&mut self, id: &str) -> Result<(Pid, Duration), String> {
        let spec = self
            .containers
            .get(id)
            .map(|c| c.spec.clone())
            .ok_or("container vanished")?;
        let cgroup = match &self.hierarchy {
            Some(h) => {
                let cg = h.cgroup(&self.config.pod_cgroup.join(id));
                cg.create().map_err(|e| e.to_string())?;
                cg.apply(&spec.config.resources)
                    .map_err(|e| e.to_string())?;
                // runc's device cgroup: privileged containers get every device, the others
                // only the default character devices (any node may be made, not opened).
                let rules = if spec.config.security.privileged {
                    cgroups::devices::allow_all()
                } else {
                    cgroups::devices::default_rules()
                };
                match cg.apply_devices(&rules).map_err(|e| e.to_string())? {
                    DeviceConfinement::Enforced => {}
                    DeviceConfinement::NoController => log(&format!(
                        "container {id}: no devices cgroup; device access is confined only by nodev mounts"
                    )),
                }
                Some(cg)
            }
            None => None,
        };
        if let Some(parent) = spec.log_path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("creating log directory {}: {e}", parent.display()))?;
        }
        let log_writer = LogWriter::open(&spec.log_path, spec.log_rotation)
            .map_err(|e| format!("opening log {}: {e}", spec.log_path.display()))?;
        let pipe = || pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"));
        let (sync_r, sync_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (out_r, out_w) = pipe()?;
        let (serr_r, serr_w) = pipe()?;
        let (ready_r, ready_w) = pipe()?;
        let (identity_r, identity_w) = pipe()?;
        // Room for the largest identity (65536 groups) so the child never drops its report.
        let _ = nix::fcntl::fcntl(
            &identity_w,
            nix::fcntl::FcntlArg::F_SETPIPE_SZ(IDENTITY_PIPE),
        );
        // pod `stdin`: a pipe whose write end the shim holds for attach; `tty`: the socket
        // the child sends its pty master on.
        let (in_r, in_w) = match spec.config.stdin && !spec.config.tty {
            true => pipe().map(|(r, w)| (Some(r), Some(w)))?,
            false => (None, None),
        };
        let (console_ours, console_child) = match spec.config.tty {
            true => socketpair(
                AddressFamily::Unix,
                SockType::SeqPacket,
                None,
                SockFlag::SOCK_CLOEXEC,
            )
            .map(|(a, b)| (Some(a), Some(b)))
            .map_err(|e| format!("socketpair: {e}"))?,
            false => (None, None),
        };
        let target = match &spec.config.pid_target {
            Some(t) => Some(self.target_pid_namespace(t)?),
            None => None,
        };
        // With a shared PID namespace the containers live in the shim's; a hostPID pod's
        // in the node's (the shim's too); a container with a target joins the target's.
        let new_pid = !(self.config.sandbox.share_process_namespace
            || self.config.sandbox.host_pid
            || target.is_some());
        // Opened before the PID namespace switch below, which nothing may leave early.
        let join = match &cgroup {
            Some(cg) => Some(cg.join_files().map_err(|e| e.to_string())?),
            None => None,
        };
        if let Some(t) = &target {
            nix::sched::setns(&t.target, CloneFlags::CLONE_NEWPID)
                .map_err(|e| format!("joining the target's PID namespace: {e}"))?;
        }
        let mut stack = vec![0u8; CHILD_STACK];
        let cloned = {
            let ctx = ChildContext {
                spec: &spec,
                pod: &self.pod,
                hostname: &self.config.sandbox.hostname,
                sync_read: &sync_r,
                stdout: &out_w,
                stderr: &serr_w,
                stdin: in_r.as_ref(),
                console: console_child.as_ref(),
                rootfs_ready: &ready_w,
                identity: &identity_w,
                cgroup: join.as_ref(),
                userns: self.userns.as_ref().zip(self.config.sandbox.user_namespace),
            };
            let err_w = &err_w;
            let child = Box::new(move || {
                let e = container::setup_and_exec(&ctx);
                let _ = nix::unistd::write(err_w, e.to_string().as_bytes());
                128
            });
            // SAFETY: the shim is single-threaded, so the child (a copy of us, like fork)
            // holds no lock another thread owned; it only runs setup code and execs or
            // exits, on a heap stack large enough for that setup.
            unsafe {
                nix::sched::clone(
                    child,
                    &mut stack,
                    if new_pid {
                        CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS
                    } else {
                        CloneFlags::CLONE_NEWNS
                    },
                    Some(Signal::SIGCHLD as i32),
                )
            }
        };
        // Containers started later must get fresh PID namespaces of their own again.
        if let Some(t) = &target {
            if let Err(e) = nix::sched::setns(&t.own, CloneFlags::CLONE_NEWPID) {
                log(&format!(
                    "container {id}: restoring the shim's PID namespace: {e}"
                ));
            }
        }
        let pid = cloned.map_err(|e| format!("clone: {e}"))?;
        // The child's ends stay only in the child.
        drop((
            sync_r,
            err_w,
            out_w,
            serr_w,
            ready_w,
            identity_w,
            in_r,
            console_child,
        ));
        let c = self.containers.get_mut(id).ok_or("container vanished")?;
        // Reaping must find it even if setup fails.
        c.pid = Some(pid);
        drop(join);
        if let Some(cg) = &cgroup {
            c.oom_before = cg.oom_kill_count().unwrap_or(0);
        }
        c.cgroup = cgroup;
        for fd in [&out_r, &serr_r] {
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
        }
        c.stdout = Some(out_r);
        c.stderr = Some(serr_r);
        c.log = Some(log_writer);
        c.input = in_w;
        c.tty = None;
        c.stdin_closed = false;
        nix::unistd::write(&sync_w, &[1])
            .map_err(|e| format!("releasing the container process: {e}"))?;
        drop(sync_w);
        let released = container::monotonic();
        let started_at = jiff::Timestamp::now();
        let message = read_error_pipe(&err_r).map_err(|e| format!("waiting for exec: {e}"))?;
        if !message.is_empty() {
            return Err(message);
        }
        if let Some(console) = &console_ours {
            // Sent before the exec, so it is queued by now; its output is the container's.
            let master = pty::take_master(console)
                .map_err(|e| format!("receiving the terminal: {e}"))?
                .ok_or("the container process sent no terminal")?;
            let _ = nix::fcntl::fcntl(&master, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
            c.stdout = Some(master.try_clone().map_err(|e| format!("dup: {e}"))?);
            c.tty = Some(master);
        }
        let rootfs = container::read_rootfs_ready(&ready_r)
            .map(|ready| ready.saturating_sub(released))
            .unwrap_or_default();
        c.phase = Phase::Running;
        let record = StateRecord {
            pid: pid.as_raw() as u32,
            started_at,
            user: read_identity(&identity_r),
        };
        write_json_atomic(&self.pod.container(id).state(), &record)
            .map_err(|e| format!("recording state: {e}"))?;
        log(&format!("container {id} started as pid {pid}"));
        Ok((pid, rootfs))
    }

    /// Kills every container and records the exits; the loop then ends.
    fn shutdown(&mut self) {
        self.shutting_down = true;
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in &ids {
            let Some(c) = self.containers.get(id) else {
                continue;
            };
            if let Some(pid) = c.pid {
                let _ = kill(pid, Signal::SIGKILL);
            }
            if let Some(cg) = &c.cgroup {
                if let Err(e) = cg.kill_all(KILL_TIMEOUT) {
                    log_error(id, "killing", &e);
                }
            }
        }
        // Every container PID 1 got SIGKILL; collect them so their exits are recorded.
        for id in &ids {
            if let Some(pid) = self.containers.get(id).and_then(|c| c.pid) {
                match waitpid(pid, None) {
                    Ok(WaitStatus::Exited(p, code)) => self.exited(p, code, None),
                    Ok(WaitStatus::Signaled(p, sig, _)) => {
                        self.exited(p, 128 + sig as i32, Some(sig as i32))
                    }
                    _ => {}
                }
            }
        }
        self.reap();
    }
}

/// Tells an exec's caller how it ended; a caller that went away is no error.
fn exec_exited(conn: UnixStream, code: i32) {
    if let Ok(mut line) = serde_json::to_vec(&Response::ExecExited { exit_code: code }) {
        line.push(b'\n');
        let _ = (&conn).write_all(&line);
    }
}

/// The identity the child reported before its exec (whose CLOEXEC closed the pipe); `None`
/// when it could not report it.
fn read_identity(fd: &OwnedFd) -> Option<cri::ContainerUser> {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return crate::user::decode_identity(&bytes),
            Ok(n) => bytes.extend_from_slice(&buf[..n]),
            Err(nix::Error::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Reads the error pipe until EOF (exec happened) or a message (setup failed).
fn read_error_pipe(fd: &OwnedFd) -> Result<String, nix::Error> {
    let mut message = Vec::new();
    let deadline = std::time::Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(nix::Error::ETIMEDOUT);
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut p = [PollFd::new(fd.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::from(ms)) {
            Ok(0) => continue,
            Ok(_) => {}
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(e),
        }
        let mut buf = [0u8; 4096];
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&message).into_owned()),
            Ok(n) => message.extend_from_slice(&buf[..n]),
            Err(nix::Error::EINTR) | Err(nix::Error::EAGAIN) => {}
            Err(e) => return Err(e),
        }
    }
}

/// Container ids name directories and cgroups: only lowercase hex-like safe characters.
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn log_error(id: &str, what: &str, e: &dyn std::fmt::Display) {
    log(&format!("container {id}: {what}: {e}"));
}
