//! The node API's streaming endpoints, at kubelet's paths: `/exec/{ns}/{pod}/{container}`,
//! `/attach/{ns}/{pod}/{container}` and `/portforward/{ns}/{pod}`, which the API server proxies
//! `kubectl exec`, `attach` and `port-forward` to. Exec and attach speak WebSocket
//! `v5.channel.k8s.io` (kubectl ≥1.30), `v4.channel.k8s.io` (client libraries) or the first
//! `channel.k8s.io` (the conformance tests' raw WebSocket), or SPDY/3.1
//! with `v4.channel.k8s.io` streams (kubectl ≤1.29). Port-forward speaks SPDY/3.1, either
//! tunnelled in a `SPDY/3.1+portforward.k8s.io` WebSocket (kubectl ≥1.31) or after a
//! `SPDY/3.1` POST upgrade (older kubectl and the fallback), or the `v4.channel.k8s.io`
//! WebSocket channel protocol of the client libraries.

pub mod channel;
pub mod client;
pub mod exec;
pub mod forwarded;
pub mod portforward;
pub mod spdy;
pub mod spdy_channels;
pub mod spdy_conn;
pub mod ws_portforward;

use std::sync::Arc;

use axum::extract::ws::{Message, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use hyper_util::rt::TokioIo;
use runtime::{ContainerState, RuntimeError, RuntimeService, SandboxState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use self::client::Client;
use crate::server::NodeApiState;
use crate::sessions::Sessions;

/// Why a streaming request is refused before any upgrade; texts follow kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    #[error("pod {namespace}/{pod} not found")]
    PodNotFound { namespace: String, pod: String },
    #[error("container not found ({container:?})")]
    ContainerNotFound { container: String },
    #[error("pod sandbox of {pod} not found")]
    SandboxNotFound { pod: String },
    #[error("you must specify at least 1 command")]
    NoCommand,
    #[error("invalid query: {0}")]
    Query(#[source] serde_urlencoded::de::Error),
    #[error("invalid query: {key}={value}")]
    BadFlag { key: String, value: String },
    #[error(
        "invalid query: port-forward needs X-Stream-Protocol-Version {}",
        portforward::SPDY_PROTOCOL
    )]
    NoProtocolVersion,
    #[error("this node has no container runtime for streaming")]
    NoRuntime,
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("expected a WebSocket ({websocket}) or SPDY/3.1 upgrade request")]
    NotUpgrade { websocket: &'static str },
    #[error(
        "unable to upgrade connection: none of the requested stream protocols are supported; this node speaks {}",
        channel::PROTOCOL_V4
    )]
    SpdyProtocol,
    #[error("{0}")]
    Ports(#[from] ws_portforward::PortsError),
    #[error("too many exec, attach and port-forward sessions on this node (limit {limit}); try again later")]
    TooManySessions { limit: usize },
}

/// A session slot held for the session's life, or the refusal.
fn acquire_session(sessions: &Sessions) -> Result<tokio::sync::OwnedSemaphorePermit, StreamError> {
    sessions.try_acquire().ok_or(StreamError::TooManySessions {
        limit: sessions.limit(),
    })
}

impl IntoResponse for StreamError {
    fn into_response(self) -> Response {
        let code = match self {
            Self::PodNotFound { .. }
            | Self::ContainerNotFound { .. }
            | Self::SandboxNotFound { .. } => StatusCode::NOT_FOUND,
            Self::NoCommand
            | Self::Query(_)
            | Self::BadFlag { .. }
            | Self::NoProtocolVersion
            | Self::NotUpgrade { .. }
            | Self::SpdyProtocol
            | Self::Ports(_) => StatusCode::BAD_REQUEST,
            Self::NoRuntime | Self::Runtime(_) => StatusCode::INTERNAL_SERVER_ERROR,
            Self::TooManySessions { .. } => StatusCode::TOO_MANY_REQUESTS,
        };
        (
            code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.to_string(),
        )
            .into_response()
    }
}

