//! Command-line interface. Names and flags here are a stable contract with users and scripts.

use std::net::SocketAddr;
use std::path::PathBuf;

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
    /// Manage images in the local store.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Stop every pod and remove all of peapod's state, mounts, cgroups and processes.
    Reset(StateDirArg),
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
    /// Address of the Kubernetes API (HTTPS). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Name of this node (default: the hostname).
    #[arg(long)]
    pub node_name: Option<String>,
    /// Address of the node API (logs, exec) that the API server proxies to, like kubelet's
    /// :10250. Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:10250")]
    pub node_api_listen: SocketAddr,
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
