//! What every long-running command (`up`, `agent`, `controllers`) needs from the host: the
//! state-dir lock and pid file, the hostname, an API client from a kubeconfig, the node's QoS
//! cgroups, and the shutdown signal.

use std::fs;
use std::path::Path;

use anyhow::Context;

pub async fn kube_client(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    client(kube_config(kubeconfig).await?)
}

/// How often the API client pings its connection, and how long the answer may take.
const H2_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(30);
const H2_KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// What one stream, and the whole connection, may hold unread.
const H2_STREAM_WINDOW: u32 = 4 << 20;
const H2_CONNECTION_WINDOW: u32 = 1 << 30;

/// An API client that speaks HTTP/2 when the server offers it, as client-go does: all the
/// process's requests and watches share one connection. kube's own client offers only
/// HTTP/1.1, where every watch holds a TLS connection of its own and its buffers on both
/// ends: over a hundred connections for `peapod up`'s components at idle.
pub fn client(config: kube::Config) -> anyhow::Result<kube::Client> {
    use kube::client::ConfigExt;
    let tls = config
        .rustls_client_config()
        .context("the API client's TLS settings")?;
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(config.connect_timeout);
    http.set_nodelay(true);
    let mut https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    if let Some(name) = &config.tls_server_name {
        let name = rustls_pki_types::ServerName::try_from(name.clone())
            .with_context(|| format!("the TLS server name {name:?}"))?;
        https = https.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name));
    }
    let https = https.enable_all_versions().wrap_connector(http);
    // One connection carries everything, so a dead peer must be noticed: pings while idle
    // too, as the API server pings its clients. And one watch whose reader lags must not
    // stall the others: each stream may hold 4 MiB unread, and the connection as a whole
    // is not limited (Go's HTTP/2 transport, which client-go uses, has the same windows).
    let transport =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .http2_initial_connection_window_size(H2_CONNECTION_WINDOW)
            .http2_keep_alive_interval(H2_KEEP_ALIVE)
            .http2_keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
            .http2_keep_alive_while_idle(true)
            .build(https);
    // The layers of kube's own client: the server's address, transient failures (429,
    // 503, 504) retried, credentials, the kubeconfig's extra headers.
    let retry = config
        .default_retry
        .then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = tower::ServiceBuilder::new()
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(
            config
                .auth_layer()
                .context("the API client's credentials")?,
        )
        .layer(
            config
                .extra_headers_layer()
                .context("the API client's headers")?,
        )
        .map_err(tower::BoxError::from)
        .service(transport);
    Ok(kube::Client::new(service, config.default_namespace))
}

/// The client configuration a kubeconfig describes.
pub async fn kube_config(kubeconfig: &Path) -> anyhow::Result<kube::Config> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading {}", kubeconfig.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .context("loading the kubeconfig")
}

/// Creates the state dir, owner-only (it holds the store, keys, tokens and pods' Secret
/// volumes); an existing one gets that mode too, and so do the secret files an older
/// version may have left with the umask's mode.
pub fn create_state_dir(state_dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    fs::set_permissions(state_dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("securing state dir {}", state_dir.display()))?;
    for name in ["kubeconfig", "node-api-token"] {
        let path = state_dir.join(name);
        match fs::set_permissions(&path, fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("securing {}", path.display())),
        }
    }
    Ok(())
}

/// One `peapod up` per state dir: a second one would fight over pods and the store.
pub fn lock_state_dir(state_dir: &Path) -> anyhow::Result<nix::fcntl::Flock<fs::File>> {
    let path = state_dir.join("peapod.lock");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        anyhow::anyhow!(
            "another peapod is running with state dir {} ({e})",
            state_dir.display()
        )
    })
}

pub fn write_pid_file(state_dir: &Path) -> anyhow::Result<()> {
    let tmp = state_dir.join("peapod.pid.tmp");
    fs::write(&tmp, format!("{}\n", std::process::id()))?;
    fs::rename(&tmp, state_dir.join("peapod.pid"))?;
    Ok(())
}

pub fn hostname() -> anyhow::Result<String> {
    let name = nix::unistd::gethostname().context("reading the hostname")?;
    Ok(name.to_string_lossy().to_lowercase())
}

pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// The node allocatable cgroup and QoS tiers below the runtime's cgroup parent
/// (`peapod/kubepods`), or `None` (with a warning) when the host has no cgroups.
pub fn pod_cgroups(config: &runtime::RuntimeConfig) -> Option<podcgroups::QosCgroups> {
    match podcgroups::QosCgroups::detect(&config.cgroup_root, &config.cgroup_parent) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("peapod: no QoS cgroups: {e}");
            None
        }
    }
}
