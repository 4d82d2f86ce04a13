//! `GET pods/<p>/log`: kube-apiserver's checks (container defaulting, unknown container, no
//! node yet), then the node API's `/containerLogs/<ns>/<pod>/<container>` streamed through
//! unbuffered, so `kubectl logs -f` sees each line as the container writes it. A WebSocket
//! request gets the same stream as messages, as kube-apiserver streams any response a
//! WebSocket asks for (`binary.k8s.io`, or `base64.binary.k8s.io` as text).

use std::time::Duration;

use axum::body::Body;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Path, Request, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::containers::{pick_container, seg};
use crate::error::ApiError;
use crate::request::Query;
use crate::state::AppState;

/// The WebSocket subprotocols of a streamed response: raw bytes in binary messages, or
/// base64 in text messages.
const BINARY_PROTOCOL: &str = "binary.k8s.io";
const BASE64_PROTOCOL: &str = "base64.binary.k8s.io";

/// After our close frame, how long the client may take to answer it.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// `GET /api/v1/namespaces/{namespace}/pods/{name}/log`, plain or over a WebSocket.
pub async fn route(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().unwrap_or("").to_string();
    let websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !websocket {
        return serve(&st, &ns, &name, &query)
            .await
            .unwrap_or_else(IntoResponse::into_response);
    }
    let (mut parts, _) = req.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &st).await {
        Ok(u) => u,
        Err(rejection) => return rejection.into_response(),
    };
    // As kube-apiserver, a log that cannot be read is an HTTP error before any upgrade.
    let resp = match serve(&st, &ns, &name, &query).await {
        Ok(r) if r.status() == StatusCode::OK => r,
        Ok(other) => return other,
        Err(e) => return e.into_response(),
    };
    upgrade
        .protocols([BINARY_PROTOCOL, BASE64_PROTOCOL])
        .on_upgrade(move |socket| stream_to(socket, resp.into_body()))
}

/// Sends `body` as WebSocket messages until it ends or the client goes away, then closes
/// normally (kube-apiserver's `wsstream.Reader`).
async fn stream_to(socket: WebSocket, body: Body) {
    let base64 = socket
        .protocol()
        .is_some_and(|p| p.as_bytes() == BASE64_PROTOCOL.as_bytes());
    let (mut sink, mut source) = socket.split();
    let mut data = body.into_data_stream();
    loop {
        tokio::select! {
            chunk = data.next() => {
                let Some(Ok(bytes)) = chunk else { break };
                let msg = if base64 {
                    Message::Text(base64::engine::general_purpose::STANDARD.encode(&bytes).into())
                } else {
                    Message::Binary(bytes)
                };
                if sink.send(msg).await.is_err() {
                    return;
                }
            }
            // The client sends nothing but its close; once it is gone, so is the stream.
            msg = source.next() => {
                if matches!(msg, None | Some(Err(_)) | Some(Ok(Message::Close(_)))) {
                    return;
                }
            }
        }
    }
    let close = Message::Close(Some(CloseFrame {
        code: 1000,
        reason: "".into(),
    }));
    if sink.send(close).await.is_err() {
        return;
    }
    let answered = async {
        while let Some(Ok(msg)) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, answered).await;
}

pub async fn serve(
    st: &AppState,
    ns: &str,
    pod_name: &str,
    raw_query: &str,
) -> Result<Response, ApiError> {
    let q = Query::parse(Some(raw_query))?;
    let pods = api::resources::lookup("", "pods").ok_or(ApiError::PathNotFound)?;
    let nodes = api::resources::lookup("", "nodes").ok_or(ApiError::PathNotFound)?;
    let pod = st.registry.get(pods, Some(ns), pod_name).await?;
    let container = pick_container(&pod, pod_name, q.get("container"))?;
    for key in ["tailLines", "limitBytes", "sinceSeconds"] {
        if q.int(key)?.is_some_and(|v| v < 0) {
            return Err(ApiError::bad_request(format!(
                "{key}: Invalid value: must be greater than or equal to 0"
            )));
        }
    }
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(format!("pod {pod_name} does not have a host assigned"))
        })?;
    let node = st.registry.get(nodes, None, node_name).await?;
    let addr = crate::proxy::node_address(&node).ok_or_else(|| {
        ApiError::bad_request(format!(
            "node {node_name} has no InternalIP address to reach its API"
        ))
    })?;
    let mut path = format!(
        "/containerLogs/{}/{}/{}",
        seg(ns),
        seg(pod_name),
        seg(&container)
    );
    if !raw_query.is_empty() {
        path.push('?');
        path.push_str(raw_query);
    }
    let resp = crate::proxy::node_get(&st.nodes, addr, &path)
        .await
        .map_err(ApiError::Proxy)?;
    let code = resp.status();
    if code.is_success() {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            Body::new(resp.into_body()),
        )
            .into_response());
    }
    // An error from the node: pass its Status (or text) on with its code.
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|c| c.to_bytes())
        .unwrap_or_default();
    if let Ok(status) = serde_json::from_slice::<Value>(&body) {
        if status.get("kind").and_then(Value::as_str) == Some("Status") {
            return Ok((
                code,
                [(header::CONTENT_TYPE, "application/json")],
                status.to_string(),
            )
                .into_response());
        }
    }
    let message = String::from_utf8_lossy(&body).trim().to_string();
    Err(ApiError::Node {
        code: code.as_u16(),
        message,
    })
}
