//! PersistentVolumes (core/v1, cluster-scoped): the `Retain` reclaim policy and `Filesystem`
//! mode defaults, a new volume's `Pending` phase, kube-apiserver's rules for capacity,
//! access modes, exactly one volume source (`hostPath` and `local` checked in detail, `local`
//! with its required node affinity), an immutable source, and the NAME / CAPACITY / ACCESS
//! MODES / RECLAIM POLICY / STATUS / CLAIM / STORAGECLASS / VOLUMEATTRIBUTESCLASS / REASON /
//! AGE columns.

use k8s_openapi::api::core::v1::PersistentVolume;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{at, child, obj, present, set_str, str_at};
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, Strategy, ALL_VERBS, STATUS_VERBS,
};

use crate::volumecommon::{
    access_modes, access_modes_text, attributes_class, class_name, node_selector,
    positive_quantity, volume_mode, volume_mode_cell,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "persistentvolumes",
    singular: "persistentvolume",
    kind: "PersistentVolume",
    list_kind: "PersistentVolumeList",
    namespaced: false,
    short_names: &["pv"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[sub("status", "", "PersistentVolume", STATUS_VERBS)],
    strategy: &PersistentVolumes,
};

/// Every volume source a PersistentVolumeSpec may hold; exactly one must be set.
const SOURCES: &[&str] = &[
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephfs",
    "cinder",
    "csi",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "glusterfs",
    "hostPath",
    "iscsi",
    "local",
    "nfs",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "rbd",
    "scaleIO",
    "storageos",
    "vsphereVolume",
];

const HOST_PATH_TYPES: &[&str] = &[
    "",
    "BlockDevice",
    "CharDevice",
    "Directory",
    "DirectoryOrCreate",
    "File",
    "FileOrCreate",
    "Socket",
];

#[derive(Debug)]
struct PersistentVolumes;

impl Strategy for PersistentVolumes {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<PersistentVolume>(obj)
    }

    /// `SetDefaults_PersistentVolume`: a static volume keeps its data (`Retain`).
    fn apply_defaults(&self, pv: &mut Map<String, Value>) {
        if let Some(spec) = child(pv, "spec") {
            set_str(spec, "persistentVolumeReclaimPolicy", "Retain");
            set_str(spec, "volumeMode", "Filesystem");
        }
        if let Some(status) = child(pv, "status") {
            set_str(status, "phase", "Pending");
        }
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        validate_pv(e, obj);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        validate_pv(e, new);
        let source = |v: &Value| -> Map<String, Value> {
            SOURCES
                .iter()
                .filter_map(|k| at(v, &["spec", k]).map(|s| (k.to_string(), s.clone())))
                .collect()
        };
        if source(old) != source(new) {
            e.forbidden(
                "spec.persistentvolumesource",
                "spec.persistentvolumesource is immutable after creation",
            );
        }
        let mode = |v: &Value| str_at(v, &["spec", "volumeMode"]).to_string();
        if mode(old) != mode(new) {
            e.invalid(
                "spec.volumeMode",
                &Value::from(mode(new)),
                "field is immutable",
            );
        }
        if let Some(a) = affinity(old) {
            if affinity(new) != Some(a) {
                e.invalid(
                    "spec.nodeAffinity",
                    affinity(new).unwrap_or(&Value::Null),
                    "field is immutable",
                );
            }
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({"phase": "Pending"})));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Capacity", "string", "", 0, "The amount of storage the volume provides."),
            ("Access Modes", "string", "", 0, "How the volume may be mounted."),
            ("Reclaim Policy", "string", "", 0, "What happens to the volume when its claim is released."),
            ("Status", "string", "", 0, "The phase of the volume."),
            ("Claim", "string", "", 0, "The claim bound to the volume."),
            ("StorageClass", "string", "", 0, "The storage class the volume belongs to."),
            ("VolumeAttributesClass", "string", "", 0, "The volume attributes class of the volume."),
            ("Reason", "string", "", 0, "Why the volume is in its phase."),
            AGE,
            ("VolumeMode", "string", "", 1, "Whether the volume is a filesystem or a block device."),
        ]
    }

    fn cells(&self, pv: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(pv, now);
        let spec = pv.get("spec");
        let claim = match obj(spec.and_then(|s| s.get("claimRef"))) {
            Some(r) => format!(
                "{}/{}",
                r.get("namespace").and_then(Value::as_str).unwrap_or(""),
                r.get("name").and_then(Value::as_str).unwrap_or("")
            ),
            None => String::new(),
        };
        let phase = if present(pv.pointer("/metadata/deletionTimestamp")) {
            "Terminating".to_string()
        } else {
            s(pv, &["status", "phase"])
        };
        vec![
            name,
            json!(s(pv, &["spec", "capacity", "storage"])),
            json!(access_modes_text(spec.and_then(|s| s.get("accessModes")))),
            json!(s(pv, &["spec", "persistentVolumeReclaimPolicy"])),
            json!(phase),
            json!(claim),
            json!(s(pv, &["spec", "storageClassName"])),
            json!(attributes_class(spec)),
            json!(s(pv, &["status", "reason"])),
            age,
            json!(volume_mode_cell(spec)),
        ]
    }
}

