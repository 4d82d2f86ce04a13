//! The container's seccomp filter: built from its profile (the runtime default table, or the
//! Localhost profile the runtime loaded) for the capabilities it ends up with, and loaded
//! into the process right before exec. Privileged and `Unconfined` containers get none, as
//! with containerd.

use cri::{SeccompProfile, SecurityConfig};
use seccomp_profile::{Arch, Profile, SockFilter, Target};

use crate::caps;

const SECCOMP_MODE_FILTER: libc::c_ulong = 2;

/// Why no filter could be built.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {name:?} was not loaded by the runtime")]
    LocalhostNotLoaded { name: String },
    #[error("building the seccomp filter: {0}")]
    Compile(#[source] seccomp_profile::bpf::AsmError),
    #[error("loading the seccomp filter: {0}")]
    Install(#[source] nix::Error),
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// The running kernel's (major, minor), for profiles' `minKernel`.
fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    let mut parts = release.trim().split(['.', '-']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The filter for a container with `sec` holding the capabilities in `cap_mask` (bit n =
/// capability n); `localhost` is the profile the runtime loaded for a Localhost container.
/// `None`: no filter (privileged, Unconfined, or an architecture without syscall tables).
pub fn filter(
    sec: &SecurityConfig,
    cap_mask: u64,
    localhost: Option<&Profile>,
) -> Result<Option<Vec<SockFilter>>, SeccompError> {
    if sec.privileged {
        return Ok(None);
    }
    let Some(arch) = Arch::native() else {
        return Ok(None);
    };
    let default;
    let profile = match &sec.seccomp {
        SeccompProfile::Unconfined => return Ok(None),
        SeccompProfile::RuntimeDefault => {
            default = seccomp_profile::runtime_default();
            &default
        }
        SeccompProfile::Localhost { profile } => {
            localhost.ok_or_else(|| SeccompError::LocalhostNotLoaded {
                name: profile.clone(),
            })?
        }
    };
    let has_cap = |name: &str| caps::number(name).is_some_and(|n| cap_mask & (1u64 << n) != 0);
    let target = Target {
        arch,
        has_cap: &has_cap,
        kernel: kernel_version(),
    };
    seccomp_profile::compile(profile, &target)
        .map(Some)
        .map_err(SeccompError::Compile)
}

/// Installs `prog` for this thread and its future children. Needs no_new_privs or
/// CAP_SYS_ADMIN.
pub fn install(prog: &[SockFilter]) -> Result<(), SeccompError> {
    let len = u16::try_from(prog.len()).map_err(|_| SeccompError::Install(nix::Error::E2BIG))?;
    let fprog = SockFprog {
        len,
        filter: prog.as_ptr(),
    };
    // SAFETY: `fprog` points at `prog`, which outlives the call; the kernel copies the
    // program and keeps no reference to our memory.
    let rc = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            SECCOMP_MODE_FILTER,
            &fprog as *const SockFprog,
            0,
            0,
        )
    };
    if rc != 0 {
        return Err(SeccompError::Install(nix::Error::last()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_containers_get_a_filter() {
        if Arch::native().is_none() {
            return;
        }
        let default = SecurityConfig::default();
        assert!(filter(&default, 0, None).expect("filter").is_some());
        let privileged = SecurityConfig {
            privileged: true,
            ..Default::default()
        };
        assert!(filter(&privileged, 0, None).expect("filter").is_none());
        let unconfined = SecurityConfig {
            seccomp: SeccompProfile::Unconfined,
            ..Default::default()
        };
        assert!(filter(&unconfined, 0, None).expect("filter").is_none());
        let localhost = SecurityConfig {
            seccomp: SeccompProfile::Localhost {
                profile: "p.json".into(),
            },
            ..Default::default()
        };
        assert!(matches!(
            filter(&localhost, 0, None),
            Err(SeccompError::LocalhostNotLoaded { .. })
        ));
        let p = seccomp_profile::parse(br#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).expect("profile");
        let f = filter(&localhost, 0, Some(&p))
            .expect("filter")
            .expect("some");
        assert_ne!(f, filter(&default, 0, None).expect("filter").expect("some"));
    }

    #[test]
    fn capabilities_widen_the_default_filter() {
        if Arch::native().is_none() {
            return;
        }
        let sec = SecurityConfig::default();
        let plain = filter(&sec, 0, None).expect("filter");
        let admin = filter(&sec, 1 << caps::SYS_ADMIN, None).expect("filter");
        assert!(admin.expect("some").len() > plain.expect("some").len());
    }

    /// The kernel takes the compiled program and enforces it: in a child with the default
    /// filter, `unshare(CLONE_NEWUSER)` fails with EPERM, `clone3` with ENOSYS, and
    /// ordinary calls still work.
    #[test]
    fn the_kernel_accepts_and_enforces_the_default_filter() {
        let Some(prog) = filter(&SecurityConfig::default(), 0, None).expect("filter") else {
            return;
        };
        let child = || -> i32 {
            // SAFETY: integer-only prctl.
            if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                return 10;
            }
            if install(&prog).is_err() {
                return 11;
            }
            // SAFETY: raw system calls with integer arguments.
            if unsafe { libc::unshare(libc::CLONE_NEWUSER) } == 0 {
                return 12;
            }
            if nix::errno::Errno::last() != nix::errno::Errno::EPERM {
                return 13;
            }
            // SAFETY: clone3 with a null argument pointer and size 0 fails before any use.
            let rc = unsafe { libc::syscall(libc::SYS_clone3, 0usize, 0usize) };
            if rc != -1 || nix::errno::Errno::last() != nix::errno::Errno::ENOSYS {
                return 14;
            }
            // SAFETY: getppid has no arguments.
            if unsafe { libc::getppid() } <= 0 {
                return 15;
            }
            0
        };
        // SAFETY: the child makes only raw system calls and then `_exit`s, so nothing the
        // test harness's other threads held is touched.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                let code = child();
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("waitpid");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }

    #[test]
    fn kernel_version_is_read() {
        let (major, _) = kernel_version().expect("osrelease");
        assert!(major >= 3);
    }
}
