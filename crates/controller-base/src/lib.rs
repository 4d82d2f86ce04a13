//! What every peapod controller is built from: watches and caches that hold objects without
//! their managedFields ([`cache`]), the caches controllers share ([`informer`]), the reconcile driver with per-object retry
//! back-off ([`runner`]), the reconcile error and the API answers controllers test for
//! ([`error`]), the event recorder ([`events`]), whether a pod fits a node ([`nodefit`]),
//! owning children ([`ownership`]: controller references, pods from templates, adopt and
//! release, expectations), what controllers read from pods ([`pods`]), writing their
//! status ([`status`]) and the User-Agent that names the writer ([`useragent`]). Controllers are
//! plain Kubernetes API clients on `kube::runtime`; the crates holding them (`controllers`,
//! `workload-controllers`, `batch-controllers`, `storage-controllers`, `policy-controllers`)
//! each export a list of
//! [`Start`] functions.

pub mod cache;
pub mod error;
pub mod events;
pub mod informer;
pub mod nodefit;
pub mod ownership;
pub mod pods;
pub mod runner;
pub mod status;
pub mod useragent;

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::{Api, Client};

use informer::Informer;

/// What every controller starts with: the API client and the informers the controllers share
/// (kube-controller-manager's shared informer factory). Pods have one: theirs is the cache
/// that grows with the cluster, and most controllers follow them. The other kinds are few, or
/// followed by one or two controllers, which keep their own watches.
#[derive(Clone)]
pub struct Shared {
    pub client: Client,
    pub pods: Informer<Pod>,
}

impl Shared {
    /// The shared informers over `client`, and the future that keeps them current.
    pub fn new(client: Client) -> (Self, BoxFuture<'static, ()>) {
        let (pods, watch) = Informer::new(Api::all(client.clone()));
        (Shared { client, pods }, watch)
    }

    /// Resolves once every shared cache holds its first list: controllers start after it, as
    /// kube-controller-manager starts its controllers after its informers' caches sync.
    pub async fn synced(&self) {
        self.pods.synced().await;
    }
}

/// Starts one controller; the future runs it until dropped.
pub type Start = fn(&Shared) -> BoxFuture<'static, ()>;
