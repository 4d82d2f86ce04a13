//! The control plane that `up` and `server` both run: the API server on its store, the admin
//! kubeconfig for kubectl, and the controllers as clients of that API under the leader Lease.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::cli::ControlPlaneArgs;

/// A running API server and the kubeconfig written for it.
pub struct ControlPlane {
    pub api: apiserver::RunningApiServer,
    pub kubeconfig: PathBuf,
    /// The URL clients reach the API server at.
    pub server_url: String,
}

/// Starts the API server (its `pki/` in `state_dir`) and writes `<state_dir>/kubeconfig`.
pub async fn start(
    state_dir: &Path,
    args: &ControlPlaneArgs,
    node_api_token: String,
    cluster_listen: Option<SocketAddr>,
) -> anyhow::Result<ControlPlane> {
    let api = apiserver::start(apiserver::ApiServerConfig {
        listen: args.listen,
        state_dir: state_dir.to_path_buf(),
        store: args.store_spec(state_dir),
        etcd: args.etcd_options(),
        node_api_token: Some(node_api_token),
        cluster_listen,
        event_ttl: args.event_ttl,
        advertise: args.advertise_address,
    })
    .await
    .context("starting the API server")?;
    let server_url = format!("https://{}", client_addr(api.local_addr()));
    let kubeconfig = state_dir.join("kubeconfig");
    apiserver::write_kubeconfig(&kubeconfig, &server_url, api.ca_pem(), api.admin_token())
        .context("writing the kubeconfig")?;
    eprintln!("peapod: API server listening on {server_url}");
    eprintln!("peapod: export KUBECONFIG={}", kubeconfig.display());
    Ok(ControlPlane {
        api,
        kubeconfig,
        server_url,
    })
}

/// Runs the controllers against `client` under the leader Lease as `identity` until
/// `shutdown` turns true (then they release the Lease).
pub fn spawn_controllers(
    client: kube::Client,
    ca_pem: &str,
    identity: String,
    args: &ControlPlaneArgs,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let election = controllers::LeaderElection::new(
        controllers::DEFAULT_LEASE_NAMESPACE,
        controllers::DEFAULT_LEASE_NAME,
        identity,
    );
    let settings = controllers::Settings {
        root_ca: Some(ca_pem.to_string()),
        node_lifecycle: args.node_lifecycle.settings(),
    };
    tokio::spawn(controllers::run(
        client,
        settings,
        Some(election),
        stopped(shutdown),
    ))
}

/// Prints the command that joins another node, or why there is none.
pub async fn print_join_command(
    client: &kube::Client,
    server_url: &str,
    api: &apiserver::RunningApiServer,
    args: &ControlPlaneArgs,
) {
    match join_command(client, server_url, &api.pki_dir(), args.token_ttl).await {
        Ok(command) => eprintln!("peapod: join other nodes with:\n  {command}"),
        Err(e) => eprintln!("peapod: no join command: {e:#}"),
    }
}

/// kubeadm's join command: a new bootstrap token (its Secret created through the API) and
/// the hash that pins the cluster CA.
async fn join_command(
    client: &kube::Client,
    server_url: &str,
    pki_dir: &std::path::Path,
    ttl: std::time::Duration,
) -> anyhow::Result<String> {
    use apiserver::bootstrap_tokens::{BootstrapToken, SECRET_NAMESPACE};
    let hash = apiserver::ca_cert_hash(pki_dir).context("hashing the cluster CA")?;
    let token = BootstrapToken::generate();
    let expiration = if ttl.is_zero() {
        None
    } else {
        let ttl = jiff::SignedDuration::try_from(ttl).context("the token TTL")?;
        Some(jiff::Timestamp::now().checked_add(ttl)?)
    };
    let secret: kube::api::DynamicObject =
        serde_json::from_value(token.secret(expiration, "the join token printed by peapod up"))?;
    let resource = kube::api::ApiResource::from_gvk_with_plural(
        &kube::api::GroupVersionKind::gvk("", "v1", "Secret"),
        "secrets",
    );
    kube::Api::<kube::api::DynamicObject>::namespaced_with(
        client.clone(),
        SECRET_NAMESPACE,
        &resource,
    )
    .create(&kube::api::PostParams::default(), &secret)
    .await
    .context("creating the bootstrap token Secret")?;
    Ok(format!(
        "peapod join --server {server_url} --token {token} --discovery-token-ca-cert-hash {hash}"
    ))
}

/// Completes once `shutdown` turns true (or its sender is gone).
pub async fn stopped(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Clients must dial a concrete address even when the server listens on all interfaces.
fn client_addr(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}
