//! kube-controller-manager's node lifecycle controller and taint eviction controller, as
//! Kubernetes API clients: a node whose Lease and Ready heartbeat stop moving for the node
//! monitor grace period gets its conditions set to `Unknown`, its pods marked not Ready and
//! the `node.kubernetes.io/unreachable` taints ([`lifecycle`]); pods on a node with a
//! `NoExecute` taint they do not tolerate, or tolerate only for a while, are deleted when
//! their time is up ([`eviction`]), and pods of a deleted node are collected
//! ([`orphans`]). New evictions are paced per zone ([`zones`]). The decisions are pure
//! ([`health`], [`taints`], [`noexecute`], [`zones`]).

pub mod eviction;
pub mod health;
pub mod lifecycle;
pub mod noexecute;
pub mod orphans;
mod settings;
pub mod taints;
pub mod zones;

use controller_base::Shared;
use futures::future::BoxFuture;
use futures::FutureExt;

pub use settings::Settings;

/// Runs both controllers.
pub fn run(shared: &Shared, settings: Settings) -> BoxFuture<'static, ()> {
    futures::future::join(
        eviction::run(shared),
        lifecycle::run(shared.client.clone(), settings, shared.pods.store()),
    )
    .map(|_| ())
    .boxed()
}
