//! What a request asks for, in the terms authorization decides on: kube's `RequestInfo`
//! (verb, API group, namespace, resource, subresource, name — or a non-resource path) read
//! from the method, path and query alone, as kube-apiserver's `RequestInfoFactory` does.

use crate::user::{ImpersonationCheck, User};

/// The attributes of one request (kube's `authorizer.Attributes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributes {
    pub user: User,
    pub verb: String,
    /// A resource request names an API group and resource; otherwise `path` is what is asked.
    pub resource_request: bool,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    pub path: String,
}

/// The special verb paths kube still accepts (`/api/v1/watch/...`).
const SPECIAL_VERBS: &[&str] = &["proxy", "watch"];
/// `/namespaces/NAME/<these>` are subresources of the namespace, not resources inside it.
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

fn verb_of(method: &str) -> &'static str {
    match method {
        "POST" => "create",
        "GET" | "HEAD" => "get",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => "delete",
        _ => "",
    }
}

fn is_true(v: &str) -> bool {
    matches!(v, "true" | "1" | "True" | "TRUE" | "t" | "T")
}

/// `metadata.name=X` (or `==`) in a field selector narrows a list or watch to one name.
fn name_from_field_selector(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let (k, v) = term.split_once("==").or_else(|| term.split_once('='))?;
        (k.trim() == "metadata.name" && !k.ends_with('!')).then(|| v.trim().to_string())
    })
}

impl Attributes {
    /// The attributes of `method path?query` made by `user`.
    pub fn from_request(user: User, method: &str, path: &str, query: Option<&str>) -> Self {
        let mut a = Attributes {
            user,
            verb: method.to_ascii_lowercase(),
            resource_request: false,
            api_group: String::new(),
            api_version: String::new(),
            namespace: String::new(),
            resource: String::new(),
            subresource: String::new(),
            name: String::new(),
            path: path.to_string(),
        };
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut rest: &[&str] = match parts.as_slice() {
            ["api", rest @ ..] if rest.len() >= 2 => rest,
            ["apis", group, rest @ ..] if rest.len() >= 2 => {
                a.api_group = group.to_string();
                rest
            }
            _ => return a,
        };
        a.api_version = rest[0].to_string();
        rest = &rest[1..];
        a.resource_request = true;
        if SPECIAL_VERBS.contains(&rest[0]) {
            if rest.len() < 2 {
                // `/api/v1/watch` alone names nothing.
                a.resource_request = false;
                return a;
            }
            a.verb = rest[0].to_string();
            rest = &rest[1..];
        } else {
            a.verb = verb_of(method).to_string();
        }
        if rest[0] == "namespaces" && rest.len() > 1 {
            a.namespace = rest[1].to_string();
            if rest.len() > 2 && !NAMESPACE_SUBRESOURCES.contains(&rest[2]) {
                rest = &rest[2..];
            }
        }
        if rest.len() >= 3 && a.verb != "proxy" {
            a.subresource = rest[2].to_string();
        }
        if rest.len() >= 2 {
            a.name = rest[1].to_string();
        }
        a.resource = rest[0].to_string();
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query.unwrap_or("")).unwrap_or_default();
        let param = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        if a.name.is_empty() && a.verb == "get" {
            a.verb = if param("watch").is_some_and(is_true) {
                "watch".into()
            } else {
                "list".into()
            };
        }
        if matches!(a.verb.as_str(), "list" | "watch") {
            if let Some(name) = param("fieldSelector").and_then(name_from_field_selector) {
                a.name = name;
            }
        }
        if a.name.is_empty() && a.verb == "delete" {
            a.verb = "deletecollection".into();
        }
        a
    }

    /// `user`'s request to impersonate what `c` names.
    pub fn impersonate(user: User, c: &ImpersonationCheck) -> Self {
        Attributes {
            user,
            verb: "impersonate".into(),
            resource_request: true,
            api_group: c.group.to_string(),
            api_version: String::new(),
            namespace: c.namespace.clone(),
            resource: c.resource.to_string(),
            subresource: c.subresource.clone(),
            name: c.name.clone(),
            path: String::new(),
        }
    }

    /// The same question about another verb (a WebSocket exec also needs `create`).
    pub fn with_verb(&self, verb: &str) -> Self {
        Attributes {
            verb: verb.to_string(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(method: &str, path: &str, query: Option<&str>) -> Attributes {
        Attributes::from_request(User::default(), method, path, query)
    }

    fn summary(a: &Attributes) -> String {
        format!(
            "{} {}|{}|{}|{}|{}|{}",
            a.verb,
            if a.resource_request { "res" } else { "path" },
            a.api_group,
            a.namespace,
            a.resource,
            a.subresource,
            a.name
        )
    }

    #[test]
    fn request_info_as_kube_reads_it() {
        for (method, path, query, want) in [
            (
                "GET",
                "/api/v1/namespaces/ns/pods",
                None,
                "list res||ns|pods||",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods",
                Some("watch=1"),
                "watch res||ns|pods||",
            ),
            (
                "GET",
                "/api/v1/watch/namespaces/ns/pods",
                None,
                "watch res||ns|pods||",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods/p",
                None,
                "get res||ns|pods||p",
            ),
            (
                "GET",
                "/api/v1/namespaces/ns/pods/p/log",
                None,
                "get res||ns|pods|log|p",
            ),
            (
                "POST",
                "/api/v1/namespaces/ns/pods/p/exec",
                None,
                "create res||ns|pods|exec|p",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/ns/pods",
                None,
                "deletecollection res||ns|pods||",
            ),
            (
                "DELETE",
                "/api/v1/namespaces/ns/pods/p",
                None,
                "delete res||ns|pods||p",
            ),
            (
                "PATCH",
                "/apis/apps/v1/namespaces/ns/deployments/d/scale",
                None,
                "patch res|apps|ns|deployments|scale|d",
            ),
            (
                "PUT",
                "/api/v1/namespaces/ns",
                None,
                "update res||ns|namespaces||ns",
            ),
            (
                "PUT",
                "/api/v1/namespaces/ns/finalize",
                None,
                "update res||ns|namespaces|finalize|ns",
            ),
            ("GET", "/api/v1/nodes", None, "list res|||nodes||"),
            (
                "GET",
                "/api/v1/pods",
                Some("fieldSelector=metadata.name%3Dweb"),
                "list res|||pods||web",
            ),
            ("GET", "/apis/apps/v1", None, "get path|||||"),
            ("GET", "/api", None, "get path|||||"),
            ("GET", "/version", None, "get path|||||"),
            (
                "POST",
                "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
                None,
                "create res|authorization.k8s.io||selfsubjectaccessreviews||",
            ),
        ] {
            assert_eq!(
                summary(&attrs(method, path, query)),
                want,
                "{method} {path}"
            );
        }
    }
}
