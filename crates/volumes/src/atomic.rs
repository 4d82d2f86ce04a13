//! kubelet's AtomicWriter: API-data volumes (configMap, secret, downwardAPI, projected) are
//! written so that a reader never sees a half-updated set of files. Each version lives in a
//! hidden timestamped directory `..<time>.<n>`; the symlink `..data` points at the current
//! one and is swapped with a rename; every user-visible top-level name is a symlink
//! `name -> ..data/name`. An update writes a new version, swaps `..data`, then removes the
//! names that left the payload and the old version.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The symlink naming the current version.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a volume: its bytes and permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileProjection {
    pub data: Vec<u8>,
    pub mode: u32,
}

/// Relative path (may contain `/`) → file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Why a payload could not be written.
#[derive(Debug, thiserror::Error)]
pub enum AtomicWriteError {
    #[error("invalid path {path:?} in volume payload: {why}")]
    InvalidPath { path: String, why: &'static str },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> AtomicWriteError {
    let path = path.to_path_buf();
    move |source| AtomicWriteError::Io { what, path, source }
}

/// kubelet's `validatePath`: relative, no `..` element, not starting with `..`, not empty.
pub fn validate_path(path: &str) -> Result<(), AtomicWriteError> {
    let bad = |why| {
        Err(AtomicWriteError::InvalidPath {
            path: path.to_string(),
            why,
        })
    };
    if path.is_empty() {
        return bad("must not be empty");
    }
    if path.starts_with('/') {
        return bad("must be relative");
    }
    if path.starts_with("..") {
        return bad("must not start with '..'");
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::ParentDir))
    {
        return bad("must not contain '..'");
    }
    Ok(())
}

fn top_level(path: &str) -> &str {
    path.split('/')
        .find(|c| !c.is_empty() && *c != ".")
        .unwrap_or(path)
}

/// Writes `payload` into `dir` (which exists). Returns `true` when the content changed.
/// Idempotent, and safe to re-run after a crash at any step. `set_perms` runs once a new
/// version is written and before `..data` is swapped to it (kubelet's `setPerms` hook, where
/// fsGroup ownership is applied), so readers never see files they may not read yet; it is
/// not called when nothing changed.
pub fn write_with(
    dir: &Path,
    payload: &Payload,
    set_perms: impl FnOnce() -> io::Result<()>,
) -> Result<bool, AtomicWriteError> {
    for path in payload.keys() {
        validate_path(path)?;
    }
    let data_link = dir.join(DATA_DIR);
    let old_version = fs::read_link(&data_link)
        .ok()
        .filter(|t| t.components().count() == 1)
        .map(|t| dir.join(t));
    let unchanged = old_version
        .as_deref()
        .is_some_and(|v| version_matches(v, payload));
    let current = if unchanged {
        old_version.clone().unwrap_or_default()
    } else {
        let version = new_version_dir(dir)?;
        for (path, file) in payload {
            let target = version.join(path);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
            }
            fs::write(&target, &file.data).map_err(io_err("writing", &target))?;
            fs::set_permissions(&target, fs::Permissions::from_mode(file.mode & 0o7777))
                .map_err(io_err("chmod", &target))?;
        }
        set_perms().map_err(io_err("setting the ownership of", dir))?;
        let tmp = dir.join(DATA_DIR_TMP);
        remove_if_exists(&tmp)?;
        let name = version.file_name().map(PathBuf::from).unwrap_or_default();
        symlink(&name, &tmp).map_err(io_err("linking", &tmp))?;
        fs::rename(&tmp, &data_link).map_err(io_err("swapping", &data_link))?;
        version
    };
    // User-visible names: one symlink per top-level entry of the payload.
    let wanted: BTreeSet<&str> = payload.keys().map(|p| top_level(p)).collect();
    for name in &wanted {
        let link = dir.join(name);
        if fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA_DIR).join(name), &link).map_err(io_err("linking", &link))?;
        }
    }
    // Names gone from the payload, the old version and any leftover of an interrupted write.
    let keep_version = current.file_name().map(|n| n.to_os_string());
    for entry in fs::read_dir(dir).map_err(io_err("listing", dir))?.flatten() {
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let stale = if text.starts_with("..") {
            text != DATA_DIR && Some(&name) != keep_version.as_ref()
        } else {
            !wanted.contains(text.as_ref())
        };
        if stale {
            remove_if_exists(&entry.path())?;
        }
    }
    Ok(!unchanged)
}

