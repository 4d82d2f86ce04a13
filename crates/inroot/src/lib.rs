//! Opening a path inside a directory as if that directory were `/`, so that nothing an
//! untrusted tree holds (a container image, a volume another container writes) can send a
//! runtime that creates or mounts things there out onto the host. This is what runc's
//! securejoin and the kernel's `openat2(RESOLVE_IN_ROOT)` do: `..` stops at the top, absolute
//! symlinks start again from the top, and "magic" links such as `/proc/self/fd/N` are never
//! followed into the host.
//!
//! [`open`] asks the kernel first (`openat2`); where that is missing (kernels before 5.6, a
//! seccomp filter) or where missing directories must be created, it walks one component at
//! a time through directory fds ([`walk`]), which is race-free for the same reason: every
//! step opens one name relative to an fd it already holds, without following a last
//! symlink.

pub mod fd;
pub mod walk;

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

pub use fd::FdOps;

/// How a path may relate to the directory it is resolved in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The directory is the root: `..` at the top stays there and absolute symlinks are
    /// relative to it (`RESOLVE_IN_ROOT`). For paths inside a container's root filesystem.
    InRoot,
    /// Anything that would leave the directory is an error (`RESOLVE_BENEATH`). For a
    /// `subPath` inside its volume, which the kubelet refuses when it leads outside.
    Beneath,
}

/// What a missing path becomes. Missing directories on the way are always created as
/// directories unless `Nothing` is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// A missing path is an error.
    Nothing,
    /// A missing last component becomes a directory (mode 0755 before the umask).
    Dir,
    /// A missing last component becomes an empty regular file (mode 0644 before the umask).
    File,
}

/// Why a path could not be opened inside its directory.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("{path:?} resolves outside the directory it must stay in")]
    Escapes { path: PathBuf },
    #[error("too many levels of symbolic links resolving {path:?}")]
    Loop { path: PathBuf },
    #[error("resolving {path:?}: {name:?} is not a directory")]
    NotDir { path: PathBuf, name: String },
    #[error("resolving {path:?}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Opens `path` inside the directory `root` as an `O_PATH` fd, confined as `scope` says,
/// creating what is missing as `create` says.
pub fn open(
    root: BorrowedFd<'_>,
    path: &Path,
    scope: Scope,
    create: Create,
) -> Result<OwnedFd, ResolveError> {
    match fd::openat2(root, path, scope) {
        Ok(fd) => return Ok(fd),
        Err(e) => match fd::fallback(e) {
            fd::Fallback::Walk => {}
            fd::Fallback::Missing if create != Create::Nothing => {}
            fd::Fallback::Missing | fd::Fallback::Fail => {
                return Err(fd::openat2_error(path, scope, e));
            }
        },
    }
    let ops = FdOps;
    let start = ops_root(root, path)?;
    walk::resolve(&ops, &start, path, scope, create)
}

fn ops_root(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, ResolveError> {
    root.try_clone_to_owned()
        .map_err(|source| ResolveError::Io {
            path: path.to_path_buf(),
            source,
        })
}
