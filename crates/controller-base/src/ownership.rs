//! What every workload controller does with the objects it controls, as kube-controller-
//! manager's `controller_utils` and `controller_ref_manager` do: the controller
//! ownerReference it stamps on them, the Pod it makes from its template, which objects it
//! claims (adopting matching orphans, releasing owned objects whose labels stopped
//! matching), creation in slow-start batches, and the expectations that keep it from acting
//! twice on a cache that has not yet seen its own writes.
//!
//! Everything works for any owner and child kind through `kube::Resource`.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::error::{is_not_found, Error};
use crate::informer::{Change, Informer};

/// The ownerReference a controller puts on what it creates or adopts: `controller: true`
/// marks the one owner that manages it, `blockOwnerDeletion: true` lets a foreground
/// deletion of the owner wait for it.
pub fn controller_ref<K: Resource<DynamicType = ()>>(owner: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: owner.meta().name.clone().unwrap_or_default(),
        uid: owner.meta().uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The object's managing owner (the reference with `controller: true`), if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|r| r.controller == Some(true))
}

/// Whether the object's managing owner is the one with `owner_uid`.
pub fn is_controlled_by(meta: &ObjectMeta, owner_uid: &str) -> bool {
    controller_of(meta).is_some_and(|r| r.uid == owner_uid)
}

/// The `namespace/name` key controllers file per-object state under.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Longest object name kube-apiserver accepts (a DNS subdomain).
const MAX_NAME: usize = 253;

/// A new Pod for `owner` from its template (upstream `GetPodFromTemplate`): named
/// `OWNER-` plus the server's random suffix, in the owner's namespace, with the template's
/// labels, annotations, finalizers and spec, controlled by the owner.
pub fn pod_from_template<K: Resource<DynamicType = ()>>(
    owner: &K,
    template: &PodTemplateSpec,
) -> Pod {
    let name = owner.meta().name.clone().unwrap_or_default();
    // Upstream falls back to the bare name when `NAME-` would not be a valid prefix.
    let prefix = if name.len() < MAX_NAME {
        format!("{name}-")
    } else {
        name
    };
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            generate_name: Some(prefix),
            namespace: owner.meta().namespace.clone(),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![controller_ref(owner)]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// The selector of a LabelSelector (upstream `LabelSelectorAsSelector`); `None` when it
/// cannot be understood (an unknown operator), which matches nothing. An empty selector
/// matches everything; kinds whose validation forbids it never get here with one.
pub fn label_selector(sel: &LabelSelector) -> Option<Selector> {
    Selector::try_from(sel.clone()).ok()
}

/// Whether `selector` selects an object with `meta`'s labels.
pub fn selects(selector: &Selector, meta: &ObjectMeta) -> bool {
    let empty = Default::default();
    selector.matches(meta.labels.as_ref().unwrap_or(&empty))
}

/// What a controller does with one candidate child (upstream `ClaimObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Already ours and still matching.
    Owned,
    /// An orphan that matches: take it.
    Adopt,
    /// Ours but no longer matching: let it go.
    Release,
    /// Someone else's, or not for us.
    Ignore,
}

/// The pure half of claiming: what `owner` does with `child` given the owner's selector.
pub fn claim_decision(owner: &ObjectMeta, selector: &Selector, child: &ObjectMeta) -> Claim {
    let owner_uid = owner.uid.as_deref().unwrap_or_default();
    let owner_deleting = owner.deletion_timestamp.is_some();
    let matches = selects(selector, child);
    match controller_of(child) {
        Some(r) if r.uid != owner_uid => Claim::Ignore,
        Some(_) if matches => Claim::Owned,
        // Upstream keeps what it owns while it is itself being deleted, so the garbage
        // collector finds it.
        Some(_) if owner_deleting => Claim::Ignore,
        Some(_) => Claim::Release,
        None if owner_deleting || !matches => Claim::Ignore,
        None if child.deletion_timestamp.is_some() => Claim::Ignore,
        None if owner.namespace.is_some() && child.namespace != owner.namespace => Claim::Ignore,
        None => Claim::Adopt,
    }
}

/// The strategic merge patch that adopts a child with uid `child_uid`: naming the uid
/// makes it conditional (a different object of the same name is refused with 422).
pub fn adopt_patch<K: Resource<DynamicType = ()>>(owner: &K, child_uid: &str) -> Value {
    json!({"metadata": {
        "ownerReferences": [controller_ref(owner)],
        "uid": child_uid,
    }})
}

