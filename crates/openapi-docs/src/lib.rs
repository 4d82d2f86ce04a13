//! The OpenAPI v3 documents: one per group-version, whose paths carry a `patch` operation
//! with `x-kubernetes-group-version-kind` and the `fieldValidation` parameter (what makes
//! kubectl trust server-side field validation for `apply`, `create -f`, `edit`), and whose
//! `components.schemas` describe the kinds for `kubectl explain` and client generators.
//!
//! The patch operations name no request body: kubectl computes strategic merge patches from
//! its own types then, as for a server without OpenAPI, since these schemas carry no patch
//! strategies. Documents are built per request and not kept: they are large and rarely read,
//! and clients cache them by the hash in the index.

mod schemas;
pub mod v2;
pub mod v2proto;

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

/// `api/v1` or `apis/<group>/<version>`.
fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in api::resources::all() {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

/// A stable content hash so clients can cache documents (FNV-1a of the document text).
fn hash(doc: &Value) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in doc.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    format!("{h:016X}")
}

/// `GET /openapi/v3`. The documents are a function of the binary, so their hashes are
/// computed once (building every document once) and only the hashes are kept.
pub fn index() -> Value {
    static INDEX: OnceLock<Value> = OnceLock::new();
    INDEX
        .get_or_init(|| {
            let mut paths = Map::new();
            for (g, v) in group_versions() {
                let p = gv_path(g, v);
                let doc = document(&p).unwrap_or(Value::Null);
                paths.insert(
                    p.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{p}?hash={}", hash(&doc))}),
                );
            }
            json!({"paths": paths})
        })
        .clone()
}

/// Adds the item path of every resource of one group-version to `paths` (get, put and patch
/// with the kind's GVK and the write `params`); returns the kinds.
fn resource_paths(
    group: &str,
    version: &str,
    params: &Value,
    paths: &mut Map<String, Value>,
) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    for r in api::resources::all()
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        kinds.push(r.kind);
        let base = format!("/{}", gv_path(group, version));
        let item = if r.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural)
        } else {
            format!("{base}/{}/{{name}}", r.plural)
        };
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        paths.insert(
            item,
            json!({
                "get": {
                    "x-kubernetes-action": "get",
                    "x-kubernetes-group-version-kind": gvk,
                    "responses": {"200": {"description": "OK"}},
                },
                "put": {
                    "x-kubernetes-action": "put",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                },
                "patch": {
                    "x-kubernetes-action": "patch",
                    "x-kubernetes-group-version-kind": gvk,
                    "parameters": params,
                    "responses": {"200": {"description": "OK"}},
                },
            }),
        );
    }
    kinds
}

/// `GET /openapi/v3/<gv path>`, `None` for an unknown group-version.
pub fn document(gv: &str) -> Option<Value> {
    let gv = gv.trim_matches('/');
    let (group, version) = group_versions()
        .into_iter()
        .find(|(g, v)| gv_path(g, v) == gv)?;
    let mut paths = Map::new();
    let params = json!([
        {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
        {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        {"name": "force", "in": "query", "schema": {"type": "boolean"}},
    ]);
    let kinds = resource_paths(group, version, &params, &mut paths);
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas::component_schemas(group, version, &kinds)},
    }))
}
