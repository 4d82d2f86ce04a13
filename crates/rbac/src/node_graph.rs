//! The part of kube-apiserver's Node authorizer that follows its graph of pods: a node reads
//! a Secret, ConfigMap, PersistentVolumeClaim or ServiceAccount (or asks for a token of the
//! ServiceAccount) only while a pod bound to it uses that object. [`check`] says which
//! requests need this; the API server then reads the node's pods of the namespace and asks
//! [`pod_uses`] of each.

use serde_json::Value;

use crate::attributes::Attributes;
use crate::node::node_name;

/// The kinds of objects a node reaches only through its pods.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Referenced {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

impl Referenced {
    /// The resource as the request names it.
    pub fn resource(self) -> &'static str {
        match self {
            Referenced::Secret => "secrets",
            Referenced::ConfigMap => "configmaps",
            Referenced::Claim => "persistentvolumeclaims",
            Referenced::ServiceAccount => "serviceaccounts",
        }
    }
}

/// `Some((node, kind))` when `a` is a node's read of one named object of `kind` (or a token
/// request for one ServiceAccount), which only the node's pods can justify.
pub fn check(a: &Attributes) -> Option<(&str, Referenced)> {
    let node = node_name(&a.user)?;
    if !a.resource_request || !a.api_group.is_empty() || a.name.is_empty() {
        return None;
    }
    let read = matches!(a.verb.as_str(), "get" | "list" | "watch");
    let kind = match (a.resource.as_str(), a.subresource.as_str()) {
        ("secrets", "") if read => Referenced::Secret,
        ("configmaps", "") if read => Referenced::ConfigMap,
        ("persistentvolumeclaims", "") if read => Referenced::Claim,
        ("serviceaccounts", "") if a.verb == "get" => Referenced::ServiceAccount,
        ("serviceaccounts", "token") if a.verb == "create" => Referenced::ServiceAccount,
        _ => return None,
    };
    Some((node, kind))
}

/// The reason a node is refused an object none of its pods uses (upstream's words).
pub fn refusal(a: &Attributes, node: &str) -> String {
    crate::forbidden::detail(
        a,
        &format!("no relationship found between node '{node}' and this object"),
    )
}

/// Whether `pod` is bound to `node` and uses the `kind` object `name` of its namespace.
pub fn pod_uses(pod: &Value, node: &str, kind: Referenced, name: &str) -> bool {
    if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
        return false;
    }
    let Some(spec) = pod.get("spec") else {
        return false;
    };
    let mut found = Vec::new();
    match kind {
        Referenced::ServiceAccount => found.push(
            spec.get("serviceAccountName")
                .and_then(Value::as_str)
                .unwrap_or("default"),
        ),
        Referenced::Claim => {
            let pod_name = pod
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            for v in list(spec, "volumes") {
                if let Some(c) = str_at(v, "/persistentVolumeClaim/claimName") {
                    found.push(c);
                }
                // A generic ephemeral volume's claim is named after the pod and the volume.
                if v.get("ephemeral").is_some() {
                    if let Some(vol) = str_at(v, "/name") {
                        if format!("{pod_name}-{vol}") == name {
                            return true;
                        }
                    }
                }
            }
        }
        Referenced::Secret => {
            for s in list(spec, "imagePullSecrets") {
                found.extend(str_at(s, "/name"));
            }
            for v in list(spec, "volumes") {
                found.extend(str_at(v, "/secret/secretName"));
                for p in list_at(v, "/projected/sources") {
                    found.extend(str_at(p, "/secret/name"));
                }
                // Volume plugins that take credentials (csi, cephfs, rbd, iscsi, ...).
                if let Some(source) = v.as_object() {
                    for s in source.values() {
                        found.extend(str_at(s, "/secretRef/name"));
                        found.extend(str_at(s, "/nodePublishSecretRef/name"));
                        found.extend(str_at(s, "/secretName"));
                    }
                }
            }
            for c in containers(spec) {
                for e in list(c, "env") {
                    found.extend(str_at(e, "/valueFrom/secretKeyRef/name"));
                }
                for e in list(c, "envFrom") {
                    found.extend(str_at(e, "/secretRef/name"));
                }
            }
        }
        Referenced::ConfigMap => {
            for v in list(spec, "volumes") {
                found.extend(str_at(v, "/configMap/name"));
                for p in list_at(v, "/projected/sources") {
                    found.extend(str_at(p, "/configMap/name"));
                }
            }
            for c in containers(spec) {
                for e in list(c, "env") {
                    found.extend(str_at(e, "/valueFrom/configMapKeyRef/name"));
                }
                for e in list(c, "envFrom") {
                    found.extend(str_at(e, "/configMapRef/name"));
                }
            }
        }
    }
    found.contains(&name)
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

