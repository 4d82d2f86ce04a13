//! Releasing a pod sandbox, the one way every caller does it (a pod worker's stale or
//! finished sandbox, an orphan found at startup): stop it, then remove it; the runtime
//! releases its network (CNI DEL) as it stops it. Both steps run even when the first failed,
//! a sandbox that is already gone counts as released, and running it again finishes what a
//! failed run left.

use runtime::{RuntimeError, RuntimeService};

/// One step of `teardown` that failed; the other step ran anyway.
#[derive(Debug, thiserror::Error)]
pub enum TeardownError {
    #[error("stopping sandbox {id}")]
    Stop {
        id: String,
        #[source]
        source: RuntimeError,
    },
    #[error("removing sandbox {id}")]
    Remove {
        id: String,
        #[source]
        source: RuntimeError,
    },
}

/// Stops and removes sandbox `id`; `Err` lists every step that failed.
/// Stops a sandbox (network, processes) without removing it: what the kubelet's
/// StopPodSandbox leaves, the files and cgroups, can go after the API object has.
pub async fn stop(runtime: &dyn RuntimeService, id: &str) -> Result<(), TeardownError> {
    match runtime.stop_pod_sandbox(id).await {
        Ok(()) | Err(RuntimeError::SandboxNotFound { .. }) => Ok(()),
        Err(source) => Err(TeardownError::Stop {
            id: id.to_string(),
            source,
        }),
    }
}

pub async fn teardown(runtime: &dyn RuntimeService, id: &str) -> Result<(), Vec<TeardownError>> {
    let gone = |r: Result<(), RuntimeError>| match r {
        Err(RuntimeError::SandboxNotFound { .. }) => Ok(()),
        other => other,
    };
    let mut errors = Vec::new();
    if let Err(source) = gone(runtime.stop_pod_sandbox(id).await) {
        errors.push(TeardownError::Stop {
            id: id.to_string(),
            source,
        });
    }
    if let Err(source) = gone(runtime.remove_pod_sandbox(id).await) {
        errors.push(TeardownError::Remove {
            id: id.to_string(),
            source,
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Logs each failed step of a teardown with its causes.
pub fn log_teardown(result: Result<(), Vec<TeardownError>>, what: &str) {
    for err in result.err().into_iter().flatten() {
        tracing::warn!(error = %error_chain(&err), "{what}");
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testsupport::{FakeClock, FakeRuntime};

    #[tokio::test]
    async fn teardown_keeps_going_and_counts_gone_as_released() {
        let rt = FakeRuntime::new(FakeClock::new());
        let id = rt
            .run_pod_sandbox(&runtime::PodSandboxConfig::default())
            .await
            .expect("sandbox")
            .id;
        // A failed stop is reported, and the removal still runs.
        rt.state.lock().expect("lock").stuck.insert(id.clone());
        let errors = teardown(rt.as_ref(), &id).await.expect_err("stop fails");
        assert!(
            matches!(errors.as_slice(), [TeardownError::Stop { .. }]),
            "{errors:?}"
        );
        assert!(rt.state.lock().expect("lock").sandboxes.is_empty());
        // Run again once it is gone: released, not an error.
        rt.state.lock().expect("lock").sandbox_not_found = true;
        teardown(rt.as_ref(), &id).await.expect("already gone");
        let calls = rt.calls();
        assert_eq!(
            calls
                .iter()
                .filter(|c| c.starts_with("remove_pod_sandbox"))
                .count(),
            2,
            "{calls:?}"
        );
    }
}
