//! A container's confinement, applied by the container child between pivot_root and exec, as
//! containerd + runc apply CRI's security context: the runtime default capability set with
//! the pod's add/drop, no_new_privs, the default masked and read-only paths in /proc and
//! /sys, a read-only root filesystem on request, the default seccomp filter, and for
//! privileged containers all capabilities, host devices and no masks.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};

use crate::caps;
use crate::seccomp;
use cri::{SeccompProfile, SecurityConfig};

/// containerd's default capability set for containers (the one Kubernetes documents).
pub const DEFAULT_CAPS: &[u32] = &[
    caps::CHOWN,
    caps::DAC_OVERRIDE,
    caps::FSETID,
    caps::FOWNER,
    caps::MKNOD,
    caps::NET_RAW,
    caps::SETGID,
    caps::SETUID,
    caps::SETFCAP,
    caps::SETPCAP,
    caps::NET_BIND_SERVICE,
    caps::SYS_CHROOT,
    caps::KILL,
    caps::AUDIT_WRITE,
];

/// Paths containerd hides from unprivileged containers: kernel memory, keys, timers and
/// hardware details of the host.
pub const DEFAULT_MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths containerd makes read-only: host-wide kernel knobs.
pub const DEFAULT_READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Host /dev entries never copied into a privileged container (they are the container's own).
const PRIVATE_DEV: &[&str] = &["pts", "shm", "mqueue", "ptmx", "console", "fd", "core"];

/// A failed confinement step.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown capability {name:?}")]
    UnknownCapability { name: String },
    #[error("masking {path}: {source}")]
    Mask {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("making {path} read-only: {source}")]
    Readonly {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("creating device {path}: {source}")]
    Device {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("{what}: {source}")]
    Prctl {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("setting capabilities: {0}")]
    Capset(#[source] nix::Error),
    #[error("loading the seccomp filter: {0}")]
    Seccomp(#[source] nix::Error),
}

/// The capabilities this process may hand on (its permitted set): "all capabilities" for
/// a privileged container means these, since a shim confined by its host (a container
/// itself) cannot grant more than it has.
pub fn available_caps() -> u64 {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let mut data = [Data::default(); 2];
    // SAFETY: capget fills the two-element v3 data array we own.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capget,
            &mut header as *mut Header,
            data.as_mut_ptr(),
        )
    };
    let all = all_caps(last_cap());
    if rc != 0 {
        return all;
    }
    (u64::from(data[1].permitted) << 32 | u64::from(data[0].permitted)) & all
}

const CAP_VERSION_3: u32 = 0x2008_0522;

fn all_caps(last_cap: u32) -> u64 {
    if last_cap >= 63 {
        u64::MAX
    } else {
        (1u64 << (last_cap + 1)) - 1
    }
}

/// The highest capability number the running kernel knows.
pub fn last_cap() -> u32 {
    fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
        .min(63)
}

fn is_all(name: &str) -> bool {
    let upper = name.trim().to_ascii_uppercase();
    upper == "ALL" || upper == "CAP_ALL"
}

/// The container's capability set as a bit mask, as containerd computes it: privileged or
/// `add: [ALL]` means every capability; otherwise the default set plus `add`; `drop: [ALL]`
/// leaves only what `add` names; other drops are removed last. `all` is every capability
/// available (see [`available_caps`]).
pub fn capability_mask(sec: &SecurityConfig, all: u64) -> Result<u64, SecurityError> {
    if sec.privileged {
        return Ok(all);
    }
    let bit = |name: &str| {
        caps::number(name)
            .map(|n| 1u64 << n)
            .ok_or_else(|| SecurityError::UnknownCapability {
                name: name.to_string(),
            })
    };
    let mut added = 0u64;
    let add_all = sec.capabilities_add.iter().any(|c| is_all(c));
    for name in sec.capabilities_add.iter().filter(|c| !is_all(c)) {
        added |= bit(name)?;
    }
    let mut mask = if add_all {
        all
    } else {
        DEFAULT_CAPS.iter().fold(0u64, |m, c| m | (1u64 << c)) | added
    };
    if sec.capabilities_drop.iter().any(|c| is_all(c)) {
        mask = if add_all { all } else { added };
    }
    for name in sec.capabilities_drop.iter().filter(|c| !is_all(c)) {
        mask &= !bit(name)?;
    }
    Ok(mask & all)
}

