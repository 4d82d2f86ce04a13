//! List paging (`limit` and `continue`), as kube-apiserver pages: a page holds at most `limit`
//! matching objects in key order, and `metadata.continue` is an opaque token naming the key the
//! next page starts at and the resourceVersion of the first page. Every page reports that first
//! resourceVersion, so a client that watches from it after the last page misses no change.
//! The embedded store keeps no past snapshots, so a later page is read from the current state
//! after its start key: an object changed between pages shows its newer state (and the watch
//! from the list's resourceVersion delivers the change again), never a torn object.

use base64::Engine;
use serde_json::{json, Value};

use crate::error::ApiError;

/// What a continue token carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Continue {
    pub resource_version: u64,
    pub start: String,
}

/// The token version kube-apiserver writes into its tokens.
const TOKEN_VERSION: &str = "meta.k8s.io/v1";

impl Continue {
    pub fn encode(&self) -> String {
        let body = json!({"v": TOKEN_VERSION, "rv": self.resource_version, "start": self.start});
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(body.to_string())
    }

    pub fn decode(token: &str) -> Result<Self, ApiError> {
        let invalid = |why: &str| ApiError::bad_request(format!("invalid continue token: {why}"));
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.trim_end_matches('='))
            .map_err(|_| invalid("not base64"))?;
        let body: Value = serde_json::from_slice(&bytes).map_err(|_| invalid("not JSON"))?;
        if body.get("v").and_then(Value::as_str) != Some(TOKEN_VERSION) {
            return Err(invalid("unknown version"));
        }
        let resource_version = body
            .get("rv")
            .and_then(Value::as_u64)
            .filter(|rv| *rv > 0)
            .ok_or_else(|| invalid("no resource version"))?;
        let start = body
            .get("start")
            .and_then(Value::as_str)
            // Only a position in key order: any non-empty string is harmless, and a
            // cluster-scoped key starts with its empty namespace's `/`.
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("continue key is not valid"))?
            .to_string();
        Ok(Continue {
            resource_version,
            start,
        })
    }
}

/// How a list request is to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListMode {
    /// Everything at once (no `limit`, or `resourceVersion=0`, which kube serves from its
    /// cache ignoring the limit).
    All,
    /// One page of at most `limit` objects (`usize::MAX` when a continue comes without one).
    Page {
        limit: usize,
        continue_from: Option<Continue>,
    },
}

impl ListMode {
    /// From the `limit`, `continue` and `resourceVersion` query parameters.
    pub fn from_query(
        limit: Option<i64>,
        token: Option<&str>,
        resource_version: Option<&str>,
    ) -> Result<Self, ApiError> {
        let token = token.filter(|t| !t.is_empty());
        let rv = resource_version.filter(|v| !v.is_empty());
        let limit = limit.filter(|l| *l > 0);
        if let Some(t) = token {
            if rv.is_some() {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            return Ok(ListMode::Page {
                limit: limit.map_or(usize::MAX, clamp),
                continue_from: Some(Continue::decode(t)?),
            });
        }
        Ok(match (limit, rv) {
            (None, _) | (_, Some("0")) => ListMode::All,
            (Some(l), _) => ListMode::Page {
                limit: clamp(l),
                continue_from: None,
            },
        })
    }
}

fn clamp(limit: i64) -> usize {
    usize::try_from(limit).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_bad_ones_are_400() {
        let c = Continue {
            resource_version: 42,
            start: "default/web-1".into(),
        };
        assert_eq!(Continue::decode(&c.encode()).expect("decode"), c);
        for bad in [
            "%%%",
            "bm90IGpzb24",
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"v":"meta.k8s.io/v1","rv":3,"start":""}"#),
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .encode(r#"{"v":"other","rv":3,"start":"x"}"#),
        ] {
            let e = Continue::decode(bad).expect_err(bad);
            assert!(e.to_string().starts_with("invalid continue token"), "{e}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!(
            ListMode::from_query(None, None, None).expect("mode"),
            ListMode::All
        );
        assert_eq!(
            ListMode::from_query(Some(500), None, Some("0")).expect("mode"),
            ListMode::All
        );
        assert_eq!(
            ListMode::from_query(Some(500), None, None).expect("mode"),
            ListMode::Page {
                limit: 500,
                continue_from: None
            }
        );
        let token = Continue {
            resource_version: 7,
            start: "a".into(),
        }
        .encode();
        assert!(ListMode::from_query(Some(5), Some(&token), Some("7")).is_err());
        assert!(matches!(
            ListMode::from_query(None, Some(&token), None).expect("mode"),
            ListMode::Page {
                limit: usize::MAX,
                continue_from: Some(_)
            }
        ));
    }
}
