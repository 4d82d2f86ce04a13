//! The node's half of the local-path provisioner: the controller decides and the node does
//! the filesystem work, since only the node can reach its directories (the controller may
//! run in another process or on another machine). A provisioned volume carries the
//! `peapod.io/local-path-directory` finalizer; once it is being deleted and no longer bound,
//! the node it lives on removes its directory (only when the reclaim policy is `Delete`: a
//! retained volume's data stays when its object goes) and then the finalizer, which lets the
//! API server remove the volume. Failed removals are tried again every `RETRY`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::ResourceExt;
use tokio::sync::watch;

/// The finalizer the provisioner puts on the volumes it makes.
pub const FINALIZER: &str = "peapod.io/local-path-directory";
/// How long a volume whose directory could not be removed waits for the next attempt.
const RETRY: Duration = Duration::from_secs(30);

/// What the node does about one volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Not ours, not being deleted, or still bound: nothing.
    Skip,
    /// Remove this directory, then the finalizer.
    RemoveDirectory(PathBuf),
    /// Keep the data; remove only the finalizer.
    Release,
}

/// The decision for `pv` on node `node` with local-path root `root` (pure).
pub fn step(pv: &PersistentVolume, node: &str, root: &Path) -> Step {
    let ours = pv.finalizers().iter().any(|f| f == FINALIZER);
    let Some(spec) = pv.spec.as_ref() else {
        return Step::Skip;
    };
    let here = spec
        .node_affinity
        .as_ref()
        .and_then(|a| a.required.as_ref())
        .is_some_and(|r| {
            r.node_selector_terms.iter().any(|t| {
                t.match_fields.iter().flatten().any(|f| {
                    f.key == "metadata.name"
                        && f.operator == "In"
                        && f.values.iter().flatten().any(|v| v == node)
                })
            })
        });
    let Some(path) = spec.host_path.as_ref().map(|h| PathBuf::from(&h.path)) else {
        return Step::Skip;
    };
    let bound = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if !ours
        || !here
        || pv.metadata.deletion_timestamp.is_none()
        || bound
        || !volumes::localpath::is_volume_dir(root, &path)
    {
        return Step::Skip;
    }
    match spec.persistent_volume_reclaim_policy.as_deref() {
        Some("Delete") => Step::RemoveDirectory(path),
        _ => Step::Release,
    }
}

/// Watches volumes and reclaims this node's local-path directories until shutdown.
pub async fn run(
    client: kube::Client,
    node: String,
    root: PathBuf,
    mut shutdown: watch::Receiver<bool>,
) {
    let api: Api<PersistentVolume> = Api::all(client);
    let stream = watcher(api.clone(), watcher::Config::default())
        .default_backoff()
        .applied_objects();
    futures::pin_mut!(stream);
    let mut failed: BTreeMap<String, PersistentVolume> = BTreeMap::new();
    loop {
        tokio::select! {
            event = stream.next() => match event {
                Some(Ok(pv)) => {
                    failed.remove(&pv.name_any());
                    if !reclaim(&api, &pv, &node, &root).await {
                        failed.insert(pv.name_any(), pv);
                    }
                }
                Some(Err(err)) => tracing::warn!(error = %err, "volume watch failed"),
                None => return,
            },
            _ = tokio::time::sleep(RETRY), if !failed.is_empty() => {
                for (name, pv) in std::mem::take(&mut failed) {
                    if !reclaim(&api, &pv, &node, &root).await {
                        failed.insert(name, pv);
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

/// Carries out [`step`] for one volume; `false` when it should be tried again.
async fn reclaim(
    api: &Api<PersistentVolume>,
    pv: &PersistentVolume,
    node: &str,
    root: &Path,
) -> bool {
    let name = pv.name_any();
    match step(pv, node, root) {
        Step::Skip => return true,
        Step::RemoveDirectory(path) => {
            if let Err(err) = volumes::localpath::remove_volume_dir(root, &path) {
                tracing::warn!(volume = %name, error = %err, "removing a local-path volume's directory failed");
                return false;
            }
            tracing::info!(volume = %name, path = %path.display(), "removed a reclaimed local-path volume");
        }
        Step::Release => {}
    }
    let rest: Vec<&String> = pv.finalizers().iter().filter(|f| *f != FINALIZER).collect();
    // The resourceVersion makes this a compare-and-swap: other finalizers are never lost.
    let patch = serde_json::json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": pv.metadata.resource_version,
    }});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => true,
        Err(kube::Error::Api(s)) if s.is_not_found() => true,
        // A newer version of the volume arrives through the watch.
        Err(kube::Error::Api(s)) if s.is_conflict() => true,
        Err(err) => {
            tracing::warn!(volume = %name, error = %err, "removing the local-path finalizer failed");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pv(node: &str, phase: &str, policy: &str, deleting: bool) -> PersistentVolume {
        let mut v = json!({"metadata": {"name": "pvc-1", "finalizers": [FINALIZER]},
            "spec": {"persistentVolumeReclaimPolicy": policy,
                     "hostPath": {"path": "/state/local-path/pvc-1_ns_data"},
                     "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchFields": [
                        {"key": "metadata.name", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": phase}});
        if deleting {
            v["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        serde_json::from_value(v).expect("pv")
    }

    #[test]
    fn only_this_nodes_unbound_deleting_volumes() {
        let root = Path::new("/state/local-path");
        let dir = PathBuf::from("/state/local-path/pvc-1_ns_data");
        assert_eq!(
            step(&pv("n1", "Released", "Delete", true), "n1", root),
            Step::RemoveDirectory(dir)
        );
        assert_eq!(
            step(&pv("n1", "Released", "Retain", true), "n1", root),
            Step::Release
        );
        assert_eq!(
            step(&pv("n1", "Bound", "Delete", true), "n1", root),
            Step::Skip
        );
        assert_eq!(
            step(&pv("n1", "Released", "Delete", false), "n1", root),
            Step::Skip
        );
        assert_eq!(
            step(&pv("n2", "Released", "Delete", true), "n1", root),
            Step::Skip
        );
        assert_eq!(
            step(
                &pv("n1", "Released", "Delete", true),
                "n1",
                Path::new("/elsewhere")
            ),
            Step::Skip
        );
        let mut foreign = pv("n1", "Released", "Delete", true);
        foreign.metadata.finalizers = None;
        assert_eq!(step(&foreign, "n1", root), Step::Skip);
    }
}
