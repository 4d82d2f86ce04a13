//! kube-controller-manager's resource quota controller: keeps each ResourceQuota's status
//! current, `hard` as its spec says and `used` as the objects of its namespace add up (what
//! each object uses is `kinds_core::resourcequota::usage`, shared with the admission plugin
//! that charges new objects at once). A quota is recomputed when it is new or its spec
//! changes, when an object of its namespace that frees quota goes or changes (upstream's
//! replenishment: deletions, a pod finishing, a service changing type, a claim), and every
//! five minutes; a pod being deleted stops counting when its grace period ends, which a
//! requeue catches. Counts of
//! other resources (`count/deployments.apps`) are listed through discovery, and a metadata
//! watch of each such resource brings its deletions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::channel::mpsc;
use futures::future::BoxFuture;
use futures::{FutureExt, Stream, StreamExt};
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolumeClaim, Pod, ResourceQuota, ResourceQuotaStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::{Api, ApiResource, DynamicObject, ListParams, PartialObjectMeta};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use tokio::task::JoinSet;

use controller_base::error::Error;
use controller_base::informer::{Change, Informer};
use controller_base::Shared;
use kinds_core::resourcequota::usage::{self, Evaluator, Usage};

/// How often every quota is recomputed (kube-controller-manager's
/// `--resource-quota-sync-period`): what no trigger brings, such as a charge for an
/// object whose create failed after its admission.
const RESYNC: Duration = Duration::from_secs(5 * 60);

struct Ctx {
    client: Client,
    quotas: Store<ResourceQuota>,
    pods: Store<Pod>,
    services: Store<Service>,
    claims: Store<PersistentVolumeClaim>,
    config_maps: Store<ConfigMap>,
    secrets: Store<Secret>,
    unwatched: Unwatched,
}

/// Which changes of an object trigger the quotas of its namespace.
#[derive(Clone, Copy)]
struct Triggers<K> {
    /// A new object (the quota controller's own quotas; the admission charged the others).
    added: bool,
    deleted: bool,
    /// What of the object matters: a change of it is a trigger.
    fingerprint: fn(&K) -> String,
}

/// A cache of all `K`, its watch pushed onto `watches`.
fn informer<K>(client: &Client, watches: &mut Vec<BoxFuture<'static, ()>>) -> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let (informer, watch) = Informer::new(Api::<K>::all(client.clone()));
    watches.push(watch);
    informer
}

/// The objects of `informer` whose change `triggers` names.
fn triggered<K>(informer: &Informer<K>, triggers: Triggers<K>) -> impl Stream<Item = Arc<K>> + Send
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
    K: 'static,
{
    let mut seen: HashMap<String, String> = HashMap::new();
    informer.subscribe().filter_map(move |change| {
        let key = |o: &K| o.meta().uid.clone().unwrap_or_else(|| o.name_any());
        let out = match change {
            Change::Applied { new, .. } => {
                let print = (triggers.fingerprint)(&new);
                match seen.insert(key(&new), print.clone()) {
                    None => triggers.added.then_some(new),
                    Some(before) => (before != print).then_some(new),
                }
            }
            Change::Deleted(o) => {
                seen.remove(&key(&o));
                triggers.deleted.then_some(o)
            }
            Change::Listed => None,
        };
        futures::future::ready(out)
    })
}

/// Triggers on deletion only: a new object was charged by the admission already.
fn deletions<K>() -> Triggers<K> {
    Triggers {
        added: false,
        deleted: true,
        fingerprint: |_| String::new(),
    }
}

