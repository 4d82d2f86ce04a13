//! `peapod server`: the API server and the controllers without a node agent, as a control
//! plane host runs kube-apiserver and kube-controller-manager. Several of them on one etcd
//! serve one cluster when they share the first one's `pki/` (CA, service-account keys, admin
//! token) and `node-api-token`; their controllers take turns through the leader Lease.

use std::fs;

use crate::cli::ServerArgs;
use crate::{control_plane, process, up};

pub async fn run(args: ServerArgs) -> anyhow::Result<()> {
    let state_dir = args.state.state_dir;
    process::create_state_dir(&state_dir)?;
    let state_dir = fs::canonicalize(&state_dir)?;
    let _lock = process::lock_state_dir(&state_dir)?;
    process::write_pid_file(&state_dir)?;
    let node_api_token = up::read_or_create_secret(&state_dir.join("node-api-token"))?;
    // No in-cluster address: it is one per host, and pods reach this server through the
    // `kubernetes` Service's endpoints instead.
    let control_plane::ControlPlane {
        api,
        kubeconfig,
        server_url,
    } = control_plane::start(&state_dir, &args.control_plane, node_api_token, None).await?;
    let client = process::kube_client(&kubeconfig).await?;
    control_plane::print_join_command(&client, &server_url, &api, &args.control_plane).await;
    let (shutdown_tx, shutdown_rx) = tokio::sync::watch::channel(false);
    let controllers = if args.control_plane.no_controllers {
        None
    } else {
        // Several servers may run on one host: each needs its own identity in the Lease.
        let identity =
            controllers::unique_identity(&format!("{}_peapod-server", process::hostname()?));
        Some(control_plane::spawn_controllers(
            client,
            &api,
            identity,
            &args.control_plane,
            shutdown_rx,
        ))
    };
    process::shutdown_signal().await;
    eprintln!("peapod: shutting down the server");
    let _ = shutdown_tx.send(true);
    // The controllers release their Lease through the API, so they stop before it does.
    if let Some(c) = controllers {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), c).await;
    }
    api.shutdown().await;
    let _ = fs::remove_file(state_dir.join("peapod.pid"));
    Ok(())
}
