//! The kubelet's node-pressure eviction (its eviction manager, v1.33), as pure rules: hard
//! and soft thresholds on `memory.available` / `nodefs.available` / `imagefs.available` /
//! `nodefs.inodesFree` and when they are met (soft ones after their grace period), the node
//! conditions they raise and what admission refuses under them, the order pods are evicted
//! in, the grace period an evicted pod gets, and the eviction message. Observing the
//! machine and evicting are the node agent's.

mod conditions;
mod manager;
mod rank;
mod threshold;

pub use conditions::{Conditions, Tracker, TRANSITION_PERIOD};
pub use manager::{Decision, Evaluator, Settings, IMMEDIATE_GRACE_PERIOD};
pub use rank::{eviction_message, pod_request, rank, Candidate, ContainerUsage};
pub use threshold::{
    default_hard, format_binary, parse_hard, parse_soft, Observation, Resource, Signal, Threshold,
    ThresholdError, Value,
};