/// Every quota of `ns`.
fn quotas_in(quotas: &Store<ResourceQuota>, ns: Option<&str>) -> Vec<ObjectRef<ResourceQuota>> {
    quotas
        .state()
        .iter()
        .filter(|q| q.metadata.namespace.as_deref() == ns)
        .map(|q| ObjectRef::from_obj(&**q))
        .collect()
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let mut watches = Vec::new();
    let quotas = informer::<ResourceQuota>(&client, &mut watches);
    // A quota's own trigger: new, or its spec changed; not the status writes the
    // admission charges, which a recount from caches not yet holding the charged object
    // would undo.
    let quota_events = triggered(
        &quotas,
        Triggers {
            added: true,
            deleted: false,
            fingerprint: |q| serde_json::to_string(&q.spec).unwrap_or_default(),
        },
    );
    // As upstream's replenishment: what frees quota. A pod that stops counting, a service
    // changing type or ports, any claim change (it may grow), and deletions.
    let pod_events = triggered(
        &shared.pods,
        Triggers {
            added: false,
            deleted: true,
            fingerprint: |p| {
                let counts = serde_json::to_value(p)
                    .is_ok_and(|v| usage::pod_counts(&v, jiff::Timestamp::now()));
                counts.to_string()
            },
        },
    );
    let services = informer::<Service>(&client, &mut watches);
    let service_events = triggered(
        &services,
        Triggers {
            added: false,
            deleted: true,
            fingerprint: |s| {
                let spec = s.spec.as_ref();
                format!(
                    "{:?} {}",
                    spec.and_then(|s| s.type_.clone()),
                    spec.and_then(|s| s.ports.as_ref()).map_or(0, Vec::len)
                )
            },
        },
    );
    let claims = informer::<PersistentVolumeClaim>(&client, &mut watches);
    let claim_events = triggered(
        &claims,
        Triggers {
            added: false,
            deleted: true,
            fingerprint: |c| c.metadata.resource_version.clone().unwrap_or_default(),
        },
    );
    let config_maps = informer::<ConfigMap>(&client, &mut watches);
    let config_map_events = triggered(&config_maps, deletions());
    let secrets = informer::<Secret>(&client, &mut watches);
    let secret_events = triggered(&secrets, deletions());
    let quota_deletions = triggered(&quotas, deletions());
    let synced = {
        let (q, s, c, m, x) = (
            quotas.clone(),
            services.clone(),
            claims.clone(),
            config_maps.clone(),
            secrets.clone(),
        );
        async move {
            q.synced().await;
            s.synced().await;
            c.synced().await;
            m.synced().await;
            x.synced().await;
        }
    };
    let quotas = quotas.store();
    let (q1, q2, q3, q4, q5, q6) = (
        quotas.clone(),
        quotas.clone(),
        quotas.clone(),
        quotas.clone(),
        quotas.clone(),
        quotas.clone(),
    );
    let controller = Controller::for_shared_stream(quota_events, quotas.clone())
        .watches_shared_stream(pod_events, move |o: Arc<Pod>| {
            quotas_in(&q1, o.metadata.namespace.as_deref())
        })
        .watches_shared_stream(service_events, move |o: Arc<Service>| {
            quotas_in(&q2, o.metadata.namespace.as_deref())
        })
        .watches_shared_stream(claim_events, move |o: Arc<PersistentVolumeClaim>| {
            quotas_in(&q3, o.metadata.namespace.as_deref())
        })
        .watches_shared_stream(config_map_events, move |o: Arc<ConfigMap>| {
            quotas_in(&q4, o.metadata.namespace.as_deref())
        })
        .watches_shared_stream(secret_events, move |o: Arc<Secret>| {
            quotas_in(&q5, o.metadata.namespace.as_deref())
        })
        // A quota deleted changes the `resourcequotas` count of the others.
        .watches_shared_stream(quota_deletions, move |o: Arc<ResourceQuota>| {
            quotas_in(&q6, o.metadata.namespace.as_deref())
        });
    let (trigger, triggered) = mpsc::unbounded();
    let controller = controller.reconcile_on(triggered);
    let ctx = Arc::new(Ctx {
        unwatched: Unwatched {
            quotas: quotas.clone(),
            trigger,
            found: Mutex::default(),
            watches: Mutex::default(),
        },
        client,
        quotas,
        pods: shared.pods.store(),
        services: services.store(),
        claims: claims.store(),
        config_maps: config_maps.store(),
        secrets: secrets.store(),
    });
    // The reconciles read every cache: they start once all hold their first list.
    let run = synced
        .then(|()| controller_base::runner::drive("resourcequota", controller, ctx, reconcile));
    futures::future::join(run, futures::future::join_all(watches))
        .map(|_| ())
        .boxed()
}

