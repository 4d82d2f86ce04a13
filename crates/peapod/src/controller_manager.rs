//! `peapod controllers`: the controllers alone, against any API server reached through a
//! kubeconfig, as kube-controller-manager runs. With leader election (the default) several
//! copies may run; only the holder of the Lease acts, and on SIGTERM or Ctrl-C it stops its
//! controllers and releases the Lease so another copy takes over at once.

use crate::cli::ControllersArgs;
use crate::process;

pub async fn run(args: ControllersArgs) -> anyhow::Result<()> {
    let client = process::kube_client(&args.kubeconfig).await?;
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
    controllers::run(client, election, process::shutdown_signal()).await;
    Ok(())
}
