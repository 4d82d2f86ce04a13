//! The kubelet's cgroup tree for pods, as v1.33 builds it with the cgroupfs driver and
//! `cgroupsPerQOS: true`: a `kubepods` cgroup that carries the node's allocatable cpu and
//! memory (`enforceNodeAllocatable: [pods]`), the `burstable` and `besteffort` QoS tiers below
//! it, and each pod's `pod<UID>` cgroup under its tier (Guaranteed pods directly under
//! `kubepods`). The agent decides where a pod's cgroup goes and what the tiers hold; the
//! runtime creates the pod cgroup where it is told.

mod layout;
mod manager;
mod settings;

pub use layout::{pod_cgroup_name, Layout, BESTEFFORT, BURSTABLE, KUBEPODS};
pub use manager::{run, QosCgroups};
pub use settings::{tier_settings, NodeAllocatable, TierSettings};
