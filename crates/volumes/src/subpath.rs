//! kubelet's subPath handling: `subPathExpr` expansion from the container's env, and the
//! safe opening of a subPath inside its volume. A subPath (or a symlink on the way) that
//! resolves outside the volume is refused; a missing subPath is created as a directory; the
//! result is opened below the volume's fd (`openat2(RESOLVE_BENEATH)` or an fd walk), so a
//! symlink swapped in meanwhile cannot redirect the creation or the mount.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use containerspec::{expand, lookup_in};

/// Why a subPath could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subPath {path:?} must be a relative path without '..'")]
    Invalid { path: String },
    #[error("subpath {resolved:?} not within volume path {volume:?}")]
    Outside { resolved: PathBuf, volume: PathBuf },
    #[error("preparing {path}: {source}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: inroot::ResolveError,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// `subPathExpr` with `$(VAR)` expanded from the container's env (kubelet's
/// `expansion.Expand`; unknown references stay as written).
pub fn expand_expr(expr: &str, env: &[(String, String)]) -> String {
    expand(expr, lookup_in(env))
}

/// kubelet rejects absolute subPaths and any `..` element (validation does too, but
/// `subPathExpr` is only known after expansion).
pub fn validate(subpath: &str) -> Result<(), SubPathError> {
    let p = Path::new(subpath);
    if p.is_absolute()
        || p.components()
            .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
    {
        return Err(SubPathError::Invalid {
            path: subpath.to_string(),
        });
    }
    Ok(())
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SubPathError {
    let path = path.to_path_buf();
    move |source| SubPathError::Io { what, path, source }
}

/// Resolves `subpath` in `volume` (creating it as a directory when missing) and opens it
/// as an `O_PATH` fd, refusing anything that lands outside the volume. The walk goes
/// through directory fds only (see [`inroot::open`]), so a symlink another container plants
/// or swaps in the volume meanwhile cannot make us create or open anything outside it.
pub fn open_beneath(volume: &Path, subpath: &str) -> Result<OwnedFd, SubPathError> {
    validate(subpath)?;
    let base = nix::fcntl::open(
        volume,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io_err("opening", volume)(e.into()))?;
    let full = volume.join(subpath);
    inroot::open(
        base.as_fd(),
        Path::new(subpath),
        inroot::Scope::Beneath,
        inroot::Create::Dir,
    )
    .map_err(|e| match e {
        inroot::ResolveError::Escapes { .. } => SubPathError::Outside {
            resolved: full,
            volume: volume.to_path_buf(),
        },
        other => SubPathError::Resolve {
            path: full,
            source: other,
        },
    })
}

/// Where the bind mount of one container's subPath lives (kubelet's
/// `pods/<uid>/volume-subpaths/<volume>/<container>/<index>`).
pub fn bind_target(pod_dir: &Path, volume: &str, container: &str, index: usize) -> PathBuf {
    pod_dir
        .join("volume-subpaths")
        .join(volume)
        .join(container)
        .join(index.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn target_of(fd: &OwnedFd) -> PathBuf {
        use std::os::fd::AsRawFd;
        fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("readlink")
    }

    #[test]
    fn opens_inside_and_refuses_escapes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let vol = tmp.path().join("vol");
        fs::create_dir_all(vol.join("a")).expect("mkdir");
        fs::write(vol.join("a/file"), "x").expect("file");
        symlink("a/file", vol.join("inner")).expect("inner link");
        symlink("/etc", vol.join("outer")).expect("outer link");
        symlink("../..", vol.join("a/up")).expect("up link");
        symlink("/nonexistent/x", vol.join("dangling")).expect("dangling");
        let base = fs::canonicalize(&vol).expect("canon");

        assert_eq!(
            target_of(&open_beneath(&vol, "a").expect("a")),
            base.join("a")
        );
        assert_eq!(
            target_of(&open_beneath(&vol, "inner").expect("inner")),
            base.join("a/file")
        );
        // Missing: created as a directory inside the volume.
        let made = open_beneath(&vol, "new/deeper").expect("create");
        assert_eq!(target_of(&made), base.join("new/deeper"));
        assert!(vol.join("new/deeper").is_dir());
        for bad in ["outer", "outer/passwd", "a/up", "a/up/x", "dangling"] {
            let err = open_beneath(&vol, bad).expect_err(bad);
            assert!(matches!(err, SubPathError::Outside { .. }), "{bad}: {err}");
        }
        assert!(!Path::new("/etc/passwd/x").exists());
        // Nothing was created beside the volume through `a/up`.
        assert!(!tmp.path().join("x").exists());
        for bad in ["/abs", "../x", "a/../../x"] {
            assert!(matches!(
                open_beneath(&vol, bad),
                Err(SubPathError::Invalid { .. })
            ));
        }
    }

    #[test]
    fn expr_expansion() {
        let env = vec![("POD".to_string(), "web-0".to_string())];
        assert_eq!(expand_expr("logs/$(POD)", &env), "logs/web-0");
        assert_eq!(expand_expr("$(NOPE)/x", &env), "$(NOPE)/x");
        assert_eq!(expand_expr("$$(POD)", &env), "$(POD)");
    }
}
