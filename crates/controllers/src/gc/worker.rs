//! The garbage collector's work against the API (upstream's `attemptToDeleteWorker` and
//! `attemptToOrphanWorker`). Every decision reads the object and each of its owners live
//! from the API, not from the graph, which may lag: an owner counts as gone only when a GET
//! by its name answers 404 or an object with another uid.

use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::mpsc::UnboundedSender;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions,
    PropagationPolicy,
};
use kube::Client;
use serde_json::{json, Value};
use tokio::sync::watch;

use controller_base::error::{is_conflict, is_not_found};
use controller_base::runner::chain;

use crate::gc::absent::AbsentOwners;
use crate::gc::graph::{Graph, Identity, Uid};
use crate::gc::kinds::Kinds;
use crate::gc::policy::{verdict, OwnerState, Verdict, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::gc::queue::WorkQueue;

/// How often a read-modify-write is tried again when another writer wins.
const CONFLICT_RETRIES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// An API request failed (`what` names it).
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// An owner reference names a kind the API does not serve (yet).
    #[error("no served kind {kind} in {api_version}")]
    UnknownKind { api_version: String, kind: String },
    /// A cluster-scoped object names a namespaced owner: such a reference never resolves.
    #[error("cluster-scoped {dependent} names the namespaced owner {kind} {name}")]
    NamespacedOwnerOfClusterScoped {
        dependent: String,
        kind: String,
        name: String,
    },
}

fn api_error(what: impl Into<String>) -> impl FnOnce(kube::Error) -> WorkError {
    let what = what.into();
    move |source| WorkError::Api { what, source }
}

/// What becomes of a work item after one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Forget,
    /// Again after the item's back-off (a virtual node not seen by a watch yet).
    Requeue,
}

pub struct Collector {
    pub client: Client,
    pub kinds: Kinds,
    pub graph: Arc<Mutex<Graph>>,
    pub deletes: Arc<WorkQueue<Uid>>,
    pub orphans: Arc<WorkQueue<Uid>>,
    /// Identities the API says are gone, for the graph builder (virtual delete events).
    pub absent: UnboundedSender<Identity>,
    /// Owners the API already said are gone.
    pub absent_owners: Arc<AbsentOwners>,
}

impl Collector {
    fn graph(&self) -> MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Works the delete queue once the graph is complete.
    pub async fn delete_worker(self: Arc<Self>, mut synced: watch::Receiver<bool>) {
        if synced.wait_for(|s| *s).await.is_err() {
            return;
        }
        loop {
            let uid = self.deletes.get().await;
            let result = self.attempt_to_delete(&uid).await;
            self.settle(&self.deletes, &uid, result, "collecting");
        }
    }

    /// Works the orphan queue once the graph is complete.
    pub async fn orphan_worker(self: Arc<Self>, mut synced: watch::Receiver<bool>) {
        if synced.wait_for(|s| *s).await.is_err() {
            return;
        }
        loop {
            let uid = self.orphans.get().await;
            let result = self.attempt_to_orphan(&uid).await;
            self.settle(&self.orphans, &uid, result, "orphaning the dependents of");
        }
    }

    fn settle(
        &self,
        queue: &Arc<WorkQueue<Uid>>,
        uid: &Uid,
        result: Result<Next, WorkError>,
        doing: &str,
    ) {
        match result {
            Ok(Next::Forget) => queue.forget(uid),
            Ok(Next::Requeue) => queue.add_rate_limited(uid.clone()),
            Err(e @ WorkError::NamespacedOwnerOfClusterScoped { .. }) => {
                // Retrying cannot help; upstream leaves the object alone.
                tracing::info!(%uid, error = %chain(&e), "not {doing} object");
                queue.forget(uid);
            }
            Err(e) => {
                tracing::warn!(%uid, error = %chain(&e), "{doing} object failed; retrying");
                queue.add_rate_limited(uid.clone());
            }
        }
        queue.done(uid);
    }

    /// The API of the object `identity` names; None when it cannot exist (a namespaced
    /// kind without a namespace).
    fn api_of(&self, identity: &Identity) -> Result<Option<Api<DynamicObject>>, WorkError> {
        let (resource, namespaced) = self.resource(&identity.api_version, &identity.kind)?;
        Ok(self.api(&resource, namespaced, &identity.namespace))
    }

    fn resource(&self, api_version: &str, kind: &str) -> Result<(ApiResource, bool), WorkError> {
        self.kinds
            .lookup(api_version, kind)
            .map(|(r, n)| (r.clone(), n))
            .ok_or_else(|| WorkError::UnknownKind {
                api_version: api_version.to_string(),
                kind: kind.to_string(),
            })
    }

