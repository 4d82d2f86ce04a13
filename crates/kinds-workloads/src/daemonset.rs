//! DaemonSets (apps/v1): `SetDefaults_DaemonSet` (RollingUpdate with maxUnavailable 1 and
//! maxSurge 0, revisionHistoryLimit 10), `ValidateDaemonSet` (selector required, matching
//! the template and immutable; pods that always restart; the rolling update's bounds),
//! the template generation kept in the `deprecated.daemonset.template.generation`
//! annotation, and the DESIRED ... NODE SELECTOR columns.

use k8s_openapi::api::apps::v1::DaemonSet;
use serde_json::{json, Map, Value};

use apimachinery::checks::nonnegative;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{at, child, set, set_str, str_at};
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, Strategy, ALL_VERBS, STATUS_VERBS,
};

use crate::template::{
    default_template, immutable_selector, int_cell, int_or_percent, validate_int_or_percent,
    validate_selector_and_template, wide_cells,
};

/// Where apps/v1 keeps the DaemonSet's template generation (an internal field upstream).
pub const TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "apps",
    version: "v1",
    plural: "daemonsets",
    singular: "daemonset",
    kind: "DaemonSet",
    list_kind: "DaemonSetList",
    namespaced: true,
    short_names: &["ds"],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[sub("status", "apps", "DaemonSet", STATUS_VERBS)],
    strategy: &DaemonSets,
};

#[derive(Debug)]
struct DaemonSets;

impl Strategy for DaemonSets {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<DaemonSet>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(strategy) = child(spec, "updateStrategy") {
            set_str(strategy, "type", "RollingUpdate");
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = child(strategy, "rollingUpdate") {
                    set(ru, "maxUnavailable", json!(1));
                    set(ru, "maxSurge", json!(0));
                }
            }
        }
        set(spec, "revisionHistoryLimit", json!(10));
        default_template(spec);
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        validate_spec(e, obj.get("spec").unwrap_or(&Value::Null));
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        immutable_selector(e, old, new);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(empty_status()));
        if template_generation(obj) < 1 {
            set_template_generation(obj, 1);
        }
    }

    /// A template change moves the template generation on (and the generation with every
    /// spec change); the stored status stays.
    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
        let old_gen = template_generation(old);
        let next = if at(old, &["spec", "template"]) != at(new, &["spec", "template"]) {
            old_gen + 1
        } else {
            old_gen
        };
        set_template_generation(new, next);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Desired", "integer", "", 0, "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod)."),
            ("Current", "integer", "", 0, "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod."),
            ("Ready", "integer", "", 0, "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition."),
            ("Up-to-date", "integer", "", 0, "The total number of nodes that are running updated daemon pod"),
            ("Available", "integer", "", 0, "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)"),
            ("Node Selector", "string", "", 0, "NodeSelector is a selector which must be true for the pod to fit on a node."),
            AGE,
            ("Containers", "string", "", 1, "Names of each container in the template."),
            ("Images", "string", "", 1, "Images referenced by each container in the template."),
            ("Selector", "string", "", 1, "A label query over pods that are managed by the daemon set."),
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        let n = |k: &str| int_cell(obj, &["status", k]);
        let [containers, images, selector] = wide_cells(obj);
        vec![
            name,
            n("desiredNumberScheduled"),
            n("currentNumberScheduled"),
            n("numberReady"),
            n("updatedNumberScheduled"),
            n("numberAvailable"),
            json!(crate::template::format_labels(at(
                obj,
                &["spec", "template", "spec", "nodeSelector"]
            ))),
            age,
            containers,
            images,
            selector,
        ]
    }
}

/// The status a new DaemonSet starts with (the counters upstream always serialises).
fn empty_status() -> Value {
    json!({"currentNumberScheduled": 0, "desiredNumberScheduled": 0,
           "numberMisscheduled": 0, "numberReady": 0})
}

/// The template generation from the annotation (0 when absent or not a number).
pub fn template_generation(obj: &Value) -> i64 {
    str_at(obj, &["metadata", "annotations", TEMPLATE_GENERATION])
        .parse()
        .unwrap_or(0)
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        if let Some(ann) = child(meta, "annotations") {
            ann.insert(TEMPLATE_GENERATION.into(), json!(generation.to_string()));
        }
    }
}

fn validate_spec(e: &mut FieldErrors, spec: &Value) {
    validate_selector_and_template(e, spec, "DaemonSet");
    nonnegative(e, spec.get("minReadySeconds"), "spec.minReadySeconds");
    nonnegative(
        e,
        spec.get("revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
    );
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    match str_at(strategy, &["type"]) {
        "OnDelete" => {}
        "RollingUpdate" => match strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
            None => e.required("spec.updateStrategy.rollingUpdate", ""),
            Some(ru) => rolling_update(e, ru),
        },
        _ => e.not_supported(
            "spec.updateStrategy",
            strategy,
            &["RollingUpdate", "OnDelete"],
        ),
    }
}

