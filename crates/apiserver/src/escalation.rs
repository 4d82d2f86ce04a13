//! RBAC's escalation prevention on writes of Roles, ClusterRoles and their bindings: the
//! request's user and the policy index become a [`WriteGuard`] that the generic write path
//! runs on the object it would store (after a patch is applied), and whose refusal is kube's
//! 403. The decision itself is `rbac::escalation`'s.

use std::sync::Arc;

use api::resources::ResourceInfo;
use rbac::{PolicyKind, User};
use serde_json::Value;

use crate::error::ApiError;
use crate::objects::WriteGuard;

/// The guard for `user`'s writes of `info`, when it is an RBAC kind and `user` is not
/// `system:masters`.
pub fn guard(
    authorizer: &authorizer::Authorizer,
    user: Option<&User>,
    info: &ResourceInfo,
) -> Option<WriteGuard> {
    if info.group != rbac::GROUP {
        return None;
    }
    let kind = PolicyKind::ALL
        .into_iter()
        .find(|k| k.resource() == info.plural)?;
    let user = user.filter(|u| !u.is_privileged())?.clone();
    let authorizer = authorizer.clone();
    Some(WriteGuard(Arc::new(move |info, namespace, obj| {
        let policy = authorizer.policy();
        rbac::escalation::check(&policy, &user, kind, namespace, obj).map_err(|e| {
            ApiError::Forbidden {
                resource: crate::error::qualified(info),
                group: info.group.to_string(),
                name: obj
                    .pointer("/metadata/name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                detail: e.to_string(),
            }
        })
    })))
}
