//! RBAC's escalation prevention, as kube-apiserver's RBAC storage applies it to writes of
//! its own kinds: a Role or ClusterRole may only grant what its writer holds (in the role's
//! namespace; cluster-wide for a ClusterRole), unless the writer may `escalate` on it; a
//! ClusterRole with an `aggregationRule` counts as granting everything. A RoleBinding or
//! ClusterRoleBinding may only bind a role its writer may `bind`, or whose every permission
//! the writer holds where the binding applies. `system:masters` is never checked.
//!
//! Holding a rule is decided rule by rule on its atomic parts (one verb, group, resource
//! and name, or one URL), each allowed by one of the writer's rules, as upstream's `Covers`.

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef};
use serde_json::Value;

use crate::attributes::Attributes;
use crate::policy::{Decision, Policy, PolicyKind};
use crate::rules::{allows, GROUP};
use crate::user::User;

/// Why a write of an RBAC object is refused: the detail of its 403.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EscalationError {
    #[error("user {user:?} (groups={}) is attempting to grant RBAC permissions not currently held:\n{}{}", go_quoted(groups), missing.join("\n"), resolution(errors))]
    NotHeld {
        user: String,
        groups: Vec<String>,
        missing: Vec<String>,
        errors: Vec<String>,
    },
    /// The role a binding names does not exist (and the writer may not `bind` it).
    #[error("{0}")]
    NoRole(String),
    #[error("the object does not decode: {0}")]
    Decode(String),
}

/// A string list as Go's `%q` prints it: `["a" "b"]`.
fn go_quoted(list: &[String]) -> String {
    let items: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", items.join(" "))
}

fn resolution(errors: &[String]) -> String {
    match errors {
        [] => String::new(),
        e => format!("; resolution errors: [{}]", e.join(", ")),
    }
}

/// Checks `user`'s create or update of `obj`, an object of `kind` in `namespace` (empty
/// for the cluster-scoped kinds).
pub fn check(
    policy: &Policy,
    user: &User,
    kind: PolicyKind,
    namespace: &str,
    obj: &Value,
) -> Result<(), EscalationError> {
    if user.is_privileged() {
        return Ok(());
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let namespace = match kind {
        PolicyKind::Role | PolicyKind::RoleBinding => namespace.to_string(),
        PolicyKind::ClusterRole | PolicyKind::ClusterRoleBinding => String::new(),
    };
    match kind {
        PolicyKind::Role | PolicyKind::ClusterRole => {
            if may(policy, user, "escalate", kind.resource(), &namespace, &name) {
                return Ok(());
            }
            let rules = if obj.get("aggregationRule").is_some_and(|a| !a.is_null()) {
                full_authority()
            } else {
                decode_rules(obj.get("rules"))?
            };
            covered(policy, user, &namespace, &rules)
        }
        PolicyKind::RoleBinding | PolicyKind::ClusterRoleBinding => {
            let role_ref: RoleRef = obj
                .get("roleRef")
                .cloned()
                .map(serde_json::from_value)
                .transpose()
                .map_err(|e| EscalationError::Decode(e.to_string()))?
                .unwrap_or_default();
            let resource = match role_ref.kind.as_str() {
                "Role" => "roles",
                _ => "clusterroles",
            };
            if may(policy, user, "bind", resource, &namespace, &role_ref.name) {
                return Ok(());
            }
            let rules = policy
                .role_rules(&role_ref, &namespace)
                .map_err(EscalationError::NoRole)?
                .to_vec();
            covered(policy, user, &namespace, &rules)
        }
    }
}

/// Whether `user` may `verb` the RBAC `resource` named `name` in `namespace`.
fn may(
    policy: &Policy,
    user: &User,
    verb: &str,
    resource: &str,
    namespace: &str,
    name: &str,
) -> bool {
    let a = Attributes {
        user: user.clone(),
        verb: verb.into(),
        resource_request: true,
        api_group: GROUP.into(),
        api_version: "v1".into(),
        namespace: namespace.into(),
        resource: resource.into(),
        subresource: String::new(),
        name: name.into(),
        path: String::new(),
    };
    matches!(policy.authorize(&a), Decision { allowed: true, .. })
}

fn full_authority() -> Vec<PolicyRule> {
    let all = || Some(vec!["*".to_string()]);
    vec![
        PolicyRule {
            verbs: vec!["*".into()],
            api_groups: all(),
            resources: all(),
            ..Default::default()
        },
        PolicyRule {
            verbs: vec!["*".into()],
            non_resource_urls: all(),
            ..Default::default()
        },
    ]
}

fn decode_rules(v: Option<&Value>) -> Result<Vec<PolicyRule>, EscalationError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_value(v.clone()).map_err(|e| EscalationError::Decode(e.to_string()))
        }
    }
}

