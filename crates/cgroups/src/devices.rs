//! A container's device allow-list: which device nodes its processes may create (mknod),
//! read and write. The kernel enforces it through the cgroup, whatever the filesystem says, so
//! a root container with CAP_MKNOD can make a node for the host's disk and still not open it.
//! The same rules become v1 `devices.allow` lines and the v2 eBPF program (see `bpf`).

/// The kind of device a rule is about (`a`, `c`, `b` in the v1 syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Every device, character or block.
    All,
    Char,
    Block,
}

/// Access bits, numbered as the kernel's `BPF_DEVCG_ACC_*` (mknod 1, read 2, write 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    pub const MKNOD: Access = Access(1);
    pub const READ: Access = Access(2);
    pub const WRITE: Access = Access(4);
    pub const RWM: Access = Access(7);

    /// The access of the given bits (those above the low three are ignored).
    pub fn from_bits(bits: u8) -> Access {
        Access(bits & 7)
    }

    /// The raw bits (only the low three are ever set).
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Whether every bit of `other` is in `self`.
    pub fn contains(self, other: Access) -> bool {
        self.0 & other.0 == other.0
    }

    /// `rwm`, `r`, `m` … as the v1 files spell it.
    fn letters(self) -> String {
        [(Self::READ, 'r'), (Self::WRITE, 'w'), (Self::MKNOD, 'm')]
            .iter()
            .filter(|(a, _)| self.contains(*a))
            .map(|(_, c)| *c)
            .collect()
    }
}

impl std::ops::BitOr for Access {
    type Output = Access;
    fn bitor(self, rhs: Access) -> Access {
        Access((self.0 | rhs.0) & 7)
    }
}

/// One allow rule; `None` for a number is the `*` wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    pub kind: DeviceKind,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    pub access: Access,
}

impl DeviceRule {
    const fn char(major: u32, minor: Option<u32>) -> Self {
        Self {
            kind: DeviceKind::Char,
            major: Some(major),
            minor,
            access: Access::RWM,
        }
    }

    /// Whether this rule allows `access` to the device `kind` `major:minor` (`kind` is a real
    /// device kind, never `All`).
    pub fn allows(&self, kind: DeviceKind, major: u32, minor: u32, access: Access) -> bool {
        (self.kind == DeviceKind::All || self.kind == kind)
            && self.major.is_none_or(|m| m == major)
            && self.minor.is_none_or(|m| m == minor)
            && self.access.contains(access)
    }

    /// The rule as lines for v1 `devices.allow` (`c 1:3 rwm`). A rule for every device of
    /// every kind is the single letter `a`, which is how v1 spells "allow everything"; v1
    /// reads any other line starting with `a` the same way, so a narrower rule for both kinds
    /// becomes one line per kind.
    pub fn v1_lines(&self) -> Vec<String> {
        let num = |n: Option<u32>| n.map_or_else(|| "*".to_string(), |n| n.to_string());
        let line = |kind: char| {
            format!(
                "{kind} {}:{} {}",
                num(self.major),
                num(self.minor),
                self.access.letters()
            )
        };
        match self.kind {
            DeviceKind::All if self.is_everything() => vec!["a".into()],
            DeviceKind::All => vec![line('c'), line('b')],
            DeviceKind::Char => vec![line('c')],
            DeviceKind::Block => vec![line('b')],
        }
    }

    fn is_everything(&self) -> bool {
        self.kind == DeviceKind::All
            && self.major.is_none()
            && self.minor.is_none()
            && self.access == Access::RWM
    }
}

/// Whether any rule of `rules` allows the access (everything not allowed is denied).
pub fn allowed(
    rules: &[DeviceRule],
    kind: DeviceKind,
    major: u32,
    minor: u32,
    access: Access,
) -> bool {
    rules.iter().any(|r| r.allows(kind, major, minor, access))
}

/// The allow-list of an unprivileged container, as runc gives one created from containerd's
/// default spec: any node may be created (mknod is harmless when opening it is refused), and
/// only the character devices a container's /dev holds may be opened. `/dev/net/tun`, which
/// some runtimes add, is left out: peapod creates no such node.
pub fn default_rules() -> Vec<DeviceRule> {
    vec![
        DeviceRule {
            kind: DeviceKind::Char,
            major: None,
            minor: None,
            access: Access::MKNOD,
        },
        DeviceRule {
            kind: DeviceKind::Block,
            major: None,
            minor: None,
            access: Access::MKNOD,
        },
        // /dev/null, zero, full, random, urandom.
        DeviceRule::char(1, Some(3)),
        DeviceRule::char(1, Some(5)),
        DeviceRule::char(1, Some(7)),
        DeviceRule::char(1, Some(8)),
        DeviceRule::char(1, Some(9)),
        // /dev/tty, /dev/console, /dev/ptmx.
        DeviceRule::char(5, Some(0)),
        DeviceRule::char(5, Some(1)),
        DeviceRule::char(5, Some(2)),
        // /dev/pts/* of the container's own devpts instance.
        DeviceRule::char(136, None),
    ]
}

/// The allow-list of a privileged container: every device.
pub fn allow_all() -> Vec<DeviceRule> {
    vec![DeviceRule {
        kind: DeviceKind::All,
        major: None,
        minor: None,
        access: Access::RWM,
    }]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_rules_allow_the_dev_set_and_mknod_only() {
        let rules = default_rules();
        let rw = Access::READ | Access::WRITE;
        for (major, minor) in [
            (1, 3),
            (1, 5),
            (1, 7),
            (1, 8),
            (1, 9),
            (5, 0),
            (5, 2),
            (136, 4),
        ] {
            assert!(allowed(&rules, DeviceKind::Char, major, minor, rw));
        }
        // The host's disk, memory and kernel log: mknod yes, open no.
        assert!(allowed(&rules, DeviceKind::Block, 8, 0, Access::MKNOD));
        assert!(!allowed(&rules, DeviceKind::Block, 8, 0, Access::READ));
        assert!(!allowed(&rules, DeviceKind::Block, 254, 0, Access::WRITE));
        assert!(!allowed(&rules, DeviceKind::Char, 1, 1, Access::READ));
        assert!(!allowed(&rules, DeviceKind::Char, 1, 11, Access::READ));
        // A block device with a char device's numbers is still a block device.
        assert!(!allowed(&rules, DeviceKind::Block, 1, 3, Access::READ));
    }

    #[test]
    fn allow_all_allows_everything() {
        let rules = allow_all();
        assert!(allowed(&rules, DeviceKind::Block, 8, 0, Access::RWM));
        assert!(allowed(&rules, DeviceKind::Char, 1, 1, Access::READ));
    }

    #[test]
    fn v1_lines() {
        let lines: Vec<String> = default_rules()
            .iter()
            .flat_map(DeviceRule::v1_lines)
            .collect();
        assert_eq!(&lines[..3], ["c *:* m", "b *:* m", "c 1:3 rwm"]);
        assert_eq!(lines.last().map(String::as_str), Some("c 136:* rwm"));
        assert_eq!(allow_all()[0].v1_lines(), ["a"]);
        let partial = DeviceRule {
            kind: DeviceKind::All,
            major: Some(4),
            minor: None,
            access: Access::READ,
        };
        // Never "a 4:* r": v1 would read that as "allow everything".
        assert_eq!(partial.v1_lines(), ["c 4:* r", "b 4:* r"]);
    }
}
