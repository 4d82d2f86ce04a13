//! Test doubles: an in-memory `RuntimeService` whose containers exit when a test says so, a
//! recording `PodApi`, and a settable clock. Only compiled for tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use jiff::Timestamp;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestStatus};
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, PersistentVolume, PersistentVolumeClaim, PodStatus, Secret, Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use runtime::{
    ContainerConfig, ContainerState, ContainerStatus, ImageConfig, ImageInfo, PodSandboxConfig,
    PodSandboxStatus, RuntimeError, RuntimeService, SandboxState,
};

use podapi::Clock;
use podapi::{ApiError, PodApi};

/// A clock tests move by hand.
#[derive(Clone)]
pub struct FakeClock(pub Arc<Mutex<Timestamp>>);

impl FakeClock {
    pub fn new() -> Self {
        Self(Arc::new(Mutex::new(
            Timestamp::from_second(1_700_000_000).expect("time"),
        )))
    }
    pub fn advance(&self, d: Duration) {
        let mut t = self.0.lock().expect("clock");
        *t = t
            .checked_add(jiff::SignedDuration::try_from(d).expect("duration"))
            .expect("time");
    }
}

impl Clock for FakeClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock")
    }
}

#[derive(Default)]
pub struct FakeState {
    pub images: HashMap<String, ImageInfo>,
    /// References whose pull fails.
    pub broken: HashSet<String>,
    pub sandboxes: HashMap<String, PodSandboxStatus>,
    pub containers: HashMap<String, ContainerStatus>,
    pub calls: Vec<String>,
    /// Exit code a container gets when stopped.
    pub stop_exit: i32,
    /// What `exec_sync` answers, by container name (default: exit 0, no output).
    pub exec_results: HashMap<String, runtime::ExecSyncResult>,
    /// Stopping or removing a sandbox the fake does not hold fails with `SandboxNotFound`.
    pub sandbox_not_found: bool,
    /// Sandboxes whose stop fails (`SandboxNotRunning`).
    pub stuck: HashSet<String>,
    /// What `image_fs_stats` answers.
    pub image_fs: runtime::FsStats,
    next: u64,
}

/// In-memory runtime.
pub struct FakeRuntime {
    pub state: Mutex<FakeState>,
    pub clock: FakeClock,
    /// Images `pull_image` can fetch.
    pub registry: Mutex<HashMap<String, ImageInfo>>,
}

pub fn image(reference: &str) -> ImageInfo {
    ImageInfo {
        id: format!("sha256:{:0>64}", reference.len()),
        repo_tags: vec![reference.to_string()],
        repo_digests: vec![format!(
            "{}@sha256:{:0>64}",
            reference.split(':').next().unwrap_or(reference),
            7
        )],
        size_bytes: 1234,
        config: ImageConfig {
            entrypoint: vec!["/bin/sh".into()],
            ..Default::default()
        },
    }
}

impl FakeRuntime {
    pub fn new(clock: FakeClock) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(FakeState {
                stop_exit: 143,
                ..Default::default()
            }),
            clock,
            registry: Mutex::new(HashMap::new()),
        })
    }

    pub fn with_registry_image(&self, reference: &str) {
        self.registry
            .lock()
            .expect("lock")
            .insert(reference.to_string(), image(reference));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake runtime lock")
    }

    /// Makes the running attempt of container `name` exit with `code`.
    pub fn exit(&self, name: &str, code: i32) {
        let now = self.clock.now();
        let mut st = self.lock();
        for c in st.containers.values_mut() {
            if c.config.name == name && c.state == ContainerState::Running {
                c.state = ContainerState::Exited;
                c.exit_code = Some(code);
                c.finished_at = Some(now);
                c.reason = Some(if code == 0 { "Completed" } else { "Error" }.to_string());
            }
        }
    }

    pub fn containers_named(&self, name: &str) -> Vec<ContainerStatus> {
        let mut v: Vec<_> = self
            .lock()
            .containers
            .values()
            .filter(|c| c.config.name == name)
            .cloned()
            .collect();
        v.sort_by_key(|c| c.config.attempt);
        v
    }

    pub fn calls(&self) -> Vec<String> {
        self.lock().calls.clone()
    }
}

