//! Unpacks one layer tarball into a directory that overlayfs can use as a lower layer.
//!
//! Layers come from registries and tarballs we do not trust, so every entry is created relative
//! to directory file descriptors opened with `O_NOFOLLOW` from the layer root: a path whose `..`
//! would climb above the root, a path through a symlink (even one the layer itself created), or
//! a hard link to something outside the layer is rejected with an error naming the entry, and
//! nothing is ever written outside the destination. OCI whiteouts become what overlayfs
//! expects: `.wh.<name>` a 0:0 character device, `.wh..wh..opq` the `trusted.overlay.opaque`
//! xattr on its directory.
//!
//! Character and block device nodes in a layer are not created: a node an image ships for
//! the host's disk or memory must not exist in the container at all (containerd creates them
//! and relies on the device cgroup; we do not trust one line of defence). The entry becomes
//! a whiteout instead, so the path is absent in the container whatever lower layers hold
//! there. The container's /dev is its own tmpfs anyway; FIFOs are created as usual.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;

/// Errors unpacking a layer. `entry` is the path as written in the tarball.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("opening layer destination {path}")]
    OpenDest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading layer tarball")]
    Read(#[source] io::Error),
    #[error("layer is compressed with {format}, which is not supported")]
    UnsupportedCompression { format: &'static str },
    #[error("layer entry {entry:?} escapes the layer directory")]
    Escapes { entry: String },
    #[error("layer entry {entry:?} goes through symlink {component:?}")]
    ThroughSymlink { entry: String, component: String },
    #[error("layer entry {entry:?}: {component:?} is not a directory")]
    NotADirectory { entry: String, component: String },
    #[error("hard link {entry:?} points to {target:?}, outside the layer")]
    LinkEscapes { entry: String, target: String },
    #[error("layer entry {entry:?} has an invalid {what}")]
    InvalidEntry { entry: String, what: &'static str },
    #[error("layer entry {entry:?} has unsupported type {kind}")]
    UnsupportedType { entry: String, kind: String },
    #[error("layer unpacks to more than {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("layer has more than {limit} entries")]
    TooManyEntries { limit: u64 },
    #[error("unpacking the layer would leave {free} bytes free on the image filesystem (keeping {reserve})")]
    DiskFull { free: u64, reserve: u64 },
    #[error("creating layer entry {entry:?} ({op})")]
    Create {
        entry: String,
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Which privileged operations to perform; unprivileged unpacking skips ownership changes (as
/// containerd does for rootless), but still needs whiteouts, the only device nodes made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Privileges {
    pub chown: bool,
    pub mknod: bool,
}

impl Privileges {
    /// What the current process may do: everything when euid is 0.
    pub fn current() -> Self {
        let root = rustix::process::geteuid().is_root();
        Self {
            chown: root,
            mknod: root,
        }
    }
}

/// How much one layer may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of file content.
    pub max_bytes: u64,
    /// Tar entries (files, directories, links, whiteouts).
    pub max_entries: u64,
    /// Free bytes the destination filesystem must keep; checked before the layer and after
    /// every [`SPACE_CHECK_INTERVAL`] bytes written.
    pub min_free_bytes: u64,
}

impl Default for UnpackLimits {
    /// 32 GiB and a million entries per layer (far above real images: the largest public
    /// layers hold a few GiB and ~100k files), and 512 MiB kept free for the node.
    fn default() -> Self {
        Self {
            max_bytes: 32 << 30,
            max_entries: 1 << 20,
            min_free_bytes: 512 << 20,
        }
    }
}

/// How often (in bytes written) the free space is checked again.
pub const SPACE_CHECK_INTERVAL: u64 = 64 << 20;

/// The running totals of one unpack against its limits.
struct Budget<'a> {
    limits: &'a UnpackLimits,
    root: &'a OwnedFd,
    bytes: u64,
    entries: u64,
    next_space_check: u64,
}

impl Budget<'_> {
    /// Accounts for one entry of `size` content bytes, before it is written.
    fn take(&mut self, size: u64) -> Result<(), UnpackError> {
        self.entries += 1;
        if self.entries > self.limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        self.bytes = self.bytes.saturating_add(size);
        if self.bytes > self.limits.max_bytes {
            return Err(UnpackError::TooLarge {
                limit: self.limits.max_bytes,
            });
        }
        if self.bytes >= self.next_space_check {
            self.next_space_check = self.bytes.saturating_add(SPACE_CHECK_INTERVAL);
            self.check_space(size)?;
        }
        Ok(())
    }

    /// Whether `coming` more bytes still leave the reserve free.
    fn check_space(&self, coming: u64) -> Result<(), UnpackError> {
        let Ok(st) = rustix::fs::fstatvfs(self.root) else {
            return Ok(());
        };
        let free = st.f_bavail.saturating_mul(st.f_frsize);
        let reserve = self.limits.min_free_bytes;
        if free < reserve.saturating_add(coming) {
            return Err(UnpackError::DiskFull { free, reserve });
        }
        Ok(())
    }
}

/// Wraps a layer blob in the right decompressor, recognised by its magic bytes (media types
/// lie often enough, e.g. docker-archive layers said to be gzip but stored plain).
pub fn decompressed(file: File) -> Result<Box<dyn Read>, UnpackError> {
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = reader.fill_buf().map_err(UnpackError::Read)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(UnpackError::UnsupportedCompression { format: "zstd" })
    } else if head.starts_with(b"BZh") {
        Err(UnpackError::UnsupportedCompression { format: "bzip2" })
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(UnpackError::UnsupportedCompression { format: "xz" })
    } else {
        Ok(Box::new(reader))
    }
}

