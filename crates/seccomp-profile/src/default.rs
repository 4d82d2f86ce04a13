//! The `RuntimeDefault` profile as one table: every system call a container may make, and the
//! condition under which it may. It is an allow-list, equivalent to the default profiles of
//! containerd and Docker: a call not in the table (keyrings, kernel modules without the
//! capability, `io_uring_*`, `userfaultfd`, calls added to the kernel after this table) fails
//! with EPERM. Calls that reach outside the container are allowed only to holders of the
//! capability that governs them; `clone` may not create namespaces without CAP_SYS_ADMIN
//! (and `clone3`, whose flags a filter cannot read, fails with ENOSYS so libcs fall back to
//! `clone`); `personality` takes only the execution domains ordinary programs use; `socket`
//! refuses AF_VSOCK (host/guest sockets, not isolated by network namespaces) and AF_ALG
//! (the kernel crypto API). One difference from those profiles: `ptrace` and the calls
//! that read another process's memory need CAP_SYS_PTRACE on every kernel.

use crate::profile::{Action, ArgCond, Op, Profile, Rule};

/// An argument check of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// `args[index]` is one of the values.
    OneOf(u8, &'static [u64]),
    /// `args[index]` is none of the values.
    NoneOf(u8, &'static [u64]),
    /// `args[index]` has none of the mask's bits set.
    Clear(u8, u64),
}

/// When the runtime default allows a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allow {
    Always,
    /// Only to a holder of one of these capabilities.
    WithCap(&'static [&'static str]),
    /// Only when the check passes.
    If(Check),
    /// Always to a holder of the capabilities, otherwise when the check passes.
    WithCapOrIf(&'static [&'static str], Check),
    /// Always to a holder of the capabilities, otherwise it fails with this errno.
    WithCapOrErrno(&'static [&'static str], u16),
}

use Allow::{Always, If, WithCap, WithCapOrErrno, WithCapOrIf};

const ADMIN: &[&str] = &["CAP_SYS_ADMIN"];
const PTRACE: &[&str] = &["CAP_SYS_PTRACE"];
const MODULE: &[&str] = &["CAP_SYS_MODULE"];
const TIME: &[&str] = &["CAP_SYS_TIME"];
const NICE: &[&str] = &["CAP_SYS_NICE"];
const RAWIO: &[&str] = &["CAP_SYS_RAWIO"];

/// CLONE_NEWNS | NEWCGROUP | NEWUTS | NEWIPC | NEWUSER | NEWPID | NEWNET.
pub const CLONE_NAMESPACES: u64 = 0x7E02_0000;
/// PER_LINUX, PER_LINUX32, UNAME26, UNAME26 | PER_LINUX32, and 0xffffffff (query).
pub const PERSONALITIES: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];
/// AF_ALG, AF_VSOCK.
pub const REFUSED_SOCKET_FAMILIES: &[u64] = &[38, 40];
/// ENOSYS.
const ENOSYS: u16 = 38;
/// EPERM: what every call the table does not allow returns.
pub const EPERM: u16 = 1;

