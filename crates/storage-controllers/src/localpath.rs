//! The local-path provisioner (the idea of k3s's `local-path-provisioner`): volumes of the
//! `peapod.io/local-path` provisioner are directories on one node, made for a claim when the
//! PV binder hands it over (`volume.kubernetes.io/storage-provisioner`), and removed with
//! their volume when the reclaim policy says `Delete`.
//!
//! The class: `local-path`, the default class, `WaitForFirstConsumer`, reclaim `Delete`,
//! expandable (see `resize`), is
//! made sure to exist when this controller starts (created if missing, never overwritten), as
//! k3s deploys its manifest. It lives here rather than in the API server's bootstrap because
//! the class is only true while its provisioner runs: an API server serving other controllers
//! (or a real cluster this controller manager joins) gets the class exactly when it gets the
//! provisioner. A claim made before the class exists is given it later by the binder's
//! retroactive default class.
//!
//! Where the directory goes is the node's business: only the agent knows its state dir.
//! Each node publishes its local-path root in the `peapod.io/local-path-root` annotation when
//! it registers; the volume is a `hostPath` (`DirectoryOrCreate`) at
//! `<root>/pvc-<claim uid>_<namespace>_<claim name>` with node affinity to that node (the one
//! the scheduler picked, `volume.kubernetes.io/selected-node`). The controller never touches
//! a filesystem, so it runs anywhere: a released `Delete` volume is deleted through the API,
//! and its `peapod.io/local-path-directory` finalizer holds it until the node has removed
//! the directory.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::Shared;

use crate::volumebinding::{
    claim_class, phase, volume_name, waits_for_consumer, ANN_PROVISIONED_BY, ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER,
};

/// The provisioner name classes use.
pub const PROVISIONER: &str = "peapod.io/local-path";
/// The class every cluster gets.
pub const CLASS: &str = "local-path";
/// Node annotation with the node's local-path root directory; the node agent writes it
/// (`node::nodestatus`).
pub const ANN_ROOT: &str = "peapod.io/local-path-root";
/// Finalizer of provisioned volumes: the node removes the directory, then this (the node
/// agent's `localpath` side).
pub const FINALIZER: &str = "peapod.io/local-path-directory";

/// Access modes a directory on one node can honour.
const MODES: &[&str] = &["ReadWriteOnce", "ReadWriteOncePod"];
/// First and longest wait between attempts to create the class while the API refuses.
const CLASS_RETRY: (Duration, Duration) = (Duration::from_millis(200), Duration::from_secs(30));

struct Ctx {
    client: Client,
    classes: Store<StorageClass>,
    nodes: Store<Node>,
    recorder: Recorder,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    async move {
        ensure_class(&client).await;
        let claims = controller_base::cache::controller(
            Api::<PersistentVolumeClaim>::all(client.clone()),
            watcher::Config::default(),
        );
        let claim_cache = claims.store();
        let volumes = controller_base::cache::controller(
            Api::<PersistentVolume>::all(client.clone()),
            watcher::Config::default(),
        );
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
            controller_base::cache::watch(
                Api::<Node>::all(client.clone()),
                watcher::Config::default(),
            ),
        )
        .default_backoff()
        .touched_objects();
        // A node publishing its root may unblock the claims waiting for it.
        let claims = claims
            .watches_stream(node_events, move |node: Node| {
                let name = node.name_any();
                claim_cache
                    .state()
                    .into_iter()
                    .filter(|c| volume_name(c).is_empty())
                    .filter(|c| c.annotations().get(ANN_SELECTED_NODE) == Some(&name))
                    .map(|c| ObjectRef::from_obj(&*c))
                    .collect::<Vec<_>>()
            })
            .watches_stream(class_events, |_sc: StorageClass| Vec::new());
        let ctx = Arc::new(Ctx {
            recorder: Recorder::new(client.clone(), PROVISIONER),
            client,
            classes,
            nodes,
        });
        futures::future::join(
            controller_base::runner::drive("local-path-provision", claims, ctx.clone(), provision),
            controller_base::runner::drive("local-path-delete", volumes, ctx, delete),
        )
        .await;
    }
    .boxed()
}

/// The `local-path` StorageClass as every cluster gets it.
pub fn default_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(CLASS.into()),
            annotations: Some(
                [(
                    "storageclass.kubernetes.io/is-default-class".to_string(),
                    "true".to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("WaitForFirstConsumer".into()),
        // A directory has no size to grow: expansion is the bookkeeping `resize` does.
        allow_volume_expansion: Some(true),
        ..Default::default()
    }
}

/// Creates the class unless it exists, retrying with back-off while the API refuses.
async fn ensure_class(client: &Client) {
    let api = Api::<StorageClass>::all(client.clone());
    let mut wait = CLASS_RETRY.0;
    loop {
        match api.create(&PostParams::default(), &default_class()).await {
            Ok(_) => {
                tracing::info!(class = CLASS, "created the default StorageClass");
                return;
            }
            Err(e) if is_conflict(&e) => return,
            Err(e) => {
                tracing::warn!(error = %e, "creating the local-path StorageClass failed; retrying")
            }
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(CLASS_RETRY.1);
    }
}

/// Why a claim cannot get a local-path volume (the `ProvisioningFailed` event's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    AccessModes,
    Block,
    NoSize,
    NoNode,
    NodeMissing(String),
    NoRoot(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::AccessModes => f.write_str(
                "the local-path provisioner only supports the ReadWriteOnce and ReadWriteOncePod access modes",
            ),
            Refusal::Block => f.write_str("the local-path provisioner only makes Filesystem volumes"),
            Refusal::NoSize => f.write_str("the claim requests no storage size"),
            Refusal::NoNode => f.write_str("no Ready node publishes a local-path directory"),
            Refusal::NodeMissing(n) => write!(f, "node {n:?} not found"),
            Refusal::NoRoot(n) => write!(
                f,
                "node {n:?} does not publish its local-path directory (annotation {ANN_ROOT})"
            ),
        }
    }
}