/// A host device node recreated in a privileged container's /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Path relative to /dev.
    pub rel: PathBuf,
    pub mode: u32,
    pub rdev: u64,
    pub uid: u32,
    pub gid: u32,
}

/// The host's device nodes (runc gives privileged containers all of them); read before
/// pivot_root, created after /dev is mounted.
pub fn host_devices(dev: &Path) -> Vec<Device> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(entries) = fs::read_dir(dev.join(&rel)) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            if rel.as_os_str().is_empty() && PRIVATE_DEV.iter().any(|p| name == **p) {
                continue;
            }
            let Ok(meta) = fs::symlink_metadata(e.path()) else {
                continue;
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                stack.push(rel.join(&name));
            } else if ft.is_char_device() || ft.is_block_device() {
                out.push(Device {
                    rel: rel.join(&name),
                    mode: meta.mode(),
                    rdev: meta.rdev(),
                    uid: meta.uid(),
                    gid: meta.gid(),
                });
            }
        }
    }
    out
}

/// Creates `devices` under /dev of the (pivoted) container; existing entries are kept.
pub fn create_devices(devices: &[Device]) -> Result<(), SecurityError> {
    for d in devices {
        let path = Path::new("/dev").join(&d.rel);
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        if let Some(parent) = path.parent() {
            let _ = fs::create_dir_all(parent);
        }
        let kind = nix::sys::stat::SFlag::from_bits_truncate(d.mode & libc::S_IFMT);
        let perm = nix::sys::stat::Mode::from_bits_truncate(d.mode & 0o7777);
        nix::sys::stat::mknod(&path, kind, perm, d.rdev).map_err(|source| {
            SecurityError::Device {
                path: path.clone(),
                source,
            }
        })?;
        let _ = nix::unistd::chown(
            &path,
            Some(nix::unistd::Uid::from_raw(d.uid)),
            Some(nix::unistd::Gid::from_raw(d.gid)),
        );
    }
    Ok(())
}

