//! `peapod reset`: stop a running `peapod up` or `agent` of this state dir, every pod (shims,
//! containers, cgroups), the QoS tier cgroups when no pod is left in them, and remove the state
//! dir. Safe to run again and on a half-removed state.

use std::fs;
use std::time::{Duration, Instant};

use anyhow::Context;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::cli::StateDirArg;

pub async fn run(args: StateDirArg) -> anyhow::Result<()> {
    let state_dir = args.state_dir;
    if !state_dir.exists() {
        println!("nothing to reset at {}", state_dir.display());
        return Ok(());
    }
    stop_running_up(&state_dir).await;
    // The service proxy's and the pod network's nftables tables, the cluster DNS address and the API server's
    // in-cluster address (all idempotent).
    if let Err(e) = proxy::cleanup(&proxy::ProxyConfig::default()) {
        eprintln!("peapod: removing service rules: {e}");
    }
    if let Err(e) = podnet::cleanup(&podnet::host::Commands::default()) {
        eprintln!("peapod: removing the pod network's masquerade rule: {e}");
    }
    dns::cleanup_if_unused(&dns::DnsConfig::default());
    apiserver::remove_cluster_address_if_unused(apiserver::KUBERNETES_SERVICE_ADDR);
    let runtime = runtime::Runtime::new(runtime::RuntimeConfig::new(
        state_dir.clone(),
        std::env::current_exe().context("locating the peapod binary")?,
    ))
    .context("opening the runtime state")?;
    runtime.reset().await.context("stopping pods")?;
    // kubepods and its QoS tiers go once no pod of any node agent of this machine is left.
    if let Some(cgroups) = crate::process::pod_cgroups(runtime.config()) {
        if let Err(e) = cgroups.remove_unused() {
            eprintln!("peapod: removing the QoS cgroups: {e}");
        }
    }
    // tmpfs and bind mounts of volumes live on the host, under the state dir.
    if let Err(errs) = volumes::unmount_all(&state_dir) {
        for e in errs {
            eprintln!("peapod: unmounting volumes: {e}");
        }
    }
    fs::remove_dir_all(&state_dir)
        .or_else(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(e)
            }
        })
        .with_context(|| format!("removing {}", state_dir.display()))?;
    println!("reset {}", state_dir.display());
    Ok(())
}

/// SIGTERM the `peapod up` or `peapod agent` recorded in the pid file, then SIGKILL if it lingers.
async fn stop_running_up(state_dir: &std::path::Path) {
    let Ok(text) = fs::read_to_string(state_dir.join("peapod.pid")) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    let pid = Pid::from_raw(pid);
    if !is_peapod(pid) {
        return;
    }
    let _ = kill(pid, Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if kill(pid, None).is_err() || !is_peapod(pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = kill(pid, Signal::SIGKILL);
}

/// Guards against a stale pid file naming an unrelated process.
fn is_peapod(pid: Pid) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .nth(1)
                .is_some_and(|a| a == b"up" || a == b"agent")
        })
        .unwrap_or(false)
}
