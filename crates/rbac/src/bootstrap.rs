//! The default roles and bindings every cluster starts with (kube-apiserver's bootstrap
//! policy): `cluster-admin` for `system:masters`; `system:discovery`, `system:basic-user`
//! and `system:public-info-viewer` for every authenticated user (the last also for
//! anonymous ones); the user-facing `admin`, `edit` and `view`, whose rules the ClusterRole
//! aggregation controller gathers from the `system:aggregate-to-*` roles and from any role
//! labelled `rbac.authorization.k8s.io/aggregate-to-<name>: "true"`. At every start the
//! API server adds what is missing from them ([`reconcile`]) unless an object opts out
//! with `rbac.authorization.kubernetes.io/autoupdate: "false"`.

use serde_json::{json, Map, Value};

use crate::rules::GROUP;
use crate::user::{AUTHENTICATED, MASTERS, UNAUTHENTICATED};

/// Set `"false"` on a default object to keep the server from restoring it.
pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
/// The label of the default objects.
pub const BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";
/// The label a ClusterRole carries to add its rules to the default role `<name>`.
pub fn aggregate_label(to: &str) -> String {
    format!("{GROUP}/aggregate-to-{to}")
}

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn rule(verbs: &[&str], groups: &[&str], resources: &[&str]) -> Value {
    json!({"verbs": verbs, "apiGroups": groups, "resources": resources})
}

fn urls(verbs: &[&str], urls: &[&str]) -> Value {
    json!({"verbs": verbs, "nonResourceURLs": urls})
}

fn meta(name: &str, labels: &[(String, &str)]) -> Value {
    let mut l = Map::new();
    l.insert(BOOTSTRAPPING.into(), json!("rbac-defaults"));
    for (k, v) in labels {
        l.insert(k.clone(), json!(v));
    }
    json!({"name": name, "labels": l, "annotations": {AUTOUPDATE: "true"}})
}

fn cluster_role(name: &str, labels: &[(String, &str)], rules: Vec<Value>) -> Value {
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRole",
        "metadata": meta(name, labels), "rules": rules})
}

/// A role whose rules the aggregation controller fills from roles labelled for it.
fn aggregated_role(name: &str, labels: &[(String, &str)]) -> Value {
    let mut r = cluster_role(name, labels, Vec::new());
    r["aggregationRule"] = json!({"clusterRoleSelectors": [
        {"matchLabels": {aggregate_label(name): "true"}}
    ]});
    r
}

fn binding(name: &str, role: &str, groups: &[&str]) -> Value {
    let subjects: Vec<Value> = groups
        .iter()
        .map(|g| json!({"kind": "Group", "apiGroup": GROUP, "name": g}))
        .collect();
    json!({"apiVersion": format!("{GROUP}/v1"), "kind": "ClusterRoleBinding",
        "metadata": meta(name, &[]),
        "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": role},
        "subjects": subjects})
}

fn view_rules() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "configmaps",
                "endpoints",
                "persistentvolumeclaims",
                "persistentvolumeclaims/status",
                "pods",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "serviceaccounts",
                "services",
                "services/status",
            ],
        ),
        rule(
            READ,
            &[""],
            &[
                "bindings",
                "events",
                "limitranges",
                "namespaces/status",
                "pods/log",
                "pods/status",
                "replicationcontrollers/status",
                "resourcequotas",
                "resourcequotas/status",
            ],
        ),
        rule(READ, &[""], &["namespaces"]),
        rule(READ, &["discovery.k8s.io"], &["endpointslices"]),
        rule(
            READ,
            &["apps"],
            &[
                "controllerrevisions",
                "daemonsets",
                "daemonsets/status",
                "deployments",
                "deployments/scale",
                "deployments/status",
                "replicasets",
                "replicasets/scale",
                "replicasets/status",
                "statefulsets",
                "statefulsets/scale",
                "statefulsets/status",
            ],
        ),
        rule(
            READ,
            &["autoscaling"],
            &[
                "horizontalpodautoscalers",
                "horizontalpodautoscalers/status",
            ],
        ),
        rule(
            READ,
            &["batch"],
            &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
        ),
        rule(
            READ,
            &["policy"],
            &["poddisruptionbudgets", "poddisruptionbudgets/status"],
        ),
        rule(
            READ,
            &["networking.k8s.io"],
            &["ingresses", "ingresses/status", "networkpolicies"],
        ),
    ]
}