#[async_trait]
impl RuntimeService for FakeRuntime {
    async fn pull_image(
        &self,
        reference: &str,
        auth: Option<&runtime::Credentials>,
    ) -> Result<ImageInfo, RuntimeError> {
        let found = self.registry.lock().expect("lock").get(reference).cloned();
        let mut st = self.lock();
        match auth {
            Some(c) => st.calls.push(format!("pull {reference} as {}", c.username)),
            None => st.calls.push(format!("pull {reference}")),
        }
        match found {
            Some(info) if !st.broken.contains(reference) => {
                st.images.insert(reference.to_string(), info.clone());
                Ok(info)
            }
            _ => Err(RuntimeError::PullImage {
                reference: reference.to_string(),
                source: Box::new(images::ImageError::NotFound {
                    reference: reference.to_string(),
                }),
            }),
        }
    }

    async fn image_status(&self, reference: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        Ok(self.lock().images.get(reference).cloned())
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn remove_image(&self, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("remove_image {id}"));
        st.images.retain(|_, info| info.id != id);
        Ok(())
    }

    async fn image_fs_stats(&self) -> Result<runtime::FsStats, RuntimeError> {
        Ok(self.lock().image_fs)
    }

    async fn run_pod_sandbox(
        &self,
        config: &PodSandboxConfig,
    ) -> Result<PodSandboxStatus, RuntimeError> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.next += 1;
        let id = format!("sb{}", st.next);
        st.calls.push(format!("run_pod_sandbox {}", config.name));
        let status = PodSandboxStatus {
            id: id.clone(),
            config: config.clone(),
            state: SandboxState::Ready,
            created_at: now,
            pid: Some(1),
            netns_path: None,
            ips: Vec::new(),
        };
        st.sandboxes.insert(id, status.clone());
        Ok(status)
    }

    async fn stop_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.calls.push(format!("stop_pod_sandbox {id}"));
        if st.sandbox_not_found && !st.sandboxes.contains_key(id) {
            return Err(RuntimeError::SandboxNotFound { id: id.to_string() });
        }
        if st.stuck.contains(id) {
            return Err(RuntimeError::SandboxNotRunning { id: id.to_string() });
        }
        for c in st
            .containers
            .values_mut()
            .filter(|c| c.sandbox_id == id && c.state == ContainerState::Running)
        {
            c.state = ContainerState::Exited;
            c.exit_code = Some(137);
            c.finished_at = Some(now);
        }
        if let Some(s) = st.sandboxes.get_mut(id) {
            s.state = SandboxState::NotReady;
        }
        Ok(())
    }

    async fn remove_pod_sandbox(&self, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("remove_pod_sandbox {id}"));
        if st.sandbox_not_found && !st.sandboxes.contains_key(id) {
            return Err(RuntimeError::SandboxNotFound { id: id.to_string() });
        }
        st.sandboxes.remove(id);
        st.containers.retain(|_, c| c.sandbox_id != id);
        Ok(())
    }

    async fn list_pod_sandboxes(&self) -> Result<Vec<PodSandboxStatus>, RuntimeError> {
        Ok(self.lock().sandboxes.values().cloned().collect())
    }

    async fn create_container(
        &self,
        sandbox_id: &str,
        config: &ContainerConfig,
    ) -> Result<String, RuntimeError> {
        let now = self.clock.now();
        let mut st = self.lock();
        let Some(sandbox) = st.sandboxes.get(sandbox_id).cloned() else {
            return Err(RuntimeError::SandboxNotFound {
                id: sandbox_id.to_string(),
            });
        };
        st.next += 1;
        let id = format!("{:0>64}", st.next);
        st.calls.push(format!(
            "create_container {} {}",
            config.name, config.attempt
        ));
        st.containers.insert(
            id.clone(),
            ContainerStatus {
                id: id.clone(),
                sandbox_id: sandbox_id.to_string(),
                config: config.clone(),
                state: ContainerState::Created,
                created_at: now,
                started_at: None,
                finished_at: None,
                exit_code: None,
                reason: None,
                message: None,
                pid: None,
                log_path: sandbox.config.log_directory.join(&config.log_path),
                user: None,
            },
        );
        Ok(id)
    }

    async fn update_container_resources(
        &self,
        id: &str,
        resources: &runtime::LinuxResources,
        annotations: &std::collections::BTreeMap<String, String>,
    ) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("update_container_resources {id}"));
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        if c.state != ContainerState::Running {
            return Err(RuntimeError::ContainerNotRunning { id: id.to_string() });
        }
        c.config.resources = resources.clone();
        c.config.annotations.extend(annotations.clone());
        Ok(())
    }

    async fn update_pod_sandbox_resources(
        &self,
        id: &str,
        resources: &runtime::LinuxResources,
    ) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("update_pod_sandbox_resources {id}"));
        let s = st
            .sandboxes
            .get_mut(id)
            .ok_or_else(|| RuntimeError::SandboxNotFound { id: id.to_string() })?;
        s.config.resources = resources.clone();
        Ok(())
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.calls.push(format!("start_container {id}"));
        let c = st
            .containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        c.state = ContainerState::Running;
        c.started_at = Some(now);
        Ok(())
    }

    async fn stop_container(&self, id: &str, timeout: Duration) -> Result<(), RuntimeError> {
        let now = self.clock.now();
        let mut st = self.lock();
        st.calls
            .push(format!("stop_container {id} {}", timeout.as_secs()));
        let code = st.stop_exit;
        if let Some(c) = st.containers.get_mut(id) {
            if c.state != ContainerState::Exited {
                c.state = ContainerState::Exited;
                c.exit_code = Some(code);
                c.finished_at = Some(now);
                c.reason = Some("Error".into());
            }
        }
        Ok(())
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut st = self.lock();
        st.calls.push(format!("remove_container {id}"));
        st.containers.remove(id);
        Ok(())
    }

    async fn list_containers(
        &self,
        sandbox_id: Option<&str>,
    ) -> Result<Vec<ContainerStatus>, RuntimeError> {
        Ok(self
            .lock()
            .containers
            .values()
            .filter(|c| sandbox_id.is_none_or(|s| c.sandbox_id == s))
            .cloned()
            .collect())
    }

    async fn container_status(&self, id: &str) -> Result<ContainerStatus, RuntimeError> {
        self.lock()
            .containers
            .get(id)
            .cloned()
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })
    }

    async fn exec_sync(
        &self,
        id: &str,
        cmd: &[String],
        _timeout: Duration,
    ) -> Result<runtime::ExecSyncResult, RuntimeError> {
        let mut st = self.lock();
        let name = st
            .containers
            .get(id)
            .filter(|c| c.state == ContainerState::Running)
            .map(|c| c.config.name.clone())
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        st.calls.push(format!("exec {name} {}", cmd.join(" ")));
        Ok(st.exec_results.get(&name).cloned().unwrap_or_default())
    }
}

