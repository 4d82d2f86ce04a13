//! The node's resource statistics, as the kubelet serves them: cgroup figures of each pod
//! and container (read by the runtime) and the node's procfs figures, sampled on a timer
//! (`collector`), turned into the kubelet's `/stats/summary` document with CPU rates
//! (`build`, `summary`) and into the Prometheus text of `/metrics/resource` and
//! `/metrics/cadvisor` (`prometheus`).

mod build;
mod collector;
mod proc;
mod prometheus;
mod summary;

pub use build::{build, Observed, Rates};
pub use collector::{Collector, FromRuntime, SandboxStatsSource, StatsError, SAMPLE_INTERVAL};
pub use proc::{parse_node_usage, read_node_usage, NodeUsage, ProcError};
pub use prometheus::{cadvisor_metrics, resource_metrics};
pub use summary::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};
