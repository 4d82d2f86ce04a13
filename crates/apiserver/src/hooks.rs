//! Store-side work some resources need around their writes beyond what their strategy (pure,
//! in `api`) can do, as kube-apiserver's per-resource REST storage does: a Service takes its
//! ClusterIP and node ports before it is stored and gives them back when the write fails or
//! no longer holds them; a new PersistentVolumeClaim without a class gets the default
//! StorageClass (the `DefaultStorageClass` admission plugin); a PriorityClass may be the
//! global default only when no other is (the `Priority` admission plugin). A resource with such needs is
//! one impl plus one line in [`HOOKS`].

use api::resources::ResourceInfo;
use serde_json::Value;
use store::Store;

use crate::error::ApiError;
use service_allocators::{AllocFailure, Ranges, Taken};

/// Work around a resource's writes that needs the store.
#[async_trait::async_trait]
pub trait WriteHooks: Send + Sync {
    /// Before a create (`old` is None) or an update of `obj` is validated and stored;
    /// returns what it took, for [`WriteHooks::undo`].
    async fn before_write(
        &self,
        store: &dyn Store,
        info: &ResourceInfo,
        name: &str,
        old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<Taken, ApiError>;

    /// The write failed: give back what [`WriteHooks::before_write`] took.
    async fn undo(&self, store: &dyn Store, taken: &Taken);

    /// `old` was replaced by `new`, or removed (`new` is None): give back what only `old`
    /// held.
    async fn after_write(&self, store: &dyn Store, old: &Value, new: Option<&Value>);
}

/// Services: ClusterIP and node port allocation.
struct ServiceAddresses;

#[async_trait::async_trait]
impl WriteHooks for ServiceAddresses {
    async fn before_write(
        &self,
        store: &dyn Store,
        info: &ResourceInfo,
        name: &str,
        old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<Taken, ApiError> {
        allocate(store, info, name, old, obj).await
    }

    async fn undo(&self, store: &dyn Store, taken: &Taken) {
        Ranges::default().release(store, taken).await;
    }

    async fn after_write(&self, store: &dyn Store, old: &Value, new: Option<&Value>) {
        Ranges::default().release_dropped(store, old, new).await;
    }
}

/// PersistentVolumeClaims: kube-apiserver's `DefaultStorageClass` admission. A claim created
/// without `spec.storageClassName` (nil, not `""`) and without the beta class annotation
/// gets the default class, when there is one.
struct DefaultStorageClass;

#[async_trait::async_trait]
impl WriteHooks for DefaultStorageClass {
    async fn before_write(
        &self,
        store: &dyn Store,
        _info: &ResourceInfo,
        _name: &str,
        old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<Taken, ApiError> {
        let unset = obj
            .pointer("/spec/storageClassName")
            .is_none_or(Value::is_null)
            && obj
                .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .is_none();
        if old.is_some() || !unset {
            return Ok(Taken::default());
        }
        let classes = store
            .list("storage.k8s.io", "storageclasses", None)
            .await
            .map_err(ApiError::Store)?;
        let default = kinds_workloads::storageclass::default_class(&classes.items);
        if let (Some(class), Some(spec)) =
            (default, obj.get_mut("spec").and_then(Value::as_object_mut))
        {
            spec.insert("storageClassName".into(), Value::from(class));
        }
        Ok(Taken::default())
    }

    async fn undo(&self, _store: &dyn Store, _taken: &Taken) {}

    async fn after_write(&self, _store: &dyn Store, _old: &Value, _new: Option<&Value>) {}
}

/// PriorityClasses: the Priority admission plugin's check on a create or update that only
/// one class is the global default.
struct OneDefaultPriorityClass;

#[async_trait::async_trait]
impl WriteHooks for OneDefaultPriorityClass {
    async fn before_write(
        &self,
        store: &dyn Store,
        info: &ResourceInfo,
        name: &str,
        _old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<Taken, ApiError> {
        let classes = store
            .list(info.group, info.plural, None)
            .await
            .map_err(ApiError::Store)?;
        match kinds_workloads::priorityclass::conflicting_default(&classes.items, obj) {
            Some(other) => Err(ApiError::Forbidden {
                resource: crate::error::qualified(info),
                group: info.group.to_string(),
                name: name.to_string(),
                detail: format!(
                    "PriorityClass {other} is already marked as default. Only one default can exist"
                ),
            }),
            None => Ok(Taken::default()),
        }
    }

    async fn undo(&self, _store: &dyn Store, _taken: &Taken) {}

    async fn after_write(&self, _store: &dyn Store, _old: &Value, _new: Option<&Value>) {}
}

/// (group, plural) of each resource with write hooks.
static HOOKS: &[(&str, &str, &dyn WriteHooks)] = &[
    ("", "services", &ServiceAddresses),
    ("", "persistentvolumeclaims", &DefaultStorageClass),
    (
        "scheduling.k8s.io",
        "priorityclasses",
        &OneDefaultPriorityClass,
    ),
];

/// The write hooks of `info`'s resource, if it has any.
pub fn of(info: &ResourceInfo) -> Option<&'static dyn WriteHooks> {
    HOOKS
        .iter()
        .find(|(group, plural, _)| *group == info.group && *plural == info.plural)
        .map(|(_, _, hooks)| *hooks)
}

/// [`Ranges::allocate_for`](service_allocators::Ranges::allocate_for) with the default ranges, its failure as the API's error.
pub async fn allocate(
    store: &dyn Store,
    info: &api::resources::ResourceInfo,
    name: &str,
    old: Option<&Value>,
    svc: &mut Value,
) -> Result<Taken, ApiError> {
    Ranges::default()
        .allocate_for(store, old, svc)
        .await
        .map_err(|f| match f {
            AllocFailure::Invalid(causes) => ApiError::Invalid {
                kind: info.kind.to_string(),
                group: info.group.to_string(),
                name: name.to_string(),
                causes,
            },
            AllocFailure::Store(e) => ApiError::Store(e),
        })
}
