//! kube-apiserver's Node authorizer and the request-level half of its NodeRestriction
//! admission, for node credentials (`system:node:<name>` in `system:nodes`, what `peapod
//! join` gets): a node may read what a kubelet and its service proxy read (pods, services,
//! endpoint slices, nodes, and the Secrets, ConfigMaps, volumes and ServiceAccounts its pods
//! use), write its own Node (and status) and its own Lease, write the status of pods, create
//! mirror pods, events, access reviews, ServiceAccount tokens and its own certificate
//! requests. Writing another Node or another node's Lease is refused with NodeRestriction's
//! message. What needs stored objects the API server checks after this: whether a pod is
//! bound to the node (see [`pod_binding_check`]), and whether a pod bound to the node uses
//! the Secret, ConfigMap, claim or ServiceAccount it reads (see [`crate::node_graph`]); a
//! node lists or watches none of those but by name.

use crate::attributes::Attributes;
use crate::user::User;

/// The group of node credentials.
pub const NODES_GROUP: &str = "system:nodes";
const NODE_PREFIX: &str = "system:node:";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

/// What the node authorizer says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeDecision {
    /// A node may do this.
    Allow,
    /// A node may never do this (the refusal's reason).
    Deny(String),
    /// Not a node, or not a request the node rules cover: RBAC decides.
    NoOpinion,
}

/// The node `user` is, when it is a node credential.
pub fn node_name(user: &User) -> Option<&str> {
    if !user.in_group(NODES_GROUP) {
        return None;
    }
    user.name
        .strip_prefix(NODE_PREFIX)
        .filter(|n| !n.is_empty())
}

fn is_read(verb: &str) -> bool {
    matches!(verb, "get" | "list" | "watch")
}

/// Writes of a named object that only its own node may make.
fn own_only(a: &Attributes, node: &str, what: &str) -> NodeDecision {
    match a.verb.as_str() {
        "get" | "update" | "patch" | "delete" if a.name == node => NodeDecision::Allow,
        "update" | "patch" | "delete" => NodeDecision::Deny(format!(
            "node {node:?} is not allowed to modify {what} {:?}",
            a.name
        )),
        _ => NodeDecision::NoOpinion,
    }
}

/// The Node authorizer's answer for `a`.
pub fn authorize(a: &Attributes) -> NodeDecision {
    let Some(node) = node_name(&a.user) else {
        return NodeDecision::NoOpinion;
    };
    if !a.resource_request {
        return NodeDecision::NoOpinion;
    }
    let verb = a.verb.as_str();
    let allow_if = |ok: bool| {
        if ok {
            NodeDecision::Allow
        } else {
            NodeDecision::NoOpinion
        }
    };
    match (
        a.api_group.as_str(),
        a.resource.as_str(),
        a.subresource.as_str(),
    ) {
        ("", "nodes", "") if is_read(verb) || verb == "create" => NodeDecision::Allow,
        ("", "nodes", "" | "status") => own_only(a, node, "node"),
        ("coordination.k8s.io", "leases", "") if a.namespace == NODE_LEASE_NAMESPACE => {
            match verb {
                "create" => NodeDecision::Allow,
                "get" if a.name != node => NodeDecision::Deny(format!(
                    "node {node:?} is not allowed to access lease {:?}",
                    a.name
                )),
                _ => own_only(a, node, "lease"),
            }
        }
        ("", "pods", "") => allow_if(is_read(verb) || verb == "create" || verb == "delete"),
        ("", "pods", "status") => allow_if(matches!(verb, "get" | "update" | "patch")),
        ("", "pods", "eviction") => allow_if(verb == "create"),
        ("", "events", "") | ("events.k8s.io", "events", "") => {
            allow_if(matches!(verb, "create" | "update" | "patch"))
        }
        ("", "services" | "endpoints", "")
        | ("discovery.k8s.io", "endpointslices", "")
        | ("node.k8s.io", "runtimeclasses", "")
        | ("storage.k8s.io", "csidrivers" | "storageclasses", "") => allow_if(is_read(verb)),
        ("", "configmaps" | "secrets" | "persistentvolumeclaims", "") => {
            allow_if(is_read(verb) && !a.name.is_empty())
        }
        // The node's local-path volumes follow their PersistentVolumes.
        ("", "persistentvolumes", "") => allow_if(is_read(verb)),
        ("", "serviceaccounts", "") => allow_if(verb == "get"),
        ("", "persistentvolumeclaims", "status") => {
            allow_if(matches!(verb, "get" | "update" | "patch"))
        }
        ("", "serviceaccounts", "token") => allow_if(verb == "create"),
        ("certificates.k8s.io", "certificatesigningrequests", "") => {
            allow_if(matches!(verb, "create" | "get" | "list" | "watch"))
        }
        ("authentication.k8s.io", "tokenreviews", "")
        | ("authorization.k8s.io", "subjectaccessreviews" | "localsubjectaccessreviews", "") => {
            allow_if(verb == "create")
        }
        _ => NodeDecision::NoOpinion,
    }
}