/// `ValidatePersistentVolume` for what peapod serves.
fn validate_pv(e: &mut FieldErrors, pv: &Value) {
    let spec = pv.get("spec").unwrap_or(&Value::Null);
    let capacity = obj(spec.get("capacity"));
    if capacity.is_none_or(Map::is_empty) {
        e.required("spec.capacity", "");
    }
    let keys: Vec<&str> = capacity
        .map(|c| c.keys().map(String::as_str).collect())
        .unwrap_or_default();
    if keys != ["storage"] {
        e.not_supported("spec.capacity", &json!(keys), &["storage"]);
    }
    for (k, q) in capacity.into_iter().flatten() {
        positive_quantity(e, q, &format!("spec.capacity[{k}]"));
    }
    access_modes(e, spec, "spec.accessModes", "");
    if let Some(p) = spec.get("persistentVolumeReclaimPolicy") {
        const POLICIES: &[&str] = &["Delete", "Recycle", "Retain"];
        if !p.as_str().is_some_and(|s| POLICIES.contains(&s)) {
            e.not_supported("spec.persistentVolumeReclaimPolicy", p, POLICIES);
        }
    }
    class_name(e, spec, "spec.storageClassName");
    volume_mode(e, spec, "spec.volumeMode");
    let set: Vec<&str> = SOURCES
        .iter()
        .copied()
        .filter(|k| present(spec.get(*k)))
        .collect();
    match set.as_slice() {
        [] => e.required("spec", "must specify a volume type"),
        [_] => {}
        [_, rest @ ..] => {
            for k in rest {
                e.forbidden(
                    &format!("spec.{k}"),
                    "may not specify more than 1 volume type",
                );
            }
        }
    }
    if let Some(h) = spec.get("hostPath").filter(|v| !v.is_null()) {
        host_path(e, h);
    }
    let affinity = spec.get("nodeAffinity").filter(|v| !v.is_null());
    if let Some(l) = spec.get("local").filter(|v| !v.is_null()) {
        let path = str_at(l, &["path"]);
        if path.is_empty() {
            e.required("spec.local.path", "");
        } else if has_backsteps(path) {
            e.invalid(
                "spec.local.path",
                &Value::from(path),
                "must not contain '..'",
            );
        }
        if affinity.is_none() {
            e.required("spec.nodeAffinity", "Local volume requires node affinity");
        }
    }
    if let Some(a) = affinity {
        match a.get("required").filter(|v| !v.is_null()) {
            Some(req) => node_selector(e, req, "spec.nodeAffinity.required"),
            None => e.required(
                "spec.nodeAffinity.required",
                "must specify required node constraints",
            ),
        }
    }
}

