//! `peapod up`: API server + store + node agent in one process (the embedded default).

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;

use crate::cli::UpArgs;
use crate::{control_plane, node_agent, node_network, process};

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let state_dir = args.state.state_dir;
    process::create_state_dir(&state_dir)?;
    let state_dir = fs::canonicalize(&state_dir)?;
    let _lock = process::lock_state_dir(&state_dir)?;
    process::write_pid_file(&state_dir)?;

    let static_pods = crate::static_pods::static_pod_settings(&args.static_pods)?;
    let node_name = match args.node_name {
        Some(n) => n,
        None => process::hostname()?,
    };
    let node_api_token = read_or_create_secret(&state_dir.join("node-api-token"))?;

    let control_plane::ControlPlane {
        api,
        kubeconfig: kubeconfig_path,
        server_url,
    } = control_plane::start(
        &state_dir,
        &args.control_plane,
        node_api_token.clone(),
        Some(apiserver::KUBERNETES_SERVICE_ADDR),
    )
    .await?;

    let client = process::kube_client(&kubeconfig_path).await?;
    control_plane::print_join_command(&client, &server_url, &api, &args.control_plane).await;
    let network = args.network.config();
    let pod_cidr = network.pod_cidr.clone();
    let (runtime, node_metrics) = node_agent::open_runtime(&state_dir, network, &static_pods)?;

    let advertise_ip = node_agent::advertise_ip(args.node_api_listen);
    let node_tls = apiserver::issue_serving_cert(
        &api.pki_dir(),
        &[
            advertise_ip.to_string(),
            node_name.clone(),
            "localhost".to_string(),
        ],
    )
    .context("issuing the node API certificate")?;

    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    // The controllers (scheduler, namespaces, endpoints) are clients of our own API, as
    // kube-controller-manager is of kube-apiserver. They hold the leader Lease under an
    // identity that is stable across restarts: only one `peapod up` runs per state dir (the
    // lock above), so after a crash the new process renews its predecessor's Lease at once
    // instead of waiting for it to expire, while a `peapod controllers` started beside us
    // still waits its turn.
    let controllers = (!args.control_plane.no_controllers).then(|| {
        control_plane::spawn_controllers(
            client.clone(),
            &api,
            format!("{node_name}_peapod-up"),
            &args.control_plane,
            shutdown_rx.clone(),
        )
    });
    // The node-local service proxy and cluster DNS (kube-proxy's and CoreDNS's jobs), plain
    // API clients like the agent.
    let mut service_tasks = Vec::from(node_network::start_services(
        client.clone(),
        shutdown_rx.clone(),
    ));
    service_tasks.push(node_network::start_pod_network(
        client.clone(),
        &args.network,
        &node_name,
        pod_cidr,
        shutdown_rx.clone(),
    ));
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

    let result = agent.until_signal(&shutdown_tx).await;
    // The proxy and the pod network remove their nftables tables and the DNS its address
    // on the way out.
    let _ = shutdown_tx.send(true);
    for t in service_tasks {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), t).await;
    }
    // The controllers release their Lease through the API, so they stop before it does.
    if let Some(c) = controllers {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c).await;
    }
    api.shutdown().await;
    let _ = fs::remove_file(state_dir.join("peapod.pid"));
    result
}

/// A random hex secret kept in a 0600 file, created on first start and reused after.
pub(crate) fn read_or_create_secret(path: &PathBuf) -> anyhow::Result<String> {
    if let Ok(s) = fs::read_to_string(path) {
        let s = s.trim().to_string();
        if !s.is_empty() {
            return Ok(s);
        }
    }
    let mut bytes = [0u8; 32];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .context("reading /dev/urandom")?;
    let secret: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let tmp = path.with_extension("tmp");
    let mut f = fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(secret.as_bytes())?;
    f.sync_all()?;
    fs::rename(&tmp, path)?;
    Ok(secret)
}
