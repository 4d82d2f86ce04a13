//! The object store behind the API server: Kubernetes objects as JSON, keyed by
//! (group, resource, namespace, name), with one global, monotonically increasing
//! resourceVersion and a watch feed. It is a trait so that an etcd backend can replace the
//! embedded `redb` one ([`RedbStore`]) without the API server noticing.

mod redb_store;
mod watch;

pub use redb_store::RedbStore;
pub use watch::{EventKind, Watch, WatchEvent};

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

/// Conditions a delete must meet (metav1.Preconditions).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Preconditions {
    pub uid: Option<String>,
    pub resource_version: Option<u64>,
}

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
    #[error("opening store at {path}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    #[error("store {op} failed for {target}")]
    Backend {
        op: &'static str,
        target: String,
        // Boxed: redb's error is large and would bloat every Result of the store.
        #[source]
        source: Box<redb::Error>,
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

/// A Kubernetes object store. Every write commits before it returns and gets the next
/// resourceVersion, which the store writes into `metadata.resourceVersion`.
pub trait Store: Send + Sync {
    fn get(&self, key: &ObjectKey) -> Result<Value, StoreError>;
    /// All objects of a resource, or of one namespace when `namespace` is given.
    fn list(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<ListResult, StoreError>;
    fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError>;
    /// Replaces an existing object. With `expected_rv`, fails with `Conflict` unless the stored
    /// object has that resourceVersion. An update that changes nothing writes nothing and
    /// returns the stored object (as etcd3's GuaranteedUpdate does).
    fn update(
        &self,
        key: &ObjectKey,
        obj: Value,
        expected_rv: Option<u64>,
    ) -> Result<Value, StoreError>;
    /// Removes an object and returns its last state, stamped with the deletion's resourceVersion.
    fn delete(&self, key: &ObjectKey, preconditions: &Preconditions) -> Result<Value, StoreError>;
    /// Events of a resource (optionally one namespace) with resourceVersion > `from_rv`:
    /// retained history first, then live. `Expired` when history no longer reaches back to
    /// `from_rv`. (RV 0 meaning "current state first" is the caller's job.)
    fn watch(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        from_rv: u64,
    ) -> Result<Watch, StoreError>;
    /// The resourceVersion of the last write.
    fn current_resource_version(&self) -> Result<u64, StoreError>;
}

/// How many times [`guaranteed_update`] retries a conflicting write.
const GUARANTEED_UPDATE_ATTEMPTS: u32 = 16;

/// Read-modify-write that retries when another writer got in between. `f` gets the current
/// object and returns the new one (or an error that stops the loop).
pub fn guaranteed_update<E, F>(store: &dyn Store, key: &ObjectKey, mut f: F) -> Result<Value, E>
where
    E: From<StoreError>,
    F: FnMut(Value) -> Result<Value, E>,
{
    for _ in 0..GUARANTEED_UPDATE_ATTEMPTS {
        let current = store.get(key)?;
        let rv = resource_version_of(&current);
        let new = f(current)?;
        match store.update(key, new, rv) {
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
