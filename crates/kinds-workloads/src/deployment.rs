//! apps/v1 Deployments: defaults (`RollingUpdate` with 25% / 25%, `revisionHistoryLimit`
//! 10, `progressDeadlineSeconds` 600), the ReplicaSet template and selector rules plus the
//! strategy and deadline rules, an immutable selector, READY / UP-TO-DATE / AVAILABLE
//! columns, and the `status` and `scale` subresources. As upstream, a change of the spec or
//! of the annotations moves the generation, and a status update may also write the
//! annotations (the controller records the revision that way without moving it).

use k8s_openapi::api::apps::v1::Deployment;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{at, child, set, set_str};
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{
    initial_generation, keep_status, reset_status, sub, typed_round_trip, ResourceInfo, ScalePaths,
    Strategy, ALL_VERBS, REPLICAS_SCALE, STATUS_VERBS,
};

use crate::template::{
    default_template, immutable_selector, int_cell, nonnegative_ints,
    validate_selector_and_template, wide_cells, WIDE_COLUMNS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "apps",
    version: "v1",
    plural: "deployments",
    singular: "deployment",
    kind: "Deployment",
    list_kind: "DeploymentList",
    namespaced: true,
    short_names: &["deploy"],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[
        sub("scale", "autoscaling", "Scale", STATUS_VERBS),
        sub("status", "apps", "Deployment", STATUS_VERBS),
    ],
    strategy: &Deployments,
};

#[derive(Debug)]
struct Deployments;

impl Strategy for Deployments {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Deployment>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        set(spec, "replicas", json!(1));
        if let Some(strategy) = child(spec, "strategy") {
            set_str(strategy, "type", "RollingUpdate");
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = child(strategy, "rollingUpdate") {
                    set(ru, "maxUnavailable", json!("25%"));
                    set(ru, "maxSurge", json!("25%"));
                }
            }
        }
        set(spec, "revisionHistoryLimit", json!(10));
        set(spec, "progressDeadlineSeconds", json!(600));
        default_template(spec);
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        nonnegative_ints(
            e,
            obj,
            &[
                &["spec", "replicas"],
                &["spec", "minReadySeconds"],
                &["spec", "revisionHistoryLimit"],
                &["spec", "progressDeadlineSeconds"],
            ],
        );
        // Upstream checks a Deployment's template with the ReplicaSet rules, messages included.
        validate_selector_and_template(e, spec, "ReplicaSet");
        strategy(e, spec);
        if let Some(deadline) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
            let min_ready = spec
                .get("minReadySeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if deadline <= min_ready {
                e.invalid(
                    "spec.progressDeadlineSeconds",
                    &Value::from(deadline),
                    "must be greater than minReadySeconds",
                );
            }
        }
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        immutable_selector(e, old, new);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({})));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        let changed = new.get("spec") != old.get("spec")
            || at(new, &["metadata", "annotations"]) != at(old, &["metadata", "annotations"]);
        if changed {
            let g = at(old, &["metadata", "generation"])
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.insert("generation".into(), json!(g + 1));
            }
        }
    }

    fn prepare_for_status_update(&self, old: &Value, new: &mut Value) {
        let mut out = old.clone();
        if let Some(o) = out.as_object_mut() {
            match new.get("status") {
                Some(s) => {
                    o.insert("status".into(), s.clone());
                }
                None => {
                    o.remove("status");
                }
            }
        }
        if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
            match at(new, &["metadata", "annotations"]) {
                Some(a) => {
                    meta.insert("annotations".into(), a.clone());
                }
                None => {
                    meta.remove("annotations");
                }
            }
        }
        *new = out;
    }

    fn columns(&self) -> &'static [Column] {
        COLUMNS
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        let [containers, images, selector] = wide_cells(obj);
        let n = |path: &[&str]| at(obj, path).and_then(Value::as_i64).unwrap_or(0);
        vec![
            name,
            json!(format!(
                "{}/{}",
                n(&["status", "readyReplicas"]),
                n(&["spec", "replicas"])
            )),
            int_cell(obj, &["status", "updatedReplicas"]),
            int_cell(obj, &["status", "availableReplicas"]),
            age,
            containers,
            images,
            selector,
        ]
    }

    fn scale(&self) -> Option<&'static ScalePaths> {
        Some(&REPLICAS_SCALE)
    }
}

#[rustfmt::skip]
const COLUMNS: &[Column] = &[
    NAME,
    ("Ready", "string", "", 0, "Number of the pod with ready state"),
    ("Up-to-date", "integer", "", 0, "Total number of non-terminated pods targeted by this deployment that have the desired template spec."),
    ("Available", "integer", "", 0, "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment."),
    AGE,
    WIDE_COLUMNS[0],
    WIDE_COLUMNS[1],
    WIDE_COLUMNS[2],
];

/// An int-or-percent of `maxSurge` / `maxUnavailable`: its value as a count or a percent.
enum Amount {
    Count(i64),
    Percent(i64),
}

