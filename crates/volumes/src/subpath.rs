//! kubelet's subPath handling: `subPathExpr` expansion from the container's env, and the
//! safe opening of a subPath inside its volume. A subPath (or a symlink on the way) that
//! resolves outside the volume is refused; a missing subPath is created as a directory; the
//! result is opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` below the volume,
//! so a symlink swapped in after the check cannot redirect the mount.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use containerspec::{expand, lookup_in};

/// Why a subPath could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum SubPathError {
    #[error("subPath {path:?} must be a relative path without '..'")]
    Invalid { path: String },
    #[error("subpath {resolved:?} not within volume path {volume:?}")]
    Outside { resolved: PathBuf, volume: PathBuf },
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
/// as an `O_PATH` fd, refusing anything that lands outside the volume.
pub fn open_beneath(volume: &Path, subpath: &str) -> Result<OwnedFd, SubPathError> {
    validate(subpath)?;
    let base = fs::canonicalize(volume).map_err(io_err("resolving", volume))?;
    let full = base.join(subpath);
    // The longest part of the path that exists (without following a last symlink).
    let mut existing = full.clone();
    while fs::symlink_metadata(&existing).is_err() {
        if !existing.pop() {
            break;
        }
    }
    let resolved = fs::canonicalize(&existing).map_err(|_| SubPathError::Outside {
        // A dangling symlink: where it points is not inside anything we can check.
        resolved: existing.clone(),
        volume: base.clone(),
    })?;
    if !resolved.starts_with(&base) {
        return Err(SubPathError::Outside {
            resolved,
            volume: base,
        });
    }
    let rest = full.strip_prefix(&existing).unwrap_or(Path::new(""));
    let target = resolved.join(rest);
    if !rest.as_os_str().is_empty() {
        // kubelet's SafeMakeDir: missing elements become directories.
        fs::create_dir_all(&target).map_err(io_err("creating", &target))?;
    }
    let rel = target.strip_prefix(&base).unwrap_or(Path::new(""));
    let dir = nix::fcntl::open(
        &base,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| io_err("opening", &base)(e.into()))?;
    if rel.as_os_str().is_empty() {
        return Ok(dir);
    }
    openat2_beneath(&dir, rel).map_err(|e| match e.raw_os_error() {
        Some(libc::EXDEV | libc::ELOOP) => SubPathError::Outside {
            resolved: target.clone(),
            volume: base.clone(),
        },
        _ => io_err("opening", &target)(e),
    })
}

/// `openat2(dir, rel, O_PATH, RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`.
fn openat2_beneath(dir: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    let c = CString::new(rel.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: open_how is a plain C struct; all-zero is its documented "no options" value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the path is a valid NUL-terminated string, `how` lives across the call and its
    // size is passed; the kernel only reads both.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(fd).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
