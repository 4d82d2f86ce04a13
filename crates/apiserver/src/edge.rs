//! The request checks that need neither a socket nor the store, reachable from outside the
//! crate so that fuzzers and tools can drive them: a request's path and query string as the
//! handlers parse them, and a create body through decoding, field checks, defaults and the
//! kind's validation. Admission and the store are left out.

use axum::http::{header, HeaderMap, HeaderValue};
use serde_json::Value;

use crate::error::ApiError;
use crate::http::{decode_body, include_object, write_options};
use crate::objects::{Registry, Selectors};
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
    q.int("limit")?;
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
