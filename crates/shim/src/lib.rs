//! The per-pod shim: a small, single-threaded, synchronous process (the `peapod` binary
//! re-executed as `peapod shim <pod dir>`) that holds the pod's NET/IPC/UTS namespaces, is
//! its infra ("pause") process, starts containers, copies their output into CRI log files
//! and records their exits on disk, so pods survive the node agent being killed.
//!
//! The runtime talks to it with [`protocol::Request`]s over `<pod dir>/shim.sock`.

pub mod attach;
pub mod caps;
pub mod container;
pub mod exec;
pub mod mountattr;
pub mod net;
pub mod nodev;
pub mod pidns;
pub mod protocol;
pub mod pty;
pub mod seccomp;
pub mod security;
pub mod server;
pub mod user;
pub mod userns;

use std::ffi::OsString;
use std::path::PathBuf;

/// Entry point of `peapod shim <pod dir>`; `args` are the arguments after `shim`. Must run
/// before any other thread exists (containers are cloned from this process).
pub fn main(args: Vec<OsString>) -> i32 {
    close_inherited_fds();
    let Some(dir) = args.first() else {
        eprintln!("usage: peapod shim <pod dir>");
        return 2;
    };
    match server::run(&PathBuf::from(dir)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{} shim failed: {e}", jiff::Timestamp::now());
            1
        }
    }
}

/// Closes every descriptor above stderr the shim was started with. The shim needs none
/// (the runtime hands it only stdin, its readiness pipe and its log), and whatever the agent
/// itself inherited without close-on-exec (a lock, a socket of its supervisor, a terminal)
/// must reach neither the long-lived shim, which would hold it open for the pod's life, nor
/// the containers it starts, where an open host file is a way out of the container.
fn close_inherited_fds() {
    let open: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|fd| *fd > 2)
            .collect(),
        Err(e) => {
            eprintln!("shim: listing inherited descriptors: {e}");
            return;
        }
    };
    // The directory's own descriptor is among them and already closed by now: EBADF.
    for fd in open {
        let _ = nix::unistd::close(fd);
    }
}