/// Every atomic part of `rules` that none of `user`'s rules in `namespace` allows.
fn covered(
    policy: &Policy,
    user: &User,
    namespace: &str,
    rules: &[PolicyRule],
) -> Result<(), EscalationError> {
    let (owned, errors) = policy.rules_for(user, namespace);
    let missing: Vec<String> = rules
        .iter()
        .flat_map(|r| atoms(user, namespace, r))
        .filter(|(a, _)| !owned.iter().any(|o| allows(a, o)))
        .map(|(_, text)| text)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(EscalationError::NotHeld {
        user: user.name.clone(),
        groups: user.groups.clone(),
        missing,
        errors,
    })
}

/// The atomic parts of `rule` as requests, with upstream's text for each.
fn atoms(user: &User, namespace: &str, rule: &PolicyRule) -> Vec<(Attributes, String)> {
    let base = Attributes {
        user: user.clone(),
        verb: String::new(),
        resource_request: true,
        api_group: String::new(),
        api_version: String::new(),
        namespace: namespace.into(),
        resource: String::new(),
        subresource: String::new(),
        name: String::new(),
        path: String::new(),
    };
    let list = |l: &Option<Vec<String>>| l.clone().unwrap_or_default();
    let mut out = Vec::new();
    for verb in &rule.verbs {
        for url in list(&rule.non_resource_urls) {
            let a = Attributes {
                verb: verb.clone(),
                resource_request: false,
                path: url.clone(),
                ..base.clone()
            };
            out.push((
                a,
                format!("{{NonResourceURLs:[{url:?}], Verbs:[{verb:?}]}}"),
            ));
        }
        for group in list(&rule.api_groups) {
            for resource in list(&rule.resources) {
                let (res, sub) = resource.split_once('/').unwrap_or((&resource, ""));
                let names = list(&rule.resource_names);
                let names = if names.is_empty() {
                    vec![String::new()]
                } else {
                    names
                };
                for name in names {
                    let a = Attributes {
                        verb: verb.clone(),
                        api_group: group.clone(),
                        resource: res.into(),
                        subresource: sub.into(),
                        name: name.clone(),
                        ..base.clone()
                    };
                    let names = if name.is_empty() {
                        String::new()
                    } else {
                        format!(", ResourceNames:[{name:?}]")
                    };
                    out.push((
                        a,
                        format!(
                            "{{APIGroups:[{group:?}], Resources:[{resource:?}]{names}, Verbs:[{verb:?}]}}"
                        ),
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bob() -> User {
        User {
            name: "bob".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    /// bob may get and list pods in `team`, and create roles and rolebindings there.
    fn policy() -> Policy {
        let mut p = Policy::default();
        p.apply(
            PolicyKind::Role,
            &json!({"metadata": {"namespace": "team", "name": "pods-reader"},
                "rules": [
                    {"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods", "pods/log"]},
                    {"verbs": ["create", "update"], "apiGroups": [GROUP], "resources": ["roles", "rolebindings"]}
                ]}),
        )
        .expect("role");
        p.apply(
            PolicyKind::RoleBinding,
            &json!({"metadata": {"namespace": "team", "name": "bob"},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "pods-reader"},
                "subjects": [{"kind": "User", "name": "bob"}]}),
        )
        .expect("binding");
        p.apply(
            PolicyKind::ClusterRole,
            &json!({"metadata": {"name": "secrets"},
                "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}]}),
        )
        .expect("cluster role");
        p
    }

    fn role(rules: Value) -> Value {
        json!({"metadata": {"namespace": "team", "name": "r"}, "rules": rules})
    }

    #[test]
    fn a_role_may_grant_only_what_its_writer_holds() {
        let p = policy();
        let held = role(
            json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["list"], "apiGroups": [""], "resources": ["pods/log"]}]),
        );
        assert_eq!(check(&p, &bob(), PolicyKind::Role, "team", &held), Ok(()));
        let more =
            role(json!([{"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}]));
        let err = check(&p, &bob(), PolicyKind::Role, "team", &more).expect_err("escalation");
        assert_eq!(
            err.to_string(),
            "user \"bob\" (groups=[\"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
        let wildcard = role(json!([{"verbs": ["*"], "apiGroups": [""], "resources": ["pods"]}]));
        assert!(check(&p, &bob(), PolicyKind::Role, "team", &wildcard).is_err());
        // Held in team is not held cluster-wide.
        let cluster = json!({"metadata": {"name": "c"},
            "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]});
        assert!(check(&p, &bob(), PolicyKind::ClusterRole, "team", &cluster).is_err());
        let aggregated =
            json!({"metadata": {"name": "c"}, "aggregationRule": {"clusterRoleSelectors": []}});
        assert!(check(&p, &bob(), PolicyKind::ClusterRole, "team", &aggregated).is_err());
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        assert_eq!(
            check(&p, &admin, PolicyKind::ClusterRole, "team", &aggregated),
            Ok(())
        );
    }

    #[test]
    fn escalate_and_bind_verbs_lift_the_check() {
        let mut p = policy();
        let binding = json!({"metadata": {"namespace": "team", "name": "b"},
            "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": "secrets"},
            "subjects": [{"kind": "User", "name": "eve"}]});
        assert!(matches!(
            check(&p, &bob(), PolicyKind::RoleBinding, "team", &binding),
            Err(EscalationError::NotHeld { .. })
        ));
        let own = json!({"metadata": {"namespace": "team", "name": "b"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "pods-reader"},
            "subjects": [{"kind": "User", "name": "eve"}]});
        assert_eq!(
            check(&p, &bob(), PolicyKind::RoleBinding, "team", &own),
            Ok(())
        );
        let missing = json!({"metadata": {"namespace": "team", "name": "b"},
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "nope"}});
        assert!(matches!(
            check(&p, &bob(), PolicyKind::RoleBinding, "team", &missing),
            Err(EscalationError::NoRole(_))
        ));
        p.apply(
            PolicyKind::Role,
            &json!({"metadata": {"namespace": "team", "name": "binder"},
                "rules": [{"verbs": ["bind"], "apiGroups": [GROUP], "resources": ["clusterroles"], "resourceNames": ["secrets"]},
                          {"verbs": ["escalate"], "apiGroups": [GROUP], "resources": ["roles"]}]}),
        )
        .expect("role");
        p.apply(
            PolicyKind::RoleBinding,
            &json!({"metadata": {"namespace": "team", "name": "bob-binder"},
                "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "binder"},
                "subjects": [{"kind": "User", "name": "bob"}]}),
        )
        .expect("binding");
        assert_eq!(
            check(&p, &bob(), PolicyKind::RoleBinding, "team", &binding),
            Ok(())
        );
        let more = role(json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]));
        assert_eq!(check(&p, &bob(), PolicyKind::Role, "team", &more), Ok(()));
    }
}
