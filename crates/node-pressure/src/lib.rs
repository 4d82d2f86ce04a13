//! The kubelet's node-pressure eviction (its eviction manager, v1.33), as pure rules: hard
//! thresholds on `memory.available` / `nodefs.available` / `imagefs.available` /
//! `nodefs.inodesFree` and when they are met, the node conditions they raise and what
//! admission refuses under them, the order pods are evicted in, and the eviction message.
//! Observing the machine and evicting are the node agent's.

mod conditions;
mod rank;
mod threshold;

pub use conditions::{Conditions, Tracker, TRANSITION_PERIOD};
pub use rank::{eviction_message, pod_request, rank, Candidate, ContainerUsage};
pub use threshold::{
    default_hard, format_binary, parse_hard, Observation, Resource, Signal, Threshold,
    ThresholdError, Value,
};
