//! The one place where failures become `metav1.Status` answers, with kube-apiserver's codes,
//! reasons and message texts (kubectl prints `Error from server (<reason>): <message>`).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use api::validation::FieldError;

/// What went wrong while serving an API request.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `resource` is the qualified plural (`pods`, `deployments.apps`).
    #[error("{resource} \"{name}\" not found")]
    NotFound {
        resource: String,
        group: String,
        name: String,
    },
    #[error("the server could not find the requested resource")]
    PathNotFound,
    #[error("{resource} \"{name}\" already exists")]
    AlreadyExists {
        resource: String,
        group: String,
        name: String,
    },
    /// Stale resourceVersion or failed precondition.
    #[error("Operation cannot be fulfilled on {resource} \"{name}\": {detail}")]
    Conflict {
        resource: String,
        group: String,
        name: String,
        detail: String,
    },
    /// A server-side apply that would change fields other managers own (kube's
    /// `NewApplyConflict`: one `FieldManagerConflict` cause per field).
    #[error("{0}")]
    ApplyConflict(#[source] field_ownership::managers::Conflicts),
    /// `metadata.managedFields` that cannot be read.
    #[error("{0}")]
    ManagedFields(#[source] field_ownership::managers::ManagedFieldsError),
    #[error("{} \"{name}\" is invalid: {}", group_kind(.kind, .group), join_causes(.causes))]
    Invalid {
        kind: String,
        group: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{}", forbidden_message(.resource, .name, .detail))]
    Forbidden {
        resource: String,
        group: String,
        name: String,
        detail: String,
    },
    #[error("{message}")]
    Expired { message: String },
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the body of the request was in an unknown format - accepted media types include: application/json, application/yaml")]
    UnsupportedMediaType { content_type: String },
    #[error("Unauthorized")]
    Unauthorized,
    /// A body over the limit (kube-apiserver's `limitedReadBody`).
    #[error("Request entity too large: limit is {limit}")]
    RequestEntityTooLarge { limit: usize },
    #[error("Internal error occurred: {0}")]
    Store(#[source] store::StoreError),
    #[error("Internal error occurred: {0}")]
    Proxy(#[source] crate::proxy::ProxyError),
    /// A write that runs to its end even when the client goes away did not finish.
    #[error("Internal error occurred: the write did not finish: {0}")]
    WriteTask(#[source] tokio::task::JoinError),
    /// The request may succeed later (an eviction a disruption budget does not allow yet);
    /// `cause` is a `(type, message)` StatusCause.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        cause: Option<(&'static str, String)>,
    },
    /// The server gave up on a write it kept losing to others.
    #[error("Timeout: {message}")]
    Timeout {
        message: String,
        retry_after_seconds: u32,
    },
    /// A request the server cannot serve for this object, answered as upstream answers it:
    /// a 500 `Status` without a reason (a pod under several disruption budgets).
    #[error("{message}")]
    Unsupported { message: String },
    /// A node API answered with an error; its text and code are passed on.
    #[error("{message}")]
    Node { code: u16, message: String },
}

/// `GroupKind.String()`: `Pod`, `ReplicaSet.apps`.
fn group_kind(kind: &str, group: &str) -> String {
    if group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{group}")
    }
}

/// kube-apiserver's aggregate error text: one error as is, several in brackets.
fn join_causes(causes: &[FieldError]) -> String {
    let msgs: Vec<&str> = causes.iter().map(|c| c.message.as_str()).collect();
    if msgs.len() == 1 {
        msgs[0].to_string()
    } else {
        format!("[{}]", msgs.join(", "))
    }
}

/// The part of a field error message after the `field: ` prefix (StatusCause.message).
fn cause_message(c: &FieldError) -> &str {
    c.message
        .strip_prefix(c.field.as_str())
        .and_then(|m| m.strip_prefix(": "))
        .unwrap_or(&c.message)
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest {
            message: message.into(),
        }
    }

    /// Maps a store error for the object `name` of `info`.
    pub fn from_store(
        err: store::StoreError,
        info: &api::resources::ResourceInfo,
        name: &str,
    ) -> Self {
        use store::StoreError as S;
        match err {
            S::NotFound { .. } => ApiError::NotFound {
                resource: qualified(info),
                group: info.group.to_string(),
                name: name.to_string(),
            },
            S::AlreadyExists { .. } => ApiError::AlreadyExists {
                resource: qualified(info),
                group: info.group.to_string(),
                name: name.to_string(),
            },
            S::Conflict { reason, .. } => ApiError::Conflict {
                resource: qualified(info),
                group: info.group.to_string(),
                name: name.to_string(),
                detail: if reason.starts_with("Precondition") {
                    reason
                } else {
                    CONFLICT_DETAIL.to_string()
                },
            },
            S::Expired { requested, oldest } => ApiError::Expired {
                message: format!("too old resource version: {requested} ({oldest})"),
            },
            other => ApiError::Store(other),
        }
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict(_) => StatusCode::CONFLICT,
            ApiError::ManagedFields(_) => StatusCode::BAD_REQUEST,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            ApiError::Expired { .. } => StatusCode::GONE,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::RequestEntityTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Store(_) | ApiError::Proxy(_) | ApiError::WriteTask(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ApiError::Node { code, .. } => {
                StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
            }
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unsupported { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::PathNotFound => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict(_) => "Conflict",
            ApiError::ManagedFields(_) => "BadRequest",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest { .. } => "BadRequest",
            ApiError::Forbidden { .. } => "Forbidden",
            ApiError::Expired { .. } => "Expired",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::UnsupportedMediaType { .. } => "UnsupportedMediaType",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::RequestEntityTooLarge { .. } => "RequestEntityTooLarge",
            ApiError::Store(_) | ApiError::Proxy(_) | ApiError::WriteTask(_) => "InternalError",
            ApiError::Node { code, .. } => match code {
                400 => "BadRequest",
                401 => "Unauthorized",
                403 => "Forbidden",
                404 => "NotFound",
                _ => "InternalError",
            },
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::Timeout { .. } => "Timeout",
            ApiError::Unsupported { .. } => "",
        }
    }

    /// The `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let message = match self {
            // The source chain carries the useful part (which key, which syscall).
            ApiError::Store(e) => format!("Internal error occurred: {}", error_chain(e)),
            ApiError::Proxy(e) => format!("Internal error occurred: {}", error_chain(e)),
            ApiError::ManagedFields(e) => error_chain(e),
            other => other.to_string(),
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if self.reason().is_empty() {
            if let Some(o) = status.as_object_mut() {
                o.remove("reason");
            }
        }
        let details = match self {
            ApiError::NotFound {
                resource,
                group,
                name,
            }
            | ApiError::AlreadyExists {
                resource,
                group,
                name,
            }
            | ApiError::Conflict {
                resource,
                group,
                name,
                ..
            }
            | ApiError::Forbidden {
                resource,
                group,
                name,
                ..
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": resource.split('.').next().unwrap_or(resource),
            })),
            ApiError::Invalid {
                kind,
                group,
                name,
                causes,
            } => Some(json!({
                "name": name,
                "group": group,
                "kind": kind,
                "causes": causes.iter().map(|c| json!({
                    "reason": c.reason.as_str(),
                    "message": cause_message(c),
                    "field": c.field,
                })).collect::<Vec<_>>(),
            })),
            ApiError::Store(_) | ApiError::Proxy(_) => Some(json!({
                "causes": [{"message": message}]
            })),
            ApiError::ApplyConflict(c) => Some(json!({
                "causes": c.0.iter().map(|x| json!({
                    "reason": "FieldManagerConflict",
                    "message": format!("conflict with {}", x.manager),
                    "field": field_ownership::path::display(&x.path),
                })).collect::<Vec<_>>(),
            })),
            ApiError::TooManyRequests {
                cause: Some((kind, text)),
                ..
            } => Some(json!({"causes": [{"reason": kind, "message": text}]})),
            ApiError::Timeout {
                retry_after_seconds,
                ..
            } => Some(json!({"retryAfterSeconds": retry_after_seconds})),
            _ => None,
        };
        if let Some(mut d) = details {
            // StatusDetails leaves out what is empty (`omitempty`), as a 403 on a collection
            // or a path has no name.
            if let Some(o) = d.as_object_mut() {
                o.retain(|_, v| v.as_str() != Some(""));
            }
            status["details"] = d;
        }
        status
    }
}

