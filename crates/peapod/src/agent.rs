//! `peapod agent`: the node agent alone, against any API server reached through a kubeconfig
//! (as `kubelet --kubeconfig` runs), with its own state dir, node name and node API. Static
//! pods from `--config`/`--static-pod-path` run even while that API server is unreachable.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::cli::{AgentArgs, StaticPodArgs};
use crate::up;

/// The static pod settings of `--config` and `--static-pod-path`.
pub struct StaticPodSettings {
    pub path: Option<PathBuf>,
    pub file_check_frequency: Option<Duration>,
}

/// Reads the kubelet configuration file, if any; `--static-pod-path` wins over its
/// `staticPodPath` (kubelet's flags override the config file).
pub fn static_pod_settings(args: &StaticPodArgs) -> anyhow::Result<StaticPodSettings> {
    let config = match &args.config {
        Some(file) => staticpods::load_kubelet_config(file)
            .with_context(|| format!("loading the kubelet configuration {}", file.display()))?,
        None => Default::default(),
    };
    let path = args
        .static_pod_path
        .clone()
        .or(config.static_pod_path)
        .map(|p| std::path::absolute(&p).unwrap_or(p));
    Ok(StaticPodSettings {
        path,
        file_check_frequency: config.file_check_frequency,
    })
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    up::install_crypto_provider();
    let static_pods = static_pod_settings(&args.static_pods)?;
    let state_dir = args.state.state_dir;
    fs::create_dir_all(&state_dir)
        .with_context(|| format!("creating state dir {}", state_dir.display()))?;
    let state_dir = fs::canonicalize(&state_dir)?;
    let _lock = up::lock_state_dir(&state_dir)?;
    up::write_pid_file(&state_dir)?;

    let node_name = match args.node_name {
        Some(n) => n,
        None => up::hostname()?,
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
    let client = up::kube_client(&args.kubeconfig).await?;
    let runtime = runtime::Runtime::new(runtime::RuntimeConfig {
        network: Some(args.network.config()),
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
        _ = up::shutdown_signal() => {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pod_path_flag_overrides_the_kubelet_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: manifests\nfileCheckFrequency: 5s\n",
        )
        .expect("config");
        let from_config = static_pod_settings(&StaticPodArgs {
            config: Some(config.clone()),
            static_pod_path: None,
        })
        .expect("settings");
        assert_eq!(from_config.path, Some(dir.path().join("manifests")));
        assert_eq!(
            from_config.file_check_frequency,
            Some(Duration::from_secs(5))
        );
        let flag = static_pod_settings(&StaticPodArgs {
            config: Some(config),
            static_pod_path: Some(PathBuf::from("/etc/kubernetes/manifests")),
        })
        .expect("settings");
        assert_eq!(flag.path, Some(PathBuf::from("/etc/kubernetes/manifests")));
        let missing = static_pod_settings(&StaticPodArgs {
            config: Some(dir.path().join("nope.yaml")),
            static_pod_path: None,
        });
        assert!(missing.is_err());
    }
}
