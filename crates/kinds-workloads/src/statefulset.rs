//! StatefulSets (apps/v1): `SetDefaults_StatefulSet` (OrderedReady, RollingUpdate with
//! partition 0, one replica, revisionHistoryLimit 10, PVC retention Retain/Retain; the
//! claim templates' own defaults), `ValidateStatefulSet` and its update rule (only
//! replicas, ordinals, template, updateStrategy, revisionHistoryLimit, PVC retention and
//! minReadySeconds may change), the `status` and `scale` subresources and the READY column.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{json, Map, Value};

use apimachinery::checks::nonnegative;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at, child, each_item, set, set_str, str_at};
use apimachinery::names::dns1123_subdomain;
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, ScalePaths, Strategy, ALL_VERBS, REPLICAS_SCALE, STATUS_VERBS,
};

use crate::template::{default_template, validate_selector_and_template, wide_cells};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "apps",
    version: "v1",
    plural: "statefulsets",
    singular: "statefulset",
    kind: "StatefulSet",
    list_kind: "StatefulSetList",
    namespaced: true,
    short_names: &["sts"],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[
        sub("scale", "autoscaling", "Scale", STATUS_VERBS),
        sub("status", "apps", "StatefulSet", STATUS_VERBS),
    ],
    strategy: &StatefulSets,
};

/// The spec fields an update may change (everything else is fixed at creation).
const MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "revisionHistoryLimit",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

#[derive(Debug)]
struct StatefulSets;

impl Strategy for StatefulSets {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<StatefulSet>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        set_str(spec, "podManagementPolicy", "OrderedReady");
        if let Some(strategy) = child(spec, "updateStrategy") {
            let no_type = strategy
                .get("type")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if no_type {
                strategy.insert("type".into(), json!("RollingUpdate"));
                set(strategy, "rollingUpdate", json!({}));
            }
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                if let Some(ru) = strategy
                    .get_mut("rollingUpdate")
                    .and_then(Value::as_object_mut)
                {
                    set(ru, "partition", json!(0));
                }
            }
        }
        if let Some(policy) = child(spec, "persistentVolumeClaimRetentionPolicy") {
            set_str(policy, "whenDeleted", "Retain");
            set_str(policy, "whenScaled", "Retain");
        }
        set(spec, "replicas", json!(1));
        set(spec, "revisionHistoryLimit", json!(10));
        default_template(spec);
        // SetDefaults_PersistentVolumeClaim on each claim template.
        each_item(spec, "volumeClaimTemplates", |pvc| {
            set_str(pvc, "apiVersion", "v1");
            set_str(pvc, "kind", "PersistentVolumeClaim");
            if let Some(s) = child(pvc, "spec") {
                set_str(s, "volumeMode", "Filesystem");
            }
            if let Some(s) = child(pvc, "status") {
                set_str(s, "phase", "Pending");
            }
        });
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        validate_spec(e, obj.get("spec").unwrap_or(&Value::Null));
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        if fixed_part(old) != fixed_part(new) {
            e.forbidden(
                "spec",
                "updates to statefulset spec for fields other than 'replicas', 'ordinals', \
                 'template', 'updateStrategy', 'revisionHistoryLimit', \
                 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
            );
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({"replicas": 0, "availableReplicas": 0})));
    }

    fn scale(&self) -> Option<&'static ScalePaths> {
        Some(&REPLICAS_SCALE)
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Ready", "string", "", 0, "Number of the pod with ready state"),
            AGE,
            ("Containers", "string", "", 1, "Names of each container in the template."),
            ("Images", "string", "", 1, "Images referenced by each container in the template."),
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        let ready = at(obj, &["status", "readyReplicas"])
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let want = at(obj, &["spec", "replicas"])
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let [containers, images, _] = wide_cells(obj);
        vec![
            name,
            json!(format!("{ready}/{want}")),
            age,
            containers,
            images,
        ]
    }
}

/// The spec without the fields an update may change.
fn fixed_part(obj: &Value) -> Value {
    let mut spec = obj.get("spec").cloned().unwrap_or(Value::Null);
    if let Some(m) = spec.as_object_mut() {
        for k in MUTABLE {
            m.remove(*k);
        }
    }
    spec
}

/// `spec` with each claim template as the pod volume the controller makes of it (unless the
/// template already has a volume of that name, which the claim replaces), so containers may
/// mount the claims and the pod rules check the volumes the pods will really have.
fn with_claim_volumes(spec: &Value) -> Value {
    let mut spec = spec.clone();
    let claims: Vec<String> = arr(spec.get("volumeClaimTemplates"))
        .iter()
        .map(|t| str_at(t, &["metadata", "name"]).to_string())
        .filter(|n| !n.is_empty())
        .collect();
    let Some(pod) = spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
        .and_then(Value::as_object_mut)
    else {
        return spec;
    };
    let volumes = pod
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if volumes.is_null() {
        *volumes = Value::Array(Vec::new());
    }
    let Some(list) = volumes.as_array_mut() else {
        return spec;
    };
    for name in claims {
        if list.iter().any(|v| str_at(v, &["name"]) == name) {
            continue;
        }
        list.push(json!({
            "name": name,
            "persistentVolumeClaim": {"claimName": name},
        }));
    }
    spec
}

