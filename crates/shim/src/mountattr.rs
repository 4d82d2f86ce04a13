//! `mount_setattr(2)` (Linux 5.12+): the one call that changes the flags of a mount and of
//! every mount below it at once. Read-only volumes with `recursiveReadOnly` (KEP-3857) and
//! nodev volumes use it; whether the kernel has it is what the runtime reports as its
//! handlers' `recursiveReadOnlyMounts`.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `MOUNT_ATTR_RDONLY` of `linux/mount.h`.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
/// `MOUNT_ATTR_NODEV` of `linux/mount.h`.
pub const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` (`linux/mount.h`).
#[repr(C)]
pub(crate) struct MountAttr {
    pub(crate) attr_set: u64,
    pub(crate) attr_clr: u64,
    pub(crate) propagation: u64,
    pub(crate) userns_fd: u64,
}

/// Sets `attrs` (`MOUNT_ATTR_*`) on the mount at `target` and every mount below it, keeping
/// their other flags. `ENOSYS` on kernels before 5.12.
pub fn set_recursive(target: &Path, attrs: u64) -> Result<(), nix::Error> {
    let path = CString::new(target.as_os_str().as_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let attr = MountAttr {
        attr_set: attrs,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path and the attr outlive the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(nix::Error::last())
    }
}

/// Whether this kernel has `mount_setattr`: a call with a zero-sized attr is refused with
/// `EINVAL` before anything is read, or with `ENOSYS` where the call does not exist.
pub fn supported() -> bool {
    // SAFETY: with a size of 0 the kernel rejects the call before reading either pointer.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            std::ptr::null::<libc::c_char>(),
            0,
            std::ptr::null::<MountAttr>(),
            0usize,
        )
    };
    rc == 0 || nix::Error::last() != nix::Error::ENOSYS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kernels this runs on (5.12+) have the call.
    #[test]
    fn this_kernel_has_mount_setattr() {
        let release = nix::sys::utsname::uname().expect("uname");
        let release = release.release().to_string_lossy().into_owned();
        let mut parts = release
            .split(['.', '-'])
            .map(|p| p.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        assert_eq!(supported(), version >= (5, 12), "kernel {release}");
    }
}