/// The table: each call once, with its condition. Names of either supported ABI (a name the
/// running ABI lacks, like `arch_prctl` on aarch64, is skipped there).
pub const TABLE: &[(&str, Allow)] = &[
    ("accept", Always),
    ("accept4", Always),
    ("access", Always),
    ("acct", WithCap(&["CAP_SYS_PACCT"])),
    ("adjtimex", Always),
    ("alarm", Always),
    ("arch_prctl", Always),
    ("bind", Always),
    ("bpf", WithCap(&["CAP_SYS_ADMIN", "CAP_BPF"])),
    ("brk", Always),
    ("cachestat", Always),
    ("capget", Always),
    ("capset", Always),
    ("chdir", Always),
    ("chmod", Always),
    ("chown", Always),
    ("chroot", WithCap(&["CAP_SYS_CHROOT"])),
    ("clock_adjtime", Always),
    ("clock_getres", Always),
    ("clock_gettime", Always),
    ("clock_nanosleep", Always),
    ("clock_settime", WithCap(TIME)),
    (
        "clone",
        WithCapOrIf(ADMIN, Check::Clear(0, CLONE_NAMESPACES)),
    ),
    ("clone3", WithCapOrErrno(ADMIN, ENOSYS)),
    ("close", Always),
    ("close_range", Always),
    ("connect", Always),
    ("copy_file_range", Always),
    ("creat", Always),
    ("delete_module", WithCap(MODULE)),
    ("dup", Always),
    ("dup2", Always),
    ("dup3", Always),
    ("epoll_create", Always),
    ("epoll_create1", Always),
    ("epoll_ctl", Always),
    ("epoll_ctl_old", Always),
    ("epoll_pwait", Always),
    ("epoll_pwait2", Always),
    ("epoll_wait", Always),
    ("epoll_wait_old", Always),
    ("eventfd", Always),
    ("eventfd2", Always),
    ("execve", Always),
    ("execveat", Always),
    ("exit", Always),
    ("exit_group", Always),
    ("faccessat", Always),
    ("faccessat2", Always),
    ("fadvise64", Always),
    ("fallocate", Always),
    ("fanotify_init", WithCap(ADMIN)),
    ("fanotify_mark", Always),
    ("fchdir", Always),
    ("fchmod", Always),
    ("fchmodat", Always),
    ("fchmodat2", Always),
    ("fchown", Always),
    ("fchownat", Always),
    ("fcntl", Always),
    ("fdatasync", Always),
    ("fgetxattr", Always),
    ("finit_module", WithCap(MODULE)),
    ("flistxattr", Always),
    ("flock", Always),
    ("fork", Always),
    ("fremovexattr", Always),
    ("fsconfig", WithCap(ADMIN)),
    ("fsetxattr", Always),
    ("fsmount", WithCap(ADMIN)),
    ("fsopen", WithCap(ADMIN)),
    ("fspick", WithCap(ADMIN)),
    ("fstat", Always),
    ("fstatfs", Always),
    ("fsync", Always),
    ("ftruncate", Always),
    ("futex", Always),
    ("futex_requeue", Always),
    ("futex_wait", Always),
    ("futex_waitv", Always),
    ("futex_wake", Always),
    ("futimesat", Always),
    ("get_mempolicy", WithCap(NICE)),
    ("get_robust_list", Always),
    ("get_thread_area", Always),
    ("getcpu", Always),
    ("getcwd", Always),
    ("getdents", Always),
    ("getdents64", Always),
    ("getegid", Always),
    ("geteuid", Always),
    ("getgid", Always),
    ("getgroups", Always),
    ("getitimer", Always),
    ("getpeername", Always),
    ("getpgid", Always),
    ("getpgrp", Always),
    ("getpid", Always),
    ("getppid", Always),
    ("getpriority", Always),
    ("getrandom", Always),
    ("getresgid", Always),
    ("getresuid", Always),
    ("getrlimit", Always),
    ("getrusage", Always),
    ("getsid", Always),
    ("getsockname", Always),
    ("getsockopt", Always),
    ("gettid", Always),
    ("gettimeofday", Always),
    ("getuid", Always),
    ("getxattr", Always),
    ("getxattrat", Always),
    ("init_module", WithCap(MODULE)),
    ("inotify_add_watch", Always),
    ("inotify_init", Always),
    ("inotify_init1", Always),
    ("inotify_rm_watch", Always),
    ("io_cancel", Always),
    ("io_destroy", Always),
    ("io_getevents", Always),
    ("io_pgetevents", Always),
    ("io_setup", Always),
    ("io_submit", Always),
    ("ioctl", Always),
    ("ioperm", WithCap(RAWIO)),
    ("iopl", WithCap(RAWIO)),
    ("ioprio_get", Always),
    ("ioprio_set", Always),
    ("kcmp", WithCap(PTRACE)),
    ("kill", Always),
    ("landlock_add_rule", Always),
    ("landlock_create_ruleset", Always),
    ("landlock_restrict_self", Always),
    ("lchown", Always),
    ("lgetxattr", Always),
    ("link", Always),
    ("linkat", Always),
    ("listen", Always),
    ("listmount", Always),
    ("listxattr", Always),
    ("listxattrat", Always),
    ("llistxattr", Always),
    ("lookup_dcookie", WithCap(ADMIN)),
    ("lremovexattr", Always),
    ("lseek", Always),
    ("lsetxattr", Always),
    ("lsm_get_self_attr", WithCap(ADMIN)),
    ("lsm_list_modules", WithCap(ADMIN)),
    ("lsm_set_self_attr", WithCap(ADMIN)),
    ("lstat", Always),
    ("madvise", Always),
    ("map_shadow_stack", Always),
    ("mbind", WithCap(NICE)),
    ("membarrier", Always),
    ("memfd_create", Always),
    ("memfd_secret", Always),
    ("mincore", Always),
    ("mkdir", Always),
    ("mkdirat", Always),
    ("mknod", Always),
    ("mknodat", Always),
    ("mlock", Always),
    ("mlock2", Always),
    ("mlockall", Always),
    ("mmap", Always),
    ("modify_ldt", Always),
    ("mount", WithCap(ADMIN)),
    ("mount_setattr", WithCap(ADMIN)),
    ("move_mount", WithCap(ADMIN)),
    ("mprotect", Always),
    ("mq_getsetattr", Always),
    ("mq_notify", Always),
    ("mq_open", Always),
    ("mq_timedreceive", Always),
    ("mq_timedsend", Always),
    ("mq_unlink", Always),
    ("mremap", Always),
    ("mseal", Always),
    ("msgctl", Always),
    ("msgget", Always),
    ("msgrcv", Always),
    ("msgsnd", Always),
    ("msync", Always),
    ("munlock", Always),
    ("munlockall", Always),
    ("munmap", Always),
    ("name_to_handle_at", Always),
    ("nanosleep", Always),
    ("newfstatat", Always),
    ("open", Always),
    ("open_by_handle_at", WithCap(&["CAP_DAC_READ_SEARCH"])),
    ("open_tree", WithCap(ADMIN)),
    ("openat", Always),
    ("openat2", Always),
    ("pause", Always),
    (
        "perf_event_open",
        WithCap(&["CAP_SYS_ADMIN", "CAP_PERFMON"]),
    ),
    ("personality", If(Check::OneOf(0, PERSONALITIES))),
    ("pidfd_getfd", WithCap(PTRACE)),
    ("pidfd_open", Always),
    ("pidfd_send_signal", Always),
    ("pipe", Always),
    ("pipe2", Always),
    ("pkey_alloc", Always),
    ("pkey_free", Always),
    ("pkey_mprotect", Always),
    ("poll", Always),
    ("ppoll", Always),
    ("prctl", Always),
    ("pread64", Always),
    ("preadv", Always),
    ("preadv2", Always),
    ("prlimit64", Always),
    ("process_madvise", WithCap(PTRACE)),
    ("process_mrelease", Always),
    ("process_vm_readv", WithCap(PTRACE)),
    ("process_vm_writev", WithCap(PTRACE)),
    ("pselect6", Always),
    ("ptrace", WithCap(PTRACE)),
    ("pwrite64", Always),
    ("pwritev", Always),
    ("pwritev2", Always),
    ("quotactl", WithCap(ADMIN)),
    ("quotactl_fd", WithCap(ADMIN)),
    ("read", Always),
    ("readahead", Always),
    ("readlink", Always),
    ("readlinkat", Always),
    ("readv", Always),
    ("reboot", WithCap(&["CAP_SYS_BOOT"])),
    ("recvfrom", Always),
    ("recvmmsg", Always),
    ("recvmsg", Always),
    ("remap_file_pages", Always),
    ("removexattr", Always),
    ("removexattrat", Always),
    ("rename", Always),
    ("renameat", Always),
    ("renameat2", Always),
    ("restart_syscall", Always),
    ("rmdir", Always),
    ("rseq", Always),
    ("rt_sigaction", Always),
    ("rt_sigpending", Always),
    ("rt_sigprocmask", Always),
    ("rt_sigqueueinfo", Always),
    ("rt_sigreturn", Always),
    ("rt_sigsuspend", Always),
    ("rt_sigtimedwait", Always),
    ("rt_tgsigqueueinfo", Always),
    ("sched_get_priority_max", Always),
    ("sched_get_priority_min", Always),
    ("sched_getaffinity", Always),
    ("sched_getattr", Always),
    ("sched_getparam", Always),
    ("sched_getscheduler", Always),
    ("sched_rr_get_interval", Always),
    ("sched_setaffinity", Always),
    ("sched_setattr", Always),
    ("sched_setparam", Always),
    ("sched_setscheduler", Always),
    ("sched_yield", Always),
    ("seccomp", Always),
    ("select", Always),
    ("semctl", Always),
    ("semget", Always),
    ("semop", Always),
    ("semtimedop", Always),
    ("sendfile", Always),
    ("sendmmsg", Always),
    ("sendmsg", Always),
    ("sendto", Always),
    ("set_mempolicy", WithCap(NICE)),
    ("set_mempolicy_home_node", WithCap(NICE)),
    ("set_robust_list", Always),
    ("set_thread_area", Always),
    ("set_tid_address", Always),
    ("setdomainname", WithCap(ADMIN)),
    ("setfsgid", Always),
    ("setfsuid", Always),
    ("setgid", Always),
    ("setgroups", Always),
    ("sethostname", WithCap(ADMIN)),
    ("setitimer", Always),
    ("setns", WithCap(ADMIN)),
    ("setpgid", Always),
    ("setpriority", Always),
    ("setregid", Always),
    ("setresgid", Always),
    ("setresuid", Always),
    ("setreuid", Always),
    ("setrlimit", Always),
    ("setsid", Always),
    ("setsockopt", Always),
    ("settimeofday", WithCap(TIME)),
    ("setuid", Always),
    ("setxattr", Always),
    ("setxattrat", Always),
    ("shmat", Always),
    ("shmctl", Always),
    ("shmdt", Always),
    ("shmget", Always),
    ("shutdown", Always),
    ("sigaltstack", Always),
    ("signalfd", Always),
    ("signalfd4", Always),
    ("socket", If(Check::NoneOf(0, REFUSED_SOCKET_FAMILIES))),
    ("socketpair", Always),
    ("splice", Always),
    ("stat", Always),
    ("statfs", Always),
    ("statmount", Always),
    ("statx", Always),
    ("symlink", Always),
    ("symlinkat", Always),
    ("sync", Always),
    ("sync_file_range", Always),
    ("syncfs", Always),
    ("sysinfo", Always),
    ("syslog", WithCap(&["CAP_SYS_ADMIN", "CAP_SYSLOG"])),
    ("tee", Always),
    ("tgkill", Always),
    ("time", Always),
    ("timer_create", Always),
    ("timer_delete", Always),
    ("timer_getoverrun", Always),
    ("timer_gettime", Always),
    ("timer_settime", Always),
    ("timerfd_create", Always),
    ("timerfd_gettime", Always),
    ("timerfd_settime", Always),
    ("times", Always),
    ("tkill", Always),
    ("truncate", Always),
    ("umask", Always),
    ("umount2", WithCap(ADMIN)),
    ("uname", Always),
    ("unlink", Always),
    ("unlinkat", Always),
    ("unshare", WithCap(ADMIN)),
    ("uretprobe", Always),
    ("utime", Always),
    ("utimensat", Always),
    ("utimes", Always),
    ("vfork", Always),
    ("vhangup", WithCap(&["CAP_SYS_TTY_CONFIG"])),
    ("vmsplice", Always),
    ("wait4", Always),
    ("waitid", Always),
    ("write", Always),
    ("writev", Always),
];

