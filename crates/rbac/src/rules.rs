//! Whether one PolicyRule allows a request (kube's `RuleAllows`): verbs, API groups,
//! resources (with `resource/subresource` and `*/subresource` forms), resource names, and
//! non-resource URLs (with a trailing `*` as a prefix match).

use k8s_openapi::api::rbac::v1::PolicyRule;

use crate::attributes::Attributes;

/// The RBAC API group.
pub const GROUP: &str = "rbac.authorization.k8s.io";

/// `*` in any list matches everything of that list.
const ALL: &str = "*";

fn has(list: &[String], item: &str) -> bool {
    list.iter().any(|x| x == ALL || x == item)
}

fn verb_matches(rule: &PolicyRule, verb: &str) -> bool {
    has(&rule.verbs, verb)
}

fn resource_matches(rule: &PolicyRule, resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    rule.resources.iter().flatten().any(|r| {
        r == ALL
            || *r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

fn name_matches(rule: &PolicyRule, name: &str) -> bool {
    match rule.resource_names.as_deref() {
        None | Some([]) => true,
        Some(names) => names.iter().any(|n| n == name),
    }
}

fn url_matches(rule: &PolicyRule, path: &str) -> bool {
    rule.non_resource_urls.iter().flatten().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// `RuleAllows`.
pub fn allows(a: &Attributes, rule: &PolicyRule) -> bool {
    if !verb_matches(rule, &a.verb) {
        return false;
    }
    if a.resource_request {
        has(rule.api_groups.as_deref().unwrap_or_default(), &a.api_group)
            && resource_matches(rule, &a.resource, &a.subresource)
            && name_matches(rule, &a.name)
    } else {
        url_matches(rule, &a.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::user::User;

    fn rule(verbs: &[&str], groups: &[&str], resources: &[&str], names: &[&str]) -> PolicyRule {
        let v = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PolicyRule {
            verbs: v(verbs),
            api_groups: Some(v(groups)),
            resources: Some(v(resources)),
            resource_names: Some(v(names)),
            non_resource_urls: None,
        }
    }

    fn req(method: &str, path: &str) -> Attributes {
        Attributes::from_request(User::default(), method, path, None)
    }

    #[test]
    fn resources_subresources_and_names() {
        let pods = rule(&["get", "list"], &[""], &["pods"], &[]);
        assert!(allows(&req("GET", "/api/v1/namespaces/n/pods"), &pods));
        assert!(!allows(
            &req("GET", "/api/v1/namespaces/n/pods/p/log"),
            &pods
        ));
        assert!(!allows(
            &req("DELETE", "/api/v1/namespaces/n/pods/p"),
            &pods
        ));
        assert!(!allows(
            &req("GET", "/apis/apps/v1/namespaces/n/deployments"),
            &pods
        ));
        let logs = rule(&["get"], &[""], &["pods/log"], &[]);
        assert!(allows(
            &req("GET", "/api/v1/namespaces/n/pods/p/log"),
            &logs
        ));
        let any_status = rule(&["*"], &["*"], &["*/status"], &[]);
        assert!(allows(
            &req("PUT", "/apis/apps/v1/namespaces/n/deployments/d/status"),
            &any_status
        ));
        assert!(!allows(
            &req("PUT", "/apis/apps/v1/namespaces/n/deployments/d"),
            &any_status
        ));
        let one = rule(&["get"], &[""], &["configmaps"], &["settings"]);
        assert!(allows(
            &req("GET", "/api/v1/namespaces/n/configmaps/settings"),
            &one
        ));
        assert!(!allows(
            &req("GET", "/api/v1/namespaces/n/configmaps/other"),
            &one
        ));
        assert!(!allows(
            &req("GET", "/api/v1/namespaces/n/configmaps"),
            &one
        ));
    }

    #[test]
    fn non_resource_urls() {
        let r = PolicyRule {
            verbs: vec!["get".into()],
            non_resource_urls: Some(vec!["/healthz".into(), "/apis/*".into()]),
            ..Default::default()
        };
        assert!(allows(&req("GET", "/healthz"), &r));
        assert!(allows(&req("GET", "/apis/apps/v1"), &r));
        assert!(!allows(&req("GET", "/metrics"), &r));
        assert!(!allows(&req("GET", "/api/v1/namespaces/n/pods"), &r));
    }
}
