//! `peapod agent`: the node agent alone, against any API server reached through a kubeconfig
//! (as `kubelet --kubeconfig` runs), with its own state dir, node name and node API. Static
//! pods from `--config`/`--static-pod-path` run even while that API server is unreachable.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use anyhow::Context;

use crate::cli::AgentArgs;
use crate::process;
use crate::static_pods::static_pod_settings;

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let static_pods = static_pod_settings(&args.static_pods)?;
    let state_dir = args.state.state_dir;
    fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    let state_dir = fs::canonicalize(&state_dir)?;
    let _lock = process::lock_state_dir(&state_dir)?;
    process::write_pid_file(&state_dir)?;

    let node_name = match args.node_name {
        Some(n) => n,
        None => process::hostname()?,
    };
    let node_api_token = match &args.node_api_token_file {
        Some(f) => Some(
            fs::read_to_string(f)
                .with_context(|| format!("reading {}", f.display()))?
                .trim()
                .to_string(),
        )
        .filter(|t| !t.is_empty()),
        None => None,
    };
    // Building the client does not dial: the agent starts (and runs its static pods) with
    // the API server down.
    let client = process::kube_client(&args.kubeconfig).await?;
    // The runtime observes its phases of a pod start into the agent's metrics.
    let node_metrics = node::NodeMetrics::new();
    let runtime = runtime::Runtime::new(runtime::RuntimeConfig {
        network: Some(args.network.config()),
        phases: Some(node_metrics.phases.clone()),
        container_logs: static_pods.container_logs,
        ..runtime::RuntimeConfig::new(
            state_dir.clone(),
            std::env::current_exe().context("locating the peapod binary for the shim")?,
        )
    })
    .context("opening the runtime")?;

    let advertise_ip = match args.node_api_listen.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let node_tls = self_signed_cert(&[
        advertise_ip.to_string(),
        node_name.clone(),
        "localhost".to_string(),
    ])?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(node::run(
        client,
        Arc::new(runtime),
        node::AgentConfig {
            node_name,
            state_dir: state_dir.clone(),
            node_api_listen: args.node_api_listen,
            node_api_advertise_ip: advertise_ip,
            node_api_tls: node_tls,
            node_api_token,
            static_pod_path: static_pods.path,
            file_check_frequency: static_pods.file_check_frequency,
            eviction_period: None,
            metrics: node_metrics,
        },
        shutdown_rx,
    ));
    eprintln!(
        "peapod: node agent running (state dir {})",
        state_dir.display()
    );

    let result = tokio::select! {
        r = agent => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(anyhow::Error::new(e).context("node agent failed")),
            Err(e) => Err(anyhow::anyhow!("node agent task: {e}")),
        },
        _ = process::shutdown_signal() => {
            eprintln!("peapod: shutting down (pods keep running; `peapod reset` stops them)");
            let _ = shutdown_tx.send(true);
            Ok(())
        }
    };
    let _ = fs::remove_file(state_dir.join("peapod.pid"));
    result
}

/// A self-signed serving certificate for the node API. No cluster CA is at hand here (as
/// with a kubelet without `--tls-cert-file`, which self-signs too); kube-apiserver does not
/// verify kubelet certificates unless given a kubelet CA.
fn self_signed_cert(sans: &[String]) -> anyhow::Result<(String, String)> {
    let key = rcgen::generate_simple_self_signed(sans.to_vec())
        .context("generating the node API certificate")?;
    Ok((key.cert.pem(), key.signing_key.serialize_pem()))
}
