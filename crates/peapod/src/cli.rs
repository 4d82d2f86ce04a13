//! Command-line interface. Names and flags here are a stable contract with users and scripts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/peapod";

/// Runs Kubernetes Pods on this machine, with the stock kubectl as its client.
///
/// `peapod up` starts an API server (Kubernetes REST API over TLS), an embedded store and a
/// node agent in one process, and writes a kubeconfig for kubectl. Pods keep running when
/// `peapod up` stops; `peapod reset` stops them and removes all state.
#[derive(Debug, Parser)]
#[command(name = "peapod", version, propagate_version = true)]
pub struct Cli {
    /// More log output (-v debug, -vv trace); PEAPOD_LOG=<filter> overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the API server, store and node agent in the foreground.
    Up(UpArgs),
    /// Run the API server and the controllers without a node agent, e.g. several of them on
    /// one etcd cluster (`--store etcd:...`) sharing one `pki/`.
    Server(ServerArgs),
    /// Run the node agent alone against an API server (like kubelet --kubeconfig).
    Agent(AgentArgs),
    /// Join a cluster with a bootstrap token, as `kubeadm join` does: fetch the cluster's
    /// CA (checked against its hash and the token's signature), get a node client
    /// certificate through a CertificateSigningRequest, then run the node agent with it.
    Join(JoinArgs),
    /// Run the controllers (scheduler, namespaces, endpoints) alone against an API server
    /// (like kube-controller-manager --kubeconfig), with leader election on a Lease.
    Controllers(ControllersArgs),
    /// Manage images in the local store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Stop every pod and remove all of peapod's state, mounts, cgroups and processes.
    Reset(StateDirArg),
    /// Issue a node API serving certificate signed by the cluster CA of a `peapod up` state
    /// dir, for `peapod agent --tls-cert-file/--tls-private-key-file`.
    NodeCert(NodeCertArgs),
}

#[derive(Debug, Args)]
pub struct NodeCertArgs {
    /// The `peapod up` state dir whose `pki/` holds the cluster CA.
    #[command(flatten)]
    pub state: StateDirArg,
    /// An address or name the node API is reached at (its InternalIP); repeatable.
    #[arg(long, required = true)]
    pub san: Vec<String>,
    /// Where to write the certificate (PEM).
    #[arg(long)]
    pub cert: PathBuf,
    /// Where to write the private key (PEM, mode 0600).
    #[arg(long)]
    pub key: PathBuf,
}

#[derive(Debug, Args)]
pub struct StateDirArg {
    /// Directory holding peapod's state (store, images, pods, logs, kubeconfig).
    #[arg(long, default_value = DEFAULT_STATE_DIR, env = "PEAPOD_STATE_DIR")]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,
    /// Name of this node (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address of the node API (logs, exec) that the API server proxies to, like kubelet's
    /// :10250. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub node_api_listen: SocketAddr,
    #[command(flatten)]
    pub static_pods: StaticPodArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Directory holding this server's `pki/` (the cluster CA, service-account keys and admin
    /// token: copy them from the first server to the others), `node-api-token` and kubeconfig.
    #[command(flatten)]
    pub state: StateDirArg,
    #[command(flatten)]
    pub control_plane: ControlPlaneArgs,
}

/// The API server and the controllers: what `up` and `server` share.
#[derive(Debug, Args)]
pub struct ControlPlaneArgs {
    /// Address of the Kubernetes API (HTTPS). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// The address other nodes' pods reach this server at, published in the `kubernetes`
    /// Service's endpoints (default: the --listen address unless it is loopback or
    /// unspecified; then pods on this machine only reach the API).
    #[arg(long, value_name = "IP")]
    pub advertise_address: Option<std::net::IpAddr>,
    /// The API server's store as SCHEME:LOCATION: `redb:PATH` (default:
    /// `redb:<state-dir>/store.redb`, the embedded store) or `etcd:URL[,URL...]` (the members'
    /// client URLs, e.g. `etcd:https://10.0.0.1:2379,https://10.0.0.2:2379`).
    #[arg(long, value_name = "SCHEME:LOCATION")]
    pub store: Option<store::StoreSpec>,
    /// CA bundle that verifies the etcd members' certificates (as kube-apiserver's flag).
    #[arg(long, value_name = "FILE")]
    pub etcd_cafile: Option<PathBuf>,
    /// Client certificate presented to etcd (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_keyfile")]
    pub etcd_certfile: Option<PathBuf>,
    /// The private key of `--etcd-certfile` (PEM).
    #[arg(long, value_name = "FILE", requires = "etcd_certfile")]
    pub etcd_keyfile: Option<PathBuf>,
    /// How often the etcd history is compacted, keeping one interval of it for watches to
    /// resume from (0 turns compaction off).
    #[arg(long, default_value = "5m", value_parser = parse_duration_flag)]
    pub etcd_compaction_interval: std::time::Duration,
    /// Do not run the controllers (scheduler, namespaces, endpoints) in this process: run
    /// `peapod controllers --kubeconfig` against this API server instead.
    #[arg(long)]
    pub no_controllers: bool,
    /// How long the bootstrap token printed in the join command stays valid (kubeadm's
    /// `--token-ttl`; 0 never expires).
    #[arg(long, default_value = "24h", value_parser = parse_duration_flag)]
    pub token_ttl: std::time::Duration,
    /// How long Events are kept after their last update (a Go duration, as kube-apiserver's
    /// `--event-ttl`).
    #[arg(long, default_value = "1h", value_parser = parse_duration_flag)]
    pub event_ttl: std::time::Duration,
    #[command(flatten)]
    pub node_lifecycle: NodeLifecycleArgs,
}

