//! The PV binder (kube-controller-manager's `persistentvolume-binder`): binds each unbound
//! claim to a volume that can serve it, asks the claim's provisioner for a new volume when
//! none can, and keeps both sides' phases true.
//!
//! Claims: a claim without a class gets the default class (retroactively, as upstream since
//! v1.28). An unbound claim binds to the volume `volumebinding::find_match` picks — for a
//! `WaitForFirstConsumer` class only once the scheduler has chosen a node
//! (`volume.kubernetes.io/selected-node`), and then only to volumes reachable from it. With no
//! such volume and a class with a provisioner, the claim is annotated for that provisioner
//! (`volume.kubernetes.io/storage-provisioner`), which creates a volume pre-bound to it. A
//! bound claim whose volume vanished or went to another claim is `Lost`.
//!
//! Volumes: `Available` while unclaimed, `Bound` while their claim exists, `Released` once it
//! is gone (checked against the API, not only the cache, before anything is reclaimed). Then
//! `Retain` keeps the volume (and its data) until an administrator acts; `Delete` is the
//! provisioner's to carry out for the volumes it made, and a volume nobody can delete (or
//! `Recycle`, which is gone upstream) turns `Failed`.
//!
//! Binding writes the volume's `claimRef` first, then the claim's `volumeName`, then both
//! statuses; every step is idempotent, so a conflict or a crash in between is finished by
//! the next reconcile.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::Shared;

use crate::volumebinding::{
    claim_class, class_unset, default_class, find_match, phase, refers_to, satisfies, volume_name,
    waits_for_consumer, ANN_BETA_STORAGE_PROVISIONER, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER,
    ANN_PROVISIONED_BY, ANN_SELECTED_NODE, ANN_STORAGE_PROVISIONER, NO_PROVISIONER,
};

const COMPONENT: &str = "persistentvolume-controller";
/// After losing a write race: look again soon, with what the watch brought meanwhile.
const RETRY_RACE: Duration = Duration::from_millis(300);

struct Ctx {
    client: Client,
    claims: Store<PersistentVolumeClaim>,
    volumes: Store<PersistentVolume>,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
    recorder: Recorder,
}

/// How often a claim nothing could be bound to is looked at again (kube-controller-manager's
/// `--pvclaimbinder-sync-period`).
const UNBOUND_CLAIM_RESYNC: Duration = Duration::from_secs(15);

/// How often a bound volume is looked at again (the same sync period).
const VOLUME_RESYNC: Duration = UNBOUND_CLAIM_RESYNC;

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let claims = controller_base::cache::controller(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let volumes = controller_base::cache::controller(
        Api::<PersistentVolume>::all(client.clone()),
        watcher::Config::default(),
    );
    let claim_cache = claims.store();
    let volume_cache = volumes.store();
    let (classes, class_writer) = reflector::store();
    let class_events = reflector::reflector(
        class_writer,
        controller_base::cache::watch(
            Api::<StorageClass>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (nodes, node_writer) = reflector::store();
    let node_events = reflector::reflector(
        node_writer,
        controller_base::cache::watch(Api::<Node>::all(client.clone()), watcher::Config::default()),
    )
    .default_backoff()
    .touched_objects();
    let waiting = claim_cache.clone();
    let waiting_too = claim_cache.clone();
    // A volume's change matters to the claim it names; a newly available one to every
    // claim still waiting. A class appearing (a default one, say) to every unbound claim.
    let claims = claims
        .watches(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
            move |pv: PersistentVolume| {
                let mut refs = claim_of(&pv).into_iter().collect::<Vec<_>>();
                if pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()) {
                    refs.extend(unbound(&waiting));
                }
                refs
            },
        )
        .watches_stream(class_events, move |_sc: StorageClass| unbound(&waiting_too))
        .watches_stream(node_events, |_node: Node| Vec::new());
    let claimed = volume_cache.clone();
    // A claim's change (its deletion above all) matters to the volumes that name it.
    let volumes = volumes.watches(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
        move |pvc: PersistentVolumeClaim| {
            claimed
                .state()
                .into_iter()
                .filter(|pv| refers_by_name(pv, &pvc))
                .map(|pv| ObjectRef::from_obj(&*pv))
                .collect::<Vec<_>>()
        },
    );
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        claims: claim_cache,
        volumes: volume_cache,
        classes,
        nodes,
    });
    futures::future::join(
        controller_base::runner::drive("persistentvolume-claims", claims, ctx.clone(), sync_claim),
        controller_base::runner::drive("persistentvolume-volumes", volumes, ctx, sync_volume),
    )
    .map(|_| ())
    .boxed()
}