fn host_path(e: &mut FieldErrors, h: &Value) {
    let path = str_at(h, &["path"]);
    if path.is_empty() {
        e.required("spec.hostPath.path", "");
        return;
    }
    if has_backsteps(path) {
        e.invalid(
            "spec.hostPath.path",
            &Value::from(path),
            "must not contain '..'",
        );
    }
    if path.trim_end_matches('/').is_empty() {
        e.forbidden("spec.hostPath.path", "may not be '/'");
    }
    if let Some(t) = h.get("type").filter(|v| !v.is_null()) {
        if !t.as_str().is_some_and(|s| HOST_PATH_TYPES.contains(&s)) {
            e.not_supported("spec.hostPath.type", t, &HOST_PATH_TYPES[1..]);
        }
    }
}

fn affinity(pv: &Value) -> Option<&Value> {
    at(pv, &["spec", "nodeAffinity"]).filter(|a| !a.is_null())
}

fn has_backsteps(path: &str) -> bool {
    path.split('/').any(|p| p == "..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn pv(spec: Value) -> Value {
        let mut v = json!({"metadata": {"name": "pv1"}, "spec": spec});
        RESOURCE.apply_defaults(&mut v);
        v
    }

    #[test]
    fn static_volumes_are_retained() {
        let v = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data"}}),
        );
        assert_eq!(v["spec"]["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(v["spec"]["volumeMode"], "Filesystem");
        assert_eq!(v["status"]["phase"], "Pending");
        assert!(RESOURCE.validate_create(&v).is_ok());
    }

    #[test]
    fn rules() {
        let v = pv(json!({"capacity": {"storage": "0"}, "accessModes": [],
            "hostPath": {"path": "/a/../b"}, "nfs": {"server": "s", "path": "/"}}));
        assert_eq!(
            messages(RESOURCE.validate_create(&v)),
            vec![
                "spec.capacity[storage]: Invalid value: \"0\": must be greater than zero",
                "spec.accessModes: Required value",
                "spec.nfs: Forbidden: may not specify more than 1 volume type",
                "spec.hostPath.path: Invalid value: \"/a/../b\": must not contain '..'",
            ]
        );
        let none = pv(json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}));
        assert_eq!(
            messages(RESOURCE.validate_create(&none)),
            vec!["spec: Required value: must specify a volume type"]
        );
        let cpu = pv(
            json!({"capacity": {"cpu": "1"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/d"}}),
        );
        let m = messages(RESOURCE.validate_create(&cpu));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("spec.capacity: Unsupported value: "),
            "{m:?}"
        );
        assert!(m[0].ends_with("supported values: \"storage\""), "{m:?}");
        let local = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "local": {"path": "/mnt/disk"}}),
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&local)),
            vec!["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
        let pinned = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "local": {"path": "/mnt/disk"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}),
        );
        assert!(RESOURCE.validate_create(&pinned).is_ok());
    }

    #[test]
    fn source_is_immutable() {
        let old = pv(
            json!({"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
            "hostPath": {"path": "/data"}}),
        );
        let mut new = old.clone();
        new["spec"]["hostPath"]["path"] = json!("/other");
        new["spec"]["capacity"]["storage"] = json!("2Gi");
        assert_eq!(
            messages(RESOURCE.validate_update(&old, &new)),
            vec!["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]
        );
    }

    #[test]
    fn rows() {
        let v = json!({"metadata": {"name": "pv1", "creationTimestamp": "2026-01-02T14:59:00Z"},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                "claimRef": {"namespace": "default", "name": "data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            RESOURCE.strategy.cells(&v, now()),
            vec![
                json!("pv1"),
                json!("1Gi"),
                json!("RWO,ROX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("manual"),
                json!("<unset>"),
                json!(""),
                json!("60s"),
                json!("Filesystem"),
            ]
        );
        assert_eq!(RESOURCE.strategy.columns().len(), 11);
    }
}
