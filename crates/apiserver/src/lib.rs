//! peapod's Kubernetes API server: the REST API that stock `kubectl` and client libraries
//! (the node agent's `kube` client) use, served over TLS with a bearer token, backed by the
//! embedded store or etcd. Controllers (scheduler, namespaces, endpoints) are API clients of their own
//! (the `controllers` crate).
//!
//! The binary calls [`start`]; everything else is internal.

mod admin;
mod admission;
mod bootstrap;
pub mod bootstrap_tokens;
mod cluster_address;
mod containers;
mod default_tolerations;
mod edge;
mod endpoint_reconciler;
mod error;
mod escalation;
mod eviction;
mod hooks;
mod http;
mod logs;
mod managed_fields;
mod names;
mod objects;
mod paging;
use cluster_pki as pki;
mod proxy;
mod request;
mod request_metrics;
mod resource_metrics;
mod reviews;
mod scale;
mod serviceaccounts;
mod state;
mod streaming;
mod token_reviews;
mod watch;

#[cfg(test)]
mod authz_tests;
#[cfg(test)]
mod deletion_tests;
#[cfg(test)]
mod ephemeral_tests;
#[cfg(test)]
mod eviction_tests;
#[cfg(test)]
mod http_tests;

pub use edge::{check_create, parse_request};
pub use error::ApiError;
pub use pki::PkiError;
pub use proxy::{NodeClientError, ProxyError};
pub use store::StoreSpec;
pub use store_etcd::{EtcdOptions, TlsFiles as EtcdTlsFiles, DEFAULT_COMPACTION_INTERVAL};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

pub struct ApiServerConfig {
    /// Address to listen on; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// `pki/` lives here.
    pub state_dir: PathBuf,
    /// The store backend to open (see [`StoreSpec::default_in`]).
    pub store: StoreSpec,
    /// Client TLS and compaction of an etcd store (unused by the embedded one).
    pub etcd: EtcdOptions,
    /// Bearer token sent to node APIs (logs proxy).
    pub node_api_token: Option<String>,
    /// Where pods reach the server: the `kubernetes` Service's ClusterIP and port
    /// ([`KUBERNETES_SERVICE_ADDR`]), served beside `listen` (see `cluster_address`); `None`
    /// serves `listen` alone.
    pub cluster_listen: Option<SocketAddr>,
    /// How long an Event lives after its last update (`--event-ttl`).
    pub event_ttl: std::time::Duration,
    /// The address other nodes' pods reach this server at, published in the `kubernetes`
    /// Service's endpoints (`--advertise-address`); `None` takes `listen`'s address when it
    /// is neither loopback nor unspecified, and otherwise publishes nothing.
    pub advertise: Option<std::net::IpAddr>,
}

pub use store::event_ttl::DEFAULT_EVENT_TTL;

/// The `kubernetes` Service's ClusterIP and port, where in-cluster clients find the API.
pub const KUBERNETES_SERVICE_ADDR: SocketAddr = SocketAddr::new(
    std::net::IpAddr::V4(service_allocators::KUBERNETES_SERVICE_IP),
    443,
);

/// Removes the in-cluster address from `lo` unless another server still listens on it
/// (`peapod reset`).
pub fn remove_cluster_address_if_unused(listen: SocketAddr) {
    cluster_address::remove_if_unused(listen);
}