/// An exec or attach request's query, parsed at the edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExecQuery {
    pub command: Vec<String>,
    pub streams: exec::Streams,
}

/// Parses `command=…&command=…&stdin=true&stdout=1&stderr=true&tty=false`.
pub fn parse_exec_query(raw: &str) -> Result<ExecQuery, StreamError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw).map_err(StreamError::Query)?;
    let mut q = ExecQuery::default();
    for (k, v) in pairs {
        let flag = || match v.as_str() {
            "1" | "true" | "True" | "TRUE" | "t" | "T" => Ok(true),
            "0" | "false" | "False" | "FALSE" | "f" | "F" | "" => Ok(false),
            _ => Err(StreamError::BadFlag {
                key: k.clone(),
                value: v.clone(),
            }),
        };
        match k.as_str() {
            "command" => q.command.push(v),
            "stdin" | "input" => q.streams.stdin = flag()?,
            "stdout" | "output" => q.streams.stdout = flag()?,
            "stderr" | "error" => q.streams.stderr = flag()?,
            "tty" => q.streams.tty = flag()?,
            _ => {}
        }
    }
    // A tty merges stderr into stdout (kubelet ignores stderr with a tty).
    if q.streams.tty {
        q.streams.stderr = false;
    }
    Ok(q)
}

fn pod_uid(st: &NodeApiState, namespace: &str, pod: &str) -> Result<String, StreamError> {
    let pods = st.pods.read().unwrap_or_else(|e| e.into_inner());
    pods.values()
        .find(|p| {
            p.metadata.namespace.as_deref() == Some(namespace)
                && p.metadata.name.as_deref() == Some(pod)
        })
        .and_then(|p| p.metadata.uid.clone())
        .ok_or_else(|| StreamError::PodNotFound {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        })
}

fn runtime_of(st: &NodeApiState) -> Result<Arc<dyn RuntimeService>, StreamError> {
    st.runtime.clone().ok_or(StreamError::NoRuntime)
}

/// The ready sandbox of a pod.
async fn sandbox_of(rt: &dyn RuntimeService, uid: &str, pod: &str) -> Result<String, StreamError> {
    let sandboxes = rt
        .list_pod_sandboxes()
        .await
        .map_err(StreamError::Runtime)?;
    sandboxes
        .into_iter()
        .filter(|s| s.config.uid == uid && s.state == SandboxState::Ready)
        .max_by_key(|s| s.created_at)
        .map(|s| s.id)
        .ok_or_else(|| StreamError::SandboxNotFound {
            pod: pod.to_string(),
        })
}

/// The running container `name` of the pod (kubelet: "container not found" otherwise).
async fn running_container(
    rt: &dyn RuntimeService,
    sandbox: &str,
    name: &str,
) -> Result<String, StreamError> {
    let containers = rt
        .list_containers(Some(sandbox))
        .await
        .map_err(StreamError::Runtime)?;
    containers
        .into_iter()
        .filter(|c| c.config.name == name && c.state == ContainerState::Running)
        .max_by_key(|c| c.created_at)
        .map(|c| c.id)
        .ok_or_else(|| StreamError::ContainerNotFound {
            container: name.to_string(),
        })
}

fn upgrade_kind(req: &Request) -> Option<String> {
    req.headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase)
}