fn amount(e: &mut FieldErrors, v: Option<&Value>, path: &str) -> Option<Amount> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                e.invalid(path, &Value::from(n), "must be greater than or equal to 0");
            }
            Some(Amount::Count(n))
        }
        Some(Value::String(s)) => {
            let pct = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|d| d.parse::<i64>().ok());
            match pct {
                Some(p) => {
                    if p > 100 {
                        e.invalid(
                            path,
                            &Value::from(s.as_str()),
                            "must not be greater than 100%",
                        );
                    }
                    Some(Amount::Percent(p))
                }
                None => {
                    e.invalid(
                        path,
                        &Value::from(s.as_str()),
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    );
                    None
                }
            }
        }
        Some(other) => {
            e.invalid(path, other, "must be an integer or percentage (e.g '5%')");
            None
        }
    }
}

fn is_zero(a: &Option<Amount>) -> bool {
    matches!(a, Some(Amount::Count(0) | Amount::Percent(0)))
}

/// `ValidateDeploymentStrategy` and `ValidateRollingUpdateDeployment`.
fn strategy(e: &mut FieldErrors, spec: &Value) {
    let strategy = spec.get("strategy").unwrap_or(&Value::Null);
    let ty = strategy.get("type").and_then(Value::as_str).unwrap_or("");
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match ty {
        "Recreate" => {
            if rolling.is_some() {
                e.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => {
            let Some(ru) = rolling else {
                e.required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                );
                return;
            };
            let unavailable = amount(
                e,
                ru.get("maxUnavailable"),
                "spec.strategy.rollingUpdate.maxUnavailable",
            );
            let surge = amount(
                e,
                ru.get("maxSurge"),
                "spec.strategy.rollingUpdate.maxSurge",
            );
            if is_zero(&unavailable) && is_zero(&surge) {
                e.invalid(
                    "spec.strategy.rollingUpdate.maxUnavailable",
                    ru.get("maxUnavailable").unwrap_or(&Value::Null),
                    "may not be 0 when `maxSurge` is 0",
                );
            }
        }
        other => e.not_supported(
            "spec.strategy.type",
            &Value::from(other),
            &["Recreate", "RollingUpdate"],
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "namespace": "default", "creationTimestamp": "2026-01-02T14:00:00Z"},
               "spec": {"selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}}}})
    }

    fn messages(r: Result<(), Vec<apimachinery::field_errors::FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }

    #[test]
    fn defaults() {
        let mut d = deployment();
        RESOURCE.apply_defaults(&mut d);
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(messages(RESOURCE.validate_create(&d)), Vec::<String>::new());
        let mut recreate = deployment();
        recreate["spec"]["strategy"] = json!({"type": "Recreate"});
        RESOURCE.apply_defaults(&mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        RESOURCE.strategy.prepare_for_create(&mut recreate);
        assert_eq!(recreate["status"], json!({}));
    }

    #[test]
    fn strategy_rules() {
        let check = |strategy: Value| {
            let mut d = deployment();
            d["spec"]["strategy"] = strategy;
            RESOURCE.apply_defaults(&mut d);
            messages(RESOURCE.validate_create(&d))
        };
        assert_eq!(
            check(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"}})),
            vec!["spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0%\": may not be 0 when `maxSurge` is 0"]
        );
        assert_eq!(
            check(json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "150%", "maxUnavailable": -1}})),
            vec![
                "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0",
                "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"150%\": must not be greater than 100%",
            ]
        );
        assert_eq!(
            check(json!({"type": "Recreate", "rollingUpdate": {"maxSurge": 1}})),
            vec!["spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"]
        );
        assert_eq!(
            check(json!({"type": "Sometimes"})),
            vec!["spec.strategy.type: Unsupported value: \"Sometimes\": supported values: \"Recreate\", \"RollingUpdate\""]
        );
        let mut d = deployment();
        d["spec"]["minReadySeconds"] = json!(30);
        d["spec"]["progressDeadlineSeconds"] = json!(30);
        RESOURCE.apply_defaults(&mut d);
        assert_eq!(
            messages(RESOURCE.validate_create(&d)),
            vec!["spec.progressDeadlineSeconds: Invalid value: 30: must be greater than minReadySeconds"]
        );
    }

    #[test]
    fn annotations_move_the_generation_and_status_updates_may_write_them() {
        let mut old = deployment();
        RESOURCE.apply_defaults(&mut old);
        RESOURCE.strategy.prepare_for_create(&mut old);
        let mut new = old.clone();
        new["metadata"]["annotations"] = json!({"kubernetes.io/change-cause": "x"});
        RESOURCE.strategy.prepare_for_update(&old, &mut new);
        assert_eq!(new["metadata"]["generation"], 2);
        let mut status = old.clone();
        status["metadata"]["annotations"] = json!({"deployment.kubernetes.io/revision": "1"});
        status["spec"]["replicas"] = json!(7);
        status["status"] = json!({"replicas": 1});
        RESOURCE
            .strategy
            .prepare_for_status_update(&old, &mut status);
        assert_eq!(
            status["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
            "1"
        );
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["replicas"], 1);
        assert_eq!(status["metadata"]["generation"], 1);
    }

    #[test]
    fn table_row() {
        let mut d = deployment();
        RESOURCE.apply_defaults(&mut d);
        d["spec"]["replicas"] = json!(3);
        d["status"] = json!({"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2});
        let now = "2026-01-02T15:00:00Z".parse().expect("time");
        assert_eq!(
            RESOURCE.strategy.cells(&d, now),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("60m"),
                json!("c"),
                json!("busybox:1"),
                json!("app=web")
            ]
        );
    }
}
