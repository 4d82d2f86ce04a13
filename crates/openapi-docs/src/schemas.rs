//! The schemas of the served kinds, as OpenAPI v3 `components.schemas`: generated from
//! k8s-openapi's JSON schemas (field types and descriptions of v1.33), each kind's root marked
//! with `x-kubernetes-group-version-kind` so `kubectl explain` finds it. Kinds without an entry
//! here are served without a schema.

use k8s_openapi::api::{
    apps, batch, coordination, core, discovery, node, policy, rbac, scheduling, storage,
};
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{json, Map, Value};

/// Adds the schema of `T` (and every schema it refers to) to `gen`; returns its name.
fn add<T: schemars::JsonSchema>(gen: &mut SchemaGenerator) -> String {
    gen.subschema_for::<T>();
    T::schema_name().into_owned()
}

/// The schema name of a kind, after adding it and its references to `gen`.
fn add_kind(gen: &mut SchemaGenerator, group: &str, version: &str, kind: &str) -> Option<String> {
    let name = match (group, version, kind) {
        ("", "v1", "Pod") => add::<core::v1::Pod>(gen),
        ("", "v1", "Service") => add::<core::v1::Service>(gen),
        ("", "v1", "ConfigMap") => add::<core::v1::ConfigMap>(gen),
        ("", "v1", "Secret") => add::<core::v1::Secret>(gen),
        ("", "v1", "Namespace") => add::<core::v1::Namespace>(gen),
        ("", "v1", "Node") => add::<core::v1::Node>(gen),
        ("", "v1", "ServiceAccount") => add::<core::v1::ServiceAccount>(gen),
        ("", "v1", "Endpoints") => add::<core::v1::Endpoints>(gen),
        ("", "v1", "Event") => add::<core::v1::Event>(gen),
        ("", "v1", "PersistentVolume") => add::<core::v1::PersistentVolume>(gen),
        ("", "v1", "PersistentVolumeClaim") => add::<core::v1::PersistentVolumeClaim>(gen),
        ("", "v1", "PodTemplate") => add::<core::v1::PodTemplate>(gen),
        ("", "v1", "LimitRange") => add::<core::v1::LimitRange>(gen),
        ("", "v1", "ResourceQuota") => add::<core::v1::ResourceQuota>(gen),
        ("apps", "v1", "Deployment") => add::<apps::v1::Deployment>(gen),
        ("apps", "v1", "ReplicaSet") => add::<apps::v1::ReplicaSet>(gen),
        ("apps", "v1", "StatefulSet") => add::<apps::v1::StatefulSet>(gen),
        ("apps", "v1", "DaemonSet") => add::<apps::v1::DaemonSet>(gen),
        ("apps", "v1", "ControllerRevision") => add::<apps::v1::ControllerRevision>(gen),
        ("batch", "v1", "Job") => add::<batch::v1::Job>(gen),
        ("batch", "v1", "CronJob") => add::<batch::v1::CronJob>(gen),
        ("coordination.k8s.io", "v1", "Lease") => add::<coordination::v1::Lease>(gen),
        ("discovery.k8s.io", "v1", "EndpointSlice") => add::<discovery::v1::EndpointSlice>(gen),
        ("policy", "v1", "PodDisruptionBudget") => add::<policy::v1::PodDisruptionBudget>(gen),
        ("storage.k8s.io", "v1", "StorageClass") => add::<storage::v1::StorageClass>(gen),
        ("scheduling.k8s.io", "v1", "PriorityClass") => add::<scheduling::v1::PriorityClass>(gen),
        ("node.k8s.io", "v1", "RuntimeClass") => add::<node::v1::RuntimeClass>(gen),
        ("rbac.authorization.k8s.io", "v1", "Role") => add::<rbac::v1::Role>(gen),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole") => add::<rbac::v1::ClusterRole>(gen),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding") => add::<rbac::v1::RoleBinding>(gen),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding") => {
            add::<rbac::v1::ClusterRoleBinding>(gen)
        }
        _ => return None,
    };
    Some(name)
}

/// `components.schemas` for the kinds of one group-version: each kind's schema with its GVK,
/// and every schema they refer to.
pub fn component_schemas(group: &str, version: &str, kinds: &[&str]) -> Map<String, Value> {
    let mut gen = SchemaSettings::openapi3().into_generator();
    let roots: Vec<(String, &str)> = kinds
        .iter()
        .filter_map(|kind| Some((add_kind(&mut gen, group, version, kind)?, *kind)))
        .collect();
    let mut schemas = gen.take_definitions(true);
    for (name, kind) in roots {
        if let Some(Value::Object(schema)) = schemas.get_mut(&name) {
            schema.insert(
                "x-kubernetes-group-version-kind".into(),
                json!([{"group": group, "version": version, "kind": kind}]),
            );
        }
    }
    schemas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_carry_their_gvk_and_descriptions_and_refs_resolve() {
        let schemas = component_schemas("apps", "v1", &["Deployment", "NotAKind"]);
        let deployment = &schemas["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deployment["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "version": "v1", "kind": "Deployment"}])
        );
        assert!(deployment["description"]
            .as_str()
            .is_some_and(|d| d.contains("Deployment")));
        // Every reference points at a schema of the same document.
        let text = Value::Object(schemas.clone()).to_string();
        for part in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &part[..part.find('"').expect("closing quote")];
            assert!(schemas.contains_key(name), "dangling ref {name}");
        }
        assert!(schemas.contains_key("io.k8s.api.core.v1.PodSpec"));
        let strategy = &schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"];
        assert!(
            strategy.to_string().contains("DeploymentStrategy"),
            "{strategy}"
        );
    }

    #[test]
    fn a_group_version_without_known_kinds_has_no_schemas() {
        assert!(component_schemas("example.com", "v1", &["Widget"]).is_empty());
    }
}