/// Masks and read-only paths inside the pivoted container (after /proc, /sys and /dev/null
/// exist): a masked directory gets an empty read-only tmpfs, a masked file /dev/null; a
/// read-only path is bind-mounted onto itself read-only. Missing paths are skipped.
pub fn apply_path_rules(sec: &SecurityConfig) -> Result<(), SecurityError> {
    if sec.privileged {
        return Ok(());
    }
    let defaults = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let masked = sec
        .masked_paths
        .clone()
        .unwrap_or_else(|| defaults(DEFAULT_MASKED_PATHS));
    let readonly = sec
        .readonly_paths
        .clone()
        .unwrap_or_else(|| defaults(DEFAULT_READONLY_PATHS));
    for p in &masked {
        let path = Path::new(p);
        let Ok(meta) = fs::metadata(path) else {
            continue;
        };
        let err = |source| SecurityError::Mask {
            path: path.to_path_buf(),
            source,
        };
        if meta.is_dir() {
            mount(
                Some("tmpfs"),
                path,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None::<&str>,
            )
            .map_err(err)?;
        } else {
            mount(
                Some("/dev/null"),
                path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(err)?;
        }
    }
    for p in &readonly {
        let path = Path::new(p);
        if fs::symlink_metadata(path).is_err() {
            continue;
        }
        readonly_bind(path).map_err(|source| SecurityError::Readonly {
            path: path.to_path_buf(),
            source,
        })?;
    }
    Ok(())
}

fn readonly_bind(path: &Path) -> Result<(), nix::Error> {
    mount(
        Some(path),
        path,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        path,
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
}

/// `readOnlyRootFilesystem`: the container's root mount becomes read-only (its volumes and
/// /etc files are their own mounts and keep their modes), keeping its `nodev`.
pub fn readonly_rootfs() -> Result<(), SecurityError> {
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | crate::nodev::kept_flags(Path::new("/")),
        None::<&str>,
    )
    .map_err(|source| SecurityError::Readonly {
        path: "/".into(),
        source,
    })
}

/// What `prepare_credentials` computed, for `finish_credentials`.
pub struct Credentials {
    mask: u64,
    filter: Option<Vec<seccomp::SockFilter>>,
    no_new_privs: bool,
}

fn prctl(what: &'static str, op: libc::c_int, arg: libc::c_ulong) -> Result<(), SecurityError> {
    // SAFETY: these prctl operations take integer arguments only.
    let rc = unsafe {
        libc::prctl(
            op,
            arg,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if rc < 0 {
        return Err(SecurityError::Prctl {
            what,
            source: nix::Error::last(),
        });
    }
    Ok(())
}

/// Runs while still root with every capability, before setuid: shrinks the bounding set
/// (which caps what any later exec can gain), keeps capabilities across the uid change, and
/// loads the seccomp filter early when no_new_privs is off (a filter then needs
/// CAP_SYS_ADMIN, which only now is certain; runc does the same).
pub fn prepare_credentials(sec: &SecurityConfig) -> Result<Credentials, SecurityError> {
    let last = last_cap();
    let mask = capability_mask(sec, available_caps())?;
    for cap in 0..=last {
        if mask & (1u64 << cap) == 0 {
            prctl(
                "dropping from the bounding set",
                libc::PR_CAPBSET_DROP,
                cap.into(),
            )?;
        }
    }
    prctl("keeping capabilities", libc::PR_SET_KEEPCAPS, 1)?;
    let filter = match (sec.privileged, sec.seccomp) {
        (false, SeccompProfile::RuntimeDefault) => seccomp::default_filter(mask),
        (true, _) | (false, SeccompProfile::Unconfined) => None,
    };
    let no_new_privs = !sec.allow_privilege_escalation;
    let mut creds = Credentials {
        mask,
        filter,
        no_new_privs,
    };
    if !no_new_privs {
        if let Some(f) = creds.filter.take() {
            seccomp::install(&f).map_err(SecurityError::Seccomp)?;
        }
    }
    Ok(creds)
}

/// Runs after setuid, right before exec: sets the permitted and effective sets (the
/// inheritable and ambient sets stay empty, as containerd does since CVE-2022-24769), then
/// no_new_privs and the late seccomp filter.
pub fn finish_credentials(creds: Credentials) -> Result<(), SecurityError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let header = Header {
        version: CAP_VERSION_3,
        pid: 0,
    };
    let low = creds.mask as u32;
    let high = (creds.mask >> 32) as u32;
    let data = [
        Data {
            effective: low,
            permitted: low,
            inheritable: 0,
        },
        Data {
            effective: high,
            permitted: high,
            inheritable: 0,
        },
    ];
    // SAFETY: header and a two-element data array of the v3 layout, both alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header as *const Header, data.as_ptr()) };
    if rc != 0 {
        return Err(SecurityError::Capset(nix::Error::last()));
    }
    prctl("keeping capabilities", libc::PR_SET_KEEPCAPS, 0)?;
    // Ambient capabilities would survive exec for a non-root user; there must be none.
    // SAFETY: integer-only prctl.
    let _ = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
            0 as libc::c_ulong,
        )
    };
    if creds.no_new_privs {
        prctl("setting no_new_privs", libc::PR_SET_NO_NEW_PRIVS, 1)?;
    }
    if let Some(f) = &creds.filter {
        seccomp::install(f).map_err(SecurityError::Seccomp)?;
    }
    Ok(())
}

/// Sets the pod's sysctls in the shim's (the pod's) namespaces: `net.*` belong to the
/// network namespace, `kernel.shm*`/`kernel.msg*`/`kernel.sem` and `fs.mqueue.*` to the IPC
/// namespace, so writing them under /proc/sys affects only this pod.
pub fn set_sysctls(sysctls: &std::collections::BTreeMap<String, String>) -> io::Result<()> {
    for (name, value) in sysctls {
        let path = sysctl_path(name).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("invalid sysctl name {name:?}"),
            )
        })?;
        fs::write(&path, value)
            .map_err(|e| io::Error::new(e.kind(), format!("setting sysctl {name}={value}: {e}")))?;
    }
    Ok(())
}

