//! HTTP GETs as kubelet's HTTP prober and httpGet lifecycle hooks make them: `User-Agent:
//! kube-probe/<version>`, the probe's headers, HTTPS without certificate verification, a
//! status of 200–399 is success, redirects followed to the same host (up to 10) and a
//! redirect to another host ends the probe as a success with a warning.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::net::{DialError, Dialer};

/// Bytes of body kept for messages (kubelet reads at most 10 KiB).
const MAX_BODY: usize = 10 * 1024;
const MAX_REDIRECTS: usize = 10;
/// kubelet's probe user agent (`kube-probe/<major>.<minor>`).
pub const USER_AGENT: &str = "kube-probe/1.33";

/// One GET to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub https: bool,
    /// Host to connect to (IP or name).
    pub host: String,
    pub port: u16,
    /// Path with query, starting with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpGet {
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{host}:{}{}", self.port, self.path)
    }
}

/// What a GET came to, in kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpOutcome {
    Success(String),
    /// Success, with a warning kubelet records as a `ProbeWarning` event.
    Warning(String),
    /// The server answered, with a status of 400 or more: a failed probe, but a lifecycle
    /// hook that ran (kubelet's hook runner looks only at whether the request was made).
    BadStatus(String),
    /// No answer: the request could not be made or timed out.
    Failure(String),
}

/// Why a GET got no response; the texts are those of Go's HTTP client, which kubelet's
/// probe messages carry.
#[derive(Debug, thiserror::Error)]
enum GetError {
    #[error("dial tcp: lookup {host}: {source}")]
    Lookup {
        host: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Dial(DialError),
    #[error("tls: {0}")]
    ServerName(#[source] rustls::pki_types::InvalidDnsNameError),
    #[error("tls: {0}")]
    Tls(#[source] io::Error),
    #[error("{0}")]
    Request(#[source] http::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
    #[error("stopped after {MAX_REDIRECTS} redirects")]
    Redirects,
}

/// Makes the GET within `timeout` (connect, TLS, request and the body together).
pub async fn get(dialer: &Dialer, req: &HttpGet, timeout: Duration) -> HttpOutcome {
    let url = req.url();
    match tokio::time::timeout(timeout, follow(dialer, req.clone(), timeout)).await {
        Ok(Ok(outcome)) => outcome,
        Ok(Err(msg)) => HttpOutcome::Failure(format!("Get {url:?}: {msg}")),
        Err(_) => HttpOutcome::Failure(format!(
            "Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

async fn follow(
    dialer: &Dialer,
    mut req: HttpGet,
    timeout: Duration,
) -> Result<HttpOutcome, GetError> {
    let original_host = req.host.clone();
    for _ in 0..=MAX_REDIRECTS {
        let (status, location, body) = once(dialer, &req, timeout).await?;
        if (300..400).contains(&status) {
            if let Some(loc) = location {
                match redirect_target(&req, &loc) {
                    Some(next) if next.host == original_host => {
                        req = next;
                        continue;
                    }
                    Some(_) => {
                        return Ok(HttpOutcome::Warning(format!(
                            "Probe terminated redirects, Response body: {body}"
                        )))
                    }
                    None => {}
                }
            }
        }
        return Ok(if (200..400).contains(&status) {
            HttpOutcome::Success(body)
        } else {
            HttpOutcome::BadStatus(format!("HTTP probe failed with statuscode: {status}"))
        });
    }
    Err(GetError::Redirects)
}

/// Where a `Location` header points, relative to the request it answered.
fn redirect_target(from: &HttpGet, location: &str) -> Option<HttpGet> {
    let uri: http::Uri = location.parse().ok()?;
    let mut next = from.clone();
    if let Some(host) = uri.host() {
        next.https = uri.scheme_str() == Some("https");
        next.host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        next.port = uri.port_u16().unwrap_or(if next.https { 443 } else { 80 });
    }
    next.path = uri
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    if !next.path.starts_with('/') {
        next.path = format!("/{}", next.path);
    }
    Some(next)
}

async fn once(
    dialer: &Dialer,
    req: &HttpGet,
    timeout: Duration,
) -> Result<(u16, Option<String>, String), GetError> {
    let addr = dialer
        .resolve(&req.host, req.port)
        .await
        .map_err(|source| GetError::Lookup {
            host: req.host.clone(),
            source,
        })?;
    let stream = dialer
        .connect(addr, timeout)
        .await
        .map_err(|source| GetError::Dial(DialError { addr, source }))?;
    if req.https {
        let tls = tokio_rustls::TlsConnector::from(insecure_tls());
        let name = rustls::pki_types::ServerName::try_from(req.host.clone())
            .map_err(GetError::ServerName)?;
        let stream = tls.connect(name, stream).await.map_err(GetError::Tls)?;
        send(stream, req).await
    } else {
        send(stream, req).await
    }
}

async fn send<S>(io: S, req: &HttpGet) -> Result<(u16, Option<String>, String), GetError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(GetError::Http)?;
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(error = %err, "probe connection ended");
        }
    });
    let default_host = if req.port == 80 || req.port == 443 {
        req.host.clone()
    } else {
        format!("{}:{}", req.host, req.port)
    };
    let mut builder = http::Request::get(req.path.as_str());
    let has = |name: &str| {
        req.headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case(name))
    };
    if !has("host") {
        builder = builder.header(http::header::HOST, default_host);
    }
    if !has("user-agent") {
        builder = builder.header(http::header::USER_AGENT, USER_AGENT);
    }
    if !has("accept") {
        builder = builder.header(http::header::ACCEPT, "*/*");
    }
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(GetError::Request)?;
    let response = sender.send_request(request).await.map_err(GetError::Http)?;
    let status = response.status().as_u16();
    let location = response
        .headers()
        .get(http::header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = response.into_body();
    let mut kept = Vec::new();
    while kept.len() < MAX_BODY {
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(data) = frame.data_ref() {
                    let room = MAX_BODY - kept.len();
                    kept.extend_from_slice(&data[..data.len().min(room)]);
                }
            }
            Some(Err(e)) => return Err(GetError::Http(e)),
            None => break,
        }
    }
    Ok((
        status,
        location,
        String::from_utf8_lossy(&kept).into_owned(),
    ))
}

/// kubelet probes HTTPS endpoints with `InsecureSkipVerify`.
fn insecure_tls() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(NoVerify(provider.clone()));
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|b| {
                    b.dangerous()
                        .with_custom_certificate_verifier(verifier)
                        .with_no_client_auth()
                });
            match config {
                Ok(c) => Arc::new(c),
                Err(err) => {
                    // The ring provider supports the default versions; this cannot happen.
                    tracing::error!(error = %err, "TLS client configuration");
                    Arc::new(
                        rustls::ClientConfig::builder()
                            .dangerous()
                            .with_custom_certificate_verifier(Arc::new(NoVerify(Arc::new(
                                rustls::crypto::ring::default_provider(),
                            ))))
                            .with_no_client_auth(),
                    )
                }
            }
        })
        .clone()
}

