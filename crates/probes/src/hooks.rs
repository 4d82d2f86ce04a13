//! Container lifecycle hooks (`postStart`, `preStop`) as kubelet's handler runner runs them:
//! `exec` through the runtime's exec, `httpGet` from inside the pod's network namespace
//! (same client as probes), `sleep` on the agent. Failures carry kubelet's messages, which
//! end up in `FailedPostStartHook` / `FailedPreStopHook` events.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};
use runtime::RuntimeService;

use crate::execute::{execute, Outcome, PodNet};
use crate::http::{self, HttpOutcome};
use crate::spec::{http_get, Handler, ProbeError};

/// Which hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    PostStart,
    PreStop,
}

impl Hook {
    pub fn of(self, c: &Container) -> Option<&LifecycleHandler> {
        let lc = c.lifecycle.as_ref()?;
        match self {
            Hook::PostStart => lc.post_start.as_ref(),
            Hook::PreStop => lc.pre_stop.as_ref(),
        }
    }
}

/// A failed hook, worded as kubelet reports it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HookError {
    #[error("Exec lifecycle hook ({command:?}) for Container {container:?} in Pod {pod:?} failed - error: {error}, message: {output:?}")]
    Exec {
        command: Vec<String>,
        container: String,
        pod: String,
        error: String,
        output: String,
    },
    #[error("HTTP lifecycle hook ({path}) for Container {container:?} in Pod {pod:?} failed - error: {error}")]
    Http {
        path: String,
        container: String,
        pod: String,
        error: String,
    },
    #[error("invalid lifecycle hook for Container {container:?}: {source}")]
    Invalid {
        container: String,
        #[source]
        source: ProbeError,
    },
    #[error("invalid lifecycle hook for Container {container:?}: no handler")]
    NoHandler { container: String },
}

/// kubelet's `<name>_<namespace>(<uid>)` pod reference in hook messages.
fn pod_ref(pod: &Pod) -> String {
    let m = &pod.metadata;
    format!(
        "{}_{}({})",
        m.name.as_deref().unwrap_or_default(),
        m.namespace.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default()
    )
}

/// Runs `handler` for container `id` within `timeout`.
pub async fn run_hook(
    runtime: &dyn RuntimeService,
    pod: &Pod,
    container: &Container,
    id: &str,
    handler: &LifecycleHandler,
    net: &PodNet,
    timeout: Duration,
) -> Result<(), HookError> {
    let name = container.name.clone();
    if let Some(sleep) = &handler.sleep {
        let secs = u64::try_from(sleep.seconds).unwrap_or(0);
        tokio::time::sleep(Duration::from_secs(secs).min(timeout)).await;
        return Ok(());
    }
    if let Some(exec) = &handler.exec {
        let command = exec.command.clone().unwrap_or_default();
        let h = Handler::Exec {
            command: command.clone(),
        };
        return match execute(runtime, id, &h, net, timeout).await {
            Outcome::Success | Outcome::Warning(_) => Ok(()),
            Outcome::Failure(output) => Err(HookError::Exec {
                error: format!(
                    "command '{}' exited with a non-zero code",
                    command.join(" ")
                ),
                command,
                container: name,
                pod: pod_ref(pod),
                output,
            }),
            Outcome::Error(error) => Err(HookError::Exec {
                command,
                container: name,
                pod: pod_ref(pod),
                error,
                output: String::new(),
            }),
        };
    }
    if let Some(get) = &handler.http_get {
        let mut req = http_get(get, container).map_err(|source| HookError::Invalid {
            container: name.clone(),
            source,
        })?;
        if req.host.is_empty() {
            req.host = net.default_host();
        }
        // kubelet's `runHTTPHandler` fails a hook only when the request could not be made:
        // whatever status the server answers with, the hook ran.
        return match http::get(&net.dialer, &req, timeout).await {
            HttpOutcome::Success(_) | HttpOutcome::Warning(_) | HttpOutcome::BadStatus(_) => Ok(()),
            HttpOutcome::Failure(error) => Err(HookError::Http {
                path: req.path,
                container: name,
                pod: pod_ref(pod),
                error,
            }),
        };
    }
    Err(HookError::NoHandler { container: name })
}
