//! Process liveness by pid and start time, read from /proc, so that a shim found again after
//! an agent restart is recognised and a recycled pid is not.

use std::path::Path;

use crate::records::ShimPid;

/// Start time (field 22) and state (field 3) of `/proc/<pid>/stat`.
pub fn stat(proc_root: &Path, pid: u32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    parse_stat(&text)
}

/// Parses a stat line; the command name may contain spaces and parentheses, so fields are
/// counted after the last ')'.
pub fn parse_stat(text: &str) -> Option<(u64, char)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    // After the comm, the state is field 3; starttime is field 22.
    let start = fields.get(22 - 3)?.parse().ok()?;
    Some((start, state))
}

/// Whether the recorded process still runs (and is not a zombie awaiting its reaper).
pub fn alive(proc_root: &Path, p: &ShimPid) -> bool {
    matches!(stat(proc_root, p.pid), Some((start, state)) if start == p.start_time && state != 'Z' && state != 'X')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line), Some((98765, 'S')));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_and_wrong_start_time_is_not() {
        let me = std::process::id();
        let (start, _) = stat(Path::new("/proc"), me).expect("own stat");
        assert!(alive(
            Path::new("/proc"),
            &ShimPid {
                pid: me,
                start_time: start
            }
        ));
        assert!(!alive(
            Path::new("/proc"),
            &ShimPid {
                pid: me,
                start_time: start + 1
            }
        ));
    }
}
