//! Kubelet's event recorder: core/v1 Events about a pod (and its containers), with repeats
//! aggregated into one object whose `count` and `lastTimestamp` are patched, as client-go's
//! event correlator does. Recording is best effort: a failure is logged, never fatal.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

use crate::apiclient::PodApi;
use crate::clock::api_time;

/// `Normal` or `Warning`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    uid: String,
    field_path: String,
    event_type: EventType,
    reason: String,
    message: String,
}

#[derive(Debug, Clone)]
struct Seen {
    namespace: String,
    name: String,
    count: i32,
}

/// Records events for pods on one node.
pub struct EventRecorder {
    api: Arc<dyn PodApi>,
    node: String,
    seen: Mutex<HashMap<Key, Seen>>,
    sequence: AtomicU64,
    /// Where each recording's API round trip is observed (phase `event`).
    phases: Option<Arc<metrics::Family>>,
}

/// The field path kubelet puts in container events.
pub fn container_field_path(container: &str) -> String {
    format!("spec.containers{{{container}}}")
}

/// The field path of a container of `pod`: init containers are `spec.initContainers{name}`,
/// ephemeral ones `spec.ephemeralContainers{name}`.
pub fn pod_field_path(pod: &Pod, container: &str) -> String {
    let spec = pod.spec.as_ref();
    let is_init = spec
        .and_then(|s| s.init_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container));
    let is_ephemeral = spec
        .and_then(|s| s.ephemeral_containers.as_ref())
        .is_some_and(|l| l.iter().any(|c| c.name == container));
    if is_init {
        format!("spec.initContainers{{{container}}}")
    } else if is_ephemeral {
        format!("spec.ephemeralContainers{{{container}}}")
    } else {
        container_field_path(container)
    }
}

impl EventRecorder {
    pub fn new(api: Arc<dyn PodApi>, node: &str) -> Self {
        Self {
            api,
            node: node.to_string(),
            seen: Mutex::new(HashMap::new()),
            sequence: AtomicU64::new(0),
            phases: None,
        }
    }

    /// Observes how long each recording waits on the API, as phase `event` of `phases`.
    pub fn observed_by(mut self, phases: Arc<metrics::Family>) -> Self {
        self.phases = Some(phases);
        self
    }

    /// Records one event about `pod` (and container `container`, when given).
    pub async fn record(
        &self,
        pod: &Pod,
        container: Option<&str>,
        event_type: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let t = std::time::Instant::now();
        self.record_inner(pod, container, event_type, reason, message, now)
            .await;
        if let Some(f) = &self.phases {
            f.observe_with("event", t.elapsed());
        }
    }

    /// Records one event about this node itself (kubelet's `nodeRef`: kind Node, the node's
    /// name as its uid, in the `default` namespace), e.g. image GC's `FreeDiskSpaceFailed`.
    pub async fn record_node(
        &self,
        event_type: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let node = ObjectReference {
            kind: Some("Node".to_string()),
            name: Some(self.node.clone()),
            uid: Some(self.node.clone()),
            ..Default::default()
        };
        // A node event repeats for the agent's whole life with changing figures: only the
        // latest message of each reason is kept for aggregation, so the map stays small.
        {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.retain(|k, _| k.uid != self.node || k.reason != reason || k.message == message);
        }
        self.record_about(
            node,
            "default".to_string(),
            event_type,
            reason,
            message,
            now,
        )
        .await;
    }

    async fn record_inner(
        &self,
        pod: &Pod,
        container: Option<&str>,
        event_type: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let meta = &pod.metadata;
        let namespace = meta
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let field_path = container.map(|c| pod_field_path(pod, c));
        let object = ObjectReference {
            api_version: Some("v1".to_string()),
            kind: Some("Pod".to_string()),
            name: Some(meta.name.clone().unwrap_or_default()),
            namespace: Some(namespace.clone()),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            field_path,
        };
        self.record_about(object, namespace, event_type, reason, message, now)
            .await;
    }

    /// Creates the event about `object` in `namespace`, or counts a repeat of it.
    async fn record_about(
        &self,
        object: ObjectReference,
        namespace: String,
        event_type: EventType,
        reason: &str,
        message: &str,
        now: Timestamp,
    ) {
        let object_name = object.name.clone().unwrap_or_default();
        let field_path = object.field_path.clone().unwrap_or_default();
        let key = Key {
            uid: object.uid.clone().unwrap_or_default(),
            field_path: field_path.clone(),
            event_type,
            reason: reason.to_string(),
            message: message.to_string(),
        };
        let repeat = {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            seen.get_mut(&key).map(|s| {
                s.count += 1;
                s.clone()
            })
        };
        if let Some(s) = repeat {
            if let Err(err) = self
                .api
                .patch_event(&s.namespace, &s.name, s.count, &api_time(now))
                .await
            {
                tracing::warn!(error = %err, "event not updated");
            }
            return;
        }
        // kubelet names events `<object>.<hex nanoseconds>`; a sequence number keeps two
        // events in the same nanosecond apart.
        let nanos = u64::try_from(now.as_nanosecond()).unwrap_or(0);
        let unique = nanos.wrapping_add(self.sequence.fetch_add(1, Ordering::Relaxed));
        let name = format!("{object_name}.{unique:x}");
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object,
            reason: Some(reason.to_string()),
            message: Some(message.to_string()),
            type_: Some(event_type.as_str().to_string()),
            source: Some(EventSource {
                component: Some("kubelet".to_string()),
                host: Some(self.node.clone()),
            }),
            reporting_component: Some("kubelet".to_string()),
            reporting_instance: Some(self.node.clone()),
            first_timestamp: Some(api_time(now)),
            last_timestamp: Some(api_time(now)),
            event_time: None::<MicroTime>,
            count: Some(1),
            ..Default::default()
        };
        match self.api.create_event(&event).await {
            Ok(()) => {
                let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.insert(
                    key,
                    Seen {
                        namespace,
                        name,
                        count: 1,
                    },
                );
            }
            Err(err) => tracing::warn!(error = %err, reason, "event not recorded"),
        }
    }

    /// Forgets the aggregation state of a pod that is gone.
    pub fn forget(&self, uid: &str) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.retain(|k, _| k.uid != uid);
    }
}
