//! `kubectl exec` inside the shim: start a process in a running container the way `runc exec`
//! does. The process joins every namespace of the container (IPC, UTS, NET, PID, mount, via
//! `/proc/<container pid>/ns/*`) and its cgroup, and gets the container's env, user and
//! working directory. The shim stays single-threaded: it only forks, and hands the process's
//! stdio (pipes, or a pty master allocated inside the container's devpts) to the caller, who
//! streams the bytes itself; the shim reaps the process and reports its exit status.
//!
//! PID namespace: `setns(CLONE_NEWPID)` only applies to children, so the shim points its
//! "PID namespace for children" at the container's, forks, and at once points it back at its
//! own. The exec'd process is thus a direct child of the shim (reaped by it) and a member of
//! the container's PID namespace (its `ps` shows the container's PID 1).

use std::ffi::CString;
use std::fs;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cgroups::{Cgroup, JoinFiles};
use nix::fcntl::{open, OFlag};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};
use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::socket::{
    recvmsg, sendmsg, socketpair, AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags,
    SockFlag, SockType,
};
use nix::sys::stat::Mode;
use nix::unistd::{execve, fork, pipe2, setgid, setgroups, setuid, ForkResult, Gid, Pid, Uid};

use crate::container::{build_env, close_other_fds, find_executable, DEFAULT_PATH};
use crate::protocol::{ContainerSpec, ExecSpec};
use crate::user;

/// How long the exec'd child may take from fork to exec.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The namespaces joined before the mount namespace (nsenter's order; PID is set for the
/// fork by the shim itself, mount last because it changes how paths resolve).
const NAMESPACES: &[(&str, CloneFlags)] = &[
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Why an exec could not start; the text reaches `kubectl exec` as the error.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("exec needs a command")]
    NoCommand,
    #[error("opening namespace {path}: {source}")]
    Namespace {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("opening the container's cgroup: {0}")]
    Cgroup(String),
    #[error("timed out waiting for the process to exec")]
    Timeout,
    /// The child's own report of what failed (lookup, user, cwd, exec).
    #[error("{0}")]
    Child(String),
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> ExecError {
    move |source| ExecError::Sys { what, source }
}

/// What the shim knows when it starts an exec.
pub struct ExecContext<'a> {
    /// The container's PID 1 (host PID).
    pub container_pid: Pid,
    pub spec: &'a ContainerSpec,
    pub hostname: &'a str,
    pub exec: &'a ExecSpec,
    pub cgroup: Option<&'a Cgroup>,
}

/// A started exec: its PID and the caller's ends of its stdio, in the protocol's order.
pub struct Started {
    pub pid: Pid,
    pub fds: Vec<OwnedFd>,
}