/// The claim a volume's `claimRef` names.
fn claim_of(pv: &PersistentVolume) -> Option<ObjectRef<PersistentVolumeClaim>> {
    let r = pv.spec.as_ref()?.claim_ref.as_ref()?;
    Some(ObjectRef::new(r.name.as_deref()?).within(r.namespace.as_deref()?))
}

fn refers_by_name(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    pv.spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .is_some_and(|r| {
            r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
                && r.name.as_deref() == pvc.metadata.name.as_deref()
        })
}

fn unbound(claims: &Store<PersistentVolumeClaim>) -> Vec<ObjectRef<PersistentVolumeClaim>> {
    claims
        .state()
        .into_iter()
        .filter(|c| volume_name(c).is_empty())
        .map(|c| ObjectRef::from_obj(&*c))
        .collect()
}

async fn ready(ctx: &Ctx) -> Result<(), Error> {
    controller_base::cache::ready(&ctx.volumes)
        .await
        .map_err(|e| Error::Cache("persistentvolume", e))?;
    controller_base::cache::ready(&ctx.classes)
        .await
        .map_err(|e| Error::Cache("storageclass", e))?;
    controller_base::cache::ready(&ctx.nodes)
        .await
        .map_err(|e| Error::Cache("node", e))
}

/// A write that lost a race: the watch brings the winner's state and a new reconcile.
fn raced(e: &kube::Error) -> bool {
    is_conflict(e) || is_not_found(e)
}

