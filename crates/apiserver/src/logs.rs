//! `GET pods/<p>/log`: kube-apiserver's checks (container defaulting, unknown container, no
//! node yet), then the node API's `/containerLogs/<ns>/<pod>/<container>` streamed through
//! unbuffered, so `kubectl logs -f` sees each line as the container writes it.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::containers::{pick_container, seg};
use crate::error::ApiError;
use crate::request::Query;
use crate::state::AppState;

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