/// `net.ipv4.tcp_syncookies` (or `net/ipv4/tcp_syncookies`) → its /proc/sys file; `None`
/// for names that would leave /proc/sys or are outside the namespaced families.
pub fn sysctl_path(name: &str) -> Option<PathBuf> {
    // With '/' separators, dots are part of a component (an interface name like "eth0.1").
    let parts: Vec<&str> = if name.contains('/') {
        name.split('/').collect()
    } else {
        name.split('.').collect()
    };
    if parts
        .iter()
        .any(|p| p.is_empty() || *p == ".." || *p == "." || p.contains('\0'))
    {
        return None;
    }
    let first = *parts.first()?;
    let namespaced = first == "net"
        || (first == "kernel"
            && parts
                .get(1)
                .is_some_and(|p| p.starts_with("shm") || p.starts_with("msg") || *p == "sem"))
        || (first == "fs" && parts.get(1) == Some(&"mqueue"));
    if !namespaced {
        return None;
    }
    let mut path = PathBuf::from("/proc/sys");
    for p in parts {
        path.push(p);
    }
    Some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(mask: u64) -> Vec<&'static str> {
        (0..64)
            .filter(|b| mask & (1u64 << b) != 0)
            .filter_map(|b| caps::NAMES.get(b as usize).copied())
            .collect()
    }

    #[test]
    fn default_capabilities() {
        let m = capability_mask(&SecurityConfig::default(), all_caps(40)).expect("mask");
        let mut got = names(m);
        got.sort_unstable();
        let mut want = vec![
            "AUDIT_WRITE",
            "CHOWN",
            "DAC_OVERRIDE",
            "FOWNER",
            "FSETID",
            "KILL",
            "MKNOD",
            "NET_BIND_SERVICE",
            "NET_RAW",
            "SETFCAP",
            "SETGID",
            "SETPCAP",
            "SETUID",
            "SYS_CHROOT",
        ];
        want.sort_unstable();
        assert_eq!(got, want);
        // CapEff of a default root container, as /proc/self/status shows it.
        assert_eq!(format!("{m:016x}"), "00000000a80425fb");
    }

    #[test]
    fn add_drop_and_all() {
        let sec = |add: &[&str], drop: &[&str]| SecurityConfig {
            capabilities_add: add.iter().map(|s| s.to_string()).collect(),
            capabilities_drop: drop.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        assert_eq!(
            capability_mask(&sec(&[], &["ALL"]), all_caps(40)).expect("mask"),
            0
        );
        assert_eq!(
            names(
                capability_mask(&sec(&["NET_BIND_SERVICE"], &["ALL"]), all_caps(40)).expect("mask")
            ),
            vec!["NET_BIND_SERVICE"]
        );
        let m = capability_mask(
            &sec(&["CAP_NET_ADMIN"], &["NET_RAW", "chown"]),
            all_caps(40),
        )
        .expect("mask");
        assert!(names(m).contains(&"NET_ADMIN"));
        assert!(!names(m).contains(&"NET_RAW") && !names(m).contains(&"CHOWN"));
        assert_eq!(
            capability_mask(&sec(&["ALL"], &[]), all_caps(40)).expect("mask"),
            (1u64 << 41) - 1
        );
        assert!(capability_mask(&sec(&["BOGUS"], &[]), all_caps(40)).is_err());
        let privileged = SecurityConfig {
            privileged: true,
            capabilities_drop: vec!["ALL".into()],
            ..Default::default()
        };
        assert_eq!(
            capability_mask(&privileged, all_caps(40)).expect("mask"),
            (1u64 << 41) - 1
        );
    }

    #[test]
    fn sysctl_paths() {
        assert_eq!(
            sysctl_path("net.ipv4.tcp_syncookies"),
            Some(PathBuf::from("/proc/sys/net/ipv4/tcp_syncookies"))
        );
        assert_eq!(
            sysctl_path("net/ipv4/conf/eth0.1/forwarding"),
            Some(PathBuf::from("/proc/sys/net/ipv4/conf/eth0.1/forwarding"))
        );
        assert_eq!(
            sysctl_path("kernel.shm_rmid_forced"),
            Some(PathBuf::from("/proc/sys/kernel/shm_rmid_forced"))
        );
        assert_eq!(sysctl_path("kernel.panic"), None);
        assert_eq!(sysctl_path("net/../kernel/panic"), None);
        assert_eq!(sysctl_path("vm.swappiness"), None);
    }

    #[test]
    fn host_devices_walks_dev() {
        let devs = host_devices(Path::new("/dev"));
        assert!(devs.iter().any(|d| d.rel == Path::new("null")));
        assert!(!devs.iter().any(|d| d.rel.starts_with("pts")));
    }
}
