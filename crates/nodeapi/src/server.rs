//! The node API (kubelet's :10250) that the API server proxies `kubectl logs` to: its shared
//! state, `/containerLogs/{namespace}/{pod}/{container}` (requests are parsed into
//! `LogOptions` before any file is touched) and the TLS listener. `router` puts the routes
//! together.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use jiff::Timestamp;
use tokio::net::TcpListener;

use crilog::{log_attempts, pod_log_dir};

use crate::logs::{parse_bool, stream_log, ContainerLiveness, LogOptions};
use podapi::PodCache;

/// Shared state of the node API.
#[derive(Clone)]
pub struct NodeApiState {
    pub pods: PodCache,
    pub log_root: PathBuf,
    /// The bearer token every request must carry (never empty: an empty one refuses all).
    pub token: String,
    pub liveness: Arc<dyn ContainerLiveness>,
    /// The runtime behind exec, attach and port-forward (`None`: those answer 500).
    pub runtime: Option<Arc<dyn runtime::RuntimeService>>,
    /// What `/metrics` serves (`None`: 404).
    pub metrics: Option<Arc<metrics::Registry>>,
    /// The node's resource stats behind `/stats/summary` and `/metrics/{resource,cadvisor}`
    /// (`None`: 404).
    pub stats: Option<Arc<nodestats::Collector>>,
    /// The cap on concurrent exec, attach and port-forward sessions.
    pub sessions: crate::sessions::Sessions,
}

/// Why a log request is refused; texts follow kubelet's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LogRequestError {
    #[error("pods {pod:?} not found")]
    PodNotFound { pod: String },
    #[error("container {container} is not valid for pod {pod}")]
    ContainerNotValid { container: String, pod: String },
    #[error("container {container:?} in pod {pod:?} is waiting to start: {reason}")]
    Waiting {
        container: String,
        pod: String,
        reason: String,
    },
    #[error("previous terminated container {container:?} in pod {pod:?} not found")]
    PreviousNotFound { container: String, pod: String },
    #[error("invalid value {value:?} for query parameter {param}")]
    BadQuery { param: String, value: String },
}

impl LogRequestError {
    fn status(&self) -> StatusCode {
        match self {
            Self::PodNotFound { .. } => StatusCode::NOT_FOUND,
            Self::ContainerNotValid { .. }
            | Self::Waiting { .. }
            | Self::PreviousNotFound { .. }
            | Self::BadQuery { .. } => StatusCode::BAD_REQUEST,
        }
    }
}

