//! The accept loop every HTTPS listener of peapod shares (the API server, the node API), with
//! the limits that keep one client from taking a listener down: a deadline on the TLS
//! handshake, kube-apiserver's deadline on reading request headers, a cap on open
//! connections, HTTP/2 keep-alive pings, and one task per connection, so a failure or a
//! panic in one request ends that request (or at most its connection) and nothing else.
//! The client's certificate chain, when it presented one the TLS config verified, goes into
//! each request's extensions as [`PeerCertificates`].

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// The certificate chain a client presented (leaf first), verified by the listener's client
/// certificate verifier during the handshake.
#[derive(Debug, Clone)]
pub struct PeerCertificates(pub Arc<Vec<rustls::pki_types::CertificateDer<'static>>>);

/// How long clients may take at each step, and how many may be connected at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From accepting the TCP connection to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// For the first bytes of a connection's first request, and for the headers of each
    /// HTTP/1.1 request once its first byte came (an idle keep-alive connection waits, as
    /// with Go's servers; the connection cap bounds those).
    pub header_read_timeout: Duration,
    /// Open connections; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for Limits {
    /// kube-apiserver reads request headers for at most 32 s (`ReadHeaderTimeout`, which Go
    /// also applies to the TLS handshake); a handshake takes milliseconds, so 10 s is plenty.
    fn default() -> Self {
        Limits {
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(32),
            max_connections: 1000,
        }
    }
}

/// How often an idle HTTP/2 connection is pinged, and how long the answer may take.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Concurrent streams on one HTTP/2 connection, as kube-apiserver allows: a client that
/// multiplexes all its watches on one connection (client-go, and peapod's own components)
/// holds one long-running stream per watch.
const H2_MAX_STREAMS: u32 = 1000;
/// Pause after a failed `accept` (out of file descriptors): retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `app` over TLS on `listener` until `stop` turns true or its sender goes; then
/// closes every connection and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: axum::Router,
    limits: Limits,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
            // Reap finished connections (and their panics) so the set does not grow.
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            accepted = listener.accept() => {
                let (tcp, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(ACCEPT_BACKOFF).await;
                        continue;
                    }
                };
                // Replies go out at once: an HTTP/2 response is several small writes
                // (headers, data), which Nagle's algorithm would hold until the peer's
                // delayed ACK, 40 ms on Linux. Go's servers set this by default.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(%peer, error = %e, "setting TCP_NODELAY failed");
                }
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, max = limits.max_connections, "too many connections; closing a new one");
                    drop(tcp);
                    continue;
                };
                let acceptor = acceptor.clone();
                let app = app.clone();
                conns.spawn(async move {
                    let _slot = slot;
                    let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                        Ok(Ok(t)) => t,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
                    let peer_certs = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .filter(|c| !c.is_empty())
                        .map(|c| PeerCertificates(Arc::new(c.iter().map(|c| c.clone().into_owned()).collect())));
                    let service = TowerToHyperService::new(tower::ServiceExt::map_request(
                        app,
                        move |mut req: Request<hyper::body::Incoming>| {
                            if let Some(p) = &peer_certs {
                                req.extensions_mut().insert(p.clone());
                            }
                            req
                        },
                    ));
                    // The first bytes of the first request are due within the header
                    // deadline too (hyper starts that clock at the first byte only), as Go's
                    // server reads the first request under `ReadHeaderTimeout`.
                    let tls = match tokio::time::timeout(limits.header_read_timeout, Prefixed::first_read(tls)).await {
                        Ok(Ok(io)) => io,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "reading the first request failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "no request before the header deadline");
                            return;
                        }
                    };
                    let mut builder = auto::Builder::new(TokioExecutor::new());
                    builder
                        .http1()
                        .timer(TokioTimer::new())
                        .header_read_timeout(limits.header_read_timeout);
                    builder
                        .http2()
                        .timer(TokioTimer::new())
                        .keep_alive_interval(H2_KEEP_ALIVE)
                        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
                        .max_concurrent_streams(H2_MAX_STREAMS);
                    // ALPN decides; without it the client speaks HTTP/1.1, whose header
                    // deadline then also covers a client that sends nothing at all.
                    let builder = if h2 { builder.http2_only() } else { builder.http1_only() };
                    if let Err(e) = builder
                        .serve_connection_with_upgrades(TokioIo::new(tls), service)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "connection ended with error");
                    }
                });
            }
        }
    }
    conns.shutdown().await;
}

/// A stream whose first bytes were already read: they are handed out again before the rest.
struct Prefixed<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S: AsyncRead + Unpin> Prefixed<S> {
    /// Waits for the first bytes of `inner` (an empty head when the peer closed at once).
    async fn first_read(mut inner: S) -> std::io::Result<Self> {
        let mut head = vec![0u8; 4096];
        let n = inner.read(&mut head).await?;
        head.truncate(n);
        Ok(Prefixed { head, at: 0, inner })
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.head.get(this.at..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Middleware that turns a panicking handler into a 500 answer for that request alone.
pub async fn catch_panic(req: Request, next: Next) -> Response {
    match std::panic::AssertUnwindSafe(next.run(req))
        .catch_unwind()
        .await
    {
        Ok(resp) => resp,
        Err(_) => {
            tracing::error!("request handler panicked");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests;
