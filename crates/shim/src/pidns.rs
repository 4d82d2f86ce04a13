//! `shareProcessNamespace: true`: the shim becomes PID 1 of a PID namespace that all the
//! pod's containers join, as the pause container is in Kubernetes. A process cannot move
//! itself into a new PID namespace, so the shim the runtime started unshares CLONE_NEWPID
//! and forks: the child is PID 1 and carries on as the shim, the parent records the child's
//! pid in `shim.pid` (where the runtime looks for the shim) and exits. PID 1 also reaps every
//! orphan of the pod, which the event loop already does for any pid it is told of.
//!
//! The child then mounts a /proc of the new namespace in a mount namespace of its own (a
//! slave of the host's, so volumes mounted later still reach new containers): pids the shim
//! reads under /proc must be the pids it sees.

use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sched::CloneFlags;
use nix::unistd::{fork, ForkResult};
use serde::Serialize;

use crate::protocol::{write_json_volatile, PodDir};

/// Which side of the fork we are on.
pub enum Role {
    /// The original process: its work is done once the pid is recorded.
    Parent,
    /// PID 1 of the pod's PID namespace: runs the shim.
    Init,
}

/// Failures entering the pod's PID namespace.
#[derive(Debug, thiserror::Error)]
pub enum PidNsError {
    #[error("creating the pod PID namespace: {0}")]
    Unshare(#[source] nix::Error),
    #[error("forking the pod's PID 1: {0}")]
    Fork(#[source] nix::Error),
    #[error("recording the shim pid: {0}")]
    Record(#[source] std::io::Error),
    #[error("mounting /proc of the pod PID namespace: {0}")]
    Proc(#[source] nix::Error),
}

/// The runtime's `shim.pid` record (pid and its start time in clock ticks since boot).
#[derive(Serialize)]
struct ShimPid {
    pid: u32,
    start_time: u64,
}

/// Starts time of `pid` (field 22 of /proc/<pid>/stat; the comm may hold spaces).
fn start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 1..];
    rest.split_whitespace().nth(22 - 3)?.parse().ok()
}

/// Unshares the PID namespace and forks; see the module docs. Must run while the process is
/// single-threaded.
pub fn enter(pod: &PodDir) -> Result<Role, PidNsError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(PidNsError::Unshare)?;
    // SAFETY: the shim is single-threaded here (nothing has spawned a thread yet), so the
    // child owns a consistent copy of the whole process.
    match unsafe { fork() }.map_err(PidNsError::Fork)? {
        ForkResult::Parent { child } => {
            let record = ShimPid {
                pid: child.as_raw() as u32,
                start_time: start_time(child.as_raw()).unwrap_or(0),
            };
            if let Err(e) = write_json_volatile(&pod.shim_pid(), &record) {
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
                return Err(PidNsError::Record(e));
            }
            Ok(Role::Parent)
        }
        ForkResult::Child => {
            mount_own_proc()?;
            Ok(Role::Init)
        }
    }
}

fn mount_own_proc() -> Result<(), PidNsError> {
    nix::sched::unshare(CloneFlags::CLONE_NEWNS).map_err(PidNsError::Proc)?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_SLAVE,
        None::<&str>,
    )
    .map_err(PidNsError::Proc)?;
    mount(
        Some("proc"),
        Path::new("/proc"),
        Some("proc"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(PidNsError::Proc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_start_time() {
        let me = std::process::id() as i32;
        assert!(start_time(me).is_some_and(|t| t > 0));
        assert_eq!(start_time(-5), None);
    }
}