/// Normalises an entry path lexically to components below the root. Leading `/` and `.` are
/// dropped; `..` pops a component and is an error when there is nothing left to pop.
pub fn normalize_entry_path(raw: &[u8]) -> Option<Vec<OsString>> {
    if raw.contains(&0) {
        return None;
    }
    let mut out: Vec<OsString> = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                out.pop()?;
            }
            c => out.push(OsString::from_vec(c.to_vec())),
        }
    }
    Some(out)
}

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_WHITEOUT: &[u8] = b".wh..wh..opq";
const META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// Metadata applied to directories after all entries, deepest first: writing children would
/// otherwise change the mtime, and a read-only mode could block the children.
struct DirMeta {
    mode: u32,
    mtime: u64,
}

/// Unpacks the tar stream `reader` into `dest`, an existing, empty directory, within `limits`.
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    privs: Privileges,
    limits: &UnpackLimits,
) -> Result<(), UnpackError> {
    let root: OwnedFd = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UnpackError::OpenDest {
        path: dest.to_owned(),
        source: e.into(),
    })?;
    let mut budget = Budget {
        limits,
        root: &root,
        bytes: 0,
        entries: 0,
        next_space_check: SPACE_CHECK_INTERVAL,
    };
    budget.check_space(0)?;
    let mut archive = tar::Archive::new(reader);
    let mut dirs: BTreeMap<Vec<OsString>, DirMeta> = BTreeMap::new();
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        budget.take(entry.size())?;
        unpack_entry(&root, &mut entry, privs, &mut dirs)?;
    }
    // Deepest first, so a parent's permissions never block reaching its children.
    let mut dirs: Vec<_> = dirs.into_iter().collect();
    dirs.sort_by_key(|(comps, _)| std::cmp::Reverse(comps.len()));
    for (comps, meta) in dirs {
        let entry = display(&comps);
        let fd = match walk(&root, &comps, false, &entry) {
            Ok(fd) => fd,
            // Replaced or whited out later in the same layer: nothing to finish.
            Err(UnpackError::Create { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                continue
            }
            Err(e) => return Err(e),
        };
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(meta.mode & 0o7777))
            .map_err(create_err(&entry, "chmod"))?;
        rustix::fs::futimens(&fd, &times(meta.mtime)).map_err(create_err(&entry, "utimes"))?;
    }
    Ok(())
}

fn display(comps: &[OsString]) -> String {
    let joined: Vec<_> = comps.iter().map(|c| c.to_string_lossy()).collect();
    format!("/{}", joined.join("/"))
}

