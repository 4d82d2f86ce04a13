//! `peapod join`: a node joins with a bootstrap token, as `kubeadm join` and kubelet's TLS
//! bootstrap do. Discovery reads `kube-public/cluster-info` without trusting any CA yet, then
//! trusts the CA in it only when the token's detached signature over it verifies and its
//! public key hash is one the operator pinned. Over a connection verified with that CA the
//! token asks for a node client certificate (a CertificateSigningRequest the approver and
//! signer answer); the certificate and its key go into `<state-dir>/node.kubeconfig`, and the
//! agent runs with it. A later `peapod join` with the same state dir reuses that credential.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context};
use base64::Engine as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use kube::ResourceExt;

use apiserver::bootstrap_tokens::BootstrapToken;

use crate::cli::JoinArgs;
use crate::process;

/// The node's own kubeconfig (kubelet's `kubelet.conf`).
pub const NODE_KUBECONFIG: &str = "node.kubeconfig";
/// How often discovery is tried again while the API server does not answer.
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);

/// What discovery established: where the API server is and the CA it is trusted by.
struct Cluster {
    server: String,
    ca_pem: String,
}

pub async fn run(args: JoinArgs) -> anyhow::Result<()> {
    let state_dir = args.node.state.state_dir.clone();
    process::create_state_dir(&state_dir)?;
    let kubeconfig = state_dir.join(NODE_KUBECONFIG);
    if kubeconfig.exists() {
        eprintln!(
            "peapod: using the node credential in {} (remove it to join again)",
            kubeconfig.display()
        );
    } else {
        let token = BootstrapToken::parse(&args.token).with_context(|| {
            "the token must look like [a-z0-9]{6}.[a-z0-9]{16} (as `peapod up` prints it)"
        })?;
        let pins = args
            .discovery_token_ca_cert_hash
            .iter()
            .map(|p| nodetrust::cahash::parse_pin(p))
            .collect::<Result<Vec<_>, _>>()?;
        if pins.is_empty() && !args.discovery_token_unsafe_skip_ca_verification {
            bail!(
                "token-based discovery without --discovery-token-ca-cert-hash is unsafe: give \
                 the hash `peapod up` printed, or --discovery-token-unsafe-skip-ca-verification"
            );
        }
        let node_name = match &args.node.node_name {
            Some(n) => n.clone(),
            None => process::hostname()?,
        };
        let deadline = tokio::time::Instant::now() + args.bootstrap_timeout;
        let cluster = discover(
            &args.server,
            &token,
            &pins,
            args.discovery_token_unsafe_skip_ca_verification,
            deadline,
        )
        .await?;
        eprintln!(
            "peapod: trusting the cluster CA of {} ({})",
            cluster.server,
            nodetrust::cahash::ca_pem_hash(cluster.ca_pem.as_bytes())?
        );
        let (cert, key) = bootstrap(&cluster, &token, &node_name, deadline).await?;
        write_node_kubeconfig(&kubeconfig, &cluster, &cert, &key)?;
        eprintln!(
            "peapod: node credential for system:node:{node_name} written to {}",
            kubeconfig.display()
        );
    }
    crate::agent::run_node(&kubeconfig, args.node).await
}

/// Reads cluster-info over a connection that trusts no CA, retrying while the server does
/// not answer.
async fn fetch_cluster_info(
    server: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<ConfigMap> {
    let mut config = kube::Config::new(
        server
            .parse()
            .with_context(|| format!("{server:?} is not a URL"))?,
    );
    // Nothing is trusted yet: what is read is checked by signature and hash below.
    config.accept_invalid_certs = true;
    let client = kube::Client::try_from(config).context("building the discovery client")?;
    let api = Api::<ConfigMap>::namespaced(client, "kube-public");
    loop {
        match api.get("cluster-info").await {
            Ok(cm) => return Ok(cm),
            Err(e) if tokio::time::Instant::now() + DISCOVERY_RETRY < deadline => {
                eprintln!("peapod: cluster-info not read yet ({e}); retrying");
                tokio::time::sleep(DISCOVERY_RETRY).await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("reading kube-public/cluster-info from {server}")))
            }
        }
    }
}

