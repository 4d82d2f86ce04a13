//! Mount flags that keep device nodes harmless: a container's root and volumes are mounted
//! `nodev`, so a node its image ships or its root user makes there opens nothing (only the
//! container's own /dev tmpfs honours nodes, and the device cgroup guards that one). Also
//! the flags a bind remount must repeat so it does not drop `nodev`/`nosuid`/`noexec`.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::statvfs::{statvfs, FsFlags};

use crate::mountattr::{set_recursive, MOUNT_ATTR_NODEV};

/// Makes the mount at `target` and every mount below it `nodev`, keeping their other flags
/// (`mount_setattr`, Linux 5.12+). Older kernels get a remount of `target` alone that repeats
/// its flags.
pub fn set_nodev(target: &Path) -> Result<(), nix::Error> {
    match set_recursive(target, MOUNT_ATTR_NODEV) {
        Err(nix::Error::ENOSYS) => mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | kept_flags(target) | MsFlags::MS_NODEV,
            None::<&str>,
        ),
        other => other,
    }
}

/// The per-mount flags of the mount holding `path` that a `MS_BIND | MS_REMOUNT` would reset
/// unless given again.
pub fn kept_flags(path: &Path) -> MsFlags {
    let Ok(st) = statvfs(path) else {
        return MsFlags::empty();
    };
    let flags = st.flags();
    [
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ]
    .into_iter()
    .filter(|(st, _)| flags.contains(*st))
    .fold(MsFlags::empty(), |acc, (_, ms)| acc | ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In a private mount namespace (a child process, so the test's own namespace is
    /// untouched): a tmpfs with a bind below it becomes nodev throughout, a /dev/null node
    /// made on it stops opening, and a read-only remount repeating the kept flags keeps nodev.
    #[test]
    fn nodev_reaches_submounts_and_survives_remount() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let tmp = tempfile::tempdir().expect("tempdir");
        let base = tmp.path().to_path_buf();
        // SAFETY: the test binary may be multi-threaded; the child only runs the closure's
        // syscalls and exits with a code, never returning into the test harness.
        let pid = match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = match in_child(&base) {
                    Ok(()) => 0,
                    Err(step) => step,
                };
                // SAFETY: _exit ends the forked child without running the parent's atexit
                // handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => child,
        };
        let status = nix::sys::wait::waitpid(pid, None).expect("waitpid");
        assert_eq!(
            status,
            nix::sys::wait::WaitStatus::Exited(pid, 0),
            "failing step"
        );
    }

    /// Each failed step exits with its own number.
    fn in_child(base: &Path) -> Result<(), i32> {
        use std::os::unix::fs::OpenOptionsExt;
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(|_| 10)?;
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(|_| 11)?;
        mount(
            Some("tmpfs"),
            base,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|_| 12)?;
        let sub = base.join("sub");
        std::fs::create_dir(&sub).map_err(|_| 13)?;
        mount(
            Some("tmpfs"),
            &sub,
            Some("tmpfs"),
            MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|_| 14)?;
        let node = sub.join("null");
        nix::sys::stat::mknod(
            &node,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o666),
            nix::sys::stat::makedev(1, 3),
        )
        .map_err(|_| 15)?;
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NONBLOCK)
                .open(p)
        };
        // Control: before nodev the node opens.
        open(&node).map_err(|_| 16)?;
        set_nodev(base).map_err(|_| 17)?;
        if open(&node).is_ok() {
            return Err(18);
        }
        if !kept_flags(&sub).contains(MsFlags::MS_NODEV) {
            return Err(19);
        }
        mount(
            None::<&str>,
            &sub,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept_flags(&sub),
            None::<&str>,
        )
        .map_err(|_| 20)?;
        if !kept_flags(&sub).contains(MsFlags::MS_NODEV | MsFlags::MS_RDONLY) {
            return Err(21);
        }
        Ok(())
    }
}
