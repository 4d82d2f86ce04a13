//! The limits against a real listener on loopback: each test exceeds one and checks both the
//! refusal and that the server keeps serving.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::*;

struct Server {
    addr: SocketAddr,
    client: tokio_rustls::TlsConnector,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(limits: Limits) -> Server {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::try_from(cert.signing_key.serialize_der()).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .expect("server config");
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der).expect("root");
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let app = axum::Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route(
            "/panic",
            get(|| async {
                let v: Vec<u8> = Vec::new();
                // An out-of-bounds index, as a handler bug on odd input would do.
                v[usize::from(v.is_empty())].to_string()
            }),
        )
        .layer(axum::middleware::from_fn(catch_panic));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop, rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(serve(listener, Arc::new(server), app, limits, rx));
    Server {
        addr,
        client: tokio_rustls::TlsConnector::from(Arc::new(client)),
        stop,
        task,
    }
}

impl Server {
    async fn tls(&self) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        let name = ServerName::try_from("localhost").expect("name");
        self.client.connect(name, tcp).await
    }

    /// `GET path` on a new connection: the status line, or the error.
    async fn get(&self, path: &str) -> std::io::Result<String> {
        let mut tls = self.tls().await?;
        tls.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
        let mut text = String::new();
        tls.read_to_string(&mut text).await?;
        Ok(text.lines().next().unwrap_or_default().to_string())
    }

    async fn stop(self) {
        let _ = self.stop.send(true);
        self.task.await.expect("server task");
    }
}

/// Reads until the peer closes (Ok(0) or an error); `false` if it is still open after a
/// generous deadline.
async fn closed_by_peer<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// Polls `f` until it gives `Some`, for at most 20 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_and_freed_slots_are_reused() {
    let server = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let first = server.tls().await.expect("first connection");
    let _second = server.tls().await.expect("second connection");
    // The third is closed at once: its handshake fails (or its first read sees the end).
    match server.tls().await {
        Err(_) => {}
        Ok(mut third) => assert!(closed_by_peer(&mut third).await, "third connection kept"),
    }
    drop(first);
    let status = eventually("a freed slot", || async {
        server.get("/ok").await.ok().filter(|s| s.contains("200"))
    })
    .await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_starts_tls_is_cut_off() {
    let server = start(Limits {
        handshake_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut silent = TcpStream::connect(server.addr).await.expect("connect");
    assert!(closed_by_peer(&mut silent).await, "silent client kept");
    assert!(server.get("/ok").await.expect("get").contains("200"));
    server.stop().await;
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_cut_off() {
    let server = start(Limits {
        header_read_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut slow = server.tls().await.expect("tls");
    slow.write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .expect("partial headers");
    assert!(closed_by_peer(&mut slow).await, "slow client kept");
    // Nor is a connection whose first request never starts.
    let mut idle = server.tls().await.expect("tls");
    assert!(closed_by_peer(&mut idle).await, "idle client kept");
    assert!(server.get("/ok").await.expect("get").contains("200"));
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_handler_fails_its_request_only() {
    let server = start(Limits::default()).await;
    let status = server.get("/panic").await.expect("panic request");
    assert!(status.starts_with("HTTP/1.1 500"), "{status}");
    assert!(server.get("/ok").await.expect("get").contains("200"));
    server.stop().await;
}
