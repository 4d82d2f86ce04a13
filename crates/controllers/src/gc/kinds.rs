//! The kinds the garbage collector knows, from the API's discovery (upstream's
//! `GetDeletableResources` and REST mapper): which it watches to build its graph (every
//! kind it may list, watch and delete, except Events), and where an owner reference's
//! apiVersion and kind live (resource path and scope).

use kube::api::ApiResource;
use kube::discovery::{verbs, ApiCapabilities, Discovery, Scope};

/// Kinds upstream's collector never watches: events own nothing and are many.
const IGNORED: &[(&str, &str)] = &[("", "events"), ("events.k8s.io", "events")];

#[derive(Debug, Clone)]
struct Kind {
    resource: ApiResource,
    namespaced: bool,
    monitored: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Kinds {
    kinds: Vec<Kind>,
}

impl Kinds {
    pub fn from_discovery(discovery: &Discovery) -> Self {
        Self::new(
            discovery
                .groups()
                .flat_map(|g| g.recommended_resources())
                .collect(),
        )
    }

    pub fn new(resources: Vec<(ApiResource, ApiCapabilities)>) -> Self {
        let kinds = resources
            .into_iter()
            .filter(|(r, _)| !r.plural.contains('/'))
            .map(|(resource, caps)| {
                let ignored = IGNORED
                    .iter()
                    .any(|(g, p)| resource.group == *g && resource.plural == *p);
                let monitored = !ignored
                    && [verbs::LIST, verbs::WATCH, verbs::DELETE]
                        .iter()
                        .all(|v| caps.supports_operation(v));
                Kind {
                    namespaced: caps.scope == Scope::Namespaced,
                    resource,
                    monitored,
                }
            })
            .collect();
        Kinds { kinds }
    }

    /// The kinds whose objects make up the graph.
    pub fn monitored(&self) -> Vec<ApiResource> {
        self.kinds
            .iter()
            .filter(|k| k.monitored)
            .map(|k| k.resource.clone())
            .collect()
    }

    /// The resource of `api_version`/`kind` and whether it is namespaced; another served
    /// version of the same group and kind will do.
    pub fn lookup(&self, api_version: &str, kind: &str) -> Option<(&ApiResource, bool)> {
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        let same_kind = |k: &&Kind| k.resource.group == group && k.resource.kind == kind;
        self.kinds
            .iter()
            .filter(same_kind)
            .find(|k| k.resource.api_version == api_version)
            .or_else(|| self.kinds.iter().find(same_kind))
            .map(|k| (&k.resource, k.namespaced))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::GroupVersionKind;

    fn resource(
        group: &str,
        version: &str,
        kind: &str,
        plural: &str,
        scope: Scope,
        ops: &[&str],
    ) -> (ApiResource, ApiCapabilities) {
        let gvk = GroupVersionKind::gvk(group, version, kind);
        (
            ApiResource::from_gvk_with_plural(&gvk, plural),
            ApiCapabilities {
                scope,
                subresources: Vec::new(),
                operations: ops.iter().map(|s| s.to_string()).collect(),
            },
        )
    }

    #[test]
    fn watches_deletable_kinds_but_events() {
        let all = &["list", "watch", "delete", "get"];
        let kinds = Kinds::new(vec![
            resource("", "v1", "Pod", "pods", Scope::Namespaced, all),
            resource("", "v1", "Event", "events", Scope::Namespaced, all),
            resource(
                "",
                "v1",
                "Binding",
                "bindings",
                Scope::Namespaced,
                &["create"],
            ),
            resource(
                "apps",
                "v1",
                "ReplicaSet",
                "replicasets",
                Scope::Namespaced,
                all,
            ),
            resource("", "v1", "Namespace", "namespaces", Scope::Cluster, all),
        ]);
        let plurals: Vec<String> = kinds.monitored().into_iter().map(|r| r.plural).collect();
        assert_eq!(plurals, ["pods", "replicasets", "namespaces"]);
        let (rs, namespaced) = kinds.lookup("apps/v1", "ReplicaSet").expect("rs");
        assert_eq!((rs.plural.as_str(), namespaced), ("replicasets", true));
        // Another version of a served group and kind maps to the served one.
        assert!(kinds.lookup("apps/v1beta2", "ReplicaSet").is_some());
        let (ns, namespaced) = kinds.lookup("v1", "Namespace").expect("ns");
        assert_eq!((ns.plural.as_str(), namespaced), ("namespaces", false));
        assert!(kinds.lookup("v1", "Widget").is_none());
        assert!(kinds.lookup("example.com/v1", "Pod").is_none());
    }
}
