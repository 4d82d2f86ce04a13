//! The node agent ("kubelet"): registers the Node, keeps its status and Lease fresh, runs
//! the pods bound to it through the CRI-shaped `runtime::RuntimeService`, reports their
//! status and events through the Kubernetes API, and serves container logs on the node API.

mod admission;
mod agent;
pub mod apiclient;
pub mod backoff;
pub mod clock;
mod config;
pub mod containerspec;
pub mod dnsconfig;
pub mod events;
pub mod eviction;
pub mod expand;
pub mod hooks;
pub mod logs;
pub mod machine;
pub mod network;
pub mod nodestatus;
pub mod podcache;
pub mod podstatus;
pub mod probe;
pub mod qos;
mod router;
pub mod security;
pub mod server;
pub mod staticpods;
pub mod streaming;
pub mod termination;
#[cfg(test)]
mod testsupport;
pub mod volumes;
pub mod worker;

pub use agent::run;
pub use config::{AgentConfig, AgentError};
pub use network::NetworkConfig;
