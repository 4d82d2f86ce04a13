//! The one seam through which the volume manager touches the host's mount table: tmpfs
//! mounts for memory-backed volumes, bind mounts for subPaths, unmounts at teardown, and the
//! list of what is mounted below a directory (read from `/proc/self/mountinfo`).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Mount operations the volume manager needs (one real implementation; tests may fake it).
pub trait Mounter: Send + Sync + 'static {
    /// Mounts a fresh tmpfs on `target` with `options` (e.g. `size=1048576`).
    fn mount_tmpfs(&self, target: &Path, options: &str) -> io::Result<()>;
    /// Bind-mounts the object `source` (an open `O_PATH` fd) on `target`, which exists.
    fn bind_fd(&self, source: BorrowedFd<'_>, target: &Path) -> io::Result<()>;
    /// Unmounts `target`; a path that is not (or no longer) a mount point is success.
    fn unmount(&self, target: &Path) -> io::Result<()>;
    /// Mount points at or below `root`, deepest first (the order to unmount them in).
    fn mounts_under(&self, root: &Path) -> io::Result<Vec<PathBuf>>;
    /// Whether `dir` is itself a mount point (a missing `dir` is not).
    fn is_mount_point(&self, dir: &Path) -> io::Result<bool> {
        Ok(self.mounts_under(dir)?.iter().any(|m| m == dir))
    }
}

/// `Mounter` over the host's mount syscalls.
#[derive(Debug, Default, Clone, Copy)]
pub struct HostMounter;

impl Mounter for HostMounter {
    fn mount_tmpfs(&self, target: &Path, options: &str) -> io::Result<()> {
        mount(
            Some("tmpfs"),
            target,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(options),
        )
        .map_err(io::Error::from)
    }

    fn bind_fd(&self, source: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
        // /proc/self/fd/N of an O_PATH fd names exactly the object that was opened, so no
        // path is resolved again between the safety checks and the mount.
        let src = PathBuf::from(format!("/proc/self/fd/{}", source.as_raw_fd()));
        mount(
            Some(&src),
            target,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(io::Error::from)
    }

    fn unmount(&self, target: &Path) -> io::Result<()> {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => Ok(()),
            Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
            // Still in use by a process that has not exited yet: detach it, the kernel frees
            // it when the last user goes.
            Err(nix::Error::EBUSY) => match umount2(target, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::Error::EINVAL | nix::Error::ENOENT) => Ok(()),
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e.into()),
        }
    }

    fn mounts_under(&self, root: &Path) -> io::Result<Vec<PathBuf>> {
        let text = std::fs::read_to_string("/proc/self/mountinfo")?;
        Ok(mount_points_under(&text, root))
    }

    /// One statx (its mount-root attribute, Linux 5.8+; else the device differing from the
    /// parent's) instead of the mount table, which grows with every pod and is read on
    /// every volume refresh.
    fn is_mount_point(&self, dir: &Path) -> io::Result<bool> {
        match mount_root_attribute(dir) {
            Ok(Some(root)) => Ok(root),
            Ok(None) => {
                use std::os::unix::fs::MetadataExt;
                let me = std::fs::symlink_metadata(dir)?;
                let Some(parent) = dir.parent() else {
                    return Ok(true);
                };
                let up = std::fs::symlink_metadata(parent)?;
                Ok(me.dev() != up.dev() || me.ino() == up.ino())
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// statx's `STATX_ATTR_MOUNT_ROOT` of `path` (not following a last symlink); `None` when the
/// kernel does not report it.
fn mount_root_attribute(path: &Path) -> io::Result<Option<bool>> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: a NUL-terminated path and a buffer of the size statx writes.
    let rc = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
            0,
            stx.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statx succeeded, so it filled the buffer (zeroed before).
    let stx = unsafe { stx.assume_init() };
    let bit = libc::STATX_ATTR_MOUNT_ROOT as u64;
    Ok((stx.stx_attributes_mask & bit != 0).then_some(stx.stx_attributes & bit != 0))
}

/// Mount points below (or at) `root` in a mountinfo text, deepest first, each once.
pub fn mount_points_under(mountinfo: &str, root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(root))
        .collect();
    out.sort_by(|a, b| {
        b.components()
            .count()
            .cmp(&a.components().count())
            .then_with(|| b.cmp(a))
    });
    out.dedup();
    out
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo` octal.
fn unescape_mountinfo(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let oct = &bytes[i + 1..i + 4];
            if oct.iter().all(|b| (b'0'..=b'7').contains(b)) {
                let v = oct
                    .iter()
                    .fold(0u32, |acc, b| acc * 8 + u32::from(b - b'0'));
                if let Ok(v) = u8::try_from(v) {
                    out.push(v);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_orders_mount_points() {
        let info = "\
22 1 0:21 / / rw - ext4 /dev/root rw
40 22 0:50 / /var/lib/p/volumes/u1/kubernetes.io~secret/s rw - tmpfs tmpfs rw
41 22 0:51 / /var/lib/p/volumes/u1/volume-subpaths/v/c/0 rw - tmpfs tmpfs rw
42 22 0:52 / /var/lib/p/volumes/u1/kubernetes.io~empty-dir/with\\040space rw - tmpfs tmpfs rw
43 22 0:53 / /var/lib/p/volumes/u10/x rw - tmpfs tmpfs rw
";
        let got = mount_points_under(info, Path::new("/var/lib/p/volumes/u1"));
        assert_eq!(
            got,
            vec![
                PathBuf::from("/var/lib/p/volumes/u1/volume-subpaths/v/c/0"),
                PathBuf::from("/var/lib/p/volumes/u1/kubernetes.io~secret/s"),
                PathBuf::from("/var/lib/p/volumes/u1/kubernetes.io~empty-dir/with space"),
            ]
        );
    }

    #[test]
    fn unescape_keeps_plain_backslashes() {
        assert_eq!(unescape_mountinfo("a\\040b"), "a b");
        assert_eq!(unescape_mountinfo("a\\x"), "a\\x");
        assert_eq!(unescape_mountinfo("end\\"), "end\\");
    }

    #[test]
    fn a_tmpfs_is_a_mount_point_and_its_parent_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let target = dir.path().join("t");
        std::fs::create_dir(&target).expect("mkdir");
        let m = HostMounter;
        assert!(!m.is_mount_point(&target).expect("stat"));
        assert!(!m.is_mount_point(&dir.path().join("missing")).expect("stat"));
        m.mount_tmpfs(&target, "size=65536").expect("tmpfs");
        let mounted = m.is_mount_point(&target);
        let parent = m.is_mount_point(dir.path());
        m.unmount(&target).expect("unmount");
        assert!(mounted.expect("stat"));
        assert!(!parent.expect("stat"));
        assert!(!m.is_mount_point(&target).expect("stat"));
        // This kernel reports the attribute (the device comparison is only a fallback).
        assert_eq!(mount_root_attribute(&target).expect("statx"), Some(false));
    }
}
