//! Resource use of the running sandboxes for `Runtime` (CRI `ListPodSandboxStats`): each
//! ready sandbox's pod cgroup and its running containers' cgroups, read off cgroupfs in one
//! blocking task. Containers that exit meanwhile simply read as nothing known.

use std::path::PathBuf;

use super::{blocking, Runtime};
use crate::{ContainerState, ContainerStats, PodSandboxStats, RuntimeError, SandboxState};

impl Runtime {
    pub(super) async fn sandbox_stats(&self) -> Result<Vec<PodSandboxStats>, RuntimeError> {
        let Some(hierarchy) = self.cgroups.clone() else {
            return Ok(Vec::new());
        };
        // What to read: (sandbox, its pod cgroup, its running containers and their cgroups).
        let mut plan = Vec::new();
        for id in self.sandbox_ids()? {
            let Ok(record) = self.sandbox_record(&id) else {
                continue;
            };
            let pod_cgroup = record.pod_cgroup.clone();
            let status = self.sandbox_status(record);
            if status.state != SandboxState::Ready {
                continue;
            }
            let mut containers: Vec<(ContainerStats, PathBuf)> = Vec::new();
            for cid in self.container_ids(&id) {
                let Ok(c) = self.read_status(&id, &cid) else {
                    continue;
                };
                if c.state != ContainerState::Running {
                    continue;
                }
                let cgroup = pod_cgroup.join(&c.id);
                containers.push((
                    ContainerStats {
                        id: c.id,
                        name: c.config.name,
                        started_at: c.started_at.unwrap_or(c.created_at),
                        usage: Default::default(),
                    },
                    cgroup,
                ));
            }
            plan.push((status, pod_cgroup, containers));
        }
        blocking(move || {
            plan.into_iter()
                .map(|(status, pod_cgroup, containers)| PodSandboxStats {
                    usage: hierarchy.cgroup(&pod_cgroup).usage().unwrap_or_default(),
                    containers: containers
                        .into_iter()
                        .map(|(stats, cgroup)| ContainerStats {
                            usage: hierarchy.cgroup(&cgroup).usage().unwrap_or_default(),
                            ..stats
                        })
                        .collect(),
                    id: status.id,
                    config: status.config,
                    created_at: status.created_at,
                })
                .collect()
        })
        .await
    }
}