/// The strategic merge patch that removes the reference to `owner_uid` from a child.
pub fn release_patch(owner_uid: &str, child_uid: &str) -> Value {
    json!({"metadata": {
        "ownerReferences": [{"$patch": "delete", "uid": owner_uid}],
        "uid": child_uid,
    }})
}

/// Claims `children` for `owner` (upstream `ClaimPods` / `ClaimReplicaSets`): returns the
/// ones it controls afterwards, adopting matching orphans and releasing owned children
/// whose labels stopped matching, through conditional patches. Before the first adoption
/// the owner is read fresh from the API: an owner that was deleted or replaced since the
/// cache saw it adopts nothing ([`Error::OwnerChanged`]).
pub async fn claim<O, C>(
    client: &Client,
    owner: &O,
    selector: &Selector,
    children: impl IntoIterator<Item = Arc<C>>,
) -> Result<Vec<Arc<C>>, Error>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let ns = owner.namespace().unwrap_or_default();
    let api = Api::<C>::namespaced(client.clone(), &ns);
    let owner_uid = owner.meta().uid.clone().unwrap_or_default();
    let mut owner_checked = false;
    let mut claimed = Vec::new();
    for child in children {
        let child_uid = child.meta().uid.clone().unwrap_or_default();
        let name = child.name_any();
        match claim_decision(owner.meta(), selector, child.meta()) {
            Claim::Owned => claimed.push(child),
            Claim::Ignore => {}
            Claim::Adopt => {
                if !owner_checked {
                    check_owner(client, owner).await?;
                    owner_checked = true;
                }
                let patch = adopt_patch(owner, &child_uid);
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                {
                    Ok(adopted) => claimed.push(Arc::new(adopted)),
                    // Gone meanwhile: nothing to adopt.
                    Err(e) if is_not_found(&e) => {}
                    // Someone else claimed it first, or a transient error: look again.
                    Err(e) => {
                        return Err(Error::api(format!("adopting {} {ns}/{name}", C::kind(&())))(e))
                    }
                }
            }
            Claim::Release => {
                let patch = release_patch(&owner_uid, &child_uid);
                match api
                    .patch(&name, &PatchParams::default(), &Patch::Strategic(patch))
                    .await
                {
                    Ok(_) => {}
                    // Gone, or replaced by another object of that name: nothing to release.
                    Err(e) if is_not_found(&e) || crate::error::is_invalid(&e) => {}
                    Err(e) => {
                        return Err(Error::api(format!(
                            "releasing {} {ns}/{name}",
                            C::kind(&())
                        ))(e))
                    }
                }
            }
        }
    }
    Ok(claimed)
}

/// Lists the children in `owner`'s namespace from the API, not from a cache (a child made a
/// moment ago must count, or it is made twice), and [`claim`]s them.
pub async fn claim_fresh<O, C>(
    client: &Client,
    owner: &O,
    selector: &Selector,
) -> Result<Vec<C>, Error>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    C: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let ns = owner.namespace().unwrap_or_default();
    let listed = Api::<C>::namespaced(client.clone(), &ns)
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!(
            "listing the {}s of {ns}/{}",
            C::kind(&()),
            owner.name_any()
        )))?
        .items;
    Ok(
        claim(client, owner, selector, listed.into_iter().map(Arc::new))
            .await?
            .into_iter()
            .map(Arc::unwrap_or_clone)
            .collect(),
    )
}

/// Upstream's `RecheckDeletionTimestamp`: the owner, read fresh, is the same object and not
/// being deleted.
async fn check_owner<O>(client: &Client, owner: &O) -> Result<(), Error>
where
    O: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let ns = owner.namespace().unwrap_or_default();
    let name = owner.name_any();
    let wanted = owner.meta().uid.clone().unwrap_or_default();
    let changed = |found: Option<String>| Error::OwnerChanged {
        kind: O::kind(&()).into_owned(),
        namespace: ns.clone(),
        name: name.clone(),
        wanted: wanted.clone(),
        found,
    };
    match Api::<O>::namespaced(client.clone(), &ns).get(&name).await {
        Ok(fresh) => {
            let uid = fresh.meta().uid.clone();
            if uid.as_deref() != Some(wanted.as_str()) || fresh.meta().deletion_timestamp.is_some()
            {
                return Err(changed(uid));
            }
            Ok(())
        }
        Err(e) if is_not_found(&e) => Err(changed(None)),
        Err(e) => Err(Error::api(format!("reading {} {ns}/{name}", O::kind(&())))(
            e,
        )),
    }
}

