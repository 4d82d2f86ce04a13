//! kubelet's subPath handling: `subPathExpr` expansion from the container's env, and the
//! safe opening of a subPath inside its volume. A subPath (or a symlink on the way) that
//! resolves outside the volume is refused; a missing subPath is created as a directory; the
//! result is opened below the volume's fd (`openat2(RESOLVE_BENEATH)` or an fd walk), so a
//! symlink swapped in meanwhile cannot redirect the creation or the mount.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use containerspec::{expand, lookup_in};

/// Why a subPath could not be prepared. The first three are shown to the user as they are
/// (kubelet's `makeMounts` words); the others only in the node's log, behind
/// [`crate::VolumeError::SubPath`]'s plain message, as kubelet hides them.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    /// `subPathExpr` named variables the container does not have, or that are empty.
    #[error("missing value for {}", names.join(", "))]
    MissingValue { names: Vec<String> },
    #[error("error SubPath `{path}` must not be an absolute path")]
    Absolute { path: String },
    #[error("unable to provision SubPath `{path}`: must not contain '..'")]
    Backsteps { path: String },
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

/// `subPathExpr` with `$(VAR)` expanded from the container's env; kubelet's
/// `ExpandContainerVolumeMounts` refuses it when a referenced variable is missing or empty,
/// naming them sorted.
pub fn expand_expr(expr: &str, env: &[(String, String)]) -> Result<String, SubPathError> {
    let missing = std::cell::RefCell::new(std::collections::BTreeSet::new());
    let lookup = lookup_in(env);
    let expanded = expand(expr, |name| {
        let value = lookup(name);
        if value.as_deref().is_none_or(str::is_empty) {
            missing.borrow_mut().insert(name.to_string());
        }
        value
    });
    let names: Vec<String> = missing.into_inner().into_iter().collect();
    if names.is_empty() {
        Ok(expanded)
    } else {
        Err(SubPathError::MissingValue { names })
    }
}

/// kubelet rejects absolute subPaths, then any `..` element (validation does too, but
/// `subPathExpr` is only known after expansion).
pub fn validate(subpath: &str) -> Result<(), SubPathError> {
    let p = Path::new(subpath);
    if p.is_absolute() {
        return Err(SubPathError::Absolute {
            path: subpath.to_string(),
        });
    }
    if p.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(SubPathError::Backsteps {
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
        let message = |bad: &str| open_beneath(&vol, bad).expect_err(bad).to_string();
        assert_eq!(
            message("/abs"),
            "error SubPath `/abs` must not be an absolute path"
        );
        for bad in ["..", "../x", "a/../../x"] {
            assert_eq!(
                message(bad),
                format!("unable to provision SubPath `{bad}`: must not contain '..'")
            );
        }
    }

    #[test]
    fn expr_expansion() {
        let env = vec![
            ("POD".to_string(), "web-0".to_string()),
            ("EMPTY".to_string(), String::new()),
        ];
        let expand = |expr: &str| expand_expr(expr, &env).map_err(|e| e.to_string());
        assert_eq!(expand("logs/$(POD)").as_deref(), Ok("logs/web-0"));
        assert_eq!(expand("$$(POD)").as_deref(), Ok("$(POD)"));
        // kubelet names every missing or empty variable, sorted.
        assert_eq!(
            expand("$(NOPE)/$(EMPTY)/$(POD)/$(NOPE)"),
            Err("missing value for EMPTY, NOPE".to_string())
        );
    }
}