/// The objects of `ns` in `store`, as JSON.
fn in_namespace<K>(store: &Store<K>, ns: &str) -> Vec<Value>
where
    K: Resource<DynamicType = ()> + Serialize + Clone + 'static,
{
    store
        .state()
        .iter()
        .filter(|o| o.meta().namespace.as_deref() == Some(ns))
        .filter_map(|o| serde_json::to_value(&**o).ok())
        .collect()
}

/// `count/<plural>` or `count/<plural>.<group>` as (group, plural).
fn counted_resource(name: &str) -> Option<(String, String)> {
    let rest = name.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((plural, group)) => (group.to_string(), plural.to_string()),
        None => (String::new(), rest.to_string()),
    })
}

/// The resources quotas count by `count/<resource>.<group>` that no cache here holds, found
/// through discovery as quotas name them. Each gets a metadata watch whose deletions
/// trigger the quotas of their namespace (upstream's replenishment, which keeps an
/// informer per counted resource); the watches end with the controller.
struct Unwatched {
    quotas: Store<ResourceQuota>,
    trigger: mpsc::UnboundedSender<ObjectRef<ResourceQuota>>,
    /// The resource of each (group, plural) found so far.
    found: Mutex<HashMap<(String, String), ApiResource>>,
    watches: Mutex<JoinSet<()>>,
}