/// Accepts any server certificate (signatures are still checked for the handshake).
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-connection-per-answer HTTP server returning canned responses in order.
    async fn server(answers: Vec<String>) -> (u16, tokio::task::JoinHandle<Vec<String>>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut seen = Vec::new();
            for a in answers {
                let (mut s, _) = l.accept().await.expect("accept");
                let mut buf = vec![0u8; 4096];
                let n = s.read(&mut buf).await.expect("read");
                seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
                s.write_all(a.as_bytes()).await.expect("write");
                s.shutdown().await.ok();
            }
            seen
        });
        (port, task)
    }

    fn req(port: u16, path: &str) -> HttpGet {
        HttpGet {
            https: false,
            host: "127.0.0.1".into(),
            port,
            path: path.into(),
            headers: vec![("X-Probe".into(), "yes".into())],
        }
    }

    #[tokio::test]
    async fn statuses_headers_and_redirects() {
        let ok = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok".to_string();
        let (port, task) = server(vec![
            ok.clone(),
            "HTTP/1.1 500 Oops\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            "HTTP/1.1 302 Found\r\nLocation: /there\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
            ok,
            "HTTP/1.1 301 Moved\r\nLocation: http://elsewhere.example:81/\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody".into(),
        ])
        .await;
        let d = Dialer::default();
        let t = Duration::from_secs(2);
        assert_eq!(
            get(&d, &req(port, "/healthz"), t).await,
            HttpOutcome::Success("ok".into())
        );
        assert_eq!(
            get(&d, &req(port, "/"), t).await,
            HttpOutcome::BadStatus("HTTP probe failed with statuscode: 500".into())
        );
        assert_eq!(
            get(&d, &req(port, "/"), t).await,
            HttpOutcome::Success("ok".into())
        );
        assert_eq!(
            get(&d, &req(port, "/"), t).await,
            HttpOutcome::Warning("Probe terminated redirects, Response body: body".into())
        );
        let seen = task.await.expect("server");
        assert!(
            seen[0].starts_with("GET /healthz HTTP/1.1\r\n"),
            "{}",
            seen[0]
        );
        assert!(seen[0]
            .to_ascii_lowercase()
            .contains("user-agent: kube-probe/1.33"));
        assert!(seen[0].to_ascii_lowercase().contains("x-probe: yes"));
        assert!(seen[3].starts_with("GET /there "), "{}", seen[3]);
    }

    #[tokio::test]
    async fn refused_connection_reads_like_kubelet() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        drop(l);
        let out = get(&Dialer::default(), &req(port, "/x"), Duration::from_secs(1)).await;
        assert_eq!(
            out,
            HttpOutcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/x\": dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }
}
