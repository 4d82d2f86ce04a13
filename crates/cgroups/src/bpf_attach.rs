//! The two `bpf(2)` calls that put a device program in force: load it (the kernel verifies
//! it) and attach it to a v2 cgroup directory. The attachment holds the program; our fds are
//! closed on return, and removing the cgroup releases both.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::bpf::Insn;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Programs of ancestors (systemd's, say) keep running too; each must allow an access.
const BPF_F_ALLOW_MULTI: u32 = 2;
/// Room for the verifier's explanation when a load is refused.
const LOG_SIZE: usize = 64 * 1024;

/// The leading fields of `union bpf_attr` for `BPF_PROG_LOAD`; the kernel accepts a shorter
/// attr than its own and treats the rest as zero.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for `BPF_PROG_ATTACH`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// Why a device program could not be put in force.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("loading the device program: {source}{}", verifier_note(.log))]
    Load {
        log: String,
        #[source]
        source: io::Error,
    },
    #[error("opening the cgroup directory: {0}")]
    Open(#[source] io::Error),
    #[error("attaching the device program: {0}")]
    Attach(#[source] io::Error),
}

fn verifier_note(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!(" (verifier: {})", log.trim())
    }
}

/// Loads `prog` and attaches it to the v2 cgroup at `dir`.
pub fn attach_device_program(dir: &Path, prog: &[Insn]) -> Result<(), AttachError> {
    let prog_fd = load(prog)?;
    let cgroup = File::open(dir).map_err(AttachError::Open)?;
    let attr = ProgAttachAttr {
        target_fd: fd_u32(&cgroup),
        attach_bpf_fd: fd_u32(&prog_fd),
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
        replace_bpf_fd: 0,
    };
    // SAFETY: the attr is a plain struct that lives across the call; the kernel only reads it.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if rc < 0 {
        return Err(AttachError::Attach(io::Error::last_os_error()));
    }
    Ok(())
}

fn fd_u32(fd: &impl AsRawFd) -> u32 {
    // Open fds are never negative.
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Loads the program without a log first (the common case), and again with one to explain a
/// refusal.
fn load(prog: &[Insn]) -> Result<OwnedFd, AttachError> {
    match load_with_log(prog, None) {
        Ok(fd) => Ok(fd),
        Err(first) => {
            let mut log = vec![0u8; LOG_SIZE];
            match load_with_log(prog, Some(&mut log)) {
                Ok(fd) => Ok(fd),
                Err(_) => {
                    let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                    Err(AttachError::Load {
                        log: String::from_utf8_lossy(&log[..end]).into_owned(),
                        source: first,
                    })
                }
            }
        }
    }
}

fn load_with_log(prog: &[Insn], log: Option<&mut [u8]>) -> io::Result<OwnedFd> {
    let license = c"Apache-2.0";
    let (log_level, log_size, log_buf) = match log {
        Some(buf) => (
            1,
            u32::try_from(buf.len()).unwrap_or(u32::MAX),
            buf.as_mut_ptr() as u64,
        ),
        None => (0, 0, 0),
    };
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: u32::try_from(prog.len())
            .map_err(|_| io::Error::from_raw_os_error(libc::E2BIG))?,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size,
        log_buf,
        kern_version: 0,
        prog_flags: 0,
        prog_name: *b"peapod_devices\0\0",
        prog_ifindex: 0,
        expected_attach_type: BPF_CGROUP_DEVICE,
    };
    // SAFETY: the attr points at the instructions, the license and the log buffer, all of
    // which outlive the call; the kernel writes only into the log buffer, within log_size.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            &attr as *const ProgLoadAttr,
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    let fd = i32::try_from(rc).map_err(|_| io::Error::from_raw_os_error(libc::EBADF))?;
    // SAFETY: a successful BPF_PROG_LOAD returns a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
