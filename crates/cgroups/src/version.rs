//! Which cgroup API the host offers; both the layout detection and the stats parsers
//! branch on it.

/// Which cgroup API the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}
