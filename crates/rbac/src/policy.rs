//! The policy index authorization reads on every request: Roles, ClusterRoles and their
//! bindings, kept in memory by whoever watches them (one writer, applying watch events) so
//! that no decision reads the store. Deciding follows kube's RBAC authorizer: the
//! ClusterRoleBindings first, then the RoleBindings of the request's namespace, allowed by
//! the first rule of a bound role that matches, with the binding named in the reason.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use serde_json::Value;

use crate::attributes::Attributes;
use crate::rules::{allows, GROUP};
use crate::user::{service_account_name, User};

/// The four kinds the index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    Role,
    ClusterRole,
    RoleBinding,
    ClusterRoleBinding,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 4] = [
        PolicyKind::ClusterRole,
        PolicyKind::Role,
        PolicyKind::ClusterRoleBinding,
        PolicyKind::RoleBinding,
    ];

    /// The plural the API serves it under (group [`GROUP`]).
    pub fn resource(self) -> &'static str {
        match self {
            PolicyKind::Role => "roles",
            PolicyKind::ClusterRole => "clusterroles",
            PolicyKind::RoleBinding => "rolebindings",
            PolicyKind::ClusterRoleBinding => "clusterrolebindings",
        }
    }
}

/// A binding as the index keeps it.
#[derive(Debug, Clone, PartialEq)]
struct Binding {
    role_ref: RoleRef,
    subjects: Vec<Subject>,
}

/// An authorization decision and why (the `reason` of a SubjectAccessReview, and the tail
/// of a 403 message when a bound role is missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub reason: String,
}

/// Roles, ClusterRoles and bindings by (namespace, name).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    roles: HashMap<(String, String), Vec<PolicyRule>>,
    cluster_roles: HashMap<String, Vec<PolicyRule>>,
    bindings: BTreeMap<(String, String), Binding>,
    cluster_bindings: BTreeMap<String, Binding>,
}

fn name_of(obj: &Value) -> (String, String) {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// Where a rule came from, for the reason of an allowed request.
fn describe_subject(s: &Subject, binding_namespace: &str) -> String {
    if s.kind == "ServiceAccount" {
        let ns = s.namespace.as_deref().filter(|n| !n.is_empty());
        format!(
            "{} {:?}",
            s.kind,
            format!("{}/{}", s.name, ns.unwrap_or(binding_namespace))
        )
    } else {
        format!("{} {:?}", s.kind, s.name)
    }
}

/// Whether `subject` of a binding in `namespace` (empty for a ClusterRoleBinding) is `user`.
fn applies_to(user: &User, s: &Subject, namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => user.name == s.name,
        "Group" => user.in_group(&s.name),
        "ServiceAccount" => {
            let ns = s.namespace.as_deref().filter(|n| !n.is_empty());
            user.name == service_account_name(ns.unwrap_or(namespace), &s.name)
        }
        _ => false,
    }
}

/// One bound role reached while walking a user's bindings.
enum Visit<'a> {
    Rules {
        source: String,
        rules: &'a [PolicyRule],
    },
    Missing(String),
}

impl Policy {
    /// Stores `obj` (a create or update of `kind`); an object that does not decode as its
    /// kind is an error and changes nothing.
    pub fn apply(&mut self, kind: PolicyKind, obj: &Value) -> Result<(), serde_json::Error> {
        let key = name_of(obj);
        match kind {
            PolicyKind::Role => {
                let r: Role = serde_json::from_value(obj.clone())?;
                self.roles.insert(key, r.rules.unwrap_or_default());
            }
            PolicyKind::ClusterRole => {
                let r: ClusterRole = serde_json::from_value(obj.clone())?;
                self.cluster_roles
                    .insert(key.1, r.rules.unwrap_or_default());
            }
            PolicyKind::RoleBinding => {
                let b: RoleBinding = serde_json::from_value(obj.clone())?;
                let b = Binding {
                    role_ref: b.role_ref,
                    subjects: b.subjects.unwrap_or_default(),
                };
                self.bindings.insert(key, b);
            }
            PolicyKind::ClusterRoleBinding => {
                let b: ClusterRoleBinding = serde_json::from_value(obj.clone())?;
                let b = Binding {
                    role_ref: b.role_ref,
                    subjects: b.subjects.unwrap_or_default(),
                };
                self.cluster_bindings.insert(key.1, b);
            }
        }
        Ok(())
    }

