//! Pseudo-terminals for containers and execs with `tty: true`, allocated as runc does with its
//! console socket: the process itself opens the pty in the container's own devpts (so `tty`
//! names `/dev/pts/0` there), sends the master to the shim over a socket, and makes the slave
//! its controlling terminal and stdio. The shim holds the master: it reads the terminal's
//! output and writes its input.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::{open, OFlag};
use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use nix::sys::stat::Mode;

/// The tag of the message that carries the master.
pub const MASTER_TAG: &[u8] = b"P";

/// What failed while setting up a terminal.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    #[error("{what}: {source}")]
    Sys {
        what: &'static str,
        #[source]
        source: nix::Error,
    },
    #[error("opening {name}: {source}")]
    Slave {
        name: String,
        #[source]
        source: nix::Error,
    },
}

fn sys(what: &'static str) -> impl FnOnce(nix::Error) -> PtyError {
    move |source| PtyError::Sys { what, source }
}

/// In the process about to exec: allocates a pty, sends the master on `report` (one message
/// tagged [`MASTER_TAG`]), starts a new session with the slave as its controlling terminal,
/// and makes the slave stdin, stdout and stderr.
pub fn open_in_child(report: &OwnedFd) -> Result<(), PtyError> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)
        .map_err(sys("allocating a pty"))?;
    grantpt(&master).map_err(sys("grantpt"))?;
    unlockpt(&master).map_err(sys("unlockpt"))?;
    let name = ptsname_r(&master).map_err(sys("ptsname"))?;
    let slave = open(
        Path::new(&name),
        OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| PtyError::Slave {
        name: name.clone(),
        source,
    })?;
    let fds = [master.as_raw_fd()];
    sendmsg::<()>(
        report.as_raw_fd(),
        &[IoSlice::new(MASTER_TAG)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(sys("passing the pty"))?;
    drop(master);
    nix::unistd::setsid().map_err(sys("setsid"))?;
    // SAFETY: TIOCSCTTY takes an int argument and touches no memory of ours.
    if unsafe { libc::ioctl(slave.as_raw_fd(), libc::TIOCSCTTY, 0) } != 0 {
        return Err(PtyError::Sys {
            what: "setting the controlling terminal",
            source: nix::Error::last(),
        });
    }
    let stdio = sys("redirecting stdio to the tty");
    nix::unistd::dup2_stdin(slave.as_fd())
        .and_then(|_| nix::unistd::dup2_stdout(slave.as_fd()))
        .and_then(|_| nix::unistd::dup2_stderr(slave.as_fd()))
        .map_err(stdio)?;
    Ok(())
}

/// In the shim, once the process has exec'd: the master it sent on `sock`, if any (the
/// message was queued before the exec, so this does not wait).
pub fn take_master(sock: &OwnedFd) -> Result<Option<OwnedFd>, nix::Error> {
    let mut buf = [0u8; 16];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = match recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC | MsgFlags::MSG_DONTWAIT,
    ) {
        Ok(m) => m,
        Err(nix::Error::EAGAIN) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut master = None;
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(rights) = c {
            for fd in rights {
                // SAFETY: SCM_RIGHTS just installed this fd in our table; we own it.
                let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                if master.is_none() {
                    master = Some(fd);
                }
            }
        }
    }
    Ok(master)
}

/// Sets the terminal size of the pty behind `master` (TIOCSWINSZ); the foreground process
/// group gets SIGWINCH from the kernel.
pub fn resize(master: &impl AsRawFd, width: u16, height: u16) -> Result<(), nix::Error> {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
    let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if rc != 0 {
        return Err(nix::Error::last());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

    #[test]
    fn master_travels_and_resizes() {
        let (a, b) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .expect("socketpair");
        assert!(take_master(&a).expect("empty").is_none());
        let master = nix::pty::posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY).expect("pty");
        let fds = [master.as_raw_fd()];
        sendmsg::<()>(
            b.as_raw_fd(),
            &[IoSlice::new(MASTER_TAG)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::empty(),
            None,
        )
        .expect("send");
        let got = take_master(&a).expect("recv").expect("a master");
        resize(&got, 120, 40).expect("resize");
        let mut ws = libc::winsize {
            ws_row: 0,
            ws_col: 0,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCGWINSZ writes one winsize to the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
        assert_eq!(rc, 0);
        assert_eq!((ws.ws_col, ws.ws_row), (120, 40));
    }
}