fn edit_rules() -> Vec<Value> {
    vec![
        rule(
            READ,
            &[""],
            &[
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
                "secrets",
                "services/proxy",
            ],
        ),
        rule(&["impersonate"], &[""], &["serviceaccounts"]),
        rule(
            WRITE,
            &[""],
            &[
                "pods",
                "pods/attach",
                "pods/exec",
                "pods/portforward",
                "pods/proxy",
            ],
        ),
        rule(&["create"], &[""], &["pods/eviction"]),
        rule(
            WRITE,
            &[""],
            &[
                "configmaps",
                "events",
                "persistentvolumeclaims",
                "replicationcontrollers",
                "replicationcontrollers/scale",
                "secrets",
                "serviceaccounts",
                "services",
                "services/proxy",
            ],
        ),
        rule(&["create"], &[""], &["serviceaccounts/token"]),
        rule(
            WRITE,
            &["apps"],
            &[
                "daemonsets",
                "deployments",
                "deployments/rollback",
                "deployments/scale",
                "replicasets",
                "replicasets/scale",
                "statefulsets",
                "statefulsets/scale",
            ],
        ),
        rule(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
        rule(WRITE, &["batch"], &["cronjobs", "jobs"]),
        rule(WRITE, &["policy"], &["poddisruptionbudgets"]),
        rule(
            WRITE,
            &["networking.k8s.io"],
            &["ingresses", "networkpolicies"],
        ),
    ]
}

fn admin_rules() -> Vec<Value> {
    vec![
        rule(
            &["create"],
            &["authorization.k8s.io"],
            &["localsubjectaccessreviews"],
        ),
        rule(ALL_VERBS, &[GROUP], &["rolebindings", "roles"]),
    ]
}

/// The default ClusterRoles.
pub fn cluster_roles() -> Vec<Value> {
    let label = |to: &str| (aggregate_label(to), "true");
    vec![
        cluster_role(
            "cluster-admin",
            &[],
            vec![rule(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
        ),
        cluster_role(
            "system:discovery",
            &[],
            vec![urls(
                &["get"],
                &[
                    "/api",
                    "/api/*",
                    "/apis",
                    "/apis/*",
                    "/healthz",
                    "/livez",
                    "/openapi",
                    "/openapi/*",
                    "/readyz",
                    "/version",
                    "/version/",
                ],
            )],
        ),
        cluster_role(
            "system:basic-user",
            &[],
            vec![
                rule(
                    &["create"],
                    &["authentication.k8s.io"],
                    &["selfsubjectreviews"],
                ),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
                ),
            ],
        ),
        // For services that authenticate and authorize their own callers through the API
        // server (bind it to their ServiceAccount).
        cluster_role(
            "system:auth-delegator",
            &[],
            vec![
                rule(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
                rule(
                    &["create"],
                    &["authorization.k8s.io"],
                    &["subjectaccessreviews"],
                ),
            ],
        ),
        cluster_role(
            "system:public-info-viewer",
            &[],
            vec![urls(
                &["get"],
                &["/healthz", "/livez", "/readyz", "/version", "/version/"],
            )],
        ),
        cluster_role(
            "system:monitoring",
            &[],
            vec![urls(
                &["get"],
                &[
                    "/healthz",
                    "/healthz/*",
                    "/livez",
                    "/livez/*",
                    "/metrics",
                    "/metrics/slis",
                    "/readyz",
                    "/readyz/*",
                ],
            )],
        ),
        aggregated_role("admin", &[]),
        aggregated_role("edit", &[label("admin")]),
        aggregated_role("view", &[label("edit")]),
        cluster_role(
            "system:aggregate-to-admin",
            &[label("admin")],
            admin_rules(),
        ),
        cluster_role("system:aggregate-to-edit", &[label("edit")], edit_rules()),
        cluster_role("system:aggregate-to-view", &[label("view")], view_rules()),
        // metrics-server's role: reading the resource metrics API is part of view, edit
        // and admin. peapod serves that API itself, so the role is a default here.
        cluster_role(
            "system:aggregated-metrics-reader",
            &[label("view"), label("edit"), label("admin")],
            vec![rule(
                &["get", "list", "watch"],
                &["metrics.k8s.io"],
                &["pods", "nodes"],
            )],
        ),
    ]
    .into_iter()
    .chain(bootstrap_roles())
    .collect()
}

/// The default ClusterRoleBindings.
pub fn cluster_role_bindings() -> Vec<Value> {
    vec![
        binding("cluster-admin", "cluster-admin", &[MASTERS]),
        binding("system:discovery", "system:discovery", &[AUTHENTICATED]),
        binding("system:basic-user", "system:basic-user", &[AUTHENTICATED]),
        binding(
            "system:monitoring",
            "system:monitoring",
            &["system:monitoring"],
        ),
        binding(
            "system:public-info-viewer",
            "system:public-info-viewer",
            &[AUTHENTICATED, UNAUTHENTICATED],
        ),
    ]
    .into_iter()
    .chain(bootstrap_bindings())
    .collect()
}

/// What kubeadm adds for joining nodes: bootstrap tokens (`system:bootstrappers`) may ask
/// for node client certificates (upstream's default `system:node-bootstrapper` role).
fn bootstrap_roles() -> Vec<Value> {
    vec![cluster_role(
        "system:node-bootstrapper",
        &[],
        vec![rule(
            &["create", "get", "list", "watch"],
            &["certificates.k8s.io"],
            &["certificatesigningrequests"],
        )],
    )]
}

/// The binding kubeadm makes (`kubeadm:kubelet-bootstrap`) for every bootstrap token.
fn bootstrap_bindings() -> Vec<Value> {
    vec![binding(
        "kubeadm:kubelet-bootstrap",
        "system:node-bootstrapper",
        &[BOOTSTRAPPERS],
    )]
}

const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// Where kubeadm publishes the cluster's discovery kubeconfig for joining nodes.
pub const CLUSTER_INFO_NAMESPACE: &str = "kube-public";
pub const CLUSTER_INFO: &str = "cluster-info";

/// The default Roles: kubeadm's `kubeadm:bootstrap-signer-clusterinfo`, which lets anyone
/// read the `cluster-info` ConfigMap a joining node starts from.
pub fn roles() -> Vec<Value> {
    let mut role = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "Role",
        "metadata": meta("kubeadm:bootstrap-signer-clusterinfo", &[]),
        "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["configmaps"],
            "resourceNames": [CLUSTER_INFO]}]});
    role["metadata"]["namespace"] = json!(CLUSTER_INFO_NAMESPACE);
    vec![role]
}

