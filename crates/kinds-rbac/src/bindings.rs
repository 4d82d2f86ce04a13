//! RoleBindings and ClusterRoleBindings: subjects and roleRef checked as upstream's
//! `ValidateRoleBinding`/`ValidateClusterRoleBinding`, a roleRef that never changes, v1
//! defaults, and kubectl's ROLE column (USERS, GROUPS and SERVICEACCOUNTS with `-o wide`).

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};
use serde_json::{json, Map, Value};

use apimachinery::checks::NameRule;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, str_at};
use apimachinery::printing::{name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

use crate::rules::{binding_defaults, role_ref, role_ref_unchanged, subjects, GROUP};

pub const ROLE_BINDINGS: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    plural: "rolebindings",
    singular: "rolebinding",
    kind: "RoleBinding",
    list_kind: "RoleBindingList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &Bindings { namespaced: true },
};

pub const CLUSTER_ROLE_BINDINGS: ResourceInfo = ResourceInfo {
    group: GROUP,
    version: "v1",
    plural: "clusterrolebindings",
    singular: "clusterrolebinding",
    kind: "ClusterRoleBinding",
    list_kind: "ClusterRoleBindingList",
    namespaced: false,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &Bindings { namespaced: false },
};

/// Both binding kinds; a namespaced binding may grant a Role or a ClusterRole.
#[derive(Debug)]
struct Bindings {
    namespaced: bool,
}

impl Strategy for Bindings {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        if self.namespaced {
            typed_round_trip::<RoleBinding>(obj)
        } else {
            typed_round_trip::<ClusterRoleBinding>(obj)
        }
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        binding_defaults(obj);
    }

    fn name_rule(&self) -> NameRule {
        NameRule::PathSegment
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        let kinds: &[&str] = if self.namespaced {
            &["Role", "ClusterRole"]
        } else {
            &["ClusterRole"]
        };
        role_ref(e, obj, kinds);
        subjects(e, obj, self.namespaced);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        role_ref_unchanged(e, old, new);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Role", "string", "", 0, "RoleRef contains information about the role being referenced."),
            AGE,
            ("Users", "string", "", 1, "Users in the roleBinding"),
            ("Groups", "string", "", 1, "Groups in the roleBinding"),
            ("ServiceAccounts", "string", "", 1, "ServiceAccounts in the roleBinding"),
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        let role = format!(
            "{}/{}",
            str_at(obj, &["roleRef", "kind"]),
            str_at(obj, &["roleRef", "name"])
        );
        let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
        for s in arr(obj.get("subjects")) {
            let name = str_at(s, &["name"]).to_string();
            match str_at(s, &["kind"]) {
                "User" => users.push(name),
                "Group" => groups.push(name),
                "ServiceAccount" => {
                    accounts.push(format!("{}/{name}", str_at(s, &["namespace"])));
                }
                _ => {}
            }
        }
        vec![
            name,
            json!(role),
            age,
            json!(users.join(", ")),
            json!(groups.join(", ")),
            json!(accounts.join(", ")),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::messages;

    fn binding(role_kind: &str) -> Value {
        json!({"metadata": {"name": "b", "namespace": "ns"},
            "roleRef": {"kind": role_kind, "name": "view"},
            "subjects": [{"kind": "User", "name": "jane"},
                         {"kind": "ServiceAccount", "name": "sa", "namespace": "ns"}]})
    }

    #[test]
    fn defaults_and_checks() {
        let mut b = binding("ClusterRole");
        ROLE_BINDINGS.apply_defaults(&mut b);
        assert_eq!(b["roleRef"]["apiGroup"], GROUP);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        assert!(b["subjects"][1].get("apiGroup").is_none());
        assert!(ROLE_BINDINGS.validate_create(&b).is_ok());

        let mut c = binding("Role");
        c["metadata"] = json!({"name": "c"});
        c["subjects"][1]["namespace"] = json!("");
        CLUSTER_ROLE_BINDINGS.apply_defaults(&mut c);
        assert_eq!(
            messages(CLUSTER_ROLE_BINDINGS.validate_create(&c)),
            vec![
                "roleRef.kind: Unsupported value: \"Role\": supported values: \"ClusterRole\"",
                "subjects[1].namespace: Required value",
            ]
        );
    }

    #[test]
    fn role_ref_is_immutable() {
        let mut old = binding("ClusterRole");
        ROLE_BINDINGS.apply_defaults(&mut old);
        let mut new = old.clone();
        new["roleRef"]["name"] = json!("edit");
        assert_eq!(
            messages(ROLE_BINDINGS.validate_update(&old, &new)),
            vec!["roleRef: Invalid value: rbac.RoleRef{APIGroup:\"rbac.authorization.k8s.io\", Kind:\"ClusterRole\", Name:\"edit\"}: cannot change roleRef"]
        );
    }

    #[test]
    fn wide_columns_name_the_subjects() {
        let cells = ROLE_BINDINGS.strategy.cells(
            &binding("ClusterRole"),
            "2026-01-02T15:00:00Z".parse().expect("time"),
        );
        assert_eq!(cells[1], "ClusterRole/view");
        assert_eq!(cells[3], "jane");
        assert_eq!(cells[5], "ns/sa");
    }
}
