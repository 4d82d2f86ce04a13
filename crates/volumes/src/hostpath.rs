//! kubelet's hostPath `type` checks: what must exist at the path before the pod may start,
//! and the `...OrCreate` types that create it (directory 0755, empty file 0644).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// A failed hostPath check, worded as kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum HostPathError {
    #[error("hostPath type check failed: {path} is not a directory")]
    NotDirectory { path: PathBuf },
    #[error("hostPath type check failed: {path} is not a file")]
    NotFile { path: PathBuf },
    #[error("hostPath type check failed: {path} is not a socket file")]
    NotSocket { path: PathBuf },
    #[error("hostPath type check failed: {path} is not a character device")]
    NotCharDevice { path: PathBuf },
    #[error("hostPath type check failed: {path} is not a block device")]
    NotBlockDevice { path: PathBuf },
    #[error("{kind} is an invalid volume type")]
    InvalidType { kind: String },
    #[error("creating {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks (and for the `OrCreate` types, creates) what `type` demands at `path`. Symlinks
/// are followed, as kubelet's `stat` does.
pub fn check_type(path: &Path, kind: &str) -> Result<(), HostPathError> {
    let meta = fs::metadata(path).ok();
    let p = || path.to_path_buf();
    let ft = meta.as_ref().map(fs::Metadata::file_type);
    match kind {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_none() => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(|source| HostPathError::Create { path: p(), source }),
        "DirectoryOrCreate" | "Directory" => match ft {
            Some(t) if t.is_dir() => Ok(()),
            _ => Err(HostPathError::NotDirectory { path: p() }),
        },
        "FileOrCreate" if meta.is_none() => fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(path)
            .map(drop)
            .map_err(|source| HostPathError::Create { path: p(), source }),
        "FileOrCreate" | "File" => match ft {
            Some(t) if !t.is_dir() => Ok(()),
            _ => Err(HostPathError::NotFile { path: p() }),
        },
        "Socket" => match ft {
            Some(t) if t.is_socket() => Ok(()),
            _ => Err(HostPathError::NotSocket { path: p() }),
        },
        "CharDevice" => match ft {
            Some(t) if t.is_char_device() => Ok(()),
            _ => Err(HostPathError::NotCharDevice { path: p() }),
        },
        "BlockDevice" => match ft {
            Some(t) if t.is_block_device() => Ok(()),
            _ => Err(HostPathError::NotBlockDevice { path: p() }),
        },
        other => Err(HostPathError::InvalidType {
            kind: other.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path();
        let file = dir.join("f");
        fs::write(&file, "x").expect("file");
        assert!(check_type(dir, "Directory").is_ok());
        assert!(check_type(&file, "File").is_ok());
        assert!(check_type(&file, "").is_ok());
        assert_eq!(
            check_type(&file, "Directory")
                .expect_err("file")
                .to_string(),
            format!(
                "hostPath type check failed: {} is not a directory",
                file.display()
            )
        );
        assert!(check_type(&dir.join("missing"), "Directory").is_err());
        assert!(check_type(&dir.join("missing"), "File").is_err());
        assert!(check_type(dir, "File").is_err());
        assert!(check_type(&file, "Socket").is_err());
        assert!(check_type(Path::new("/dev/null"), "CharDevice").is_ok());
        assert!(check_type(Path::new("/dev/null"), "BlockDevice").is_err());
        assert!(check_type(&file, "Bogus").is_err());

        let made = dir.join("a/b");
        check_type(&made, "DirectoryOrCreate").expect("mkdir");
        assert!(made.is_dir());
        let new_file = dir.join("new");
        check_type(&new_file, "FileOrCreate").expect("touch");
        assert!(new_file.is_file());
        check_type(&new_file, "FileOrCreate").expect("exists");
        assert!(check_type(&made, "FileOrCreate").is_err());
    }
}
