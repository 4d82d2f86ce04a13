//! Exec and port-forward for `Runtime`: an exec is one long-lived connection to the pod's shim
//! (the answer carries the process's stdio fds; the exit comes later on the same
//! connection, and closing it kills the process), and a port-forward is a TCP connection made
//! from a short-lived thread that joined the sandbox's network namespace (a socket keeps the
//! namespace it was created in). Nothing here forks from the agent.

use std::io::{self, IoSliceMut, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use shim::protocol::{ExecSpec, Request, Response, MAX_MESSAGE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

use super::{blocking, Runtime, REQUEST_TIMEOUT};
use crate::{
    AttachSession, ExecIo, ExecOptions, ExecSession, ExecSyncResult, RuntimeError, ShimError,
};

/// Most output `exec_sync` keeps per stream (CRI runtimes cap ExecSync output at 16 MiB).
const MAX_SYNC_OUTPUT: usize = 16 << 20;
/// How long a port-forward connect inside the pod may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl Runtime {
    pub(super) async fn exec_session(
        &self,
        id: &str,
        options: &ExecOptions,
    ) -> Result<ExecSession, RuntimeError> {
        let sandbox_id = self.find_container(id)?;
        if options.cmd.is_empty() {
            return Err(RuntimeError::NoCommand {
                name: id.to_string(),
            });
        }
        let shim_err = {
            let id = id.to_string();
            move |source: ShimError| RuntimeError::Exec { id, source }
        };
        let io_err = {
            let shim_err = shim_err.clone();
            move |source: io::Error| shim_err(ShimError::Io { source })
        };
        let socket = self.pod(&sandbox_id).socket();
        let request = Request::Exec(Box::new(ExecSpec {
            id: id.to_string(),
            args: options.cmd.clone(),
            tty: options.tty,
            stdin: options.stdin,
        }));
        let (conn, response, mut fds) = blocking(move || call_with_fds(&socket, &request))
            .await?
            .map_err(io_err.clone())?;
        match response {
            Response::ExecStarted { .. } => {}
            other => return Err(shim_err(other.into())),
        }
        let io = |fd: OwnedFd| ExecIo::new(fd).map_err(io_err.clone());
        let mut session = ExecSession {
            stdin: None,
            stdout: None,
            stderr: None,
            tty: None,
            exit: Box::pin(std::future::pending()),
        };
        let expected = match (options.tty, options.stdin) {
            (true, _) => 1,
            (false, true) => 3,
            (false, false) => 2,
        };
        if fds.len() != expected {
            return Err(shim_err(ShimError::FdCount {
                got: fds.len(),
                expected,
            }));
        }
        let mut fds = fds.drain(..);
        if options.tty {
            session.tty = fds.next().map(io).transpose()?;
        } else {
            if options.stdin {
                session.stdin = fds.next().map(io).transpose()?;
            }
            session.stdout = fds.next().map(io).transpose()?;
            session.stderr = fds.next().map(io).transpose()?;
        }
        conn.set_nonblocking(true).map_err(io_err.clone())?;
        let conn = tokio::net::UnixStream::from_std(conn).map_err(io_err.clone())?;
        session.exit = Box::pin(async move {
            let mut line = String::new();
            BufReader::new(conn.take(MAX_MESSAGE))
                .read_line(&mut line)
                .await
                .map_err(io_err)?;
            match serde_json::from_str::<Response>(&line) {
                Ok(Response::ExecExited { exit_code }) => Ok(exit_code),
                Ok(other) => Err(shim_err(other.into())),
                Err(_) => Err(shim_err(ShimError::Gone)),
            }
        });
        Ok(session)
    }

    pub(super) async fn attach_session(
        &self,
        id: &str,
        stdin: bool,
    ) -> Result<AttachSession, RuntimeError> {
        let sandbox_id = self.find_container(id)?;
        let shim_err = {
            let id = id.to_string();
            move |source: ShimError| RuntimeError::Attach { id, source }
        };
        let io_err = {
            let shim_err = shim_err.clone();
            move |source: io::Error| shim_err(ShimError::Io { source })
        };
        let socket = self.pod(&sandbox_id).socket();
        let request = Request::Attach {
            id: id.to_string(),
            stdin,
        };
        let (conn, response, fds) = blocking(move || call_with_fds(&socket, &request))
            .await?
            .map_err(io_err.clone())?;
        drop(conn);
        let (tty, input) = match response {
            Response::AttachStarted { tty, input } => (tty, input),
            other => return Err(shim_err(other.into())),
        };
        let expected = 1 + usize::from(input);
        if fds.len() != expected {
            return Err(shim_err(ShimError::FdCount {
                got: fds.len(),
                expected,
            }));
        }
        let mut fds = fds
            .into_iter()
            .map(|fd| ExecIo::new(fd).map_err(io_err.clone()));
        let output = fds
            .next()
            .transpose()?
            .ok_or_else(|| shim_err(ShimError::Gone))?;
        let input = fds.next().transpose()?;
        Ok(AttachSession { output, input, tty })
    }

    pub(super) async fn exec_sync_impl(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecSyncResult, RuntimeError> {
        let options = ExecOptions {
            cmd: cmd.to_vec(),
            tty: false,
            stdin: false,
        };
        let session = self.exec_session(id, &options).await?;
        let ExecSession {
            stdout,
            stderr,
            exit,
            ..
        } = session;
        let run = async move {
            let (out, err, code) = tokio::join!(read_all(stdout), read_all(stderr), exit);
            Ok::<_, RuntimeError>(ExecSyncResult {
                stdout: out,
                stderr: err,
                exit_code: code?,
            })
        };
        match tokio::time::timeout(timeout, run).await {
            Ok(r) => r,
            // Dropping the session closed the shim connection, which kills the process.
            Err(_) => Err(RuntimeError::ExecTimedOut {
                id: id.to_string(),
                cmd: cmd.to_vec(),
                timeout,
            }),
        }
    }

    pub(super) async fn port_forward_impl(
        &self,
        sandbox_id: &str,
        port: u16,
    ) -> Result<tokio::net::TcpStream, RuntimeError> {
        self.sandbox_record(sandbox_id)?;
        let pod = self.pod(sandbox_id);
        let shim = self
            .shim_pid(&pod)
            .filter(|p| crate::procs::alive(&self.config.proc_root, p))
            .ok_or_else(|| RuntimeError::SandboxNotRunning {
                id: sandbox_id.to_string(),
            })?;
        let netns = self
            .config
            .proc_root
            .join(shim.pid.to_string())
            .join("ns/net");
        let forward_err = |source| RuntimeError::PortForward {
            sandbox_id: sandbox_id.to_string(),
            port,
            netns: netns.clone(),
            source,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let path = netns.clone();
        // A plain thread, not a tokio worker: setns changes the calling thread for good.
        std::thread::Builder::new()
            .name("port-forward".into())
            .spawn(move || {
                let _ = tx.send(connect_in_netns(&path, port));
            })
            .map_err(forward_err)?;
        let stream = rx
            .await
            .map_err(|_| forward_err(io::Error::other("the port-forward thread died")))?
            .map_err(forward_err)?;
        stream.set_nonblocking(true).map_err(forward_err)?;
        tokio::net::TcpStream::from_std(stream).map_err(forward_err)
    }
}

/// Joins the network namespace at `netns` (this thread only) and connects to the port.
fn connect_in_netns(netns: &Path, port: u16) -> io::Result<std::net::TcpStream> {
    let ns = std::fs::File::open(netns)?;
    nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    std::net::TcpStream::connect_timeout(
        &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        CONNECT_TIMEOUT,
    )
    .map_err(|e| match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => io::Error::new(e.kind(), "connection refused"),
        _ => e,
    })
}

async fn read_all(io: Option<ExecIo>) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(io) = io else { return out };
    let mut buf = vec![0u8; 16384];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = MAX_SYNC_OUTPUT.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

/// Sends `request` and reads the one-line answer with the fds that came with it.
fn call_with_fds(
    socket: &Path,
    request: &Request,
) -> io::Result<(StdUnixStream, Response, Vec<OwnedFd>)> {
    let conn = connect(socket)?;
    conn.set_read_timeout(Some(REQUEST_TIMEOUT + Duration::from_secs(30)))?;
    conn.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut line = serde_json::to_vec(request).map_err(io::Error::other)?;
    line.push(b'\n');
    (&conn).write_all(&line)?;
    let mut answer = Vec::new();
    let mut fds = Vec::new();
    while !answer.contains(&b'\n') {
        if answer.len() as u64 > MAX_MESSAGE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer too long",
            ));
        }
        let mut buf = [0u8; 4096];
        let mut cmsg = nix::cmsg_space!([RawFd; 4]);
        let n = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::MSG_CMSG_CLOEXEC,
            )
            .map_err(io::Error::from)?;
            for c in msg.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(rights) = c {
                    // SAFETY: SCM_RIGHTS just installed these fds in our table; we own them.
                    fds.extend(
                        rights
                            .into_iter()
                            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                    );
                }
            }
            msg.bytes
        };
        if n == 0 {
            return Err(io::Error::from(io::ErrorKind::UnexpectedEof));
        }
        answer.extend_from_slice(&buf[..n]);
    }
    conn.set_read_timeout(None)?;
    let response = serde_json::from_slice(&answer)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok((conn, response, fds))
}

/// Connects to the shim's socket, through `/proc/self/fd` when the path is too long for
/// `sun_path`.
fn connect(socket: &Path) -> io::Result<StdUnixStream> {
    if socket.as_os_str().len() < 100 {
        return StdUnixStream::connect(socket);
    }
    let dir = socket
        .parent()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let name = socket
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dir_fd = std::fs::File::open(dir)?;
    let short = PathBuf::from("/proc/self/fd")
        .join(dir_fd.as_raw_fd().to_string())
        .join(name);
    StdUnixStream::connect(short)
}
