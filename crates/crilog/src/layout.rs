//! kubelet's on-disk layout of container logs: one directory per pod,
//! `<root>/<namespace>_<name>_<uid>`, one per container below it, and one `<attempt>.log`
//! per container instance. The runtime writes there and the node API reads back from there.

use std::path::{Path, PathBuf};

/// Kubelet's pod log directory, `<log_root>/<namespace>_<name>_<uid>`.
pub fn pod_log_dir(log_root: &Path, namespace: &str, name: &str, uid: &str) -> PathBuf {
    log_root.join(format!("{namespace}_{name}_{uid}"))
}

/// The attempts (`<n>.log`) in a container's log directory, ascending.
pub fn log_attempts(dir: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".log"))
                .and_then(|n| n.parse().ok())
        })
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_sorted() {
        let dir = tempfile::tempdir().expect("tempdir");
        for n in ["10.log", "2.log", "0.log", "junk.txt"] {
            std::fs::write(dir.path().join(n), b"").expect("write");
        }
        assert_eq!(log_attempts(dir.path()), vec![0, 2, 10]);
        assert!(log_attempts(&dir.path().join("missing")).is_empty());
    }

    #[test]
    fn pod_dir_is_namespace_name_uid() {
        assert_eq!(
            pod_log_dir(Path::new("/l"), "ns", "web", "u1"),
            PathBuf::from("/l/ns_web_u1")
        );
    }
}
