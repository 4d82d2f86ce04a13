//! A seccomp profile as peapod holds it: a default action and an ordered list of rules, each
//! naming system calls, an action, argument comparisons and the conditions (capabilities,
//! architecture, kernel version) under which it applies. The runtime default table and
//! Localhost profile files (the OCI / docker JSON format) both become one of these, and one
//! compiler turns it into a filter.

use serde::{Deserialize, Serialize};

/// What the filter does with a system call (`SCMP_ACT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    Allow,
    /// Fail the call with this errno.
    Errno(u16),
    KillThread,
    KillProcess,
    /// Send SIGSYS.
    Trap,
    /// Allow and log.
    Log,
    /// Hand the call to a ptrace tracer; without one it fails with this errno.
    Trace(u16),
}

/// A comparison of one 64-bit argument (`SCMP_CMP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Ge,
    Gt,
    /// `(arg & mask) == value`.
    MaskedEq {
        mask: u64,
    },
}

/// `args[index] <op> value`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgCond {
    /// 0..=5.
    pub index: u8,
    pub op: Op,
    pub value: u64,
}

/// When a rule applies (docker's `includes`/`excludes`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct When {
    /// Capability names (`CAP_SYS_ADMIN`); `includes` needs all of them, `excludes` any.
    pub caps: Vec<String>,
    /// Architecture names (`amd64`, `arm64`, or `SCMP_ARCH_*`).
    pub arches: Vec<String>,
    /// (major, minor): `includes` needs a kernel at least this new.
    pub min_kernel: Option<(u32, u32)>,
}

/// One rule: every call in `names` meeting all of `args` gets `action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rule {
    pub names: Vec<String>,
    pub action: Action,
    /// All must hold (an empty list matches every call).
    pub args: Vec<ArgCond>,
    pub includes: When,
    pub excludes: When,
}

impl Rule {
    /// A rule for `names` with no argument comparisons or conditions.
    pub fn new(names: &[&str], action: Action) -> Rule {
        Rule {
            names: names.iter().map(|n| n.to_string()).collect(),
            action,
            args: Vec::new(),
            includes: When::default(),
            excludes: When::default(),
        }
    }
}

/// A whole profile. Rules are tried in order, those with argument comparisons before those
/// without; the first that matches decides, and calls no rule matches get `default_action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub default_action: Action,
    pub rules: Vec<Rule>,
}