/// Runs `count` calls of `f` (given their index) in batches of 1, 2, 4, … (starting at
/// `initial`), stopping after the first batch with a failure, as upstream's
/// `slowStartBatch`: a controller that cannot create pods (quota, a bad template) fails
/// once instead of `count` times. Returns how many succeeded and the first error.
pub async fn slow_start_batch<F, Fut, T, E>(
    count: usize,
    initial: usize,
    f: F,
) -> (usize, Option<E>)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut done = 0;
    let mut ok = 0;
    let mut batch = count.min(initial.max(1));
    while batch > 0 {
        let results = futures::future::join_all((done..done + batch).map(&f)).await;
        let mut first_err = None;
        for r in results {
            match r {
                Ok(_) => ok += 1,
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        if first_err.is_some() {
            return (ok, first_err);
        }
        done += batch;
        batch = (2 * batch).min(count - done);
    }
    (ok, None)
}

/// The owners (of kind `O`, from the cache `owners`) whose reconcile a change of `child`
/// concerns: its managing owner when that is an `O`, else, for an orphan, every `O` in its
/// namespace whose selector (read by `selector_of`) selects it and could adopt it.
pub fn owners_to_sync<O, C>(
    child: &C,
    owners: &Store<O>,
    selector_of: impl Fn(&O) -> Option<&LabelSelector>,
) -> Vec<ObjectRef<O>>
where
    O: Resource<DynamicType = ()> + Clone,
    C: Resource<DynamicType = ()>,
{
    let meta = child.meta();
    let ns = meta.namespace.clone().unwrap_or_default();
    match controller_of(meta) {
        Some(r) if r.kind == O::kind(&()) => vec![ObjectRef::new(&r.name).within(&ns)],
        Some(_) => Vec::new(),
        None => owners
            .state()
            .iter()
            .filter(|o| o.meta().namespace.as_deref() == Some(ns.as_str()))
            .filter(|o| {
                selector_of(o)
                    .filter(|s| {
                        s.match_labels.as_ref().is_some_and(|m| !m.is_empty())
                            || s.match_expressions.as_ref().is_some_and(|m| !m.is_empty())
                    })
                    .and_then(label_selector)
                    .is_some_and(|sel| selects(&sel, meta))
            })
            .map(|o| ObjectRef::from_obj(&**o))
            .collect(),
    }
}

/// How long an expectation may stay unmet before the controller acts anyway (upstream's
/// `ExpectationsTimeout`): a watch event that was lost must not stall it for ever.
pub const EXPECTATIONS_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expected {
    creations: i64,
    deletions: HashSet<String>,
    since: Instant,
}

/// Creations and deletions a controller made that its child cache has not shown yet,
/// per owner key (upstream's `UIDTrackingControllerExpectations`): until they are seen, the
/// owner's reconcile does not count children again, so it never creates or deletes twice.
#[derive(Debug, Default)]
pub struct Expectations {
    entries: Mutex<HashMap<String, Expected>>,
}

impl Expectations {
    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expected>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Expects `creations` new children and the deletion of the children with keys
    /// `deletions`, replacing what was expected before.
    pub fn expect(
        &self,
        owner: &str,
        creations: usize,
        deletions: impl IntoIterator<Item = String>,
    ) {
        self.entries().insert(
            owner.to_string(),
            Expected {
                creations: i64::try_from(creations).unwrap_or(i64::MAX),
                deletions: deletions.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// One expected creation was seen, or will never happen (its request failed).
    pub fn creation_observed(&self, owner: &str) {
        if let Some(e) = self.entries().get_mut(owner) {
            e.creations -= 1;
        }
    }

    /// The deletion of child `child` was seen, or will never happen.
    pub fn deletion_observed(&self, owner: &str, child: &str) {
        if let Some(e) = self.entries().get_mut(owner) {
            e.deletions.remove(child);
        }
    }

    /// Whether the owner's cache has caught up (nothing pending, or waited long enough).
    pub fn satisfied(&self, owner: &str) -> bool {
        self.satisfied_at(owner, Instant::now())
    }

    /// [`Self::satisfied`] at time `now`.
    pub fn satisfied_at(&self, owner: &str, now: Instant) -> bool {
        match self.entries().get(owner) {
            None => true,
            Some(e) => {
                (e.creations <= 0 && e.deletions.is_empty())
                    || now.saturating_duration_since(e.since) > EXPECTATIONS_TTL
            }
        }
    }

    /// Drops what was expected for an owner that is gone.
    pub fn forget(&self, owner: &str) {
        self.entries().remove(owner);
    }

    /// Counts one change of a child whose managing owner is of kind `owner_kind`.
    pub fn observe<C: Resource<DynamicType = ()>>(&self, owner_kind: &str, change: &Change<C>) {
        let (child, known, deleted) = match change {
            Change::Applied { old, new } => (&**new, old.as_deref(), false),
            Change::Deleted(c) => (&**c, None, true),
            Change::Listed => return,
        };
        let meta = child.meta();
        let Some(owner) = controller_of(meta).filter(|r| r.kind == owner_kind) else {
            return;
        };
        let owner_key = format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            owner.name
        );
        let newly_deleting = meta.deletion_timestamp.is_some()
            && known.is_none_or(|k| k.meta().deletion_timestamp.is_none());
        if deleted || newly_deleting {
            self.deletion_observed(&owner_key, &key_of(meta));
        } else if known.is_none() {
            self.creation_observed(&owner_key);
        }
    }
}

/// The changes of `children` for a controller's `watches_shared_stream`, each counted against
/// `expectations` of owners of kind `owner_kind`. The shared cache holds each change before
/// it is counted, so an owner whose expectations are met finds its children there.
pub fn watch_children<C>(
    children: &Informer<C>,
    owner_kind: &'static str,
    expectations: Arc<Expectations>,
) -> impl Stream<Item = Arc<C>> + Send
where
    C: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    children.subscribe().filter_map(move |change| {
        expectations.observe(owner_kind, &change);
        futures::future::ready(match change {
            Change::Applied { new, .. } => Some(new),
            Change::Deleted(c) => Some(c),
            Change::Listed => None,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::ReplicaSet;

    fn rs(uid: &str) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": uid},
            "spec": {"selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}, "annotations": {"a": "1"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}
        }))
        .expect("rs")
    }

    fn pod(name: &str, labels: Value, owner: Option<(&str, bool)>) -> Pod {
        let refs = owner.map(|(uid, controller)| {
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web",
                    "uid": uid, "controller": controller}])
        });
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("p-{name}"),
                         "labels": labels, "ownerReferences": refs}
        }))
        .expect("pod")
    }

    fn web() -> Selector {
        label_selector(
            &serde_json::from_value(json!({"matchLabels": {"app": "web"}})).expect("sel"),
        )
        .expect("valid")
    }

    #[test]
    fn controller_refs_block_owner_deletion() {
        let r = controller_ref(&rs("u1"));
        assert_eq!(
            serde_json::to_value(&r).expect("json"),
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "u1",
                   "controller": true, "blockOwnerDeletion": true})
        );
        let p = pod("a", json!({}), Some(("u1", true)));
        assert!(is_controlled_by(&p.metadata, "u1"));
        assert!(!is_controlled_by(&p.metadata, "u2"));
        let plain = pod("b", json!({}), Some(("u1", false)));
        assert!(controller_of(&plain.metadata).is_none());
    }

    #[test]
    fn pods_come_from_the_template() {
        let owner = rs("u1");
        let template = owner
            .spec
            .as_ref()
            .and_then(|s| s.template.clone())
            .expect("template");
        let p = pod_from_template(&owner, &template);
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["metadata"]["generateName"], "web-");
        assert_eq!(v["metadata"]["namespace"], "ns");
        assert_eq!(v["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(v["metadata"]["annotations"], json!({"a": "1"}));
        assert_eq!(v["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(v["spec"]["containers"][0]["image"], "busybox");
        assert!(v["metadata"].get("name").is_none());
    }

    #[test]
    fn claiming_adopts_orphans_and_releases_strays() {
        let owner = rs("u1");
        let sel = web();
        let decide = |p: &Pod| claim_decision(&owner.metadata, &sel, &p.metadata);
        assert_eq!(
            decide(&pod("a", json!({"app": "web"}), Some(("u1", true)))),
            Claim::Owned
        );
        assert_eq!(decide(&pod("b", json!({"app": "web"}), None)), Claim::Adopt);
        assert_eq!(
            decide(&pod("c", json!({"app": "db"}), Some(("u1", true)))),
            Claim::Release
        );
        assert_eq!(
            decide(&pod("d", json!({"app": "web"}), Some(("u2", true)))),
            Claim::Ignore
        );
        assert_eq!(decide(&pod("e", json!({"app": "db"}), None)), Claim::Ignore);
        // A non-controller reference does not make it someone else's.
        assert_eq!(
            decide(&pod("f", json!({"app": "web"}), Some(("u9", false)))),
            Claim::Adopt
        );
        let mut deleting = pod("g", json!({"app": "web"}), None);
        deleting.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("time"));
        assert_eq!(decide(&deleting), Claim::Ignore);
        let mut other_ns = pod("h", json!({"app": "web"}), None);
        other_ns.metadata.namespace = Some("elsewhere".into());
        assert_eq!(decide(&other_ns), Claim::Ignore);
    }

    #[test]
    fn a_deleting_owner_neither_adopts_nor_releases() {
        let mut owner = rs("u1");
        owner.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("time"));
        let sel = web();
        let decide = |p: &Pod| claim_decision(&owner.metadata, &sel, &p.metadata);
        assert_eq!(
            decide(&pod("a", json!({"app": "web"}), None)),
            Claim::Ignore
        );
        assert_eq!(
            decide(&pod("b", json!({"app": "db"}), Some(("u1", true)))),
            Claim::Ignore
        );
        assert_eq!(
            decide(&pod("c", json!({"app": "web"}), Some(("u1", true)))),
            Claim::Owned
        );
    }

    #[test]
    fn patches_are_conditional_on_the_child_uid() {
        let adopt = adopt_patch(&rs("u1"), "p-a");
        assert_eq!(adopt["metadata"]["uid"], "p-a");
        assert_eq!(adopt["metadata"]["ownerReferences"][0]["uid"], "u1");
        assert_eq!(adopt["metadata"]["ownerReferences"][0]["controller"], true);
        let release = release_patch("u1", "p-a");
        assert_eq!(
            release,
            json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "u1"}], "uid": "p-a"}})
        );
    }

    #[test]
    fn selectors_with_expressions_and_bad_operators() {
        let sel: LabelSelector = serde_json::from_value(json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["fe", "be"]}]
        }))
        .expect("sel");
        let s = label_selector(&sel).expect("valid");
        assert!(selects(
            &s,
            &pod("a", json!({"app": "web", "tier": "fe"}), None).metadata
        ));
        assert!(!selects(
            &s,
            &pod("b", json!({"app": "web"}), None).metadata
        ));
        let bad: LabelSelector = serde_json::from_value(json!({
            "matchExpressions": [{"key": "tier", "operator": "Near"}]
        }))
        .expect("sel");
        assert!(label_selector(&bad).is_none());
    }

    #[tokio::test]
    async fn slow_start_doubles_and_stops_at_the_first_failing_batch() {
        let calls = Mutex::new(Vec::new());
        let (ok, err) = slow_start_batch(10, 1, |i| {
            calls.lock().expect("lock").push(i);
            async move {
                if i == 5 {
                    Err("quota")
                } else {
                    Ok(())
                }
            }
        })
        .await;
        // Batches 1, 2, 4: the third (indexes 3..7) holds the failure, so 8.. never run.
        assert_eq!(ok, 6);
        assert_eq!(err, Some("quota"));
        assert_eq!(calls.lock().expect("lock").len(), 7);
        let (ok, err) = slow_start_batch(5, 1, |_| async { Ok::<_, ()>(()) }).await;
        assert_eq!((ok, err), (5, None));
        let (ok, err) = slow_start_batch(0, 1, |_| async { Ok::<_, ()>(()) }).await;
        assert_eq!((ok, err), (0, None));
    }

    #[test]
    fn expectations_wait_for_the_cache() {
        let exp = Expectations::default();
        assert!(exp.satisfied("ns/web"));
        exp.expect("ns/web", 2, ["ns/old".to_string()]);
        assert!(!exp.satisfied("ns/web"));
        let created = pod("a", json!({}), Some(("u1", true)));
        let applied = |old: Option<&Pod>, new: Pod| Change::Applied {
            old: old.cloned().map(Arc::new),
            new: Arc::new(new),
        };
        exp.observe("ReplicaSet", &applied(None, created.clone()));
        // An update of a pod the cache knew is no creation.
        exp.observe("ReplicaSet", &applied(Some(&created), created.clone()));
        assert!(!exp.satisfied("ns/web"));
        // Another owner kind's children do not count.
        exp.observe(
            "Job",
            &applied(None, pod("b", json!({}), Some(("u1", true)))),
        );
        exp.observe(
            "ReplicaSet",
            &applied(None, pod("c", json!({}), Some(("u1", true)))),
        );
        assert!(!exp.satisfied("ns/web"));
        let mut old = pod("old", json!({}), Some(("u1", true)));
        let before = old.clone();
        old.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("time"));
        exp.observe("ReplicaSet", &applied(Some(&before), old));
        assert!(exp.satisfied("ns/web"));
        exp.expect("ns/web", 1, []);
        assert!(!exp.satisfied("ns/web"));
        assert!(exp.satisfied_at(
            "ns/web",
            Instant::now() + EXPECTATIONS_TTL + Duration::from_secs(1)
        ));
        exp.forget("ns/web");
        assert!(exp.satisfied("ns/web"));
    }
}
