//! Feeds the graph (upstream's `GraphBuilder` monitors and `processGraphChanges`): one
//! watch per monitored kind, plus the identities workers found absent, applied one at a
//! time by this single writer; the work each change makes goes to the queues. Once every
//! watch has listed its kind, the graph is complete and the workers may start.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::mpsc::UnboundedReceiver;
use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, ApiResource, DynamicObject, PartialObjectMeta};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use tokio::sync::watch;

use controller_base::events::{EventType, Recorder};
use controller_base::runner::chain;

use crate::gc::absent::AbsentOwners;
use crate::gc::graph::{Graph, Identity, Observed, OwnerRef, Uid, Work};
use crate::gc::queue::WorkQueue;

/// One kind's watch: the uids listed since its last (re)start, and whether it has listed
/// once.
#[derive(Debug, Clone, Default)]
struct Monitor {
    listing: Option<HashSet<Uid>>,
    synced: bool,
}

enum Input {
    Watch(usize, Box<Result<watcher::Event<Watched>, watcher::Error>>),
    /// A worker found this identity absent.
    Absent(Identity),
}

pub struct Builder {
    pub client: Client,
    pub resources: Vec<ApiResource>,
    pub graph: Arc<Mutex<Graph>>,
    pub deletes: Arc<WorkQueue<Uid>>,
    pub orphans: Arc<WorkQueue<Uid>>,
    pub recorder: Recorder,
    pub synced: watch::Sender<bool>,
    /// Where owners seen deleted are remembered, for their dependents' checks.
    pub absent_owners: Arc<AbsentOwners>,
}

/// What the graph reads of an object: its metadata. The rest of each object in a watch is
/// skipped as it is decoded, as upstream's collector watches metadata only.
type Watched = PartialObjectMeta<DynamicObject>;

/// What a watch event says about an object of `resource`; None without a uid.
fn observed(resource: &ApiResource, obj: &Watched) -> Option<Observed> {
    let meta = &obj.metadata;
    Some(Observed {
        identity: Identity {
            api_version: resource.api_version.clone(),
            kind: resource.kind.clone(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone()?,
        },
        owners: meta
            .owner_references
            .iter()
            .flatten()
            .map(|r| OwnerRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
                block_owner_deletion: r.block_owner_deletion == Some(true),
            })
            .collect(),
        deleting: meta.deletion_timestamp.is_some(),
        finalizers: meta.finalizers.clone().unwrap_or_default(),
    })
}

impl Builder {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub async fn run(self, absent: UnboundedReceiver<Identity>) {
        let monitors: Vec<BoxStream<'static, Input>> = self
            .resources
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let api = Api::<Watched>::all_with(self.client.clone(), r);
                controller_base::cache::watch(api, watcher::Config::default())
                    .default_backoff()
                    .map(move |e| Input::Watch(i, Box::new(e)))
                    .boxed()
            })
            .collect();
        let mut inputs = stream::select(stream::select_all(monitors), absent.map(Input::Absent));
        let mut monitors = vec![Monitor::default(); self.resources.len()];
        if self.resources.is_empty() {
            let _ = self.synced.send(true);
        }
        while let Some(input) = inputs.next().await {
            let work = match input {
                Input::Absent(identity) => self.graph().remove(&identity.uid, Some(&identity)),
                Input::Watch(i, event) => match *event {
                    Ok(event) => self.apply(i, event, &mut monitors),
                    Err(e) => {
                        let r = &self.resources[i];
                        tracing::warn!(resource = %r.plural, group = %r.group, error = %chain(&e), "garbage collector watch failed; retrying");
                        continue;
                    }
                },
            };
            self.dispatch(work);
        }
    }

    /// Applies one watch event of monitor `i` to the graph.
    fn apply(
        &self,
        i: usize,
        event: watcher::Event<Watched>,
        monitors: &mut [Monitor],
    ) -> Vec<Work> {
        let r = &self.resources[i];
        match event {
            watcher::Event::Init => {
                monitors[i].listing = Some(HashSet::new());
                Vec::new()
            }
            watcher::Event::InitApply(obj) | watcher::Event::Apply(obj) => {
                let Some(o) = observed(r, &obj) else {
                    return Vec::new();
                };
                if let Some(seen) = monitors[i].listing.as_mut() {
                    seen.insert(o.identity.uid.clone());
                }
                self.graph().observe(o)
            }
            watcher::Event::Delete(obj) => {
                let Some(o) = observed(r, &obj) else {
                    return Vec::new();
                };
                let mut graph = self.graph();
                if !graph.dependents(&o.identity.uid).is_empty() {
                    self.absent_owners.add(o.identity.clone());
                }
                graph.remove(&o.identity.uid, None)
            }
            watcher::Event::InitDone => {
                // What the relist no longer has was deleted while the watch was down.
                let seen = monitors[i].listing.take().unwrap_or_default();
                let mut graph = self.graph();
                let gone: Vec<Uid> = graph
                    .observed_of_kind(&r.api_version, &r.kind)
                    .into_iter()
                    .filter(|u| !seen.contains(u))
                    .collect();
                let work = gone.iter().flat_map(|u| graph.remove(u, None)).collect();
                drop(graph);
                if !monitors[i].synced {
                    monitors[i].synced = true;
                    if monitors.iter().all(|m| m.synced) {
                        tracing::info!(kinds = monitors.len(), "garbage collector graph synced");
                        let _ = self.synced.send(true);
                    }
                }
                work
            }
        }
    }

    fn dispatch(&self, work: Vec<Work>) {
        for w in work {
            match w {
                Work::AttemptToDelete(uid) => self.deletes.add(uid),
                Work::AttemptToOrphan(uid) => self.orphans.add(uid),
                Work::InvalidNamespaceOwnerRef { dependent, owner } => {
                    self.report_invalid_namespace(dependent, &owner)
                }
            }
        }
    }

    /// Upstream's `OwnerRefInvalidNamespace` warning on the dependent.
    fn report_invalid_namespace(&self, dependent: Identity, owner_uid: &str) {
        let owner = self
            .graph()
            .node(&dependent.uid)
            .and_then(|n| n.owners.iter().find(|o| o.uid == owner_uid).cloned());
        let Some(owner) = owner else { return };
        let named = Identity {
            api_version: owner.api_version,
            kind: owner.kind,
            namespace: dependent.namespace.clone(),
            name: owner.name,
            uid: owner.uid,
        };
        let message = format!(
            "ownerRef {named} does not exist in namespace {:?}",
            dependent.namespace
        );
        tracing::info!(object = %dependent, "{message}");
        let involved = ObjectReference {
            api_version: Some(dependent.api_version),
            kind: Some(dependent.kind),
            namespace: Some(dependent.namespace),
            name: Some(dependent.name),
            uid: Some(dependent.uid),
            ..Default::default()
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            if let Err(e) = recorder
                .record_about(
                    involved,
                    EventType::Warning,
                    "OwnerRefInvalidNamespace",
                    &message,
                )
                .await
            {
                tracing::warn!(error = %chain(&e), "recording an event failed");
            }
        });
    }
}