/// What the fake API saw.
#[derive(Default)]
pub struct FakeApiState {
    pub statuses: Vec<PodStatus>,
    /// (type, reason, message, count)
    pub events: Vec<(String, String, String, i32)>,
    pub event_names: Vec<String>,
    /// `involvedObject.fieldPath` of each created event.
    pub field_paths: Vec<String>,
    pub deleted: Vec<(String, String, String)>,
    pub config_maps: HashMap<String, ConfigMap>,
    pub secrets: HashMap<String, Secret>,
    /// Services by namespace.
    pub services: HashMap<String, Vec<Service>>,
    /// (namespace, service account, request) of each token request.
    pub token_requests: Vec<(String, String, TokenRequest)>,
    /// When issued tokens expire, as the clock says now plus their lifetime.
    pub token_clock: Option<FakeClock>,
    pub claims: HashMap<String, PersistentVolumeClaim>,
    pub persistent_volumes: HashMap<String, PersistentVolume>,
    pub runtime_classes: HashMap<String, k8s_openapi::api::node::v1::RuntimeClass>,
    /// Status writes and events (created or counted again) in the order they reached the
    /// API (`status <phase>`, `event <reason>`).
    pub writes: Vec<String>,
    /// How long each event creation or update takes (an API server that answers slowly).
    pub event_delay: Option<std::time::Duration>,
}