fn check_rules(name: &str, check: Check) -> Vec<Rule> {
    let cond = |index, op, value| ArgCond { index, op, value };
    let with = |args| Rule {
        args,
        ..Rule::new(&[name], Action::Allow)
    };
    match check {
        Check::OneOf(i, values) => values
            .iter()
            .map(|v| with(vec![cond(i, Op::Eq, *v)]))
            .collect(),
        Check::NoneOf(i, values) => {
            vec![with(values.iter().map(|v| cond(i, Op::Ne, *v)).collect())]
        }
        Check::Clear(i, mask) => vec![with(vec![cond(i, Op::MaskedEq { mask }, 0)])],
    }
}

fn cap_rules(name: &str, caps: &[&str]) -> Vec<Rule> {
    caps.iter()
        .map(|c| {
            let mut r = Rule::new(&[name], Action::Allow);
            r.includes.caps = vec![c.to_string()];
            r
        })
        .collect()
}

/// The rules of one table entry.
pub fn rules(name: &str, allow: Allow) -> Vec<Rule> {
    match allow {
        Always => vec![Rule::new(&[name], Action::Allow)],
        WithCap(caps) => cap_rules(name, caps),
        If(check) => check_rules(name, check),
        WithCapOrIf(caps, check) => {
            let mut r = cap_rules(name, caps);
            r.extend(check_rules(name, check));
            r
        }
        WithCapOrErrno(caps, errno) => {
            let mut r = cap_rules(name, caps);
            let mut refuse = Rule::new(&[name], Action::Errno(errno));
            refuse.excludes.caps = caps.iter().map(|c| c.to_string()).collect();
            r.push(refuse);
            r
        }
    }
}

