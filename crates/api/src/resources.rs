//! The resource registry as discovery and routing read it: every kind the API server serves.
//!
//! Discovery is the first thing every kubectl command reads, so names, scopes, verbs and
//! subresources follow what kube-apiserver v1.33 reports for the same resources. Each entry
//! carries its kind's [`Strategy`](crate::strategy::Strategy).

pub use crate::strategy::{ResourceInfo, Subresource};

/// Every served resource: core/v1 namespaces, nodes, pods, events, configmaps, secrets,
/// services, endpoints, serviceaccounts; discovery.k8s.io/v1 endpointslices;
/// coordination.k8s.io/v1 leases.
pub fn all() -> &'static [ResourceInfo] {
    crate::kinds::REGISTRY
}

/// Look up by group and plural; `None` is a 404 at the API.
pub fn lookup(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// Look up by group and kind (`""`, `"Pod"`).
pub fn lookup_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.group == group && r.kind == kind)
}

/// Look up by kind alone, in any group (kind names are unique among the served resources).
pub fn lookup_any_kind(kind: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_are_namespaced_with_subresources() {
        let pods = lookup("", "pods").expect("pods served");
        assert!(pods.namespaced);
        assert_eq!(pods.short_names, &["po"]);
        assert_eq!(pods.categories, &["all"]);
        let exec = pods.subresource("exec").expect("exec");
        assert_eq!(exec.kind, "PodExecOptions");
        assert_eq!(exec.verbs, &["create", "get"]);
        let ev = pods.subresource("eviction").expect("eviction");
        assert_eq!((ev.group, ev.kind), ("policy", "Eviction"));
        assert_eq!(pods.api_version(), "v1");
    }

    #[test]
    fn cluster_scoped_and_groups() {
        assert!(!lookup("", "namespaces").expect("ns").namespaced);
        assert!(!lookup("", "nodes").expect("nodes").namespaced);
        assert!(!lookup("", "namespaces")
            .expect("ns")
            .verbs
            .contains(&"deletecollection"));
        let leases = lookup("coordination.k8s.io", "leases").expect("leases");
        assert_eq!(leases.api_version(), "coordination.k8s.io/v1");
        assert!(lookup("", "leases").is_none());
        assert_eq!(lookup_kind("", "Service").expect("svc").plural, "services");
        assert_eq!(lookup_any_kind("Lease"), Some(leases));
        assert!(lookup("", "widgets").is_none() && lookup_any_kind("Widget").is_none());
    }

    #[test]
    fn verbs_are_sorted_and_names_unique() {
        let mut seen = std::collections::BTreeSet::new();
        let mut kinds = std::collections::BTreeSet::new();
        for r in all() {
            assert!(seen.insert((r.group, r.plural)), "duplicate {}", r.plural);
            assert!(kinds.insert(r.kind), "duplicate kind {}", r.kind);
            let mut v = r.verbs.to_vec();
            v.sort_unstable();
            assert_eq!(v, r.verbs, "{} verbs unsorted", r.plural);
        }
    }
}
