//! Where the pod worker calls the volume manager: kubelet's `WaitForAttachAndMount` before
//! anything of the pod starts, the periodic rewrite of API-data volumes, the container's
//! mounts at create time, and the release of everything when the pod is done.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::ContainerConfig;

use super::deps::WorkerDeps;
use super::env::volume_context;
use super::state::PodVolumeState;
use podapi::EventType;
use volumes::VolumeError;

fn elapsed(since: Timestamp, now: Timestamp) -> std::time::Duration {
    let ms = now.as_millisecond().saturating_sub(since.as_millisecond());
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// What of a running pod its downward API files can show and may change: labels,
/// annotations and the containers' resources (a resize).
fn shown_fields(pod: &Pod) -> String {
    let resources: Vec<_> = pod
        .spec
        .iter()
        .flat_map(|s| &s.containers)
        .map(|c| &c.resources)
        .collect();
    let shown = (&pod.metadata.labels, &pod.metadata.annotations, resources);
    serde_json::to_string(&shown).unwrap_or_default()
}

/// Sets the pod's volumes up (first call) or refreshes their API data: once per sync
/// period, and at once when the pod's labels, annotations or resources changed (kubelet
/// rewrites them on every sync of the pod, an update's included). `true` once they are
/// ready: containers may start. A failed first setup is a `FailedMount` warning and is
/// retried on the next sync, as kubelet does.
pub async fn ensure_volumes(deps: &WorkerDeps, volumes: &mut PodVolumeState, pod: &Pod) -> bool {
    let now = deps.clock.now();
    let ready = volumes.paths.is_some();
    let shown = shown_fields(pod);
    if ready
        && volumes
            .last_sync
            .is_some_and(|t| elapsed(t, now) < deps.volumes.sync_period())
        && volumes.shown.as_ref() == Some(&shown)
    {
        return true;
    }
    let mut skipped = Vec::new();
    let ids = match deps.user_namespace(pod) {
        Ok(ids) => ids,
        Err(err) => {
            let msg = format!("Failed to create pod sandbox: {err}");
            deps.event(
                pod,
                None,
                EventType::Warning,
                "FailedCreatePodSandBox",
                &msg,
            )
            .await;
            return false;
        }
    };
    let result = match deps
        .volumes
        .fetch_objects(deps.api.as_ref(), pod, now)
        .await
    {
        Ok(objects) => {
            deps.volumes
                .setup(pod, &volume_context(deps, pod), &objects, &mut skipped, ids)
        }
        Err(err) => Err(err),
    };
    volumes.last_sync = Some(now);
    volumes.shown = Some(shown);
    match result {
        Ok(paths) => {
            if !ready {
                for s in &skipped {
                    let msg = format!(
                        "projected volume {:?}: the {} source is not supported by this node and was skipped",
                        s.volume, s.source
                    );
                    deps.events
                        .record(pod, None, EventType::Warning, "FailedMount", &msg, now)
                        .await;
                }
            }
            volumes.paths = Some(paths);
            true
        }
        Err(err) if ready => {
            // kubelet keeps the last good content when a refresh fails.
            tracing::warn!(pod = ?pod.metadata.name, error = %err, "refreshing volumes failed");
            true
        }
        Err(err) => {
            deps.events
                .record(
                    pod,
                    None,
                    EventType::Warning,
                    "FailedMount",
                    &err.to_string(),
                    now,
                )
                .await;
            false
        }
    }
}

/// Fills `config.mounts` from the container's `volumeMounts`, recursively read-only where
/// they ask and the sandbox's runtime `handler` can. A failure (missing volume, subPath
/// outside its volume, `recursiveReadOnly: Enabled` the handler cannot do) is for the caller
/// to report as the container's `CreateContainerConfigError`.
pub fn apply_volume_mounts(
    deps: &WorkerDeps,
    volumes: &PodVolumeState,
    pod: &Pod,
    container: &Container,
    handler: &str,
    config: &mut ContainerConfig,
) -> Result<(), VolumeError> {
    let paths = volumes.paths.clone().unwrap_or_default();
    let rro = deps.runtime.status().recursive_read_only_mounts(handler);
    let mounts = deps
        .volumes
        .container_mounts(pod, container, &paths, &config.env, rro)?;
    config.mounts.extend(mounts);
    Ok(())
}

/// Releases the pod's volumes once its containers are gone (idempotent).
pub fn teardown_volumes(deps: &WorkerDeps, volumes: &mut PodVolumeState, pod: &Pod) {
    let uid = pod.metadata.uid.as_deref().unwrap_or_default();
    if uid.is_empty() {
        return;
    }
    if let Err(errs) = deps.volumes.teardown(uid) {
        for err in errs {
            tracing::warn!(pod_uid = %uid, error = %err, "releasing volumes failed");
        }
    }
    // The pod's files are gone with its volumes: its ID range may go to another pod.
    if let Err(err) = deps.userns.release(uid) {
        tracing::warn!(pod_uid = %uid, error = %err, "releasing the user namespace range failed");
    }
    *volumes = PodVolumeState::default();
}