fn create_err<'a>(entry: &'a str, op: &'static str) -> impl Fn(Errno) -> UnpackError + 'a {
    move |e| UnpackError::Create {
        entry: entry.to_owned(),
        op,
        source: e.into(),
    }
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// Opens the directory `comps` below `root` one component at a time without following
/// symlinks, creating missing ones (0755) when `create`.
fn walk(
    root: &OwnedFd,
    comps: &[OsString],
    create: bool,
    entry: &str,
) -> Result<OwnedFd, UnpackError> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let mut cur = rustix::io::dup(root).map_err(create_err(entry, "dup"))?;
    for comp in comps {
        let next = match rustix::fs::openat(&cur, comp.as_os_str(), flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) if create => {
                match rustix::fs::mkdirat(&cur, comp.as_os_str(), Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(create_err(entry, "mkdir parent")(e)),
                }
                rustix::fs::openat(&cur, comp.as_os_str(), flags, Mode::empty())
                    .map_err(create_err(entry, "open parent"))?
            }
            Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                let is_link = rustix::fs::statat(&cur, comp.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                    .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Symlink);
                let component = comp.to_string_lossy().into_owned();
                return Err(if is_link {
                    UnpackError::ThroughSymlink {
                        entry: entry.to_owned(),
                        component,
                    }
                } else {
                    UnpackError::NotADirectory {
                        entry: entry.to_owned(),
                        component,
                    }
                });
            }
            Err(e) => return Err(create_err(entry, "open parent")(e)),
        };
        cur = next;
    }
    Ok(cur)
}

/// Removes whatever is at `name` in `dir` so a later entry can take its place; an empty
/// directory may go, a populated one may not (a layer never legitimately does that).
fn clear(dir: &OwnedFd, name: &OsStr, entry: &str) -> Result<(), UnpackError> {
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {
            match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
                Ok(()) | Err(Errno::NOENT) => Ok(()),
                Err(e) => Err(create_err(entry, "replace directory")(e)),
            }
        }
        Err(e) => Err(create_err(entry, "replace")(e)),
    }
}

