//! The ServiceAccount admission plugin's changes to a new pod, as kube-apiserver v1.33 makes
//! them: the pod runs as `default` unless it names an account, and unless the pod or its
//! account opts out it gets the projected `kube-api-access-XXXXX` volume (a bound token, the
//! cluster CA from the `kube-root-ca.crt` ConfigMap, the namespace) mounted read-only at
//! [`MOUNT_PATH`] in every container and init container; a pod without `imagePullSecrets`
//! takes its account's. Mirror pods of static pods are left alone. Pure: the caller looks the account up and supplies the name suffix.

use serde_json::{json, Map, Value};

/// Where every container finds its token, `ca.crt` and `namespace`.
pub const MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The generated volume's name prefix.
pub const VOLUME_PREFIX: &str = "kube-api-access-";
/// The account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap every namespace holds with the cluster CA (key `ca.crt`).
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
/// The projected token's lifetime: an hour and seven seconds, upstream's marker for tokens
/// the admission plugin asked for.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// The annotation the kubelet puts on mirror pods of static pods.
pub const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// A mirror pod of a static pod: the admission plugin does not change it.
pub fn is_mirror(pod: &Value) -> bool {
    pod.pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|a| a.contains_key(MIRROR_ANNOTATION))
}

/// Sets `spec.serviceAccountName` (and the deprecated `serviceAccount` that mirrors it) to
/// `default` when the pod names no account; returns the account the pod runs as.
pub fn default_service_account(pod: &mut Value) -> String {
    let named = str_at(pod, "/spec/serviceAccountName")
        .or_else(|| str_at(pod, "/spec/serviceAccount"))
        .filter(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string();
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(named));
        spec.insert("serviceAccount".into(), json!(named));
    }
    named
}

/// Whether the token is mounted: the pod's `automountServiceAccountToken` wins, then the
/// account's; both unset means yes.
pub fn should_automount(service_account: &Value, pod: &Value) -> bool {
    if let Some(b) = pod
        .pointer("/spec/automountServiceAccountToken")
        .and_then(Value::as_bool)
    {
        return b;
    }
    service_account
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .unwrap_or(true)
}

/// Gives a pod that lists no `imagePullSecrets` those of its account (upstream copies the
/// account's list only when the pod's is empty; it never merges the two).
pub fn add_image_pull_secrets(service_account: &Value, pod: &mut Value) {
    let listed = pod
        .pointer("/spec/imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let Some(secrets) = service_account
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
    else {
        return;
    };
    if listed {
        return;
    }
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("imagePullSecrets".into(), Value::Array(secrets.clone()));
    }
}

/// The projected volume source upstream's `TokenVolumeSource` describes.
pub fn token_volume_source() -> Value {
    json!({
        "defaultMode": 0o644,
        "sources": [
            {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
            {"configMap": {"name": ROOT_CA_CONFIGMAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
        ],
    })
}

/// Adds the token volume (named `kube-api-access-<suffix>` unless the pod already has a
/// `kube-api-access-*` volume) and its read-only mount to every container and init
/// container that has nothing mounted at [`MOUNT_PATH`] yet.
pub fn mount_token(pod: &mut Value, suffix: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(VOLUME_PREFIX))
                .map(str::to_string)
        });
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{VOLUME_PREFIX}{suffix}"));
    let mount = json!({"name": volume_name, "readOnly": true, "mountPath": MOUNT_PATH});
    let mut needed = false;
    for key in ["initContainers", "containers"] {
        let Some(list) = spec.get_mut(key).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in list.iter_mut().filter_map(Value::as_object_mut) {
            needed |= add_mount(c, &mount);
        }
    }
    if needed && existing.is_none() {
        let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
        if !volumes.is_array() {
            *volumes = json!([]);
        }
        if let Some(vs) = volumes.as_array_mut() {
            vs.push(json!({"name": volume_name, "projected": token_volume_source()}));
        }
    }
}

