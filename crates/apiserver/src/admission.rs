//! Admission plugins: what kube-apiserver's mutating and validating admission chain does to a
//! new object after defaulting and before validation, where that needs the store. A plugin
//! is one impl plus one line in [`PLUGINS`]; a resource's plugins run in the listed order.

use api::resources::ResourceInfo;
use kinds_workloads::{priorityclass, runtimeclass};
use serde_json::Value;
use store::Store;

use crate::error::ApiError;

/// Admission of a new object.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// May change `obj`, or refuse it.
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError>;
}

/// The ServiceAccount plugin on pods.
struct ServiceAccount;

#[async_trait::async_trait]
impl Admission for ServiceAccount {
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError> {
        crate::serviceaccounts::admit_pod(store, obj).await
    }
}

/// The DefaultTolerationSeconds plugin on pods.
struct DefaultTolerationSeconds;

#[async_trait::async_trait]
impl Admission for DefaultTolerationSeconds {
    async fn admit(&self, _store: &dyn Store, obj: &mut Value) -> Result<(), ApiError> {
        crate::default_tolerations::add_default_tolerations(obj);
        Ok(())
    }
}

/// The Priority plugin on pods: the pod's class (or the global default) gives its
/// `spec.priority` and `spec.preemptionPolicy`.
struct Priority;

#[async_trait::async_trait]
impl Admission for Priority {
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError> {
        let classes = store
            .list("scheduling.k8s.io", "priorityclasses", None)
            .await
            .map_err(ApiError::Store)?;
        priorityclass::admit_pod(obj, &classes.items).map_err(|refusal| pod_forbidden(obj, refusal))
    }
}

/// The RuntimeClass plugin on pods: the class a pod names must exist; its overhead becomes
/// the pod's `spec.overhead`, its node selector and tolerations join the pod's.
struct RuntimeClass;

#[async_trait::async_trait]
impl Admission for RuntimeClass {
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError> {
        let class = match runtimeclass::class_name_of(obj).map(str::to_string) {
            None => None,
            Some(name) => {
                let key = store::ObjectKey::new(
                    runtimeclass::RESOURCE.group,
                    runtimeclass::RESOURCE.plural,
                    "",
                    &name,
                );
                match store.get(&key).await {
                    Ok(class) => Some(class),
                    Err(store::StoreError::NotFound { .. }) => {
                        return Err(pod_forbidden(
                            obj,
                            runtimeclass::PodRefusal::UnknownClass(name),
                        ))
                    }
                    Err(e) => return Err(ApiError::Store(e)),
                }
            }
        };
        runtimeclass::admit_pod(obj, class.as_ref()).map_err(|refusal| pod_forbidden(obj, refusal))
    }
}

/// A pod refused by an admission plugin: `pods "NAME" is forbidden: WHY` (403).
fn pod_forbidden(pod: &Value, why: impl std::fmt::Display) -> ApiError {
    ApiError::Forbidden {
        resource: "pods".into(),
        group: String::new(),
        name: pod
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        detail: why.to_string(),
    }
}

/// (group, plural) of each resource with an admission plugin, and the plugin.
static PLUGINS: &[(&str, &str, &dyn Admission)] = &[
    ("", "pods", &ServiceAccount),
    ("", "pods", &Priority),
    ("", "pods", &DefaultTolerationSeconds),
    ("", "pods", &RuntimeClass),
];

/// The admission plugins of `info`'s resource on create, in order.
pub fn of(info: &ResourceInfo) -> impl Iterator<Item = &'static dyn Admission> + '_ {
    PLUGINS
        .iter()
        .filter(|(group, plural, _)| *group == info.group && *plural == info.plural)
        .map(|(_, _, plugin)| *plugin)
}