async fn discover(
    server: &str,
    token: &BootstrapToken,
    pins: &[String],
    skip_ca_verification: bool,
    deadline: tokio::time::Instant,
) -> anyhow::Result<Cluster> {
    let cm = fetch_cluster_info(server, deadline).await?;
    let data = cm.data.unwrap_or_default();
    let kubeconfig_text = data
        .get("kubeconfig")
        .context("cluster-info holds no kubeconfig")?;
    match data.get(&format!("jws-kubeconfig-{}", token.id)) {
        Some(jws) => nodetrust::jws::verify_detached(
            jws,
            kubeconfig_text.as_bytes(),
            &token.id,
            &token.secret,
        )
        .with_context(|| {
            format!(
                "cluster-info is not signed with token {}: the token is wrong, or this is \
                 not the cluster it was made for; refusing to trust this server",
                token.id
            )
        })?,
        // An unknown token, or one the signer has not reached yet: with a pinned CA the
        // server is still trusted by its key alone, and the token is then checked by the
        // API server itself.
        None if !pins.is_empty() => eprintln!(
            "peapod: cluster-info has no signature for token id {}; trusting the CA by its \
             hash alone",
            token.id
        ),
        None => bail!(
            "cluster-info has no signature for token id {}: the token is not valid for this \
             cluster (or was made a moment ago: try again)",
            token.id
        ),
    }
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig_text)
        .context("the kubeconfig in cluster-info")?;
    let cluster = kc
        .clusters
        .first()
        .and_then(|c| c.cluster.as_ref())
        .context("the kubeconfig in cluster-info names no cluster")?;
    let server = cluster
        .server
        .clone()
        .context("the kubeconfig in cluster-info names no server")?;
    let ca_b64 = cluster
        .certificate_authority_data
        .as_deref()
        .context("the kubeconfig in cluster-info holds no CA")?;
    let ca_pem = String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(ca_b64.trim())
            .context("the CA in cluster-info is not base64")?,
    )
    .context("the CA in cluster-info is not text")?;
    let hash = nodetrust::cahash::ca_pem_hash(ca_pem.as_bytes())?;
    if !skip_ca_verification && !pins.contains(&hash) {
        bail!(
            "the cluster CA's public key hash is {hash}, not the --discovery-token-ca-cert-hash \
             given ({}): refusing to trust this server",
            pins.join(", ")
        );
    }
    Ok(Cluster { server, ca_pem })
}

/// The PEM certificates of `pem`, DER.
fn ders(pem: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    use rustls_pki_types::pem::PemObject as _;
    let ders = rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<Vec<_>, _>>()
        .context("the cluster CA is not PEM")?;
    Ok(ders)
}

/// Asks for a node client certificate with the bootstrap token and waits for it.
/// (certificate PEM, key PEM).
async fn bootstrap(
    cluster: &Cluster,
    token: &BootstrapToken,
    node_name: &str,
    deadline: tokio::time::Instant,
) -> anyhow::Result<(String, String)> {
    let mut config = kube::Config::new(cluster.server.parse().context("the server URL")?);
    config.root_cert = Some(ders(&cluster.ca_pem)?);
    config.auth_info.token = Some(token.to_string().into());
    let client = kube::Client::try_from(config).context("building the bootstrap client")?;
    // kubelet's TLS bootstrap asks for its certificate as `kubelet`.
    let client = controller_base::useragent::named(&client, "kubelet");
    let api = Api::<CertificateSigningRequest>::all(client);
    let (key_pem, request_pem) = nodetrust::csr::node_request(node_name)?;
    let csr: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "certificates.k8s.io/v1",
        "kind": "CertificateSigningRequest",
        "metadata": {"generateName": "node-csr-"},
        "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode(&request_pem),
            "signerName": nodetrust::csr::KUBELET_CLIENT_SIGNER,
            "usages": ["digital signature", "client auth"],
        }
    }))?;
    let created = match api.create(&PostParams::default(), &csr).await {
        Ok(c) => c,
        Err(kube::Error::Api(s)) if s.code == 401 => bail!(
            "the API server refused the bootstrap token {} (401 Unauthorized): it is wrong, \
             expired or deleted",
            token.id
        ),
        Err(e) => {
            return Err(anyhow::Error::new(e).context("creating the CertificateSigningRequest"))
        }
    };
    let name = created.name_any();
    eprintln!("peapod: waiting for CertificateSigningRequest {name} to be approved and signed");
    let done = kube::runtime::wait::await_condition(
        api,
        &name,
        |csr: Option<&CertificateSigningRequest>| {
            csr.and_then(|c| c.status.as_ref()).is_some_and(|s| {
                s.certificate.as_ref().is_some_and(|c| !c.0.is_empty())
                    || s.conditions.iter().flatten().any(|c| {
                        matches!(c.type_.as_str(), "Denied" | "Failed") && c.status == "True"
                    })
            })
        },
    );
    let csr = tokio::time::timeout_at(deadline, done)
        .await
        .with_context(|| format!("CertificateSigningRequest {name} was not signed in time"))?
        .with_context(|| format!("watching CertificateSigningRequest {name}"))?
        .with_context(|| format!("CertificateSigningRequest {name} was deleted"))?;
    let status = csr.status.unwrap_or_default();
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| matches!(c.type_.as_str(), "Denied" | "Failed") && c.status == "True")
    {
        bail!(
            "CertificateSigningRequest {name} was {}: {}",
            c.type_.to_lowercase(),
            c.message.as_deref().unwrap_or("no reason given")
        );
    }
    let cert = status
        .certificate
        .map(|c| String::from_utf8_lossy(&c.0).into_owned())
        .unwrap_or_default();
    Ok((cert, key_pem))
}

fn write_node_kubeconfig(
    path: &Path,
    cluster: &Cluster,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: peapod\n  cluster:\n    server: {}\n    certificate-authority-data: {}\ncontexts:\n- name: node\n  context:\n    cluster: peapod\n    user: node\ncurrent-context: node\nusers:\n- name: node\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\npreferences: {{}}\n",
        cluster.server,
        b64(&cluster.ca_pem),
        b64(cert_pem),
        b64(key_pem),
    );
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}