/// `GET|POST /exec/{namespace}/{pod}/{container}?command=…`.
pub async fn exec_handler(
    State(st): State<NodeApiState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, StreamError> {
    let slot = acquire_session(&st.sessions)?;
    let query = parse_exec_query(req.uri().query().unwrap_or(""))?;
    if query.command.is_empty() {
        return Err(StreamError::NoCommand);
    }
    let rt = runtime_of(&st)?;
    let uid = pod_uid(&st, &namespace, &pod)?;
    let sandbox = sandbox_of(rt.as_ref(), &uid, &pod).await?;
    let id = running_container(rt.as_ref(), &sandbox, &container).await?;
    let streams = query.streams;
    channel_upgrade(req, &st, streams, move |client| async move {
        exec::serve_exec(client, rt, id, query.command, streams).await;
        drop(slot);
    })
    .await
}

/// `GET|POST /attach/{namespace}/{pod}/{container}`.
pub async fn attach_handler(
    State(st): State<NodeApiState>,
    Path((namespace, pod, container)): Path<(String, String, String)>,
    req: Request,
) -> Result<Response, StreamError> {
    let slot = acquire_session(&st.sessions)?;
    let query = parse_exec_query(req.uri().query().unwrap_or(""))?;
    let rt = runtime_of(&st)?;
    let uid = pod_uid(&st, &namespace, &pod)?;
    let sandbox = sandbox_of(rt.as_ref(), &uid, &pod).await?;
    let id = running_container(rt.as_ref(), &sandbox, &container).await?;
    // Only a request that upgrades opens a session: ending one ends a `stdinOnce` stdin.
    let session = rt.attach(&id, query.streams.stdin).await?;
    channel_upgrade(req, &st, query.streams, move |client| async move {
        exec::serve_attach(client, session, query.streams).await;
        drop(slot);
    })
    .await
}

/// Upgrades an exec or attach request to a WebSocket (`v5.channel.k8s.io`, else
/// `v4.channel.k8s.io` or the first `channel.k8s.io`, as the client offers) or to SPDY/3.1 with
/// `v4.channel.k8s.io` streams, and runs `session` with the client once it is there.
async fn channel_upgrade<F, Fut>(
    mut req: Request,
    st: &NodeApiState,
    streams: exec::Streams,
    session: F,
) -> Result<Response, StreamError>
where
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let not_upgrade = || StreamError::NotUpgrade {
        websocket: channel::PROTOCOL_V5,
    };
    match upgrade_kind(&req).as_deref() {
        Some("websocket") => {
            let (mut parts, _) = req.into_parts();
            let ws = WebSocketUpgrade::from_request_parts(&mut parts, st)
                .await
                .map_err(|_| not_upgrade())?;
            let ws = ws.protocols([
                channel::PROTOCOL_V5,
                channel::PROTOCOL_V4,
                channel::PROTOCOL_V1,
            ]);
            Ok(ws.on_upgrade(move |socket| session(Client::websocket(socket))))
        }
        Some("spdy/3.1") => {
            if !offered(&req, channel::PROTOCOL_V4) {
                return Err(StreamError::SpdyProtocol);
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        spdy_channels::serve(TokioIo::new(upgraded), streams, session).await
                    }
                    Err(e) => tracing::debug!(error = %e, "exec/attach upgrade failed"),
                }
            });
            Ok(spdy_switch(channel::PROTOCOL_V4))
        }
        _ => Err(not_upgrade()),
    }
}

/// Whether the request offers stream protocol `protocol` in `X-Stream-Protocol-Version`.
fn offered(req: &Request, protocol: &str) -> bool {
    req.headers()
        .get_all("x-stream-protocol-version")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim() == protocol)
}

/// The 101 answer to a SPDY/3.1 upgrade, naming the stream protocol chosen.
fn spdy_switch(protocol: &'static str) -> Response {
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(
        "x-stream-protocol-version",
        HeaderValue::from_static(protocol),
    );
    resp
}

