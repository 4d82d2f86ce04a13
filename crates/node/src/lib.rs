//! The node agent ("kubelet"): registers the Node, keeps its status and Lease fresh, runs
//! the pods bound to it through the CRI-shaped `runtime::RuntimeService`, reports their
//! status and events through the Kubernetes API, and serves container logs on the node API.

pub mod backoff;
pub mod containerspec;
pub mod expand;
pub mod podstatus;
pub mod qos;
pub mod apiclient;
pub mod events;
pub mod logs;
pub mod worker;
#[cfg(test)]
mod testsupport;
pub mod machine;
pub mod nodestatus;
