//! ControllerRevisions (apps/v1): the immutable snapshots of a pod template that the
//! DaemonSet and StatefulSet controllers keep as rollout history. `data` is required and
//! never changes; `revision` is not negative; the table shows the owning controller.

use k8s_openapi::api::apps::v1::ControllerRevision;
use serde_json::{json, Value};

use apimachinery::checks::nonnegative;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, str_at};
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "apps",
    version: "v1",
    plural: "controllerrevisions",
    singular: "controllerrevision",
    kind: "ControllerRevision",
    list_kind: "ControllerRevisionList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &Revisions,
};

#[derive(Debug)]
struct Revisions;

impl Strategy for Revisions {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<ControllerRevision>(obj)
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        if obj.get("data").is_none_or(Value::is_null) {
            e.required("data", "data is mandatory");
        }
        nonnegative(e, obj.get("revision"), "revision");
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        if old.get("data") != new.get("data") {
            e.invalid(
                "data",
                new.get("data").unwrap_or(&Value::Null),
                "field is immutable",
            );
        }
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Controller", "string", "", 0, "Controller of the object"),
            ("Revision", "string", "", 0, "Revision indicates the revision of the state represented by Data."),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![
            name,
            json!(controller_of(obj)),
            json!(obj.get("revision").and_then(Value::as_i64).unwrap_or(0)),
            age,
        ]
    }
}

/// `kind.group/name` of the controlling owner (`daemonset.apps/web`), or `<none>`.
fn controller_of(obj: &Value) -> String {
    let Some(owner) = arr(obj.pointer("/metadata/ownerReferences"))
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
    else {
        return "<none>".into();
    };
    let kind = str_at(owner, &["kind"]).to_lowercase();
    let group = str_at(owner, &["apiVersion"])
        .rsplit_once('/')
        .map_or("", |(g, _)| g);
    let name = str_at(owner, &["name"]);
    if group.is_empty() {
        format!("{kind}/{name}")
    } else {
        format!("{kind}.{group}/{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn revision() -> Value {
        json!({"metadata": {"name": "web-5d8f", "namespace": "d",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "web",
                                     "uid": "u", "controller": true}]},
               "data": {"spec": {"template": {"$patch": "replace"}}}, "revision": 2})
    }

    #[test]
    fn data_is_required_and_immutable() {
        let mut r = revision();
        assert!(RESOURCE.validate_create(&r).is_ok());
        let old = r.clone();
        r["data"] = json!({"x": 1});
        assert_eq!(
            messages(RESOURCE.validate_update(&old, &r)),
            vec!["data: Invalid value: {\"x\":1}: field is immutable"]
        );
        r["revision"] = json!(3);
        r["data"] = old["data"].clone();
        assert!(RESOURCE.validate_update(&old, &r).is_ok());
        if let Some(o) = r.as_object_mut() {
            o.remove("data");
        }
        r["revision"] = json!(-1);
        let m = messages(RESOURCE.validate_create(&r));
        assert_eq!(m[0], "data: Required value: data is mandatory");
        assert!(m[1].starts_with("revision: Invalid value: -1"));
    }

    #[test]
    fn row_names_the_controller() {
        let c = RESOURCE.strategy.cells(&revision(), now());
        assert_eq!(c[1], "daemonset.apps/web");
        assert_eq!(c[2], 2);
    }
}