/// `GET|POST /portforward/{namespace}/{pod}`.
pub async fn portforward_handler(
    State(st): State<NodeApiState>,
    Path((namespace, pod)): Path<(String, String)>,
    mut req: Request,
) -> Result<Response, StreamError> {
    let slot = acquire_session(&st.sessions)?;
    let rt = runtime_of(&st)?;
    let uid = pod_uid(&st, &namespace, &pod)?;
    let sandbox_id = sandbox_of(rt.as_ref(), &uid, &pod).await?;
    let target = forwarded::Target {
        sandbox_id,
        pod_name: pod.clone(),
        pod_uid: uid,
    };
    match upgrade_kind(&req).as_deref() {
        Some("websocket") => {
            let raw_query = req.uri().query().unwrap_or("").to_string();
            let (mut parts, _) = req.into_parts();
            let ws = WebSocketUpgrade::from_request_parts(&mut parts, &st)
                .await
                .map_err(|_| StreamError::NotUpgrade {
                    websocket: portforward::WEBSOCKET_PROTOCOL,
                })?
                .protocols([portforward::WEBSOCKET_PROTOCOL, channel::PROTOCOL_V4]);
            let tunnel = ws
                .selected_protocol()
                .is_some_and(|p| p == portforward::WEBSOCKET_PROTOCOL);
            if !tunnel {
                // The client libraries' protocol (kubelet's also when none is named): the
                // ports come in the query, each with a data and an error channel.
                let ports = ws_portforward::parse_ports(&raw_query)?;
                let dial = Arc::new(forwarded::RuntimeDial(rt));
                return Ok(ws.on_upgrade(move |socket| async move {
                    ws_portforward::serve(socket, dial, target, ports).await;
                    drop(slot);
                }));
            }
            Ok(ws.on_upgrade(move |socket| async move {
                // SPDY bytes ride in binary messages whose boundaries mean nothing: bridge
                // them to a byte pipe and run the SPDY session on its other end.
                let (ours, theirs) = tokio::io::duplex(256 * 1024);
                let dial = Arc::new(forwarded::RuntimeDial(rt));
                let session = tokio::spawn(portforward::serve(theirs, dial, target));
                let (mut sink, mut source) = socket.split();
                let (mut rd, mut wr) = tokio::io::split(ours);
                let down = async {
                    let mut buf = vec![0u8; 64 * 1024];
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if sink
                                    .send(Message::Binary(buf[..n].to_vec().into()))
                                    .await
                                    .is_err()
                                {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = sink.close().await;
                };
                let up = async {
                    while let Some(Ok(msg)) = source.next().await {
                        match msg {
                            Message::Binary(b) if wr.write_all(&b).await.is_err() => break,
                            Message::Close(_) => break,
                            _ => {}
                        }
                    }
                    let _ = wr.shutdown().await;
                };
                tokio::join!(down, up);
                session.abort();
                drop(slot);
            }))
        }
        Some("spdy/3.1") => {
            if !offered(&req, portforward::SPDY_PROTOCOL) {
                return Err(StreamError::NoProtocolVersion);
            }
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                match on_upgrade.await {
                    Ok(upgraded) => {
                        let dial = Arc::new(forwarded::RuntimeDial(rt));
                        portforward::serve(TokioIo::new(upgraded), dial, target).await
                    }
                    Err(e) => tracing::debug!(error = %e, "port-forward upgrade failed"),
                }
                drop(slot);
            });
            Ok(spdy_switch(portforward::SPDY_PROTOCOL))
        }
        _ => Err(StreamError::NotUpgrade {
            websocket: portforward::WEBSOCKET_PROTOCOL,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_query() {
        let q = parse_exec_query(
            "command=sh&command=-c&command=echo%20%24HOSTNAME%3B%20exit%207&container=c&stdin=true&stdout=true&stderr=true",
        )
        .expect("query");
        assert_eq!(q.command, ["sh", "-c", "echo $HOSTNAME; exit 7"]);
        assert!(q.streams.stdin && q.streams.stdout && q.streams.stderr && !q.streams.tty);
        let q = parse_exec_query("command=sh&stdout=1&stderr=1&tty=1").expect("tty");
        assert!(q.streams.tty && !q.streams.stderr);
        assert!(parse_exec_query("stdin=maybe").is_err());
    }
}
