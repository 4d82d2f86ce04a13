//! The node agent ("kubelet"): registers the Node, keeps its status and Lease fresh, admits
//! the pods bound to it, runs each through a pod worker over the CRI-shaped
//! `runtime::RuntimeService`, evicts pods over their local storage limits or under node
//! pressure, and reports
//! status and events through the Kubernetes API; it removes reclaimed local-path volume
//! directories of this node. Its parts with their own interface live in
//! their own crates: the node API (`nodeapi`), probes and hooks (`probes`), volumes
//! (`volumes`), static pods (`staticpods`), container configs (`containerspec`) and the
//! API seam they share (`podapi`); this crate wires them together.

mod admission;
mod agent;
mod backoff;
mod config;
mod dnsconfig;
mod eviction;
pub mod imagegc;
mod localpath;
mod machine;
mod network;
mod nodestatus;
mod podstatus;
mod pressure;
mod qos;
mod sandbox;
mod startmetrics;
mod termination;
#[cfg(test)]
mod testsupport;
mod worker;

pub use agent::run;
pub use config::{AgentConfig, AgentError};
pub use nodestatus::Periods as NodeStatusPeriods;
pub use startmetrics::NodeMetrics;
