//! The narrow seam between pod workers and the Kubernetes API: the few calls kubelet's
//! status manager, event recorder, volume manager, token manager, service env and runtime
//! class manager make. One real implementation over `kube::Client`;
//! tests use a recording fake.

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, PersistentVolume, PersistentVolumeClaim, Pod, PodStatus, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};

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
    #[error("requesting a token for service account {namespace}/{name}")]
    CreateToken {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error(
        "the token request for service account {namespace}/{name} was answered without a token"
    )]
    NoToken { namespace: String, name: String },
    #[error("listing the services of namespace {namespace}")]
    ListServices {
        namespace: String,
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
    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodStatus,
    ) -> Result<(), ApiError>;
    /// Deletes the pod with grace period 0 and a uid precondition (kubelet's final delete);
    /// an already deleted pod is success.
    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError>;
    async fn create_event(&self, event: &Event) -> Result<(), ApiError>;
    /// Bumps an aggregated event's `count` and `lastTimestamp`.
    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        count: i32,
        last: &Time,
    ) -> Result<(), ApiError>;
    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError>;
    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError>;
    /// `POST serviceaccounts/<name>/token`: a token for the account (kubelet's token
    /// manager, for `serviceAccountToken` volume sources).
    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ApiError>;
    /// The Services of a namespace (for the env vars kubelet gives containers).
    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, ApiError>;
    async fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ApiError>;
    async fn get_persistent_volume(&self, name: &str)
        -> Result<Option<PersistentVolume>, ApiError>;
    /// The RuntimeClass a pod names, for its runtime handler (kubelet's runtime class
    /// manager).
    async fn get_runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>, ApiError>;
}

/// The node's whole status as a strategic merge patch, as the kubelet's status manager
/// sends it: `conditions` merge by type, so conditions other clients own (readiness gates,
/// `DisruptionTarget`) survive a write from a node that has not seen them yet, and an unset
/// reason or message of a condition is cleared; the address lists are replaced as a whole;
/// the other lists (container statuses) have no merge key and are replaced anyway.
/// Pod conditions the node sets only while they hold (kubelet v1.33's in-place resize).
const TRANSIENT_CONDITIONS: [&str; 2] = ["PodResizePending", "PodResizeInProgress"];