impl ControlPlaneArgs {
    /// The store to open, the embedded one in `state_dir` unless `--store` names another.
    pub fn store_spec(&self, state_dir: &std::path::Path) -> store::StoreSpec {
        self.store
            .clone()
            .unwrap_or_else(|| store::StoreSpec::default_in(state_dir))
    }

    pub fn etcd_options(&self) -> apiserver::EtcdOptions {
        apiserver::EtcdOptions {
            tls: apiserver::EtcdTlsFiles {
                ca_file: self.etcd_cafile.clone(),
                cert_file: self.etcd_certfile.clone(),
                key_file: self.etcd_keyfile.clone(),
            },
            compaction_interval: Some(self.etcd_compaction_interval).filter(|d| !d.is_zero()),
        }
    }
}

fn parse_duration_flag(s: &str) -> Result<std::time::Duration, String> {
    api::duration::parse_go_duration(s)
        .ok_or_else(|| format!("{s:?} is not a duration such as 90s, 1h or 1m30s"))
}

/// The pod network (CNI), as kubelet's runtime is configured.
#[derive(Debug, Args)]
pub struct NetworkArgs {
    /// CNI config directory: its first conflist is used; a default bridge network is
    /// written there when it has none.
    #[arg(long, default_value = "/etc/cni/net.d", env = "PEAPOD_CNI_CONF_DIR")]
    pub cni_conf_dir: PathBuf,
    /// CNI plugin directories, searched in order (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', default_values = ["/opt/cni/bin", "/usr/lib/cni"])]
    pub cni_bin_dir: Vec<PathBuf>,
    /// This node's pod CIDR, the address range of the default CNI network (default: the
    /// Node's `spec.podCIDR`, given by the node IPAM controller; pods wait for it).
    #[arg(long)]
    pub pod_cidr: Option<ipnet::Ipv4Net>,
    /// The cluster's pod network: each node's pod CIDR lies in it, pods reach each other
    /// across nodes within it without NAT, and what leaves it is masqueraded.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,
}

impl NetworkArgs {
    pub fn config(&self) -> runtime::NetworkConfig {
        runtime::NetworkConfig {
            conf_dir: self.cni_conf_dir.clone(),
            bin_dirs: self.cni_bin_dir.clone(),
            pod_cidr: match self.pod_cidr {
                Some(cidr) => runtime::PodCidr::fixed(cidr.to_string()),
                None => runtime::PodCidr::default(),
            },
            ..Default::default()
        }
    }

    /// The node's share of the pod network (routes to other nodes, masquerading).
    pub fn pod_network(&self, node_name: &str) -> podnet::PodNetConfig {
        podnet::PodNetConfig {
            node_name: node_name.to_string(),
            cluster_cidr: self.cluster_cidr,
            pod_cidr: self.pod_cidr,
        }
    }
}

