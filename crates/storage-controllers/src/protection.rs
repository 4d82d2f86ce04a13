//! Storage object in-use protection (kube-controller-manager's `pvc-protection` and
//! `pv-protection` controllers): a claim a pod still uses, or a volume still bound, is not
//! removed when it is deleted. The API server puts the finalizer on each new object (the
//! `StorageObjectInUseProtection` admission); these controllers put it on objects that lack
//! it and take it off a deleted object once nothing uses it:
//! - a claim is in use while a pod scheduled to a node and not finished (`Succeeded` or
//!   `Failed`) names it, as a `persistentVolumeClaim` volume or as its generic ephemeral
//!   volume `POD-VOLUME`; the pods are read fresh from the API before the finalizer goes, as
//!   upstream asks the API server before it trusts its cache;
//! - a volume is in use while its phase is `Bound`.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::json;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;

/// The finalizer of claims.
pub const PVC_FINALIZER: &str = "kubernetes.io/pvc-protection";
/// The finalizer of volumes.
pub const PV_FINALIZER: &str = "kubernetes.io/pv-protection";

struct Ctx {
    client: Client,
}

/// The claims `pod` names (in its namespace).
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let name = pod.name_any();
    pod.spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .filter_map(|v| {
            if let Some(c) = &v.persistent_volume_claim {
                Some(c.claim_name.clone())
            } else {
                v.ephemeral.as_ref().map(|_| format!("{name}-{}", v.name))
            }
        })
        .collect()
}

/// Whether `pod` holds its claims: scheduled and not finished.
pub fn holds_claims(pod: &Pod) -> bool {
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    scheduled && !matches!(phase, Some("Succeeded" | "Failed"))
}

/// What to do with an object's finalizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Add,
    Remove,
    Nothing,
}

/// The step for an object that is (or is not) being deleted, has (or lacks) the finalizer,
/// and is (or is not) in use; `in_use` is only asked when it matters.
pub fn step(deleting: bool, has_finalizer: bool, in_use: impl FnOnce() -> bool) -> Step {
    match (deleting, has_finalizer) {
        (false, false) => Step::Add,
        (true, true) if !in_use() => Step::Remove,
        _ => Step::Nothing,
    }
}

pub fn run_pvc(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    // A pod going away (or finishing) may free the claims it names.
    .watches_shared_stream(shared.pods.touched(), |pod: Arc<Pod>| {
        let ns = pod.namespace().unwrap_or_default();
        claims_of(&pod)
            .into_iter()
            .map(|c| ObjectRef::new(&c).within(&ns))
            .collect::<Vec<_>>()
    });
    let ctx = Arc::new(Ctx { client });
    controller_base::runner::drive("pvc-protection", controller, ctx, reconcile_pvc).boxed()
}

pub fn run_pv(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    let ctx = Arc::new(Ctx { client });
    controller_base::runner::drive("pv-protection", controller, ctx, reconcile_pv).boxed()
}

fn has(meta_finalizers: Option<&Vec<String>>, finalizer: &str) -> bool {
    meta_finalizers.is_some_and(|f| f.iter().any(|x| x == finalizer))
}

async fn reconcile_pvc(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
    let deleting = pvc.metadata.deletion_timestamp.is_some();
    let has_it = has(pvc.metadata.finalizers.as_ref(), PVC_FINALIZER);
    let in_use = if deleting && has_it {
        let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .map_err(Error::api(format!("listing the pods of namespace {ns}")))?
            .items;
        pods.iter()
            .any(|p| holds_claims(p) && claims_of(p).contains(&name))
    } else {
        false
    };
    let s = step(deleting, has_it, || in_use);
    change_finalizer(&api, &*pvc, PVC_FINALIZER, s).await?;
    Ok(Action::await_change())
}

async fn reconcile_pv(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let s = step(
        pv.metadata.deletion_timestamp.is_some(),
        has(pv.metadata.finalizers.as_ref(), PV_FINALIZER),
        || bound,
    );
    change_finalizer(&api, &*pv, PV_FINALIZER, s).await?;
    Ok(Action::await_change())
}

/// Adds or removes `finalizer`, guarded by the object's resourceVersion: a write that lost
/// a race is decided again from the watch event that follows it.
async fn change_finalizer<K>(
    api: &Api<K>,
    obj: &K,
    finalizer: &str,
    step: Step,
) -> Result<(), Error>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers = obj.meta().finalizers.clone().unwrap_or_default();
    match step {
        Step::Nothing => return Ok(()),
        Step::Add => finalizers.push(finalizer.to_string()),
        Step::Remove => finalizers.retain(|f| f != finalizer),
    }
    let name = obj.meta().name.clone().unwrap_or_default();
    let patch = json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": obj.meta().resource_version,
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::api(format!("updating the finalizers of {name}"))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(node: &str, phase: &str) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "i"}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                                 {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                                     "spec": {"accessModes": ["ReadWriteOnce"]}}}},
                                 {"name": "tmp", "emptyDir": {}}]},
            "status": {"phase": phase}}))
        .expect("pod")
    }

    #[test]
    fn claims_a_pod_names_and_when_it_holds_them() {
        assert_eq!(claims_of(&pod("n1", "Running")), ["data", "web-scratch"]);
        assert!(holds_claims(&pod("n1", "Running")));
        assert!(holds_claims(&pod("n1", "Pending")));
        assert!(!holds_claims(&pod("", "Pending")), "not scheduled yet");
        assert!(!holds_claims(&pod("n1", "Succeeded")));
        assert!(!holds_claims(&pod("n1", "Failed")));
    }

    #[test]
    fn the_finalizer_goes_on_live_objects_and_off_unused_deleted_ones() {
        assert_eq!(step(false, false, || true), Step::Add);
        assert_eq!(step(false, true, || false), Step::Nothing);
        assert_eq!(step(true, true, || true), Step::Nothing, "still in use");
        assert_eq!(step(true, true, || false), Step::Remove);
        assert_eq!(step(true, false, || false), Step::Nothing);
    }
}