async fn sync_claim(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if pvc.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    ready(&ctx).await?;
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
    if volume_name(&pvc).is_empty() && class_unset(&pvc) {
        if let Some(class) = default_class(&ctx.classes.state()) {
            let patch = json!({"spec": {"storageClassName": class}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if raced(&e) => {}
                Err(e) => {
                    return Err(Error::api(format!(
                        "setting the class of claim {ns}/{name}"
                    ))(e))
                }
            }
            return Ok(Action::await_change());
        }
    }
    let volumes = ctx.volumes.state();
    let bound_to = volume_name(&pvc).to_string();
    if bound_to.is_empty() {
        return sync_unbound_claim(&ctx, &pvc, &volumes).await;
    }
    let Some(pv) = volumes.iter().find(|v| v.name_any() == bound_to) else {
        // The cache may lag a volume created a moment ago; ask the API before declaring
        // the claim lost.
        let fresh = Api::<PersistentVolume>::all(ctx.client.clone())
            .get_opt(&bound_to)
            .await
            .map_err(Error::api(format!("reading volume {bound_to}")))?;
        if fresh.is_none() {
            lose(
                &ctx,
                &pvc,
                "ClaimLost",
                "Bound claim has lost its PersistentVolume. Data on the volume is lost!",
            )
            .await?;
        }
        return Ok(Action::await_change());
    };
    let claimed = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref());
    match claimed {
        // Bound by the user (volumeName set at creation): finish the volume's side.
        None if satisfies(pv, &pvc) => bind(&ctx, pv, &pvc).await,
        None => {
            let msg = format!("Cannot bind to requested volume {bound_to:?}: it does not satisfy the claim (class, access modes, size or volume mode)");
            ctx.recorder
                .record(&*pvc, EventType::Warning, "FailedBinding", &msg)
                .await?;
            Ok(Action::await_change())
        }
        Some(_) if refers_to(pv, &pvc) => bind(&ctx, pv, &pvc).await,
        Some(_) => {
            lose(
                &ctx,
                &pvc,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await?;
            Ok(Action::await_change())
        }
    }
}

async fn sync_unbound_claim(
    ctx: &Ctx,
    pvc: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
) -> Result<Action, Error> {
    let class_name = claim_class(pvc).to_string();
    let class = ctx
        .classes
        .state()
        .into_iter()
        .find(|c| c.name_any() == class_name);
    let delay = waits_for_consumer(class.as_deref());
    let selected = pvc.annotations().get(ANN_SELECTED_NODE).cloned();
    let node = selected
        .as_ref()
        .and_then(|n| ctx.nodes.get(&ObjectRef::new(n)));
    if let Some(pv) = find_match(pvc, volumes, node.as_deref(), delay) {
        return bind(ctx, &pv, pvc).await;
    }
    let provisioner = class.as_ref().map(|c| c.provisioner.clone());
    match provisioner {
        Some(p) if p != NO_PROVISIONER => {
            if delay && selected.is_none() {
                ctx.recorder
                    .record(
                        pvc,
                        EventType::Normal,
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding",
                    )
                    .await?;
            } else if pvc.annotations().get(ANN_STORAGE_PROVISIONER) != Some(&p) {
                request_provisioning(ctx, pvc, &p).await?;
            }
        }
        Some(_) if delay && selected.is_none() => {
            ctx.recorder
                .record(
                    pvc,
                    EventType::Normal,
                    "WaitForFirstConsumer",
                    "waiting for first consumer to be created before binding",
                )
                .await?;
        }
        Some(_) => {
            ctx.recorder
                .record(
                    pvc,
                    EventType::Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                )
                .await?;
        }
        None if class_name.is_empty() => {
            ctx.recorder
                .record(
                    pvc,
                    EventType::Normal,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                )
                .await?;
        }
        None => {
            let msg = format!("storageclass.storage.k8s.io {class_name:?} not found");
            ctx.recorder
                .record(pvc, EventType::Warning, "ProvisioningFailed", &msg)
                .await?;
        }
    }
    // Looked at again like upstream's periodic claim sync: the volume watch that triggers
    // this controller and the cache it reads are separate streams, so a new volume's event
    // may come before the cache holds it.
    Ok(Action::requeue(UNBOUND_CLAIM_RESYNC))
}

/// Hands the claim to its external provisioner, as upstream's binder does for any
/// provisioner it does not run in-tree.
async fn request_provisioning(
    ctx: &Ctx,
    pvc: &PersistentVolumeClaim,
    provisioner: &str,
) -> Result<(), Error> {
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let patch = json!({"metadata": {"annotations": {
        ANN_STORAGE_PROVISIONER: provisioner,
        ANN_BETA_STORAGE_PROVISIONER: provisioner,
    }}});
    match Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if raced(&e) => return Ok(()),
        Err(e) => {
            return Err(Error::api(format!(
                "annotating claim {ns}/{name} for provisioning"
            ))(e))
        }
    }
    let msg = format!("Waiting for a volume to be created either by the external provisioner {provisioner:?} or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.");
    ctx.recorder
        .record(pvc, EventType::Normal, "ExternalProvisioning", &msg)
        .await
}