fn owner(entry: &str, header: &tar::Header) -> Result<(Uid, Gid), UnpackError> {
    let invalid = |what| UnpackError::InvalidEntry {
        entry: entry.to_owned(),
        what,
    };
    let uid = header.uid().map_err(|_| invalid("uid"))?;
    let gid = header.gid().map_err(|_| invalid("gid"))?;
    // u32::MAX means "unchanged" to chown(2); never a real owner.
    let uid = u32::try_from(uid)
        .ok()
        .filter(|&u| u != u32::MAX)
        .ok_or_else(|| invalid("uid"))?;
    let gid = u32::try_from(gid)
        .ok()
        .filter(|&g| g != u32::MAX)
        .ok_or_else(|| invalid("gid"))?;
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

/// Applies extended attributes from PAX `SCHILY.xattr.*` records. `trusted.overlay.*` from the
/// layer is dropped: only the unpacker may speak to overlayfs (a forged redirect could expose
/// other layers). Filesystems or privileges that refuse an xattr are tolerated.
fn set_xattrs(fd: &OwnedFd, xattrs: &[(String, Vec<u8>)], entry: &str) -> Result<(), UnpackError> {
    for (name, value) in xattrs {
        if name.starts_with("trusted.overlay.") {
            tracing::debug!(entry, name, "dropping overlay xattr from layer");
            continue;
        }
        match rustix::fs::fsetxattr(fd, name.as_str(), value, XattrFlags::empty()) {
            Ok(()) => {}
            Err(Errno::NOTSUP) | Err(Errno::PERM) | Err(Errno::ACCESS) | Err(Errno::INVAL) => {
                tracing::warn!(entry, name, "could not set xattr from layer; skipped");
            }
            Err(e) => return Err(create_err(entry, "setxattr")(e)),
        }
    }
    Ok(())
}

fn unpack_entry<R: Read>(
    root: &OwnedFd,
    entry: &mut tar::Entry<'_, R>,
    privs: Privileges,
    dirs: &mut BTreeMap<Vec<OsString>, DirMeta>,
) -> Result<(), UnpackError> {
    let raw_path = entry.path_bytes().into_owned();
    let name_for_errors = String::from_utf8_lossy(&raw_path).into_owned();
    let ename = name_for_errors.as_str();
    let comps = normalize_entry_path(&raw_path).ok_or_else(|| UnpackError::Escapes {
        entry: ename.to_owned(),
    })?;
    let kind = entry.header().entry_type();
    let header = entry.header().clone();
    let mode = header.mode().map_err(|_| UnpackError::InvalidEntry {
        entry: ename.to_owned(),
        what: "mode",
    })?;
    let mtime = header.mtime().unwrap_or(0);
    let (uid, gid) = owner(ename, &header)?;
    let xattrs: Vec<(String, Vec<u8>)> = match entry.pax_extensions().map_err(UnpackError::Read)? {
        Some(exts) => exts
            .filter_map(Result::ok)
            .filter_map(|ext| {
                let key = ext.key().ok()?;
                let name = key.strip_prefix("SCHILY.xattr.")?;
                Some((name.to_owned(), ext.value_bytes().to_vec()))
            })
            .collect(),
        None => Vec::new(),
    };

    // The layer root itself ("./"): only its metadata matters.
    let Some((name, parent_comps)) = comps.split_last() else {
        if kind.is_dir() {
            if privs.chown {
                rustix::fs::fchown(root, Some(uid), Some(gid))
                    .map_err(create_err(ename, "chown"))?;
            }
            dirs.insert(Vec::new(), DirMeta { mode, mtime });
            return Ok(());
        }
        return Err(UnpackError::InvalidEntry {
            entry: ename.to_owned(),
            what: "path (a non-directory at the layer root)",
        });
    };
    let parent = walk(root, parent_comps, true, ename)?;
    let name_bytes = name.as_bytes();

    // Whiteouts (OCI image spec, "Representation of changes").
    if name_bytes == OPAQUE_WHITEOUT {
        return rustix::fs::fsetxattr(&parent, OPAQUE_XATTR, b"y", XattrFlags::empty())
            .map_err(create_err(ename, "set opaque xattr"));
    }
    if name_bytes.starts_with(META_PREFIX) {
        // Other AUFS metadata (.wh..wh.plnk, .wh..wh.aufs): not part of the image content.
        return Ok(());
    }
    if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT_PREFIX) {
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(UnpackError::InvalidEntry {
                entry: ename.to_owned(),
                what: "whiteout name",
            });
        }
        return whiteout(&parent, OsStr::from_bytes(hidden), ename, privs);
    }

    match kind {
        tar::EntryType::Directory => {
            match rustix::fs::statat(&parent, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) => {
                    clear(&parent, name, ename)?;
                    mkdir(&parent, name, ename)?;
                }
                Err(Errno::NOENT) => mkdir(&parent, name, ename)?,
                Err(e) => return Err(create_err(ename, "stat")(e)),
            }
            let fd = rustix::fs::openat(
                &parent,
                name.as_os_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(create_err(ename, "open directory"))?;
            if privs.chown {
                rustix::fs::fchown(&fd, Some(uid), Some(gid))
                    .map_err(create_err(ename, "chown"))?;
            }
            set_xattrs(&fd, &xattrs, ename)?;
            dirs.insert(comps.clone(), DirMeta { mode, mtime });
        }
        tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
            clear(&parent, name, ename)?;
            let fd = rustix::fs::openat(
                &parent,
                name.as_os_str(),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(create_err(ename, "create file"))?;
            let mut file = File::from(fd);
            io::copy(entry, &mut file).map_err(|source| UnpackError::Create {
                entry: ename.to_owned(),
                op: "write file",
                source,
            })?;
            // chown before chmod: chown clears set-id bits.
            if privs.chown {
                rustix::fs::fchown(file.as_fd(), Some(uid), Some(gid))
                    .map_err(create_err(ename, "chown"))?;
            }
            rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(mode & 0o7777))
                .map_err(create_err(ename, "chmod"))?;
            let fd: OwnedFd = file.into();
            set_xattrs(&fd, &xattrs, ename)?;
            rustix::fs::futimens(&fd, &times(mtime)).map_err(create_err(ename, "utimes"))?;
        }
        tar::EntryType::Symlink => {
            let target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .filter(|t| !t.is_empty() && !t.contains(&0))
                .ok_or_else(|| UnpackError::InvalidEntry {
                    entry: ename.to_owned(),
                    what: "symlink target",
                })?;
            clear(&parent, name, ename)?;
            // The target is stored verbatim and never followed here; the container resolves
            // it inside its own root.
            rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name.as_os_str())
                .map_err(create_err(ename, "symlink"))?;
            if privs.chown {
                rustix::fs::chownat(
                    &parent,
                    name.as_os_str(),
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(create_err(ename, "chown"))?;
            }
            rustix::fs::utimensat(
                &parent,
                name.as_os_str(),
                &times(mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(create_err(ename, "utimes"))?;
        }
        tar::EntryType::Link => {
            let raw_target = entry
                .link_name_bytes()
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let target_str = String::from_utf8_lossy(&raw_target).into_owned();
            let target = normalize_entry_path(&raw_target)
                .filter(|t| !t.is_empty())
                .ok_or_else(|| UnpackError::LinkEscapes {
                    entry: ename.to_owned(),
                    target: target_str.clone(),
                })?;
            let Some((tname, tparent)) = target.split_last() else {
                return Err(UnpackError::LinkEscapes {
                    entry: ename.to_owned(),
                    target: target_str,
                });
            };
            let tparent_fd = walk(root, tparent, false, ename)?;
            clear(&parent, name, ename)?;
            // Flags 0: link the named object itself, never what a symlink points to.
            rustix::fs::linkat(
                &tparent_fd,
                tname.as_os_str(),
                &parent,
                name.as_os_str(),
                AtFlags::empty(),
            )
            .map_err(create_err(ename, "hard link"))?;
        }
        tar::EntryType::Char | tar::EntryType::Block => {
            tracing::info!(
                entry = ename,
                "not creating a device node shipped in an image layer; the path is left absent"
            );
            if !privs.mknod {
                return Ok(());
            }
            whiteout(&parent, name, ename, privs)?;
        }
        tar::EntryType::Fifo => {
            clear(&parent, name, ename)?;
            rustix::fs::mknodat(
                &parent,
                name.as_os_str(),
                FileType::Fifo,
                Mode::from_raw_mode(mode & 0o777),
                0,
            )
            .map_err(create_err(ename, "mknod"))?;
            if privs.chown {
                rustix::fs::chownat(
                    &parent,
                    name.as_os_str(),
                    Some(uid),
                    Some(gid),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(create_err(ename, "chown"))?;
            }
            rustix::fs::utimensat(
                &parent,
                name.as_os_str(),
                &times(mtime),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(create_err(ename, "utimes"))?;
        }
        // Metadata records are consumed by the tar reader; any left are harmless.
        tar::EntryType::XGlobalHeader
        | tar::EntryType::XHeader
        | tar::EntryType::GNULongName
        | tar::EntryType::GNULongLink => {}
        other => {
            return Err(UnpackError::UnsupportedType {
                entry: ename.to_owned(),
                kind: format!("{other:?}"),
            })
        }
    }
    Ok(())
}

/// Puts overlayfs's whiteout (a 0:0 character device owned by root) at `name`, hiding any
/// lower layer's entry there.
fn whiteout(
    parent: &OwnedFd,
    name: &OsStr,
    ename: &str,
    privs: Privileges,
) -> Result<(), UnpackError> {
    clear(parent, name, ename)?;
    rustix::fs::mknodat(
        parent,
        name,
        FileType::CharacterDevice,
        Mode::empty(),
        rustix::fs::makedev(0, 0),
    )
    .map_err(create_err(ename, "mknod whiteout"))?;
    rustix::fs::chownat(
        parent,
        name,
        Some(Uid::ROOT),
        Some(Gid::ROOT),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .or_else(|e| if privs.chown { Err(e) } else { Ok(()) })
    .map_err(create_err(ename, "chown whiteout"))
}

fn mkdir(parent: &OwnedFd, name: &OsStr, entry: &str) -> Result<(), UnpackError> {
    match rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o755)) {
        Ok(()) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(create_err(entry, "mkdir")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    /// Tar builder writing raw header names, so hostile paths get through unmodified.
    struct Tar(tar::Builder<Vec<u8>>);

    impl Tar {
        fn new() -> Self {
            Self(tar::Builder::new(Vec::new()))
        }
        fn header(kind: tar::EntryType, name: &str, mode: u32) -> tar::Header {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1_000_000);
            h.set_size(0);
            let bytes = name.as_bytes();
            h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
            h
        }
        fn file(mut self, name: &str, data: &[u8]) -> Self {
            let mut h = Self::header(tar::EntryType::Regular, name, 0o644);
            h.set_size(data.len() as u64);
            h.set_cksum();
            self.0.append(&h, data).expect("in-memory tar");
            self
        }
        fn dir(mut self, name: &str, mode: u32) -> Self {
            let mut h = Self::header(tar::EntryType::Directory, name, mode);
            h.set_cksum();
            self.0.append(&h, io::empty()).expect("in-memory tar");
            self
        }
        fn link(mut self, kind: tar::EntryType, name: &str, target: &str) -> Self {
            let mut h = Self::header(kind, name, 0o777);
            let t = target.as_bytes();
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t);
            h.set_cksum();
            self.0.append(&h, io::empty()).expect("in-memory tar");
            self
        }
        fn node(mut self, kind: tar::EntryType, name: &str, major: u32, minor: u32) -> Self {
            let mut h = Self::header(kind, name, 0o666);
            h.set_device_major(major).expect("gnu header");
            h.set_device_minor(minor).expect("gnu header");
            h.set_cksum();
            self.0.append(&h, io::empty()).expect("in-memory tar");
            self
        }
        fn bytes(self) -> Vec<u8> {
            self.0.into_inner().expect("in-memory tar")
        }
    }

    /// A sandbox: `outer/layer` is the destination; anything appearing in `outer` besides
    /// `layer` was written outside it.
    struct Sandbox {
        outer: tempfile::TempDir,
    }

    impl Sandbox {
        fn new() -> Result<Self, io::Error> {
            let outer = tempfile::tempdir()?;
            std::fs::create_dir(outer.path().join("layer"))?;
            Ok(Self { outer })
        }
        fn layer(&self) -> PathBuf {
            self.outer.path().join("layer")
        }
        fn unpack(&self, tar: Vec<u8>) -> Result<(), UnpackError> {
            self.unpack_with(tar, &UnpackLimits::default())
        }
        fn unpack_with(&self, tar: Vec<u8>, limits: &UnpackLimits) -> Result<(), UnpackError> {
            unpack(
                io::Cursor::new(tar),
                &self.layer(),
                Privileges::current(),
                limits,
            )
        }
        fn outside(&self) -> Vec<String> {
            std::fs::read_dir(self.outer.path())
                .map(|it| {
                    it.filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n != "layer")
                        .collect()
                })
                .unwrap_or_default()
        }
    }

    #[test]
    fn normalises_paths() {
        let n = |s: &str| {
            normalize_entry_path(s.as_bytes()).map(|v| {
                v.iter()
                    .map(|c| c.to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/")
            })
        };
        assert_eq!(n("./a/b/").as_deref(), Some("a/b"));
        assert_eq!(n("/abs/x").as_deref(), Some("abs/x"));
        assert_eq!(n("a/../b").as_deref(), Some("b"));
        assert_eq!(n("./").as_deref(), Some(""));
        assert_eq!(n("../x"), None);
        assert_eq!(n("/abs/../../x"), None);
        assert_eq!(n("a/../../x"), None);
    }

    #[test]
    fn unpacks_files_dirs_links_and_metadata() -> TestResult {
        let sb = Sandbox::new()?;
        let tar = Tar::new()
            .dir("./", 0o755)
            .dir("bin/", 0o755)
            .file("bin/busybox", b"ELF")
            .link(tar::EntryType::Symlink, "bin/sh", "busybox")
            .link(tar::EntryType::Symlink, "bin/abs", "/etc/passwd")
            .link(tar::EntryType::Link, "bin/hard", "bin/busybox")
            .dir("ro/", 0o555)
            .file("ro/inside", b"x")
            .file("implicit/parent/file", b"y")
            .bytes();
        sb.unpack(tar)?;
        let l = sb.layer();
        assert_eq!(std::fs::read(l.join("bin/busybox"))?, b"ELF");
        assert_eq!(std::fs::read_link(l.join("bin/sh"))?, Path::new("busybox"));
        assert_eq!(
            std::fs::read_link(l.join("bin/abs"))?,
            Path::new("/etc/passwd")
        );
        let a = std::fs::metadata(l.join("bin/busybox"))?;
        let b = std::fs::metadata(l.join("bin/hard"))?;
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.mode() & 0o7777, 0o644);
        assert_eq!(a.mtime(), 1_000_000);
        let ro = std::fs::metadata(l.join("ro"))?;
        assert_eq!(ro.permissions().mode() & 0o7777, 0o555);
        assert_eq!(
            ro.mtime(),
            1_000_000,
            "directory mtime set after its children"
        );
        assert_eq!(std::fs::read(l.join("implicit/parent/file"))?, b"y");
        assert!(sb.outside().is_empty());
        Ok(())
    }

    #[test]
    fn whiteouts_become_overlay_markers() -> TestResult {
        if !Privileges::current().mknod {
            eprintln!("skipping: whiteout device nodes need root");
            return Ok(());
        }
        let sb = Sandbox::new()?;
        let tar = Tar::new()
            .dir("etc/", 0o755)
            .file("etc/.wh.gone", b"")
            .dir("opaque/", 0o755)
            .file("opaque/.wh..wh..opq", b"")
            .file("opaque/new", b"n")
            .file(".wh..wh.plnk", b"")
            .bytes();
        sb.unpack(tar)?;
        let l = sb.layer();
        let wh = std::fs::symlink_metadata(l.join("etc/gone"))?;
        assert!(wh.file_type().is_char_device());
        assert_eq!(wh.rdev(), 0);
        assert_eq!((wh.uid(), wh.gid()), (0, 0));
        let mut buf = [0u8; 8];
        let n = rustix::fs::getxattr(l.join("opaque"), OPAQUE_XATTR, &mut buf)?;
        assert_eq!(&buf[..n], b"y");
        assert!(!l.join(".wh..wh.plnk").exists());
        Ok(())
    }

    /// A layer shipping the host's disk and memory as device nodes: neither is created, each
    /// path becomes a whiteout (absent in the container), while a FIFO is made as usual.
    #[test]
    fn device_nodes_become_whiteouts() -> TestResult {
        if !Privileges::current().mknod {
            eprintln!("skipping: whiteout device nodes need root");
            return Ok(());
        }
        let sb = Sandbox::new()?;
        let tar = Tar::new()
            .file("disk", b"replaced below")
            .node(tar::EntryType::Block, "disk", 8, 0)
            .node(tar::EntryType::Char, "mem", 1, 1)
            .node(tar::EntryType::Fifo, "pipe", 0, 0)
            .bytes();
        sb.unpack(tar)?;
        let l = sb.layer();
        for name in ["disk", "mem"] {
            let m = std::fs::symlink_metadata(l.join(name))?;
            assert!(m.file_type().is_char_device(), "{name} is not a whiteout");
            assert_eq!(m.rdev(), 0, "{name} kept its device numbers");
        }
        assert!(std::fs::symlink_metadata(l.join("pipe"))?
            .file_type()
            .is_fifo());
        assert!(sb.outside().is_empty());
        Ok(())
    }

    #[test]
    fn rejects_dot_dot_escape() -> TestResult {
        let sb = Sandbox::new()?;
        let err = sb.unpack(Tar::new().file("../x", b"evil").bytes());
        assert!(
            matches!(&err, Err(UnpackError::Escapes { entry }) if entry == "../x"),
            "{err:?}"
        );
        assert!(sb.outside().is_empty());
        Ok(())
    }

    #[test]
    fn rejects_absolute_dot_dot_escape() -> TestResult {
        let sb = Sandbox::new()?;
        let err = sb.unpack(Tar::new().file("/abs/../../x", b"evil").bytes());
        assert!(matches!(&err, Err(UnpackError::Escapes { .. })), "{err:?}");
        assert!(sb.outside().is_empty());
        Ok(())
    }

    #[test]
    fn rejects_write_through_symlink() -> TestResult {
        let sb = Sandbox::new()?;
        let outer = sb.outer.path().to_string_lossy().into_owned();
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "up", "..")
            .file("up/escaped", b"evil")
            .bytes();
        let err = sb.unpack(tar);
        assert!(
            matches!(&err, Err(UnpackError::ThroughSymlink { entry, component }) if entry == "up/escaped" && component == "up"),
            "{err:?}"
        );
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "abs", &outer)
            .file("abs/escaped2", b"evil")
            .bytes();
        let sb2 = Sandbox::new()?;
        assert!(matches!(
            sb2.unpack(tar),
            Err(UnpackError::ThroughSymlink { .. })
        ));
        // A file entry over a symlink replaces the link, never writes through it.
        let sb3 = Sandbox::new()?;
        let victim = sb3.outer.path().join("victim");
        std::fs::write(&victim, b"safe")?;
        let tar = Tar::new()
            .link(tar::EntryType::Symlink, "f", &victim.to_string_lossy())
            .file("f", b"evil")
            .bytes();
        sb3.unpack(tar)?;
        assert_eq!(std::fs::read(&victim)?, b"safe");
        assert_eq!(std::fs::read(sb3.layer().join("f"))?, b"evil");
        assert!(sb.outside().is_empty());
        assert!(sb2.outside().is_empty());
        Ok(())
    }

    #[test]
    fn rejects_hardlink_escape() -> TestResult {
        let sb = Sandbox::new()?;
        let err = sb.unpack(
            Tar::new()
                .link(tar::EntryType::Link, "passwd", "../../../../etc/passwd")
                .bytes(),
        );
        assert!(
            matches!(&err, Err(UnpackError::LinkEscapes { .. })),
            "{err:?}"
        );
        // An absolute target is taken inside the layer, where /etc/passwd does not exist.
        let err = sb.unpack(
            Tar::new()
                .link(tar::EntryType::Link, "passwd", "/etc/passwd")
                .bytes(),
        );
        assert!(err.is_err(), "{err:?}");
        assert!(!sb.layer().join("passwd").exists());
        // Through a symlink the layer made: rejected too.
        let sb2 = Sandbox::new()?;
        let err = sb2.unpack(
            Tar::new()
                .link(tar::EntryType::Symlink, "etc", "/etc")
                .link(tar::EntryType::Link, "passwd", "etc/passwd")
                .bytes(),
        );
        assert!(
            matches!(&err, Err(UnpackError::ThroughSymlink { .. })),
            "{err:?}"
        );
        assert!(!sb2.layer().join("passwd").exists());
        assert!(sb.outside().is_empty());
        Ok(())
    }

    #[test]
    fn drops_overlay_xattrs_from_layer() -> TestResult {
        let sb = Sandbox::new()?;
        let mut b = tar::Builder::new(Vec::new());
        let pax: Vec<(&str, &[u8])> = vec![
            ("SCHILY.xattr.trusted.overlay.redirect", b"/elsewhere"),
            ("SCHILY.xattr.user.note", b"kept"),
        ];
        b.append_pax_extensions(pax)?;
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_path("f")?;
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_size(1);
        h.set_cksum();
        b.append(&h, &b"x"[..])?;
        sb.unpack(b.into_inner()?)?;
        let f = sb.layer().join("f");
        let mut buf = [0u8; 64];
        assert!(rustix::fs::getxattr(&f, "trusted.overlay.redirect", &mut buf).is_err());
        // user.* xattrs are kept where the filesystem supports them (tmpfs may not).
        if let Ok(n) = rustix::fs::getxattr(&f, "user.note", &mut buf) {
            assert_eq!(&buf[..n], b"kept");
        }
        Ok(())
    }

    #[test]
    fn gzip_and_unsupported_compression() -> TestResult {
        let tar = Tar::new().file("a", b"1").bytes();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        io::Write::write_all(&mut gz, &tar)?;
        let gz = gz.finish()?;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("blob");
        std::fs::write(&path, &gz)?;
        let dest = dir.path().join("out");
        std::fs::create_dir(&dest)?;
        unpack(
            decompressed(File::open(&path)?)?,
            &dest,
            Privileges::current(),
            &UnpackLimits::default(),
        )?;
        assert_eq!(std::fs::read(dest.join("a"))?, b"1");
        std::fs::write(&path, [0x28, 0xb5, 0x2f, 0xfd, 0, 0])?;
        assert!(matches!(
            decompressed(File::open(&path)?),
            Err(UnpackError::UnsupportedCompression { format: "zstd" })
        ));
        Ok(())
    }

    #[test]
    fn limits_stop_bombs_entry_floods_and_a_full_disk() -> TestResult {
        let limits = UnpackLimits {
            max_bytes: 1 << 20,
            max_entries: 10,
            min_free_bytes: 0,
        };
        // 64 MiB of zeros compress to ~64 KiB: a bomb against a 1 MiB budget.
        let mut tar = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(64 << 20);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, "zeros", io::repeat(0).take(64 << 20))?;
        let sb = Sandbox::new()?;
        let err = sb.unpack_with(tar.into_inner()?, &limits);
        assert!(
            matches!(err, Err(UnpackError::TooLarge { limit }) if limit == 1 << 20),
            "{err:?}"
        );
        assert!(
            !sb.layer().join("zeros").exists(),
            "nothing of the bomb is written"
        );

        let mut flood = Tar::new();
        for i in 0..11 {
            flood = flood.file(&format!("f{i}"), b"x");
        }
        let sb = Sandbox::new()?;
        let err = sb.unpack_with(flood.bytes(), &limits);
        assert!(
            matches!(err, Err(UnpackError::TooManyEntries { limit: 10 })),
            "{err:?}"
        );

        let full = UnpackLimits {
            min_free_bytes: u64::MAX / 2,
            ..UnpackLimits::default()
        };
        let sb = Sandbox::new()?;
        let err = sb.unpack_with(Tar::new().file("a", b"1").bytes(), &full);
        assert!(matches!(err, Err(UnpackError::DiskFull { .. })), "{err:?}");
        assert!(!sb.layer().join("a").exists());

        let sb = Sandbox::new()?;
        let mut fits = Tar::new();
        for i in 0..10 {
            fits = fits.file(&format!("f{i}"), b"x");
        }
        sb.unpack_with(fits.bytes(), &limits)?;
        assert!(sb.layer().join("f9").exists());
        Ok(())
    }
}
