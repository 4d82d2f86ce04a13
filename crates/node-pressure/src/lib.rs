//! The kubelet's node-pressure eviction (its eviction manager, v1.33), as pure rules: hard
//! and soft thresholds on `memory.available` / `nodefs.available` / `nodefs.inodesFree` /
//! `imagefs.available` / `imagefs.inodesFree` and when they are met (soft ones after their
//! grace period, acted ones until their minimum reclaim), the node conditions they raise and
//! what admission refuses under them, which signals the node reclaims for by deleting unused
//! images before it evicts, the order pods are evicted in, the grace period an evicted pod
//! gets, and the eviction message. Observing the machine, reclaiming and evicting are the
//! node agent's.

mod conditions;
mod manager;
mod rank;
mod threshold;

pub use conditions::{Conditions, Tracker, TRANSITION_PERIOD};
pub use manager::{
    reclaim_message, Decision, Evaluator, Settings, EVICTION_THRESHOLD_MET, IMMEDIATE_GRACE_PERIOD,
};
pub use rank::{eviction_message, pod_request, rank, Candidate, ContainerUsage};
pub use threshold::{
    default_hard, format_binary, parse_hard, parse_minimum_reclaim, parse_soft, Observation,
    Resource, Signal, Threshold, ThresholdError, Value,
};
