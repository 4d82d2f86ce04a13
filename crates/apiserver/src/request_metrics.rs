//! The API server's own Prometheus `/metrics`, with kube-apiserver's names: every resource
//! request counted in `apiserver_request_total` (by verb, group, version, resource,
//! subresource, scope, component and code) and timed in
//! `apiserver_request_duration_seconds` until its response starts (long-running requests
//! — watches, exec, attach, port-forward, logs — are counted, not timed, as upstream), and
//! `apiserver_storage_objects`, counted from the store when scraped.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use metrics::{render_gauge, Counter, Family, Registry};
use rbac::{Attributes, User};

use crate::error::ApiError;

/// kube-apiserver's request latency buckets (seconds).
const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

const REQUEST_LABELS: &[&str] = &[
    "verb",
    "group",
    "version",
    "resource",
    "subresource",
    "scope",
    "component",
    "code",
];

/// Subresources whose requests last as long as the client wants (upstream's long-running
/// check).
const LONG_RUNNING: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];

/// The request families and the registry that renders them.
pub struct ApiMetrics {
    registry: Registry,
    requests: Arc<Counter>,
    latency: Arc<Family>,
}

impl Default for ApiMetrics {
    fn default() -> Self {
        let registry = Registry::default();
        let requests = registry.register_counter(Counter::new(
            "apiserver_request_total",
            "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.",
            REQUEST_LABELS,
        ));
        let latency = registry.register(Family::with_labels(
            "apiserver_request_duration_seconds",
            "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.",
            &REQUEST_LABELS[..REQUEST_LABELS.len() - 1],
            LATENCY_BUCKETS,
        ));
        Self {
            registry,
            requests,
            latency,
        }
    }
}

/// How a request is labelled: (labels without the code, whether it is long-running).
fn labels_of(
    method: &str,
    path: &str,
    query: Option<&str>,
    apply: bool,
) -> Option<(Vec<String>, bool)> {
    let a = Attributes::from_request(User::default(), method, path, query);
    if !a.resource_request {
        return None;
    }
    let connect = LONG_RUNNING.contains(&a.subresource.as_str()) && a.subresource != "log";
    let verb = match a.verb.as_str() {
        _ if connect => "CONNECT",
        "get" => "GET",
        "list" => "LIST",
        "watch" => "WATCH",
        "create" => "POST",
        "update" => "PUT",
        "patch" if apply => "APPLY",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => "",
    };
    let collection = matches!(a.verb.as_str(), "list" | "watch" | "deletecollection");
    let scope = if !collection && !a.name.is_empty() {
        "resource"
    } else if !a.namespace.is_empty() {
        "namespace"
    } else {
        "cluster"
    };
    let long = verb == "WATCH" || LONG_RUNNING.contains(&a.subresource.as_str());
    let labels = vec![
        verb.to_string(),
        a.api_group,
        a.api_version,
        a.resource,
        a.subresource,
        scope.to_string(),
        "apiserver".to_string(),
    ];
    Some((labels, long))
}

impl ApiMetrics {
    /// How a request will be labelled, read before it runs: `None` for requests that are not
    /// resource requests.
    pub fn request_labels(req: &Request) -> Option<(Vec<String>, bool)> {
        let apply = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|ct| ct.starts_with("application/apply-patch"));
        labels_of(
            req.method().as_str(),
            req.uri().path(),
            req.uri().query(),
            apply,
        )
    }

    /// Counts a finished request with `code`, and times it from `start` unless it is
    /// long-running.
    pub fn observe(&self, labels: Option<(Vec<String>, bool)>, start: Instant, code: u16) {
        if let Some((labels, long)) = labels {
            let values: Vec<&str> = labels.iter().map(String::as_str).collect();
            if !long {
                self.latency.observe_labels(&values, start.elapsed());
            }
            let code = code.to_string();
            let mut with_code = values;
            with_code.push(&code);
            self.requests.inc(&with_code);
        }
    }

    /// The `/metrics` text, with `apiserver_storage_objects` counted from `store` now.
    pub async fn render(&self, store: &dyn store::Store) -> Response {
        let mut text = self.registry.render();
        let mut samples = Vec::new();
        for info in api::resources::all() {
            match store.list(info.group, info.plural, None).await {
                Ok(res) => {
                    samples.push((vec![crate::error::qualified(info)], res.items.len() as f64))
                }
                Err(e) => return ApiError::Store(e).into_response(),
            }
        }
        samples.sort_by(|a, b| a.0.cmp(&b.0));
        samples.dedup_by(|a, b| a.0 == b.0);
        render_gauge(
            &mut text,
            "apiserver_storage_objects",
            "[STABLE] Number of stored objects at the time of last check split by kind.",
            &["resource"],
            &samples,
        );
        ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(method: &str, path: &str, query: Option<&str>) -> Option<(Vec<String>, bool)> {
        labels_of(method, path, query, false)
    }

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn requests_are_labelled_as_kube_apiserver_labels_them() {
        assert_eq!(
            labels("GET", "/api/v1/namespaces/default/pods", None),
            Some((
                v(&["LIST", "", "v1", "pods", "", "namespace", "apiserver"]),
                false
            ))
        );
        assert_eq!(
            labels("GET", "/api/v1/pods", Some("watch=true")),
            Some((
                v(&["WATCH", "", "v1", "pods", "", "cluster", "apiserver"]),
                true
            ))
        );
        assert_eq!(
            labels("GET", "/apis/apps/v1/namespaces/ns/deployments/web", None),
            Some((
                v(&[
                    "GET",
                    "apps",
                    "v1",
                    "deployments",
                    "",
                    "resource",
                    "apiserver"
                ]),
                false
            ))
        );
        assert_eq!(
            labels("POST", "/api/v1/namespaces/ns/pods/web/exec", None),
            Some((
                v(&["CONNECT", "", "v1", "pods", "exec", "resource", "apiserver"]),
                true
            ))
        );
        assert_eq!(
            labels("GET", "/api/v1/namespaces/ns/pods/web/log", None),
            Some((
                v(&["GET", "", "v1", "pods", "log", "resource", "apiserver"]),
                true
            ))
        );
        assert_eq!(
            labels_of("PATCH", "/api/v1/nodes/n1/status", None, true),
            Some((
                v(&[
                    "APPLY",
                    "",
                    "v1",
                    "nodes",
                    "status",
                    "resource",
                    "apiserver"
                ]),
                false
            ))
        );
        assert_eq!(labels("GET", "/healthz", None), None);
        assert_eq!(labels("GET", "/apis", None), None);
    }
}
