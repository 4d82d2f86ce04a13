//! The node's own figures from procfs, as the kubelet's summary reports them for the node:
//! CPU time from `/proc/stat` (every mode but idle and iowait; `guest` is already counted in
//! `user`) and memory from `/proc/meminfo` (usage is total minus free, the working set is
//! usage minus inactive file pages, as cAdvisor computes it for the root cgroup). The procfs
//! root is injected so tests read fixture files.

use std::io;
use std::path::{Path, PathBuf};

/// Clock ticks per second in `/proc/stat` (`USER_HZ`): fixed at 100 in the kernel's ABI on
/// every architecture Linux exports it for, whatever the kernel's internal `HZ`.
const USER_HZ: u64 = 100;

/// The node's cumulative CPU time and current memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeUsage {
    pub cpu_usage_nanos: Option<u64>,
    pub memory_usage_bytes: Option<u64>,
    pub memory_working_set_bytes: Option<u64>,
    pub memory_available_bytes: Option<u64>,
    pub memory_rss_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
    /// Boot time, seconds since the epoch (`btime`).
    pub boot_time: Option<i64>,
}

/// Failures reading procfs.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Reads the node's figures under `proc_root` (normally `/proc`).
pub fn read_node_usage(proc_root: &Path) -> Result<NodeUsage, ProcError> {
    let read = |name: &str| {
        let path = proc_root.join(name);
        std::fs::read_to_string(&path).map_err(|source| ProcError::Read { path, source })
    };
    let stat = read("stat")?;
    let meminfo = read("meminfo")?;
    // vmstat only adds fault counts: a procfs without it still gives the rest.
    let vmstat = read("vmstat").unwrap_or_default();
    Ok(parse_node_usage(&stat, &meminfo, &vmstat))
}

/// The node's figures from the text of `/proc/stat`, `/proc/meminfo` and `/proc/vmstat`.
pub fn parse_node_usage(stat: &str, meminfo: &str, vmstat: &str) -> NodeUsage {
    let cpu_usage_nanos = stat.lines().find_map(|l| {
        let rest = l.strip_prefix("cpu ")?;
        let ticks: Vec<u64> = rest
            .split_whitespace()
            .map(|t| t.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal (guest, guest_nice are in user/nice).
        let busy: u64 = [0usize, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|i| ticks.get(*i))
            .fold(0u64, |a, t| a.saturating_add(*t));
        Some(busy.saturating_mul(1_000_000_000 / USER_HZ))
    });
    let boot_time = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok());
    let kib = |key: &str| {
        meminfo.lines().find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            let n: u64 = rest.split_whitespace().next()?.parse().ok()?;
            Some(n.saturating_mul(1024))
        })
    };
    let total = kib("MemTotal");
    let usage = total.zip(kib("MemFree")).map(|(t, f)| t.saturating_sub(f));
    let working_set = usage.map(|u| u.saturating_sub(kib("Inactive(file)").unwrap_or(0)));
    let vm = |key: &str| {
        vmstat.lines().find_map(|l| {
            let mut parts = l.split_whitespace();
            (parts.next() == Some(key))
                .then(|| parts.next()?.parse().ok())
                .flatten()
        })
    };
    NodeUsage {
        cpu_usage_nanos,
        memory_usage_bytes: usage,
        memory_working_set_bytes: working_set,
        memory_available_bytes: total.zip(working_set).map(|(t, w)| t.saturating_sub(w)),
        memory_rss_bytes: kib("AnonPages"),
        page_faults: vm("pgfault"),
        major_page_faults: vm("pgmajfault"),
        boot_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  1000 20 300 90000 50 6 7 8 100 0\n\
cpu0 500 10 150 45000 25 3 3 4 50 0\nintr 12345\nbtime 1700000000\nprocesses 99\n";
    const MEMINFO: &str = "MemTotal:       16000000 kB\nMemFree:         4000000 kB\n\
MemAvailable:   10000000 kB\nActive(file):    3000000 kB\nInactive(file):  2000000 kB\n\
AnonPages:       5000000 kB\n";
    const VMSTAT: &str = "nr_free_pages 1000\npgfault 777\npgmajfault 5\n";

    #[test]
    fn cpu_time_counts_busy_modes_in_user_hz_ticks() {
        let u = parse_node_usage(STAT, MEMINFO, VMSTAT);
        // user + nice + system + irq + softirq + steal = 1341 ticks of 10 ms.
        assert_eq!(u.cpu_usage_nanos, Some(1341 * 10_000_000));
        assert_eq!(u.boot_time, Some(1_700_000_000));
    }

    #[test]
    fn memory_working_set_is_usage_less_inactive_file() {
        let u = parse_node_usage(STAT, MEMINFO, VMSTAT);
        assert_eq!(u.memory_usage_bytes, Some(12_000_000 * 1024));
        assert_eq!(u.memory_working_set_bytes, Some(10_000_000 * 1024));
        assert_eq!(u.memory_available_bytes, Some(6_000_000 * 1024));
        assert_eq!(u.memory_rss_bytes, Some(5_000_000 * 1024));
        assert_eq!(u.page_faults, Some(777));
        assert_eq!(u.major_page_faults, Some(5));
    }

    #[test]
    fn garbage_reads_as_unknown() {
        assert_eq!(parse_node_usage("", "", ""), NodeUsage::default());
        let u = parse_node_usage("cpu  x y\n", "MemTotal: lots kB\n", "");
        assert_eq!(u.cpu_usage_nanos, Some(0));
        assert_eq!(u.memory_usage_bytes, None);
    }

    #[test]
    fn reads_an_injected_procfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(read_node_usage(dir.path()).is_err());
        std::fs::write(dir.path().join("stat"), STAT).expect("write");
        std::fs::write(dir.path().join("meminfo"), MEMINFO).expect("write");
        let u = read_node_usage(dir.path()).expect("usage");
        assert_eq!(u.cpu_usage_nanos, Some(13_410_000_000));
        assert_eq!(u.page_faults, None);
    }
}
