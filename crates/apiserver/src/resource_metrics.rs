//! `metrics.k8s.io/v1beta1` served by the API server itself, so `kubectl top` works with
//! nothing to install: `NodeMetrics` and `PodMetrics` (get and list, namespaced or across
//! namespaces, with label and field selectors on the Node or Pod) made from each node's
//! `/stats/summary`, fetched through the node API as logs are, a few at a time in parallel.
//! A node that does not answer leaves its objects out, as metrics-server does.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::future::join_all;
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::error::ApiError;
use crate::objects::Selectors;
use crate::request::Query;
use crate::state::AppState;

/// How long one node may take to give its summary.
const NODE_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest summary read from a node.
const MAX_SUMMARY: usize = 32 << 20;

/// Why one node's summary could not be had (logged, never answered).
#[derive(Debug, thiserror::Error)]
enum SummaryError {
    #[error("node {node} has no address for its API")]
    NoAddress { node: String },
    #[error("node {node} did not answer within {NODE_TIMEOUT:?}")]
    Timeout { node: String },
    #[error("asking node {node} for its summary")]
    Proxy {
        node: String,
        #[source]
        source: crate::proxy::ProxyError,
    },
    #[error("node {node} answered {code}")]
    Status { node: String, code: StatusCode },
    #[error("reading node {node}'s summary")]
    Body {
        node: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("node {node}'s summary is not JSON")]
    Json {
        node: String,
        #[source]
        source: serde_json::Error,
    },
}

fn info(plural: &str) -> Result<&'static api::resources::ResourceInfo, ApiError> {
    api::resources::lookup("", plural).ok_or(ApiError::PathNotFound)
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

async fn fetch_summary(st: &AppState, node: &Value) -> Result<Value, SummaryError> {
    let name = name_of(node).to_string();
    let addr = crate::proxy::node_address(node)
        .ok_or_else(|| SummaryError::NoAddress { node: name.clone() })?;
    let get = async {
        let resp = crate::proxy::node_get(&st.nodes, addr, "/stats/summary")
            .await
            .map_err(|source| SummaryError::Proxy {
                node: name.clone(),
                source,
            })?;
        if !resp.status().is_success() {
            return Err(SummaryError::Status {
                node: name.clone(),
                code: resp.status(),
            });
        }
        let body = Limited::new(resp.into_body(), MAX_SUMMARY)
            .collect()
            .await
            .map_err(|source| SummaryError::Body {
                node: name.clone(),
                source,
            })?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|source| SummaryError::Json {
            node: name.clone(),
            source,
        })
    };
    tokio::time::timeout(NODE_TIMEOUT, get)
        .await
        .map_err(|_| SummaryError::Timeout { node: name.clone() })?
}

/// The summaries of `nodes`, by node name; nodes that fail are left out.
async fn summaries(st: &AppState, nodes: &[Value]) -> BTreeMap<String, Value> {
    let answers = join_all(nodes.iter().map(|n| fetch_summary(st, n))).await;
    let mut out = BTreeMap::new();
    for (node, answer) in nodes.iter().zip(answers) {
        match answer {
            Ok(s) => {
                out.insert(name_of(node).to_string(), s);
            }
            Err(e) => {
                tracing::debug!(error = %crate::error::error_chain(&e), "no summary from node")
            }
        }
    }
    out
}

fn json(v: &Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        v.to_string(),
    )
        .into_response()
}

fn not_found(resource: &str, name: String) -> ApiError {
    ApiError::NotFound {
        resource: format!("{resource}.{}", metricsapi::GROUP),
        group: metricsapi::GROUP.to_string(),
        name,
    }
}

fn selectors(
    plural: &str,
    raw_query: Option<&str>,
    name: Option<String>,
) -> Result<Selectors, ApiError> {
    let q = Query::parse(raw_query)?;
    Selectors::parse(
        info(plural)?,
        q.get("labelSelector"),
        q.get("fieldSelector"),
        name,
    )
}

async fn node_metrics(st: &AppState, selectors: &Selectors) -> Result<Vec<Value>, ApiError> {
    let (nodes, _) = st.registry.list(info("nodes")?, None, selectors).await?;
    let summaries = summaries(st, &nodes).await;
    let now = jiff::Timestamp::now();
    Ok(nodes
        .iter()
        .filter_map(|n| metricsapi::node_metrics(n, summaries.get(name_of(n))?, now))
        .collect())
}

async fn pod_metrics(
    st: &AppState,
    namespace: Option<&str>,
    selectors: &Selectors,
) -> Result<Vec<Value>, ApiError> {
    let (pods, _) = st
        .registry
        .list(info("pods")?, namespace, selectors)
        .await?;
    let node_of = |p: &Value| {
        p.pointer("/spec/nodeName")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
    };
    let mut names: Vec<String> = pods.iter().filter_map(node_of).collect();
    names.sort();
    names.dedup();
    let nodes_info = info("nodes")?;
    let mut nodes = Vec::with_capacity(names.len());
    for name in names {
        match st.registry.get(nodes_info, None, &name).await {
            Ok(n) => nodes.push(n),
            Err(ApiError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let summaries = summaries(st, &nodes).await;
    let now = jiff::Timestamp::now();
    Ok(pods
        .iter()
        .filter_map(|p| metricsapi::pod_metrics(p, summaries.get(&node_of(p)?)?, now))
        .collect())
}

/// `GET /apis/metrics.k8s.io/v1beta1/nodes`.
pub async fn list_nodes(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    let answer = async {
        let items = node_metrics(&st, &selectors("nodes", q.as_deref(), None)?).await?;
        Ok::<_, ApiError>(json(&metricsapi::list("NodeMetricsList", items)))
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /apis/metrics.k8s.io/v1beta1/nodes/{name}`.
pub async fn get_node(State(st): State<AppState>, Path(name): Path<String>) -> Response {
    let answer = async {
        let items = node_metrics(&st, &selectors("nodes", None, Some(name.clone()))?).await?;
        match items.into_iter().next() {
            Some(m) => Ok(json(&m)),
            None => Err(not_found("nodes", name)),
        }
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /apis/metrics.k8s.io/v1beta1/pods`.
pub async fn list_all_pods(State(st): State<AppState>, RawQuery(q): RawQuery) -> Response {
    list_pods(&st, None, q.as_deref()).await
}

/// `GET /apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods`.
pub async fn list_namespaced_pods(
    State(st): State<AppState>,
    Path(namespace): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    list_pods(&st, Some(&namespace), q.as_deref()).await
}

async fn list_pods(st: &AppState, namespace: Option<&str>, q: Option<&str>) -> Response {
    let answer = async {
        let items = pod_metrics(st, namespace, &selectors("pods", q, None)?).await?;
        Ok::<_, ApiError>(json(&metricsapi::list("PodMetricsList", items)))
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}`.
pub async fn get_pod(
    State(st): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let answer = async {
        let sel = selectors("pods", None, Some(name.clone()))?;
        let items = pod_metrics(&st, Some(&namespace), &sel).await?;
        match items.into_iter().next() {
            Some(m) => Ok(json(&m)),
            None => Err(not_found("pods", format!("{namespace}/{name}"))),
        }
    };
    answer.await.unwrap_or_else(IntoResponse::into_response)
}
