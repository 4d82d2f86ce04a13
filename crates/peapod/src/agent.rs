//! `peapod agent`: the node agent alone, against any API server reached through a kubeconfig
//! (as `kubelet --kubeconfig` runs), with its own state dir, node name and node API. Static
//! pods from `--config`/`--static-pod-path` run even while that API server is unreachable.

use std::fs;

use anyhow::Context;

use crate::cli::{AgentArgs, NodeArgs};
use crate::process;
use crate::static_pods::static_pod_settings;
use crate::{node_agent, node_network};

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    run_node(&args.kubeconfig, args.node).await
}

/// The agent with the credential in `kubeconfig` (what `peapod join` also ends in).
pub async fn run_node(kubeconfig: &std::path::Path, args: NodeArgs) -> anyhow::Result<()> {
    let static_pods = static_pod_settings(&args.static_pods)?;
    let state_dir = args.state.state_dir;
    process::create_state_dir(&state_dir)?;
    let state_dir = fs::canonicalize(&state_dir)?;
    let _lock = process::lock_state_dir(&state_dir)?;
    process::write_pid_file(&state_dir)?;

    let node_name = match args.node_name {
        Some(n) => n,
        None => process::hostname()?,
    };
    // The node API always takes a token: the given one (the API server's node token), or
    // one made for this state dir on first start, for the API server's operator to copy.
    let node_api_token = match &args.node_api_token_file {
        Some(f) => fs::read_to_string(f)
            .with_context(|| format!("reading {}", f.display()))?
            .trim()
            .to_string(),
        None => crate::up::read_or_create_secret(&state_dir.join("node-api-token"))?,
    };
    anyhow::ensure!(
        !node_api_token.is_empty(),
        "the node API token file is empty"
    );
    // Building the client does not dial: the agent starts (and runs its static pods) with
    // the API server down.
    let client = process::kube_client(kubeconfig).await?;
    let network = args.network.config();
    let pod_cidr = network.pod_cidr.clone();
    let (runtime, node_metrics) = node_agent::open_runtime(&state_dir, network, &static_pods)?;

    let advertise_ip = node_agent::advertise_ip(args.node_api_listen);
    let node_tls = match (&args.tls_cert_file, &args.tls_private_key_file) {
        (Some(cert), Some(key)) => (
            fs::read_to_string(cert).with_context(|| format!("reading {}", cert.display()))?,
            fs::read_to_string(key).with_context(|| format!("reading {}", key.display()))?,
        ),
        _ => {
            eprintln!(
                "peapod: the node API serves a self-signed certificate; an API server that \
                 verifies node certificates (peapod's does) will not reach it for logs, exec \
                 or port-forward: give --tls-cert-file/--tls-private-key-file from \
                 `peapod node-cert`"
            );
            self_signed_cert(&[
                advertise_ip.to_string(),
                node_name.clone(),
                "localhost".to_string(),
            ])?
        }
    };

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let mut network_tasks = vec![node_network::start_pod_network(
        client.clone(),
        &args.network,
        &node_name,
        pod_cidr,
        shutdown_rx.clone(),
    )];
    if args.proxy {
        network_tasks.extend(node_network::start_services(
            client.clone(),
            shutdown_rx.clone(),
        ));
    }
    let agent = node_agent::spawn(
        &client,
        runtime,
        node_metrics,
        node_agent::NodeIdentity {
            name: node_name,
            state_dir: state_dir.clone(),
            api_listen: args.node_api_listen,
            api_tls: node_tls,
            api_token: node_api_token,
        },
        static_pods,
        &args.static_pods,
        shutdown_rx,
    );
    eprintln!(
        "peapod: node agent running (state dir {})",
        state_dir.display()
    );

    let result = agent.until_signal(&shutdown_tx).await;
    // The network tasks remove their nftables tables (and the DNS its address) on the way
    // out.
    let _ = shutdown_tx.send(true);
    for t in network_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    let _ = fs::remove_file(state_dir.join("peapod.pid"));
    result
}

/// A self-signed serving certificate for the node API when none is given (as a kubelet
/// without `--tls-cert-file` self-signs); API servers that verify node certificates refuse it.
fn self_signed_cert(sans: &[String]) -> anyhow::Result<(String, String)> {
    let key = rcgen::generate_simple_self_signed(sans.to_vec())
        .context("generating the node API certificate")?;
    Ok((key.cert.pem(), key.signing_key.serialize_pem()))
}

/// `peapod node-cert`: a node API serving certificate signed by the cluster CA of a
/// `peapod up` state dir, for `peapod agent --tls-cert-file/--tls-private-key-file`.
pub fn node_cert(args: crate::cli::NodeCertArgs) -> anyhow::Result<()> {
    let pki = args.state.state_dir.join("pki");
    let (cert, key) = apiserver::issue_serving_cert(&pki, &args.san)
        .with_context(|| format!("issuing a certificate from {}", pki.display()))?;
    write_with_mode(&args.cert, &cert, 0o644)?;
    write_with_mode(&args.key, &key, 0o600)?;
    Ok(())
}

fn write_with_mode(path: &std::path::Path, text: &str, mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(text.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}