#[derive(Debug, thiserror::Error)]
pub enum ApiServerError {
    #[error("creating state directory {path}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("preparing certificates")]
    Pki(#[from] PkiError),
    #[error("loading the service account signing key")]
    ServiceAccountKey(#[source] serviceaccount::TokenError),
    #[error("opening the store")]
    Store(#[source] store::StoreError),
    #[error("creating the system namespaces")]
    Bootstrap(#[source] ApiError),
    #[error("loading the serving certificate from {path}")]
    ServingCert {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("configuring TLS")]
    Tls(#[source] rustls::Error),
    #[error("configuring client certificate verification with the cluster CA")]
    ClientCa(#[source] rustls::server::VerifierBuilderError),
    #[error("configuring the client of node APIs")]
    NodeClient(#[source] proxy::NodeClientError),
    #[error("listening on {addr}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running API server; [`RunningApiServer::shutdown`] stops it and releases the store.
pub struct RunningApiServer {
    local_addr: SocketAddr,
    ca_pem: String,
    admin_token: String,
    pki_dir: PathBuf,
    stop: tokio::sync::watch::Sender<bool>,
    server: JoinHandle<()>,
    /// Publishes this server's address while it runs, and withdraws it on shutdown.
    reconciler: Option<JoinHandle<()>>,
}

impl RunningApiServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// CA certificate (PEM) clients must trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Bearer token for kubectl and the agent.
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Where ca.crt/ca.key/apiserver.crt/... live.
    pub fn pki_dir(&self) -> PathBuf {
        self.pki_dir.clone()
    }

    /// Stops accepting, closes every connection, and waits until they are gone (so the store
    /// file can be opened again).
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if let Some(r) = self.reconciler {
            let _ = r.await;
        }
        let _ = self.server.await;
    }
}

/// Client certificates are optional (tokens work without one); one that is presented must
/// chain to the cluster CA and allow client authentication, as kube-apiserver's
/// `--client-ca-file`.
fn client_cert_verifier(
    ca_pem: &str,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, ApiServerError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()).flatten() {
        roots.add(cert).map_err(ApiServerError::Tls)?;
    }
    rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .allow_unauthenticated()
    .build()
    .map_err(ApiServerError::ClientCa)
}

pub async fn start(config: ApiServerConfig) -> Result<RunningApiServer, ApiServerError> {
    std::fs::create_dir_all(&config.state_dir).map_err(|source| ApiServerError::StateDir {
        path: config.state_dir.clone(),
        source,
    })?;
    let pki_dir = config.state_dir.join("pki");
    let mut extra_sans = Vec::new();
    if !config.listen.ip().is_unspecified() {
        extra_sans.push(config.listen.ip().to_string());
    }
    if let Some(addr) = config.cluster_listen {
        extra_sans.push(addr.ip().to_string());
    }
    let pki = pki::ensure(&pki_dir, &extra_sans)?;

    let store = open_store(&config.store, &config.etcd)
        .await
        .map_err(ApiServerError::Store)?;
    // etcd drops Events through leases; the embedded store needs the sweeper.
    let sweep_events = !store.expire_after_write("", "events", config.event_ttl);
    let (authorizer, policy_rv) = authorizer::Authorizer::start(store.as_ref())
        .await
        .map_err(ApiServerError::Store)?;
    let registry = objects::Registry::new(store.clone());
    registry
        .ensure_system_namespaces()
        .await
        .map_err(ApiServerError::Bootstrap)?;

    let cert_path = pki_dir.join(pki::SERVING_CERT);
    let certs = CertificateDer::pem_slice_iter(pki.serving_cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| ApiServerError::ServingCert {
            path: cert_path.clone(),
            source,
        })?;
    let key = PrivateKeyDer::from_pem_slice(pki.serving_key_pem.as_bytes()).map_err(|source| {
        ApiServerError::ServingCert {
            path: pki_dir.join(pki::SERVING_KEY),
            source,
        }
    })?;
    let mut tls = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(ApiServerError::Tls)?
    .with_client_cert_verifier(client_cert_verifier(&pki.ca_pem)?)
    .with_single_cert(certs, key)
    .map_err(ApiServerError::Tls)?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = Arc::new(tls);

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ApiServerError::Listen {
            addr: config.listen,
            source,
        })?;
    let local_addr = listener
        .local_addr()
        .map_err(|source| ApiServerError::Listen {
            addr: config.listen,
            source,
        })?;

    let tokens = serviceaccount::Authority::new(
        &pki.sa_key_pem,
        &pki.sa_pub_pem,
        serviceaccount::DEFAULT_ISSUER,
        Vec::new(),
    )
    .map_err(ApiServerError::ServiceAccountKey)?;
    let state = state::AppState {
        registry: registry.clone(),
        admin_token: Arc::from(pki.admin_token.as_str()),
        tokens: Arc::new(tokens),
        nodes: proxy::NodeClient::new(&pki.ca_pem, config.node_api_token.as_deref())
            .map_err(ApiServerError::NodeClient)?,
        server_address: local_addr.to_string(),
        authorizer: authorizer.clone(),
        metrics: Default::default(),
    };
    let app = http::router(state);
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    let limits = tlsserve::Limits::default();
    let main = tlsserve::serve(listener, tls.clone(), app.clone(), limits, stop_rx.clone());
    let cluster_listen = config.cluster_listen;
    let policy = authorizer.run(store.clone(), policy_rv, stop_rx.clone());
    let event_ttl = config.event_ttl;
    let events_stop = stop_rx.clone();
    let events_expire = async move {
        if sweep_events {
            store::event_ttl::run(store, event_ttl, events_stop).await;
        }
    };
    let server = tokio::spawn(async move {
        let in_cluster = async move {
            if let Some(addr) = cluster_listen {
                cluster_address::run(addr, stop_rx, |l, stop| {
                    tlsserve::serve(l, tls.clone(), app.clone(), limits, stop)
                })
                .await;
            }
        };
        futures::future::join4(main, in_cluster, events_expire, policy).await;
    });
    let repair = match config.store {
        StoreSpec::Redb { .. } => service_allocators::Repair::Rebuild,
        StoreSpec::Etcd { .. } => service_allocators::Repair::KeepTaken,
    };
    bootstrap::services(&registry, local_addr.port(), repair)
        .await
        .map_err(ApiServerError::Bootstrap)?;
    bootstrap::rbac_defaults(&registry)
        .await
        .map_err(ApiServerError::Bootstrap)?;
    bootstrap::system_priority_classes(&registry)
        .await
        .map_err(ApiServerError::Bootstrap)?;
    let advertise = config
        .advertise
        .or_else(|| Some(local_addr.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified()))
        .map(|ip| SocketAddr::new(ip, local_addr.port()));
    let reconciler = advertise.map(|addr| {
        tracing::info!(%addr, "publishing the API server in the kubernetes Service's endpoints");
        tokio::spawn(endpoint_reconciler::run(
            registry.clone(),
            addr,
            stop.subscribe(),
        ))
    });
    tracing::info!(%local_addr, "API server listening");
    Ok(RunningApiServer {
        local_addr,
        ca_pem: pki.ca_pem,
        admin_token: pki.admin_token,
        pki_dir,
        stop,
        server,
        reconciler,
    })
}

/// Opens the backend `spec` names.
async fn open_store(
    spec: &StoreSpec,
    etcd: &EtcdOptions,
) -> Result<Arc<dyn store::Store>, store::StoreError> {
    Ok(match spec {
        StoreSpec::Redb { path } => Arc::new(store::RedbStore::open(path).await?),
        StoreSpec::Etcd { endpoints } => {
            Arc::new(store_etcd::EtcdStore::connect(endpoints, etcd).await?)
        }
    })
}

/// Writes a kubeconfig for `server_url` trusting `ca_pem` and authenticating with `token`
/// (mode 0600: it holds a credential).
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    token: &str,
) -> std::io::Result<()> {
    use base64::Engine;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: peapod\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: peapod\n  context:\n    cluster: peapod\n    user: admin\n    namespace: default\ncurrent-context: peapod\nusers:\n- name: admin\n  user:\n    token: {token}\npreferences: {{}}\n"
    );
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Issues a serving certificate signed by the CA in `pki_dir` (for the node API):
/// (cert_pem, key_pem).
/// The hash a joining node pins the cluster CA of `pki_dir` by (kubeadm's
/// `--discovery-token-ca-cert-hash`).
pub fn ca_cert_hash(pki_dir: &Path) -> Result<String, ApiServerError> {
    Ok(pki::ca_cert_hash(pki_dir)?)
}

pub fn issue_serving_cert(
    pki_dir: &Path,
    sans: &[String],
) -> Result<(String, String), ApiServerError> {
    Ok(pki::issue(pki_dir, sans)?)
}