/// `ValidateRollingUpdateDaemonSet`: both bounds valid, exactly one of them non-zero.
fn rolling_update(e: &mut FieldErrors, ru: &Value) {
    const PATH: &str = "spec.updateStrategy.rollingUpdate";
    validate_int_or_percent(
        e,
        ru.get("maxUnavailable"),
        &format!("{PATH}.maxUnavailable"),
    );
    validate_int_or_percent(e, ru.get("maxSurge"), &format!("{PATH}.maxSurge"));
    let non_zero = |k: &str| {
        ru.get(k)
            .and_then(int_or_percent)
            .is_some_and(|(n, _)| n != 0)
    };
    match (non_zero("maxUnavailable"), non_zero("maxSurge")) {
        (true, true) => e.invalid(
            &format!("{PATH}.maxSurge"),
            ru.get("maxSurge").unwrap_or(&Value::Null),
            "may not be set when maxUnavailable is non-zero",
        ),
        (false, false) => e.required(
            &format!("{PATH}.maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn ds() -> Value {
        json!({"metadata": {"name": "agent", "namespace": "d"},
               "spec": {"selector": {"matchLabels": {"app": "agent"}},
                        "template": {"metadata": {"labels": {"app": "agent"}},
                                     "spec": {"nodeSelector": {"disk": "ssd"},
                                              "containers": [{"name": "a", "image": "busybox:1"},
                                                             {"name": "b", "image": "busybox:2"}]}}}})
    }

    #[test]
    fn defaults() {
        let mut d = ds();
        RESOURCE.apply_defaults(&mut d);
        assert_eq!(
            d["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        // Templates get no admission defaults: those come when the pods are made.
        assert!(d["spec"]["template"]["spec"].get("tolerations").is_none());
        let mut on_delete = ds();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        RESOURCE.apply_defaults(&mut on_delete);
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        assert!(RESOURCE.validate_create(&d).is_ok());
    }

    #[test]
    fn validation() {
        let mut d = ds();
        RESOURCE.apply_defaults(&mut d);
        d["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        d["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}});
        let m = messages(RESOURCE.validate_create(&d));
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].starts_with("spec.template.metadata.labels: Invalid value"));
        assert!(m[0].ends_with("`selector` does not match template `labels`"));
        assert_eq!(
            m[1],
            "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""
        );
        assert_eq!(
            m[2],
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
        );
        let mut no_sel = ds();
        if let Some(spec) = no_sel["spec"].as_object_mut() {
            spec.remove("selector");
        }
        RESOURCE.apply_defaults(&mut no_sel);
        assert_eq!(
            messages(RESOURCE.validate_create(&no_sel)),
            vec!["spec.selector: Required value"]
        );
    }

    #[test]
    fn selector_is_immutable_and_template_changes_count() {
        let mut old = ds();
        RESOURCE.apply_defaults(&mut old);
        RESOURCE.strategy.prepare_for_create(&mut old);
        assert_eq!(template_generation(&old), 1);
        assert_eq!(old["status"]["numberReady"], 0);
        let mut new = old.clone();
        new["spec"]["selector"] = json!({"matchLabels": {"app": "agent", "x": "y"}});
        new["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let m = messages(RESOURCE.validate_update(&old, &new));
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("spec.selector: Invalid value"));
        assert!(m[0].ends_with("field is immutable"));
        RESOURCE.strategy.prepare_for_update(&old, &mut new);
        assert_eq!(template_generation(&new), 2);
        assert_eq!(new["metadata"]["generation"], 2);
        let mut same = new.clone();
        same["spec"]["minReadySeconds"] = json!(5);
        RESOURCE.strategy.prepare_for_update(&new, &mut same);
        assert_eq!(template_generation(&same), 2);
        assert_eq!(same["metadata"]["generation"], 3);
    }

    #[test]
    fn rows() {
        let mut d = ds();
        d["status"] = json!({"desiredNumberScheduled": 1, "currentNumberScheduled": 1,
            "numberReady": 1, "updatedNumberScheduled": 1, "numberAvailable": 1});
        let c = RESOURCE.strategy.cells(&d, now());
        assert_eq!(
            c[1..7],
            [
                json!(1),
                json!(1),
                json!(1),
                json!(1),
                json!(1),
                json!("disk=ssd")
            ]
        );
        assert_eq!(c[8], "a,b");
        assert_eq!(c[9], "busybox:1,busybox:2");
        assert_eq!(c[10], "app=agent");
    }
}
