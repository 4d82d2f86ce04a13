//! `hostUsers: false`: the pod's user namespace, and the idmapped mounts that show host
//! files to it with the right owners.
//!
//! The shim itself stays in the node's user namespace (it writes logs, cgroups and mounts as
//! host root). At start it forks a helper that unshares a user namespace together with the
//! pod's network, IPC and UTS namespaces, so those are owned by the pod's user namespace
//! (its root may configure its own network, as under runc); the shim writes the helper's
//! `uid_map`/`gid_map`, joins the helper's network/IPC/UTS namespaces, keeps a descriptor of
//! the user namespace and lets the helper exit. Containers build their root as host root
//! (image layers idmapped into the namespace under the overlay) and enter the namespace last,
//! so every capability they keep holds only inside it.

use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use cri::IdMapping;
use nix::fcntl::{open, OFlag};
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::{fork, pipe2, ForkResult};

use crate::mountattr::MountAttr;

/// `MOUNT_ATTR_IDMAP` of `linux/mount.h`.
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
/// `OPEN_TREE_CLONE` of `linux/mount.h`.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `MOVE_MOUNT_F_EMPTY_PATH` of `linux/mount.h`.
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// A failure creating the pod's user namespace or an idmapped mount.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("creating the pod's user namespace: {what}: {source}")]
    Create {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("writing {path}: {source}")]
    Map {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("opening {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("idmapped mount of {path} ({step}): {source}; the kernel or file system does not support idmapped mounts for user namespaces")]
    Idmap {
        path: PathBuf,
        step: &'static str,
        #[source]
        source: nix::Error,
    },
}

fn create(what: &'static str) -> impl FnOnce(nix::Error) -> UsernsError {
    move |source| UsernsError::Create { what, source }
}

/// Creates the pod's user namespace with `mapping` for its UIDs and GIDs, moves the calling
/// (single-threaded) process into new network/IPC/UTS namespaces owned by it as `others`
/// asks, and returns a descriptor of the user namespace. The caller stays in its own user
/// namespace.
pub fn create_pod_namespaces(
    mapping: &IdMapping,
    others: CloneFlags,
) -> Result<OwnedFd, UsernsError> {
    let (ready_r, ready_w) = pipe2(OFlag::O_CLOEXEC).map_err(create("pipe"))?;
    let (done_r, done_w) = pipe2(OFlag::O_CLOEXEC).map_err(create("pipe"))?;
    // SAFETY: the shim is single-threaded while it sets its namespaces up; the child only
    // makes syscalls and exits.
    let child = match unsafe { fork() }.map_err(create("fork"))? {
        ForkResult::Child => {
            drop((ready_r, done_w));
            let code = match nix::sched::unshare(CloneFlags::CLONE_NEWUSER | others) {
                Ok(()) => {
                    let _ = nix::unistd::write(&ready_w, b"1");
                    // Wait until the parent has what it needs (EOF when it closes its end).
                    let mut b = [0u8; 1];
                    let _ = nix::unistd::read(&done_r, &mut b);
                    0
                }
                Err(e) => {
                    let _ = nix::unistd::write(&ready_w, &(e as i32).to_le_bytes());
                    1
                }
            };
            // SAFETY: _exit ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => child,
    };
    drop((ready_w, done_r));
    let result = (|| {
        let mut buf = [0u8; 4];
        let n = nix::unistd::read(&ready_r, &mut buf).map_err(create("waiting for the helper"))?;
        match n {
            1 => {}
            4 => {
                return Err(UsernsError::Create {
                    what: "unshare",
                    source: nix::Error::from_raw(i32::from_le_bytes(buf)),
                })
            }
            _ => {
                return Err(UsernsError::Create {
                    what: "waiting for the helper",
                    source: nix::Error::EPIPE,
                })
            }
        }
        let proc_dir = PathBuf::from(format!("/proc/{}", child.as_raw()));
        for file in ["uid_map", "gid_map"] {
            let path = proc_dir.join(file);
            fs::write(&path, mapping.map_line())
                .map_err(|source| UsernsError::Map { path, source })?;
        }
        let ns = |name: &str| {
            let path = proc_dir.join("ns").join(name);
            open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|source| UsernsError::Open { path, source })
        };
        for (name, flag) in [
            ("net", CloneFlags::CLONE_NEWNET),
            ("ipc", CloneFlags::CLONE_NEWIPC),
            ("uts", CloneFlags::CLONE_NEWUTS),
        ] {
            if others.contains(flag) {
                nix::sched::setns(ns(name)?, flag).map_err(create("joining the namespaces"))?;
            }
        }
        ns("user")
    })();
    drop(done_w);
    let _ = waitpid(child, None);
    result
}

/// Mounts a clone of the mount at `source` on `target`, idmapped into the user namespace
/// `userns`: files owned by host ID `n` appear as the namespace's ID `n`, so an image layer
/// unpacked with its own IDs is root's inside. Runs in the container's private mount
/// namespace, so the mount never reaches the host's.
pub fn idmapped_bind(source: &Path, target: &Path, userns: &OwnedFd) -> Result<(), UsernsError> {
    let err = |step| {
        move |e| UsernsError::Idmap {
            path: source.to_path_buf(),
            step,
            source: e,
        }
    };
    let src = path_cstring(source).map_err(err("path"))?;
    // SAFETY: the path outlives the call; open_tree returns a new fd or -1.
    let raw = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            src.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    if raw < 0 {
        return Err(err("open_tree")(nix::Error::last()));
    }
    // SAFETY: `raw` is a fresh fd that nothing else owns.
    let tree: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(raw as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let empty = c"";
    // SAFETY: the empty path and the attr outlive the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(err("mount_setattr")(nix::Error::last()));
    }
    let dst = path_cstring(target).map_err(err("path"))?;
    // SAFETY: both paths outlive the call; the kernel only reads them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            dst.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc != 0 {
        return Err(err("move_mount")(nix::Error::last()));
    }
    Ok(())
}

