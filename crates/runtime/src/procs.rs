//! Process liveness by pid and start time, read from /proc, so that a shim found again after
//! an agent restart is recognised and a recycled pid is not; and a wait for a process's end
//! that a pidfd wakes the moment it exits, where polling /proc would add its interval to
//! every pod's deletion.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use tokio::io::unix::AsyncFd;
use tokio::time::Instant;

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

/// A pidfd of `pid` (Linux 5.3+); `None` when the kernel has none or the process is gone.
fn pidfd_open(pid: u32) -> Option<OwnedFd> {
    let pid = libc::pid_t::try_from(pid).ok()?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    let fd = i32::try_from(fd).ok().filter(|fd| *fd >= 0)?;
    // SAFETY: the descriptor was just returned to us and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Waits until the recorded process is gone or `timeout` has passed; true when it is gone.
/// With the host's /proc, a pidfd wakes the wait as the process exits; otherwise (another
/// proc root, a kernel without pidfds) /proc is read every `poll`.
pub async fn wait_gone(proc_root: &Path, p: &ShimPid, timeout: Duration, poll: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    if proc_root == Path::new("/proc") {
        if let Some(fd) = pidfd_open(p.pid) {
            // Opened after the pid may have been reused: the descriptor counts only if the
            // recorded process is still the one behind the pid.
            if !alive(proc_root, p) {
                return true;
            }
            // SAFETY: the descriptor is owned by the AsyncFd and closed only when it drops.
            if let Ok(fd) = unsafe { AsyncFd::register(fd) } {
                let _ = tokio::time::timeout_at(deadline, fd.readable()).await;
                return !alive(proc_root, p);
            }
        }
    }
    while alive(proc_root, p) && Instant::now() < deadline {
        tokio::time::sleep(poll).await;
    }
    !alive(proc_root, p)
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

    fn recorded(child: &std::process::Child) -> ShimPid {
        let (start_time, _) = stat(Path::new("/proc"), child.id()).expect("child's stat");
        ShimPid {
            pid: child.id(),
            start_time,
        }
    }

    #[tokio::test]
    async fn waits_for_an_exit_and_gives_up_at_the_timeout() {
        let proc_root = Path::new("/proc");
        let poll = Duration::from_millis(20);
        let mut short = std::process::Command::new("sleep")
            .arg("0.2")
            .spawn()
            .expect("sleep");
        let p = recorded(&short);
        assert!(wait_gone(proc_root, &p, Duration::from_secs(30), poll).await);
        short.wait().expect("reap");
        // Gone already (reaped): at once.
        assert!(wait_gone(proc_root, &p, Duration::from_secs(30), poll).await);

        let mut long = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let p = recorded(&long);
        assert!(!wait_gone(proc_root, &p, Duration::from_millis(100), poll).await);
        long.kill().expect("kill");
        long.wait().expect("reap");
        assert!(wait_gone(proc_root, &p, Duration::from_secs(30), poll).await);
    }
}