    /// Forgets `obj` (a delete of `kind`).
    pub fn remove(&mut self, kind: PolicyKind, obj: &Value) {
        let key = name_of(obj);
        match kind {
            PolicyKind::Role => {
                self.roles.remove(&key);
            }
            PolicyKind::ClusterRole => {
                self.cluster_roles.remove(&key.1);
            }
            PolicyKind::RoleBinding => {
                self.bindings.remove(&key);
            }
            PolicyKind::ClusterRoleBinding => {
                self.cluster_bindings.remove(&key.1);
            }
        }
    }

    /// Forgets every object of `kind` (before a relist).
    pub fn clear(&mut self, kind: PolicyKind) {
        match kind {
            PolicyKind::Role => self.roles.clear(),
            PolicyKind::ClusterRole => self.cluster_roles.clear(),
            PolicyKind::RoleBinding => self.bindings.clear(),
            PolicyKind::ClusterRoleBinding => self.cluster_bindings.clear(),
        }
    }

    /// The rules of the role `r` names, for a binding in `namespace`; the error text when it
    /// does not exist.
    pub fn role_rules(&self, r: &RoleRef, namespace: &str) -> Result<&[PolicyRule], String> {
        let found = match r.kind.as_str() {
            "ClusterRole" => self.cluster_roles.get(&r.name),
            "Role" => self.roles.get(&(namespace.to_string(), r.name.clone())),
            _ => None,
        };
        found.map(Vec::as_slice).ok_or_else(|| {
            format!(
                "{}.{GROUP} {:?} not found",
                r.kind.to_ascii_lowercase(),
                r.name
            )
        })
    }

    /// Walks the roles bound to `user` (cluster-wide, then in `namespace`) until `visit`
    /// returns true.
    fn visit<'a>(&'a self, user: &User, namespace: &str, mut visit: impl FnMut(Visit<'a>) -> bool) {
        for (name, b) in &self.cluster_bindings {
            let Some(s) = b.subjects.iter().find(|s| applies_to(user, s, "")) else {
                continue;
            };
            let v = match self.role_rules(&b.role_ref, "") {
                Ok(rules) => Visit::Rules {
                    source: format!(
                        "ClusterRoleBinding {name:?} of {} {:?} to {}",
                        b.role_ref.kind,
                        b.role_ref.name,
                        describe_subject(s, "")
                    ),
                    rules,
                },
                Err(e) => Visit::Missing(e),
            };
            if visit(v) {
                return;
            }
        }
        if namespace.is_empty() {
            return;
        }
        let start = (namespace.to_string(), String::new());
        for ((ns, name), b) in self.bindings.range(start..) {
            if ns != namespace {
                break;
            }
            let Some(s) = b.subjects.iter().find(|s| applies_to(user, s, ns)) else {
                continue;
            };
            let v = match self.role_rules(&b.role_ref, ns) {
                Ok(rules) => Visit::Rules {
                    source: format!(
                        "RoleBinding {:?} of {} {:?} to {}",
                        format!("{name}/{ns}"),
                        b.role_ref.kind,
                        b.role_ref.name,
                        describe_subject(s, ns)
                    ),
                    rules,
                },
                Err(e) => Visit::Missing(e),
            };
            if visit(v) {
                return;
            }
        }
    }