fn status_patch(status: &PodStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(conditions) = value
        .get_mut("conditions")
        .and_then(serde_json::Value::as_array_mut)
    {
        for c in conditions
            .iter_mut()
            .filter_map(serde_json::Value::as_object_mut)
        {
            for key in ["reason", "message"] {
                c.entry(key).or_insert(serde_json::Value::Null);
            }
        }
        // The resize conditions come and go: one the node no longer reports is removed.
        for kind in TRANSIENT_CONDITIONS {
            if !conditions.iter().any(|c| c["type"] == kind) {
                conditions.push(serde_json::json!({"type": kind, "$patch": "delete"}));
            }
        }
    }
    for key in ["podIPs", "hostIPs"] {
        if let Some(list) = value.get_mut(key).and_then(serde_json::Value::as_array_mut) {
            list.push(serde_json::json!({"$patch": "replace"}));
        }
    }
    value
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
    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodStatus,
    ) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({ "status": status_patch(status) });
        api.patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .map(|_| ())
            .map_err(|source| ApiError::PatchPodStatus {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            Err(err) if is_not_found(&err) => Ok(()),
            // A uid mismatch (409) means a new pod took the name: ours is gone.
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
            Err(source) => Err(ApiError::DeletePod {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            }),
        }
    }

    async fn create_event(&self, event: &Event) -> Result<(), ApiError> {
        let namespace = event
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        api.create(&PostParams::default(), event)
            .await
            .map(|_| ())
            .map_err(|source| ApiError::CreateEvent {
                namespace,
                name: event.metadata.name.clone().unwrap_or_default(),
                source,
            })
    }

    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        count: i32,
        last: &Time,
    ) -> Result<(), ApiError> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), namespace);
        let patch = serde_json::json!({ "count": count, "lastTimestamp": last });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map(|_| ())
            .map_err(|source| ApiError::PatchEvent {
                namespace: namespace.to_string(),
                name: name.to_string(),
                source,
            })
    }

    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError> {
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

    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ApiError> {
        let api: Api<ServiceAccount> = Api::namespaced(self.client.clone(), namespace);
        api.create_token_request(service_account, &PostParams::default(), request)
            .await
            .map_err(|source| ApiError::CreateToken {
                namespace: namespace.to_string(),
                name: service_account.to_string(),
                source,
            })
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        let api: Api<Service> = Api::namespaced(self.client.clone(), namespace);
        api.list(&ListParams::default())
            .await
            .map(|l| l.items)
            .map_err(|source| ApiError::ListServices {
                namespace: namespace.to_string(),
                source,
            })
    }

    async fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ApiError> {
        let api: Api<PersistentVolumeClaim> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name).await.map_err(|source| ApiError::Get {
            kind: "persistentvolumeclaim",
            namespace: namespace.to_string(),
            name: name.to_string(),
            source,
        })
    }

    async fn get_persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, ApiError> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        api.get_opt(name).await.map_err(|source| ApiError::Get {
            kind: "persistentvolume",
            namespace: String::new(),
            name: name.to_string(),
            source,
        })
    }

    async fn get_runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>, ApiError> {
        let api: Api<RuntimeClass> = Api::all(self.client.clone());
        api.get_opt(name).await.map_err(|source| ApiError::Get {
            kind: "runtimeclass",
            namespace: String::new(),
            name: name.to_string(),
            source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

    /// A kube client over a closure that records each request and answers canned JSON.
    fn mock(answer: fn(&str, &str) -> (u16, serde_json::Value)) -> (kube::Client, Seen) {
        let seen: Seen = Arc::default();
        let record = seen.clone();
        let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
            let record = record.clone();
            async move {
                let method = req.method().to_string();
                let uri = req.uri().to_string();
                let bytes = req.into_body().collect().await?.to_bytes();
                let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
                record
                    .lock()
                    .expect("lock")
                    .push((method.clone(), uri.clone(), body));
                let (code, json) = answer(&method, &uri);
                let resp = http::Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(http_body_util::Full::new(bytes::Bytes::from(
                        json.to_string(),
                    )))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(resp)
            }
        });
        (kube::Client::new(service, "default"), seen)
    }

    fn pod_json() -> serde_json::Value {
        serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "namespace": "ns1"}})
    }

    #[tokio::test]
    async fn status_patch_and_final_delete_requests() {
        let (client, seen) = mock(|_, _| (200, pod_json()));
        let api = KubePodApi::new(client);
        let status = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        api.patch_pod_status("ns1", "web", &status)
            .await
            .expect("patch");
        api.delete_pod("ns1", "web", "uid-9").await.expect("delete");
        let seen = seen.lock().expect("lock").clone();
        assert_eq!(seen[0].0, "PATCH");
        assert!(
            seen[0]
                .1
                .starts_with("/api/v1/namespaces/ns1/pods/web/status"),
            "{}",
            seen[0].1
        );
        assert_eq!(seen[0].2["status"]["phase"], "Running");
        assert_eq!(seen[1].0, "DELETE");
        assert!(
            seen[1].1.starts_with("/api/v1/namespaces/ns1/pods/web"),
            "{}",
            seen[1].1
        );
        assert_eq!(seen[1].2["gracePeriodSeconds"], 0);
        assert_eq!(seen[1].2["preconditions"]["uid"], "uid-9");
    }

    #[test]
    fn status_patch_merges_conditions_and_replaces_addresses() {
        let status: PodStatus = serde_json::from_value(serde_json::json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"},
                           {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady"}],
            "podIPs": [{"ip": "10.244.0.5"}]
        }))
        .expect("status");
        assert_eq!(
            status_patch(&status),
            serde_json::json!({
                "phase": "Running",
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": null, "message": null},
                    {"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "message": null},
                    {"type": "PodResizePending", "$patch": "delete"},
                    {"type": "PodResizeInProgress", "$patch": "delete"}],
                "podIPs": [{"ip": "10.244.0.5"}, {"$patch": "replace"}]
            })
        );
    }

    #[tokio::test]
    async fn delete_of_missing_pod_is_success_and_get_opt_maps_404() {
        let (client, _) = mock(|_, _| {
            (
                404,
                serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "not found"}),
            )
        });
        let api = KubePodApi::new(client);
        api.delete_pod("ns1", "web", "u")
            .await
            .expect("gone is fine");
        assert!(api
            .get_config_map("ns1", "cm")
            .await
            .expect("get")
            .is_none());
        let err = api
            .patch_pod_status("ns1", "web", &PodStatus::default())
            .await
            .expect_err("404");
        assert!(matches!(err, ApiError::PatchPodStatus { .. }));
    }
}