/// The default RoleBindings: the cluster-info reader for `system:anonymous`.
pub fn role_bindings() -> Vec<Value> {
    let mut b = json!({"apiVersion": format!("{GROUP}/v1"), "kind": "RoleBinding",
        "metadata": meta("kubeadm:bootstrap-signer-clusterinfo", &[]),
        "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "kubeadm:bootstrap-signer-clusterinfo"},
        "subjects": [{"kind": "User", "apiGroup": GROUP, "name": crate::user::ANONYMOUS}]});
    b["metadata"]["namespace"] = json!(CLUSTER_INFO_NAMESPACE);
    vec![b]
}

/// Appends to `have[key]` the items of `want[key]` it lacks; true when something changed.
fn add_missing(have: &mut Value, want: &Value, key: &str) -> bool {
    let Some(wanted) = want.get(key).and_then(Value::as_array) else {
        return false;
    };
    let mut changed = false;
    let list = match have.get_mut(key) {
        Some(Value::Array(a)) => a,
        _ => {
            have[key] = json!([]);
            match have.get_mut(key) {
                Some(Value::Array(a)) => a,
                _ => return false,
            }
        }
    };
    for w in wanted {
        if !list.contains(w) {
            list.push(w.clone());
            changed = true;
        }
    }
    changed
}

