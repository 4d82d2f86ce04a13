//! kube-controller-manager's node lifecycle controller and taint eviction controller, as
//! Kubernetes API clients: a node whose Lease and Ready heartbeat stop moving for the node
//! monitor grace period gets its conditions set to `Unknown`, its pods marked not Ready and
//! the `node.kubernetes.io/unreachable` taints ([`lifecycle`]); pods on a node with a
//! `NoExecute` taint they do not tolerate, or tolerate only for a while, are deleted when
//! their time is up ([`eviction`]), and pods of a deleted node are collected
//! ([`orphans`]). The decisions are pure ([`health`], [`taints`],
//! [`noexecute`]).

pub mod eviction;
pub mod health;
pub mod lifecycle;
pub mod noexecute;
pub mod orphans;
pub mod taints;

use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use kube::Client;

/// The controllers' flags (kube-controller-manager's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `--node-monitor-grace-period`: silence after which a node is `Unknown`.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted Ready.
    pub node_startup_grace_period: Duration,
}

impl Default for Settings {
    /// kube-controller-manager v1.33's defaults.
    fn default() -> Self {
        Settings {
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
        }
    }
}

/// Runs both controllers; they share one watch of all pods.
pub fn run(client: Client, settings: Settings) -> BoxFuture<'static, ()> {
    let (pods, eviction) = eviction::run(client.clone());
    futures::future::join(eviction, lifecycle::run(client, settings, pods))
        .map(|_| ())
        .boxed()
}
