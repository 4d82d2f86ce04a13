//! `peapod`: runs Kubernetes Pods on this machine, with the stock kubectl as client.
//!
//! The binary only parses arguments and dispatches; behaviour lives in the library crates.
//! `peapod shim` (hidden) is the per-pod shim process: it is dispatched before anything else
//! so that it stays single-threaded (no tokio runtime exists yet).

mod agent;
mod cli;
mod control_plane;
mod controller_manager;
mod heap;
mod image;
mod join;
mod node_agent;
mod node_network;
mod process;
mod reset;
mod server;
mod static_pods;
mod up;

use clap::Parser;

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "shim") {
        std::process::exit(shim::main(args[2..].to_vec()));
    }
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    heap::limit_arenas();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: starting the async runtime: {err}");
            std::process::exit(1);
        }
    };
    runtime.spawn(heap::trim_periodically());
    let result = runtime.block_on(run(cli.command));
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(command: cli::Command) -> anyhow::Result<()> {
    match command {
        cli::Command::Up(args) => up::run(args).await,
        cli::Command::Server(args) => server::run(args).await,
        cli::Command::Agent(args) => agent::run(args).await,
        cli::Command::Join(args) => join::run(args).await,
        cli::Command::Controllers(args) => controller_manager::run(args).await,
        cli::Command::Image(cmd) => image::run(cmd).await,
        cli::Command::Reset(args) => reset::run(args).await,
        cli::Command::NodeCert(args) => agent::node_cert(args),
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "info",
        1 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("PEAPOD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
