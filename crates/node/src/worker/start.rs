//! Starting things, kubelet's `SyncPod` second half: the sandbox (with its network), and
//! each container attempt: the image per `imagePullPolicy` and the pull back-off, the
//! config from the spec and its environment, the volume mounts, create, start, and the
//! postStart hook. Every failure becomes the container's waiting reason and an event, in
//! the one place runtime errors become kubelet reasons.

use std::time::{Duration, Instant};

use imagepull::{pull_policy, PullFailure, PullPolicy};
use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::{ImageInfo, PodSandboxStatus, RuntimeError};

use super::deps::{PendingEvents, WorkerDeps};
use super::env::{container_context, env_sources, sandbox_config};
use super::observe::sandbox_net;
use super::plan::grace_period;
use super::state::WorkerState;
use super::volumes::apply_volume_mounts;
use crate::backoff::go_duration;
use crate::podstatus::Waiting;
use crate::termination;
use containerspec::{BuildInput, ContainerSpecError};
use podapi::ApiError;
use podapi::EventType;
use probes::{run_hook, Hook, HookError};
use volumes::VolumeError;

/// How long after a failed `RunPodSandbox` the pod is synced again.
const SANDBOX_RETRY: Duration = Duration::from_secs(10);

/// Why a container attempt did not run; its waiting reason and event are recorded already.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("image {image:?} is not available ({reason})")]
    Image { image: String, reason: String },
    #[error("reading the container's env sources")]
    EnvSources(#[source] ApiError),
    #[error("building the container's config")]
    Config(#[source] ContainerSpecError),
    #[error("mounting the container's volumes")]
    Volumes(#[source] VolumeError),
    #[error("creating the container")]
    Create(#[source] RuntimeError),
    #[error("starting the container")]
    Start(#[source] RuntimeError),
    #[error("the postStart hook failed")]
    PostStart(#[source] HookError),
}

/// Where in starting a container a runtime call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartStage {
    Pull,
    Create,
    Start,
}

/// The one place runtime failures become kubelet waiting reasons.
pub fn waiting_for_runtime_error(stage: StartStage, err: &RuntimeError) -> Waiting {
    let message = err.container_message();
    let reason = match (stage, err) {
        (StartStage::Pull, _)
        | (_, RuntimeError::ImageNotFound { .. } | RuntimeError::PullImage { .. }) => {
            "ErrImagePull"
        }
        (StartStage::Create, _) => "CreateContainerError",
        (StartStage::Start, _) => "RunContainerError",
    };
    Waiting::new(reason, message)
}

/// Runs attempt `attempt` of the pod's sandbox, which comes back attached to the pod
/// network with its IPs. `Err` carries when to retry; the failure is recorded
/// (`FailedCreatePodSandBox`).
pub async fn create_sandbox(
    deps: &WorkerDeps,
    pod: &Pod,
    attempt: u32,
) -> Result<PodSandboxStatus, Duration> {
    let mut config = sandbox_config(deps, pod, attempt);
    match runtime_handler(deps, pod).await {
        Ok(handler) => config.runtime_handler = handler,
        Err(err) => return Err(sandbox_failed(deps, pod, &err).await),
    }
    match deps.user_namespace(pod) {
        Ok(ids) => config.user_namespace = ids,
        // The pod is never run as host root in place of the namespace it asked for.
        Err(err) => return Err(sandbox_failed(deps, pod, &err).await),
    }
    let created = deps.runtime.run_pod_sandbox(&config).await;
    deps.sandboxes.invalidate();
    match created {
        Ok(status) => Ok(status),
        Err(err) => Err(sandbox_failed(deps, pod, &err).await),
    }
}

/// Records why the sandbox was not created (kubelet's `FailedCreatePodSandBox` event) and
/// says when to try again.
async fn sandbox_failed(
    deps: &WorkerDeps,
    pod: &Pod,
    err: &(dyn std::fmt::Display + Sync),
) -> Duration {
    let msg = format!("Failed to create pod sandbox: {err}");
    deps.event(
        pod,
        None,
        EventType::Warning,
        "FailedCreatePodSandBox",
        &msg,
    )
    .await;
    SANDBOX_RETRY
}

/// Why the pod's RuntimeClass gave no handler.
#[derive(Debug, thiserror::Error)]
pub enum HandlerLookupError {
    /// The API's not-found text, which kubelet reports as it is.
    #[error("runtimeclass.node.k8s.io {0:?} not found")]
    NotFound(String),
    #[error("failed to lookup RuntimeClass {name}: {source}")]
    Lookup {
        name: String,
        #[source]
        source: ApiError,
    },
}

/// The runtime handler the pod's RuntimeClass names (kubelet's `LookupRuntimeHandler`): the
/// default (empty) handler for a pod that names no class. The kubelet reads the class from
/// its watch cache; the agent asks the API server when it creates the sandbox, which sees
/// the same class.
async fn runtime_handler(deps: &WorkerDeps, pod: &Pod) -> Result<String, HandlerLookupError> {
    let Some(name) = pod
        .spec
        .as_ref()
        .and_then(|s| s.runtime_class_name.as_deref())
        .filter(|n| !n.is_empty())
    else {
        return Ok(String::new());
    };
    match deps.api.get_runtime_class(name).await {
        Ok(Some(class)) => Ok(class.handler),
        Ok(None) => Err(HandlerLookupError::NotFound(name.to_string())),
        Err(source) => Err(HandlerLookupError::Lookup {
            name: name.to_string(),
            source,
        }),
    }
}

/// Starts a created container and records `Started` (also one created but never started:
/// the agent died in between).
pub async fn start_created(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
    id: &str,
    name: &str,
) -> Result<(), StartError> {
    if let Err(err) = deps.runtime.start_container(id).await {
        start_failed(deps, state, pod, name, id, &err);
        return Err(StartError::Start(err));
    }
    let msg = format!("Started container {name}");
    deps.event_soon(
        &mut state.events,
        pod,
        Some(name),
        EventType::Normal,
        "Started",
        &msg,
    );
    Ok(())
}

/// A container that was created but did not start: the `Failed` event, its back-off and
/// `namespace/name`, as the node's log names a pod.
fn logged_name(pod: &Pod) -> String {
    let (ns, name, _) = super::plan::pod_key(pod);
    format!("{ns}/{name}")
}

/// kubelet's waiting reason.
fn start_failed(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
    name: &str,
    id: &str,
    err: &RuntimeError,
) {
    let now = deps.clock.now();
    let w = waiting_for_runtime_error(StartStage::Start, err);
    tracing::warn!(pod = %logged_name(pod), container = name, error = %err, "starting the container failed");
    deps.event_soon(
        &mut state.events,
        pod,
        Some(name),
        EventType::Warning,
        "Failed",
        &format!("Error: {}", w.message),
    );
    state.failed_starts.insert(id.to_string(), now);
    state
        .restart_backoff
        .next(&super::plan::restart_backoff_key(pod, name), now);
    state.waiting.insert(name.to_string(), w);
}

/// A container that could not be created: the `Failed` warning event kubelet records, and
/// the waiting reason its status shows until the next attempt.
fn create_failed(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
    name: &str,
    event_message: &str,
    waiting: Waiting,
) {
    tracing::warn!(pod = %logged_name(pod), container = name, reason = %waiting.reason, "{event_message}");
    deps.event_soon(
        &mut state.events,
        pod,
        Some(name),
        EventType::Warning,
        "Failed",
        event_message,
    );
    state.waiting.insert(name.to_string(), waiting);
}

/// Pulls (per policy), builds, creates and starts one container attempt; failures are
/// recorded as the container's waiting reason and as events.
pub async fn start_container(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
    container: &Container,
    sandbox: &PodSandboxStatus,
    attempt: u32,
    pid_target: Option<String>,
) -> Result<(), StartError> {
    let name = container.name.as_str();
    let t = Instant::now();
    let image = ensure_image(deps, state, pod, container).await;
    deps.metrics.phase("image", t.elapsed());
    if state.starting.is_some() {
        state.image_time += t.elapsed();
    }
    let image = match image {
        Ok(info) => info,
        Err(w) => {
            let text = format!("Error: {}", w.reason);
            let err = StartError::Image {
                image: container.image.clone().unwrap_or_default(),
                reason: w.reason.clone(),
            };
            create_failed(deps, state, pod, name, &text, w);
            return Err(err);
        }
    };
    let t = Instant::now();
    let sources = match env_sources(deps, pod, container).await {
        Ok(s) => s,
        Err(err) => {
            let message = err.to_string();
            let text = format!("Error: {message}");
            let w = Waiting::new("CreateContainerConfigError", message);
            create_failed(deps, state, pod, name, &text, w);
            return Err(StartError::EnvSources(err));
        }
    };
    let ctx = container_context(deps, pod, sandbox);
    let input = BuildInput {
        image: &image,
        attempt,
        ctx: &ctx,
        sources: &sources,
    };
    let mut config = match containerspec::build_container_config(pod, container, &input) {
        Ok(c) => c,
        Err(err) => {
            let reason = if err.is_config_error() {
                "CreateContainerConfigError"
            } else {
                "CreateContainerError"
            };
            let w = Waiting::new(reason, err.to_string());
            create_failed(deps, state, pod, name, &format!("Error: {err}"), w);
            return Err(StartError::Config(err));
        }
    };
    let handler = &sandbox.config.runtime_handler;
    if let Err(err) =
        apply_volume_mounts(deps, &state.volumes, pod, container, handler, &mut config)
    {
        let w = Waiting::new("CreateContainerConfigError", err.to_string());
        create_failed(deps, state, pod, name, &format!("Error: {err}"), w);
        return Err(StartError::Volumes(err));
    }
    termination::add_mount(&deps.log_root, pod, container, &mut config);
    config.pid_target = pid_target;
    deps.metrics.phase("spec", t.elapsed());
    let id = match deps.runtime.create_container(&sandbox.id, &config).await {
        Ok(id) => id,
        Err(err) => {
            let w = waiting_for_runtime_error(StartStage::Create, &err);
            let text = format!("Error: {}", w.message);
            create_failed(deps, state, pod, name, &text, w);
            return Err(StartError::Create(err));
        }
    };
    let msg = format!("Created container: {name}");
    deps.event_soon(
        &mut state.events,
        pod,
        Some(name),
        EventType::Normal,
        "Created",
        &msg,
    );
    start_created(deps, state, pod, &id, name).await?;
    state.waiting.remove(name);
    post_start(deps, state, pod, container, &id, sandbox).await
}

/// kubelet runs postStart right after the start and waits for it; a failed hook kills
/// the container (`FailedPostStartHook`), which is then restarted per policy.
async fn post_start(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
    container: &Container,
    id: &str,
    sandbox: &PodSandboxStatus,
) -> Result<(), StartError> {
    let Some(handler) = Hook::PostStart.of(container) else {
        return Ok(());
    };
    let name = container.name.as_str();
    let net = sandbox_net(deps, pod, Some(sandbox));
    let grace = grace_period(pod);
    let Err(err) = run_hook(
        deps.runtime.as_ref(),
        pod,
        container,
        id,
        handler,
        &net,
        grace,
    )
    .await
    else {
        return Ok(());
    };
    let msg = err.to_string();
    deps.event_soon(
        &mut state.events,
        pod,
        Some(name),
        EventType::Warning,
        "FailedPostStartHook",
        &msg,
    );
    deps.event_soon(
        &mut state.events,
        pod,
        Some(name),
        EventType::Normal,
        "Killing",
        "FailedPostStartHook",
    );
    if let Err(err) = deps.runtime.stop_container(id, grace).await {
        tracing::warn!(container = %id, error = %err, "stopping container after postStart failed");
    }
    state
        .waiting
        .insert(name.to_string(), Waiting::new("PostStartHookError", msg));
    Err(StartError::PostStart(err))
}

/// kubelet's `EnsureImageExists`: honours imagePullPolicy and the pull back-off, and pulls
/// through the node's shared puller with the pod's and the node's registry credentials.
async fn ensure_image(
    deps: &WorkerDeps,
    state: &mut WorkerState,
    pod: &Pod,
    container: &Container,
) -> Result<ImageInfo, Waiting> {
    let name = container.name.as_str();
    let image = container.image.clone().unwrap_or_default();
    let policy = pull_policy(container);
    let present = match deps.runtime.image_status(&image).await {
        Ok(p) => p,
        Err(err) => {
            tracing::warn!(image, error = %err, "image status failed");
            None
        }
    };
    let now = deps.clock.now();
    if let Some(info) = present.clone().filter(|_| policy != PullPolicy::Always) {
        let msg = format!("Container image {image:?} already present on machine");
        deps.event_soon(
            &mut state.events,
            pod,
            Some(name),
            EventType::Normal,
            "Pulled",
            &msg,
        );
        state.remember_image(&info);
        return Ok(info);
    }
    if policy == PullPolicy::Never {
        let msg = format!("Container image {image:?} is not present with pull policy of Never");
        deps.event_soon(
            &mut state.events,
            pod,
            Some(name),
            EventType::Warning,
            "ErrImageNeverPull",
            &msg,
        );
        return Err(Waiting::new("ErrImageNeverPull", msg));
    }
    if state
        .pull_backoff
        .remaining_since_update(&image, now)
        .is_some()
    {
        let msg = format!("Back-off pulling image {image:?}");
        deps.event_soon(
            &mut state.events,
            pod,
            Some(name),
            EventType::Normal,
            "BackOff",
            &msg,
        );
        let waiting = match state.pull_errors.get(&image) {
            Some(last) => format!("{msg}: {last}"),
            None => msg,
        };
        return Err(Waiting::new("ImagePullBackOff", waiting));
    }
    deps.event_soon(
        &mut state.events,
        pod,
        Some(name),
        EventType::Normal,
        "Pulling",
        &format!("Pulling image {image:?}"),
    );
    let pulled = match pull_credentials(deps, &mut state.events, pod, &image).await {
        Ok(candidates) => deps
            .pulls
            .puller
            .pull(&image, candidates)
            .await
            .map_err(|failure| match failure {
                PullFailure::Pull(err) => waiting_for_runtime_error(StartStage::Pull, &err),
                PullFailure::Interrupted => Waiting::new("ErrImagePull", failure.to_string()),
            }),
        Err(err) => Err(Waiting::new("ErrImagePull", error_chain(&err))),
    };
    match pulled {
        Ok(done) => {
            let msg = format!(
                "Successfully pulled image {image:?} in {} ({} including waiting). Image size: {} bytes.",
                go_duration(millis(done.pull_time)),
                go_duration(millis(done.total_time)),
                done.image.size_bytes
            );
            deps.event_soon(
                &mut state.events,
                pod,
                Some(name),
                EventType::Normal,
                "Pulled",
                &msg,
            );
            state.pull_backoff.reset(&image);
            state.pull_errors.remove(&image);
            state.remember_image(&done.image);
            Ok(done.image)
        }
        Err(w) => {
            let now = deps.clock.now();
            state.pull_backoff.next(&image, now);
            state.pull_errors.insert(image.clone(), w.message.clone());
            let msg = format!("Failed to pull image {image:?}: {}", w.message);
            deps.event_soon(
                &mut state.events,
                pod,
                Some(name),
                EventType::Warning,
                "Failed",
                &msg,
            );
            Err(w)
        }
    }
}

/// kubelet reports durations truncated to the millisecond.
fn millis(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An error with its causes, as one line.
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// The credentials to try for `image`: the pod's `imagePullSecrets` (kubelet's
/// `getPullSecretsForPod`: a Secret it cannot read is skipped with a
/// `FailedToRetrieveImagePullSecret` warning), then the node-wide configuration.
async fn pull_credentials(
    deps: &WorkerDeps,
    events: &mut PendingEvents,
    pod: &Pod,
    image: &str,
) -> Result<Vec<runtime::Credentials>, imagepull::SecretError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let refs = pod
        .spec
        .as_ref()
        .and_then(|s| s.image_pull_secrets.as_ref())
        .into_iter()
        .flatten()
        .map(|r| r.name.clone())
        .filter(|n| !n.is_empty());
    let (mut secrets, mut missing) = (Vec::new(), Vec::new());
    for name in refs {
        match deps.api.get_secret(&namespace, &name).await {
            Ok(Some(secret)) => secrets.push(secret),
            Ok(None) => missing.push(name),
            Err(err) => {
                tracing::info!(secret = name, error = %err, "unable to retrieve pull secret");
                missing.push(name);
            }
        }
    }
    if !missing.is_empty() {
        let msg = format!(
            "Unable to retrieve some image pull secrets ({}); attempting to pull the image may not succeed.",
            missing.join(", ")
        );
        deps.event_soon(
            events,
            pod,
            None,
            EventType::Warning,
            "FailedToRetrieveImagePullSecret",
            &msg,
        );
    }
    let pod_keyring = imagepull::keyring_from_secrets(&secrets)?;
    let node_keyring = deps.pulls.node_credentials.load()?;
    Ok(imagepull::credentials_for(
        image,
        &pod_keyring,
        &node_keyring,
    ))
}
