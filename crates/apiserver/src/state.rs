//! The state every request handler shares (the registry and the credentials), in its own
//! module so that the handlers in `http`, `logs` and `streaming` depend on it and not on
//! each other.

use std::sync::Arc;

use crate::objects::Registry;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub registry: Registry,
    pub admin_token: Arc<str>,
    /// Issues and checks ServiceAccount tokens.
    pub tokens: Arc<serviceaccount::Authority>,
    /// TLS trust and token for node APIs.
    pub nodes: crate::proxy::NodeClient,
    /// `host:port` clients use, for legacy `/api`.
    pub server_address: String,
    /// Decides who may do what (RBAC).
    pub authorizer: authorizer::Authorizer,
    /// What `/metrics` serves: request counts and latencies.
    pub metrics: Arc<crate::request_metrics::ApiMetrics>,
}
