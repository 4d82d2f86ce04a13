//! The workload kinds and what they need (apps, batch, storage, policy and the core
//! persistent-volume kinds): one file per kind holds its discovery entry and its strategy,
//! and one line in [`KINDS`] serves it. Discovery lists them after the core kinds, in this
//! order. What the kinds with a pod template share is in [`template`].

pub mod replicaset;
pub mod template;

use apimachinery::strategy::ResourceInfo;

/// The workload resources, in discovery order.
pub static KINDS: &[ResourceInfo] = &[replicaset::RESOURCE];