    fn api(
        &self,
        resource: &ApiResource,
        namespaced: bool,
        namespace: &str,
    ) -> Option<Api<DynamicObject>> {
        match (namespaced, namespace.is_empty()) {
            (true, true) => None,
            (true, false) => Some(Api::namespaced_with(
                self.client.clone(),
                namespace,
                resource,
            )),
            (false, _) => Some(Api::all_with(self.client.clone(), resource)),
        }
    }

    /// The object as the API has it now, if it is still the one with `identity`'s uid.
    async fn live(&self, identity: &Identity) -> Result<Option<DynamicObject>, WorkError> {
        let Some(api) = self.api_of(identity)? else {
            return Ok(None);
        };
        let obj = api
            .get_opt(&identity.name)
            .await
            .map_err(api_error(format!("reading {identity}")))?;
        Ok(obj.filter(|o| o.metadata.uid.as_deref() == Some(identity.uid.as_str())))
    }

    /// Tells the graph builder that `identity` does not exist.
    fn gone(&self, identity: &Identity) {
        // The builder only stops when the collector does.
        let _ = self.absent.unbounded_send(identity.clone());
    }

    async fn attempt_to_delete(&self, uid: &str) -> Result<Next, WorkError> {
        let Some(node) = self.graph().node(uid).cloned() else {
            return Ok(Next::Forget);
        };
        // Being deleted is a one-way trip: its dependents are handled when it is gone.
        if node.being_deleted && !node.deleting_dependents {
            return Ok(Next::Forget);
        }
        let Some(latest) = self.live(&node.identity).await? else {
            self.gone(&node.identity);
            return Ok(Next::Forget);
        };
        if node.deleting_dependents {
            self.finish_foreground(&node.identity).await?;
            return Ok(Next::Forget);
        }
        let after = if node.observed {
            Next::Forget
        } else {
            Next::Requeue
        };
        let refs = latest.metadata.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            return Ok(after);
        }
        let mut owners = Vec::with_capacity(refs.len());
        for r in &refs {
            owners.push((r.uid.clone(), self.owner_state(r, &node.identity).await?));
        }
        let (has_dependents, dependent_waits) = {
            let graph = self.graph();
            let deps = graph.dependents(uid);
            (!deps.is_empty(), deps.iter().any(|d| d.deleting_dependents))
        };
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        let rv = latest.metadata.resource_version.clone();
        match verdict(&owners, has_dependents, dependent_waits, &finalizers) {
            Verdict::Keep => {}
            Verdict::RemoveReferences(gone) => {
                tracing::info!(object = %node.identity, owners = ?gone, "removing references to owners that are gone or waiting");
                self.edit_owner_references(&node.identity, |refs| {
                    refs.retain(|r| !gone.contains(&r.uid))
                })
                .await?;
            }
            Verdict::DeleteInForeground { unblock_first } => {
                if unblock_first {
                    self.edit_owner_references(&node.identity, |refs| {
                        for r in refs.iter_mut() {
                            if r.block_owner_deletion == Some(true) {
                                r.block_owner_deletion = Some(false);
                            }
                        }
                    })
                    .await?;
                }
                self.delete(&node.identity, rv, PropagationPolicy::Foreground)
                    .await?;
            }
            Verdict::Delete(policy) => self.delete(&node.identity, rv, policy).await?,
        }
        Ok(after)
    }

    /// Upstream's `isDangling` plus the foreground check of `classifyReferences`.
    async fn owner_state(
        &self,
        r: &OwnerReference,
        item: &Identity,
    ) -> Result<OwnerState, WorkError> {
        let mut named = Identity {
            api_version: r.api_version.clone(),
            kind: r.kind.clone(),
            namespace: String::new(),
            name: r.name.clone(),
            uid: r.uid.clone(),
        };
        // Known gone, as a cluster-scoped owner or in the dependent's namespace.
        if self.absent_owners.contains(&named) {
            return Ok(OwnerState::Dangling);
        }
        named.namespace = item.namespace.clone();
        if self.absent_owners.contains(&named) {
            return Ok(OwnerState::Dangling);
        }
        let (resource, namespaced) = self.resource(&r.api_version, &r.kind)?;
        if !namespaced {
            named.namespace.clear();
        }
        if namespaced && item.namespace.is_empty() {
            return Err(WorkError::NamespacedOwnerOfClusterScoped {
                dependent: item.to_string(),
                kind: r.kind.clone(),
                name: r.name.clone(),
            });
        }
        let Some(api) = self.api(&resource, namespaced, &item.namespace) else {
            return Ok(OwnerState::Dangling);
        };
        let owner = api.get_opt(&r.name).await.map_err(api_error(format!(
            "reading the owner {} {} of {item}",
            r.kind, r.name
        )))?;
        Ok(match owner {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let waiting = o.metadata.deletion_timestamp.is_some()
                    && o.metadata
                        .finalizers
                        .iter()
                        .flatten()
                        .any(|f| f == FOREGROUND_FINALIZER);
                if waiting {
                    OwnerState::WaitingForDependents
                } else {
                    OwnerState::Solid
                }
            }
            _ => {
                self.absent_owners.add(named);
                OwnerState::Dangling
            }
        })
    }

    /// Deletes the object if it is still the version that was judged.
    async fn delete(
        &self,
        identity: &Identity,
        resource_version: Option<String>,
        policy: PropagationPolicy,
    ) -> Result<(), WorkError> {
        let Some(api) = self.api_of(identity)? else {
            return Ok(());
        };
        tracing::info!(object = %identity, propagation = ?policy, "deleting garbage");
        let params = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(identity.uid.clone()),
                resource_version,
            }),
            ..Default::default()
        };
        match api.delete(&identity.name, &params).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => {
                self.gone(identity);
                Ok(())
            }
            Err(e) => Err(api_error(format!("deleting {identity}"))(e)),
        }
    }

    /// An owner deleted in the foreground: once no blocking dependent is left its
    /// finalizer goes; until then its blocking dependents are collected.
    async fn finish_foreground(&self, owner: &Identity) -> Result<(), WorkError> {
        let blocking: Vec<(Uid, bool)> = self
            .graph()
            .blocking_dependents(&owner.uid)
            .iter()
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect();
        if blocking.is_empty() {
            tracing::info!(object = %owner, "no blocking dependents left; removing the foregroundDeletion finalizer");
            return self.remove_finalizer(owner, FOREGROUND_FINALIZER).await;
        }
        for (uid, deleting_dependents) in blocking {
            if !deleting_dependents {
                self.deletes.add(uid);
            }
        }
        Ok(())
    }

    async fn attempt_to_orphan(&self, uid: &str) -> Result<Next, WorkError> {
        let (owner, dependents) = {
            let graph = self.graph();
            let owner = graph.node(uid).map(|n| n.identity.clone());
            let deps: Vec<Identity> = graph
                .dependents(uid)
                .iter()
                .map(|d| d.identity.clone())
                .collect();
            (owner, deps)
        };
        let Some(owner) = owner else {
            return Ok(Next::Forget);
        };
        let mut first_error = None;
        for dep in &dependents {
            let removed = self
                .edit_owner_references(dep, |refs| refs.retain(|r| r.uid != uid))
                .await;
            if let Err(e) = removed {
                first_error.get_or_insert(e);
            }
        }
        if let Some(e) = first_error {
            return Err(e);
        }
        tracing::info!(object = %owner, dependents = dependents.len(), "dependents orphaned; removing the orphan finalizer");
        self.remove_finalizer(&owner, ORPHAN_FINALIZER).await?;
        Ok(Next::Forget)
    }

    /// Rewrites the object's `ownerReferences` with `edit`, guarded by its uid and
    /// resourceVersion; nothing is written when nothing changes or the object is gone.
    async fn edit_owner_references(
        &self,
        identity: &Identity,
        edit: impl Fn(&mut Vec<OwnerReference>),
    ) -> Result<(), WorkError> {
        self.rewrite(identity, "ownerReferences", |obj| {
            let refs = obj.metadata.owner_references.clone().unwrap_or_default();
            let mut next = refs.clone();
            edit(&mut next);
            if next == refs {
                return None;
            }
            Some(if next.is_empty() {
                Value::Null
            } else {
                json!(next)
            })
        })
        .await
    }

    async fn remove_finalizer(
        &self,
        identity: &Identity,
        finalizer: &str,
    ) -> Result<(), WorkError> {
        self.rewrite(identity, "finalizers", |obj| {
            let current = obj.metadata.finalizers.clone().unwrap_or_default();
            let next: Vec<&String> = current.iter().filter(|f| *f != finalizer).collect();
            (next.len() != current.len()).then(|| json!(next))
        })
        .await
    }

    /// Read, compute a new value of `metadata.<field>`, merge-patch it with the read
    /// resourceVersion and uid as preconditions; a lost race reads again.
    async fn rewrite(
        &self,
        identity: &Identity,
        field: &str,
        next: impl Fn(&DynamicObject) -> Option<Value>,
    ) -> Result<(), WorkError> {
        let Some(api) = self.api_of(identity)? else {
            return Ok(());
        };
        let what = format!("updating metadata.{field} of {identity}");
        let mut last = None;
        for _ in 0..CONFLICT_RETRIES {
            let Some(obj) = self.live(identity).await? else {
                return Ok(());
            };
            let Some(value) = next(&obj) else {
                return Ok(());
            };
            let patch = json!({"metadata": {
                field: value,
                "uid": identity.uid,
                "resourceVersion": obj.metadata.resource_version,
            }});
            match api
                .patch(
                    &identity.name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if is_conflict(&e) => last = Some(e),
                Err(e) => return Err(api_error(what)(e)),
            }
        }
        match last {
            Some(e) => Err(api_error(what)(e)),
            None => Ok(()),
        }
    }
}
