//! Parse at the edge: a resource URL and its query string become typed values before any
//! handler logic runs.

use api::resources::ResourceInfo;
use axum::http::{header, HeaderMap};
use serde_json::Value;

use crate::error::ApiError;

/// A URL under `/api/v1` or `/apis/<group>/<version>` naming a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourcePath {
    pub info: &'static ResourceInfo,
    /// The namespace in the URL (None for cluster-scoped kinds and all-namespace lists).
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/watch/` prefix form.
    pub watch_prefix: bool,
}

/// Splits `/api/v1/...` or `/apis/g/v/...` into a [`ResourcePath`]. `None` when the path is
/// not a resource path at all (discovery documents are routed elsewhere).
pub fn parse_resource_path(path: &str) -> Result<ResourcePath, ApiError> {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", v, rest @ ..] => ("", *v, rest),
        ["apis", g, v, rest @ ..] => (*g, *v, rest),
        _ => return Err(ApiError::PathNotFound),
    };
    let (watch_prefix, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let find = |plural: &str| {
        api::resources::all()
            .iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    };
    let (info, namespace, tail) = match rest {
        ["namespaces", ns, plural, tail @ ..] if find(plural).is_some_and(|r| r.namespaced) => {
            (find(plural), Some(ns.to_string()), tail)
        }
        [plural, tail @ ..] => (find(plural), None, tail),
        [] => return Err(ApiError::PathNotFound),
    };
    let info = info.ok_or(ApiError::PathNotFound)?;
    // A namespaced kind addressed without a namespace can only be listed or watched.
    if info.namespaced && namespace.is_none() && !tail.is_empty() {
        return Err(ApiError::PathNotFound);
    }
    let (name, subresource) = match tail {
        [] => (None, None),
        [name] => (Some(name.to_string()), None),
        [name, sub] => {
            if !info.subresources.iter().any(|s| s.name == *sub) {
                return Err(ApiError::PathNotFound);
            }
            (Some(name.to_string()), Some(sub.to_string()))
        }
        _ => return Err(ApiError::PathNotFound),
    };
    if name.as_deref().is_some_and(str::is_empty) {
        return Err(ApiError::PathNotFound);
    }
    Ok(ResourcePath {
        info,
        namespace,
        name,
        subresource,
        watch_prefix,
    })
}

/// Decodes a create/update body (JSON, or YAML).
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let base = ct.split(';').next().unwrap_or("").trim();
    match base {
        "application/json" | "" | "*/*" => serde_json::from_slice(body).map_err(|e| {
            ApiError::bad_request(format!("couldn't get version/kind; json parse error: {e}"))
        }),
        "application/vnd.kubernetes.protobuf" => {
            protobuf_bodies::decode(body).map_err(|e| match e {
                protobuf_bodies::ProtobufError::UnsupportedKind { .. } => {
                    ApiError::UnsupportedMediaType {
                        content_type: base.to_string(),
                    }
                }
                other => ApiError::bad_request(other.to_string()),
            })
        }
        "application/yaml" | "application/x-yaml" | "text/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}"))),
        other => Err(ApiError::UnsupportedMediaType {
            content_type: other.to_string(),
        }),
    }
}

/// `fieldValidation=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// The query parameters the resource handlers understand.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Query {
    pub pairs: Vec<(String, String)>,
}

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self, ApiError> {
        let pairs = match raw {
            None | Some("") => Vec::new(),
            Some(q) => serde_urlencoded::from_str::<Vec<(String, String)>>(q)
                .map_err(|e| ApiError::bad_request(format!("invalid query string: {e}")))?,
        };
        Ok(Query { pairs })
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true") | Some("1") | Some(""))
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value for {key}: {v:?}, expected an integer"
                ))
            }),
        }
    }

    pub fn field_validation(&self) -> Result<FieldValidation, ApiError> {
        // kube-apiserver's default when the client says nothing is Warn.
        match self.get("fieldValidation") {
            None | Some("") | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some(other) => Err(ApiError::bad_request(format!(
                "fieldValidation must be one of Ignore, Warn, Strict; got {other:?}"
            ))),
        }
    }

    pub fn dry_run(&self) -> Result<bool, ApiError> {
        let mut dry = false;
        for (k, v) in &self.pairs {
            if k == "dryRun" {
                match v.as_str() {
                    "All" => dry = true,
                    "" => {}
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unsupported dry run value {other:?}, supported values: All"
                        )))
                    }
                }
            }
        }
        Ok(dry)
    }
}

/// What `Accept` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wants {
    Json,
    Table,
}

pub fn wants(accept: Option<&str>) -> Wants {
    match accept {
        Some(a) if a.split(',').any(|p| p.contains("as=Table")) => Wants::Table,
        _ => Wants::Json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let q = Query::parse(Some("watch=true&labelSelector=app%3Dweb&timeoutSeconds=5"))
            .expect("parse");
        assert!(q.flag("watch"));
        assert_eq!(q.get("labelSelector"), Some("app=web"));
        assert_eq!(q.int("timeoutSeconds").expect("int"), Some(5));
        assert!(q.int("labelSelector").is_err());
        assert_eq!(q.field_validation().expect("fv"), FieldValidation::Warn);
        assert!(Query::parse(Some("dryRun=All"))
            .expect("parse")
            .dry_run()
            .expect("dry"));
    }

    #[test]
    fn accept_negotiation() {
        assert_eq!(
            wants(Some(
                "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
            )),
            Wants::Table
        );
        assert_eq!(wants(Some("application/json")), Wants::Json);
    }
}
