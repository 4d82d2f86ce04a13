//! `peapod controllers`: the controllers alone, against any API server reached through a
//! kubeconfig, as kube-controller-manager runs. With leader election (the default) several
//! copies may run; only the holder of the Lease acts, and on SIGTERM or Ctrl-C it stops its
//! controllers and releases the Lease so another copy takes over at once.

use anyhow::Context;

use crate::cli::ControllersArgs;
use crate::process;

pub async fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let config = process::kube_config(&args.kubeconfig).await?;
    let root_ca = match &args.root_ca_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading the root CA file {}", path.display()))?,
        ),
        None => config.root_cert.as_deref().map(pem_certificates),
    };
    let cluster_signing = match (
        &args.cluster_signing_cert_file,
        &args.cluster_signing_key_file,
    ) {
        (Some(cert), Some(key)) => Some(controllers::ClusterSigning {
            cert_pem: std::fs::read_to_string(cert)
                .with_context(|| format!("reading {}", cert.display()))?,
            key_pem: std::fs::read_to_string(key)
                .with_context(|| format!("reading {}", key.display()))?,
        }),
        _ => None,
    };
    let settings = controllers::Settings {
        root_ca,
        node_lifecycle: args.node_lifecycle.settings(),
        cluster_signing,
    };
    let client = process::client(config)?;
    let election = if args.leader_elect {
        let identity = controllers::unique_identity(&process::hostname()?);
        eprintln!(
            "peapod: controllers running as {identity} (leader Lease {}/{})",
            args.lease_namespace, args.lease_name
        );
        let election = controllers::LeaderElection {
            lease_duration: args.leader_elect_lease_duration,
            renew_deadline: args.leader_elect_renew_deadline,
            retry_period: args.leader_elect_retry_period,
            ..controllers::LeaderElection::new(&args.lease_namespace, &args.lease_name, identity)
        };
        election.validate()?;
        Some(election)
    } else {
        eprintln!("peapod: controllers running without leader election");
        None
    };
    controllers::run(client, settings, election, process::shutdown_signal()).await;
    Ok(())
}

/// DER certificates as one PEM bundle.
fn pem_certificates(ders: &[Vec<u8>]) -> String {
    use base64::Engine;
    let mut out = String::new();
    for der in ders {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}
