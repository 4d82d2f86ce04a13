//! Roles and ClusterRoles: rules checked as upstream's `ValidateRole`/`ValidateClusterRole`
//! (a ClusterRole may also aggregate others by label), listed with NAME and CREATED AT.

use k8s_openapi::api::rbac::v1::{ClusterRole, Role};
use serde_json::Value;

use apimachinery::checks::NameRule;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at};
use apimachinery::labelselector;
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

use crate::rules::{policy_rules, GROUP};

pub const ROLES: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    plural: "roles",
    singular: "role",
    kind: "Role",
    list_kind: "RoleList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &Roles,
};

pub const CLUSTER_ROLES: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    plural: "clusterroles",
    singular: "clusterrole",
    kind: "ClusterRole",
    list_kind: "ClusterRoleList",
    namespaced: false,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &ClusterRoles,
};

#[derive(Debug)]
struct Roles;

impl Strategy for Roles {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Role>(obj)
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        policy_rules(e, obj.get("rules"), true);
    }
}

#[derive(Debug)]
struct ClusterRoles;

impl Strategy for ClusterRoles {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<ClusterRole>(obj)
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        policy_rules(e, obj.get("rules"), false);
        if let Some(rule) = at(obj, &["aggregationRule"]).filter(|v| !v.is_null()) {
            let selectors = arr(rule.get("clusterRoleSelectors"));
            if selectors.is_empty() {
                e.required(
                    "aggregationRule.clusterRoleSelectors",
                    "at least one clusterRoleSelector required if aggregationRule is non-nil",
                );
            }
            for (i, sel) in selectors.iter().enumerate() {
                labelselector::validate(
                    e,
                    sel,
                    &format!("aggregationRule.clusterRoleSelectors[{i}]"),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::messages;
    use serde_json::json;

    #[test]
    fn rules_need_verbs_groups_and_resources() {
        let role = json!({"metadata": {"name": "system:x", "namespace": "ns"},
            "rules": [{"verbs": [], "resources": ["pods"]},
                      {"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert_eq!(
            messages(ROLES.validate_create(&role)),
            vec![
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[0].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].nonResourceURLs: Invalid value: []string{\"/healthz\"}: namespaced rules cannot apply to non-resource URLs",
            ]
        );
        let cluster = json!({"metadata": {"name": "a/b"},
            "rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert_eq!(
            messages(CLUSTER_ROLES.validate_create(&cluster)),
            vec!["metadata.name: Invalid value: \"a/b\": may not contain '/'"]
        );
        let agg =
            json!({"metadata": {"name": "agg"}, "aggregationRule": {"clusterRoleSelectors": []}});
        assert_eq!(
            messages(CLUSTER_ROLES.validate_create(&agg)),
            vec!["aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"]
        );
    }
}
