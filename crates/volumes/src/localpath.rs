//! The node's directories for local-path volumes: where they live (`<state dir>/local-path`,
//! beside, not inside, the per-pod volume tree, so neither a pod's teardown nor the orphan
//! sweep ever reaches them) and their removal when a volume is reclaimed. Removal trusts
//! nothing from the API: the path must be a direct child of this node's root, named as the
//! provisioner names volumes, a real directory (not a symlink), and is removed without
//! crossing into another filesystem.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Directory name below the state dir that holds local-path volumes.
pub const LOCAL_PATH_DIR: &str = "local-path";

/// Why a volume directory was not removed.
#[derive(Debug, thiserror::Error)]
pub enum LocalPathError {
    #[error("{path} is not a local-path volume directory of this node (root {root})")]
    Outside { path: PathBuf, root: PathBuf },
    #[error("{path} is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("removing {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The local-path root of a node whose state lives in `state_dir`.
pub fn root(state_dir: &Path) -> PathBuf {
    state_dir.join(LOCAL_PATH_DIR)
}

/// Whether `path` names a volume directory directly below `root` (`pvc-…`), with no `..`,
/// `.` or empty steps that could lead elsewhere.
pub fn is_volume_dir(root: &Path, path: &Path) -> bool {
    let plain = path
        .components()
        .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    let named = path
        .file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with("pvc-"));
    plain && named && path.parent() == Some(root)
}

/// Removes a reclaimed volume's directory with everything in it. An already missing
/// directory is success.
pub fn remove_volume_dir(root: &Path, path: &Path) -> Result<(), LocalPathError> {
    if !is_volume_dir(root, path) {
        return Err(LocalPathError::Outside {
            path: path.to_path_buf(),
            root: root.to_path_buf(),
        });
    }
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(LocalPathError::Remove {
                path: path.to_path_buf(),
                source,
            })
        }
        Ok(meta) if !meta.is_dir() => {
            return Err(LocalPathError::NotDirectory {
                path: path.to_path_buf(),
            })
        }
        Ok(_) => {}
    }
    crate::remove_tree_one_fs(path).map_err(|source| LocalPathError::Remove {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_volume_dirs_below_the_root_go() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = root(tmp.path());
        let vol = root.join("pvc-1_ns_data");
        fs::create_dir_all(vol.join("sub")).expect("mkdir");
        fs::write(vol.join("sub/f"), "x").expect("write");
        let outside = tmp.path().join("keep");
        fs::create_dir_all(&outside).expect("mkdir");

        assert!(!is_volume_dir(&root, &root.join("pvc-1/../../keep")));
        assert!(!is_volume_dir(&root, &root.join("x/pvc-2")));
        assert!(!is_volume_dir(&root, &root.join("other")));
        assert!(matches!(
            remove_volume_dir(&root, &outside),
            Err(LocalPathError::Outside { .. })
        ));
        let link = root.join("pvc-link");
        std::os::unix::fs::symlink(&outside, &link).expect("symlink");
        assert!(matches!(
            remove_volume_dir(&root, &link),
            Err(LocalPathError::NotDirectory { .. })
        ));
        assert!(outside.exists());

        remove_volume_dir(&root, &vol).expect("remove");
        assert!(!vol.exists());
        remove_volume_dir(&root, &vol).expect("already gone");
    }
}
