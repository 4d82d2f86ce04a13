//! Events (core/v1): the always-present reporting fields, the namespace rule, the LAST SEEN
//! / TYPE / REASON / OBJECT / MESSAGE columns, and the `involvedObject.*` field selectors.

use k8s_openapi::api::core::v1::Event;
use serde_json::{json, Map, Value};

use apimachinery::deletion::GcPolicy;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{set, str_at};
use apimachinery::printing::{parse_ts, s, since, Column, WIDE_NAME};
use apimachinery::strategy::{
    typed_round_trip, ResourceInfo, SelectableField, Strategy, ALL_VERBS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "events",
    singular: "event",
    kind: "Event",
    list_kind: "EventList",
    namespaced: true,
    short_names: &["ev"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &Events,
};

/// The fields `fieldSelector` accepts besides name and namespace.
const SELECTABLE: &[SelectableField] = &[
    SelectableField::new("involvedObject.kind"),
    SelectableField::new("involvedObject.namespace"),
    SelectableField::new("involvedObject.name"),
    SelectableField::new("involvedObject.uid"),
    SelectableField::new("involvedObject.apiVersion"),
    SelectableField::new("involvedObject.resourceVersion"),
    SelectableField::new("involvedObject.fieldPath"),
    SelectableField::new("reason"),
    SelectableField::new("reportingComponent"),
    SelectableField::at("source", &["source", "component"]),
    SelectableField::new("type"),
];

#[derive(Debug)]
struct Events;

impl Strategy for Events {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Event>(obj)
    }

    /// Upstream's event strategy: events never take garbage-collection finalizers.
    fn gc_policy(&self) -> GcPolicy {
        GcPolicy::Unsupported
    }

    fn apply_defaults(&self, ev: &mut Map<String, Value>) {
        // These core/v1 strings are not omitempty upstream, so a cluster always shows them.
        set(ev, "reportingComponent", json!(""));
        set(ev, "reportingInstance", json!(""));
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        event(e, obj);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            ("Last Seen", "string", "", 0, "The time the event was last seen."),
            (
                "Type",
                "string",
                "",
                0,
                "Type of this event (Normal, Warning).",
            ),
            ("Reason", "string", "", 0, "Why the action was taken, in machine readable form."),
            ("Object", "string", "", 0, "The object this event is about."),
            (
                "Subobject",
                "string",
                "",
                1,
                "The part of the object this event is about (fieldPath).",
            ),
            ("Source", "string", "", 1, "The component reporting this event."),
            ("Message", "string", "", 0, "A human-readable description of the status of this operation."),
            ("First Seen", "string", "", 1, "The time the event was first seen."),
            ("Count", "string", "", 1, "The number of times this event has occurred."),
            WIDE_NAME,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        event_cells(obj, now)
    }

    fn selectable_fields(&self) -> &'static [SelectableField] {
        SELECTABLE
    }
}

fn event(e: &mut FieldErrors, obj: &Value) {
    let ns = str_at(obj, &["metadata", "namespace"]);
    let ins = str_at(obj, &["involvedObject", "namespace"]);
    if !ins.is_empty() && !ns.is_empty() && ins != ns {
        e.invalid(
            "involvedObject.namespace",
            &Value::from(ins),
            "does not match event.namespace",
        );
    }
}

fn event_cells(ev: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let first = if parse_ts(ev.get("firstTimestamp")).is_some() {
        since(ev.get("firstTimestamp"), now)
    } else {
        since(ev.get("eventTime"), now)
    };
    let mut last = if parse_ts(ev.get("lastTimestamp")).is_some() {
        since(ev.get("lastTimestamp"), now)
    } else {
        first.clone()
    };
    let mut count = ev.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|x| !x.is_null()) {
        last = since(series.get("lastObservedTime"), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, &["involvedObject", "kind"]).to_lowercase();
    let name = s(ev, &["involvedObject", "name"]);
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let first_non_empty = |a: String, b: String| if a.is_empty() { b } else { a };
    let component = first_non_empty(
        s(ev, &["source", "component"]),
        s(ev, &["reportingComponent"]),
    );
    let instance = first_non_empty(s(ev, &["source", "host"]), s(ev, &["reportingInstance"]));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(ev, &["type"])),
        json!(s(ev, &["reason"])),
        json!(target),
        json!(s(ev, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(ev, &["message"]).trim()),
        json!(first),
        json!(count),
        json!(s(ev, &["metadata", "name"])),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    #[test]
    fn rows() {
        let ev = json!({"metadata":{"name":"web.1"},"type":"Normal","reason":"Pulled","message":"ok ",
            "involvedObject":{"kind":"Pod","name":"web","fieldPath":"spec.containers{a}"},
            "source":{"component":"kubelet","host":"n1"},"firstTimestamp":"2026-01-02T14:50:00Z",
            "lastTimestamp":"2026-01-02T14:58:00Z","count":3});
        assert_eq!(
            RESOURCE.strategy.cells(&ev, now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("ok"),
                json!("10m"),
                json!(3),
                json!("web.1")
            ]
        );
    }

    #[test]
    fn namespace_must_match() {
        let mut ev =
            json!({"metadata":{"name":"e","namespace":"a"},"involvedObject":{"namespace":"b"}});
        RESOURCE.apply_defaults(&mut ev);
        assert_eq!(ev["reportingComponent"], "");
        assert_eq!(
            messages(RESOURCE.validate_create(&ev)),
            vec!["involvedObject.namespace: Invalid value: \"b\": does not match event.namespace"]
        );
    }
}
