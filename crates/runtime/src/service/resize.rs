//! In-place resize for `Runtime` (CRI `UpdateContainerResources` and
//! `UpdatePodSandboxResources`): new limits written to a running container's or a pod's
//! cgroup on cgroupfs, and kept in its record so that an agent restart reads them back.

use std::collections::BTreeMap;

use super::{blocking, write_err, Runtime};
use crate::records::{ContainerRecord, SandboxRecord};
use crate::{ContainerState, LinuxResources, RuntimeError};
use shim::protocol::{read_json, write_json_atomic};

/// What goes to cgroupfs for `r`: a limit `r` leaves out is lifted (`-1`, "no limit" on
/// both hierarchies), since a resize may drop a cpu limit the container had.
fn with_limits_lifted(r: &LinuxResources) -> LinuxResources {
    let mut out = r.clone();
    if out.cpu_quota_us.is_none() {
        out.cpu_quota_us = Some(-1);
        out.cpu_period_us = out.cpu_period_us.or(Some(100_000));
    }
    if out.memory_limit_bytes.is_none() {
        out.memory_limit_bytes = Some(-1);
    }
    out
}

impl Runtime {
    pub(super) async fn update_container(
        &self,
        id: &str,
        resources: &LinuxResources,
        annotations: &BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let sandbox_id = self.find_container(id)?;
        let status = self.read_status(&sandbox_id, id)?;
        if status.state != ContainerState::Running {
            return Err(RuntimeError::ContainerNotRunning { id: id.to_string() });
        }
        if let (Some(h), Some(pod_cgroup)) = (&self.cgroups, self.pod_cgroup(&sandbox_id)) {
            let cg = h.cgroup(&pod_cgroup.join(id));
            let lifted = with_limits_lifted(resources);
            blocking(move || cg.apply(&lifted))
                .await?
                .map_err(|source| RuntimeError::Cgroup {
                    id: id.to_string(),
                    source,
                })?;
        }
        let path = self.pod(&sandbox_id).container(id).config();
        let mut record: ContainerRecord = read_json(&path)
            .map_err(super::read_err(&path))?
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        record.config.resources = resources.clone();
        record
            .config
            .annotations
            .extend(annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
        write_json_atomic(&path, &record).map_err(write_err(&path))
    }

    pub(super) async fn update_sandbox(
        &self,
        id: &str,
        resources: &LinuxResources,
    ) -> Result<(), RuntimeError> {
        let mut record = self.sandbox_record(id)?;
        if let Some(h) = &self.cgroups {
            let cg = h.cgroup(&record.pod_cgroup);
            let lifted = with_limits_lifted(resources);
            blocking(move || cg.apply(&lifted))
                .await?
                .map_err(|source| RuntimeError::Cgroup {
                    id: id.to_string(),
                    source,
                })?;
        }
        record.config.resources = resources.clone();
        let path = self.pod(id).root().join("sandbox.json");
        write_json_atomic::<SandboxRecord>(&path, &record).map_err(write_err(&path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_limits_are_lifted() {
        let r = with_limits_lifted(&LinuxResources {
            cpu_shares: Some(512),
            ..Default::default()
        });
        assert_eq!(r.cpu_shares, Some(512));
        assert_eq!(r.cpu_quota_us, Some(-1));
        assert_eq!(r.cpu_period_us, Some(100_000));
        assert_eq!(r.memory_limit_bytes, Some(-1));
        let kept = with_limits_lifted(&LinuxResources {
            cpu_quota_us: Some(50_000),
            cpu_period_us: Some(100_000),
            memory_limit_bytes: Some(1 << 20),
            ..Default::default()
        });
        assert_eq!(kept.cpu_quota_us, Some(50_000));
        assert_eq!(kept.memory_limit_bytes, Some(1 << 20));
    }
}
