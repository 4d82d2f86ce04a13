//! The object store behind the API server: Kubernetes objects as JSON, keyed by
//! (group, resource, namespace, name), with one global, monotonically increasing
//! resourceVersion and a watch feed. It is an async trait whose signatures name no backend:
//! the embedded `redb` one ([`RedbStore`]) lives here, the etcd one in its own crate, and the
//! [`StoreSpec`] (`redb:PATH`, `etcd:URL,...`) a flag names picks between them. Events
//! expire through the backend's leases, or [`event_ttl`]'s sweeper where it has none.

pub mod event_ttl;
mod redb_store;
pub mod rules;
mod spec;
mod watch;

pub use redb_store::{RedbStore, DEFAULT_HISTORY};
pub use spec::{SpecError, StoreSpec};
pub use watch::{EventKind, HistoryLimit, WatchEvent};

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::Stream;
use serde_json::Value;

/// Where one object lives. `namespace` is empty for cluster-scoped resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    /// API group, `""` for core.
    pub group: String,
    /// Plural resource name, e.g. `pods`.
    pub resource: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectKey {
    pub fn new(group: &str, resource: &str, namespace: &str, name: &str) -> Self {
        ObjectKey {
            group: group.to_string(),
            resource: resource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.group, self.resource, self.namespace, self.name
        )
    }
}

/// The result of a list: the items and the store's resourceVersion at the time of the read.
#[derive(Debug, Clone, PartialEq)]
pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: u64,
}

/// A predicate a paged list applies inside the store, so that a page holds `limit` matching
/// objects without the caller reading the rest.
pub type ListFilter = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// One page of a list: at most `limit` matching objects whose keys are at or after `start`.
/// `start` is relative to the listed resource (`namespace/name`) or namespace (`name`).
#[derive(Clone)]
pub struct PageRequest {
    pub start: Option<String>,
    pub limit: usize,
    pub filter: Option<ListFilter>,
}

/// A page, its store resourceVersion, where the next page starts (`None` on the last page)
/// and, when no filter was given, how many objects remain after it.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub next_start: Option<String>,
    pub remaining: Option<u64>,
}

/// Conditions a delete must meet (metav1.Preconditions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<u64>,
}

/// A backend's own error, boxed so that no backend type appears in this crate's API.
pub type BackendError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found")]
    NotFound { key: ObjectKey },
    #[error("object {key} already exists")]
    AlreadyExists { key: ObjectKey },
    /// The object's resourceVersion (or uid precondition) is not the expected one.
    #[error("conflict on {key}: {reason}")]
    Conflict { key: ObjectKey, reason: String },
    /// A watch asked for history the store no longer keeps.
    #[error("too old resource version: {requested} ({oldest})")]
    Expired { requested: u64, oldest: u64 },
    /// A watcher fell so far behind the live feed that events were dropped.
    #[error("watch fell behind the event feed and lost {missed} events")]
    WatchLagged { missed: u64 },
    /// The backend failed or cannot be reached (kube-apiserver answers these with a 500).
    #[error("store {op} failed for {target}")]
    Unavailable {
        op: &'static str,
        target: String,
        #[source]
        source: BackendError,
    },
    #[error("stored object {target} is not valid JSON")]
    Decode {
        target: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("object {key} is not a JSON object with metadata")]
    NotAnObject { key: ObjectKey },
    #[error("guaranteed update of {key} kept conflicting after {attempts} attempts")]
    TooManyRetries { key: ObjectKey, attempts: u32 },
}

/// A watch: committed events in resourceVersion order; ends when the store goes away or after
/// a [`StoreError::WatchLagged`]. Any backend can build one (a channel, an etcd watch).
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<Arc<WatchEvent>, StoreError>> + Send>>;

/// A Kubernetes object store. Every write commits before it returns and gets the next
/// resourceVersion, which the store writes into `metadata.resourceVersion`. Implementations
/// keep blocking work (disk, network) off the async workers.
#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, key: &ObjectKey) -> Result<Value, StoreError>;
    /// All objects of a resource, or of one namespace when `namespace` is given.
    async fn list(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<ListResult, StoreError>;
    /// One page of a list, in key order (namespace, then name).
    async fn list_page(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        page: PageRequest,
    ) -> Result<Page, StoreError>;
    async fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError>;
    /// Replaces an existing object. With `expected_rv`, fails with `Conflict` unless the stored
    /// object has that resourceVersion. An update that changes nothing writes nothing and
    /// returns the stored object (as etcd3's GuaranteedUpdate does).
    async fn update(
        &self,
        key: &ObjectKey,
        obj: Value,
        expected_rv: Option<u64>,
    ) -> Result<Value, StoreError>;
    /// Removes an object and returns its last state, stamped with the deletion's resourceVersion.
    async fn delete(
        &self,
        key: &ObjectKey,
        preconditions: &Preconditions,
    ) -> Result<Value, StoreError>;
    /// Events of a resource (optionally one namespace) with resourceVersion > `from_rv`:
    /// retained history first, then live. `Expired` when history no longer reaches back to
    /// `from_rv`. (RV 0 meaning "current state first" is the caller's job.)
    async fn watch(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        from_rv: u64,
    ) -> Result<WatchStream, StoreError>;
    /// The resourceVersion of the last write.
    async fn current_resource_version(&self) -> Result<u64, StoreError>;
    /// Asks the backend to remove objects of `group`/`resource` on its own `ttl` after their
    /// last write (kube-apiserver attaches an etcd lease to each write of an Event). Returns
    /// false when the backend cannot, and the caller expires them itself.
    fn expire_after_write(&self, _group: &str, _resource: &str, _ttl: Duration) -> bool {
        false
    }
}

/// How many times [`guaranteed_update`] retries a conflicting write.
const GUARANTEED_UPDATE_ATTEMPTS: u32 = 16;

/// Read-modify-write that retries when another writer got in between. `f` gets the current
/// object and returns the new one (or an error that stops the loop).
pub async fn guaranteed_update<E, F>(
    store: &dyn Store,
    key: &ObjectKey,
    mut f: F,
) -> Result<Value, E>
where
    E: From<StoreError>,
    F: FnMut(Value) -> Result<Value, E>,
{
    for _ in 0..GUARANTEED_UPDATE_ATTEMPTS {
        let current = store.get(key).await?;
        let rv = resource_version_of(&current);
        let new = f(current)?;
        match store.update(key, new, rv).await {
            Ok(v) => return Ok(v),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::TooManyRetries {
        key: key.clone(),
        attempts: GUARANTEED_UPDATE_ATTEMPTS,
    }
    .into())
}

/// `metadata.resourceVersion` as a number, if present and numeric.
pub fn resource_version_of(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}