/// Appends `mount` unless something is mounted at [`MOUNT_PATH`] already; true if added.
fn add_mount(container: &mut Map<String, Value>, mount: &Value) -> bool {
    let mounts = container.entry("volumeMounts").or_insert_with(|| json!([]));
    if !mounts.is_array() {
        *mounts = json!([]);
    }
    let Some(list) = mounts.as_array_mut() else {
        return false;
    };
    if list
        .iter()
        .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(MOUNT_PATH))
    {
        return false;
    }
    list.push(mount.clone());
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns1"},
            "spec": {"initContainers": [{"name": "init", "image": "i"}],
                     "containers": [{"name": "a", "image": "i",
                                     "volumeMounts": [{"name": "data", "mountPath": "/data"}]},
                                    {"name": "b", "image": "i"}],
                     "volumes": [{"name": "data", "emptyDir": {}}]}})
    }

    #[test]
    fn default_account_and_its_mirror_field() {
        let mut p = pod();
        assert_eq!(default_service_account(&mut p), "default");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mut named = pod();
        named["spec"]["serviceAccount"] = json!("builder");
        assert_eq!(default_service_account(&mut named), "builder");
        assert_eq!(named["spec"]["serviceAccountName"], "builder");
    }

    #[test]
    fn pull_secrets_come_from_the_account_only_when_the_pod_has_none() {
        let sa = json!({"metadata": {"name": "default"},
                        "imagePullSecrets": [{"name": "regcred"}, {"name": "other"}]});
        let mut p = pod();
        add_image_pull_secrets(&sa, &mut p);
        assert_eq!(
            p["spec"]["imagePullSecrets"],
            json!([{"name": "regcred"}, {"name": "other"}])
        );
        let mut own = pod();
        own["spec"]["imagePullSecrets"] = json!([{"name": "mine"}]);
        add_image_pull_secrets(&sa, &mut own);
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
        let mut none = pod();
        add_image_pull_secrets(&json!({"metadata": {"name": "default"}}), &mut none);
        assert!(none["spec"].get("imagePullSecrets").is_none());
    }

    #[test]
    fn automount_pod_beats_account() {
        let sa = json!({"metadata": {"name": "default"}});
        let off = json!({"metadata": {"name": "default"}, "automountServiceAccountToken": false});
        let mut p = pod();
        assert!(should_automount(&sa, &p));
        assert!(!should_automount(&off, &p));
        p["spec"]["automountServiceAccountToken"] = json!(true);
        assert!(should_automount(&off, &p));
        p["spec"]["automountServiceAccountToken"] = json!(false);
        assert!(!should_automount(&sa, &p));
    }

    #[test]
    fn every_container_mounts_the_projected_volume() {
        let mut p = pod();
        mount_token(&mut p, "x7k2q");
        let vols = p["spec"]["volumes"].as_array().expect("volumes");
        assert_eq!(vols.len(), 2);
        assert_eq!(vols[1]["name"], "kube-api-access-x7k2q");
        assert_eq!(vols[1]["projected"], token_volume_source());
        let sources = &vols[1]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], "kube-root-ca.crt");
        assert_eq!(
            sources[2]["downwardAPI"]["items"][0]["fieldRef"]["fieldPath"],
            "metadata.namespace"
        );
        for c in ["initContainers", "containers"] {
            for container in p["spec"][c].as_array().expect("list") {
                let last = container["volumeMounts"]
                    .as_array()
                    .and_then(|m| m.last())
                    .expect("mount");
                assert_eq!(
                    last,
                    &json!({"name": "kube-api-access-x7k2q", "readOnly": true,
                            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"})
                );
            }
        }
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "data"
        );
    }

    #[test]
    fn own_mounts_and_volumes_are_kept() {
        let mut p = pod();
        p["spec"]["containers"][1]["volumeMounts"] =
            json!([{"name": "data", "mountPath": MOUNT_PATH}]);
        p["spec"]["volumes"]
            .as_array_mut()
            .expect("volumes")
            .push(json!({"name": "kube-api-access-abcde", "projected": {"sources": []}}));
        mount_token(&mut p, "zzzzz");
        let vols = p["spec"]["volumes"].as_array().expect("volumes");
        assert_eq!(
            vols.len(),
            2,
            "the pod's own kube-api-access volume is reused"
        );
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][1]["name"],
            "kube-api-access-abcde"
        );
        assert_eq!(
            p["spec"]["containers"][1]["volumeMounts"]
                .as_array()
                .map(Vec::len),
            Some(1)
        );
    }

    #[test]
    fn no_volume_when_every_container_has_its_own_mount() {
        let mut p = json!({"spec": {"containers": [{"name": "a",
            "volumeMounts": [{"name": "mine", "mountPath": MOUNT_PATH}]}],
            "volumes": [{"name": "mine", "emptyDir": {}}]}});
        mount_token(&mut p, "aaaaa");
        assert_eq!(p["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn mirror_pods_are_recognised() {
        let mut p = pod();
        assert!(!is_mirror(&p));
        p["metadata"]["annotations"] = json!({MIRROR_ANNOTATION: "abc"});
        assert!(is_mirror(&p));
    }
}