impl Unwatched {
    /// The resource `group`/`plural`, watched from now on; `None` when the API does not
    /// serve it.
    async fn resource(&self, client: &Client, group: &str, plural: &str) -> Option<ApiResource> {
        let key = (group.to_string(), plural.to_string());
        if let Some(found) = lock(&self.found).get(&key) {
            return Some(found.clone());
        }
        let served = kube::discovery::group(client, group).await.ok()?;
        let (resource, _) = served
            .recommended_resources()
            .into_iter()
            .find(|(r, _)| r.plural == plural)?;
        let mut found = lock(&self.found);
        if let Some(raced) = found.get(&key) {
            return Some(raced.clone());
        }
        found.insert(key, resource.clone());
        let (quotas, trigger) = (self.quotas.clone(), self.trigger.clone());
        let api = Api::<PartialObjectMeta<DynamicObject>>::all_with(client.clone(), &resource);
        lock(&self.watches).spawn(async move {
            let mut events = controller_base::cache::watch(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                if let Ok(watcher::Event::Delete(gone)) = event {
                    for q in quotas_in(&quotas, gone.metadata.namespace.as_deref()) {
                        // The controller is gone when nobody receives.
                        let _ = trigger.unbounded_send(q);
                    }
                }
            }
        });
        Some(resource)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The objects of `resource` in `ns`, as JSON (metadata is all a count needs).
async fn list_unwatched(
    client: &Client,
    resource: &ApiResource,
    ns: &str,
) -> Result<Vec<Value>, Error> {
    let list = Api::<DynamicObject>::namespaced_with(client.clone(), ns, resource)
        .list_metadata(&ListParams::default())
        .await
        .map_err(Error::api(format!("listing {} in {ns}", resource.plural)))?;
    Ok(list
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect())
}

fn quantities(u: &Usage) -> BTreeMap<String, Quantity> {
    u.iter()
        .map(|(k, a)| (k.clone(), Quantity(a.shown())))
        .collect()
}

fn amounts(list: Option<&BTreeMap<String, Quantity>>) -> Usage {
    let v = serde_json::to_value(list).unwrap_or(Value::Null);
    usage::list_of(Some(&v))
}

async fn reconcile(quota: Arc<ResourceQuota>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    for (what, ready) in [
        ("pod", controller_base::cache::ready(&ctx.pods).await),
        (
            "service",
            controller_base::cache::ready(&ctx.services).await,
        ),
        (
            "persistentvolumeclaim",
            controller_base::cache::ready(&ctx.claims).await,
        ),
        (
            "configmap",
            controller_base::cache::ready(&ctx.config_maps).await,
        ),
        ("secret", controller_base::cache::ready(&ctx.secrets).await),
        (
            "resourcequota",
            controller_base::cache::ready(&ctx.quotas).await,
        ),
    ] {
        ready.map_err(|e| Error::Cache(what, e))?;
    }
    let ns = quota.namespace().unwrap_or_default();
    let spec_hard = quota
        .spec
        .as_ref()
        .and_then(|s| s.hard.clone())
        .unwrap_or_default();
    let hard_names: Vec<&str> = spec_hard.keys().map(String::as_str).collect();
    let as_json = serde_json::to_value(&*quota).unwrap_or(Value::Null);
    let scopes = usage::scope_requirements(&as_json);
    let now = jiff::Timestamp::now();
    let status = quota.status.clone().unwrap_or_default();
    // Past observations stay for what nothing here measures.
    let mut used = amounts(status.used.as_ref());
    let mut recheck: Option<Duration> = None;
    let mut measured: BTreeSet<(String, String)> = BTreeSet::new();
    let watched: [(&str, Vec<Value>); 6] = [
        ("pods", in_namespace(&ctx.pods, &ns)),
        ("services", in_namespace(&ctx.services, &ns)),
        ("persistentvolumeclaims", in_namespace(&ctx.claims, &ns)),
        ("configmaps", in_namespace(&ctx.config_maps, &ns)),
        ("secrets", in_namespace(&ctx.secrets, &ns)),
        ("resourcequotas", in_namespace(&ctx.quotas, &ns)),
    ];
    for (plural, items) in &watched {
        measured.insert((String::new(), plural.to_string()));
        let ev = Evaluator::of("", plural);
        let names = ev.matching_resources(hard_names.iter().copied());
        if names.is_empty() {
            continue;
        }
        used.extend(usage::usage_of(&ev, &names, &scopes, items, now));
        if *plural == "pods" {
            // A pod past its deletion grace stops counting without any change to it.
            for pod in items {
                if let Some(end) = usage::grace_end(pod).filter(|end| *end >= now) {
                    let wait = Duration::try_from(end.duration_since(now))
                        .unwrap_or_default()
                        .saturating_add(Duration::from_secs(1));
                    recheck = Some(recheck.map_or(wait, |r| r.min(wait)));
                }
            }
        }
    }
    let mut unwatched: BTreeSet<(String, String)> = hard_names
        .iter()
        .filter_map(|n| counted_resource(n))
        .collect();
    if hard_names.contains(&"replicationcontrollers") {
        unwatched.insert((String::new(), "replicationcontrollers".into()));
    }
    for (group, plural) in unwatched.difference(&measured) {
        let ev = Evaluator::of(group, plural);
        let names = ev.matching_resources(hard_names.iter().copied());
        if names.is_empty() {
            continue;
        }
        if let Some(resource) = ctx.unwatched.resource(&ctx.client, group, plural).await {
            let items = list_unwatched(&ctx.client, &resource, &ns).await?;
            used.extend(usage::usage_of(&ev, &names, &scopes, &items, now));
        }
    }
    used.retain(|k, _| spec_hard.contains_key(k));
    let hard = amounts(Some(&spec_hard));
    let dirty = !usage::same(&hard, &amounts(status.hard.as_ref()))
        || !usage::same(&used, &amounts(status.used.as_ref()));
    if dirty {
        let mut next = (*quota).clone();
        next.status = Some(ResourceQuotaStatus {
            hard: Some(spec_hard),
            used: Some(quantities(&used)),
        });
        // Lost to a write of the admission: count again from the newer quota.
        if controller_base::status::replace(&ctx.client, &next)
            .await?
            .is_none()
        {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }
    Ok(Action::requeue(recheck.map_or(RESYNC, |r| r.min(RESYNC))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_resources_name_group_and_plural() {
        assert_eq!(
            counted_resource("count/deployments.apps"),
            Some(("apps".into(), "deployments".into()))
        );
        assert_eq!(
            counted_resource("count/pods"),
            Some((String::new(), "pods".into()))
        );
        assert_eq!(counted_resource("pods"), None);
    }
}
