//! The node's stats sampler: one writer that reads every sandbox's cgroups and the node's
//! procfs figures on a timer (cAdvisor's housekeeping, every [`SAMPLE_INTERVAL`]), keeps the
//! latest [`Summary`] and the readings its CPU rates need, and many readers (the node API's
//! `/stats/summary` and `/metrics/*`) that take the latest summary without touching cgroupfs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use runtime::{PodSandboxStats, RuntimeError, RuntimeService};
use tokio::sync::watch;

use crate::build::{build, Observed, Rates};
use crate::proc::{read_node_usage, ProcError};
use crate::summary::Summary;

/// How often the node is sampled: the kubelet's cAdvisor housekeeping interval, so
/// `usageNanoCores` is the rate over about this window, as on a kubelet.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(10);

/// Why a sample could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error("listing the sandboxes' stats")]
    Runtime(#[source] RuntimeError),
    #[error("reading the node's figures")]
    Proc(#[source] ProcError),
}

/// Where the sandboxes' figures come from: the runtime (CRI `ListPodSandboxStats`), or a
/// fake in tests.
#[async_trait::async_trait]
pub trait SandboxStatsSource: Send + Sync + 'static {
    async fn sandbox_stats(&self) -> Result<Vec<PodSandboxStats>, RuntimeError>;
}

/// The runtime as the source of sandbox figures.
pub struct FromRuntime(pub Arc<dyn RuntimeService>);

#[async_trait::async_trait]
impl SandboxStatsSource for FromRuntime {
    async fn sandbox_stats(&self) -> Result<Vec<PodSandboxStats>, RuntimeError> {
        self.0.list_pod_sandbox_stats().await
    }
}

/// Samples the node and keeps the latest summary.
pub struct Collector {
    runtime: Arc<dyn SandboxStatsSource>,
    proc_root: PathBuf,
    node_name: String,
    rates: Mutex<Rates>,
    latest: RwLock<Option<Arc<Summary>>>,
}

impl Collector {
    /// A collector over `runtime`'s sandboxes and the procfs at `proc_root` (`/proc`).
    pub fn new(
        runtime: Arc<dyn SandboxStatsSource>,
        proc_root: PathBuf,
        node_name: String,
    ) -> Self {
        Self {
            runtime,
            proc_root,
            node_name,
            rates: Mutex::new(Rates::default()),
            latest: RwLock::new(None),
        }
    }

    /// Takes a sample now and makes it the latest.
    pub async fn sample(&self) -> Result<Arc<Summary>, StatsError> {
        let sandboxes = self
            .runtime
            .sandbox_stats()
            .await
            .map_err(StatsError::Runtime)?;
        let node = read_node_usage(&self.proc_root).map_err(StatsError::Proc)?;
        let observed = Observed {
            now: Timestamp::now(),
            node_name: &self.node_name,
            node,
            sandboxes: &sandboxes,
        };
        let summary = {
            let mut rates = self.rates.lock().unwrap_or_else(|e| e.into_inner());
            Arc::new(build(&mut rates, observed))
        };
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = Some(summary.clone());
        Ok(summary)
    }

    /// The latest sample, or a first one taken now.
    pub async fn summary(&self) -> Result<Arc<Summary>, StatsError> {
        let latest = self
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        match latest {
            Some(s) => Ok(s),
            None => self.sample().await,
        }
    }

    /// Samples every [`SAMPLE_INTERVAL`] until `shutdown` turns true.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.sample().await {
                tracing::warn!(error = %e, "sampling node stats");
            }
            tokio::select! {
                _ = tokio::time::sleep(SAMPLE_INTERVAL) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(Vec<PodSandboxStats>);

    #[async_trait::async_trait]
    impl SandboxStatsSource for Fixed {
        async fn sandbox_stats(&self) -> Result<Vec<PodSandboxStats>, RuntimeError> {
            Ok(self.0.clone())
        }
    }

    #[tokio::test]
    async fn the_latest_sample_is_kept_and_a_first_one_taken_on_demand() {
        let proc = tempfile::tempdir().expect("tempdir");
        std::fs::write(proc.path().join("stat"), "cpu  100 0 0 0\n").expect("write");
        std::fs::write(
            proc.path().join("meminfo"),
            "MemTotal: 10 kB\nMemFree: 4 kB\n",
        )
        .expect("write");
        let sandbox = PodSandboxStats {
            id: "s1".into(),
            config: runtime::PodSandboxConfig {
                name: "web".into(),
                namespace: "default".into(),
                uid: "u1".into(),
                ..Default::default()
            },
            created_at: Timestamp::UNIX_EPOCH,
            usage: Default::default(),
            containers: Vec::new(),
        };
        let c = Collector::new(
            Arc::new(Fixed(vec![sandbox])),
            proc.path().to_path_buf(),
            "n1".into(),
        );
        let first = c.summary().await.expect("summary");
        assert_eq!(first.node.node_name, "n1");
        assert_eq!(first.pods[0].pod_ref.name, "web");
        assert_eq!(
            first.node.cpu.map(|c| c.usage_core_nano_seconds),
            Some(1_000_000_000)
        );
        assert_eq!(
            first.node.memory.and_then(|m| m.usage_bytes),
            Some(6 * 1024)
        );
        // Readers get the same sample until the next one.
        assert!(Arc::ptr_eq(&first, &c.summary().await.expect("again")));
        std::fs::remove_file(proc.path().join("stat")).expect("rm");
        assert!(matches!(c.sample().await, Err(StatsError::Proc(_))));
    }
}
