//! The OpenAPI v2 (Swagger 2.0) document at `/openapi/v2`, which kubectl up to 1.28 reads for
//! `explain`, client-side validation and to learn whether the server validates fields
//! (`fieldValidation` among a kind's patch parameters). Built from the same schemas and paths
//! as the v3 documents, for every served group-version in one document, with references under
//! `#/definitions/`. [`crate::v2proto`] encodes it as the protobuf clients ask for.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use crate::{group_versions, resource_paths, schemas};

/// The query parameters a write accepts, as Swagger 2.0 writes them.
fn write_parameters() -> Value {
    json!([
        {"name": "dryRun", "in": "query", "type": "string", "uniqueItems": true},
        {"name": "fieldManager", "in": "query", "type": "string", "uniqueItems": true},
        {"name": "fieldValidation", "in": "query", "type": "string", "uniqueItems": true},
        {"name": "force", "in": "query", "type": "boolean", "uniqueItems": true},
    ])
}

/// Rewrites v3 references (`#/components/schemas/X`) to v2 ones (`#/definitions/X`) and
/// drops what Swagger 2.0 does not have (`nullable`).
fn to_v2(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.remove("nullable");
            if let Some(Value::String(r)) = m.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    *r = format!("#/definitions/{name}");
                }
            }
            m.values_mut().for_each(to_v2);
        }
        Value::Array(a) => a.iter_mut().for_each(to_v2),
        Value::Null | Value::Bool(_) | Value::Number(_) | Value::String(_) => {}
    }
}

/// `GET /openapi/v2`: built once, as it is a function of the binary.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(|| {
        let mut paths = Map::new();
        let mut definitions = Map::new();
        for (group, version) in group_versions() {
            let kinds = resource_paths(group, version, &write_parameters(), &mut paths);
            definitions.extend(schemas::component_schemas(group, version, &kinds));
        }
        let mut doc = json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": "v1.33.0"},
            "paths": paths,
            "definitions": definitions,
        });
        to_v2(&mut doc);
        doc
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_have_definitions_with_their_gvk_and_patch_paths() {
        let doc = document();
        assert_eq!(doc["swagger"], "2.0");
        let pod = &doc["definitions"]["io.k8s.api.core.v1.Pod"];
        assert_eq!(
            pod["x-kubernetes-group-version-kind"],
            json!([{"group": "", "version": "v1", "kind": "Pod"}])
        );
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "version": "v1", "kind": "Deployment"})
        );
        assert!(patch["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query"));
        // Every reference is a v2 one and resolves.
        let text = doc.to_string();
        assert!(!text.contains("#/components/"));
        for part in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = &part[..part.find('"').expect("closing quote")];
            assert!(
                doc["definitions"].get(name).is_some(),
                "dangling ref {name}"
            );
        }
    }
}
