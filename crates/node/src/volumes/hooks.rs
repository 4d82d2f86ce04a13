//! Where pod workers call the volume manager: kubelet's `WaitForAttachAndMount` before
//! anything of the pod starts, the periodic rewrite of API-data volumes, the container's
//! mounts at create time, and the release of everything when the pod is done.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::ContainerConfig;

use super::{sources, Objects, VolumeError};
use crate::containerspec::PodContext;
use crate::events::EventType;
use crate::podstatus::Waiting;
use crate::worker::{PodWorker, WorkerEnv};

/// A worker's view of its pod's volumes.
#[derive(Debug, Clone, Default)]
pub struct PodVolumeState {
    /// Volume name → host path, once every volume was set up.
    pub paths: Option<BTreeMap<String, PathBuf>>,
    /// When the API-data volumes were last written.
    pub last_sync: Option<Timestamp>,
}

fn pod_context(env: &WorkerEnv, pod: &Pod) -> PodContext {
    let host_network = pod
        .spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false);
    PodContext {
        node_name: env.node_name.clone(),
        host_ip: env.host_ip.clone(),
        pod_ip: if host_network {
            env.host_ip.clone()
        } else {
            String::new()
        },
        node_cpu: env.node_cpu,
        node_memory: env.node_memory,
    }
}

/// Reads the config maps and secrets the pod's volumes refer to.
async fn fetch(env: &WorkerEnv, pod: &Pod) -> Result<Objects, VolumeError> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let (maps, secrets) = sources::referenced(pod);
    let mut out = Objects::default();
    for name in maps {
        let v = env
            .api
            .get_config_map(&ns, &name)
            .await
            .map_err(|source| VolumeError::Fetch {
                kind: "configmap",
                name: name.clone(),
                source: Box::new(source),
            })?;
        out.config_maps.insert(name, v);
    }
    for name in secrets {
        let v = env
            .api
            .get_secret(&ns, &name)
            .await
            .map_err(|source| VolumeError::Fetch {
                kind: "secret",
                name: name.clone(),
                source: Box::new(source),
            })?;
        out.secrets.insert(name, v);
    }
    Ok(out)
}

fn elapsed(since: Timestamp, now: Timestamp) -> std::time::Duration {
    let ms = now.as_millisecond().saturating_sub(since.as_millisecond());
    std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl PodWorker {
    /// Sets the pod's volumes up (first call) or refreshes their API data (once per sync
    /// period). `true` once they are ready: containers may start. A failed first setup is a
    /// `FailedMount` warning and is retried on the next sync, as kubelet does.
    pub(crate) async fn ensure_volumes(&mut self, env: &WorkerEnv, pod: &Pod) -> bool {
        let now = env.clock.now();
        let ready = self.state.volumes.paths.is_some();
        if ready
            && self
                .state
                .volumes
                .last_sync
                .is_some_and(|t| elapsed(t, now) < env.volumes.sync_period())
        {
            return true;
        }
        let mut skipped = Vec::new();
        let result = match fetch(env, pod).await {
            Ok(objects) => env
                .volumes
                .setup(pod, &pod_context(env, pod), &objects, &mut skipped),
            Err(err) => Err(err),
        };
        self.state.volumes.last_sync = Some(now);
        match result {
            Ok(paths) => {
                if !ready {
                    for s in &skipped {
                        let msg = format!(
                            "projected volume {:?}: the {} source is not supported by this node and was skipped",
                            s.volume, s.source
                        );
                        env.events
                            .record(pod, None, EventType::Warning, "FailedMount", &msg, now)
                            .await;
                    }
                }
                self.state.volumes.paths = Some(paths);
                true
            }
            Err(err) if ready => {
                // kubelet keeps the last good content when a refresh fails.
                tracing::warn!(pod = ?pod.metadata.name, error = %err, "refreshing volumes failed");
                true
            }
            Err(err) => {
                env.events
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

    /// Fills `config.mounts` from the container's `volumeMounts`; a failure (missing volume,
    /// subPath outside its volume) is the container's `CreateContainerConfigError`.
    pub(crate) async fn apply_volume_mounts(
        &mut self,
        env: &WorkerEnv,
        pod: &Pod,
        container: &Container,
        config: &mut ContainerConfig,
    ) -> Result<(), ()> {
        let paths = self.state.volumes.paths.clone().unwrap_or_default();
        match env
            .volumes
            .container_mounts(pod, container, &paths, &config.env)
        {
            Ok(mounts) => {
                config.mounts.extend(mounts);
                Ok(())
            }
            Err(err) => {
                let now = env.clock.now();
                env.events
                    .record(
                        pod,
                        Some(&container.name),
                        EventType::Warning,
                        "Failed",
                        &format!("Error: {err}"),
                        now,
                    )
                    .await;
                self.state.waiting.insert(
                    container.name.clone(),
                    Waiting::new("CreateContainerConfigError", err.to_string()),
                );
                Err(())
            }
        }
    }

    /// Releases the pod's volumes once its containers are gone (idempotent).
    pub(crate) fn teardown_volumes(&mut self, env: &WorkerEnv, pod: &Pod) {
        let uid = pod.metadata.uid.as_deref().unwrap_or_default();
        if uid.is_empty() {
            return;
        }
        if let Err(errs) = env.volumes.teardown(uid) {
            for err in errs {
                tracing::warn!(pod_uid = %uid, error = %err, "releasing volumes failed");
            }
        }
        self.state.volumes = PodVolumeState::default();
    }
}
