//! Starting the shim of a pod with `shareProcessNamespace`: the process we spawn only
//! creates the pod's PID namespace, forks the real shim as its PID 1, records that pid in
//! `shim.pid` and exits (see `shim::pidns`). The runtime waits for that exit and then adopts
//! the recorded pid, exactly as it adopts shims after an agent restart.

use std::time::Duration;

use shim::protocol::{read_json, PodDir};

use crate::error::ShimStartError;
use crate::records::ShimPid;

/// Waits for the intermediate shim process to exit and returns the pid it recorded.
pub async fn wait_for_forked_shim(
    mut child: tokio::process::Child,
    pod: &PodDir,
    timeout: Duration,
) -> Result<u32, ShimStartError> {
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(source)) => return Err(ShimStartError::Wait { source }),
        Err(_) => {
            let _ = child.start_kill();
            return Err(ShimStartError::ForkTimedOut { timeout });
        }
    };
    if !status.success() {
        let log = std::fs::read_to_string(pod.shim_log()).unwrap_or_default();
        let log_tail = log.lines().last().unwrap_or_default().to_string();
        return Err(ShimStartError::PidNamespace { status, log_tail });
    }
    match read_json::<ShimPid>(&pod.shim_pid()) {
        Ok(Some(p)) => Ok(p.pid),
        Ok(None) => Err(ShimStartError::NoPid),
        Err(source) => Err(ShimStartError::PidFile {
            path: pod.shim_pid(),
            source,
        }),
    }
}
