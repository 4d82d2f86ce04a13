//! kube-apiserver's key layout in etcd: `/registry/<resource>/<namespace>/<name>`, and
//! `/registry/<resource>/<name>` for cluster-scoped objects. Core resources keep kube's keys
//! exactly; other groups add their group as a segment (`/registry/apps/deployments/...`), so
//! two groups' resources of one name (core `events` and `events.k8s.io` `events`) never share
//! a prefix. Names, namespaces, resources and groups never contain `/`, so a key is
//! unambiguous and a prefix lists one resource (or one namespace of it).

use store::ObjectKey;

/// Where every object lives, as in kube-apiserver's default `--etcd-prefix`.
pub const ROOT: &str = "/registry/";

/// The prefix of every object of `group`/`resource`, or of one `namespace` of it.
pub fn list_prefix(group: &str, resource: &str, namespace: Option<&str>) -> String {
    let mut p = String::from(ROOT);
    if !group.is_empty() {
        p.push_str(group);
        p.push('/');
    }
    p.push_str(resource);
    p.push('/');
    if let Some(ns) = namespace {
        p.push_str(ns);
        p.push('/');
    }
    p
}

/// The key of one object.
pub fn object_key(key: &ObjectKey) -> String {
    let ns = (!key.namespace.is_empty()).then_some(key.namespace.as_str());
    let mut k = list_prefix(&key.group, &key.resource, ns);
    k.push_str(&key.name);
    k
}

/// The first key after every key that starts with `prefix` (etcd's range end for a prefix).
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // Only 0xff bytes: to the end of the keyspace.
    vec![0]
}

/// The object key of an etcd key under `list_prefix(group, resource, None)`: the rest is
/// `namespace/name` or, cluster-scoped, `name`. `None` for a key outside the layout.
pub fn parse(group: &str, resource: &str, key: &[u8]) -> Option<ObjectKey> {
    let key = std::str::from_utf8(key).ok()?;
    let rest = key.strip_prefix(&list_prefix(group, resource, None))?;
    let (namespace, name) = rest.split_once('/').unwrap_or(("", rest));
    if name.is_empty() || name.contains('/') {
        return None;
    }
    Some(ObjectKey::new(group, resource, namespace, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_keys_are_kubes_and_groups_get_a_segment() {
        assert_eq!(
            object_key(&ObjectKey::new("", "pods", "default", "web")),
            "/registry/pods/default/web"
        );
        assert_eq!(
            object_key(&ObjectKey::new("", "nodes", "", "n1")),
            "/registry/nodes/n1"
        );
        assert_eq!(
            object_key(&ObjectKey::new("apps", "deployments", "ns", "d")),
            "/registry/apps/deployments/ns/d"
        );
        assert_eq!(list_prefix("", "pods", Some("a")), "/registry/pods/a/");
        // Core and events.k8s.io events do not share a prefix.
        let core = list_prefix("", "events", None);
        let grouped = object_key(&ObjectKey::new("events.k8s.io", "events", "ns", "e"));
        assert!(!grouped.starts_with(&core));
    }

    #[test]
    fn keys_parse_back() {
        for key in [
            ObjectKey::new("", "pods", "default", "web"),
            ObjectKey::new("", "nodes", "", "n1"),
            ObjectKey::new("rbac.authorization.k8s.io", "clusterroles", "", "admin"),
        ] {
            assert_eq!(
                parse(&key.group, &key.resource, object_key(&key).as_bytes()),
                Some(key)
            );
        }
        assert_eq!(parse("", "pods", b"/registry/pods/a/b/c"), None);
        assert_eq!(parse("", "pods", b"/registry/services/a/b"), None);
    }

    #[test]
    fn prefix_end_is_the_next_key_after_the_prefix() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
        assert!(b"/registry/pods/zzz".as_slice() < prefix_end("/registry/pods/").as_slice());
        assert!(b"/registry/podsx".as_slice() > prefix_end("/registry/pods/").as_slice());
    }
}
