//! Cumulative CPU time and memory figures of one cgroup, read as cAdvisor reads them for the
//! kubelet's summary: v1 `cpuacct.usage`, `memory.usage_in_bytes` and the hierarchical
//! (`total_*`) counters of `memory.stat`; v2 `cpu.stat` `usage_usec`, `memory.current` and
//! `memory.stat`. The working set is usage minus inactive file pages (the page cache the
//! kernel can drop first), floored at zero. The parsing is pure, tested on fixture text.

use crate::version::Version;

/// What one cgroup has used; `None` where the controller or file is missing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time consumed since the cgroup was created, in nanoseconds.
    pub cpu_usage_nanos: Option<u64>,
    /// Memory charged to the cgroup, page cache included.
    pub memory_usage_bytes: Option<u64>,
    /// Usage minus inactive file pages: what the kubelet evicts and `kubectl top` shows on.
    pub memory_working_set_bytes: Option<u64>,
    /// Anonymous memory and swap cache (v1 `total_rss`, v2 `anon`).
    pub memory_rss_bytes: Option<u64>,
    pub page_faults: Option<u64>,
    pub major_page_faults: Option<u64>,
}

/// The raw text of the files [`Usage`] is computed from, one field per file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageFiles {
    /// v1 `cpuacct.usage` or v2 `cpu.stat`.
    pub cpu: Option<String>,
    /// v1 `memory.usage_in_bytes` or v2 `memory.current`.
    pub memory_usage: Option<String>,
    pub memory_stat: Option<String>,
}

/// Turns the files' text into figures, per the layout's file formats.
pub fn parse_usage(version: Version, files: &UsageFiles) -> Usage {
    let stat = files.memory_stat.as_deref().unwrap_or_default();
    let stat_key = |v1: &str, v2: &str| match version {
        Version::V1 => keyed(stat, v1),
        Version::V2 => keyed(stat, v2),
    };
    let cpu_usage_nanos = files.cpu.as_deref().and_then(|text| match version {
        Version::V1 => text.trim().parse().ok(),
        Version::V2 => keyed(text, "usage_usec").map(|us| us.saturating_mul(1000)),
    });
    let memory_usage_bytes = files
        .memory_usage
        .as_deref()
        .and_then(|t| t.trim().parse::<u64>().ok());
    let inactive_file = stat_key("total_inactive_file", "inactive_file");
    let memory_working_set_bytes =
        memory_usage_bytes.map(|u| u.saturating_sub(inactive_file.unwrap_or(0)));
    Usage {
        cpu_usage_nanos,
        memory_usage_bytes,
        memory_working_set_bytes,
        memory_rss_bytes: stat_key("total_rss", "anon"),
        page_faults: stat_key("total_pgfault", "pgfault"),
        major_page_faults: stat_key("total_pgmajfault", "pgmajfault"),
    }
}

/// The number after `key` in a "key value" per line file.
fn keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(key))
            .then(|| parts.next().and_then(|v| v.parse().ok()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_STAT: &str = "cache 1048576\nrss 2097152\ninactive_file 4096\npgfault 7\n\
total_cache 8388608\ntotal_rss 4194304\ntotal_inactive_file 6291456\ntotal_active_file 2097152\n\
total_pgfault 1200\ntotal_pgmajfault 3\n";

    const V2_STAT: &str = "anon 3145728\nfile 5242880\nkernel 65536\nactive_file 1048576\n\
inactive_file 4194304\npgfault 900\npgmajfault 2\n";

    #[test]
    fn v1_uses_cpuacct_and_the_hierarchical_memory_counters() {
        let files = UsageFiles {
            cpu: Some("123456789\n".into()),
            memory_usage: Some("12582912\n".into()),
            memory_stat: Some(V1_STAT.into()),
        };
        assert_eq!(
            parse_usage(Version::V1, &files),
            Usage {
                cpu_usage_nanos: Some(123_456_789),
                memory_usage_bytes: Some(12_582_912),
                memory_working_set_bytes: Some(12_582_912 - 6_291_456),
                memory_rss_bytes: Some(4_194_304),
                page_faults: Some(1200),
                major_page_faults: Some(3),
            }
        );
    }

    #[test]
    fn v2_reads_usage_usec_and_memory_current() {
        let files = UsageFiles {
            cpu: Some("usage_usec 2500\nuser_usec 2000\nsystem_usec 500\n".into()),
            memory_usage: Some("9437184\n".into()),
            memory_stat: Some(V2_STAT.into()),
        };
        assert_eq!(
            parse_usage(Version::V2, &files),
            Usage {
                cpu_usage_nanos: Some(2_500_000),
                memory_usage_bytes: Some(9_437_184),
                memory_working_set_bytes: Some(9_437_184 - 4_194_304),
                memory_rss_bytes: Some(3_145_728),
                page_faults: Some(900),
                major_page_faults: Some(2),
            }
        );
    }

    #[test]
    fn working_set_never_goes_below_zero_and_missing_files_are_none() {
        let files = UsageFiles {
            cpu: Some("garbage".into()),
            memory_usage: Some("100".into()),
            memory_stat: Some("inactive_file 4096\n".into()),
        };
        let u = parse_usage(Version::V2, &files);
        assert_eq!(u.memory_working_set_bytes, Some(0));
        assert_eq!(u.cpu_usage_nanos, None);
        let none = parse_usage(Version::V1, &UsageFiles::default());
        assert_eq!(none, Usage::default());
        // No inactive_file line: the working set is the whole usage.
        let bare = UsageFiles {
            memory_usage: Some("4096".into()),
            ..Default::default()
        };
        assert_eq!(
            parse_usage(Version::V1, &bare).memory_working_set_bytes,
            Some(4096)
        );
    }
}
