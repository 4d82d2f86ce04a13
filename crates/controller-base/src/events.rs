//! One event recorder for every controller: core/v1 Events about an object, as client-go's
//! recorder writes them for kube-controller-manager and kube-scheduler (`source.component`
//! names the controller, e.g. `default-scheduler`).

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::{Client, Resource, ResourceExt};

use crate::error::Error;

/// `Normal` or `Warning`, the two event types of the core API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

#[derive(Clone)]
pub struct Recorder {
    client: Client,
    component: &'static str,
}

impl Recorder {
    pub fn new(client: Client, component: &'static str) -> Self {
        Recorder { client, component }
    }

    /// Records `reason`/`message` about `obj` in its namespace.
    pub async fn record<K>(
        &self,
        obj: &K,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), Error>
    where
        K: Resource<DynamicType = ()>,
    {
        let event = build_event(
            obj,
            type_,
            reason,
            message,
            self.component,
            Timestamp::now(),
        );
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &event)
            .await
            .map_err(Error::api(format!(
                "recording event {reason} for {}",
                obj.name_any()
            )))?;
        Ok(())
    }

    /// Records `reason`/`message` about the object `involved` names, for controllers that
    /// handle objects of any kind.
    pub async fn record_about(
        &self,
        involved: ObjectReference,
        type_: EventType,
        reason: &str,
        message: &str,
    ) -> Result<(), Error> {
        let name = involved.name.clone().unwrap_or_default();
        let event = event_about(
            involved,
            type_,
            reason,
            message,
            self.component,
            Timestamp::now(),
        );
        let ns = event.metadata.namespace.clone().unwrap_or_default();
        Api::<Event>::namespaced(self.client.clone(), &ns)
            .create(&PostParams::default(), &event)
            .await
            .map_err(Error::api(format!("recording event {reason} for {name}")))?;
        Ok(())
    }
}

/// The Event itself (pure, for tests): named `<object>.<nanoseconds in hex>` as client-go does.
fn build_event<K>(
    obj: &K,
    type_: EventType,
    reason: &str,
    message: &str,
    component: &str,
    now: Timestamp,
) -> Event
where
    K: Resource<DynamicType = ()>,
{
    let involved = ObjectReference {
        kind: Some(K::kind(&()).into_owned()),
        namespace: obj.namespace(),
        name: Some(obj.name_any()),
        uid: obj.meta().uid.clone(),
        api_version: Some(K::api_version(&()).into_owned()),
        resource_version: obj.meta().resource_version.clone(),
        field_path: None,
    };
    event_about(involved, type_, reason, message, component, now)
}

/// An Event about the object `involved` names; cluster-scoped objects' events go to
/// `default`, as client-go's recorder puts them.
fn event_about(
    mut involved: ObjectReference,
    type_: EventType,
    reason: &str,
    message: &str,
    component: &str,
    now: Timestamp,
) -> Event {
    let ns = involved
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_string());
    let name = involved.name.clone().unwrap_or_default();
    involved.namespace = Some(ns.clone());
    let t = Time(now);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{name}.{:x}", now.as_nanosecond())),
            namespace: Some(ns),
            ..Default::default()
        },
        involved_object: involved,
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        source: Some(EventSource {
            component: Some(component.to_string()),
            host: None,
        }),
        first_timestamp: Some(t.clone()),
        last_timestamp: Some(t),
        count: Some(1),
        type_: Some(type_.as_str().to_string()),
        reporting_component: Some(component.to_string()),
        reporting_instance: Some(String::new()),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    #[test]
    fn events_name_the_object_and_the_component() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "team", "uid": "u1", "resourceVersion": "7"}
        }))
        .expect("pod");
        let now = Timestamp::from_second(1_700_000_000).expect("time");
        let ev = build_event(
            &pod,
            EventType::Normal,
            "Scheduled",
            "Successfully assigned team/web to n1",
            "default-scheduler",
            now,
        );
        assert_eq!(ev.metadata.namespace.as_deref(), Some("team"));
        assert!(ev
            .metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with("web.")));
        assert_eq!(ev.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(ev.involved_object.api_version.as_deref(), Some("v1"));
        assert_eq!(ev.involved_object.uid.as_deref(), Some("u1"));
        assert_eq!(ev.type_.as_deref(), Some("Normal"));
        assert_eq!(
            ev.source.and_then(|s| s.component).as_deref(),
            Some("default-scheduler")
        );
    }
}
