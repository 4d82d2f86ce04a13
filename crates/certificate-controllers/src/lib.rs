//! The controllers that let a node join (kube-controller-manager's `bootstrapsigner`,
//! `csrapproving` and `csrsigning`): the `cluster-info` ConfigMap signed with every signing
//! bootstrap token, node client certificate requests approved when a bootstrap token (or the
//! node itself) asks, and approved requests signed by the cluster CA.

mod bootstrapsigner;
mod csrapproving;
mod csrsigning;

use futures::future::BoxFuture;
use kube::Client;

pub use csrsigning::ClusterSigning;

/// The bootstrap signer and the CSR approver, by name.
pub const CONTROLLERS: &[(&str, controller_base::Start)] = &[
    ("bootstrapsigner", bootstrapsigner::run),
    ("csrapproving", csrapproving::run),
];

/// The CSR signer, which needs the CA's certificate and key.
pub fn signer(client: Client, signing: ClusterSigning) -> BoxFuture<'static, ()> {
    csrsigning::run(client, signing)
}
