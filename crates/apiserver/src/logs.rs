//! `GET pods/<p>/log`: kube-apiserver's checks (container defaulting, unknown container, no
//! node yet), then the node API's `/containerLogs/<ns>/<pod>/<container>` streamed through
//! unbuffered, so `kubectl logs -f` sees each line as the container writes it.

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use serde_json::Value;

use crate::error::ApiError;
use crate::http::AppState;
use crate::request::Query;

/// Container names of a pod: (regular, init, ephemeral).
fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The container a log request is for, with kube-apiserver's errors.
pub fn pick_container(
    pod: &Value,
    pod_name: &str,
    requested: Option<&str>,
) -> Result<String, ApiError> {
    let regular = container_names(pod, "containers");
    let init = container_names(pod, "initContainers");
    let ephemeral = container_names(pod, "ephemeralContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) => {
            if regular
                .iter()
                .chain(&init)
                .chain(&ephemeral)
                .any(|n| n == c)
            {
                Ok(c.to_string())
            } else {
                Err(ApiError::bad_request(format!(
                    "container {c} is not valid for pod {pod_name}"
                )))
            }
        }
        None if regular.len() == 1 => Ok(regular[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {pod_name}, choose one of: [{}]",
                regular.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            if !ephemeral.is_empty() {
                msg.push_str(&format!(
                    " or one of the ephemeral containers: [{}]",
                    ephemeral.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// Percent-encodes one path segment (names are DNS labels, but be safe).
fn seg(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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
    let pod = st.registry.get(pods, Some(ns), pod_name)?;
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
    let node = st.registry.get(nodes, None, node_name)?;
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
    let resp = crate::proxy::node_get(addr, &path, st.node_api_token.as_deref())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn container_defaulting_and_errors() {
        let one = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pick_container(&one, "p", None).expect("default"), "a");
        let two = json!({"spec": {"containers": [{"name": "a"}, {"name": "b"}], "initContainers": [{"name": "i"}]}});
        let e = pick_container(&two, "p", None).expect_err("must choose");
        assert_eq!(
            e.to_string(),
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
        assert_eq!(pick_container(&two, "p", Some("i")).expect("init"), "i");
        let e = pick_container(&two, "p", Some("c")).expect_err("invalid");
        assert_eq!(e.to_string(), "container c is not valid for pod p");
        assert_eq!(e.code(), StatusCode::BAD_REQUEST);
    }
}
