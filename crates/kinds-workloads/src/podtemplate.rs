//! PodTemplates (core v1, namespaced): a stored pod template other tools stamp pods from.
//! Its `template` gets the pod spec defaults and is checked by the pod template rules; a new
//! template starts at generation 1 and each change of it moves the generation on. Printed as
//! NAME / CONTAINERS / IMAGES / POD LABELS (upstream shows no AGE for it).

use k8s_openapi::api::core::v1::PodTemplate;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at};
use apimachinery::printing::{s, Column, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

use crate::template::format_labels;

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "podtemplates",
    singular: "podtemplate",
    kind: "PodTemplate",
    list_kind: "PodTemplateList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &PodTemplates,
};

#[derive(Debug)]
struct PodTemplates;

fn set_generation(obj: &mut Value, generation: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("generation".into(), json!(generation));
    }
}

impl Strategy for PodTemplates {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<PodTemplate>(obj)
    }

    /// The pod spec defaults inside `template.spec`.
    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        if let Some(spec) = obj
            .get_mut("template")
            .and_then(Value::as_object_mut)
            .and_then(|t| t.get_mut("spec"))
            .and_then(Value::as_object_mut)
        {
            kinds_core::pod::default_pod_spec(spec);
        }
    }

    /// `ValidatePodTemplate`: the template by the pod template rules, at `template`.
    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        let empty = Value::Object(Map::new());
        let template = obj.get("template").unwrap_or(&empty);
        kinds_core::pod::validate_pod_template(e, template, "template");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        set_generation(obj, 1);
    }

    /// A changed template moves the generation on.
    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        if old.get("template") != new.get("template") {
            let g = at(old, &["metadata", "generation"])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            set_generation(new, g + 1);
        }
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Containers", "string", "", 0, "Names of each container in the template."),
            ("Images", "string", "", 0, "Images referenced by each container in the template."),
            ("Pod Labels", "string", "", 0, "The labels for the pod template."),
        ]
    }

    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        let containers = arr(at(obj, &["template", "spec", "containers"]));
        let field = |k: &str| {
            containers
                .iter()
                .map(|c| c.get(k).and_then(Value::as_str).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(",")
        };
        vec![
            json!(s(obj, &["metadata", "name"])),
            json!(field("name")),
            json!(field("image")),
            json!(format_labels(at(obj, &["template", "metadata", "labels"]))),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn template(spec: Value) -> Value {
        json!({"metadata": {"name": "t", "namespace": "default"},
               "template": {"metadata": {"labels": {"app": "web", "tier": "front"}}, "spec": spec}})
    }

    #[test]
    fn template_gets_pod_defaults_and_pod_rules() {
        let mut t = template(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        RESOURCE.apply_defaults(&mut t);
        assert_eq!(t["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            t["template"]["spec"]["containers"][0]["terminationMessagePath"],
            "/dev/termination-log"
        );
        assert!(RESOURCE.validate_create(&t).is_ok());

        let mut bad =
            template(json!({"containers": [{"name": "c"}], "restartPolicy": "Sometimes"}));
        RESOURCE.apply_defaults(&mut bad);
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec![
                "template.spec.containers[0].image: Required value",
                "template.spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
            ]
        );
        let missing = json!({"metadata": {"name": "t", "namespace": "default"}});
        assert_eq!(
            messages(RESOURCE.validate_create(&missing)),
            vec!["template.spec.containers: Required value"]
        );
        let eph = template(json!({"containers": [{"name": "c", "image": "busybox"}],
            "ephemeralContainers": [{"name": "d", "image": "busybox"}]}));
        assert!(messages(RESOURCE.validate_update(&t, &eph))
            .contains(&"template.spec.ephemeralContainers: Forbidden: ephemeral containers not allowed in pod template".to_string()));
    }

    #[test]
    fn generation_follows_the_template() {
        let mut t = template(json!({"containers": [{"name": "c", "image": "busybox"}]}));
        RESOURCE.strategy.prepare_for_create(&mut t);
        assert_eq!(t["metadata"]["generation"], 1);
        let mut relabelled = t.clone();
        relabelled["metadata"]["labels"] = json!({"x": "y"});
        RESOURCE.strategy.prepare_for_update(&t, &mut relabelled);
        assert_eq!(relabelled["metadata"]["generation"], 1);
        let mut changed = t.clone();
        changed["template"]["spec"]["containers"][0]["image"] = json!("nginx");
        RESOURCE.strategy.prepare_for_update(&t, &mut changed);
        assert_eq!(changed["metadata"]["generation"], 2);
    }

    #[test]
    fn rows() {
        let t = template(json!({"containers": [
            {"name": "a", "image": "busybox"}, {"name": "b", "image": "nginx:1.27"}]}));
        assert_eq!(
            RESOURCE.strategy.cells(&t, now()),
            vec![
                json!("t"),
                json!("a,b"),
                json!("busybox,nginx:1.27"),
                json!("app=web,tier=front")
            ]
        );
        let bare = json!({"metadata": {"name": "u"}, "template": {}});
        assert_eq!(RESOURCE.strategy.cells(&bare, now())[3], json!("<none>"));
    }
}