/// NodeRestriction for pods: a node may change the status of, or delete, only pods bound to
/// it. `Some(node)` when `a` is such a request by node `node` (the server then reads the pod
/// and refuses when its `spec.nodeName` is another).
pub fn pod_binding_check(a: &Attributes) -> Option<&str> {
    let node = node_name(&a.user)?;
    let pods = a.resource_request && a.api_group.is_empty() && a.resource == "pods";
    let writes_status = a.subresource == "status" && matches!(a.verb.as_str(), "update" | "patch");
    let deletes = a.subresource.is_empty() && a.verb == "delete" && !a.name.is_empty();
    (pods && (writes_status || deletes)).then_some(node)
}

/// NodeRestriction's refusal of a pod write by `node` for a pod bound elsewhere.
pub fn pod_refusal(node: &str, a: &Attributes) -> String {
    if a.verb == "delete" {
        format!("node {node:?} can only delete pods with spec.nodeName set to itself")
    } else {
        format!(
            "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
            ..User::default()
        }
    }

    fn ask(user: &User, method: &str, path: &str) -> NodeDecision {
        authorize(&Attributes::from_request(user.clone(), method, path, None))
    }

    #[test]
    fn a_node_writes_only_its_own_node_and_lease() {
        let n1 = node("n1");
        assert_eq!(ask(&n1, "GET", "/api/v1/nodes"), NodeDecision::Allow);
        assert_eq!(ask(&n1, "POST", "/api/v1/nodes"), NodeDecision::Allow);
        assert_eq!(
            ask(&n1, "PATCH", "/api/v1/nodes/n1/status"),
            NodeDecision::Allow
        );
        assert_eq!(ask(&n1, "PUT", "/api/v1/nodes/n1"), NodeDecision::Allow);
        assert_eq!(
            ask(&n1, "PATCH", "/api/v1/nodes/n2"),
            NodeDecision::Deny("node \"n1\" is not allowed to modify node \"n2\"".into())
        );
        assert!(matches!(
            ask(&n1, "PUT", "/api/v1/nodes/n2/status"),
            NodeDecision::Deny(_)
        ));
        assert!(matches!(
            ask(&n1, "DELETE", "/api/v1/nodes/n2"),
            NodeDecision::Deny(_)
        ));
        let lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases";
        assert_eq!(ask(&n1, "POST", lease), NodeDecision::Allow);
        assert_eq!(ask(&n1, "PUT", &format!("{lease}/n1")), NodeDecision::Allow);
        assert!(matches!(
            ask(&n1, "PUT", &format!("{lease}/n2")),
            NodeDecision::Deny(_)
        ));
        assert!(matches!(
            ask(&n1, "GET", &format!("{lease}/n2")),
            NodeDecision::Deny(_)
        ));
        // Leases elsewhere are RBAC's.
        assert_eq!(
            ask(
                &n1,
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"
            ),
            NodeDecision::NoOpinion
        );
    }

    #[test]
    fn a_node_reads_what_a_kubelet_reads_and_nothing_else_is_decided_here() {
        let n1 = node("n1");
        for (m, p) in [
            ("GET", "/api/v1/pods"),
            ("GET", "/api/v1/namespaces/default/secrets/s"),
            ("GET", "/api/v1/services"),
            ("GET", "/apis/discovery.k8s.io/v1/endpointslices"),
            ("POST", "/api/v1/namespaces/default/events"),
            ("POST", "/api/v1/namespaces/kube-system/pods"),
            ("PATCH", "/api/v1/namespaces/default/pods/p/status"),
            (
                "POST",
                "/api/v1/namespaces/default/serviceaccounts/default/token",
            ),
            (
                "POST",
                "/apis/certificates.k8s.io/v1/certificatesigningrequests",
            ),
        ] {
            assert_eq!(ask(&n1, m, p), NodeDecision::Allow, "{m} {p}");
        }
        for (m, p) in [
            ("DELETE", "/api/v1/namespaces/default/secrets/s"),
            ("POST", "/api/v1/namespaces/default/configmaps"),
            ("PUT", "/api/v1/namespaces/default/pods/p"),
            ("POST", "/apis/apps/v1/namespaces/default/deployments"),
            (
                "PUT",
                "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval",
            ),
        ] {
            assert_eq!(ask(&n1, m, p), NodeDecision::NoOpinion, "{m} {p}");
        }
        // Not a node: someone else's business.
        let alice = User {
            name: "system:node:n1".into(),
            groups: vec!["system:authenticated".into()],
            ..User::default()
        };
        assert_eq!(ask(&alice, "GET", "/api/v1/pods"), NodeDecision::NoOpinion);
    }

    #[test]
    fn pod_writes_are_checked_against_the_binding() {
        let n1 = node("n1");
        let a = |m: &str, p: &str| Attributes::from_request(n1.clone(), m, p, None);
        assert_eq!(
            pod_binding_check(&a("PATCH", "/api/v1/namespaces/d/pods/p/status")),
            Some("n1")
        );
        assert_eq!(
            pod_binding_check(&a("DELETE", "/api/v1/namespaces/d/pods/p")),
            Some("n1")
        );
        assert_eq!(
            pod_binding_check(&a("GET", "/api/v1/namespaces/d/pods/p")),
            None
        );
        assert_eq!(
            pod_binding_check(&a("POST", "/api/v1/namespaces/d/pods")),
            None
        );
    }
}
