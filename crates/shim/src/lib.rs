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
pub mod net;
pub mod nodev;
pub mod pidns;
pub mod protocol;
pub mod pty;
pub mod seccomp;
pub mod security;
pub mod server;
pub mod user;

use std::ffi::OsString;
use std::path::PathBuf;

/// Entry point of `peapod shim <pod dir>`; `args` are the arguments after `shim`. Must run
/// before any other thread exists (containers are cloned from this process).
pub fn main(args: Vec<OsString>) -> i32 {
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