impl IntoResponse for LogRequestError {
    fn into_response(self) -> Response {
        (
            self.status(),
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response()
    }
}

/// Parses the log query (`follow`, `previous`, `tailLines`, `timestamps`, `sinceSeconds`,
/// `sinceTime`, `limitBytes`) at the edge.
pub fn parse_log_query(
    query: &HashMap<String, String>,
    now: Timestamp,
) -> Result<LogOptions, LogRequestError> {
    let bad = |param: &str, value: &str| LogRequestError::BadQuery {
        param: param.to_string(),
        value: value.to_string(),
    };
    let flag = |name: &str| -> Result<bool, LogRequestError> {
        match query.get(name) {
            None => Ok(false),
            Some(v) => parse_bool(v).ok_or_else(|| bad(name, v)),
        }
    };
    let number = |name: &str| -> Result<Option<i64>, LogRequestError> {
        query
            .get(name)
            .map(|v| v.parse::<i64>().map_err(|_| bad(name, v)))
            .transpose()
    };
    let mut opts = LogOptions {
        follow: flag("follow")?,
        previous: flag("previous")?,
        timestamps: flag("timestamps")?,
        ..Default::default()
    };
    // kubelet treats a negative tail as "everything".
    opts.tail_lines = number("tailLines")?.and_then(|n| u64::try_from(n).ok());
    if let Some(n) = number("limitBytes")? {
        opts.limit_bytes = Some(
            u64::try_from(n)
                .map_err(|_| bad("limitBytes", &n.to_string()))?
                .max(1),
        );
    }
    if let Some(secs) = number("sinceSeconds")? {
        if secs < 1 {
            return Err(bad("sinceSeconds", &secs.to_string()));
        }
        opts.since = now.checked_sub(jiff::SignedDuration::from_secs(secs)).ok();
    }
    if let Some(v) = query.get("sinceTime") {
        opts.since = Some(v.parse::<Timestamp>().map_err(|_| bad("sinceTime", v))?);
    }
    Ok(opts)
}

/// Picks the log file of a request from the pod and its log directory.
pub fn resolve_log_file(
    pods: &PodCache,
    log_root: &std::path::Path,
    namespace: &str,
    pod_name: &str,
    container: &str,
    previous: bool,
) -> Result<PathBuf, LogRequestError> {
    let pod = {
        let pods = pods.read().unwrap_or_else(|e| e.into_inner());
        pods.values()
            .find(|p| {
                p.metadata.namespace.as_deref() == Some(namespace)
                    && p.metadata.name.as_deref() == Some(pod_name)
            })
            .cloned()
    };
    let pod = pod.ok_or_else(|| LogRequestError::PodNotFound {
        pod: pod_name.to_string(),
    })?;
    let spec = pod.spec.as_ref();
    let known = spec
        .map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
                .any(|c| c.name == container)
                || s.ephemeral_containers
                    .iter()
                    .flatten()
                    .any(|c| c.name == container)
        })
        .unwrap_or(false);
    if !known {
        return Err(LogRequestError::ContainerNotValid {
            container: container.to_string(),
            pod: pod_name.to_string(),
        });
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let dir = pod_log_dir(log_root, namespace, pod_name, &uid).join(container);
    let attempts = log_attempts(&dir);
    let status = pod.status.as_ref().and_then(|s| {
        [
            &s.container_statuses,
            &s.init_container_statuses,
            &s.ephemeral_container_statuses,
        ]
        .into_iter()
        .flatten()
        .flatten()
        .find(|c| c.name == container)
    });
    let Some(latest) = attempts.last().copied() else {
        if previous {
            return Err(LogRequestError::PreviousNotFound {
                container: container.to_string(),
                pod: pod_name.to_string(),
            });
        }
        let reason = status
            .and_then(|s| s.state.as_ref())
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.reason.clone())
            .unwrap_or_else(|| "ContainerCreating".to_string());
        return Err(LogRequestError::Waiting {
            container: container.to_string(),
            pod: pod_name.to_string(),
            reason,
        });
    };
    if !previous {
        return Ok(dir.join(format!("{latest}.log")));
    }
    // While a container waits to be restarted, its last run *is* the previous one.
    let waiting_restart = status.is_some_and(|s| {
        s.state.as_ref().is_some_and(|st| st.waiting.is_some())
            && s.last_state
                .as_ref()
                .is_some_and(|l| l.terminated.is_some())
    });
    let pick = if waiting_restart {
        Some(latest)
    } else {
        attempts.iter().rev().nth(1).copied()
    };
    pick.map(|n| dir.join(format!("{n}.log")))
        .ok_or_else(|| LogRequestError::PreviousNotFound {
            container: container.to_string(),
            pod: pod_name.to_string(),
        })
}

pub async fn container_logs(
    State(state): State<NodeApiState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, LogRequestError> {
    let opts = parse_log_query(&query, Timestamp::now())?;
    let path = resolve_log_file(
        &state.pods,
        &state.log_root,
        &namespace,
        &pod,
        &container,
        opts.previous,
    )?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(stream_log(path, opts, state.liveness.clone(), tx));
    let body = Body::from_stream(tokio_stream_from(rx));
    Ok(([(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

/// A receiver as a stream (without pulling in tokio-stream).
fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures::Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// Failures setting up TLS for the node API.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading the node API certificate PEM")]
    Certificate(#[source] rustls::pki_types::pem::Error),
    #[error("reading the node API private key PEM")]
    Key(#[source] rustls::pki_types::pem::Error),
    #[error("building the node API TLS configuration")]
    Config(#[source] rustls::Error),
}

/// A rustls server config from PEM texts.
pub fn tls_config(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(TlsError::Certificate)?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(TlsError::Key)?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(TlsError::Config)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(TlsError::Config)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `listener` until `shutdown` turns true, with the listener
/// limits every peapod server has (handshake and header deadlines, a connection cap).
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tlsserve::serve(listener, tls, router, tlsserve::Limits::default(), shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let now = Timestamp::from_second(1_700_000_100).expect("t");
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect::<HashMap<_, _>>()
        };
        let o = parse_log_query(
            &q(&[
                ("follow", "true"),
                ("tailLines", "5"),
                ("sinceSeconds", "100"),
                ("limitBytes", "10"),
            ]),
            now,
        )
        .expect("opts");
        assert!(o.follow);
        assert_eq!(o.tail_lines, Some(5));
        assert_eq!(o.limit_bytes, Some(10));
        assert_eq!(
            o.since,
            Some(Timestamp::from_second(1_700_000_000).expect("t"))
        );
        let o = parse_log_query(
            &q(&[("sinceTime", "2023-11-14T22:13:20Z"), ("tailLines", "-1")]),
            now,
        )
        .expect("opts");
        assert_eq!(
            o.since,
            Some(Timestamp::from_second(1_700_000_000).expect("t"))
        );
        assert_eq!(o.tail_lines, None);
        assert!(parse_log_query(&q(&[("sinceSeconds", "0")]), now).is_err());
        assert!(parse_log_query(&q(&[("follow", "maybe")]), now).is_err());
    }
}