fn path_cstring(p: &Path) -> Result<std::ffi::CString, nix::Error> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).map_err(|_| nix::Error::EINVAL)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs root and a kernel with user namespaces and idmapped ext4/tmpfs mounts; skipped
    /// (with a note) where the test runs without them.
    #[test]
    fn a_layer_owned_by_root_shows_as_namespace_root_through_the_idmap() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let mapping = IdMapping {
            container_id: 0,
            host_id: 3 << 16,
            length: 1 << 16,
        };
        let userns = create_pod_namespaces(&mapping, CloneFlags::empty()).expect("userns");
        let dir = tempfile::tempdir().expect("tempdir");
        let layer = dir.path().join("layer");
        let target = dir.path().join("target");
        fs::create_dir_all(layer.join("etc")).expect("layer");
        fs::write(layer.join("etc/file"), "x").expect("file");
        std::os::unix::fs::lchown(layer.join("etc/file"), Some(1000), Some(1000)).expect("chown");
        fs::create_dir(&target).expect("target");
        // A private mount namespace of one thread, as the container's setup runs in one; it
        // and its mount go away with the thread.
        let owner = std::thread::scope(|s| {
            s.spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNS).expect("unshare");
                nix::mount::mount(
                    None::<&str>,
                    "/",
                    None::<&str>,
                    nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                    None::<&str>,
                )
                .expect("private");
                idmapped_bind(&layer, &target, &userns).expect("idmapped bind");
                use std::os::unix::fs::MetadataExt;
                let m = fs::metadata(target.join("etc/file")).expect("stat");
                (m.uid(), m.gid())
            })
            .join()
            .expect("thread")
        });
        assert_eq!(owner, ((3 << 16) + 1000, (3 << 16) + 1000));
        assert!(fs::read_dir(&target).expect("target").next().is_none());
    }
}
