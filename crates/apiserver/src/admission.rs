//! Admission plugins: what kube-apiserver's admission chain does to a new object where that
//! needs the store. Mutating plugins run after defaulting and before validation; validating
//! ones after validation, as kube-apiserver runs the two phases. A plugin is one impl plus
//! one line in [`PLUGINS`] or [`VALIDATING`]; a resource's plugins run in the listed order.

use std::collections::BTreeSet;

use api::resources::ResourceInfo;
use kinds_core::limitrange;
use kinds_core::resourcequota::{self, usage};
use kinds_workloads::{priorityclass, runtimeclass};
use serde_json::Value;
use store::{ObjectKey, Store, StoreError};

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

/// The ResourceQuota plugin, after every other plugin: a new object (or, for services and
/// claims, a changed one; `old` is then the stored one) that would take a quota of its
/// namespace past its `hard` amounts, or a pod that leaves out a request or limit a quota
/// limits, is refused (403) in the plugin's words. Otherwise what it adds is charged to
/// each quota that applies at once, by writing the quota's `status.used` at the version
/// read, so two writes racing cannot both take the last of a quota; a quota whose write
/// lost is read again and checked again. A dry run is checked and charged nothing.
pub async fn resource_quota(
    store: &dyn Store,
    info: &ResourceInfo,
    obj: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<(), ApiError> {
    const ATTEMPTS: usize = 16;
    let ignored = info.plural == "events" && ["", "events.k8s.io"].contains(&info.group);
    if !info.namespaced || ignored {
        return Ok(());
    }
    let evaluator = usage::Evaluator::of(info.group, info.plural);
    if old.is_some() && !evaluator.checks_updates() {
        return Ok(());
    }
    let ns = obj
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if ns.is_empty() {
        return Ok(());
    }
    let name_of = |q: &Value| {
        q.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let now = jiff::Timestamp::now();
    let mut recheck: Option<BTreeSet<String>> = None;
    for _ in 0..ATTEMPTS {
        let quotas: Vec<Value> = store
            .list(
                resourcequota::RESOURCE.group,
                resourcequota::RESOURCE.plural,
                Some(ns),
            )
            .await
            .map_err(ApiError::Store)?
            .items
            .into_iter()
            .filter(|q| {
                recheck
                    .as_ref()
                    .is_none_or(|names| names.contains(&name_of(q)))
            })
            .collect();
        if quotas.is_empty() {
            return Ok(());
        }
        let charges = usage::check(&evaluator, &quotas, obj, old, now).map_err(|refusal| {
            ApiError::Forbidden {
                resource: crate::error::qualified(info),
                group: info.group.to_string(),
                name: name_of(obj),
                detail: refusal.to_string(),
            }
        })?;
        if dry_run {
            return Ok(());
        }
        let mut lost = BTreeSet::new();
        for charge in charges {
            let mut quota = quotas[charge.index].clone();
            let name = name_of(&quota);
            let before = usage::list_of(quota.pointer("/status/used"));
            if usage::same(&before, &charge.used) {
                continue;
            }
            if let Some(status) = quota.get_mut("status").and_then(Value::as_object_mut) {
                status.insert("used".into(), usage::to_json(&charge.used));
            }
            let key = ObjectKey::new(
                resourcequota::RESOURCE.group,
                resourcequota::RESOURCE.plural,
                ns,
                &name,
            );
            let rv = store::resource_version_of(&quota);
            match store.update(&key, quota, rv).await {
                Ok(_) | Err(StoreError::NotFound { .. }) => {}
                Err(StoreError::Conflict { .. }) => {
                    lost.insert(name);
                }
                Err(e) => return Err(ApiError::Store(e)),
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        recheck = Some(lost);
    }
    Err(ApiError::Store(StoreError::TooManyRetries {
        key: ObjectKey::new(
            resourcequota::RESOURCE.group,
            resourcequota::RESOURCE.plural,
            ns,
            "",
        ),
        attempts: ATTEMPTS as u32,
    }))
}
