//! Starting the shim of a pod with `shareProcessNamespace`: the process we spawn only
//! creates the pod's PID namespace, forks the real shim as its PID 1, records that pid in
//! `shim.pid` and exits (see `shim::pidns`). The runtime waits for that exit and then adopts
//! the recorded pid, exactly as it adopts shims after an agent restart.

use std::time::Duration;

use shim::protocol::{read_json, PodDir};

use crate::records::ShimPid;
use crate::RuntimeError;

/// Waits for the intermediate shim process to exit and returns the pid it recorded.
pub async fn wait_for_forked_shim(
    mut child: tokio::process::Child,
    pod: &PodDir,
    timeout: Duration,
) -> Result<u32, RuntimeError> {
    let shim_err = |message: String| RuntimeError::Shim {
        id: pod
            .root()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        message,
    };
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(shim_err(format!("waiting for the shim to fork: {e}"))),
        Err(_) => {
            let _ = child.start_kill();
            return Err(shim_err(
                "the shim did not fork its PID namespace in time".into(),
            ));
        }
    };
    if !status.success() {
        let log = std::fs::read_to_string(pod.shim_log()).unwrap_or_default();
        let last = log.lines().last().unwrap_or_default().to_string();
        return Err(shim_err(format!(
            "creating the pod PID namespace failed ({status}): {last}"
        )));
    }
    match read_json::<ShimPid>(&pod.shim_pid()) {
        Ok(Some(p)) => Ok(p.pid),
        Ok(None) => Err(shim_err("the shim recorded no pid".into())),
        Err(e) => Err(shim_err(format!("reading shim.pid: {e}"))),
    }
}