#[derive(Default)]
pub struct FakeApi(pub Mutex<FakeApiState>);

impl FakeApi {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, FakeApiState> {
        self.0.lock().expect("fake api lock")
    }
    pub fn reasons(&self) -> Vec<String> {
        self.lock().events.iter().map(|e| e.1.clone()).collect()
    }
    pub fn messages(&self) -> Vec<String> {
        self.lock().events.iter().map(|e| e.2.clone()).collect()
    }
    pub fn last_status(&self) -> Option<PodStatus> {
        self.lock().statuses.last().cloned()
    }
}

#[async_trait]
impl PodApi for FakeApi {
    async fn patch_pod_status(&self, _: &str, _: &str, status: &PodStatus) -> Result<(), ApiError> {
        let mut st = self.lock();
        let phase = status.phase.clone().unwrap_or_default();
        st.writes.push(format!("status {phase}"));
        st.statuses.push(status.clone());
        Ok(())
    }
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        self.lock()
            .deleted
            .push((namespace.into(), name.into(), uid.into()));
        Ok(())
    }
    async fn create_event(&self, event: &Event) -> Result<(), ApiError> {
        let delay = self.lock().event_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.lock();
        let reason = event.reason.clone().unwrap_or_default();
        st.writes.push(format!("event {reason}"));
        st.events.push((
            event.type_.clone().unwrap_or_default(),
            event.reason.clone().unwrap_or_default(),
            event.message.clone().unwrap_or_default(),
            event.count.unwrap_or(0),
        ));
        st.event_names
            .push(event.metadata.name.clone().unwrap_or_default());
        st.field_paths
            .push(event.involved_object.field_path.clone().unwrap_or_default());
        Ok(())
    }
    async fn patch_event(&self, _: &str, name: &str, count: i32, _: &Time) -> Result<(), ApiError> {
        let delay = self.lock().event_delay;
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        let mut st = self.lock();
        if let Some(i) = st.event_names.iter().position(|n| n == name) {
            st.events[i].3 = count;
            let reason = st.events[i].1.clone();
            st.writes.push(format!("event {reason}"));
        }
        Ok(())
    }
    async fn get_config_map(&self, _: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        Ok(self.lock().config_maps.get(name).cloned())
    }
    async fn get_secret(&self, _: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        Ok(self.lock().secrets.get(name).cloned())
    }
    /// Issues `token-<n>` (n counts the requests) expiring after the requested lifetime.
    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ApiError> {
        let mut st = self.lock();
        st.token_requests
            .push((namespace.into(), service_account.into(), request.clone()));
        let now = st
            .token_clock
            .as_ref()
            .map_or_else(Timestamp::now, |c| c.now());
        let ttl = request.spec.expiration_seconds.unwrap_or(3600);
        let mut out = request.clone();
        out.status = Some(TokenRequestStatus {
            token: format!("token-{}", st.token_requests.len()),
            expiration_timestamp: Time(now + jiff::SignedDuration::from_secs(ttl)),
        });
        Ok(out)
    }
    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        Ok(self
            .lock()
            .services
            .get(namespace)
            .cloned()
            .unwrap_or_default())
    }

    async fn get_persistent_volume_claim(
        &self,
        _: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ApiError> {
        Ok(self.lock().claims.get(name).cloned())
    }
    async fn get_persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, ApiError> {
        Ok(self.lock().persistent_volumes.get(name).cloned())
    }
    async fn get_runtime_class(
        &self,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::node::v1::RuntimeClass>, ApiError> {
        Ok(self.lock().runtime_classes.get(name).cloned())
    }
}
