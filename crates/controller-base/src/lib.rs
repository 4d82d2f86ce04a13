//! What every peapod controller is built from: watches and caches that hold objects without
//! their managedFields ([`cache`]), the reconcile driver with per-object retry
//! back-off ([`runner`]), the reconcile error and the API answers controllers test for
//! ([`error`]), the event recorder ([`events`]), whether a pod fits a node ([`nodefit`]),
//! owning children ([`ownership`]: controller references, pods from templates, adopt and
//! release, expectations), what controllers read from pods ([`pods`]) and writing their
//! status ([`status`]). Controllers are
//! plain Kubernetes API clients on `kube::runtime`; the crates holding them (`controllers`,
//! `workload-controllers`, `batch-controllers`, `storage-controllers`, `policy-controllers`)
//! each export a list of
//! [`Start`] functions.

pub mod cache;
pub mod error;
pub mod events;
pub mod nodefit;
pub mod ownership;
pub mod pods;
pub mod runner;
pub mod status;

use futures::future::BoxFuture;
use kube::Client;

/// Starts one controller; the future runs it until dropped.
pub type Start = fn(Client) -> BoxFuture<'static, ()>;