/// Binds `pv` and `pvc` to each other, finishing whatever part is not done yet. Says when
/// to look again: soon after losing a write race, else on the next change.
async fn bind(
    ctx: &Ctx,
    pv: &PersistentVolume,
    pvc: &PersistentVolumeClaim,
) -> Result<Action, Error> {
    let ns = pvc.namespace().unwrap_or_default();
    let claim_name = pvc.name_any();
    let pv_name = pv.name_any();
    let pv_api = Api::<PersistentVolume>::all(ctx.client.clone());
    let recorded_uid = pv
        .spec
        .as_ref()
        .and_then(|s| s.claim_ref.as_ref())
        .and_then(|r| r.uid.as_deref());
    let mut pv = pv.clone();
    if recorded_uid.is_none_or(str::is_empty) {
        let spec = pv.spec.get_or_insert_with(Default::default);
        if spec.claim_ref.is_none() {
            pv.metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        let spec = pv.spec.get_or_insert_with(Default::default);
        spec.claim_ref = Some(ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("PersistentVolumeClaim".into()),
            namespace: Some(ns.clone()),
            name: Some(claim_name.clone()),
            uid: pvc.metadata.uid.clone(),
            resource_version: pvc.metadata.resource_version.clone(),
            field_path: None,
        });
        pv = match pv_api.replace(&pv_name, &PostParams::default(), &pv).await {
            Ok(written) => written,
            Err(e) if raced(&e) => return Ok(Action::requeue(RETRY_RACE)),
            Err(e) => {
                return Err(Error::api(format!(
                    "binding volume {pv_name} to claim {ns}/{claim_name}"
                ))(e))
            }
        };
    }
    set_volume_phase(ctx, &pv, "Bound", None).await?;
    let claim_api = Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns);
    let mut pvc = pvc.clone();
    let completed = pvc
        .annotations()
        .get(ANN_BIND_COMPLETED)
        .map(String::as_str)
        == Some("yes");
    if volume_name(&pvc) != pv_name || !completed {
        let annotations = pvc
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        annotations.insert(ANN_BIND_COMPLETED.into(), "yes".into());
        let spec = pvc.spec.get_or_insert_with(Default::default);
        if spec.volume_name.as_deref().unwrap_or("").is_empty() {
            spec.volume_name = Some(pv_name.clone());
            annotations.insert(ANN_BOUND_BY_CONTROLLER.into(), "yes".into());
        }
        pvc = match claim_api
            .replace(&claim_name, &PostParams::default(), &pvc)
            .await
        {
            Ok(written) => written,
            Err(e) if raced(&e) => return Ok(Action::requeue(RETRY_RACE)),
            Err(e) => {
                return Err(Error::api(format!(
                    "binding claim {ns}/{claim_name} to volume {pv_name}"
                ))(e))
            }
        };
    }
    let status = pvc.status.clone().unwrap_or_default();
    let want_capacity = pv.spec.as_ref().and_then(|s| s.capacity.clone());
    let want_modes = pv.spec.as_ref().and_then(|s| s.access_modes.clone());
    if status.phase.as_deref() != Some("Bound")
        || status.capacity != want_capacity
        || status.access_modes != want_modes
    {
        let patch = json!({"status": {"phase": "Bound", "capacity": want_capacity, "accessModes": want_modes}});
        match claim_api
            .patch_status(&claim_name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if raced(&e) => return Ok(Action::requeue(RETRY_RACE)),
            Err(e) => return Err(Error::api(format!("marking claim {ns}/{claim_name} bound"))(e)),
        }
    }
    Ok(Action::await_change())
}

/// A bound claim whose volume is gone or bound elsewhere: `Lost`, with one warning.
async fn lose(
    ctx: &Ctx,
    pvc: &PersistentVolumeClaim,
    reason: &str,
    msg: &str,
) -> Result<(), Error> {
    if pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Lost") {
        return Ok(());
    }
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let patch = json!({"status": {"phase": "Lost"}});
    match Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if raced(&e) => return Ok(()),
        Err(e) => return Err(Error::api(format!("marking claim {ns}/{name} lost"))(e)),
    }
    ctx.recorder
        .record(pvc, EventType::Warning, reason, msg)
        .await
}

/// Moves a volume to `phase` (with a message for `Failed`), stamping the transition time.
async fn set_volume_phase(
    ctx: &Ctx,
    pv: &PersistentVolume,
    to: &str,
    message: Option<&str>,
) -> Result<(), Error> {
    let current = pv.status.as_ref();
    if phase(pv) == to && current.and_then(|s| s.message.as_deref()) == message {
        return Ok(());
    }
    let name = pv.name_any();
    let patch = json!({"status": {"phase": to, "message": message,
        "reason": message.map(|_| "VolumeFailed"),
        "lastPhaseTransitionTime": Time(Timestamp::now())}});
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if raced(&e) => Ok(()),
        Err(e) => Err(Error::api(format!("moving volume {name} to {to}"))(e)),
    }
}

