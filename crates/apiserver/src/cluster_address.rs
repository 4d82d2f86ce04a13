//! How pods reach the API server: the server also listens on the `kubernetes` Service's own
//! address (10.96.0.1:443), which it puts on the node's loopback device, so a pod's packets
//! to the ClusterIP arrive through its default route with no NAT rule — the way peapod's
//! cluster DNS serves 10.96.0.10. (kube-proxy would DNAT the ClusterIP to the server's
//! advertise address; peapod's server listens on 127.0.0.1 by default, which pods cannot
//! reach, and routing loopback from pods is kube's CVE-2020-8558.) While another server on
//! the host holds the address, this one keeps trying; on shutdown it removes the address it
//! added.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

/// How often a server that could not take the address tries again.
const RETRY: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum AddressError {
    #[error("running ip addr {verb} {addr}: {detail}")]
    Ip {
        verb: &'static str,
        addr: IpAddr,
        detail: String,
    },
}

/// Puts `addr/32` (or /128) on `lo` unless it is there; true when this call added it.
pub fn ensure_on_loopback(addr: IpAddr) -> Result<bool, AddressError> {
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    let out = Command::new("ip")
        .args(["addr", "add", &format!("{addr}/{prefix}"), "dev", "lo"])
        .output()
        .map_err(|e| AddressError::Ip {
            verb: "add",
            addr,
            detail: e.to_string(),
        })?;
    if out.status.success() {
        return Ok(true);
    }
    let err = String::from_utf8_lossy(&out.stderr);
    // iproute2 says "File exists" or (newer) "Address already assigned".
    if err.contains("File exists") || err.contains("already assigned") {
        return Ok(false);
    }
    Err(AddressError::Ip {
        verb: "add",
        addr,
        detail: err.trim().to_string(),
    })
}

/// Removes `addr` from `lo`; absent is fine.
pub fn remove_from_loopback(addr: IpAddr) {
    let prefix = if addr.is_ipv4() { 32 } else { 128 };
    let _ = Command::new("ip")
        .args(["addr", "del", &format!("{addr}/{prefix}"), "dev", "lo"])
        .output();
}

/// Removes the address unless a process (another peapod on the host) still listens on it:
/// for `peapod reset`, which must not cut a running neighbour off.
pub fn remove_if_unused(listen: SocketAddr) {
    match std::net::TcpListener::bind(listen) {
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {}
        _ => remove_from_loopback(listen.ip()),
    }
}

/// Takes `listen` (adding its address to `lo`) and hands each listener to `serve`, until
/// `stop` turns true; retries while the address or port is held elsewhere.
pub async fn run<F, Fut>(listen: SocketAddr, mut stop: tokio::sync::watch::Receiver<bool>, serve: F)
where
    F: Fn(tokio::net::TcpListener, tokio::sync::watch::Receiver<bool>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut added = false;
    let mut warned = false;
    while !*stop.borrow() {
        let bound = match ensure_on_loopback(listen.ip()) {
            Ok(now_added) => {
                added |= now_added;
                tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        };
        match bound {
            Ok(listener) => {
                tracing::info!(%listen, "API server serving in-cluster clients");
                serve(listener, stop.clone()).await;
                break;
            }
            Err(e) if !warned => {
                tracing::warn!(%listen, error = %e, "cannot serve in-cluster clients yet; retrying");
                warned = true;
            }
            Err(_) => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(RETRY) => {}
            _ = stop.changed() => {}
        }
    }
    if added {
        remove_from_loopback(listen.ip());
    }
}