/// The volume for `pvc` of `class` on `node` (pure, so tested without an API).
pub fn volume_for(
    pvc: &PersistentVolumeClaim,
    class: &StorageClass,
    node: &Node,
) -> Result<PersistentVolume, Refusal> {
    let spec = pvc.spec.clone().unwrap_or_default();
    let modes = spec.access_modes.clone().unwrap_or_default();
    if modes.is_empty() || modes.iter().any(|m| !MODES.contains(&m.as_str())) {
        return Err(Refusal::AccessModes);
    }
    if spec
        .volume_mode
        .as_deref()
        .is_some_and(|m| m != "Filesystem")
    {
        return Err(Refusal::Block);
    }
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()
        .ok_or(Refusal::NoSize)?;
    let node_name = node.name_any();
    let root = node
        .annotations()
        .get(ANN_ROOT)
        .filter(|r| r.starts_with('/'))
        .ok_or_else(|| Refusal::NoRoot(node_name.clone()))?;
    let uid = pvc.metadata.uid.clone().unwrap_or_default();
    let ns = pvc.namespace().unwrap_or_default();
    let claim = pvc.name_any();
    let name = format!("pvc-{uid}");
    let path = format!("{}/{name}_{ns}_{claim}", root.trim_end_matches('/'));
    Ok(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name),
            annotations: Some([(ANN_PROVISIONED_BY.to_string(), PROVISIONER.to_string())].into()),
            finalizers: Some(vec![FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some([("storage".to_string(), size)].into()),
            access_modes: Some(modes),
            persistent_volume_reclaim_policy: Some(
                class
                    .reclaim_policy
                    .clone()
                    .unwrap_or_else(|| "Delete".into()),
            ),
            storage_class_name: Some(class.name_any()),
            mount_options: class.mount_options.clone(),
            volume_mode: Some("Filesystem".into()),
            host_path: Some(HostPathVolumeSource {
                path,
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_fields: Some(vec![NodeSelectorRequirement {
                            key: "metadata.name".into(),
                            operator: "In".into(),
                            values: Some(vec![node_name]),
                        }]),
                        ..Default::default()
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(ns),
                name: Some(claim),
                uid: Some(uid),
                resource_version: pvc.metadata.resource_version.clone(),
                field_path: None,
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// The node an `Immediate` claim's volume goes to: the first Ready node (by name) that
/// publishes a local-path root.
fn any_node(nodes: &[Arc<Node>]) -> Option<Arc<Node>> {
    let mut usable: Vec<&Arc<Node>> = nodes
        .iter()
        .filter(|n| n.annotations().contains_key(ANN_ROOT))
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .collect();
    usable.sort_by_key(|n| n.name_any());
    usable.first().map(|n| (*n).clone())
}

async fn provision(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let handed_over = pvc
        .annotations()
        .get(ANN_STORAGE_PROVISIONER)
        .map(String::as_str);
    if pvc.metadata.deletion_timestamp.is_some()
        || !volume_name(&pvc).is_empty()
        || handed_over != Some(PROVISIONER)
    {
        return Ok(Action::await_change());
    }
    controller_base::cache::ready(&ctx.classes)
        .await
        .map_err(|e| Error::Cache("storageclass", e))?;
    controller_base::cache::ready(&ctx.nodes)
        .await
        .map_err(|e| Error::Cache("node", e))?;
    let class_name = claim_class(&pvc).to_string();
    let Some(class) = ctx.classes.get(&ObjectRef::new(&class_name)) else {
        return Ok(Action::await_change());
    };
    if class.provisioner != PROVISIONER {
        return Ok(Action::await_change());
    }
    let selected = pvc.annotations().get(ANN_SELECTED_NODE).cloned();
    let node = match (&selected, waits_for_consumer(Some(&class))) {
        (Some(n), _) => ctx
            .nodes
            .get(&ObjectRef::new(n))
            .ok_or_else(|| Refusal::NodeMissing(n.clone())),
        (None, true) => return Ok(Action::await_change()),
        (None, false) => any_node(&ctx.nodes.state()).ok_or(Refusal::NoNode),
    };
    let pv = match node.and_then(|n| volume_for(&pvc, &class, &n)) {
        Ok(pv) => pv,
        Err(refusal) => {
            ctx.recorder
                .record(
                    &*pvc,
                    EventType::Warning,
                    "ProvisioningFailed",
                    &refusal.to_string(),
                )
                .await?;
            return Ok(Action::await_change());
        }
    };
    let name = pv.name_any();
    let api = Api::<PersistentVolume>::all(ctx.client.clone());
    // Read fresh, not from a cache: a volume made a moment ago must not be made twice.
    let existing = api
        .get_opt(&name)
        .await
        .map_err(Error::api(format!("reading volume {name}")))?;
    if existing.is_some() {
        return Ok(Action::await_change());
    }
    let claim = format!("{}/{}", pvc.namespace().unwrap_or_default(), pvc.name_any());
    ctx.recorder
        .record(
            &*pvc,
            EventType::Normal,
            "Provisioning",
            &format!("External provisioner is provisioning volume for claim {claim:?}"),
        )
        .await?;
    match api.create(&PostParams::default(), &pv).await {
        Ok(_) => {}
        // Made by an earlier attempt the cache had not seen yet.
        Err(e) if is_conflict(&e) => return Ok(Action::await_change()),
        Err(e) => {
            return Err(Error::api(format!(
                "creating volume {name} for claim {claim}"
            ))(e))
        }
    }
    ctx.recorder
        .record(
            &*pvc,
            EventType::Normal,
            "ProvisioningSucceeded",
            &format!("Successfully provisioned volume {name}"),
        )
        .await?;
    Ok(Action::await_change())
}

/// A released volume we made, with reclaim `Delete`: delete it; its finalizer keeps it until
/// its node has removed the directory.
async fn delete(pv: Arc<PersistentVolume>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ours = pv.annotations().get(ANN_PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    let policy = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    if !ours
        || pv.metadata.deletion_timestamp.is_some()
        || phase(&pv) != "Released"
        || policy != Some("Delete")
    {
        return Ok(Action::await_change());
    }
    let name = pv.name_any();
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pv.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match Api::<PersistentVolume>::all(ctx.client.clone())
        .delete(&name, &params)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(Action::await_change()),
        Err(e) => {
            let msg = format!("deleting volume {name}: {e}");
            ctx.recorder
                .record(&*pv, EventType::Warning, "VolumeFailedDelete", &msg)
                .await?;
            Err(Error::api(format!("deleting volume {name}"))(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(modes: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "team", "uid": "u-1",
            "resourceVersion": "7"},
            "spec": {"accessModes": modes, "resources": {"requests": {"storage": "2Gi"}},
                     "storageClassName": "local-path", "volumeMode": "Filesystem"}}),
        )
        .expect("pvc")
    }

    fn node(root: Option<&str>) -> Node {
        let mut n = json!({"metadata": {"name": "n1"}});
        if let Some(r) = root {
            n["metadata"]["annotations"] = json!({ANN_ROOT: r});
        }
        serde_json::from_value(n).expect("node")
    }

    #[test]
    fn volume_is_a_directory_on_the_chosen_node() {
        let pv = volume_for(
            &claim(json!(["ReadWriteOnce"])),
            &default_class(),
            &node(Some("/var/lib/peapod/local-path/")),
        )
        .expect("volume");
        let v = serde_json::to_value(&pv).expect("json");
        assert_eq!(v["metadata"]["name"], "pvc-u-1");
        assert_eq!(
            v["metadata"]["annotations"][ANN_PROVISIONED_BY],
            PROVISIONER
        );
        assert_eq!(v["metadata"]["finalizers"], json!([FINALIZER]));
        assert_eq!(
            v["spec"]["hostPath"],
            json!({"path": "/var/lib/peapod/local-path/pvc-u-1_team_data", "type": "DirectoryOrCreate"})
        );
        assert_eq!(v["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(v["spec"]["storageClassName"], "local-path");
        assert_eq!(
            v["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchFields"][0],
            json!({"key": "metadata.name", "operator": "In", "values": ["n1"]})
        );
        assert_eq!(
            v["spec"]["claimRef"],
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "team",
                   "name": "data", "uid": "u-1", "resourceVersion": "7"})
        );
    }

    #[test]
    fn refusals() {
        let class = default_class();
        assert_eq!(
            volume_for(&claim(json!(["ReadWriteMany"])), &class, &node(Some("/r"))).err(),
            Some(Refusal::AccessModes)
        );
        assert_eq!(
            volume_for(&claim(json!(["ReadWriteOnce"])), &class, &node(None)).err(),
            Some(Refusal::NoRoot("n1".into()))
        );
        assert_eq!(
            volume_for(
                &claim(json!(["ReadWriteOnce"])),
                &class,
                &node(Some("relative"))
            )
            .err(),
            Some(Refusal::NoRoot("n1".into()))
        );
    }

    #[test]
    fn the_class() {
        let c = default_class();
        assert_eq!(
            c.volume_binding_mode.as_deref(),
            Some("WaitForFirstConsumer")
        );
        assert_eq!(c.reclaim_policy.as_deref(), Some("Delete"));
        assert_eq!(
            crate::volumebinding::default_class(&[Arc::new(c)]),
            Some(CLASS.to_string())
        );
    }
}
