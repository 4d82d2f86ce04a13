//! The sandbox side of `Runtime`'s pod network: attaching a new sandbox (CNI ADD in the
//! namespace of its shim, then its hosts file and record get the addresses), releasing it
//! (DEL), and the status a sandbox's record and shim make, in which a sandbox is ready only
//! once its network is.

use std::io;

use super::{blocking, write_err, Runtime};
use crate::procs;
use crate::records::{hosts_file, SandboxRecord};
use crate::{PodSandboxConfig, PodSandboxStatus, RuntimeError, SandboxState};
use shim::protocol::write_json_atomic;

impl Runtime {
    /// Attaches the sandbox whose shim runs as `pid` to the pod network, unless it is on
    /// the host network (or there is no pod network), and records the addresses; the
    /// caller releases the sandbox on error.
    pub(super) async fn attach_network(
        &self,
        id: &str,
        config: &PodSandboxConfig,
        pid: u32,
    ) -> Result<(), RuntimeError> {
        if config.host_network || !self.network.enabled() {
            return Ok(());
        }
        let netns = self.config.proc_root.join(pid.to_string()).join("ns/net");
        let network = self.network.clone();
        let (sandbox, owned) = (id.to_string(), config.clone());
        let started = std::time::Instant::now();
        let ips = blocking(move || network.attach(&sandbox, &owned, &netns))
            .await?
            .map_err(|source| RuntimeError::SetupNetwork {
                id: id.to_string(),
                source: Box::new(source),
            })?;
        tracing::debug!(
            sandbox = %id,
            ips = ?ips,
            took_ms = started.elapsed().as_millis(),
            "CNI ADD done"
        );
        // kubelet's managed hosts file maps the pod's hostname to its IPs. Rewritten in
        // place, not write-then-rename: containers will bind-mount this very inode. Not
        // synced: only the live sandbox reads it (see `write_volatile`).
        let path = self.pod(id).hosts();
        let text = hosts_file(
            &config.hostname,
            config.domain.as_deref(),
            &ips,
            &config.host_aliases,
        );
        let write = || -> io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .truncate(true)
                .open(&path)?;
            f.write_all(text.as_bytes())
        };
        write().map_err(write_err(&path))?;
        let mut record = self.sandbox_record(id)?;
        record.ips = Some(ips);
        let path = self.pod(id).root().join("sandbox.json");
        write_json_atomic(&path, &record).map_err(write_err(&path))
    }

    /// CNI DEL for every attachment of the sandbox and drops its namespace pin; a no-op
    /// when it has none. A failed DEL keeps the record, so the next stop, remove or
    /// runtime start tries again.
    pub(super) async fn detach_network(&self, id: &str) -> Result<(), RuntimeError> {
        let network = self.network.clone();
        let sandbox = id.to_string();
        blocking(move || network.detach(&sandbox))
            .await?
            .map_err(|source| RuntimeError::TeardownNetwork {
                id: id.to_string(),
                source: Box::new(source),
            })
    }

    /// The sandbox as its record and its shim describe it: ready while the shim runs and
    /// its network is set up.
    pub(super) fn sandbox_status(&self, record: SandboxRecord) -> PodSandboxStatus {
        let pod = self.pod(&record.id);
        let shim = self
            .shim_pid(&pod)
            .filter(|p| procs::alive(&self.config.proc_root, p));
        let ready = shim.is_some() && record.ips.is_some();
        PodSandboxStatus {
            state: if ready {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            },
            pid: shim.map(|p| p.pid),
            netns_path: shim.map(|p| self.config.proc_root.join(p.pid.to_string()).join("ns/net")),
            ips: record.ips.unwrap_or_default(),
            id: record.id,
            config: record.config,
            created_at: record.created_at,
        }
    }
}
