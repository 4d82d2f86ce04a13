//! peapod's node-local service proxy (kube-proxy's job): it watches Services and
//! EndpointSlices through the Kubernetes API and programs the node so that traffic to a
//! `ClusterIP:port` or a `NodePort` reaches a ready endpoint.
//!
//! Why nftables rather than iptables: the whole ruleset lives in one `ip peapod` table that
//! is replaced in a single atomic `nft -f` transaction (iptables-restore can only swap whole
//! tables shared with everything else on the host, or edit rule by rule), random balancing
//! over N endpoints is one `numgen … vmap` rule instead of N chained `statistic`
//! probabilities, nothing else on the node is touched (no shared `nat` table chains to hook
//! into and unhook), and removing peapod's networking is deleting one table. Debian 12 ships
//! `nft`, and kube-proxy itself made nftables its new mode (GA in v1.33). The rule text is
//! produced by the pure [`rules`] module.

pub mod rules;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::{reflector, watcher, WatchStreamExt};
use kube::Api;

/// How `peapod up` configures the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The nftables table (`ip` family) the proxy owns entirely.
    pub table: String,
    /// The cluster's pod network: traffic to a Service from outside it is masqueraded
    /// (kube-proxy's `--cluster-cidr`).
    pub cluster_cidr: String,
    /// The `nft` binary.
    pub nft: PathBuf,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            table: "peapod".into(),
            cluster_cidr: "10.244.0.0/16".into(),
            nft: PathBuf::from("nft"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("running {nft}")]
    Spawn {
        nft: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("nft -f rejected the ruleset: {stderr}")]
    Nft { stderr: String },
}

/// Loads `script` with `nft -f -` (one atomic transaction).
pub fn apply(nft: &std::path::Path, script: &str) -> Result<(), ProxyError> {
    let spawn_err = |source| ProxyError::Spawn {
        nft: nft.to_path_buf(),
        source,
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(spawn_err)?;
    }
    let out = child.wait_with_output().map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ProxyError::Nft {
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Removes everything the proxy added (shutdown, `peapod reset`, tests).
pub fn cleanup(config: &ProxyConfig) -> Result<(), ProxyError> {
    apply(&config.nft, &rules::teardown(&config.table))
}

/// How long a burst of changes may settle before the ruleset is rebuilt.
const SETTLE: Duration = Duration::from_millis(100);
/// Rebuild at least this often.
const RESYNC: Duration = Duration::from_secs(10);
/// Retry delay after nft failed.
const RETRY: Duration = Duration::from_secs(2);

/// Runs the proxy until `shutdown` turns true, then removes its table.
pub async fn run(
    client: kube::Client,
    config: ProxyConfig,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<(), ProxyError> {
    let changed = Arc::new(tokio::sync::Notify::new());
    let (services, svc_writer) = reflector::store::<Service>();
    let (slices, slice_writer) = reflector::store::<EndpointSlice>();
    let svc_task = tokio::spawn(drain(
        reflector(
            svc_writer,
            // managedFields are never read here: not cached.
            watcher(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            )
            .modify(|s| s.metadata.managed_fields = None),
        )
        .default_backoff()
        .touched_objects()
        .boxed(),
        changed.clone(),
    ));
    let slice_task = tokio::spawn(drain(
        reflector(
            slice_writer,
            watcher(
                Api::<EndpointSlice>::all(client),
                watcher::Config::default(),
            )
            .modify(|s| s.metadata.managed_fields = None),
        )
        .default_backoff()
        .touched_objects()
        .boxed(),
        changed.clone(),
    ));
    let mut last_applied: Option<String> = None;
    let mut ready = false;
    loop {
        if *shutdown.borrow() {
            break;
        }
        if !ready {
            // Program nothing until both caches hold the full state: a partial view would
            // drop working Services for a moment.
            tokio::select! {
                r = futures::future::join(services.wait_until_ready(), slices.wait_until_ready()) => {
                    ready = r.0.is_ok() && r.1.is_ok();
                    if !ready { break; }
                }
                _ = shutdown.changed() => continue,
            }
        }
        let svcs: Vec<Service> = services.state().iter().map(|s| (**s).clone()).collect();
        let sls: Vec<EndpointSlice> = slices.state().iter().map(|s| (**s).clone()).collect();
        let script = rules::ruleset(
            &config.table,
            &config.cluster_cidr,
            &rules::service_ports(&svcs, &sls),
        );
        let mut wait = None;
        if last_applied.as_deref() != Some(script.as_str()) {
            let nft = config.nft.clone();
            let text = script.clone();
            let res = tokio::task::spawn_blocking(move || apply(&nft, &text)).await;
            match res {
                Ok(Ok(())) => {
                    tracing::debug!(table = %config.table, "service rules applied");
                    last_applied = Some(script);
                }
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "applying service rules failed; retrying");
                    wait = Some(RETRY);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "nft task failed; retrying");
                    wait = Some(RETRY);
                }
            }
        }
        tokio::select! {
            _ = changed.notified() => tokio::time::sleep(SETTLE).await,
            // A relist that dropped objects notifies nothing, and someone may have flushed
            // the table (another peapod's reset): a periodic forced re-apply covers both.
            _ = tokio::time::sleep(wait.unwrap_or(RESYNC)) => last_applied = None,
            _ = shutdown.changed() => {}
        }
    }
    svc_task.abort();
    slice_task.abort();
    let cfg = config.clone();
    match tokio::task::spawn_blocking(move || cleanup(&cfg)).await {
        Ok(r) => r,
        Err(_) => Ok(()),
    }
}

/// Pulls a watch stream (which feeds its reflector) and signals every change.
async fn drain<T>(
    mut stream: futures::stream::BoxStream<'static, Result<T, watcher::Error>>,
    changed: Arc<tokio::sync::Notify>,
) {
    while let Some(ev) = stream.next().await {
        match ev {
            Ok(_) => changed.notify_one(),
            Err(e) => tracing::debug!(error = %e, "proxy watch error; retrying"),
        }
    }
}