fn validate_spec(e: &mut FieldErrors, spec: &Value) {
    match str_at(spec, &["podManagementPolicy"]) {
        "" => e.required("spec.podManagementPolicy", ""),
        "OrderedReady" | "Parallel" => {}
        other => e.invalid(
            "spec.podManagementPolicy",
            &Value::from(other),
            "must be 'OrderedReady' or 'Parallel'",
        ),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&Value::Null);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match str_at(strategy, &["type"]) {
        "" => e.required("spec.updateStrategy", ""),
        "OnDelete" => {
            if let Some(ru) = rolling {
                e.invalid(
                    "spec.updateStrategy.rollingUpdate",
                    ru,
                    "only allowed for updateStrategy 'RollingUpdate'",
                );
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = rolling {
                nonnegative(
                    e,
                    ru.get("partition"),
                    "spec.updateStrategy.rollingUpdate.partition",
                );
            }
        }
        _ => e.invalid(
            "spec.updateStrategy",
            strategy,
            "must be 'RollingUpdate' or 'OnDelete'",
        ),
    }
    let policy = spec
        .get("persistentVolumeClaimRetentionPolicy")
        .unwrap_or(&Value::Null);
    for key in ["whenDeleted", "whenScaled"] {
        let v = str_at(policy, &[key]);
        if v != "Retain" && v != "Delete" {
            e.not_supported(
                &format!("spec.persistentVolumeClaimRetentionPolicy.{key}"),
                &Value::from(v),
                &["Retain", "Delete"],
            );
        }
    }
    nonnegative(e, spec.get("replicas"), "spec.replicas");
    nonnegative(e, spec.get("minReadySeconds"), "spec.minReadySeconds");
    nonnegative(e, at(spec, &["ordinals", "start"]), "spec.ordinals.start");
    nonnegative(
        e,
        spec.get("revisionHistoryLimit"),
        "spec.revisionHistoryLimit",
    );
    validate_selector_and_template(e, &with_claim_volumes(spec), "StatefulSet");
    for (i, pvc) in arr(spec.get("volumeClaimTemplates")).iter().enumerate() {
        let name = str_at(pvc, &["metadata", "name"]);
        let path = format!("spec.volumeClaimTemplates[{i}].metadata.name");
        if name.is_empty() {
            e.required(&path, "name or generateName is required");
        }
        for m in dns1123_subdomain(name)
            .into_iter()
            .filter(|_| !name.is_empty())
        {
            e.invalid(&path, &Value::from(name), &m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn sts() -> Value {
        json!({"metadata": {"name": "web", "namespace": "d"},
               "spec": {"serviceName": "web", "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "c", "image": "busybox:1"}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "data"},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "1Gi"}}}}]}})
    }

    #[test]
    fn defaults() {
        let mut s = sts();
        RESOURCE.apply_defaults(&mut s);
        let spec = &s["spec"];
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["spec"]["volumeMode"],
            "Filesystem"
        );
        assert_eq!(
            spec["volumeClaimTemplates"][0]["status"]["phase"],
            "Pending"
        );
        assert!(
            RESOURCE.validate_create(&s).is_ok(),
            "{:?}",
            RESOURCE.validate_create(&s)
        );
        let mut on_delete = sts();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        RESOURCE.apply_defaults(&mut on_delete);
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
    }

    /// Containers mount claim templates by name; a mount of nothing is still refused.
    #[test]
    fn claim_templates_are_volumes_for_the_mounts() {
        let mut s = sts();
        s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
        RESOURCE.apply_defaults(&mut s);
        let ok = RESOURCE.validate_create(&s);
        assert!(ok.is_ok(), "{ok:?}");
        s["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "other", "mountPath": "/data"}]);
        let errs = messages(RESOURCE.validate_create(&s));
        assert!(
            errs.iter()
                .any(|m| m.contains("volumeMounts[0].name: Not found: \"other\"")),
            "{errs:?}"
        );
    }

    #[test]
    fn validation() {
        let mut s = sts();
        RESOURCE.apply_defaults(&mut s);
        s["spec"]["podManagementPolicy"] = json!("Random");
        s["spec"]["replicas"] = json!(-1);
        s["spec"]["updateStrategy"] =
            json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
        s["spec"]["selector"] = json!({});
        let m = messages(RESOURCE.validate_create(&s));
        assert_eq!(m.len(), 4, "{m:?}");
        assert_eq!(
            m[0],
            "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"
        );
        assert!(m[1].ends_with("only allowed for updateStrategy 'RollingUpdate'"));
        assert!(m[2].starts_with("spec.replicas: Invalid value: -1"));
        assert!(m[3].ends_with("empty selector is invalid for statefulset"));
    }

    #[test]
    fn only_some_fields_change() {
        let mut old = sts();
        RESOURCE.apply_defaults(&mut old);
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
        new["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(2);
        assert!(RESOURCE.validate_update(&old, &new).is_ok());
        new["spec"]["serviceName"] = json!("other");
        let m = messages(RESOURCE.validate_update(&old, &new));
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with(
            "spec: Forbidden: updates to statefulset spec for fields other than 'replicas'"
        ));
    }

    #[test]
    fn rows() {
        let mut s = sts();
        s["spec"]["replicas"] = json!(3);
        s["status"] = json!({"readyReplicas": 2});
        let c = RESOURCE.strategy.cells(&s, now());
        assert_eq!(c[1], "2/3");
        assert_eq!(c[3], "c");
        assert_eq!(c[4], "busybox:1");
    }
}
