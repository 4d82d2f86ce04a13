//! `kubectl attach` inside the shim: the sessions connected to containers' main processes.
//! Each session is a SEQPACKET socket pair whose other end the caller (the node agent) holds:
//! the shim copies each chunk the process writes to every session of its container as well
//! as to the log, and learns from the socket when the caller's stdin ended or the session
//! went away, which is what `stdinOnce` closes the process's stdin on. The caller writes
//! stdin itself, on a duplicate of the pty master or stdin pipe it got with the session.

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crilog::Stream;
use nix::sys::socket::{recv, send, socketpair, AddressFamily, MsgFlags, SockFlag, SockType};

use crate::protocol::{ATTACH_CLOSE_STDIN, ATTACH_STDERR, ATTACH_STDOUT};

/// One caller attached to a container.
struct Session {
    container: String,
    sock: OwnedFd,
    /// The caller may write stdin, and has not said it ended.
    stdin: bool,
}

/// Every attach session of the pod, by a key that stays valid while others come and go.
#[derive(Default)]
pub struct Sessions {
    next: u64,
    sessions: BTreeMap<u64, Session>,
}

/// What a session's readiness meant.
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// Nothing to act on.
    None,
    /// The caller's stdin on `container` ended (it said so, or the session closed).
    StdinEnded { container: String },
}

impl Sessions {
    /// A new session on `container`; returns the caller's end of its socket.
    pub fn open(&mut self, container: &str, stdin: bool) -> Result<OwnedFd, nix::Error> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        self.next += 1;
        self.sessions.insert(
            self.next,
            Session {
                container: container.to_string(),
                sock: ours,
                stdin,
            },
        );
        Ok(theirs)
    }

    /// The sockets to poll, with their keys.
    pub fn polled(&self) -> impl Iterator<Item = (u64, BorrowedFd<'_>)> {
        self.sessions.iter().map(|(k, s)| (*k, s.sock.as_fd()))
    }

    /// Handles a session socket that polled ready: a close-stdin message, or the caller gone.
    pub fn ready(&mut self, key: u64) -> Event {
        let Some(s) = self.sessions.get_mut(&key) else {
            return Event::None;
        };
        let mut buf = [0u8; 16];
        match recv(s.sock.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) {
            Ok(n) if n > 0 => {
                if buf[0] == ATTACH_CLOSE_STDIN && s.stdin {
                    s.stdin = false;
                    return Event::StdinEnded {
                        container: s.container.clone(),
                    };
                }
                Event::None
            }
            Err(nix::Error::EAGAIN) | Err(nix::Error::EINTR) => Event::None,
            // EOF or a broken socket: the session is over.
            Ok(_) | Err(_) => match self.sessions.remove(&key) {
                Some(Session {
                    container,
                    stdin: true,
                    ..
                }) => Event::StdinEnded { container },
                _ => Event::None,
            },
        }
    }

    /// Copies a chunk of `container`'s output to its sessions. A session that cannot take
    /// it now (its caller is not reading) loses the chunk rather than stall the shim.
    pub fn broadcast(&mut self, container: &str, stream: Stream, data: &[u8]) {
        if !self.sessions.values().any(|s| s.container == container) {
            return;
        }
        let tag = match stream {
            Stream::Stdout => ATTACH_STDOUT,
            Stream::Stderr => ATTACH_STDERR,
        };
        let mut msg = Vec::with_capacity(data.len() + 1);
        msg.push(tag);
        msg.extend_from_slice(data);
        for s in self.sessions.values().filter(|s| s.container == container) {
            let _ = send(
                s.sock.as_raw_fd(),
                &msg,
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            );
        }
    }

    /// Ends every session of `container` (its process exited): the callers see EOF.
    pub fn close_container(&mut self, container: &str) {
        self.sessions.retain(|_, s| s.container != container);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_msg(fd: &OwnedFd) -> Vec<u8> {
        let mut buf = [0u8; 256];
        let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()).expect("recv");
        buf[..n].to_vec()
    }

    #[test]
    fn output_reaches_the_container_sessions_only() {
        let mut s = Sessions::default();
        let a = s.open("a", false).expect("open a");
        let b = s.open("b", false).expect("open b");
        s.broadcast("a", Stream::Stderr, b"oops");
        assert_eq!(read_msg(&a), b"\x02oops");
        let mut buf = [0u8; 8];
        assert_eq!(
            recv(b.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT),
            Err(nix::Error::EAGAIN)
        );
        s.close_container("a");
        assert_eq!(recv(a.as_raw_fd(), &mut buf, MsgFlags::empty()), Ok(0));
    }

    #[test]
    fn stdin_ends_once_by_message_or_hangup() {
        let mut s = Sessions::default();
        let a = s.open("c", true).expect("open");
        let key = s.polled().map(|(k, _)| k).next().expect("key");
        send(a.as_raw_fd(), &[ATTACH_CLOSE_STDIN], MsgFlags::empty()).expect("send");
        assert_eq!(
            s.ready(key),
            Event::StdinEnded {
                container: "c".into()
            }
        );
        drop(a);
        assert_eq!(s.ready(key), Event::None);
        assert_eq!(s.polled().count(), 0);

        let b = s.open("c", true).expect("open");
        let key = s.polled().map(|(k, _)| k).next().expect("key");
        drop(b);
        assert_eq!(
            s.ready(key),
            Event::StdinEnded {
                container: "c".into()
            }
        );
    }
}
