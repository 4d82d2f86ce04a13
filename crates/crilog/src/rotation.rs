//! Container log rotation, as the kubelet's container log manager does it
//! (`containerLogMaxSize`, `containerLogMaxFiles`): once the current file would pass the size,
//! it is renamed to `<file>.<YYYYMMDD-hhmmss>` and a new one is started; only the newest
//! `max_files` files (the current one included) are kept. The writer rotates as it writes, so
//! no file grows past the size by more than one write, and a reader following the file sees
//! the rename and goes on in the new file. Rotated files stay uncompressed.

use std::path::{Path, PathBuf};

/// The kubelet's defaults: 10 MiB, 5 files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rotation {
    pub max_size: u64,
    pub max_files: u32,
}

impl Default for Rotation {
    fn default() -> Self {
        Rotation {
            max_size: 10 << 20,
            max_files: 5,
        }
    }
}

/// The name a rotated file gets at `time`, or `None` when one of that second exists already
/// (the current file then grows until the next second).
pub fn rotated_path(path: &Path, time: jiff::Timestamp) -> Option<PathBuf> {
    let mut name = path.file_name()?.to_os_string();
    name.push(format!(".{}", time.strftime("%Y%m%d-%H%M%S")));
    let rotated = path.with_file_name(name);
    (!rotated.exists()).then_some(rotated)
}

/// The rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name().and_then(|n| n.to_str())) else {
        return Vec::new();
    };
    let prefix = format!("{name}.");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name().to_str().is_some_and(|n| {
                n.strip_prefix(&prefix).is_some_and(|stamp| {
                    stamp.len() == 15
                        && stamp.bytes().enumerate().all(|(i, b)| {
                            if i == 8 {
                                b == b'-'
                            } else {
                                b.is_ascii_digit()
                            }
                        })
                })
            })
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Removes the oldest rotated files so that, with the current one, `max_files` remain.
pub fn prune(path: &Path, max_files: u32) -> std::io::Result<()> {
    let rotated = rotated_files(path);
    let keep = max_files.saturating_sub(1) as usize;
    for old in rotated.iter().take(rotated.len().saturating_sub(keep)) {
        match std::fs::remove_file(old) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_pruning() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let t: jiff::Timestamp = "2026-03-04T05:06:07Z".parse().expect("time");
        let r = rotated_path(&path, t).expect("free name");
        assert_eq!(r, dir.path().join("0.log.20260304-050607"));
        std::fs::write(&r, b"x").expect("write");
        assert_eq!(rotated_path(&path, t), None);
        for stamp in ["20260101-000000", "20260102-000000", "20250101-000000"] {
            std::fs::write(dir.path().join(format!("0.log.{stamp}")), b"x").expect("write");
        }
        // Not rotations of 0.log.
        for other in ["1.log.20260101-000000", "0.log.tmp", "0.log"] {
            std::fs::write(dir.path().join(other), b"x").expect("write");
        }
        assert_eq!(rotated_files(&path).len(), 4);
        prune(&path, 3).expect("prune");
        let left: Vec<String> = rotated_files(&path)
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect();
        assert_eq!(left, ["0.log.20260102-000000", "0.log.20260304-050607"]);
        assert!(dir.path().join("1.log.20260101-000000").exists());
    }
}