/// A fresh hidden version directory, named like kubelet's (`..2006_01_02_15_04_05.<n>`).
fn new_version_dir(dir: &Path) -> Result<PathBuf, AtomicWriteError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let stamp = jiff::Timestamp::now().strftime("%Y_%m_%d_%H_%M_%S");
    loop {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path = dir.join(format!("..{stamp}.{}{n}", std::process::id()));
        match fs::create_dir(&path) {
            Ok(()) => {
                fs::set_permissions(&path, fs::Permissions::from_mode(0o755))
                    .map_err(io_err("chmod", &path))?;
                return Ok(path);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err("creating", &path)(e)),
        }
    }
}

/// Whether the version directory holds exactly the payload (bytes and modes).
fn version_matches(version: &Path, payload: &Payload) -> bool {
    let mut found = Vec::new();
    if collect_files(version, version, &mut found).is_err() {
        return false;
    }
    if found.len() != payload.len() {
        return false;
    }
    payload.iter().all(|(path, file)| {
        let p = version.join(path);
        let Ok(meta) = fs::symlink_metadata(&p) else {
            return false;
        };
        meta.is_file()
            && meta.permissions().mode() & 0o7777 == file.mode & 0o7777
            && fs::read(&p).is_ok_and(|d| d == file.data)
    })
}

fn collect_files(base: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_dir() {
            collect_files(base, &e.path(), out)?;
        } else {
            out.push(
                e.path()
                    .strip_prefix(base)
                    .unwrap_or(&e.path())
                    .to_path_buf(),
            );
        }
    }
    Ok(())
}

fn remove_if_exists(path: &Path) -> Result<(), AtomicWriteError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    };
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("removing", path)(e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, payload: &Payload) -> Result<bool, AtomicWriteError> {
        write_with(dir, payload, || Ok(()))
    }

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .expect("read_dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn writes_swaps_and_prunes() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        p.insert("sub/b".into(), file("2", 0o400));
        assert!(write(dir, &p).expect("write"));
        assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "1");
        assert_eq!(fs::read_to_string(dir.join("sub/b")).expect("b"), "2");
        assert_eq!(
            fs::read_link(dir.join("a")).expect("link"),
            PathBuf::from("..data/a")
        );
        let mode = fs::metadata(dir.join("sub/b"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        let first = fs::read_link(dir.join(DATA_DIR)).expect("..data");

        // Same payload: nothing changes.
        assert!(!write(dir, &p).expect("rewrite"));
        assert_eq!(fs::read_link(dir.join(DATA_DIR)).expect("..data"), first);

        // New content: new version, old one and removed names gone.
        let mut q = Payload::new();
        q.insert("a".into(), file("changed", 0o644));
        q.insert("c".into(), file("3", 0o644));
        assert!(write(dir, &q).expect("update"));
        assert_ne!(fs::read_link(dir.join(DATA_DIR)).expect("..data"), first);
        assert_eq!(fs::read_to_string(dir.join("a")).expect("a"), "changed");
        let listed = names(dir);
        assert_eq!(listed.len(), 4, "{listed:?}");
        assert!(listed.contains(&"c".to_string()) && !listed.contains(&"sub".to_string()));
        assert!(!dir.join(&first).exists());
    }

    #[test]
    fn mode_change_is_an_update_and_leftovers_are_cleaned() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        fs::create_dir(dir.join("..2020_01_01_00_00_00.1")).expect("stale");
        fs::write(dir.join("stray"), "x").expect("stray");
        let mut p = Payload::new();
        p.insert("a".into(), file("1", 0o644));
        write(dir, &p).expect("write");
        assert!(!dir.join("..2020_01_01_00_00_00.1").exists());
        assert!(!dir.join("stray").exists());
        p.insert("a".into(), file("1", 0o600));
        assert!(write(dir, &p).expect("chmod"));
        // Empty payload: only ..data and its version stay.
        assert!(write(dir, &Payload::new()).expect("empty"));
        assert_eq!(names(dir).len(), 2);
    }

    #[test]
    fn rejects_escaping_paths() {
        let tmp = tempfile::tempdir().expect("tempdir");
        for bad in ["", "/etc/x", "../x", "a/../../x", "..data/x"] {
            let mut p = Payload::new();
            p.insert(bad.into(), file("x", 0o644));
            assert!(write(tmp.path(), &p).is_err(), "{bad}");
        }
    }
}
