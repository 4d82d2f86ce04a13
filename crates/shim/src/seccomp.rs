//! The `RuntimeDefault` seccomp profile: a classic-BPF deny-list, written here as data, of the
//! system calls that container runtimes' default profiles refuse because they reach outside
//! the container (kernel modules, clocks, mounts and namespaces, keyrings, kexec, raw I/O …).
//! As in those profiles, a call comes back allowed when the container holds the capability
//! that governs it (a container given CAP_SYS_TIME may set the clock). Refused calls fail
//! with EPERM; `clone3` fails with ENOSYS so libcs fall back to `clone`, whose namespace
//! flags can be inspected. Calls from a foreign ABI (i386, x32) are refused.

use crate::caps;

/// One classic-BPF instruction (`struct sock_filter`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// `struct sock_fprog`.
#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// BPF_LD | BPF_W | BPF_ABS (LD and W are zero).
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10;
const BPF_JMP_JGE_K: u16 = 0x05 | 0x30;
const BPF_JMP_JSET_K: u16 = 0x05 | 0x40;
const BPF_RET_K: u16 = 0x06;

const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
const SECCOMP_MODE_FILTER: libc::c_ulong = 2;

/// Offsets in `struct seccomp_data`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;
/// Low 32 bits of `args[0]` (little-endian).
const OFFSET_ARG0_LOW: u32 = 16;

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_003E);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(0xC000_00B7);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// The x32 ABI marks its syscall numbers with this bit.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// `clone` flags that create namespaces (CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER,
/// NEWPID, NEWNET); refused without CAP_SYS_ADMIN.
const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000;

/// Denied system calls and the capability that allows each (`None`: always denied).
fn deny_list() -> Vec<(libc::c_long, Option<u32>)> {
    let mut v: Vec<(libc::c_long, Option<u32>)> = vec![
        // Accounting, keyrings, kernel modules, kexec, reboot.
        (libc::SYS_acct, Some(caps::SYS_PACCT)),
        (libc::SYS_add_key, None),
        (libc::SYS_keyctl, None),
        (libc::SYS_request_key, None),
        (libc::SYS_init_module, Some(caps::SYS_MODULE)),
        (libc::SYS_finit_module, Some(caps::SYS_MODULE)),
        (libc::SYS_delete_module, Some(caps::SYS_MODULE)),
        (libc::SYS_kexec_load, Some(caps::SYS_BOOT)),
        (libc::SYS_kexec_file_load, Some(caps::SYS_BOOT)),
        (libc::SYS_reboot, Some(caps::SYS_BOOT)),
        // Clocks.
        (libc::SYS_clock_settime, Some(caps::SYS_TIME)),
        (libc::SYS_clock_adjtime, Some(caps::SYS_TIME)),
        (libc::SYS_settimeofday, Some(caps::SYS_TIME)),
        // Mounts, namespaces, handles, quotas, swap: host-wide state.
        (libc::SYS_mount, Some(caps::SYS_ADMIN)),
        (libc::SYS_umount2, Some(caps::SYS_ADMIN)),
        (libc::SYS_pivot_root, Some(caps::SYS_ADMIN)),
        (libc::SYS_setns, Some(caps::SYS_ADMIN)),
        (libc::SYS_unshare, Some(caps::SYS_ADMIN)),
        (libc::SYS_fsopen, Some(caps::SYS_ADMIN)),
        (libc::SYS_fsconfig, Some(caps::SYS_ADMIN)),
        (libc::SYS_fsmount, Some(caps::SYS_ADMIN)),
        (libc::SYS_fspick, Some(caps::SYS_ADMIN)),
        (libc::SYS_move_mount, Some(caps::SYS_ADMIN)),
        (libc::SYS_open_tree, Some(caps::SYS_ADMIN)),
        (libc::SYS_mount_setattr, Some(caps::SYS_ADMIN)),
        (libc::SYS_name_to_handle_at, Some(caps::SYS_ADMIN)),
        (libc::SYS_open_by_handle_at, Some(caps::DAC_READ_SEARCH)),
        (libc::SYS_quotactl, Some(caps::SYS_ADMIN)),
        (libc::SYS_swapon, Some(caps::SYS_ADMIN)),
        (libc::SYS_swapoff, Some(caps::SYS_ADMIN)),
        (libc::SYS_lookup_dcookie, Some(caps::SYS_ADMIN)),
        (libc::SYS_bpf, Some(caps::SYS_ADMIN)),
        (libc::SYS_perf_event_open, Some(caps::SYS_ADMIN)),
        (libc::SYS_syslog, Some(caps::SYSLOG)),
        // Other processes' memory, NUMA placement, userfaultfd.
        (libc::SYS_kcmp, Some(caps::SYS_PTRACE)),
        (libc::SYS_process_vm_readv, Some(caps::SYS_PTRACE)),
        (libc::SYS_process_vm_writev, Some(caps::SYS_PTRACE)),
        (libc::SYS_userfaultfd, Some(caps::SYS_PTRACE)),
        (libc::SYS_mbind, Some(caps::SYS_NICE)),
        (libc::SYS_set_mempolicy, Some(caps::SYS_NICE)),
        (libc::SYS_move_pages, Some(caps::SYS_NICE)),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        (libc::SYS_iopl, Some(caps::SYS_RAWIO)),
        (libc::SYS_ioperm, Some(caps::SYS_RAWIO)),
        (libc::SYS_nfsservctl, None),
        (libc::SYS_uselib, None),
        (libc::SYS_ustat, None),
        (libc::SYS_sysfs, None),
        (libc::SYS__sysctl, None),
    ]);
    v
}

