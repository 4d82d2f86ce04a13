//! Requests from the API server to a node's API (as kube-apiserver reaches the kubelet on
//! :10250): HTTPS with the node's certificate verified against the cluster CA for the node's
//! address (kube-apiserver with `--kubelet-certificate-authority`), and a bearer token. Generic over the path so logs now and
//! exec/attach/port-forward later share it; the connection keeps upgrades enabled.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::http::{header, Request, Response};
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
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

/// How the API server reaches node APIs: TLS verified against the cluster CA (node
/// certificates are issued by it, for the node's address), and the node token.
#[derive(Clone)]
pub struct NodeClient {
    tls: Arc<rustls::ClientConfig>,
    token: Option<Arc<str>>,
}

impl NodeClient {
    /// Trusts node certificates signed by `ca_pem`, as kube-apiserver with
    /// `--kubelet-certificate-authority`.
    pub fn new(ca_pem: &str, token: Option<&str>) -> Result<Self, NodeClientError> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots
                .add(cert.map_err(NodeClientError::CaPem)?)
                .map_err(NodeClientError::Config)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(NodeClientError::Config)?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(NodeClient {
            tls: Arc::new(config),
            token: token.map(Arc::from),
        })
    }
}

/// The node client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum NodeClientError {
    #[error("reading the CA that signs node certificates")]
    CaPem(#[source] rustls::pki_types::pem::Error),
    #[error("TLS client configuration for node APIs")]
    Config(#[source] rustls::Error),
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
    client: &NodeClient,
    addr: SocketAddr,
    path_and_query: &str,
) -> Result<Response<Incoming>, ProxyError> {
    node_request(
        client,
        addr,
        axum::http::Method::GET,
        path_and_query,
        &axum::http::HeaderMap::new(),
    )
    .await
}

/// Sends `method path_and_query` with `headers` (an upgrade's `Connection`, `Upgrade`,
/// `Sec-WebSocket-*`, `X-Stream-Protocol-Version`) to the node API; the response's upgrade
/// (on 101) carries the streaming connection.
pub async fn node_request(
    client: &NodeClient,
    addr: SocketAddr,
    method: axum::http::Method,
    path_and_query: &str,
    headers: &axum::http::HeaderMap,
) -> Result<Response<Incoming>, ProxyError> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|source| ProxyError::Connect { addr, source })?;
    let connector = tokio_rustls::TlsConnector::from(client.tls.clone());
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
    if let Some(t) = client.token.as_deref() {
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