/// The child's ends of its stdio when there is no tty.
struct Pipes {
    stdin: Option<OwnedFd>,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

/// Starts `ctx.exec` in the container and returns once it has exec'd (or failed to).
pub fn start(ctx: &ExecContext<'_>) -> Result<Started, ExecError> {
    if ctx.exec.args.is_empty() {
        return Err(ExecError::NoCommand);
    }
    let proc_dir = PathBuf::from(format!("/proc/{}/ns", ctx.container_pid));
    let open_ns = |name: &str| {
        let path = proc_dir.join(name);
        open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(|source| ExecError::Namespace { path, source })
    };
    let mut namespaces = Vec::new();
    // A pod with its own user namespace (`hostUsers: false`): joined first, as nsenter
    // does, since it owns the others; the process's capabilities then hold only there.
    let user_ns = |p: &Path| fs::read_link(p).ok();
    if user_ns(&proc_dir.join("user")) != user_ns(Path::new("/proc/self/ns/user")) {
        namespaces.push((open_ns("user")?, CloneFlags::CLONE_NEWUSER));
    }
    for (name, flag) in NAMESPACES {
        namespaces.push((open_ns(name)?, *flag));
    }
    let container_pidns = open_ns("pid")?;
    let own_pidns = open(
        Path::new("/proc/self/ns/pid_for_children"),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| ExecError::Namespace {
        path: "/proc/self/ns/pid_for_children".into(),
        source,
    })?;

    // Child → shim: an optional pty master, an error text, or EOF at a successful exec.
    let (report_r, report_w) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(sys("socketpair"))?;
    let join = match ctx.cgroup {
        Some(cg) => Some(
            cg.join_files()
                .map_err(|e| ExecError::Cgroup(e.to_string()))?,
        ),
        None => None,
    };
    let mut ours = Vec::new();
    let pipes = if ctx.exec.tty {
        None
    } else {
        let stdin = if ctx.exec.stdin {
            let (r, w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
            ours.push(w);
            Some(r)
        } else {
            None
        };
        let (out_r, out_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        let (err_r, err_w) = pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe"))?;
        ours.push(out_r);
        ours.push(err_r);
        Some(Pipes {
            stdin,
            stdout: out_w,
            stderr: err_w,
        })
    };

    setns(&container_pidns, CloneFlags::CLONE_NEWPID).map_err(sys("joining the PID namespace"))?;
    // SAFETY: the shim is single-threaded, so the child holds no lock another thread owned;
    // it only makes syscalls and execs or exits.
    let forked = unsafe { fork() };
    // Containers started later must get fresh PID namespaces of their own again.
    if let Err(e) = setns(&own_pidns, CloneFlags::CLONE_NEWPID) {
        eprintln!(
            "{} restoring the shim's PID namespace after exec: {e}",
            jiff::Timestamp::now()
        );
    }
    let pid = match forked.map_err(sys("fork"))? {
        ForkResult::Child => {
            drop(report_r);
            drop(ours);
            let err = child(ctx, &namespaces, join.as_ref(), &report_w, pipes);
            let mut msg = b"E".to_vec();
            msg.extend_from_slice(err.as_bytes());
            let _ = sendmsg::<()>(
                report_w.as_raw_fd(),
                &[IoSlice::new(&msg)],
                &[],
                MsgFlags::empty(),
                None,
            );
            // SAFETY: _exit skips the shim's atexit handlers and buffers, as a forked child
            // must.
            unsafe { libc::_exit(127) }
        }
        ForkResult::Parent { child } => child,
    };
    drop(report_w);
    drop(join);
    drop(pipes);
    let fail = |e: ExecError| {
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        e
    };
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(fail(ExecError::Timeout));
        }
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        let mut p = [PollFd::new(report_r.as_fd(), PollFlags::POLLIN)];
        match poll(&mut p, PollTimeout::from(ms)) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(fail(sys("waiting for the process")(e))),
        }
        match receive(&report_r).map_err(|e| fail(sys("reading the process's report")(e)))? {
            Report::Exec => break,
            Report::Pty(fd) => ours.push(fd),
            Report::Error(text) => return Err(ExecError::Child(text)),
        }
    }
    Ok(Started { pid, fds: ours })
}

enum Report {
    Exec,
    Pty(OwnedFd),
    Error(String),
}