    /// Whether the request `a` is allowed: `system:masters` always, anyone else when a rule
    /// of a role bound to them allows it.
    pub fn authorize(&self, a: &Attributes) -> Decision {
        if a.user.is_privileged() {
            return Decision {
                allowed: true,
                reason: String::new(),
            };
        }
        let mut allowed_by = None;
        let mut errors = Vec::new();
        self.visit(&a.user, &a.namespace, |v| match v {
            Visit::Rules { source, rules } => {
                if rules.iter().any(|r| allows(a, r)) {
                    allowed_by = Some(source);
                    return true;
                }
                false
            }
            Visit::Missing(e) => {
                errors.push(e);
                false
            }
        });
        match allowed_by {
            Some(source) => Decision {
                allowed: true,
                reason: format!("RBAC: allowed by {source}"),
            },
            None => Decision {
                allowed: false,
                reason: errors_reason(&errors),
            },
        }
    }

    /// Every rule that applies to `user` in `namespace` (cluster-wide ones included), and
    /// the errors met on the way (bindings to missing roles): what a SelfSubjectRulesReview
    /// lists.
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        self.visit(user, namespace, |v| {
            match v {
                Visit::Rules { rules: r, .. } => rules.extend_from_slice(r),
                Visit::Missing(e) => errors.push(e),
            }
            false
        });
        (rules, errors)
    }
}

/// kube's aggregate of the errors met: one as it is, several in brackets.
fn errors_reason(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        [one] => format!("RBAC: {one}"),
        many => format!("RBAC: [{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sa_user(ns: &str, name: &str) -> User {
        User {
            name: service_account_name(ns, name),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
            ..Default::default()
        }
    }

    fn ask(p: &Policy, user: &User, method: &str, path: &str) -> Decision {
        p.authorize(&Attributes::from_request(user.clone(), method, path, None))
    }

    #[test]
    fn bindings_grant_their_roles_rules() {
        let mut p = Policy::default();
        let sa = sa_user("team", "bot");
        let list = "/api/v1/namespaces/team/pods";
        assert_eq!(
            ask(&p, &sa, "GET", list),
            Decision {
                allowed: false,
                reason: String::new()
            }
        );
        p.apply(
            PolicyKind::RoleBinding,
            &json!({"metadata": {"name": "read", "namespace": "team"},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
        )
        .expect("binding");
        let missing = ask(&p, &sa, "GET", list);
        assert!(!missing.allowed);
        assert_eq!(
            missing.reason,
            "RBAC: role.rbac.authorization.k8s.io \"pod-reader\" not found"
        );
        p.apply(
            PolicyKind::Role,
            &json!({"metadata": {"name": "pod-reader", "namespace": "team"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
        )
        .expect("role");
        assert_eq!(
            ask(&p, &sa, "GET", list).reason,
            "RBAC: allowed by RoleBinding \"read/team\" of Role \"pod-reader\" to ServiceAccount \"bot/team\""
        );
        assert!(!ask(&p, &sa, "GET", "/api/v1/namespaces/other/pods").allowed);
        assert!(!ask(&p, &sa, "DELETE", "/api/v1/namespaces/team/pods/x").allowed);
        assert!(!ask(&p, &sa_user("team", "other"), "GET", list).allowed);

        p.apply(
            PolicyKind::ClusterRole,
            &json!({"metadata": {"name": "nodes"},
                "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["*"]}]}),
        )
        .expect("cluster role");
        p.apply(
            PolicyKind::ClusterRoleBinding,
            &json!({"metadata": {"name": "all-sas"},
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "nodes"},
                "subjects": [{"kind": "Group", "apiGroup": GROUP, "name": "system:serviceaccounts"}]}),
        )
        .expect("cluster binding");
        assert!(ask(&p, &sa, "DELETE", "/api/v1/nodes/n1").allowed);
        let (rules, errors) = p.rules_for(&sa, "team");
        assert_eq!(rules.len(), 2);
        assert!(errors.is_empty());

        p.remove(
            PolicyKind::RoleBinding,
            &json!({"metadata": {"name": "read", "namespace": "team"}}),
        );
        assert!(!ask(&p, &sa, "GET", list).allowed);
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        assert!(ask(&p, &admin, "DELETE", "/api/v1/namespaces/x").allowed);
    }
}
