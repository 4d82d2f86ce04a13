//! Pinning a network namespace to a file with a bind mount, as CNI-using runtimes do: the
//! pod's namespace then outlives its infra process, so `DEL` always runs inside it and the
//! plugins can release everything they made (the bridge plugin skips its masquerade rules
//! when the namespace is already gone).

use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Bind-mounts the namespace file `source` (e.g. `/proc/<pid>/ns/net`) onto `target`,
/// creating the file; pinning an already pinned target is a no-op.
pub fn pin(source: &Path, target: &Path) -> io::Result<()> {
    if is_pinned(target) {
        return Ok(());
    }
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(target)?;
    mount(
        Some(source),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
}

/// Whether `target` is a pinned namespace (a mount point of an nsfs file).
pub fn is_pinned(target: &Path) -> bool {
    // A pinned file is on nsfs, whose device differs from the directory's.
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata(target),
        target.parent().map(std::fs::metadata),
    ) {
        (Ok(file), Some(Ok(dir))) => file.dev() != dir.dev(),
        _ => false,
    }
}

/// Unmounts and removes a pin; "not mounted" and "not there" count as done.
pub fn unpin(target: &Path) -> io::Result<()> {
    // Unmount every layer (a pin made twice by racing callers stacks two mounts).
    while is_pinned(target) {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::ENOENT) => break,
            Err(e) => return Err(e.into()),
        }
    }
    match std::fs::remove_file(target) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}
