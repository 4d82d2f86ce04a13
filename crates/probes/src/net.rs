//! Connections into a pod's network namespace. A socket belongs to the network namespace of
//! the thread that created it, so a small dedicated thread pool (never tokio's workers, whose
//! namespace must stay the host's) does `setns(CLONE_NEWNET)` + `socket()` and hands the
//! unconnected socket back; the connect and all I/O then run on tokio like any socket.
//! Probes and hooks reach 127.0.0.1 of the pod this way, with or without a pod network.
//! The pod's own IP is dialled from the node, as the kubelet does (the cluster network
//! lets every node reach its pods): no namespace switch and no thread hop for the probes
//! that use the default host.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// Threads in the pool: socket creation takes microseconds, so two serve hundreds of probes
/// a second.
const THREADS: usize = 2;

struct Job {
    netns: PathBuf,
    v6: bool,
    reply: oneshot::Sender<io::Result<OwnedFd>>,
}

/// The pool of namespace-switching threads.
struct Pool {
    tx: Mutex<mpsc::Sender<Job>>,
}

fn socket_in(netns: &Path, v6: bool) -> io::Result<OwnedFd> {
    let ns = File::open(netns)?;
    setns(&ns, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
    let family = if v6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    socket(
        family,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        None,
    )
    .map_err(io::Error::from)
}

impl Pool {
    fn start() -> Self {
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = std::sync::Arc::new(Mutex::new(rx));
        for i in 0..THREADS {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("netns-{i}"))
                .spawn(move || loop {
                    let job = {
                        let guard = rx.lock().unwrap_or_else(|e| e.into_inner());
                        guard.recv()
                    };
                    let Ok(job) = job else { return };
                    // The receiver may have given up (timeout): nothing to do then.
                    let _ = job.reply.send(socket_in(&job.netns, job.v6));
                });
            if let Err(err) = spawned {
                tracing::warn!(error = %err, "starting a network namespace thread failed");
            }
        }
        Self { tx: Mutex::new(tx) }
    }

    async fn socket(&self, netns: &Path, v6: bool) -> io::Result<OwnedFd> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            netns: netns.to_path_buf(),
            v6,
            reply,
        };
        self.tx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| io::Error::other("network namespace threads are gone"))?;
        rx.await
            .map_err(|_| io::Error::other("network namespace thread dropped the request"))?
    }
}

/// The process' pool, started on first use: threads are a process resource, like tokio's.
fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(Pool::start)
}

/// Where connections of one pod are made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Dialer {
    /// The pod's network namespace; `None` dials from the host (host-network pods).
    pub netns: Option<PathBuf>,
    /// The pod's IP: connections to it are made from the node.
    pub pod_ip: Option<IpAddr>,
}

/// Go's wording of dial errors, which kubelet's probe messages carry.
pub fn dial_error(addr: SocketAddr, err: &io::Error) -> String {
    let what = match err.kind() {
        io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        io::ErrorKind::NetworkUnreachable => "connect: network is unreachable".to_string(),
        io::ErrorKind::HostUnreachable => "connect: no route to host".to_string(),
        _ => err.to_string(),
    };
    format!("dial tcp {addr}: {what}")
}

/// A failed connect, worded as Go's net package words it (`dial_error`).
#[derive(Debug, thiserror::Error)]
#[error("{}", dial_error(*.addr, .source))]
pub struct DialError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

impl Dialer {
    /// Connects to `addr` within `timeout`.
    pub async fn connect(&self, addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        let inside = self
            .netns
            .as_ref()
            .filter(|_| self.pod_ip != Some(addr.ip()));
        let socket = match inside {
            Some(ns) => {
                let fd = pool().socket(ns, addr.is_ipv6()).await?;
                TcpSocket::from_std_stream(std::net::TcpStream::from(fd))
            }
            None if addr.is_ipv6() => TcpSocket::new_v6()?,
            None => TcpSocket::new_v4()?,
        };
        match tokio::time::timeout(timeout, socket.connect(addr)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "i/o timeout")),
        }
    }

    /// Resolves `host` (an IP literal, `localhost`, or a name from the host's resolver).
    pub async fn resolve(&self, host: &str, port: u16) -> io::Result<SocketAddr> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, port));
        }
        if bare == "localhost" {
            return Ok(SocketAddr::new(IpAddr::from([127, 0, 0, 1]), port));
        }
        tokio::net::lookup_host((bare, port))
            .await?
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such host"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn connects_inside_own_namespace_and_reports_refusal() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // Our own namespace through the pool: the same loopback.
        let d = Dialer {
            netns: Some(PathBuf::from("/proc/self/ns/net")),
            pod_ip: None,
        };
        d.connect(addr, Duration::from_secs(1))
            .await
            .expect("connect");
        drop(listener);
        let err = Dialer::default()
            .connect(addr, Duration::from_secs(1))
            .await
            .expect_err("refused");
        assert_eq!(
            dial_error(addr, &err),
            format!("dial tcp {addr}: connect: connection refused")
        );
    }

    #[tokio::test]
    async fn the_pod_ip_is_dialled_from_the_node_and_other_addresses_from_the_pod() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        // A namespace that cannot be entered: only a dial that skips it can succeed.
        let d = Dialer {
            netns: Some(PathBuf::from("/nonexistent/netns")),
            pod_ip: Some(addr.ip()),
        };
        d.connect(addr, Duration::from_secs(1))
            .await
            .expect("the pod IP is reached from the node");
        let other = SocketAddr::new(IpAddr::from([127, 0, 0, 2]), addr.port());
        let err = d
            .connect(other, Duration::from_secs(1))
            .await
            .expect_err("other addresses go through the pod's namespace");
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }
}
