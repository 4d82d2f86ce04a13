//! The resource registry: every kind the API server serves, as discovery describes it.
//!
//! Discovery is the first thing every kubectl command reads, so names, scopes, verbs and
//! subresources here follow what kube-apiserver v1.33 reports for the same resources.

/// One served resource (e.g. core/v1 pods).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceInfo {
    /// API group, `""` for core.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower-case: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Subresources: (name, response kind group, version, kind, verbs).
    pub subresources: &'static [Subresource],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

impl ResourceInfo {
    /// `apiVersion` as objects of this resource carry it (`v1`, `coordination.k8s.io/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The subresource called `name`, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }
}

/// Verbs of a regular collection (kube-apiserver lists them sorted).
const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
/// Namespaces have no deletecollection in kube-apiserver.
const NAMESPACE_VERBS: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
const CONNECT_VERBS: &[&str] = &["create", "get"];

const fn sub(
    name: &'static str,
    group: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group,
        version: "v1",
        kind,
        verbs,
    }
}

static RESOURCES: &[ResourceInfo] = &[
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "namespaces",
        singular: "namespace",
        kind: "Namespace",
        list_kind: "NamespaceList",
        namespaced: false,
        short_names: &["ns"],
        categories: &[],
        verbs: NAMESPACE_VERBS,
        subresources: &[
            sub("finalize", "", "Namespace", &["update"]),
            sub("status", "", "Namespace", STATUS_VERBS),
        ],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "nodes",
        singular: "node",
        kind: "Node",
        list_kind: "NodeList",
        namespaced: false,
        short_names: &["no"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[
            sub("proxy", "", "NodeProxyOptions", PROXY_VERBS),
            sub("status", "", "Node", STATUS_VERBS),
        ],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "pods",
        singular: "pod",
        kind: "Pod",
        list_kind: "PodList",
        namespaced: true,
        short_names: &["po"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            sub("attach", "", "PodAttachOptions", CONNECT_VERBS),
            sub("binding", "", "Binding", &["create"]),
            sub("ephemeralcontainers", "", "Pod", STATUS_VERBS),
            sub("eviction", "policy", "Eviction", &["create"]),
            sub("exec", "", "PodExecOptions", CONNECT_VERBS),
            sub("log", "", "Pod", &["get"]),
            sub("portforward", "", "PodPortForwardOptions", CONNECT_VERBS),
            sub("status", "", "Pod", STATUS_VERBS),
        ],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "events",
        singular: "event",
        kind: "Event",
        list_kind: "EventList",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "configmaps",
        singular: "configmap",
        kind: "ConfigMap",
        list_kind: "ConfigMapList",
        namespaced: true,
        short_names: &["cm"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "secrets",
        singular: "secret",
        kind: "Secret",
        list_kind: "SecretList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "services",
        singular: "service",
        kind: "Service",
        list_kind: "ServiceList",
        namespaced: true,
        short_names: &["svc"],
        categories: &["all"],
        verbs: ALL_VERBS,
        subresources: &[
            sub("proxy", "", "ServiceProxyOptions", PROXY_VERBS),
            sub("status", "", "Service", STATUS_VERBS),
        ],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "endpoints",
        singular: "endpoints",
        kind: "Endpoints",
        list_kind: "EndpointsList",
        namespaced: true,
        short_names: &["ep"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    },
    ResourceInfo {
        group: "discovery.k8s.io",
        version: "v1",
        plural: "endpointslices",
        singular: "endpointslice",
        kind: "EndpointSlice",
        list_kind: "EndpointSliceList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    },
    ResourceInfo {
        group: "",
        version: "v1",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        kind: "ServiceAccount",
        list_kind: "ServiceAccountList",
        namespaced: true,
        short_names: &["sa"],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    },
    ResourceInfo {
        group: "coordination.k8s.io",
        version: "v1",
        plural: "leases",
        singular: "lease",
        kind: "Lease",
        list_kind: "LeaseList",
        namespaced: true,
        short_names: &[],
        categories: &[],
        verbs: ALL_VERBS,
        subresources: &[],
    },
];

/// Every served resource. Now: core/v1 namespaces, nodes, pods, events, configmaps, secrets,
/// services, endpoints, serviceaccounts; coordination.k8s.io/v1 leases. (apps/v1 comes with
/// Deployments.)
pub fn all() -> &'static [ResourceInfo] {
    RESOURCES
}

/// Look up by group and plural.
pub fn lookup(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all()
        .iter()
        .find(|r| r.group == group && r.plural == plural)
}

/// Look up by group and kind (`""`, `"Pod"`).
pub fn lookup_kind(group: &str, kind: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.group == group && r.kind == kind)
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
    }

    #[test]
    fn verbs_are_sorted_and_names_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for r in all() {
            assert!(seen.insert((r.group, r.plural)), "duplicate {}", r.plural);
            let mut v = r.verbs.to_vec();
            v.sort_unstable();
            assert_eq!(v, r.verbs, "{} verbs unsorted", r.plural);
        }
    }
}
