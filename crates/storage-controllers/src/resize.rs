//! Volume expansion for the local-path provisioner's volumes (the part an external resizer
//! plays for a CSI driver): when a bound claim asks for more storage than its volume has,
//! the volume's capacity is raised to the request and the claim's
//! `status.allocatedResources` records it; the PV binder then copies the volume's capacity
//! into the claim's `status.capacity`, which is how kubectl sees the resize finish. Events
//! `Resizing` and `VolumeResizeSuccessful` on the claim, as upstream's resizer writes them.
//!
//! A local-path volume is a directory with no size of its own, so nothing on the node
//! changes: no file system resize is pending afterwards. Whether a claim may grow at all
//! (its class's `allowVolumeExpansion`) is the API server's admission to decide.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use apimachinery::quantity::Quantity;
use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::Shared;

use crate::localpath::PROVISIONER;
use crate::volumebinding::{requested, volume_name, ANN_PROVISIONED_BY};

const COMPONENT: &str = "volume_expand";

struct Ctx {
    client: Client,
    recorder: Recorder,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
    });
    controller_base::runner::drive("local-path-resizer", controller, ctx, reconcile).boxed()
}

/// The size `pv` should grow to for `pvc`: the claim's request, when the claim is bound to
/// this local-path volume and asks for more than it has.
pub fn grow_to(pvc: &PersistentVolumeClaim, pv: &PersistentVolume) -> Option<Quantity> {
    let bound = pvc.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    let ours = pv.annotations().get(ANN_PROVISIONED_BY).map(String::as_str) == Some(PROVISIONER);
    if !bound || !ours || pvc.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let want = requested(pvc)?;
    let has = crate::volumebinding::capacity(pv)?;
    (want > has).then_some(want)
}

async fn reconcile(pvc: Arc<PersistentVolumeClaim>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let pv_name = volume_name(&pvc);
    if pv_name.is_empty() {
        return Ok(Action::await_change());
    }
    let volumes = Api::<PersistentVolume>::all(ctx.client.clone());
    let Some(pv) = volumes
        .get_opt(pv_name)
        .await
        .map_err(Error::api(format!("reading volume {pv_name}")))?
    else {
        return Ok(Action::await_change());
    };
    let request = pvc
        .spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"));
    let (Some(_), Some(size)) = (grow_to(&pvc, &pv), request.map(|q| q.0.clone())) else {
        return Ok(Action::await_change());
    };
    ctx.recorder
        .record(
            &*pvc,
            EventType::Normal,
            "Resizing",
            &format!("External resizer is resizing volume {pv_name}"),
        )
        .await?;
    let patch = json!({"metadata": {"resourceVersion": pv.metadata.resource_version},
        "spec": {"capacity": {"storage": size}}});
    match volumes
        .patch(pv_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {}
        Err(e) if is_conflict(&e) || is_not_found(&e) => {
            return Ok(Action::requeue(std::time::Duration::from_millis(300)))
        }
        Err(e) => return Err(Error::api(format!("resizing volume {pv_name}"))(e)),
    }
    let ns = pvc.namespace().unwrap_or_default();
    let name = pvc.name_any();
    let status = json!({"status": {"allocatedResources": {"storage": size}}});
    match Api::<PersistentVolumeClaim>::namespaced(ctx.client.clone(), &ns)
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
        .await
    {
        Ok(_) => {}
        Err(e) if is_not_found(&e) => return Ok(Action::await_change()),
        Err(e) => {
            return Err(Error::api(format!("recording the resize of {ns}/{name}"))(
                e,
            ))
        }
    }
    ctx.recorder
        .record(
            &*pvc,
            EventType::Normal,
            "VolumeResizeSuccessful",
            "Resize volume succeeded",
        )
        .await?;
    Ok(Action::await_change())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(phase: &str, storage: &str) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data", "namespace": "d"},
            "spec": {"volumeName": "pv1", "resources": {"requests": {"storage": storage}}},
            "status": {"phase": phase}}))
        .expect("claim")
    }

    fn volume(provisioner: &str, storage: &str) -> PersistentVolume {
        serde_json::from_value(json!({"metadata": {"name": "pv1",
                "annotations": {ANN_PROVISIONED_BY: provisioner}},
            "spec": {"capacity": {"storage": storage}}}))
        .expect("volume")
    }

    #[test]
    fn only_bound_local_path_volumes_smaller_than_the_request_grow() {
        let grown = grow_to(&claim("Bound", "2Mi"), &volume(PROVISIONER, "1Mi"));
        assert_eq!(grown, Quantity::parse("2Mi"));
        assert_eq!(
            grow_to(&claim("Bound", "1Mi"), &volume(PROVISIONER, "1Mi")),
            None
        );
        assert_eq!(
            grow_to(&claim("Bound", "1Mi"), &volume(PROVISIONER, "2Mi")),
            None
        );
        assert_eq!(
            grow_to(&claim("Pending", "2Mi"), &volume(PROVISIONER, "1Mi")),
            None
        );
        assert_eq!(
            grow_to(&claim("Bound", "2Mi"), &volume("other.io/csi", "1Mi")),
            None
        );
    }
}
