//! The garbage collector (kube-controller-manager's `garbagecollector` controller): objects
//! whose owners are all gone are deleted; an owner deleted in the foreground keeps its
//! `foregroundDeletion` finalizer until its blocking dependents are gone; an owner deleted
//! with the `orphan` finalizer is first removed from its dependents' `ownerReferences`.
//!
//! It watches every kind discovery lists as listable, watchable and deletable, and keeps a
//! graph of owners and dependents (`graph`, fed by `builder`); changes to the graph queue
//! work, and workers (`worker`) decide from the live objects (`policy`) and act. All of it
//! is event-driven: nothing polls.

mod absent;
mod builder;
mod graph;
mod kinds;
mod policy;
mod queue;
mod worker;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use kube::discovery::Discovery;
use kube::Client;

use controller_base::events::Recorder;
use controller_base::runner::chain;
use controller_base::Shared;

use absent::AbsentOwners;
use builder::Builder;
use graph::Graph;
use kinds::Kinds;
use queue::WorkQueue;
use worker::Collector;

/// Concurrent collections (kube-controller-manager's `--concurrent-gc-syncs` is 20; a
/// single machine needs fewer).
const DELETE_WORKERS: usize = 4;
const ORPHAN_WORKERS: usize = 2;
/// The event source upstream's collector records as.
const COMPONENT: &str = "garbage-collector-controller";

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    collect(client).boxed()
}

/// Discovery until it answers, with a growing pause between failed tries.
async fn discover(client: &Client) -> Kinds {
    let mut pause = Duration::from_millis(200);
    loop {
        match Discovery::new(client.clone()).run().await {
            Ok(d) => return Kinds::from_discovery(&d),
            Err(e) => {
                tracing::warn!(error = %chain(&e), retry_in = ?pause, "garbage collector discovery failed");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

async fn collect(client: Client) {
    let kinds = discover(&client).await;
    let graph = Arc::new(Mutex::new(Graph::default()));
    let deletes = WorkQueue::new();
    let orphans = WorkQueue::new();
    let (absent_tx, absent_rx) = futures::channel::mpsc::unbounded();
    let (synced_tx, synced_rx) = tokio::sync::watch::channel(false);
    let absent_owners = Arc::new(AbsentOwners::default());
    let builder = Builder {
        client: client.clone(),
        resources: kinds.monitored(),
        graph: graph.clone(),
        deletes: deletes.clone(),
        orphans: orphans.clone(),
        recorder: Recorder::new(client.clone(), COMPONENT),
        synced: synced_tx,
        absent_owners: absent_owners.clone(),
    };
    let collector = Arc::new(Collector {
        client,
        kinds,
        graph,
        deletes,
        orphans,
        absent: absent_tx,
        absent_owners,
    });
    let deleters =
        (0..DELETE_WORKERS).map(|_| collector.clone().delete_worker(synced_rx.clone()).boxed());
    let orphaners =
        (0..ORPHAN_WORKERS).map(|_| collector.clone().orphan_worker(synced_rx.clone()).boxed());
    let workers = futures::future::join_all(deleters.chain(orphaners));
    futures::future::join(builder.run(absent_rx), workers).await;
}