/// Where static pod manifests come from (kubelet's `--config` / `staticPodPath`).
#[derive(Debug, Args)]
pub struct StaticPodArgs {
    /// A KubeletConfiguration file (kubelet.config.k8s.io/v1beta1), as kubelet reads
    /// /var/lib/kubelet/config.yaml; staticPodPath, syncFrequency, fileCheckFrequency,
    /// allowedUnsafeSysctls, containerLogMax*, imageGC*ThresholdPercent, imageMinimumGCAge,
    /// serializeImagePulls, maxParallelImagePulls, shutdownGracePeriod*, eviction*,
    /// nodeStatusUpdateFrequency, nodeStatusReportFrequency and nodeLeaseDurationSeconds
    /// are used.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory (or file) of pod manifests run as static pods; overrides the config file's
    /// staticPodPath.
    #[arg(long, value_name = "DIR")]
    pub static_pod_path: Option<PathBuf>,
    /// How often image garbage collection checks the image filesystem (kubelet: 5m).
    #[arg(long, default_value = "5m", value_parser = parse_duration_flag)]
    pub image_gc_period: std::time::Duration,
    /// The node-wide registry credentials (a docker `config.json`) used for every pod's
    /// pulls after its imagePullSecrets. Default: the first that exists of
    /// `<state-dir>/config.json`, `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`,
    /// `<state-dir>/.dockercfg`, `~/.dockercfg`.
    #[arg(long, value_name = "FILE")]
    pub registry_auth_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Kubeconfig of the API server to register with.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// `peapod join`: kubeadm's discovery and TLS bootstrap, then the agent.
#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The API server to join (`https://HOST:PORT`), as `peapod up` prints it.
    #[arg(long)]
    pub server: String,
    /// The bootstrap token (`<id>.<secret>`), as `peapod up` prints it.
    #[arg(long)]
    pub token: String,
    /// The cluster CA's public key hash (`sha256:<hex>`), which pins the CA the node
    /// trusts; repeatable. Required unless `--discovery-token-unsafe-skip-ca-verification`.
    #[arg(long, value_name = "sha256:HEX")]
    pub discovery_token_ca_cert_hash: Vec<String>,
    /// Trust the CA that cluster-info names without comparing its hash (kubeadm's flag;
    /// the token's signature is still checked).
    #[arg(long)]
    pub discovery_token_unsafe_skip_ca_verification: bool,
    /// How long to wait for the node certificate to be approved and issued.
    #[arg(long, default_value = "5m", value_parser = parse_duration_flag)]
    pub bootstrap_timeout: std::time::Duration,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// What the node agent runs with, besides its credential.
#[derive(Debug, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub state: StateDirArg,
    /// Name of this node (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address of the node API (logs, exec) that the API server proxies to. Port 0 picks a
    /// free port.
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub node_api_listen: SocketAddr,
    /// File holding the bearer token the node API requires (the API server's node token);
    /// without it a token is generated into `<state-dir>/node-api-token`.
    #[arg(long, value_name = "FILE")]
    pub node_api_token_file: Option<PathBuf>,
    /// The node API's serving certificate (PEM), signed by a CA the API server trusts
    /// (`peapod node-cert`); without it the node API self-signs.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// The private key of `--tls-cert-file` (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    #[command(flatten)]
    pub static_pods: StaticPodArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Also run the service proxy and cluster DNS here, as `peapod up` does for its node:
    /// for an agent on a machine (or network namespace) of its own.
    #[arg(long)]
    pub proxy: bool,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Load an OCI-archive or docker-archive tarball into the store.
    Import {
        #[command(flatten)]
        state: StateDirArg,
        /// The tarball.
        file: PathBuf,
    },
    /// List images in the store.
    Ls {
        #[command(flatten)]
        state: StateDirArg,
    },
    /// Pull an image from a registry (plain HTTP only for localhost and 127.0.0.0/8).
    Pull {
        #[command(flatten)]
        state: StateDirArg,
        /// Image reference, e.g. 127.0.0.1:5000/busybox:latest.
        reference: String,
    },
}

#[derive(Debug, Args)]
pub struct ControllersArgs {
    /// Kubeconfig of the API server to work for.
    #[arg(long)]
    pub kubeconfig: PathBuf,
    /// CA bundle (PEM) published to every namespace as the `kube-root-ca.crt` ConfigMap,
    /// which pods use to verify the API server (default: the kubeconfig's CA).
    #[arg(long, value_name = "FILE")]
    pub root_ca_file: Option<PathBuf>,
    /// The CA certificate (PEM) that signs approved node client certificate requests
    /// (kube-controller-manager's flag); without it and its key the CSR signer does not run.
    #[arg(long, value_name = "FILE", requires = "cluster_signing_key_file")]
    pub cluster_signing_cert_file: Option<PathBuf>,
    /// The private key of `--cluster-signing-cert-file` (PEM).
    #[arg(long, value_name = "FILE", requires = "cluster_signing_cert_file")]
    pub cluster_signing_key_file: Option<PathBuf>,
    /// Act only while holding the leader Lease, so several copies can run (true|false).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
    pub leader_elect: bool,
    /// Namespace of the leader Lease.
    #[arg(long, default_value = controllers::DEFAULT_LEASE_NAMESPACE)]
    pub lease_namespace: String,
    /// Name of the leader Lease.
    #[arg(long, default_value = controllers::DEFAULT_LEASE_NAME)]
    pub lease_name: String,
    /// How long others wait for a Lease that is not renewed (e.g. 15s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps acting without renewing the Lease (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often to try to take or renew the Lease (e.g. 2s).
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    #[command(flatten)]
    pub node_lifecycle: NodeLifecycleArgs,
}

