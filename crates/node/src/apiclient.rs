//! The narrow seam between pod workers and the Kubernetes API: the few calls kubelet's
//! status manager and event recorder make. One real implementation over `kube::Client`;
//! tests use a recording fake.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{ConfigMap, Event, PodStatus, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, Preconditions};

/// A failed API call, named for the operation.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("patching status of pod {namespace}/{name}")]
    PatchPodStatus {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("deleting pod {namespace}/{name}")]
    DeletePod {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("creating event {namespace}/{name}")]
    CreateEvent {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("patching event {namespace}/{name}")]
    PatchEvent {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("reading {kind} {namespace}/{name}")]
    Get {
        kind: &'static str,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// What a pod worker needs from the API server.
#[async_trait]
pub trait PodApi: Send + Sync + 'static {
    /// Writes the whole status through the `pods/status` subresource.
    async fn patch_pod_status(&self, namespace: &str, name: &str, status: &PodStatus) -> Result<(), ApiError>;
    /// Deletes the pod with grace period 0 and a uid precondition (kubelet's final delete);
    /// an already deleted pod is success.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError>;
    async fn create_event(&self, event: &Event) -> Result<(), ApiError>;
    /// Bumps an aggregated event's `count` and `lastTimestamp`.
    async fn patch_event(&self, namespace: &str, name: &str, count: i32, last: &Time) -> Result<(), ApiError>;
    async fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError>;
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError>;
}

/// `PodApi` over a `kube::Client`.
#[derive(Clone)]
pub struct KubePodApi {
    client: kube::Client,
}

impl KubePodApi {
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }
}

fn is_not_found(err: &kube::Error) -> bool {
    matches!(err, kube::Error::Api(status) if status.is_not_found())
}

#[async_trait]
impl PodApi for KubePodApi {
    async fn patch_pod_status(&self, namespace: &str, name: &str, status: &PodStatus) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        // A merge patch of the whole status: lists (conditions, containerStatuses) are
        // replaced as a unit, which is what a full status from the kubelet means.
        let patch = serde_json::json!({ "status": status });
        api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()).map_err(|source| {
            ApiError::PatchPodStatus { namespace: namespace.to_string(), name: name.to_string(), source }
        })
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions { uid: Some(uid.to_string()), resource_version: None }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            // A uid mismatch (409) means a new pod took the name: ours is gone.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => Err(ApiError::DeletePod { namespace: namespace.to_string(), name: name.to_string(), source }),
        }
    }

    async fn create_event(&self, event: &Event) -> Result<(), ApiError> {
        let namespace = event.metadata.namespace.clone().unwrap_or_else(|| "default".to_string());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), event).await.map(|_| ()).map_err(|source| ApiError::CreateEvent {
            namespace,
            name: event.metadata.name.clone().unwrap_or_default(),
            source,
        })
    }

    async fn patch_event(&self, namespace: &str, name: &str, count: i32, last: &Time) -> Result<(), ApiError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({ "count": count, "lastTimestamp": last });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await.map(|_| ()).map_err(|source| {
            ApiError::PatchEvent { namespace: namespace.to_string(), name: name.to_string(), source }
        })
    }

    async fn get_config_map(&self, namespace: &str, name: &str) -> Result<Option<ConfigMap>, ApiError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| ApiError::Get {
            kind: "configmap",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| ApiError::Get {
            kind: "secret",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
    }
}
