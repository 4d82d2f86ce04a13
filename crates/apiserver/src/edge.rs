//! The request checks that need neither a socket nor the store, reachable from outside the
//! crate so that fuzzers and tools can drive them: a request's path and query string as the
//! handlers parse them, and a create body through decoding, field checks, defaults and the
//! kind's validation. Admission and the store are left out.

use axum::http::{header, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::error::ApiError;
use crate::http::{include_object, write_options};
use crate::objects::{Registry, Selectors};
use crate::paging::ListMode;
use crate::request::decode_body;
use crate::request::{parse_resource_path, wants, Query};

/// Parses a request target as the resource handlers do: the path, the query string, the
/// selectors and every option a list, watch or write reads from it.
pub fn parse_request(
    path: &str,
    query: Option<&str>,
    accept: Option<&str>,
) -> Result<(), ApiError> {
    let p = parse_resource_path(path)?;
    let q = Query::parse(query)?;
    Selectors::parse(
        p.info,
        q.get("labelSelector"),
        q.get("fieldSelector"),
        p.name.clone(),
    )?;
    q.int("timeoutSeconds")?;
    q.int("gracePeriodSeconds")?;
    ListMode::from_query(q.int("limit")?, q.get("continue"), q.get("resourceVersion"))?;
    write_options(&q)?;
    include_object(&q)?;
    wants(accept);
    Ok(())
}

/// A create request without admission and the store: the body decoded per `content_type`,
/// checked against the URL's kind, server-set metadata and defaults applied, then validated
/// by the kind's strategy. Returns the object that would be stored.
pub fn check_create(
    path: &str,
    query: Option<&str>,
    content_type: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let p = parse_resource_path(path)?;
    if p.name.is_some() {
        return Err(ApiError::MethodNotAllowed);
    }
    let opts = write_options(&Query::parse(query)?)?;
    let mut headers = HeaderMap::new();
    if let Ok(ct) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, ct);
    }
    let body = decode_body(&headers, body)?;
    let (mut obj, _warnings) =
        Registry::prepare_create(p.info, p.namespace.as_deref(), body, opts.field_validation)?;
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if let Err(causes) = p.info.validate_create(&obj) {
        return Err(Registry::invalid(p.info, &name, causes));
    }
    p.info.strategy.normalize(&mut obj);
    Ok(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_targets() {
        let pods = "/api/v1/namespaces/default/pods";
        assert!(parse_request(pods, Some("labelSelector=app%3Dweb&limit=5"), None).is_ok());
        assert!(parse_request(pods, Some("timeoutSeconds=x"), None).is_err());
        assert!(parse_request(pods, Some("labelSelector=a%20in%20("), None).is_err());
        assert!(parse_request(pods, Some("fieldSelector=spec.bogus%3D1"), None).is_err());
        assert!(parse_request("/api/v1/widgets", None, None).is_err());
    }

    #[test]
    fn create_bodies_are_defaulted_and_validated() {
        let pods = "/api/v1/namespaces/default/pods";
        let pod = br#"{"metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        let obj = check_create(pods, None, "application/json", pod).expect("valid pod");
        assert_eq!(obj["metadata"]["namespace"], "default");
        assert_eq!(obj["spec"]["restartPolicy"], "Always");
        let yaml = b"metadata:\n  name: web\nspec:\n  containers:\n  - name: c\n";
        let err = check_create(pods, None, "application/yaml", yaml).expect_err("no image");
        assert!(
            err.to_string().contains("spec.containers[0].image"),
            "{err}"
        );
        let unknown = br#"{"metadata":{"name":"web"},"spec":{"containers":[{"name":"c","image":"b","bogus":1}]}}"#;
        assert!(check_create(
            pods,
            Some("fieldValidation=Strict"),
            "application/json",
            unknown
        )
        .is_err());
        assert!(check_create(
            pods,
            Some("fieldValidation=Ignore"),
            "application/json",
            unknown
        )
        .is_ok());
        assert!(check_create(&format!("{pods}/web"), None, "application/json", pod).is_err());
    }
}
