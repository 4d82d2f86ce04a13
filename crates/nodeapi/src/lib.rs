//! The node API (kubelet's :10250), which the API server proxies `kubectl logs`, `exec`,
//! `attach` and `port-forward` to: container logs read back from their CRI files (`logs`,
//! `server`), exec and attach over WebSocket and port-forward over SPDY (`streaming`), all
//! routed behind the node's bearer token (`router`) and served over TLS.

mod logs;
mod router;
mod server;
mod sessions;
mod streaming;

pub use logs::{ContainerLiveness, RuntimeLiveness};
pub use router::router;
pub use server::{serve, tls_config, NodeApiState, TlsError};
pub use sessions::{Sessions, MAX_SESSIONS};
/// The pure protocol parsers of the streaming endpoints (exec query, WebSocket channel
/// messages, SPDY frames), for fuzzers and tools.
pub use streaming::channel::{decode as decode_channel_message, Inbound};
pub use streaming::parse_exec_query;
pub use streaming::spdy::{Decoder as SpdyDecoder, Frame as SpdyFrame, SpdyError};
