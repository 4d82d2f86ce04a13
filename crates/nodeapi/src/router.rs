//! The node API's routes: `/healthz`, `/metrics` (Prometheus text, as kubelet serves it),
//! the resource stats (`/stats/summary`, `/metrics/resource`, `/metrics/cadvisor`), container logs, and the streaming endpoints (exec, attach, port-forward), all behind the
//! node's bearer token. Handlers are tested here without sockets.

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use subtle::ConstantTimeEq;

use crate::server::{container_logs, NodeApiState};
use crate::streaming::{attach_handler, exec_handler, portforward_handler};

async fn healthz() -> &'static str {
    "ok"
}

async fn metrics_text(State(state): State<NodeApiState>) -> Response {
    match &state.metrics {
        Some(registry) => (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            registry.render(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Which rendering of the node's stats a route serves.
#[derive(Debug, Clone, Copy)]
enum StatsView {
    Summary,
    Resource,
    Cadvisor,
}

async fn stats(state: &NodeApiState, view: StatsView) -> Response {
    let Some(collector) = &state.stats else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let summary = match collector.summary().await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "node stats unavailable");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "node stats are unavailable",
            )
                .into_response();
        }
    };
    match view {
        StatsView::Summary => match serde_json::to_string(summary.as_ref()) {
            Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
            Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        StatsView::Resource => (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            nodestats::resource_metrics(&summary),
        )
            .into_response(),
        StatsView::Cadvisor => (
            [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
            nodestats::cadvisor_metrics(&summary),
        )
            .into_response(),
    }
}

async fn stats_summary(State(state): State<NodeApiState>) -> Response {
    stats(&state, StatsView::Summary).await
}

async fn metrics_resource(State(state): State<NodeApiState>) -> Response {
    stats(&state, StatsView::Resource).await
}

async fn metrics_cadvisor(State(state): State<NodeApiState>) -> Response {
    stats(&state, StatsView::Cadvisor).await
}

/// Every request carries the node token (kubelet's authn); compared in constant time so its
/// bytes cannot be found one at a time from response timings.
async fn require_token(State(state): State<NodeApiState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let expected = state.token.as_bytes();
    let ok = !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected));
    if !ok {
        return (StatusCode::UNAUTHORIZED, "Unauthorized").into_response();
    }
    next.run(req).await
}

