//! The access review endpoints (`authorization.k8s.io/v1` SelfSubjectAccessReview,
//! SelfSubjectRulesReview, SubjectAccessReview, LocalSubjectAccessReview and
//! `authentication.k8s.io/v1` SelfSubjectReview): created, answered from the caller's
//! identity and the policy index, never stored. Who may create them is RBAC's question like
//! any other request (`system:basic-user` lets everyone ask about themselves).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use rbac::reviews::{self, ReviewError};
use rbac::User;
use serde_json::Value;

use crate::error::ApiError;
use crate::request::decode_body;
use crate::state::AppState;

/// Which review a request creates.
#[derive(Debug, Clone, Copy)]
enum Review {
    SelfSubjectAccess,
    SelfSubjectRules,
    SubjectAccess,
    LocalSubjectAccess,
    SelfSubject,
}

impl Review {
    fn kind(self) -> &'static str {
        match self {
            Review::SelfSubjectAccess => "SelfSubjectAccessReview",
            Review::SelfSubjectRules => "SelfSubjectRulesReview",
            Review::SubjectAccess => "SubjectAccessReview",
            Review::LocalSubjectAccess => "LocalSubjectAccessReview",
            Review::SelfSubject => "SelfSubjectReview",
        }
    }

    fn group(self) -> &'static str {
        match self {
            Review::SelfSubject => "authentication.k8s.io",
            _ => "authorization.k8s.io",
        }
    }
}

fn answer(
    st: &AppState,
    user: &User,
    review: Review,
    namespace: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut body = decode_body(headers, body)?;
    let obj = body
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request(format!("not a {}", review.kind())))?;
    obj.insert(
        "apiVersion".into(),
        Value::from(format!("{}/v1", review.group())),
    );
    obj.insert("kind".into(), Value::from(review.kind()));
    let policy = st.authorizer.policy();
    let result = match review {
        Review::SelfSubjectAccess => reviews::self_subject_access(&policy, user, body),
        Review::SelfSubjectRules => reviews::self_subject_rules(&policy, user, body),
        Review::SubjectAccess => reviews::subject_access(&policy, body),
        Review::LocalSubjectAccess => {
            reviews::local_subject_access(&policy, namespace.unwrap_or_default(), body)
        }
        Review::SelfSubject => reviews::self_subject(user, body),
    };
    let out = result.map_err(|e| match e {
        ReviewError::Decode => ApiError::bad_request(format!("not a {}", review.kind())),
        ReviewError::Invalid(causes) => ApiError::Invalid {
            kind: review.kind().into(),
            group: review.group().into(),
            name: String::new(),
            causes,
        },
    })?;
    Ok((
        StatusCode::CREATED,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        out.to_string(),
    )
        .into_response())
}

fn respond(r: Result<Response, ApiError>) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

pub async fn self_subject_access(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(answer(
        &st,
        &user,
        Review::SelfSubjectAccess,
        None,
        &headers,
        &body,
    ))
}

pub async fn self_subject_rules(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(answer(
        &st,
        &user,
        Review::SelfSubjectRules,
        None,
        &headers,
        &body,
    ))
}

pub async fn subject_access(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(answer(
        &st,
        &user,
        Review::SubjectAccess,
        None,
        &headers,
        &body,
    ))
}

pub async fn local_subject_access(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(answer(
        &st,
        &user,
        Review::LocalSubjectAccess,
        Some(&namespace),
        &headers,
        &body,
    ))
}

pub async fn self_subject(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    respond(answer(
        &st,
        &user,
        Review::SelfSubject,
        None,
        &headers,
        &body,
    ))
}

/// Anything but a create of a review.
pub async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}