/// Adds the labels and annotations of `want` that `have` lacks.
fn add_missing_map(have: &mut Value, want: &Value, key: &str) -> bool {
    let Some(wanted) = want
        .pointer(&format!("/metadata/{key}"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    let Some(meta) = have.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    let map = meta.entry(key).or_insert_with(|| json!({}));
    let Some(map) = map.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (k, v) in wanted {
        if !map.contains_key(k) {
            map.insert(k.clone(), v.clone());
            changed = true;
        }
    }
    changed
}

/// kube's bootstrap reconciliation of one default object: the stored `have` with what
/// `want` holds and it lacks (rules, aggregation selectors, subjects, labels, annotations),
/// or `None` when nothing is missing or the object opted out of updates.
pub fn reconcile(have: &Value, want: &Value) -> Option<Value> {
    let opted_out = have
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        == Some("false");
    if opted_out {
        return None;
    }
    let mut out = have.clone();
    let mut changed = add_missing_map(&mut out, want, "labels");
    changed |= add_missing_map(&mut out, want, "annotations");
    match want.pointer("/aggregationRule") {
        // The controller owns an aggregated role's rules; only its selectors are ours.
        Some(rule) => {
            let have_rule = out
                .as_object_mut()
                .map(|o| o.entry("aggregationRule").or_insert_with(|| json!({})));
            if let Some(have_rule) = have_rule {
                changed |= add_missing(have_rule, rule, "clusterRoleSelectors");
            }
        }
        None => changed |= add_missing(&mut out, want, "rules"),
    }
    changed |= add_missing(&mut out, want, "subjects");
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconcile_adds_what_is_missing_and_respects_opt_out() {
        let want = &cluster_roles()[1];
        assert_eq!(want["metadata"]["name"], "system:discovery");
        assert!(reconcile(want, want).is_none());
        let mut trimmed = want.clone();
        trimmed["rules"] = json!([]);
        trimmed["metadata"]["labels"] = json!({"mine": "yes"});
        let fixed = reconcile(&trimmed, want).expect("restored");
        assert_eq!(fixed["rules"], want["rules"]);
        assert_eq!(fixed["metadata"]["labels"]["mine"], "yes");
        assert_eq!(fixed["metadata"]["labels"][BOOTSTRAPPING], "rbac-defaults");
        trimmed["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(reconcile(&trimmed, want).is_none());

        let view = cluster_roles()
            .into_iter()
            .find(|r| r["metadata"]["name"] == "view")
            .expect("view");
        let mut filled = view.clone();
        filled["rules"] = json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]);
        assert!(
            reconcile(&filled, &view).is_none(),
            "aggregated rules are the controller's"
        );
    }

    #[test]
    fn the_metrics_reader_aggregates_into_view_edit_and_admin() {
        let reader = cluster_roles()
            .into_iter()
            .find(|r| r["metadata"]["name"] == "system:aggregated-metrics-reader")
            .expect("metrics reader");
        for to in ["view", "edit", "admin"] {
            assert_eq!(reader["metadata"]["labels"][aggregate_label(to)], "true");
        }
        assert_eq!(reader["rules"][0]["apiGroups"], json!(["metrics.k8s.io"]));
    }

    #[test]
    fn every_default_is_a_valid_object() {
        for r in cluster_roles() {
            let _: k8s_openapi::api::rbac::v1::ClusterRole =
                serde_json::from_value(r).expect("cluster role");
        }
        for b in cluster_role_bindings() {
            let _: k8s_openapi::api::rbac::v1::ClusterRoleBinding =
                serde_json::from_value(b).expect("binding");
        }
        for r in roles() {
            let _: k8s_openapi::api::rbac::v1::Role = serde_json::from_value(r).expect("role");
        }
        for b in role_bindings() {
            let _: k8s_openapi::api::rbac::v1::RoleBinding =
                serde_json::from_value(b).expect("role binding");
        }
    }
}
