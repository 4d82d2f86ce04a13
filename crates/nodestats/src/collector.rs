//! The node's stats sampler: one writer that reads every sandbox's cgroups and the node's
//! procfs figures on a timer (cAdvisor's housekeeping, every [`SAMPLE_INTERVAL`]), keeps the
//! latest [`Summary`] and the readings its CPU rates need, and many readers (the node API's
//! `/stats/summary` and `/metrics/*`) that take the latest summary without touching cgroupfs.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use runtime::{RuntimeError, RuntimeService};
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

/// Samples the node and keeps the latest summary.
pub struct Collector {
    runtime: Arc<dyn RuntimeService>,
    proc_root: PathBuf,
    node_name: String,
    rates: Mutex<Rates>,
    latest: RwLock<Option<Arc<Summary>>>,
}

impl Collector {
    /// A collector over `runtime`'s sandboxes and the procfs at `proc_root` (`/proc`).
    pub fn new(runtime: Arc<dyn RuntimeService>, proc_root: PathBuf, node_name: String) -> Self {
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
            .list_pod_sandbox_stats()
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
