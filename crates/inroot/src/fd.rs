//! The real side of the walk: [`walk::Ops`](crate::walk::Ops) on `O_PATH` directory fds,
//! and the `openat2` fast path with the errors that send [`crate::open`] to the walk.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{Mode, SFlag};

use crate::walk::{Entry, Ops};
use crate::{ResolveError, Scope};

/// Walk operations on fds: `openat(O_PATH | O_NOFOLLOW)`, `readlinkat`, `mkdirat`,
/// `openat(O_CREAT | O_EXCL | O_NOFOLLOW)`.
pub struct FdOps;

fn path_flags() -> OFlag {
    OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

impl Ops for FdOps {
    type Handle = OwnedFd;

    fn lookup(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<Entry<OwnedFd>> {
        let fd = match nix::fcntl::openat(dir, name, path_flags(), Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => return Ok(Entry::Missing),
            Err(e) => return Err(e.into()),
        };
        let kind = SFlag::from_bits_truncate(nix::sys::stat::fstat(&fd)?.st_mode & libc::S_IFMT);
        Ok(if kind == SFlag::S_IFLNK {
            // An O_PATH fd on a symlink: an empty path reads the link itself.
            Entry::Link(PathBuf::from(nix::fcntl::readlinkat(&fd, "")?))
        } else if kind == SFlag::S_IFDIR {
            Entry::Dir(fd)
        } else {
            Entry::Other(fd)
        })
    }

    fn mkdir(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn mkfile(&self, dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
        match nix::fcntl::openat(
            dir,
            name,
            OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o644),
        ) {
            Ok(_) | Err(Errno::EEXIST) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn dup(&self, handle: &OwnedFd) -> io::Result<OwnedFd> {
        handle.try_clone()
    }
}

/// `openat2(root, path, O_PATH, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` (or
/// `RESOLVE_BENEATH` for [`Scope::Beneath`]).
pub fn openat2(root: BorrowedFd<'_>, path: &Path, scope: Scope) -> Result<OwnedFd, Errno> {
    let confine = match scope {
        Scope::InRoot => ResolveFlag::RESOLVE_IN_ROOT,
        Scope::Beneath => ResolveFlag::RESOLVE_BENEATH,
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(confine | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    // An empty path names the root itself.
    let rel: &Path = if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    };
    nix::fcntl::openat2(root.as_fd(), rel, how)
}

/// What to do after `openat2` failed.
pub enum Fallback {
    /// The kernel cannot answer (no openat2, a filter, a rename race): walk instead.
    Walk,
    /// Something on the way is missing: walk if it may be created.
    Missing,
    /// A real answer (an escape, a loop, a magic link): report it.
    Fail,
}

pub fn fallback(e: Errno) -> Fallback {
    match e {
        Errno::ENOSYS | Errno::EPERM | Errno::EAGAIN | Errno::E2BIG | Errno::EINVAL => {
            Fallback::Walk
        }
        Errno::ENOENT => Fallback::Missing,
        _ => Fallback::Fail,
    }
}

/// The walk's error for what `openat2` refused.
pub fn openat2_error(path: &Path, scope: Scope, e: Errno) -> ResolveError {
    let path = path.to_path_buf();
    match (e, scope) {
        (Errno::EXDEV, Scope::Beneath) => ResolveError::Escapes { path },
        (Errno::ELOOP, _) => ResolveError::Loop { path },
        _ => ResolveError::Io {
            path,
            source: e.into(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{open, Create};
    use std::fs;
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::symlink;

    fn target(fd: &OwnedFd) -> PathBuf {
        fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink")
    }

    fn dir_fd(p: &Path) -> OwnedFd {
        nix::fcntl::open(
            p,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open root")
    }

    /// A root holding the escapes an image can ship, and a host directory beside it that
    /// must stay untouched.
    fn hostile_root() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("rootfs");
        let host = tmp.path().join("host");
        fs::create_dir_all(root.join("etc")).expect("etc");
        fs::create_dir_all(&host).expect("host");
        fs::write(root.join("etc/hosts"), "").expect("hosts");
        symlink(host.join("abs"), root.join("abs")).expect("abs");
        symlink("../../../../host/rel", root.join("rel")).expect("rel");
        symlink("/proc/self/fd/0", root.join("magic")).expect("magic");
        symlink("/.oldroot/x", root.join("oldroot")).expect("oldroot");
        let root = fs::canonicalize(root).expect("canon");
        let host = fs::canonicalize(host).expect("canon");
        (tmp, root, host)
    }

    #[test]
    fn kernel_and_walk_confine_alike() {
        let (_tmp, root, host) = hostile_root();
        let rootfd = dir_fd(&root);
        for (path, inside) in [
            (
                "abs/data",
                root.join(host.strip_prefix("/").expect("abs"))
                    .join("abs/data"),
            ),
            ("rel/data", root.join("host/rel/data")),
            ("oldroot/data", root.join(".oldroot/x/data")),
            ("magic/data", root.join("proc/self/fd/0/data")),
        ] {
            let fd = open(rootfd.as_fd(), Path::new(path), Scope::InRoot, Create::Dir)
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            assert_eq!(target(&fd), inside, "{path}");
            // Once created, the kernel's answer is the same as the walk's.
            let again = openat2(rootfd.as_fd(), Path::new(path), Scope::InRoot).expect("openat2");
            assert_eq!(target(&again), inside, "{path} via openat2");
            let walked = crate::walk::resolve(
                &FdOps,
                &rootfd,
                Path::new(path),
                Scope::InRoot,
                Create::Nothing,
            )
            .expect("walk");
            assert_eq!(target(&walked), inside, "{path} walked");
        }
        assert_eq!(
            fs::read_dir(&host).expect("host").count(),
            0,
            "host untouched"
        );
    }

    #[test]
    fn files_beneath_and_existing() {
        let (_tmp, root, host) = hostile_root();
        let rootfd = dir_fd(&root);
        let f = open(
            rootfd.as_fd(),
            Path::new("/run/secrets/token"),
            Scope::InRoot,
            Create::File,
        )
        .expect("file");
        assert_eq!(target(&f), root.join("run/secrets/token"));
        assert!(root.join("run/secrets/token").is_file());
        let hosts = open(
            rootfd.as_fd(),
            Path::new("/etc/hosts"),
            Scope::InRoot,
            Create::File,
        )
        .expect("hosts");
        assert_eq!(target(&hosts), root.join("etc/hosts"));
        // The kernel answers ENOTDIR, the walk names the file.
        let through_file = open(
            rootfd.as_fd(),
            Path::new("etc/hosts/x"),
            Scope::InRoot,
            Create::Dir,
        )
        .expect_err("through a file");
        assert!(
            matches!(&through_file, ResolveError::NotDir { .. })
                || matches!(&through_file, ResolveError::Io { source, .. } if source.raw_os_error() == Some(libc::ENOTDIR)),
            "{through_file}"
        );
        for bad in ["abs/x", "rel/x", "magic", "../x"] {
            let err =
                open(rootfd.as_fd(), Path::new(bad), Scope::Beneath, Create::Dir).expect_err(bad);
            assert!(matches!(err, ResolveError::Escapes { .. }), "{bad}: {err}");
        }
        assert_eq!(
            fs::read_dir(&host).expect("host").count(),
            0,
            "host untouched"
        );
        let me = open(
            rootfd.as_fd(),
            Path::new(""),
            Scope::Beneath,
            Create::Nothing,
        )
        .expect("root itself");
        assert_eq!(target(&me), root);
    }
}
