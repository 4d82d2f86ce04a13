//! Store-side work some resources need around their writes beyond what their strategy (pure,
//! in `api`) can do, as kube-apiserver's per-resource REST storage does: a Service takes its
//! ClusterIP and node ports before it is stored and gives them back when the write fails or
//! no longer holds them; a new PersistentVolumeClaim without a class gets the default
//! StorageClass (the `DefaultStorageClass` admission plugin); new claims and volumes get
//! their in-use protection finalizer (`StorageObjectInUseProtection`); a claim may only ask
//! for more storage when its class allows expansion (`PersistentVolumeClaimResize`); a
//! PriorityClass may be the global default only when no other is (the `Priority` admission
//! plugin). A resource with such needs is one impl plus one line in [`HOOKS`].

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

/// The finalizer kube-apiserver's `StorageObjectInUseProtection` puts on new claims.
const PVC_PROTECTION: &str = "kubernetes.io/pvc-protection";
/// ... and on new volumes.
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";

/// Adds `finalizer` to `obj`'s finalizers unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let list = meta
        .entry("finalizers")
        .or_insert_with(|| Value::Array(Vec::new()));
    if list.is_null() {
        *list = Value::Array(Vec::new());
    }
    if let Some(items) = list.as_array_mut() {
        if !items.iter().any(|f| f == finalizer) {
            items.push(Value::from(finalizer));
        }
    }
}

/// A claim's storage request, parsed.
fn storage_request(pvc: &Value) -> Option<api::quantity::Quantity> {
    pvc.pointer("/spec/resources/requests/storage")
        .and_then(Value::as_str)
        .and_then(api::quantity::Quantity::parse)
}

/// PersistentVolumeClaims: kube-apiserver's admission for claims. A claim created without
/// `spec.storageClassName` (nil, not `""`) and without the beta class annotation gets the
/// default class, when there is one (`DefaultStorageClass`); a new claim gets the
/// `kubernetes.io/pvc-protection` finalizer; an update asking for more storage is refused
/// unless the claim's class exists and has `allowVolumeExpansion` (`PersistentVolumeClaimResize`).
struct ClaimAdmission;

#[async_trait::async_trait]
impl WriteHooks for ClaimAdmission {
    async fn before_write(
        &self,
        store: &dyn Store,
        info: &ResourceInfo,
        name: &str,
        old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<Taken, ApiError> {
        if let Some(old) = old {
            let grows = match (storage_request(old), storage_request(obj)) {
                (Some(before), Some(after)) => after > before,
                _ => false,
            };
            if grows && !class_allows_expansion(store, obj).await? {
                return Err(ApiError::Forbidden {
                    resource: info.plural.to_string(),
                    group: info.group.to_string(),
                    name: name.to_string(),
                    detail: "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize".into(),
                });
            }
            return Ok(Taken::default());
        }
        add_finalizer(obj, PVC_PROTECTION);
        let unset = obj
            .pointer("/spec/storageClassName")
            .is_none_or(Value::is_null)
            && obj
                .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .is_none();
        if !unset {
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

/// Whether the class of claim `pvc` exists and allows expansion.
async fn class_allows_expansion(store: &dyn Store, pvc: &Value) -> Result<bool, ApiError> {
    let class = pvc
        .pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
        .or_else(|| pvc.pointer("/spec/storageClassName"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if class.is_empty() {
        return Ok(false);
    }
    let key = store::ObjectKey::new("storage.k8s.io", "storageclasses", "", class);
    match store.get(&key).await {
        Ok(sc) => Ok(sc.get("allowVolumeExpansion") == Some(&Value::Bool(true))),
        Err(store::StoreError::NotFound { .. }) => Ok(false),
        Err(e) => Err(ApiError::Store(e)),
    }
}

/// PersistentVolumes: the `kubernetes.io/pv-protection` finalizer on each new volume.
struct VolumeProtection;

#[async_trait::async_trait]
impl WriteHooks for VolumeProtection {
    async fn before_write(
        &self,
        _store: &dyn Store,
        _info: &ResourceInfo,
        _name: &str,
        old: Option<&Value>,
        obj: &mut Value,
    ) -> Result<Taken, ApiError> {
        if old.is_none() {
            add_finalizer(obj, PV_PROTECTION);
        }
        Ok(Taken::default())
    }

    async fn undo(&self, _store: &dyn Store, _taken: &Taken) {}

    async fn after_write(&self, _store: &dyn Store, _old: &Value, _new: Option<&Value>) {}
}

/// (group, plural) of each resource with write hooks.
static HOOKS: &[(&str, &str, &dyn WriteHooks)] = &[
    ("", "services", &ServiceAddresses),
    ("", "persistentvolumeclaims", &ClaimAdmission),
    ("", "persistentvolumes", &VolumeProtection),
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