fn receive(sock: &OwnedFd) -> Result<Report, nix::Error> {
    let mut buf = vec![0u8; 4096];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(rights) = c {
                // SAFETY: SCM_RIGHTS just installed these fds in our table; we own them.
                fds.extend(
                    rights
                        .into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    if n == 0 {
        return Ok(Report::Exec);
    }
    match (&buf[..1] == crate::pty::MASTER_TAG, fds.into_iter().next()) {
        (true, Some(fd)) => Ok(Report::Pty(fd)),
        _ => Ok(Report::Error(
            String::from_utf8_lossy(&buf[1..n]).into_owned(),
        )),
    }
}

/// Runs in the forked child: joins the namespaces, sets up stdio, user and cwd, and execs.
/// Returns only the text of what failed.
fn child(
    ctx: &ExecContext<'_>,
    namespaces: &[(OwnedFd, CloneFlags)],
    join: Option<&JoinFiles>,
    report: &OwnedFd,
    pipes: Option<Pipes>,
) -> String {
    match child_setup(ctx, namespaces, join, report, pipes) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn child_setup(
    ctx: &ExecContext<'_>,
    namespaces: &[(OwnedFd, CloneFlags)],
    join: Option<&JoinFiles>,
    report: &OwnedFd,
    pipes: Option<Pipes>,
) -> Result<Never, String> {
    // Into the container's cgroup first, so its limits hold everything from here on.
    if let Some(join) = join {
        join.join()
            .map_err(|e| format!("joining the container's cgroup: {e}"))?;
    }
    for (fd, flag) in namespaces {
        setns(fd, *flag).map_err(|e| format!("joining namespace {flag:?}: {e}"))?;
    }
    // From here on every path resolves inside the container's root.
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let resolved =
        user::resolve(&ctx.spec.config.user, &passwd, &group).map_err(|e| e.to_string())?;
    let cwd = ctx
        .spec
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    std::env::set_current_dir(&cwd)
        .map_err(|e| format!("chdir to cwd ({cwd:?}) set in config.json failed: {e}"))?;
    let mut env = build_env(&ctx.spec.config.env, ctx.hostname, &resolved.home);
    // containerd's CRI exec sets TERM for a tty when the container env has none.
    if ctx.exec.tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let arg0 = ctx.exec.args.first().cloned().unwrap_or_default();
    let program = find_executable(&arg0, path_var, |p| {
        use std::os::unix::fs::PermissionsExt;
        fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
    .map_err(|e| e.to_string())?;

    match pipes {
        None => crate::pty::open_in_child(report).map_err(|e| e.to_string())?,
        Some(p) => {
            let stdin = match p.stdin {
                Some(fd) => fd,
                None => open(
                    Path::new("/dev/null"),
                    OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| format!("opening /dev/null: {e}"))?,
            };
            let stdio = |e: nix::Error| format!("redirecting stdio: {e}");
            nix::unistd::dup2_stdin(stdin.as_fd()).map_err(stdio)?;
            nix::unistd::dup2_stdout(p.stdout.as_fd()).map_err(stdio)?;
            nix::unistd::dup2_stderr(p.stderr.as_fd()).map_err(stdio)?;
        }
    }

    let groups: Vec<Gid> = resolved.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let set_user = |e: nix::Error| format!("setting user {}:{}: {e}", resolved.uid, resolved.gid);
    // As `runc exec`: the exec'd process gets the container's capabilities, no_new_privs and
    // seccomp filter, so exec is no way around the container's confinement.
    let credentials = crate::security::prepare_credentials(
        &ctx.spec.config.security,
        ctx.spec.localhost_seccomp.as_ref(),
    )
    .map_err(|e| e.to_string())?;
    setgroups(&groups).map_err(set_user)?;
    setgid(Gid::from_raw(resolved.gid)).map_err(set_user)?;
    setuid(Uid::from_raw(resolved.uid)).map_err(set_user)?;
    crate::security::finish_credentials(credentials).map_err(|e| e.to_string())?;

    let nul = |_| "argument or environment contains a NUL byte".to_string();
    let argv: Vec<CString> = ctx
        .exec
        .args
        .iter()
        .map(|a| CString::new(a.as_str()))
        .collect::<Result<_, _>>()
        .map_err(nul)?;
    let envp: Vec<CString> = env
        .iter()
        .map(|(k, v)| CString::new(format!("{k}={v}")))
        .collect::<Result<_, _>>()
        .map_err(nul)?;
    let program_c = CString::new(program.as_os_str().as_encoded_bytes()).map_err(nul)?;
    // The shim blocks signals for its signalfd and ignores SIGPIPE; neither may leak in.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: restoring a default disposition in a single-threaded child installs no handler.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    close_other_fds();
    match execve(&program_c, &argv, &envp) {
        Ok(never) => match never {},
        Err(e) => Err(format!("exec: {arg0:?}: {e}")),
    }
}

/// Sends the `ExecStarted` line with the stdio fds attached.
pub fn send_started(
    stream: &std::os::unix::net::UnixStream,
    line: &[u8],
    fds: &[OwnedFd],
) -> Result<(), nix::Error> {
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsgs = if raw.is_empty() {
        vec![]
    } else {
        vec![ControlMessage::ScmRights(&raw)]
    };
    let mut sent = sendmsg::<()>(
        stream.as_raw_fd(),
        &[IoSlice::new(line)],
        &cmsgs,
        MsgFlags::empty(),
        None,
    )?;
    while sent < line.len() {
        sent += nix::unistd::write(stream, &line[sent..])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn child_reports_travel_with_fds() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        let (r, _w) = pipe2(OFlag::O_CLOEXEC).expect("pipe");
        let fds = [r.as_raw_fd()];
        sendmsg::<()>(
            b.as_raw_fd(),
            &[IoSlice::new(b"P")],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("send");
        sendmsg::<()>(
            b.as_raw_fd(),
            &[IoSlice::new(b"Eexec: \"x\": not found")],
            &[],
            MsgFlags::empty(),
            None,
        )
        .expect("send");
        drop(b);
        assert!(matches!(receive(&a).expect("pty"), Report::Pty(_)));
        match receive(&a).expect("error") {
            Report::Error(t) => assert_eq!(t, "exec: \"x\": not found"),
            _ => panic!("expected an error report"),
        }
        assert!(matches!(receive(&a).expect("eof"), Report::Exec));
    }
}
