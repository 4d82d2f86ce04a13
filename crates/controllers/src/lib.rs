//! peapod's controller manager (kube-controller-manager's and kube-scheduler's jobs): the
//! scheduler (its own crate), the namespace lifecycle controller, the Endpoints/EndpointSlice controllers,
//! the node IPAM controller (a pod CIDR per Node), the bootstrap token cleaner, the garbage
//! collector, the per-namespace ServiceAccount and root CA controllers, the resource quota
//! controller, and
//! ClusterRole aggregation, each
//! a plain Kubernetes API client built on `kube::runtime` (watch caches, a reconcile per object that says when to look again, retries with back-off). They never
//! open the store or call into an API server, so they run beside any API server: inside
//! `peapod up` against its own API, or alone with `peapod controllers --kubeconfig`, where
//! leader election on a Lease lets several copies run and only one act.
//!
//! A new controller is one file with a `run(shared)` function and one line in
//! [`CONTROLLERS`] (or, for workload kinds, in `workload-controllers`); what they share is
//! `controller-base`.

mod clusterroles;
mod endpoints;
mod gc;
mod leader;
mod namespace;
mod nodeipam;
mod resourcequota;
mod serviceaccounts;
mod tokencleaner;

use std::future::Future;

use controller_base::{Shared, Start};
use kube::Client;

pub use certificate_controllers::ClusterSigning;
pub use leader::{unique_identity, ConfigError, LeaderElection};

/// The core controllers, by name; the manager also runs
/// the apps, batch, storage and policy controllers of [`WORKLOAD_CONTROLLERS`].
pub const CONTROLLERS: &[(&str, Start)] = &[
    ("scheduler", scheduler::run),
    ("namespace", namespace::run),
    ("endpoints", endpoints::run),
    ("nodeipam", nodeipam::run),
    ("garbagecollector", gc::run),
    ("serviceaccount", serviceaccounts::run),
    ("clusterrole-aggregation", clusterroles::run),
    ("tokencleaner", tokencleaner::run),
    ("resourcequota", resourcequota::run),
];

/// The controllers of the workload kinds, by crate.
pub const WORKLOAD_CONTROLLERS: &[&[(&str, Start)]] = &[
    workload_controllers::CONTROLLERS,
    batch_controllers::CONTROLLERS,
    storage_controllers::CONTROLLERS,
    policy_controllers::CONTROLLERS,
    certificate_controllers::CONTROLLERS,
];

/// What the controllers need besides an API client.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// The CA bundle (PEM) the `root-ca-cert-publisher` puts in every namespace's
    /// `kube-root-ca.crt` ConfigMap (kube-controller-manager's `--root-ca-file`); without it
    /// that controller does not run.
    pub root_ca: Option<String>,
    /// The node lifecycle and taint eviction controllers' grace periods.
    pub node_lifecycle: node_lifecycle::Settings,
    /// The CA that signs approved node client certificate requests; without it the CSR
    /// signer does not run.
    pub cluster_signing: Option<certificate_controllers::ClusterSigning>,
}

/// The Lease kube-controller-manager would use is `kube-system/kube-controller-manager`;
/// ours is named for us, so a real controller manager and peapod's never share one.
pub const DEFAULT_LEASE_NAMESPACE: &str = "kube-system";
pub const DEFAULT_LEASE_NAME: &str = "peapod-controllers";

/// Runs every controller until `shutdown` completes — only while holding the Lease when
/// `leader_election` is given.
pub async fn run(
    client: Client,
    settings: Settings,
    leader_election: Option<LeaderElection>,
    shutdown: impl Future<Output = ()>,
) {
    let client = controller_base::useragent::named(&client, "kube-controller-manager");
    match leader_election {
        None => {
            tokio::select! {
                _ = run_all(client, settings) => {}
                _ = shutdown => {}
            }
        }
        Some(cfg) => {
            leader::run(client.clone(), cfg, shutdown, || {
                run_all(client.clone(), settings.clone())
            })
            .await
        }
    }
}

async fn run_all(client: Client, settings: Settings) {
    let (shared, informers) = Shared::new(client.clone());
    let controllers = async move {
        shared.synced().await;
        let all = || {
            CONTROLLERS
                .iter()
                .chain(WORKLOAD_CONTROLLERS.iter().flat_map(|list| list.iter()))
        };
        let mut names: Vec<&str> = all().map(|(n, _)| *n).collect();
        let mut running: Vec<_> = all().map(|(_, start)| start(&shared)).collect();
        names.extend(["node-lifecycle", "taint-eviction"]);
        running.push(node_lifecycle::run(&shared, settings.node_lifecycle));
        if let Some(ca) = settings.root_ca {
            names.push("root-ca-cert-publisher");
            running.push(serviceaccounts::run_root_ca_publisher(client.clone(), ca));
        }
        if let Some(signing) = settings.cluster_signing {
            names.push("csrsigning");
            running.push(certificate_controllers::signer(client.clone(), signing));
        }
        tracing::info!(controllers = ?names, "starting controllers");
        futures::future::join_all(running).await;
    };
    futures::future::join(informers, controllers).await;
}
