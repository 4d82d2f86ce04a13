//! The `authentication.k8s.io/v1` TokenRequest body of `serviceaccounts/NAME/token`: its
//! defaults and validation (upstream's `SetDefaults_TokenRequestSpec` and
//! `ValidateTokenRequest`) and the object the API answers with.

use serde_json::{json, Value};

use apimachinery::field_errors::{FieldError, FieldErrors};

/// `spec.expirationSeconds` when the request has none (one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// The shortest lifetime a token may be asked for (ten minutes).
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// The longest (2^32 seconds).
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// `spec.boundObjectRef`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundObjectRef {
    pub kind: String,
    pub api_version: String,
    pub name: String,
    pub uid: Option<String>,
}

/// A TokenRequest's spec after defaulting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestSpec {
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
    pub bound: Option<BoundObjectRef>,
}

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("decoding the TokenRequest: {0}")]
    Decode(String),
    #[error("the TokenRequest is invalid")]
    Invalid(Vec<FieldError>),
}

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// Reads, defaults and validates a TokenRequest body.
pub fn parse(body: &Value) -> Result<TokenRequestSpec, RequestError> {
    if !body.is_object() {
        return Err(RequestError::Decode(
            "the body of the request was not a JSON object".into(),
        ));
    }
    if let Some(kind) = str_at(body, "/kind").filter(|k| !k.is_empty() && *k != "TokenRequest") {
        return Err(RequestError::Decode(format!(
            "{kind} cannot be handled as a TokenRequest"
        )));
    }
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let audiences = match spec.get("audiences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| RequestError::Decode("spec.audiences must be strings".into()))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(RequestError::Decode(
                "spec.audiences must be a list of strings".into(),
            ))
        }
    };
    let expiration_seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION_SECONDS,
        Some(v) => v.as_i64().ok_or_else(|| {
            RequestError::Decode("spec.expirationSeconds must be an integer".into())
        })?,
    };
    let bound = match spec.get("boundObjectRef") {
        None | Some(Value::Null) => None,
        Some(r) => Some(BoundObjectRef {
            kind: str_at(r, "/kind").unwrap_or_default().to_string(),
            api_version: str_at(r, "/apiVersion").unwrap_or_default().to_string(),
            name: str_at(r, "/name").unwrap_or_default().to_string(),
            uid: str_at(r, "/uid")
                .filter(|u| !u.is_empty())
                .map(str::to_string),
        }),
    };
    let mut errs = FieldErrors::default();
    if expiration_seconds < MIN_EXPIRATION_SECONDS {
        errs.invalid(
            "spec.expirationSeconds",
            &json!(expiration_seconds),
            "may not specify a duration less than 10 minutes",
        );
    }
    if expiration_seconds > MAX_EXPIRATION_SECONDS {
        errs.invalid(
            "spec.expirationSeconds",
            &json!(expiration_seconds),
            "may not specify a duration larger than 2^32 seconds",
        );
    }
    errs.finish().map_err(RequestError::Invalid)?;
    Ok(TokenRequestSpec {
        audiences,
        expiration_seconds,
        bound,
    })
}

/// The TokenRequest the API answers with: the defaulted spec (the audiences actually used)
/// and the token in `status`.
pub fn response(
    namespace: &str,
    service_account: &str,
    spec: &TokenRequestSpec,
    audiences: &[String],
    token: &str,
    expires_at: &str,
) -> Value {
    let mut out_spec = json!({
        "audiences": audiences,
        "expirationSeconds": spec.expiration_seconds,
        "boundObjectRef": null,
    });
    if let Some(b) = &spec.bound {
        let mut r = json!({"kind": b.kind, "apiVersion": b.api_version, "name": b.name});
        if let Some(uid) = &b.uid {
            r["uid"] = json!(uid);
        }
        out_spec["boundObjectRef"] = r;
    }
    json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": service_account, "namespace": namespace, "creationTimestamp": null},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": expires_at},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bound_pod() {
        let s = parse(
            &json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {}}),
        )
        .expect("parse");
        assert_eq!(
            s,
            TokenRequestSpec {
                audiences: vec![],
                expiration_seconds: 3600,
                bound: None
            }
        );
        let s = parse(
            &json!({"spec": {"audiences": ["vault"], "expirationSeconds": 3607,
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u1"}}}),
        )
        .expect("parse");
        assert_eq!(s.audiences, vec!["vault".to_string()]);
        assert_eq!(s.expiration_seconds, 3607);
        assert_eq!(
            s.bound,
            Some(BoundObjectRef {
                kind: "Pod".into(),
                api_version: "v1".into(),
                name: "web".into(),
                uid: Some("u1".into())
            })
        );
    }

    #[test]
    fn lifetime_limits_as_upstream_words_them() {
        let Err(RequestError::Invalid(errs)) = parse(&json!({"spec": {"expirationSeconds": 60}}))
        else {
            panic!("a minute is too short")
        };
        assert_eq!(
            errs[0].message,
            "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"
        );
        assert!(parse(&json!({"spec": {"expirationSeconds": 600}})).is_ok());
        assert!(matches!(
            parse(&json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}})),
            Err(RequestError::Invalid(_))
        ));
        assert!(matches!(
            parse(&json!({"spec": {"expirationSeconds": "soon"}})),
            Err(RequestError::Decode(_))
        ));
        assert!(matches!(
            parse(&json!({"kind": "Pod"})),
            Err(RequestError::Decode(_))
        ));
    }

    #[test]
    fn response_shape() {
        let spec = parse(&json!({"spec": {}})).expect("parse");
        let r = response(
            "ns1",
            "default",
            &spec,
            &["aud".to_string()],
            "tok",
            "2026-01-01T00:00:00Z",
        );
        assert_eq!(r["status"]["token"], "tok");
        assert_eq!(r["spec"]["audiences"], json!(["aud"]));
        assert_eq!(r["metadata"]["name"], "default");
        assert_eq!(r["status"]["expirationTimestamp"], "2026-01-01T00:00:00Z");
    }
}
