//! The authorization kinds: RBAC's Role, ClusterRole, RoleBinding and ClusterRoleBinding
//! (`rbac.authorization.k8s.io/v1`, stored like any object), and the review kinds of
//! `authorization.k8s.io/v1` and `authentication.k8s.io/v1` that are only ever created and
//! answered, never stored. One file per kind family, one line each in [`KINDS`].

pub mod bindings;
pub mod reviews;
pub mod roles;
pub mod rules;

use apimachinery::strategy::ResourceInfo;

pub use rules::GROUP;

/// The authorization resources, in discovery order.
pub static KINDS: &[ResourceInfo] = &[
    reviews::SELF_SUBJECT_REVIEWS,
    reviews::TOKEN_REVIEWS,
    reviews::LOCAL_SUBJECT_ACCESS_REVIEWS,
    reviews::SELF_SUBJECT_ACCESS_REVIEWS,
    reviews::SELF_SUBJECT_RULES_REVIEWS,
    reviews::SUBJECT_ACCESS_REVIEWS,
    bindings::CLUSTER_ROLE_BINDINGS,
    roles::CLUSTER_ROLES,
    bindings::ROLE_BINDINGS,
    roles::ROLES,
];

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers the kinds' tests share.

    use apimachinery::field_errors::FieldError;

    pub fn messages(r: Result<(), Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }
}
