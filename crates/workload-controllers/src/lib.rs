//! The workload controllers (kube-controller-manager's jobs for apps, batch and storage
//! kinds): each a file with a `run(client)` function and one line in [`CONTROLLERS`]. The
//! controller manager in `controllers` runs them beside the core ones. What they share
//! about owning children is in [`ownership`], what they read from pods in [`pods`], and
//! the rollout history the DaemonSet and StatefulSet controllers keep as ControllerRevisions
//! in `history`.

pub mod cronjob;
pub mod daemonset;
mod deployment;
mod history;
pub mod job;
pub mod localpath;
pub mod ownership;
mod persistentvolume;
pub mod pods;
mod replicaset;
pub mod rollout;
pub mod statefulset;
pub mod volumebinding;

use controller_base::Start;

/// Every workload controller, by name.
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("replicaset", replicaset::run),
    ("deployment", deployment::run),
    ("persistentvolume", persistentvolume::run),
    ("local-path-provisioner", localpath::run),
    ("daemonset", daemonset::run),
    ("statefulset", statefulset::run),
    ("job", job::run),
    ("cronjob", cronjob::run),
];
