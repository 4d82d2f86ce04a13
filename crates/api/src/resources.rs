//! The resource registry as discovery and routing read it: every kind the API server serves.
//!
//! Discovery is the first thing every kubectl command reads, so names, scopes, verbs and
//! subresources follow what kube-apiserver v1.33 reports for the same resources. Each entry
//! carries its kind's [`Strategy`](apimachinery::strategy::Strategy). The kinds themselves
//! live in `kinds-core`, `kinds-workloads` and `kinds-rbac`; this is the one place that joins them.

use std::sync::LazyLock;

pub use apimachinery::strategy::{ResourceInfo, Subresource};

static REGISTRY: LazyLock<Vec<ResourceInfo>> =
    LazyLock::new(|| [kinds_core::KINDS, kinds_workloads::KINDS, kinds_rbac::KINDS].concat());

/// Every served resource, core kinds first.
pub fn all() -> &'static [ResourceInfo] {
    &REGISTRY
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
    use serde_json::json;

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

    fn now() -> jiff::Timestamp {
        "2026-01-02T15:00:00Z".parse().expect("timestamp")
    }

    #[test]
    fn one_cell_per_column() {
        for r in all() {
            let s = r.strategy;
            assert_eq!(
                s.columns().len(),
                s.cells(&json!({}), now()).len(),
                "{}",
                r.kind
            );
        }
    }

    /// The status subresource and the update hooks agree: an update of the object keeps the
    /// stored status exactly for kinds that serve `status`, and a status update changes only
    /// the status.
    #[test]
    fn status_rules_follow_the_status_subresource() {
        // A PodTemplate keeps its pod template at `template`, not under `spec`.
        let old = json!({"metadata": {"name": "x", "generation": 1}, "spec": {"a": 1},
                         "template": {"a": 1}, "status": {"s": "old"}});
        for r in all() {
            let mut new = json!({"metadata": {"name": "x", "generation": 1}, "spec": {"a": 2},
                                 "template": {"a": 2}, "status": {"s": "new"}});
            r.strategy.prepare_for_update(&old, &mut new);
            let kept = new["status"]["s"] == "old";
            assert_eq!(kept, r.subresource("status").is_some(), "{}", r.kind);
            // The generation follows the spec (a CertificateSigningRequest keeps its spec), for
            // kinds that keep one (a ResourceQuota does not, as upstream).
            let mut created = json!({"metadata": {"name": "x"}, "spec": {"a": 1}});
            r.strategy.prepare_for_create(&mut created);
            let tracked = created["metadata"].get("generation").is_some();
            let generation = if tracked && new["spec"] != old["spec"] {
                2
            } else {
                1
            };
            assert_eq!(new["metadata"]["generation"], generation, "{}", r.kind);
            let mut status =
                json!({"metadata": {"name": "y"}, "spec": {"a": 3}, "status": {"s": "new"}});
            r.strategy.prepare_for_status_update(&old, &mut status);
            assert_eq!(status["spec"], old["spec"], "{}", r.kind);
            assert_eq!(status["metadata"], old["metadata"], "{}", r.kind);
            assert_eq!(status["status"]["s"], "new", "{}", r.kind);
        }
    }

    #[test]
    fn strict_decoding_knows_every_kind() {
        for r in all() {
            let obj =
                json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": "x"}});
            let back = r.strategy.round_trip(obj).expect(r.kind);
            assert_eq!(back["metadata"]["name"], "x", "{}", r.kind);
        }
    }
}