fn stmt(code: u16, k: u32) -> SockFilter {
    SockFilter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> SockFilter {
    SockFilter { code, jt, jf, k }
}

/// The filter for a container holding the capabilities in `cap_mask` (bit n = capability
/// n); `None` on an architecture without a profile.
pub fn default_filter(cap_mask: u64) -> Option<Vec<SockFilter>> {
    let arch = AUDIT_ARCH?;
    let has = |cap: u32| cap_mask & (1u64 << cap) != 0;
    let eperm = stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32);
    let mut prog = vec![
        stmt(BPF_LD_W_ABS, OFFSET_ARCH),
        jump(BPF_JMP_JEQ_K, arch, 1, 0),
        eperm,
        stmt(BPF_LD_W_ABS, OFFSET_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    prog.extend([jump(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1), eperm]);
    for (nr, allowed_by) in deny_list() {
        if allowed_by.is_some_and(has) {
            continue;
        }
        // A syscall number is a small non-negative constant.
        prog.push(jump(BPF_JMP_JEQ_K, nr as u32, 0, 1));
        prog.push(eperm);
    }
    if !has(caps::SYS_ADMIN) {
        prog.push(jump(BPF_JMP_JEQ_K, libc::SYS_clone3 as u32, 0, 1));
        prog.push(stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::ENOSYS as u32));
        prog.extend([
            jump(BPF_JMP_JEQ_K, libc::SYS_clone as u32, 0, 3),
            stmt(BPF_LD_W_ABS, OFFSET_ARG0_LOW),
            jump(BPF_JMP_JSET_K, CLONE_NAMESPACE_FLAGS, 0, 1),
            eperm,
        ]);
    }
    prog.push(stmt(BPF_RET_K, SECCOMP_RET_ALLOW));
    Some(prog)
}

/// Installs `prog` for this thread and its future children. Needs no_new_privs or
/// CAP_SYS_ADMIN.
pub fn install(prog: &[SockFilter]) -> Result<(), nix::Error> {
    let len = u16::try_from(prog.len()).map_err(|_| nix::Error::E2BIG)?;
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
        return Err(nix::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny classic-BPF interpreter over (nr, arch, arg0), enough for our own programs.
    fn run(prog: &[SockFilter], nr: u32, arch: u32, arg0: u32) -> u32 {
        let mut acc = 0u32;
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            match i.code {
                BPF_LD_W_ABS => {
                    acc = match i.k {
                        OFFSET_NR => nr,
                        OFFSET_ARCH => arch,
                        OFFSET_ARG0_LOW => arg0,
                        other => panic!("load of offset {other}"),
                    };
                    pc += 1;
                }
                BPF_RET_K => return i.k,
                code => {
                    let taken = match code {
                        BPF_JMP_JEQ_K => acc == i.k,
                        BPF_JMP_JGE_K => acc >= i.k,
                        BPF_JMP_JSET_K => acc & i.k != 0,
                        other => panic!("opcode {other:#x}"),
                    };
                    pc += 1 + usize::from(if taken { i.jt } else { i.jf });
                }
            }
        }
    }

    #[test]
    fn denies_dangerous_calls_unless_capable() {
        let Some(arch) = AUDIT_ARCH else { return };
        let prog = default_filter(0).expect("filter");
        let eperm = SECCOMP_RET_ERRNO | libc::EPERM as u32;
        assert_eq!(
            run(&prog, libc::SYS_read as u32, arch, 0),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(run(&prog, libc::SYS_mount as u32, arch, 0), eperm);
        assert_eq!(run(&prog, libc::SYS_keyctl as u32, arch, 0), eperm);
        assert_eq!(run(&prog, libc::SYS_read as u32, arch ^ 1, 0), eperm);
        // clone: threads and forks pass, namespaces do not.
        let clone = libc::SYS_clone as u32;
        assert_eq!(run(&prog, clone, arch, 0x0001_1200 | 17), SECCOMP_RET_ALLOW);
        assert_eq!(run(&prog, clone, arch, 0x2000_0000), eperm);
        assert_eq!(
            run(&prog, libc::SYS_clone3 as u32, arch, 0),
            SECCOMP_RET_ERRNO | libc::ENOSYS as u32
        );
        let admin = default_filter(1 << caps::SYS_ADMIN).expect("filter");
        assert_eq!(
            run(&admin, libc::SYS_mount as u32, arch, 0),
            SECCOMP_RET_ALLOW
        );
        assert_eq!(run(&admin, clone, arch, 0x2000_0000), SECCOMP_RET_ALLOW);
        assert_eq!(run(&admin, libc::SYS_keyctl as u32, arch, 0), eperm);
        let time = default_filter(1 << caps::SYS_TIME).expect("filter");
        assert_eq!(
            run(&time, libc::SYS_clock_settime as u32, arch, 0),
            SECCOMP_RET_ALLOW
        );
    }
}