/// The node lifecycle controller's flags (kube-controller-manager's names and defaults).
#[derive(Debug, Args)]
pub struct NodeLifecycleArgs {
    /// How long a node may go without renewing its Lease or posting status before it is
    /// marked Unknown and tainted unreachable (e.g. 40s).
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    /// The same for a node that has never posted Ready (e.g. 1m).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub node_startup_grace_period: Duration,
    /// Nodes per second per zone whose pods start being evicted.
    #[arg(long, default_value_t = 0.1, value_parser = parse_rate)]
    pub node_eviction_rate: f64,
    /// The same in a partly disrupted zone larger than --large-cluster-size-threshold.
    #[arg(long, default_value_t = 0.01, value_parser = parse_rate)]
    pub secondary_node_eviction_rate: f64,
    /// The fraction of a zone's nodes not Ready (more than two) that makes it partly
    /// disrupted.
    #[arg(long, default_value_t = 0.55, value_parser = parse_rate)]
    pub unhealthy_zone_threshold: f64,
    /// Zones up to this many nodes stop evicting while partly disrupted.
    #[arg(long, default_value_t = 50)]
    pub large_cluster_size_threshold: u32,
}

impl NodeLifecycleArgs {
    pub fn settings(&self) -> node_lifecycle::Settings {
        node_lifecycle::Settings {
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_startup_grace_period: self.node_startup_grace_period,
            node_eviction_rate: self.node_eviction_rate,
            secondary_node_eviction_rate: self.secondary_node_eviction_rate,
            unhealthy_zone_threshold: self.unhealthy_zone_threshold,
            large_cluster_size_threshold: self.large_cluster_size_threshold,
        }
    }
}

/// A rate or fraction: a finite number, zero or more.
fn parse_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("{text:?}: expected a number, zero or more")),
    }
}

/// A duration as kube-controller-manager's flags take it: a number with `ms`, `s`, `m` or `h`.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: missing unit (ms, s, m or h)"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: not a duration"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => Ok(Duration::from_secs(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        "h" => Ok(Duration::from_secs(n.saturating_mul(3600))),
        _ => Err(format!("{text:?}: unknown unit (ms, s, m or h)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_the_controller_managers_flags() {
        assert_eq!(parse_duration("15s"), Ok(Duration::from_secs(15)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("15").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("3d").is_err());
    }

    #[test]
    fn server_takes_the_store_and_etcd_flags() {
        let cli = Cli::parse_from([
            "peapod",
            "server",
            "--store",
            "etcd:https://10.0.0.1:2379,https://10.0.0.2:2379",
            "--etcd-cafile",
            "ca.crt",
            "--etcd-compaction-interval",
            "0",
        ]);
        let Command::Server(args) = cli.command else {
            panic!("not the server command");
        };
        let opts = args.control_plane.etcd_options();
        assert_eq!(opts.tls.ca_file, Some(PathBuf::from("ca.crt")));
        assert_eq!(opts.compaction_interval, None);
        assert!(matches!(
            args.control_plane.store_spec(std::path::Path::new("/s")),
            store::StoreSpec::Etcd { endpoints } if endpoints.len() == 2
        ));
        let up = Cli::parse_from(["peapod", "up"]);
        let Command::Up(args) = up.command else {
            panic!("not the up command");
        };
        assert_eq!(
            args.control_plane.store_spec(std::path::Path::new("/s")),
            store::StoreSpec::default_in(std::path::Path::new("/s"))
        );
        assert_eq!(
            args.control_plane.etcd_options().compaction_interval,
            Some(apiserver::DEFAULT_COMPACTION_INTERVAL)
        );
        assert!(Cli::try_parse_from(["peapod", "server", "--etcd-certfile", "c"]).is_err());
    }

    #[test]
    fn leader_election_is_on_unless_turned_off() {
        let cli = Cli::parse_from(["peapod", "controllers", "--kubeconfig", "k"]);
        let Command::Controllers(args) = cli.command else {
            panic!("not the controllers command");
        };
        assert!(args.leader_elect);
        assert_eq!(args.lease_name, "peapod-controllers");
        let cli = Cli::parse_from([
            "peapod",
            "controllers",
            "--kubeconfig",
            "k",
            "--leader-elect",
            "false",
        ]);
        let Command::Controllers(args) = cli.command else {
            panic!("not the controllers command");
        };
        assert!(!args.leader_elect);
    }
}
