//! The container side of a start: code that runs in the child the shim clones into new mount
//! and PID namespaces (it is PID 1 there; NET/IPC/UTS are the shim's, i.e. the pod's). It
//! waits until the shim has put it into its cgroup, builds the rootfs (overlayfs, /proc,
//! /dev, /sys, the pod's /etc files, bind mounts), pivots into it, drops to the container
//! user and execs. Any failure is written to the error pipe for the shim to report as
//! `StartError`; a successful exec closes that pipe (it is CLOEXEC).

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{open, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::Mode;
use nix::unistd::{chdir, execve, pivot_root, setgid, setgroups, setuid, Gid, Uid};

use crate::mountattr;
use crate::protocol::{ContainerDir, ContainerSpec, PodDir};
use crate::security;
use crate::user;

/// PATH given to a container whose env has none (containerd's and runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Device nodes bind-mounted from the host into the container's /dev (the OCI default set).
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

/// A failed step of the container setup; its text becomes the container's status message.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("waiting for the shim: {0}")]
    Sync(#[source] nix::Error),
    #[error("joining the container's cgroup: {0}")]
    Cgroup(#[source] cgroups::CgroupError),
    #[error("mounting {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("preparing {path}: {source}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("pivot_root into {path}: {source}")]
    PivotRoot {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("invalid path {path:?}: overlayfs options cannot contain ':' or ','")]
    LayerPath { path: PathBuf },
    #[error("{0}")]
    User(#[from] user::UserError),
    #[error("{0}")]
    Security(#[from] security::SecurityError),
    #[error("setting user {uid}:{gid}: {source}")]
    SetUser {
        uid: u32,
        gid: u32,
        #[source]
        source: nix::Error,
    },
    #[error("chdir to cwd ({cwd:?}) set in config.json failed: {source}")]
    Cwd {
        cwd: String,
        #[source]
        source: nix::Error,
    },
    #[error("chdir to cwd ({cwd:?}) set in config.json failed: {source}")]
    CwdResolve {
        cwd: String,
        #[source]
        source: inroot::ResolveError,
    },
    #[error("mount destination {target}: {source}")]
    Destination {
        target: PathBuf,
        #[source]
        source: inroot::ResolveError,
    },
    #[error("exec: {arg:?}: executable file not found in $PATH")]
    NotFound { arg: String },
    #[error("exec: {arg:?}: stat {arg}: no such file or directory")]
    NoSuchFile { arg: String },
    #[error("exec: {arg:?}: {source}")]
    Exec {
        arg: String,
        #[source]
        source: nix::Error,
    },
    #[error("argument or environment contains a NUL byte")]
    Nul,
    #[error("redirecting stdio: {0}")]
    Stdio(#[source] nix::Error),
    #[error("setting up the terminal: {0}")]
    Tty(#[source] crate::pty::PtyError),
    #[error("{0}")]
    Userns(#[from] crate::userns::UsernsError),
    #[error("entering the pod's user namespace: {0}")]
    EnterUserns(#[source] nix::Error),
}

/// The fds and settings the child needs; they were created by the shim before clone.
pub struct ChildContext<'a> {
    pub spec: &'a ContainerSpec,
    pub pod: &'a PodDir,
    pub hostname: &'a str,
    pub sync_read: &'a OwnedFd,
    pub stdout: &'a OwnedFd,
    pub stderr: &'a OwnedFd,
    /// The read end of the stdin pipe the shim holds (pod `stdin` without a tty); else
    /// stdin is /dev/null.
    pub stdin: Option<&'a OwnedFd>,
    /// With `tty`: the socket the child sends its pty master on; the pty's slave then
    /// replaces `stdin`, `stdout` and `stderr`.
    pub console: Option<&'a OwnedFd>,
    /// Where the child writes `monotonic()` once its root filesystem is ready, so the shim
    /// can tell the rootfs part of a start from the rest.
    pub rootfs_ready: &'a OwnedFd,
    /// Where the child reports the identity it got (`user::encode_identity`) just before
    /// the exec; non-blocking, so a report too large for the pipe is dropped, not waited on.
    pub identity: &'a OwnedFd,
    /// The container's cgroup, which the child moves itself into before anything else.
    pub cgroup: Option<&'a cgroups::JoinFiles>,
    /// `hostUsers: false`: the pod's user namespace and its ID mapping. The root is built
    /// as host root (layers idmapped into the namespace), then the child enters it.
    pub userns: Option<(&'a OwnedFd, cri::IdMapping)>,
}

/// `CLOCK_MONOTONIC` as a duration since boot: one clock for the shim and its children.
pub fn monotonic() -> std::time::Duration {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(std::time::Duration::from)
        .unwrap_or_default()
}

/// The child's `monotonic()` at rootfs-ready, once it has exec'd (`None` when it never
/// wrote it). The write precedes the exec, so it is in the pipe by then.
pub fn read_rootfs_ready(fd: &OwnedFd) -> Option<std::time::Duration> {
    let mut buf = [0u8; 16];
    match nix::unistd::read(fd, &mut buf) {
        Ok(16) => {
            let secs = u64::from_le_bytes(buf[..8].try_into().ok()?);
            let nanos = u64::from_le_bytes(buf[8..].try_into().ok()?);
            Some(std::time::Duration::from_secs(secs) + std::time::Duration::from_nanos(nanos))
        }
        _ => None,
    }
}

/// Sets the container up and execs; returns only on failure.
pub fn setup_and_exec(ctx: &ChildContext<'_>) -> SetupError {
    match setup(ctx) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

enum Never {}

fn setup(ctx: &ChildContext<'_>) -> Result<Never, SetupError> {
    // Into the container's cgroup first, so its limits hold everything from here on.
    if let Some(cgroup) = ctx.cgroup {
        cgroup.join().map_err(SetupError::Cgroup)?;
    }
    // The shim writes one byte once it recorded us; EOF means it gave up.
    let mut byte = [0u8; 1];
    loop {
        match nix::unistd::read(ctx.sync_read, &mut byte) {
            Ok(1) => break,
            Ok(_) => return Err(SetupError::Sync(nix::Error::EPIPE)),
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(SetupError::Sync(e)),
        }
    }
    // Nothing mounted from here on may propagate back to the host's namespace.
    do_mount(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None,
        "/ rprivate",
    )?;

    let dir: ContainerDir = ctx.pod.container(&ctx.spec.id);
    let rootfs = dir.rootfs();
    for d in [dir.upper(), dir.work(), rootfs.clone()] {
        fs::create_dir_all(&d).map_err(|source| SetupError::Prepare {
            path: d.clone(),
            source,
        })?;
    }
    let lowerdirs = match ctx.userns {
        Some((userns, mapping)) => idmapped_layers(&dir, &ctx.spec.lowerdirs, userns, mapping)?,
        None => ctx.spec.lowerdirs.clone(),
    };
    let options = overlay_options(&lowerdirs, &dir.upper(), &dir.work())?;
    // An unprivileged container's root and volumes are nodev: a device node an image layer
    // or its root user puts there opens nothing. Privileged containers may use any node, as
    // under runc.
    let privileged = ctx.spec.config.security.privileged;
    let nodev = !privileged;
    do_mount(
        Some("overlay"),
        &rootfs,
        Some("overlay"),
        if nodev {
            MsFlags::MS_NODEV
        } else {
            MsFlags::empty()
        },
        Some(&options),
        "overlay",
    )?;

    // Every mount destination is resolved inside this fd as if it were `/` (an image's
    // `/data -> /.oldroot/etc` or `-> ../../..` stays inside it) and mounted through
    // /proc/self/fd, all before pivot_root: nothing of the host is reachable from the
    // container's root while its paths are followed.
    let root = nix::fcntl::open(
        &rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| SetupError::Open {
        path: rootfs.clone(),
        source,
    })?;

    // Open every host-side source now, while the host's paths are the ones we see.
    let mut binds: Vec<(OwnedFd, String, BindFlags)> = Vec::new();
    // Privileged containers get the host's devices (read now, created once /dev exists).
    let host_devices = if privileged {
        security::host_devices(Path::new("/dev"))
    } else {
        Vec::new()
    };
    for dev in DEVICES {
        let path = PathBuf::from("/dev").join(dev);
        binds.push((open_path(&path)?, format!("/dev/{dev}"), BindFlags::DEVICE));
    }
    for (path, target) in [
        (ctx.pod.hostname(), "/etc/hostname"),
        (ctx.pod.hosts(), "/etc/hosts"),
        (ctx.pod.resolv_conf(), "/etc/resolv.conf"),
    ] {
        if path.exists() {
            binds.push((open_path(&path)?, target.to_string(), BindFlags::FILE));
        }
    }
    let mut user_binds = Vec::new();
    for m in &ctx.spec.config.mounts {
        user_binds.push((
            open_path(&m.host_path)?,
            m.container_path.clone(),
            BindFlags {
                readonly: m.readonly,
                recursive_read_only: m.readonly && m.recursive_read_only,
                nodev,
            },
        ));
    }
    let stdin = open(
        Path::new("/dev/null"),
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| SetupError::Open {
        path: "/dev/null".into(),
        source,
    })?;

    let owner = ctx.userns.map(|(_, m)| m);
    mount_container_filesystems(&root, privileged, owner.as_ref())?;
    for (fd, target, flags) in binds.iter().chain(user_binds.iter()) {
        bind_fd(&root, fd, Path::new(target), *flags)?;
    }
    drop(binds);
    drop(user_binds);
    drop(root);

    let pivot_err = |source| SetupError::PivotRoot {
        path: rootfs.clone(),
        source,
    };
    // pivot_root(".", "."): the old root ends up mounted over the new one, from where it is
    // detached at once. No directory is made in the container's root to receive it (each
    // new entry there is a write to its upper layer), and none an image could have made a
    // symlink of.
    let dir = |path: &Path| {
        open(
            path,
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(pivot_err)
    };
    let old_root = dir(Path::new("/"))?;
    let new_root = dir(&rootfs)?;
    nix::unistd::fchdir(&new_root).map_err(pivot_err)?;
    pivot_root(".", ".").map_err(pivot_err)?;
    // The kernel leaves "." on one of the two roots; stand on the old one, which is on top.
    nix::unistd::fchdir(&old_root).map_err(pivot_err)?;
    // Private since the start of setup: the detach does not propagate to the host.
    umount2(".", MntFlags::MNT_DETACH).map_err(pivot_err)?;
    chdir("/").map_err(pivot_err)?;
    drop((old_root, new_root));
    security::create_devices(&host_devices)?;
    security::apply_path_rules(&ctx.spec.config.security)?;
    // kubelet's QoS ranking for the OOM killer; the shim keeps its own, lower score. Lowering
    // needs CAP_SYS_RESOURCE of the node: without it the inherited score stays.
    if let Some(adj) = ctx.spec.config.oom_score_adj {
        let _ = fs::write("/proc/self/oom_score_adj", adj.to_string());
    }
    if let Some((userns, _)) = ctx.userns {
        enter_user_namespace(userns)?;
    }
    let ready = monotonic();
    let mut stamp = [0u8; 16];
    stamp[..8].copy_from_slice(&ready.as_secs().to_le_bytes());
    stamp[8..].copy_from_slice(&u64::from(ready.subsec_nanos()).to_le_bytes());
    // Only a measurement: a failed write costs the figure, not the container.
    let _ = nix::unistd::write(ctx.rootfs_ready, &stamp);

    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    let resolved = user::resolve(&ctx.spec.config.user, &passwd, &group)?;

    let cwd = ctx
        .spec
        .config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    // runc creates a missing working directory rather than failing, inside the root.
    let new_root = open_path(Path::new("/"))?;
    let cwd_fd = inroot::open(
        new_root.as_fd(),
        Path::new(&cwd),
        inroot::Scope::InRoot,
        inroot::Create::Dir,
    )
    .map_err(|source| SetupError::CwdResolve {
        cwd: cwd.clone(),
        source,
    })?;
    nix::unistd::fchdir(&cwd_fd).map_err(|source| SetupError::Cwd {
        cwd: cwd.clone(),
        source,
    })?;
    drop(cwd_fd);
    drop(new_root);
    // After the working directory exists: runc, too, creates it before the remount.
    if ctx.spec.config.security.readonly_rootfs {
        security::readonly_rootfs()?;
    }

    let mut env = build_env(&ctx.spec.config.env, ctx.hostname, &resolved.home);
    // containerd's CRI gives a tty container TERM=xterm when its env has none.
    if ctx.spec.config.tty && !env.iter().any(|(k, _)| k == "TERM") {
        env.push(("TERM".into(), "xterm".into()));
    }
    let path_var = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.as_str())
        .unwrap_or(DEFAULT_PATH);
    let arg0 = ctx.spec.config.args.first().cloned().unwrap_or_default();
    let program = find_executable(&arg0, path_var, is_executable)?;

    let groups: Vec<Gid> = resolved.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    let set_user = |source| SetupError::SetUser {
        uid: resolved.uid,
        gid: resolved.gid,
        source,
    };
    let credentials = security::prepare_credentials(
        &ctx.spec.config.security,
        ctx.spec.localhost_seccomp.as_ref(),
    )?;
    setgroups(&groups).map_err(set_user)?;
    setgid(Gid::from_raw(resolved.gid)).map_err(set_user)?;
    setuid(Uid::from_raw(resolved.uid)).map_err(set_user)?;
    report_identity(ctx.identity);
    security::finish_credentials(credentials)?;

    let argv = to_cstrings(ctx.spec.config.args.iter().map(String::as_str))?;
    let envp = to_cstrings(
        env.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str),
    )?;
    let program_c =
        CString::new(program.as_os_str().as_encoded_bytes()).map_err(|_| SetupError::Nul)?;

    match ctx.console {
        Some(console) => crate::pty::open_in_child(console).map_err(SetupError::Tty)?,
        None => {
            let stdin = ctx.stdin.unwrap_or(&stdin);
            nix::unistd::dup2_stdin(stdin.as_fd()).map_err(SetupError::Stdio)?;
            nix::unistd::dup2_stdout(ctx.stdout.as_fd()).map_err(SetupError::Stdio)?;
            nix::unistd::dup2_stderr(ctx.stderr.as_fd()).map_err(SetupError::Stdio)?;
        }
    }
    // The shim blocks signals for its signalfd and ignores SIGPIPE; both would be inherited
    // across exec.
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    // SAFETY: restoring a default disposition in a single-threaded child installs no handler.
    let _ = unsafe { nix::sys::signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) };
    close_other_fds();

    match execve(&program_c, &argv, &envp) {
        Ok(never) => match never {},
        Err(source) => Err(SetupError::Exec { arg: arg0, source }),
    }
}

/// Tells the shim the ids this process holds now, as the kernel has them (the container
/// status's `user`). Best effort: a seccomp profile loaded early (privilege escalation
/// allowed) may refuse the calls, and the status then has no `user`.
fn report_identity(fd: &OwnedFd) {
    let Ok(groups) = nix::unistd::getgroups() else {
        return;
    };
    let user = cri::ContainerUser {
        uid: nix::unistd::getuid().as_raw(),
        gid: nix::unistd::getgid().as_raw(),
        supplemental_groups: groups.iter().map(|g| g.as_raw()).collect(),
    };
    let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK));
    let mut rest = user::encode_identity(&user);
    while !rest.is_empty() {
        match nix::unistd::write(fd, &rest) {
            Ok(n) => {
                rest.drain(..n);
            }
            Err(nix::Error::EINTR) => {}
            Err(_) => return,
        }
    }
}

/// The image layers idmapped into the pod's user namespace under `<container>/layers/<i>`
/// (mounts of this child's private mount namespace only), so files the image gives to
/// root are the namespace root's without a chown of the shared layers; and the upper
/// directory, where the container's own writes land with their mapped host IDs, owned by
/// the namespace's root, so that the container's `/` is root's.
fn idmapped_layers(
    dir: &ContainerDir,
    lowerdirs: &[PathBuf],
    userns: &OwnedFd,
    mapping: cri::IdMapping,
) -> Result<Vec<PathBuf>, SetupError> {
    let root_id = mapping.host_id;
    std::os::unix::fs::lchown(dir.upper(), Some(root_id), Some(root_id)).map_err(|source| {
        SetupError::Prepare {
            path: dir.upper(),
            source,
        }
    })?;
    let mut mapped = Vec::new();
    for (i, lower) in lowerdirs.iter().enumerate() {
        let target = dir.root().join("layers").join(i.to_string());
        fs::create_dir_all(&target).map_err(|source| SetupError::Prepare {
            path: target.clone(),
            source,
        })?;
        crate::userns::idmapped_bind(lower, &target, userns)?;
        mapped.push(target);
    }
    Ok(mapped)
}

/// Moves this child into the pod's user namespace, with a mount namespace of its own owned
/// by it: the mounts made so far come along locked (the container cannot unmount or
/// loosen them), and the capabilities the container keeps hold only inside the namespace.
fn enter_user_namespace(userns: &OwnedFd) -> Result<(), SetupError> {
    nix::sched::setns(userns, nix::sched::CloneFlags::CLONE_NEWUSER)
        .map_err(SetupError::EnterUserns)?;
    // Host root is nobody in there: become the namespace's root before anything is
    // created (a missing working directory), so it gets the mapped owner.
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(SetupError::EnterUserns)?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(SetupError::EnterUserns)?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(SetupError::EnterUserns)
}

/// `lowerdir=top:…:bottom,upperdir=…,workdir=…` (overlayfs lists the top layer first).
pub fn overlay_options(
    lowerdirs: &[PathBuf],
    upper: &Path,
    work: &Path,
) -> Result<String, SetupError> {
    for p in lowerdirs.iter().map(PathBuf::as_path).chain([upper, work]) {
        let s = p.to_string_lossy();
        if s.contains(':') || s.contains(',') {
            return Err(SetupError::LayerPath {
                path: p.to_path_buf(),
            });
        }
    }
    let lower: Vec<String> = lowerdirs
        .iter()
        .rev()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.join(":"),
        upper.display(),
        work.display()
    ))
}

/// The container's environment: its config's variables, then the defaults runtimes add
/// (PATH, HOSTNAME, HOME) when absent.
pub fn build_env(config: &[(String, String)], hostname: &str, home: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for (k, v) in config {
        match env.iter_mut().find(|(ek, _)| ek == k) {
            Some(slot) => slot.1 = v.clone(),
            None => env.push((k.clone(), v.clone())),
        }
    }
    for (k, v) in [
        ("PATH", DEFAULT_PATH),
        ("HOSTNAME", hostname),
        ("HOME", home),
    ] {
        if !env.iter().any(|(ek, _)| ek == k) {
            env.push((k.to_string(), v.to_string()));
        }
    }
    env
}

/// Finds `arg` as Go's exec.LookPath does (runc's behaviour): a name with a slash is used
/// as is, anything else is searched in PATH.
pub fn find_executable(
    arg: &str,
    path: &str,
    is_exec: impl Fn(&Path) -> bool,
) -> Result<PathBuf, SetupError> {
    if arg.is_empty() {
        return Err(SetupError::NotFound { arg: arg.into() });
    }
    if arg.contains('/') {
        if Path::new(arg).exists() {
            return Ok(PathBuf::from(arg));
        }
        return Err(SetupError::NoSuchFile { arg: arg.into() });
    }
    for dir in path.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(arg);
        if is_exec(&candidate) {
            return Ok(candidate);
        }
    }
    Err(SetupError::NotFound { arg: arg.into() })
}

fn is_executable(p: &Path) -> bool {
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn to_cstrings<'a>(items: impl Iterator<Item = &'a str>) -> Result<Vec<CString>, SetupError> {
    items
        .map(|s| CString::new(s).map_err(|_| SetupError::Nul))
        .collect()
}

fn do_mount(
    source: Option<&str>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
    what: &str,
) -> Result<(), SetupError> {
    mount(source, target, fstype, flags, data).map_err(|source| SetupError::Mount {
        what: what.to_string(),
        target: target.to_path_buf(),
        source,
    })
}

fn open_path(path: &Path) -> Result<OwnedFd, SetupError> {
    open(path, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(|source| SetupError::Open {
        path: path.to_path_buf(),
        source,
    })
}

/// `target` opened inside the container root `root` (see [`inroot::open`]).
fn resolve(root: &OwnedFd, target: &Path, create: inroot::Create) -> Result<OwnedFd, SetupError> {
    inroot::open(root.as_fd(), target, inroot::Scope::InRoot, create).map_err(|source| {
        SetupError::Destination {
            target: target.to_path_buf(),
            source,
        }
    })
}

/// `/proc/self/fd/N` of `fd`: the path a mount takes to reach exactly that object.
fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Mounts a file system on the directory `target` of the container root (created there if
/// missing), through the fd the resolution returned.
fn mount_in(
    root: &OwnedFd,
    target: &str,
    source: &str,
    fstype: &str,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<(), SetupError> {
    let dir = resolve(root, Path::new(target), inroot::Create::Dir)?;
    mount(Some(source), &fd_path(&dir), Some(fstype), flags, data).map_err(|source| {
        SetupError::Mount {
            what: fstype.to_string(),
            target: target.into(),
            source,
        }
    })
}

/// /proc, /dev (tmpfs with pts, shm, mqueue), /sys read-only (writable when privileged):
/// the OCI default mounts, made inside the container root `root` before pivot_root.
/// With a user namespace (`owner`), the tmpfs roots belong to its root and devpts gives
/// new terminals its `tty` group (5), so they are usable inside.
fn mount_container_filesystems(
    root: &OwnedFd,
    privileged: bool,
    owner: Option<&cri::IdMapping>,
) -> Result<(), SetupError> {
    let nosuid_noexec_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_NODEV;
    let ids = owner
        .map(|m| format!(",uid={0},gid={0}", m.host_id))
        .unwrap_or_default();
    let tty_gid = owner.and_then(|m| m.to_host(5)).unwrap_or(5);
    mount_in(root, "/proc", "proc", "proc", nosuid_noexec_nodev, None)?;
    mount_in(
        root,
        "/dev",
        "tmpfs",
        "tmpfs",
        MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
        Some(&format!("mode=755,size=65536k{ids}")),
    )?;
    mount_in(
        root,
        "/dev/pts",
        "devpts",
        "devpts",
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some(&format!(
            "newinstance,ptmxmode=0666,mode=0620,gid={tty_gid}"
        )),
    )?;
    mount_in(
        root,
        "/dev/shm",
        "shm",
        "tmpfs",
        nosuid_noexec_nodev,
        Some(&format!("mode=1777,size=65536k{ids}")),
    )?;
    mount_in(
        root,
        "/dev/mqueue",
        "mqueue",
        "mqueue",
        nosuid_noexec_nodev,
        None,
    )?;
    // The fresh /dev tmpfs, opened again now that it is mounted.
    let dev = resolve(root, Path::new("/dev"), inroot::Create::Nothing)?;
    for (name, target) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        nix::unistd::symlinkat(target, &dev, name).map_err(|source| SetupError::Prepare {
            path: Path::new("/dev").join(name),
            source: source.into(),
        })?;
    }
    mount_in(
        root,
        "/sys",
        "sysfs",
        "sysfs",
        if privileged {
            nosuid_noexec_nodev
        } else {
            nosuid_noexec_nodev | MsFlags::MS_RDONLY
        },
        None,
    )?;
    Ok(())
}

/// How a bind mount is restricted once made.
#[derive(Debug, Clone, Copy)]
struct BindFlags {
    /// Read-only: the mount itself, and with `recursive_read_only` every mount below it too.
    readonly: bool,
    recursive_read_only: bool,
    /// `nodev` on the mount and every mount below it.
    nodev: bool,
}

impl BindFlags {
    /// A node of the default /dev set: it must stay usable.
    const DEVICE: BindFlags = BindFlags {
        readonly: false,
        recursive_read_only: false,
        nodev: false,
    };
    /// One of the pod's /etc files.
    const FILE: BindFlags = BindFlags {
        readonly: false,
        recursive_read_only: false,
        nodev: true,
    };
}

/// Bind-mounts the host object behind `fd` on `target` inside the container root `root`
/// (created there as a file or directory like the source), read-only and nodev as `flags`
/// ask.
fn bind_fd(
    root: &OwnedFd,
    fd: &OwnedFd,
    target: &Path,
    flags: BindFlags,
) -> Result<(), SetupError> {
    let source = fd_path(fd);
    let is_dir = fs::metadata(&source).map(|m| m.is_dir()).unwrap_or(false);
    let create = if is_dir {
        inroot::Create::Dir
    } else {
        inroot::Create::File
    };
    let dest = resolve(root, target, create)?;
    let what = format!(
        "bind {}",
        fs::read_link(&source).unwrap_or_default().display()
    );
    let mount_err = |source| SetupError::Mount {
        what: what.clone(),
        target: target.to_path_buf(),
        source,
    };
    mount(
        Some(&source),
        &fd_path(&dest),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(mount_err)?;
    if !flags.readonly && !flags.nodev {
        return Ok(());
    }
    // `dest` is the directory under the new mount; a remount must name the mount's own
    // root, so the target is resolved again (as runc does after a bind).
    let mounted_fd = resolve(root, target, inroot::Create::Nothing)?;
    let mounted = fd_path(&mounted_fd);
    if flags.recursive_read_only {
        // As runc's `rro`: one mount_setattr makes the bind and everything mounted below it
        // in the volume read-only (and nodev), where a remount reaches the top mount only.
        let nodev = if flags.nodev {
            mountattr::MOUNT_ATTR_NODEV
        } else {
            0
        };
        return mountattr::set_recursive(&mounted, mountattr::MOUNT_ATTR_RDONLY | nodev).map_err(
            |source| SetupError::Mount {
                what: format!("{what} recursively read-only"),
                target: target.to_path_buf(),
                source,
            },
        );
    }
    if flags.readonly {
        mount(
            None::<&str>,
            &mounted,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(mount_err)?;
    }
    // After the read-only remount, which would reset it.
    if flags.nodev {
        crate::nodev::set_nodev(&mounted).map_err(|source| SetupError::Mount {
            what: format!("{what} nodev"),
            target: target.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

/// Marks every fd above stderr close-on-exec, so the exec closes the shim's sockets and
/// pipes (and the error pipe, which tells the shim the exec worked).
pub(crate) fn close_other_fds() {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only changes fd flags; no memory is
    // touched.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc != 0 {
        // Kernels before 5.11: walk our open fds instead.
        if let Ok(entries) = fs::read_dir("/proc/self/fd") {
            let fds: Vec<i32> = entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect();
            for fd in fds.into_iter().filter(|fd| *fd > 2) {
                let _ = nix::fcntl::fcntl(
                    // SAFETY: the fd number comes from our own fd table and is only borrowed
                    // for this one fcntl call.
                    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) },
                    nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_lists_top_layer_first() {
        let o = overlay_options(
            &["/l/base".into(), "/l/top".into()],
            Path::new("/c/upper"),
            Path::new("/c/work"),
        )
        .expect("options");
        assert_eq!(
            o,
            "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"
        );
        assert!(overlay_options(&["/l/a:b".into()], Path::new("/u"), Path::new("/w")).is_err());
    }

    #[test]
    fn env_defaults() {
        let env = build_env(
            &[("A".into(), "1".into()), ("A".into(), "2".into())],
            "pod",
            "/root",
        );
        assert_eq!(env[0], ("A".into(), "2".into()));
        assert!(env.contains(&("PATH".into(), DEFAULT_PATH.into())));
        assert!(env.contains(&("HOSTNAME".into(), "pod".into())));
        assert!(env.contains(&("HOME".into(), "/root".into())));
        let env = build_env(&[("HOME".into(), "/x".into())], "pod", "/root");
        assert!(env.contains(&("HOME".into(), "/x".into())));
    }

    #[test]
    fn lookup_like_runc() {
        let exists = |p: &Path| p == Path::new("/bin/sh");
        assert_eq!(
            find_executable("sh", "/usr/bin:/bin", exists).expect("found"),
            PathBuf::from("/bin/sh")
        );
        let err = find_executable("foo", "/usr/bin:/bin", exists).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "exec: \"foo\": executable file not found in $PATH"
        );
    }
}
