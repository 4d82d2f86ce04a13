//! The node API (kubelet's :10250), which the API server proxies `kubectl logs`, `exec`,
//! `attach` and `port-forward` to: container logs read back from their CRI files (`logs`,
//! `server`), exec and attach over WebSocket and port-forward over SPDY (`streaming`), all
//! routed behind the node's bearer token (`router`) and served over TLS.

mod logs;
mod router;
mod server;
mod streaming;

pub use logs::{ContainerLiveness, RuntimeLiveness};
pub use router::router;
pub use server::{serve, tls_config, NodeApiState, TlsError};
pub use streaming::{Sessions, MAX_SESSIONS};