fn list<'a>(v: &'a Value, field: &str) -> impl Iterator<Item = &'a Value> {
    v.get(field).and_then(Value::as_array).into_iter().flatten()
}

fn list_at<'a>(v: &'a Value, pointer: &str) -> impl Iterator<Item = &'a Value> {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

/// Every container of the pod: init, regular and ephemeral.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |f| list(spec, f))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::User;
    use serde_json::json;

    fn node_user(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec![crate::node::NODES_GROUP.into()],
            ..User::default()
        }
    }

    fn ask(method: &str, path: &str, query: Option<&str>) -> Option<Referenced> {
        let a = Attributes::from_request(node_user("n1"), method, path, query);
        check(&a).map(|(n, k)| {
            assert_eq!(n, "n1");
            k
        })
    }

    #[test]
    fn named_reads_of_what_pods_use_are_checked() {
        let ns = "/api/v1/namespaces/d";
        assert_eq!(
            ask("GET", &format!("{ns}/secrets/s"), None),
            Some(Referenced::Secret)
        );
        assert_eq!(
            ask(
                "GET",
                &format!("{ns}/configmaps"),
                Some("watch=1&fieldSelector=metadata.name%3Dc")
            ),
            Some(Referenced::ConfigMap)
        );
        assert_eq!(
            ask("GET", &format!("{ns}/persistentvolumeclaims/c"), None),
            Some(Referenced::Claim)
        );
        assert_eq!(
            ask("POST", &format!("{ns}/serviceaccounts/default/token"), None),
            Some(Referenced::ServiceAccount)
        );
        // Lists of all of them are not a node's (RBAC refuses), pods are not in the graph.
        assert_eq!(ask("GET", &format!("{ns}/secrets"), None), None);
        assert_eq!(ask("GET", &format!("{ns}/pods/p"), None), None);
        let admin = Attributes::from_request(
            User {
                name: "admin".into(),
                ..User::default()
            },
            "GET",
            &format!("{ns}/secrets/s"),
            None,
        );
        assert_eq!(check(&admin), None);
    }

    #[test]
    fn a_pod_uses_what_its_spec_names() {
        let pod = json!({
            "metadata": {"name": "p"},
            "spec": {
                "nodeName": "n1",
                "serviceAccountName": "robot",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [
                    {"name": "a", "secret": {"secretName": "vol"}},
                    {"name": "b", "configMap": {"name": "cm-vol"}},
                    {"name": "c", "projected": {"sources": [
                        {"secret": {"name": "proj"}}, {"configMap": {"name": "kube-root-ca.crt"}}]}},
                    {"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {}}},
                    {"name": "f", "csi": {"driver": "x", "nodePublishSecretRef": {"name": "csi"}}}
                ],
                "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
                "containers": [{"name": "m", "env": [
                    {"name": "A", "valueFrom": {"secretKeyRef": {"name": "key", "key": "k"}}},
                    {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm-key", "key": "k"}}}
                ], "envFrom": [{"configMapRef": {"name": "cm-env"}}]}]
            }
        });
        for s in ["pull", "vol", "proj", "csi", "init-env", "key"] {
            assert!(pod_uses(&pod, "n1", Referenced::Secret, s), "{s}");
        }
        assert!(!pod_uses(&pod, "n1", Referenced::Secret, "other"));
        assert!(!pod_uses(&pod, "n1", Referenced::Secret, "cm-vol"));
        for c in ["cm-vol", "kube-root-ca.crt", "cm-key", "cm-env"] {
            assert!(pod_uses(&pod, "n1", Referenced::ConfigMap, c), "{c}");
        }
        assert!(!pod_uses(&pod, "n1", Referenced::ConfigMap, "vol"));
        assert!(pod_uses(&pod, "n1", Referenced::Claim, "data"));
        assert!(pod_uses(&pod, "n1", Referenced::Claim, "p-e"));
        assert!(!pod_uses(&pod, "n1", Referenced::Claim, "p-a"));
        assert!(pod_uses(&pod, "n1", Referenced::ServiceAccount, "robot"));
        assert!(!pod_uses(&pod, "n1", Referenced::ServiceAccount, "default"));
        // Bound to another node: nothing of it.
        assert!(!pod_uses(&pod, "n2", Referenced::Secret, "vol"));
        let unnamed = json!({"spec": {"nodeName": "n1"}});
        assert!(pod_uses(
            &unnamed,
            "n1",
            Referenced::ServiceAccount,
            "default"
        ));
    }
}