async fn sync_volume(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    controller_base::cache::ready(&ctx.claims)
        .await
        .map_err(|e| Error::Cache("persistentvolumeclaim", e))?;
    let Some(claim_ref) = pv.spec.as_ref().and_then(|s| s.claim_ref.clone()) else {
        set_volume_phase(&ctx, &pv, "Available", None).await?;
        return Ok(Action::await_change());
    };
    let ref_uid = claim_ref.uid.clone().unwrap_or_default();
    if ref_uid.is_empty() {
        // Pre-bound by the user to a claim that has not bound yet.
        set_volume_phase(&ctx, &pv, "Available", None).await?;
        return Ok(Action::await_change());
    }
    let ns = claim_ref.namespace.clone().unwrap_or_default();
    let claim_name = claim_ref.name.clone().unwrap_or_default();
    let cached = ctx.claims.get(&ObjectRef::new(&claim_name).within(&ns));
    let claim = match cached {
        Some(c) if c.metadata.uid.as_deref() == Some(ref_uid.as_str()) => Some(c),
        // Never reclaim on the cache's word alone: it may not have seen the claim yet.
        _ => Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
            .get_opt(&claim_name)
            .await
            .map_err(Error::api(format!("reading claim {ns}/{claim_name}")))?
            .filter(|c| c.metadata.uid.as_deref() == Some(ref_uid.as_str()))
            .map(Arc::new),
    };
    let Some(claim) = claim else {
        return release(&ctx, &pv).await;
    };
    let claim_volume = volume_name(&claim);
    if claim_volume.is_empty() || claim_volume == pv.name_any() {
        set_volume_phase(&ctx, &pv, "Bound", None).await?;
    } else if pv.annotations().contains_key(ANN_BOUND_BY_CONTROLLER) {
        // The claim went to another volume: take back our half-made binding.
        let mut freed = (*pv).clone();
        if let Some(spec) = freed.spec.as_mut() {
            spec.claim_ref = None;
        }
        if let Some(a) = freed.metadata.annotations.as_mut() {
            a.remove(ANN_BOUND_BY_CONTROLLER);
        }
        let name = pv.name_any();
        match Api::<PersistentVolume>::all(ctx.client.clone())
            .replace(&name, &PostParams::default(), &freed)
            .await
        {
            Ok(_) => {}
            Err(e) if raced(&e) => {}
            Err(e) => return Err(Error::api(format!("unbinding volume {name}"))(e)),
        }
    }
    // Looked at again every sync period, as upstream syncs every volume: the claim cache may
    // still hold a claim whose deletion woke this sync.
    Ok(Action::requeue(VOLUME_RESYNC))
}

/// The volume's claim is gone: `Released`, then its reclaim policy.
async fn release(ctx: &Ctx, pv: &PersistentVolume) -> Result<Action, Error> {
    if phase(pv) == "Failed" {
        return Ok(Action::await_change());
    }
    let name = pv.name_any();
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        .unwrap_or("Retain");
    set_volume_phase(ctx, pv, "Released", None).await?;
    match policy {
        "Delete" if pv.annotations().contains_key(ANN_PROVISIONED_BY) => {
            // Its provisioner deletes it (and what it made on disk).
        }
        "Delete" => {
            let msg = format!("error getting deleter volume plugin for volume {name:?}: no deletable volume plugin matched");
            set_volume_phase(ctx, pv, "Failed", Some(&msg)).await?;
            ctx.recorder
                .record(pv, EventType::Warning, "VolumeFailedDelete", &msg)
                .await?;
        }
        "Recycle" => {
            let msg = "recycling volumes is not supported; reclaim it by hand".to_string();
            set_volume_phase(ctx, pv, "Failed", Some(&msg)).await?;
            ctx.recorder
                .record(pv, EventType::Warning, "VolumeFailedRecycle", &msg)
                .await?;
        }
        _ => {}
    }
    Ok(Action::await_change())
}
