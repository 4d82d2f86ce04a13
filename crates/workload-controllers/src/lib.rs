//! The apps controllers (kube-controller-manager's ReplicaSet, Deployment, DaemonSet and
//! StatefulSet controllers): each a file with a `run(shared)` function and one line in
//! [`CONTROLLERS`]. The controller manager in `controllers` runs them beside the core ones.
//! The rollout arithmetic of Deployments is in [`rollout`]; the history the DaemonSet and
//! StatefulSet controllers keep as ControllerRevisions in `history`. What every controller
//! shares about owning children is `controller_base::ownership`.

pub mod daemonset;
mod deployment;
mod history;
mod replicaset;
pub mod rollout;
pub mod statefulset;

use controller_base::Start;

/// Every apps controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("replicaset", replicaset::run),
    ("deployment", deployment::run),
    ("daemonset", daemonset::run),
    ("statefulset", statefulset::run),
];
