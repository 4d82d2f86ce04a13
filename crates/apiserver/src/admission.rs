//! Admission plugins: what kube-apiserver's admission chain does to a new object where that
//! needs the store. Mutating plugins run after defaulting and before validation; validating
//! ones after validation, as kube-apiserver runs the two phases. A plugin is one impl plus
//! one line in [`PLUGINS`] or [`VALIDATING`]; a resource's plugins run in the listed order.

use api::resources::ResourceInfo;
use kinds_core::limitrange;
use kinds_workloads::{priorityclass, runtimeclass};
use serde_json::Value;
use store::Store;

use crate::error::ApiError;

/// Mutating admission of a new object.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// May change `obj`, or refuse it.
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError>;
}

/// Validating admission of a new object, once it passed validation.
#[async_trait::async_trait]
pub trait Validation: Send + Sync {
    /// May refuse `obj`.
    async fn validate(&self, store: &dyn Store, obj: &Value) -> Result<(), ApiError>;
}

/// The LimitRanges of `obj`'s namespace, in name order.
async fn limit_ranges(store: &dyn Store, obj: &Value) -> Result<Vec<Value>, ApiError> {
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let list = store
        .list(
            limitrange::RESOURCE.group,
            limitrange::RESOURCE.plural,
            Some(ns),
        )
        .await
        .map_err(ApiError::Store)?;
    Ok(list.items)
}

/// The LimitRanger plugin's mutating half on pods: each LimitRange of the namespace fills
/// in the requests and limits its Container items default.
struct LimitRangerDefaults;

#[async_trait::async_trait]
impl Admission for LimitRangerDefaults {
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError> {
        for lr in limit_ranges(store, obj).await? {
            limitrange::default_pod(obj, &lr);
        }
        Ok(())
    }
}

/// The LimitRanger plugin's validating half on pods and claims (the resource's plural): the
/// first LimitRange of the namespace the object breaks refuses it (403) with every bound
/// it breaks. Upstream checks new pods and claims, updated claims (a grown
/// `requests.storage` must stay within the bounds) and pods resized through `pods/resize`;
/// other pod updates cannot change resources and are not checked.
struct LimitRangerLimits(&'static str);

#[async_trait::async_trait]
impl Validation for LimitRangerLimits {
    async fn validate(&self, store: &dyn Store, obj: &Value) -> Result<(), ApiError> {
        let claims = self.0 == "persistentvolumeclaims";
        for lr in limit_ranges(store, obj).await? {
            let checked = if claims {
                limitrange::check_claim(obj, &lr)
            } else {
                limitrange::check_pod(obj, &lr)
            };
            checked.map_err(|why| forbidden(self.0, obj, why))?;
        }
        Ok(())
    }
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
    forbidden("pods", pod, why)
}

/// An object of a core `resource` refused by an admission plugin (403).
fn forbidden(resource: &str, obj: &Value, why: impl std::fmt::Display) -> ApiError {
    ApiError::Forbidden {
        resource: resource.into(),
        group: String::new(),
        name: obj
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        detail: why.to_string(),
    }
}

/// (group, plural) of each resource with an admission plugin, and the plugin.
static PLUGINS: &[(&str, &str, &dyn Admission)] = &[
    ("", "pods", &LimitRangerDefaults),
    ("", "pods", &ServiceAccount),
    ("", "pods", &Priority),
    ("", "pods", &DefaultTolerationSeconds),
    ("", "pods", &RuntimeClass),
];

/// (group, plural) of each resource with a validating admission plugin, and the plugin.
static VALIDATING: &[(&str, &str, &dyn Validation)] = &[
    ("", "pods", &LimitRangerLimits("pods")),
    (
        "",
        "persistentvolumeclaims",
        &LimitRangerLimits("persistentvolumeclaims"),
    ),
];

/// (group, plural, subresource — `""` for the object itself) of each update with a
/// validating admission plugin, and the plugin.
static VALIDATING_UPDATE: &[(&str, &str, &str, &dyn Validation)] = &[
    (
        "",
        "persistentvolumeclaims",
        "",
        &LimitRangerLimits("persistentvolumeclaims"),
    ),
    ("", "pods", "resize", &LimitRangerLimits("pods")),
];

/// The validating admission plugins of an update of `info`'s resource through `subresource`
/// (`""` for the object itself), in order.
pub fn validating_update<'a>(
    info: &'a ResourceInfo,
    subresource: &'a str,
) -> impl Iterator<Item = &'static dyn Validation> + 'a {
    VALIDATING_UPDATE
        .iter()
        .filter(move |(group, plural, sub, _)| {
            *group == info.group && *plural == info.plural && *sub == subresource
        })
        .map(|(_, _, _, plugin)| *plugin)
}

/// The validating admission plugins of `info`'s resource on create, in order.
pub fn validating(info: &ResourceInfo) -> impl Iterator<Item = &'static dyn Validation> + '_ {
    VALIDATING
        .iter()
        .filter(|(group, plural, _)| *group == info.group && *plural == info.plural)
        .map(|(_, _, plugin)| *plugin)
}

/// The mutating admission plugins of `info`'s resource on create, in order.
pub fn of(info: &ResourceInfo) -> impl Iterator<Item = &'static dyn Admission> + '_ {
    PLUGINS
        .iter()
        .filter(|(group, plural, _)| *group == info.group && *plural == info.plural)
        .map(|(_, _, plugin)| *plugin)
}
