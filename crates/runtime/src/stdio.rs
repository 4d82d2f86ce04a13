//! The caller's end of an exec'd process's stdio (a pipe end or a pty master) as an async,
//! shareable handle: the node agent streams the bytes itself, so the shim never copies them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// One stdio fd of an exec, nonblocking and registered with tokio. Reads and writes take
/// `&self`, so one pty master can be read and written from two tasks at once.
#[derive(Debug)]
pub struct ExecIo {
    fd: AsyncFd<OwnedFd>,
}

impl ExecIo {
    /// Wraps `fd` (made nonblocking). Must be called inside a tokio runtime.
    pub fn new(fd: OwnedFd) -> io::Result<Self> {
        nix::fcntl::fcntl(
            &fd,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .map_err(io::Error::from)?;
        // SAFETY: the AsyncFd owns the OwnedFd, so the fd stays open and the same file for
        // the AsyncFd's whole life.
        let fd =
            unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE | Interest::WRITABLE) }
                .map_err(io::Error::from)?;
        Ok(Self { fd })
    }

    /// Reads some bytes; `Ok(0)` at EOF. A pty master whose terminal side every process
    /// closed reports EIO, which is its EOF.
    pub async fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Ok(n)) => return Ok(n),
                Ok(Err(e)) if e.raw_os_error() == Some(libc::EIO) => return Ok(0),
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    /// Writes all of `data`.
    pub async fn write_all(&self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(io::Error::from))
            {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Sets the terminal size (TIOCSWINSZ) when this is a pty master; the process gets
    /// SIGWINCH from the kernel.
    pub fn resize(&self, width: u16, height: u16) -> io::Result<()> {
        let ws = libc::winsize {
            ws_row: height,
            ws_col: width,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which outlives the call.
        let rc = unsafe { libc::ioctl(self.fd.get_ref().as_raw_fd(), libc::TIOCSWINSZ, &ws) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pipe_round_trip_and_eof() {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        let (r, w) = (ExecIo::new(r).expect("r"), ExecIo::new(w).expect("w"));
        w.write_all(b"hello").await.expect("write");
        drop(w);
        let mut buf = [0u8; 16];
        let n = r.read(&mut buf).await.expect("read");
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(r.read(&mut buf).await.expect("eof"), 0);
    }
}
