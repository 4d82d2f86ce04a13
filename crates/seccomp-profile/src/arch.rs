//! The architectures a filter can be built for, with their syscall numbers by name, so one
//! profile (the runtime default table, a Localhost file) yields the right filter on x86_64
//! and on aarch64 whatever the build target is.

use std::str::FromStr;

/// An ABI the filter knows the syscall numbers of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

/// The x32 ABI (on x86_64 kernels) marks its syscall numbers with this bit.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

impl Arch {
    /// The architecture this program runs on; `None` where there is no filter support.
    pub fn native() -> Option<Arch> {
        if cfg!(target_arch = "x86_64") {
            Some(Arch::X86_64)
        } else if cfg!(target_arch = "aarch64") {
            Some(Arch::Aarch64)
        } else {
            None
        }
    }

    /// `AUDIT_ARCH_*`, what the kernel puts in `seccomp_data.arch`.
    pub fn audit(self) -> u32 {
        match self {
            Arch::X86_64 => 0xC000_003E,
            Arch::Aarch64 => 0xC000_00B7,
        }
    }

    /// The syscall number of `name` on this ABI; `None` when the ABI has no such call.
    pub fn syscall(self, name: &str) -> Option<u32> {
        let id = match self {
            Arch::X86_64 => syscalls::x86_64::Sysno::from_str(name).ok()?.id(),
            Arch::Aarch64 => syscalls::aarch64::Sysno::from_str(name).ok()?.id(),
        };
        u32::try_from(id).ok()
    }

    /// Whether a profile's architecture name (`SCMP_ARCH_X86_64` in `architectures`, or the
    /// Go name `amd64` in `includes.arches`) denotes this ABI.
    pub fn is_named(self, name: &str) -> bool {
        let names: &[&str] = match self {
            Arch::X86_64 => &["SCMP_ARCH_X86_64", "amd64", "x86_64"],
            Arch::Aarch64 => &["SCMP_ARCH_AARCH64", "arm64", "aarch64"],
        };
        names.contains(&name)
    }
}

/// Every architecture name a profile's `architectures`/`archMap` may hold (libseccomp's).
pub const KNOWN_ARCH_NAMES: &[&str] = &[
    "SCMP_ARCH_X86",
    "SCMP_ARCH_X86_64",
    "SCMP_ARCH_X32",
    "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64",
    "SCMP_ARCH_LOONGARCH64",
    "SCMP_ARCH_M68K",
    "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",
    "SCMP_ARCH_MIPS64N32",
    "SCMP_ARCH_MIPSEL",
    "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32",
    "SCMP_ARCH_PPC",
    "SCMP_ARCH_PPC64",
    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",
    "SCMP_ARCH_S390X",
    "SCMP_ARCH_PARISC",
    "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64",
    "SCMP_ARCH_SH",
    "SCMP_ARCH_SHEB",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_of_both_abis() {
        assert_eq!(Arch::X86_64.syscall("read"), Some(0));
        assert_eq!(Arch::X86_64.syscall("mount"), Some(165));
        assert_eq!(Arch::X86_64.syscall("io_uring_setup"), Some(425));
        assert_eq!(Arch::Aarch64.syscall("read"), Some(63));
        assert_eq!(Arch::Aarch64.syscall("mount"), Some(40));
        assert_eq!(Arch::Aarch64.syscall("open"), None);
        assert_eq!(Arch::X86_64.syscall("no_such_call"), None);
    }

    #[test]
    fn native_numbers_agree_with_libc() {
        let Some(arch) = Arch::native() else { return };
        for (name, nr) in [
            ("read", libc::SYS_read),
            ("clone", libc::SYS_clone),
            ("clone3", libc::SYS_clone3),
            ("unshare", libc::SYS_unshare),
            ("personality", libc::SYS_personality),
            ("keyctl", libc::SYS_keyctl),
            ("socket", libc::SYS_socket),
        ] {
            assert_eq!(arch.syscall(name).map(i64::from), Some(nr), "{name}");
        }
    }
}
