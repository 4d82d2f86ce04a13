//! peapod's scheduler (kube-scheduler's job). The decision is pure: a [`snapshot`] of nodes
//! and the pods bound to them, the filters (`NodeUnschedulable`, `TaintToleration`,
//! `NodeAffinity`, `NodePorts`, `NodeResourcesFit`, `VolumeBinding`, `PodTopologySpread`,
//! `InterPodAffinity`) and scores of [`schedule`], and the `0/N nodes are available` message
//! of [`misfit`], and [`preemption`] for pods that fit nowhere. The [`queue`] orders the
//! pods to try as kube-scheduler's priority queue does, and the [`controller`] feeds it from
//! watch caches, binds pods and evicts the victims of preemption.

pub mod controller;
pub mod interpod;
pub mod misfit;
pub mod nodescore;
pub mod ports;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod schedule;
pub mod selectors;
pub mod snapshot;
pub mod spread;
pub mod volumefit;

pub use controller::run;
