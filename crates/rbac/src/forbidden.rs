//! The words of a refusal, as kube-apiserver's authorization filter writes them: who cannot
//! do what, where (`User "u" cannot list resource "pods" in API group "" in the namespace
//! "ns"`), followed by the authorizer's reason when it gave one.

use crate::attributes::Attributes;

/// The detail of the 403 for `a` (what follows `pods is forbidden: `).
pub fn detail(a: &Attributes, reason: &str) -> String {
    let user = &a.user.name;
    let mut msg = if !a.resource_request {
        format!("User {user:?} cannot {} path {:?}", a.verb, a.path)
    } else {
        let resource = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        let scope = if a.namespace.is_empty() {
            "at the cluster scope".to_string()
        } else {
            format!("in the namespace {:?}", a.namespace)
        };
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}",
            a.verb, a.api_group
        )
    };
    if !reason.is_empty() {
        msg.push_str(": ");
        msg.push_str(reason);
    }
    msg
}

/// The resource the Status names (`pods`, `deployments.apps`; empty for a path).
pub fn qualified_resource(a: &Attributes) -> String {
    match (a.resource.as_str(), a.api_group.as_str()) {
        ("", _) => String::new(),
        (r, "") => r.to_string(),
        (r, g) => format!("{r}.{g}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::User;

    #[test]
    fn messages_as_kube_writes_them() {
        let user = User {
            name: "system:serviceaccount:ns:sa".into(),
            ..Default::default()
        };
        let a = Attributes::from_request(user.clone(), "GET", "/api/v1/namespaces/ns/pods", None);
        assert_eq!(
            detail(&a, ""),
            r#"User "system:serviceaccount:ns:sa" cannot list resource "pods" in API group "" in the namespace "ns""#
        );
        let a = Attributes::from_request(user.clone(), "GET", "/apis/apps/v1/deployments", None);
        assert_eq!(qualified_resource(&a), "deployments.apps");
        assert!(detail(&a, "").ends_with(r#"in API group "apps" at the cluster scope"#));
        let a = Attributes::from_request(
            user.clone(),
            "GET",
            "/api/v1/namespaces/ns/pods/p/log",
            None,
        );
        assert!(detail(&a, "").contains(r#"cannot get resource "pods/log""#));
        let a = Attributes::from_request(user, "GET", "/metrics", None);
        assert_eq!(
            detail(&a, "RBAC: x"),
            r#"User "system:serviceaccount:ns:sa" cannot get path "/metrics": RBAC: x"#
        );
        assert_eq!(qualified_resource(&a), "");
    }
}
