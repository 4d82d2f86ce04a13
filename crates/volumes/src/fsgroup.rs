//! kubelet's `fsGroup` volume ownership (`pkg/volume/volume_linux.go`): a volume's files get
//! the pod's group and the group bits, so any container user of the pod can use them.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

/// kubelet's group masks (`pkg/volume/volume_linux.go`): files of a writable volume get
/// group read/write, those of a read-only one (configMap, secret, downwardAPI, projected)
/// group read only; directories also get group search and the setgid bit.
const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// The mode kubelet gives a regular file of a volume with an `fsGroup`: its own bits plus the
/// group mask, so `defaultMode: 0400` reads back as `0440`, as on Kubernetes.
pub fn fs_group_file_mode(mode: u32, read_only: bool) -> u32 {
    mode | if read_only { RO_MASK } else { RW_MASK }
}

/// kubelet's `SetVolumeOwnership` for `fsGroup`: every entry under `dir` (and `dir` itself)
/// gets group `gid`; files get the group mask of [`fs_group_file_mode`], directories also
/// group search and the setgid bit so new files inherit the group. Symlinks are re-grouped
/// but never followed or chmod'ed (a chmod would reach their target). An entry removed while
/// we walk is skipped.
pub fn set_volume_ownership(dir: &Path, gid: u32, read_only: bool) -> std::io::Result<()> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        match std::os::unix::fs::lchown(&path, None, Some(gid)) {
            Err(e) if gone(&e) => continue,
            other => other?,
        }
        if meta.file_type().is_symlink() {
            continue;
        }
        let mut mode = fs_group_file_mode(meta.mode() & 0o7777, read_only);
        if meta.is_dir() {
            mode |= SETGID | EXEC_MASK;
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
        match std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)) {
            Err(e) if gone(&e) => {}
            other => other?,
        }
    }
    Ok(())
}

/// Gives `dir` and every entry under it owner `uid` and group `gid` (a pod with a user
/// namespace: its root's host IDs). Symlinks are changed themselves, never followed; an
/// entry removed while we walk is skipped.
pub fn set_owner(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        match std::os::unix::fs::lchown(&path, Some(uid), Some(gid)) {
            Err(e) if gone(&e) => continue,
            other => other?,
        }
        let is_dir = match std::fs::symlink_metadata(&path) {
            Ok(m) => m.is_dir(),
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        };
        if is_dir {
            for entry in std::fs::read_dir(&path)? {
                stack.push(entry?.path());
            }
        }
    }
    Ok(())
}

/// kubelet's `requiresPermissionChange`, negated: whether the volume's root already has group
/// `gid`, the group bits and the setgid bit, so an `OnRootMismatch` walk can be skipped.
pub fn volume_ownership_matches(dir: &Path, gid: u32, read_only: bool) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let want = if read_only { RO_MASK } else { RW_MASK } | EXEC_MASK | SETGID;
    meta.is_dir() && meta.gid() == gid && meta.mode() & want == want
}

/// The pod's `fsGroup`, which volumes get as their group.
pub fn fs_group(pod: &Pod) -> Option<u32> {
    pod.spec
        .as_ref()
        .and_then(|s| s.security_context.as_ref())
        .and_then(|sc| sc.fs_group)
        .and_then(|g| u32::try_from(g).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ownership() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sub = tmp.path().join("d");
        std::fs::create_dir(&sub).expect("mkdir");
        std::fs::write(sub.join("f"), "x").expect("write");
        std::fs::set_permissions(sub.join("f"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::os::unix::fs::symlink("d/f", tmp.path().join("link")).expect("symlink");
        assert!(!volume_ownership_matches(tmp.path(), 4242, false));
        set_volume_ownership(tmp.path(), 4242, false).expect("ownership");
        assert!(volume_ownership_matches(tmp.path(), 4242, false));
        let f = std::fs::metadata(sub.join("f")).expect("stat");
        assert_eq!(f.gid(), 4242);
        assert_eq!(f.mode() & 0o7777, 0o660);
        let d = std::fs::metadata(&sub).expect("stat");
        assert_eq!(d.gid(), 4242);
        assert_eq!(d.mode() & 0o2070, 0o2070);
        let link = std::fs::symlink_metadata(tmp.path().join("link")).expect("lstat");
        assert_eq!(link.gid(), 4242);
        assert!(!volume_ownership_matches(tmp.path(), 4243, false));
    }

    #[test]
    fn read_only_volume_ownership_keeps_the_files_mode() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let f = tmp.path().join("key");
        std::fs::write(&f, "x").expect("write");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        set_volume_ownership(tmp.path(), 4242, true).expect("ownership");
        // kubelet: a 0400 secret key with an fsGroup reads back 0440, group fsGroup.
        let meta = std::fs::metadata(&f).expect("stat");
        assert_eq!((meta.gid(), meta.mode() & 0o7777), (4242, 0o440));
        assert_eq!(fs_group_file_mode(0o644, true), 0o644);
        assert_eq!(fs_group_file_mode(0o600, false), 0o660);
        assert!(volume_ownership_matches(tmp.path(), 4242, true));
    }
}