/// `e: cause: cause…` so the Status names the real failure.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

/// kube-apiserver's text for a stale resourceVersion.
pub const CONFLICT_DETAIL: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// `pods`, or `deployments.apps` for named groups (as in kube-apiserver's messages).
impl From<authorizer::Refusal> for ApiError {
    fn from(r: authorizer::Refusal) -> Self {
        ApiError::Forbidden {
            resource: r.resource,
            group: r.group,
            name: r.name,
            detail: r.detail,
        }
    }
}

impl From<authorizer::ImpersonationError> for ApiError {
    fn from(e: authorizer::ImpersonationError) -> Self {
        match e {
            authorizer::ImpersonationError::Refused(r) => r.into(),
            other => ApiError::bad_request(other.to_string()),
        }
    }
}

/// `NewForbidden`'s wording: the resource and name when there are any.
fn forbidden_message(resource: &str, name: &str, detail: &str) -> String {
    match (resource, name) {
        ("", _) => format!("forbidden: {detail}"),
        (r, "") => format!("{r} is forbidden: {detail}"),
        (r, n) => format!("{r} {n:?} is forbidden: {detail}"),
    }
}

pub fn qualified(info: &api::resources::ResourceInfo) -> String {
    if info.group.is_empty() {
        info.plural.to_string()
    } else {
        format!("{}.{}", info.plural, info.group)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.code() == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::warn!(error = %error_chain(&self), "request failed");
        }
        let status = self.to_status();
        let mut resp = (
            self.code(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            status.to_string(),
        )
            .into_response();
        // kube-apiserver tells clients when to come back in a header too.
        if let Some(after) = status
            .pointer("/details/retryAfterSeconds")
            .and_then(Value::as_u64)
            .filter(|s| *s > 0)
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, after.into());
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::validation::CauseReason;

    #[test]
    fn invalid_joins_causes_like_kube() {
        let e = ApiError::Invalid {
            kind: "Pod".into(),
            group: String::new(),
            name: "x".into(),
            causes: vec![FieldError {
                field: "spec.containers[0].image".into(),
                reason: CauseReason::FieldValueRequired,
                message: "spec.containers[0].image: Required value".into(),
            }],
        };
        let s = e.to_status();
        assert_eq!(
            s["message"],
            "Pod \"x\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["causes"][0]["message"], "Required value");
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
    }

    #[test]
    fn not_found_and_conflict_texts() {
        let e = ApiError::NotFound {
            resource: "pods".into(),
            group: String::new(),
            name: "web".into(),
        };
        let s = e.to_status();
        assert_eq!(s["message"], "pods \"web\" not found");
        assert_eq!(s["details"]["kind"], "pods");
        let e = ApiError::Conflict {
            resource: "pods".into(),
            group: String::new(),
            name: "web".into(),
            detail: CONFLICT_DETAIL.into(),
        };
        assert_eq!(e.to_status()["message"], "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again");
        assert_eq!(e.code(), StatusCode::CONFLICT);
    }
}
