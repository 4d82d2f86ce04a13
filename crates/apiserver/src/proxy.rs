//! Requests from the API server to a node's API (as kube-apiserver reaches the kubelet on
//! :10250): HTTPS without verifying the node's certificate (kube-apiserver's default when no
//! kubelet CA is configured) and a bearer token. Generic over the path so logs now and
//! exec/attach/port-forward later share it; the connection keeps upgrades enabled.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{header, Request, Response};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("dial tcp {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS handshake with node API {addr}")]
    Tls {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS client configuration for node API {addr}")]
    TlsConfig {
        addr: SocketAddr,
        #[source]
        source: rustls::Error,
    },
    #[error("HTTP exchange with node API {addr}")]
    Http {
        addr: SocketAddr,
        #[source]
        source: hyper::Error,
    },
    #[error("building request for node API {addr}")]
    Request {
        addr: SocketAddr,
        #[source]
        source: axum::http::Error,
    },
}

/// Accepts any server certificate but still checks handshake signatures with the provider's
/// algorithms, so the channel is encrypted to whoever holds the presented key.
#[derive(Debug)]
struct NodeCertVerifier(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for NodeCertVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Where a node's API listens: its InternalIP (else ExternalIP) and
/// `status.daemonEndpoints.kubeletEndpoint.Port` (default 10250).
pub fn node_address(node: &Value) -> Option<SocketAddr> {
    let addrs = node
        .pointer("/status/addresses")
        .and_then(Value::as_array)?;
    let pick = |ty: &str| {
        addrs
            .iter()
            .filter(|a| a.get("type").and_then(Value::as_str) == Some(ty))
            .find_map(|a| {
                a.get("address")
                    .and_then(Value::as_str)?
                    .parse::<IpAddr>()
                    .ok()
            })
    };
    let ip = pick("InternalIP").or_else(|| pick("ExternalIP"))?;
    let port = node
        .pointer("/status/daemonEndpoints/kubeletEndpoint/Port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .filter(|p| *p != 0)
        .unwrap_or(10250);
    Some(SocketAddr::new(ip, port))
}

/// Sends `GET <path_and_query>` to the node API at `addr` and returns the streaming response.
pub async fn node_get(
    addr: SocketAddr,
    path_and_query: &str,
    token: Option<&str>,
) -> Result<Response<Incoming>, ProxyError> {
    node_request(
        addr,
        axum::http::Method::GET,
        path_and_query,
        &axum::http::HeaderMap::new(),
        token,
    )
    .await
}

/// Sends `method path_and_query` with `headers` (an upgrade's `Connection`, `Upgrade`,
/// `Sec-WebSocket-*`, `X-Stream-Protocol-Version`) to the node API; the response's upgrade
/// (on 101) carries the streaming connection.
pub async fn node_request(
    addr: SocketAddr,
    method: axum::http::Method,
    path_and_query: &str,
    headers: &axum::http::HeaderMap,
    token: Option<&str>,
) -> Result<Response<Incoming>, ProxyError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| ProxyError::TlsConfig { addr, source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(NodeCertVerifier(provider)))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ProxyError::Connect { addr, source })?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tls = connector
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await
        .map_err(|source| ProxyError::Tls { addr, source })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|source| ProxyError::Http { addr, source })?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "node API connection ended");
        }
    });
    let mut req = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(header::HOST, addr.to_string());
    for (name, value) in headers {
        req = req.header(name, value);
    }
    if let Some(t) = token {
        req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    let req = req
        .body(Empty::<Bytes>::new())
        .map_err(|source| ProxyError::Request { addr, source })?;
    sender
        .send_request(req)
        .await
        .map_err(|source| ProxyError::Http { addr, source })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_address_prefers_internal_ip_and_kubelet_port() {
        let node = json!({"status": {
            "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "ExternalIP", "address": "1.2.3.4"}, {"type": "InternalIP", "address": "10.0.0.5"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10999}},
        }});
        assert_eq!(
            node_address(&node),
            Some("10.0.0.5:10999".parse().expect("addr"))
        );
        let node = json!({"status": {"addresses": [{"type": "InternalIP", "address": "::1"}]}});
        assert_eq!(
            node_address(&node),
            Some("[::1]:10250".parse().expect("addr"))
        );
        assert_eq!(node_address(&json!({})), None);
    }
}