/// The runtime default profile, generated from [`TABLE`].
pub fn runtime_default() -> Profile {
    Profile {
        default_action: Action::Errno(EPERM),
        rules: TABLE
            .iter()
            .flat_map(|(name, allow)| rules(name, *allow))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::compile::{compile, eval, Target, RET_ALLOW, RET_ERRNO};

    const DENIED: u32 = RET_ERRNO | EPERM as u32;

    /// Every capability a table entry names.
    fn table_caps() -> Vec<&'static str> {
        let mut caps: Vec<&str> = TABLE
            .iter()
            .flat_map(|(_, a)| match a {
                Always | If(_) => &[][..],
                WithCap(c) | WithCapOrIf(c, _) | WithCapOrErrno(c, _) => c,
            })
            .copied()
            .collect();
        caps.sort_unstable();
        caps.dedup();
        caps
    }

    fn filter(arch: Arch, caps: &[&str]) -> Vec<crate::bpf::SockFilter> {
        let has = |c: &str| caps.contains(&c);
        let t = Target {
            arch,
            has_cap: &has,
            kernel: Some((6, 1)),
        };
        compile(&runtime_default(), &t).expect("filter")
    }

    /// Arguments that pass a check, and ones that fail it.
    fn samples(check: Check) -> (Vec<u64>, Vec<u64>) {
        match check {
            Check::OneOf(_, v) => (v.to_vec(), vec![0x1, 0x40_0000, 0x1_0000_0000]),
            Check::NoneOf(_, v) => (vec![1, 2, 10, 16, 17], v.to_vec()),
            Check::Clear(_, mask) => (
                vec![0x0001_1200 | 17, 0x003d_0f00],
                (0..64)
                    .map(|b| 1u64 << b)
                    .filter(|b| b & mask != 0)
                    .collect(),
            ),
        }
    }

    fn index(check: Check) -> usize {
        match check {
            Check::OneOf(i, _) | Check::NoneOf(i, _) | Check::Clear(i, _) => usize::from(i),
        }
    }

    fn with_arg(i: usize, v: u64) -> [u64; 6] {
        let mut a = [0u64; 6];
        a[i] = v;
        a
    }

    /// One assertion per table entry, on both ABIs: the compiled filter decides each call as
    /// its row says, for a container without capabilities, with each named capability, and
    /// with all of them.
    #[test]
    fn every_row_decides_as_written() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let a = arch.audit();
            let none = filter(arch, &[]);
            let all = filter(arch, &table_caps());
            for (name, allow) in TABLE {
                let Some(nr) = arch.syscall(name) else {
                    continue;
                };
                let call = |f: &[crate::bpf::SockFilter], args| eval(f, a, nr, args);
                match *allow {
                    Always => {
                        assert_eq!(call(&none, [0; 6]), RET_ALLOW, "{name}");
                    }
                    WithCap(caps) => {
                        assert_eq!(call(&none, [0; 6]), DENIED, "{name}");
                        for c in caps {
                            assert_eq!(call(&filter(arch, &[c]), [0; 6]), RET_ALLOW, "{name} {c}");
                        }
                    }
                    If(check) => {
                        let (pass, fail) = samples(check);
                        for v in pass {
                            let args = with_arg(index(check), v);
                            assert_eq!(call(&none, args), RET_ALLOW, "{name} {v:#x}");
                        }
                        for v in fail {
                            let args = with_arg(index(check), v);
                            assert_eq!(call(&none, args), DENIED, "{name} {v:#x}");
                            assert_eq!(call(&all, args), DENIED, "{name} {v:#x} with caps");
                        }
                    }
                    WithCapOrIf(caps, check) => {
                        let (pass, fail) = samples(check);
                        for v in pass {
                            let args = with_arg(index(check), v);
                            assert_eq!(call(&none, args), RET_ALLOW, "{name} {v:#x}");
                        }
                        for v in fail {
                            let args = with_arg(index(check), v);
                            assert_eq!(call(&none, args), DENIED, "{name} {v:#x}");
                            for c in caps {
                                let f = filter(arch, &[c]);
                                assert_eq!(call(&f, args), RET_ALLOW, "{name} {v:#x} {c}");
                            }
                        }
                    }
                    WithCapOrErrno(caps, errno) => {
                        let refused = RET_ERRNO | u32::from(errno);
                        assert_eq!(call(&none, [0; 6]), refused, "{name}");
                        for c in caps {
                            assert_eq!(call(&filter(arch, &[c]), [0; 6]), RET_ALLOW, "{name}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn every_name_is_a_real_call_once() {
        for (i, (name, _)) in TABLE.iter().enumerate() {
            assert!(
                Arch::X86_64.syscall(name).is_some() || Arch::Aarch64.syscall(name).is_some(),
                "{name} is no system call"
            );
            assert!(!TABLE[..i].iter().any(|(n, _)| n == name), "{name} twice");
        }
    }

    /// Calls outside the table: refused even to a container with every capability.
    #[test]
    fn escapes_stay_refused() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let all = filter(arch, &table_caps());
            for name in [
                "keyctl",
                "add_key",
                "request_key",
                "io_uring_setup",
                "io_uring_enter",
                "io_uring_register",
                "kexec_load",
                "kexec_file_load",
                "userfaultfd",
                "pivot_root",
                "swapon",
                "swapoff",
                "nfsservctl",
                "uselib",
                "ustat",
                "sysfs",
                "_sysctl",
                "create_module",
                "get_kernel_syms",
                "query_module",
                "vserver",
                "afs_syscall",
                "open_by_handle_at",
            ] {
                let Some(nr) = arch.syscall(name) else {
                    continue;
                };
                let caps_hold = name == "open_by_handle_at";
                let none = filter(arch, &[]);
                assert_eq!(eval(&none, arch.audit(), nr, [0; 6]), DENIED, "{name}");
                if !caps_hold {
                    assert_eq!(eval(&all, arch.audit(), nr, [0; 6]), DENIED, "{name}");
                }
            }
        }
    }

    /// Numbers no table names (new kernel calls, gaps) get the default: EPERM.
    #[test]
    fn unknown_numbers_are_refused() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let f = filter(arch, &table_caps());
            for nr in [335u32, 400, 423, 470, 500, 1000, 0x3fff_ffff] {
                let known = TABLE.iter().any(|(n, _)| arch.syscall(n) == Some(nr));
                if !known {
                    assert_eq!(eval(&f, arch.audit(), nr, [0; 6]), DENIED, "{nr}");
                }
            }
        }
    }

    #[test]
    fn the_filter_fits_the_kernel_limit() {
        for arch in [Arch::X86_64, Arch::Aarch64] {
            let f = filter(arch, &table_caps());
            assert!(f.len() < crate::bpf::MAX_INSNS, "{}", f.len());
        }
    }
}
