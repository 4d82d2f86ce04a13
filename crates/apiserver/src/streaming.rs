//! `pods/{name}/exec`, `attach` and `portforward`: kube-apiserver's checks first (the pod
//! exists and has a node, the container is valid or defaulted, the pod is not completed, an
//! exec has a command and a stream), then the upgrade request is passed to the node API's
//! `/exec/{ns}/{pod}/{container}`, `/attach/…` or `/portforward/{ns}/{pod}` with its upgrade
//! headers, and once both sides switched protocols the two connections are spliced, as
//! kube-apiserver's upgrade-aware proxy does. The WebSocket or SPDY protocol itself is the
//! node's business.

use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderName, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::rt::TokioIo;
use serde_json::Value;

use crate::containers::{pick_container, seg};
use crate::error::ApiError;
use crate::request::Query;
use crate::state::AppState;

/// Which connect subresource a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Connect {
    Exec,
    Attach,
    PortForward,
}

/// Request headers an upgrade needs on the node's side.
const UPGRADE_HEADERS: &[&str] = &[
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// kube-apiserver's checks; returns the node path for the request.
pub fn node_path(
    kind: Connect,
    pod: &Value,
    ns: &str,
    name: &str,
    raw_query: &str,
) -> Result<String, ApiError> {
    let q = Query::parse(Some(raw_query))?;
    let phase = pod
        .pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("");
    let mut path = match kind {
        Connect::Exec | Connect::Attach => {
            let container = pick_container(pod, name, q.get("container"))?;
            if matches!(phase, "Succeeded" | "Failed") {
                let verb = match kind {
                    Connect::Exec => "exec into",
                    _ => "attach to",
                };
                return Err(ApiError::bad_request(format!(
                    "cannot {verb} a container in a completed pod; current phase is {phase}"
                )));
            }
            if kind == Connect::Exec {
                if q.get("command").is_none_or(str::is_empty) {
                    return Err(ApiError::bad_request("you must specify at least 1 command"));
                }
                if !["stdin", "stdout", "stderr"].iter().any(|k| q.flag(k)) {
                    return Err(ApiError::bad_request(
                        "you must specify at least one of stdin, stdout, stderr",
                    ));
                }
            }
            let verb = if kind == Connect::Exec {
                "exec"
            } else {
                "attach"
            };
            format!("/{verb}/{}/{}/{}", seg(ns), seg(name), seg(&container))
        }
        Connect::PortForward => format!("/portforward/{}/{}", seg(ns), seg(name)),
    };
    if pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    if !raw_query.is_empty() {
        path.push('?');
        path.push_str(raw_query);
    }
    Ok(path)
}

pub async fn exec(st: State<AppState>, p: Path<(String, String)>, req: Request) -> Response {
    connect(st, p, req, Connect::Exec).await
}

pub async fn attach(st: State<AppState>, p: Path<(String, String)>, req: Request) -> Response {
    connect(st, p, req, Connect::Attach).await
}

pub async fn portforward(st: State<AppState>, p: Path<(String, String)>, req: Request) -> Response {
    connect(st, p, req, Connect::PortForward).await
}

async fn connect(
    State(st): State<AppState>,
    Path((ns, name)): Path<(String, String)>,
    req: Request,
    kind: Connect,
) -> Response {
    match proxy(&st, &ns, &name, req, kind).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn proxy(
    st: &AppState,
    ns: &str,
    name: &str,
    mut req: Request,
    kind: Connect,
) -> Result<Response, ApiError> {
    let pods = api::resources::lookup("", "pods").ok_or(ApiError::PathNotFound)?;
    let nodes = api::resources::lookup("", "nodes").ok_or(ApiError::PathNotFound)?;
    let pod = st.registry.get(pods, Some(ns), name).await?;
    let path = node_path(kind, &pod, ns, name, req.uri().query().unwrap_or(""))?;
    let node_name = pod
        .pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let node = st.registry.get(nodes, None, node_name).await?;
    let addr = crate::proxy::node_address(&node).ok_or_else(|| {
        ApiError::bad_request(format!(
            "node {node_name} has no InternalIP address to reach its API"
        ))
    })?;
    let mut headers = HeaderMap::new();
    for name in UPGRADE_HEADERS {
        let name = HeaderName::from_static(name);
        for v in req.headers().get_all(&name) {
            headers.append(name.clone(), v.clone());
        }
    }
    let mut resp =
        crate::proxy::node_request(&st.nodes, addr, req.method().clone(), &path, &headers)
            .await
            .map_err(ApiError::Proxy)?;
    let code = resp.status();
    if code != StatusCode::SWITCHING_PROTOCOLS {
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        return Err(ApiError::Node {
            code: code.as_u16(),
            message: String::from_utf8_lossy(&body).trim().to_string(),
        });
    }
    let client_upgrade = hyper::upgrade::on(&mut req);
    let node_upgrade = hyper::upgrade::on(&mut resp);
    tokio::spawn(async move {
        let (client, node) = match tokio::join!(client_upgrade, node_upgrade) {
            (Ok(c), Ok(n)) => (c, n),
            (c, n) => {
                tracing::debug!(client = ?c.err(), node = ?n.err(), "streaming upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut node = TokioIo::new(node);
        if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut node).await {
            tracing::debug!(error = %e, "streaming connection ended");
        }
    });
    let mut out = StatusCode::SWITCHING_PROTOCOLS.into_response();
    for (name, value) in resp.headers() {
        if name != header::CONTENT_LENGTH && name != header::TRANSFER_ENCODING {
            out.headers_mut().append(name.clone(), value.clone());
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn checks_before_the_node() {
        let pod = json!({"spec": {"nodeName": "n", "containers": [{"name": "a"}, {"name": "b"}]}, "status": {"phase": "Running"}});
        let p = node_path(
            Connect::Exec,
            &pod,
            "default",
            "p",
            "command=sh&container=b&stdout=true",
        )
        .expect("path");
        assert_eq!(p, "/exec/default/p/b?command=sh&container=b&stdout=true");
        let e = node_path(
            Connect::Exec,
            &pod,
            "default",
            "p",
            "command=sh&stdout=true",
        )
        .expect_err("must choose");
        assert!(e
            .to_string()
            .starts_with("a container name must be specified"));
        let e = node_path(
            Connect::Exec,
            &pod,
            "default",
            "p",
            "container=a&stdout=true",
        )
        .expect_err("no command");
        assert_eq!(e.to_string(), "you must specify at least 1 command");
        let done = json!({"spec": {"nodeName": "n", "containers": [{"name": "a"}]}, "status": {"phase": "Succeeded"}});
        let e = node_path(Connect::Exec, &done, "default", "p", "command=sh&stdout=1")
            .expect_err("completed");
        assert_eq!(
            e.to_string(),
            "cannot exec into a container in a completed pod; current phase is Succeeded"
        );
        assert_eq!(e.code(), StatusCode::BAD_REQUEST);
        assert_eq!(
            node_path(Connect::PortForward, &done, "ns", "p", "").expect("pf"),
            "/portforward/ns/p"
        );
        let unscheduled = json!({"spec": {"containers": [{"name": "a"}]}});
        assert!(node_path(Connect::PortForward, &unscheduled, "ns", "p", "").is_err());
    }
}