/// The node API routes.
pub fn router(state: NodeApiState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics_text))
        .route("/stats/summary", get(stats_summary))
        .route("/metrics/resource", get(metrics_resource))
        .route("/metrics/cadvisor", get(metrics_cadvisor))
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .route(
            "/exec/{namespace}/{pod}/{container}",
            get(exec_handler).post(exec_handler),
        )
        .route(
            "/attach/{namespace}/{pod}/{container}",
            get(attach_handler).post(attach_handler),
        )
        .route(
            "/portforward/{namespace}/{pod}",
            get(portforward_handler).post(portforward_handler),
        )
        .layer(middleware::from_fn_with_state(state.clone(), require_token))
        .layer(middleware::from_fn(tlsserve::catch_panic))
        .with_state(state)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, RwLock};

    use super::*;
    use crate::logs::ContainerLiveness;
    use async_trait::async_trait;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use jiff::Timestamp;
    use k8s_openapi::api::core::v1::Pod;
    use podapi::PodCache;
    use serde_json::json;
    use tower::ServiceExt;

    struct Dead;

    #[async_trait]
    impl ContainerLiveness for Dead {
        async fn is_running(&self, _: &std::path::Path) -> bool {
            false
        }
    }

    fn setup(status: serde_json::Value) -> (tempfile::TempDir, NodeApiState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "app", "image": "x"}, {"name": "side", "image": "x"}],
                     "ephemeralContainers": [{"name": "dbg", "image": "x"}]},
            "status": status
        }))
        .expect("pod");
        let pods: PodCache = Arc::new(RwLock::new(HashMap::from([(
            "u1".to_string(),
            Arc::new(pod),
        )])));
        let state = NodeApiState {
            pods,
            log_root: dir.path().to_path_buf(),
            token: "s3cret".into(),
            liveness: Arc::new(Dead),
            runtime: None,
            metrics: None,
            stats: None,
            sessions: Default::default(),
        };
        (dir, state)
    }

    fn write_log(root: &std::path::Path, attempt: u32, text: &str) {
        let dir = root.join("default_web_u1/app");
        std::fs::create_dir_all(&dir).expect("mkdir");
        let t = Timestamp::from_second(1_700_000_000).expect("t");
        std::fs::write(
            dir.join(format!("{attempt}.log")),
            crilog::format_line(t, crilog::Stream::Stdout, false, text.as_bytes()),
        )
        .expect("write");
    }

    async fn get(state: &NodeApiState, uri: &str, token: Option<&str>) -> (StatusCode, String) {
        let mut req = Request::builder().uri(uri);
        if let Some(t) = token {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let resp = router(state.clone())
            .oneshot(req.body(Body::empty()).expect("req"))
            .await
            .expect("resp");
        let status = resp.status();
        let body = resp.into_body().collect().await.expect("body").to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    /// Every request needs the token: missing, wrong, a prefix of it or longer are refused.
    #[tokio::test]
    async fn the_token_is_always_required() {
        let (_dir, state) = setup(json!({}));
        for token in [
            None,
            Some(""),
            Some("s3cre"),
            Some("s3cret!"),
            Some("S3CRET"),
        ] {
            assert_eq!(
                get(&state, "/healthz", token).await.0,
                StatusCode::UNAUTHORIZED,
                "{token:?}"
            );
        }
        assert_eq!(
            get(&state, "/healthz", Some("s3cret")).await.0,
            StatusCode::OK
        );
        // An empty configured token refuses everyone rather than admitting everyone.
        let open = NodeApiState {
            token: String::new(),
            ..state
        };
        assert_eq!(
            get(&open, "/healthz", Some("")).await.0,
            StatusCode::UNAUTHORIZED
        );
    }

    /// Past the session cap, exec, attach and port-forward answer 429 before anything else
    /// happens, and the rest of the node API keeps answering.
    #[tokio::test]
    async fn streaming_sessions_over_the_cap_get_429() {
        let (_dir, mut state) = setup(json!({}));
        state.sessions = crate::sessions::Sessions::new(0);
        let ok = Some("s3cret");
        for uri in [
            "/exec/default/web/app?command=sh",
            "/attach/default/web/app",
            "/portforward/default/web",
        ] {
            let (code, body) = get(&state, uri, ok).await;
            assert_eq!(code, StatusCode::TOO_MANY_REQUESTS, "{uri}: {body}");
            assert!(body.contains("too many"), "{body}");
        }
        assert_eq!(get(&state, "/healthz", ok).await.0, StatusCode::OK);
    }

    #[tokio::test]
    async fn metrics_are_served_behind_the_token() {
        let (_dir, mut state) = setup(json!({}));
        let ok = Some("s3cret");
        assert_eq!(get(&state, "/metrics", ok).await.0, StatusCode::NOT_FOUND);
        let registry = Arc::new(metrics::Registry::default());
        let family = registry.register(metrics::Family::new(
            "t_seconds",
            "T.",
            metrics::DURATION_BUCKETS,
        ));
        family.observe(std::time::Duration::from_millis(3));
        state.metrics = Some(registry);
        assert_eq!(
            get(&state, "/metrics", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        let (status, text) = get(&state, "/metrics", ok).await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("# TYPE t_seconds histogram\n"), "{text}");
        assert!(text.contains("t_seconds_count 1\n"), "{text}");
    }

    struct NoSandboxes;

    #[async_trait]
    impl nodestats::SandboxStatsSource for NoSandboxes {
        async fn sandbox_stats(
            &self,
        ) -> Result<Vec<runtime::PodSandboxStats>, runtime::RuntimeError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn stats_summary_and_resource_metrics_behind_the_token() {
        let (dir, mut state) = setup(json!({}));
        let ok = Some("s3cret");
        for uri in ["/stats/summary", "/metrics/resource", "/metrics/cadvisor"] {
            assert_eq!(get(&state, uri, ok).await.0, StatusCode::NOT_FOUND, "{uri}");
        }
        let proc = dir.path().join("proc");
        std::fs::create_dir(&proc).expect("mkdir");
        std::fs::write(proc.join("stat"), "cpu  250 0 0 0\n").expect("write");
        std::fs::write(proc.join("meminfo"), "MemTotal: 8 kB\nMemFree: 2 kB\n").expect("write");
        state.stats = Some(Arc::new(nodestats::Collector::new(
            Arc::new(NoSandboxes),
            proc,
            "n1".into(),
        )));
        for uri in ["/stats/summary", "/metrics/resource", "/metrics/cadvisor"] {
            assert_eq!(
                get(&state, uri, None).await.0,
                StatusCode::UNAUTHORIZED,
                "{uri}"
            );
        }
        let (code, body) = get(&state, "/stats/summary", ok).await;
        assert_eq!(code, StatusCode::OK, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["node"]["nodeName"], "n1");
        assert_eq!(v["node"]["cpu"]["usageCoreNanoSeconds"], 2_500_000_000u64);
        assert_eq!(v["node"]["memory"]["workingSetBytes"], 6144);
        assert_eq!(v["pods"], json!([]));
        let (code, text) = get(&state, "/metrics/resource", ok).await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            text.lines()
                .any(|l| l.starts_with("node_cpu_usage_seconds_total 2.5 ")),
            "{text}"
        );
        let (code, text) = get(&state, "/metrics/cadvisor", ok).await;
        assert_eq!(code, StatusCode::OK);
        assert!(
            text.contains("# TYPE container_memory_working_set_bytes gauge"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn logs_current_previous_and_errors() {
        let (dir, state) = setup(json!({}));
        write_log(dir.path(), 0, "first run");
        write_log(dir.path(), 1, "second run");
        let ok = Some("s3cret");
        assert_eq!(
            get(&state, "/healthz", ok).await,
            (StatusCode::OK, "ok".into())
        );
        assert_eq!(
            get(&state, "/healthz", None).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&state, "/healthz", Some("wrong")).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            get(&state, "/containerLogs/default/web/app", ok).await,
            (StatusCode::OK, "second run\n".into())
        );
        assert_eq!(
            get(&state, "/containerLogs/default/web/app?previous=true", ok).await,
            (StatusCode::OK, "first run\n".into())
        );
        assert_eq!(
            get(
                &state,
                "/containerLogs/default/web/app?timestamps=true&tailLines=1",
                ok
            )
            .await
            .1,
            "2023-11-14T22:13:20.000000000Z second run\n"
        );
        assert_eq!(
            get(&state, "/containerLogs/default/web/nope", ok).await,
            (
                StatusCode::BAD_REQUEST,
                "container nope is not valid for pod web".into()
            )
        );
        assert_eq!(
            get(&state, "/containerLogs/default/web/side", ok).await,
            (
                StatusCode::BAD_REQUEST,
                "container \"side\" in pod \"web\" is waiting to start: ContainerCreating".into()
            )
        );
        // Ephemeral containers have logs too.
        assert_eq!(
            get(&state, "/containerLogs/default/web/dbg", ok).await,
            (
                StatusCode::BAD_REQUEST,
                "container \"dbg\" in pod \"web\" is waiting to start: ContainerCreating".into()
            )
        );
        assert_eq!(
            get(&state, "/containerLogs/default/web/side?previous=true", ok).await,
            (
                StatusCode::BAD_REQUEST,
                "previous terminated container \"side\" in pod \"web\" not found".into()
            )
        );
        assert_eq!(
            get(&state, "/containerLogs/default/other/app", ok).await.0,
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            get(&state, "/containerLogs/default/web/app?tailLines=x", ok)
                .await
                .0,
            StatusCode::BAD_REQUEST
        );
        // Follow on an exited container: drains and ends.
        assert_eq!(
            get(&state, "/containerLogs/default/web/app?follow=true", ok)
                .await
                .1,
            "second run\n"
        );
    }

    #[tokio::test]
    async fn previous_while_waiting_to_restart_is_the_last_run() {
        let (dir, state) = setup(json!({"containerStatuses": [{
            "name": "app", "image": "x", "imageID": "", "ready": false, "restartCount": 1,
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1}}
        }]}));
        write_log(dir.path(), 0, "run zero");
        write_log(dir.path(), 1, "run one");
        assert_eq!(
            get(
                &state,
                "/containerLogs/default/web/app?previous=1",
                Some("s3cret")
            )
            .await
            .1,
            "run one\n"
        );
    }
}
