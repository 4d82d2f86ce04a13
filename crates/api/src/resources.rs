//! The resource registry: every kind the API server serves, as discovery describes it.

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

/// Every served resource. Now: core/v1 namespaces, nodes, pods, events, configmaps, secrets,
/// services, endpoints; coordination.k8s.io/v1 leases. (apps/v1 comes with Deployments.)
pub fn all() -> &'static [ResourceInfo] {
    unimplemented!()
}

/// Look up by group and plural.
pub fn lookup(group: &str, plural: &str) -> Option<&'static ResourceInfo> {
    all().iter().find(|r| r.group == group && r.plural == plural)
}
