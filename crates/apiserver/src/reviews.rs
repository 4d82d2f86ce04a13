//! The access review endpoints (`authorization.k8s.io/v1` SelfSubjectAccessReview,
//! SelfSubjectRulesReview, SubjectAccessReview, LocalSubjectAccessReview and
//! `authentication.k8s.io/v1` SelfSubjectReview): created, answered from the caller's
//! identity and the policy index, never stored. Who may create them is RBAC's question like
//! any other request (`system:basic-user` lets everyone ask about themselves).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use rbac::reviews::{Review, ReviewError};
use rbac::User;

use crate::error::ApiError;
use crate::request::decode_body;
use crate::state::AppState;

/// `POST` of a review: the one the path's last segment names, in the path's namespace.
pub async fn create(
    State(st): State<AppState>,
    Extension(user): Extension<User>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let segs: Vec<&str> = uri.path().trim_matches('/').split('/').collect();
    let namespace = match segs.as_slice() {
        [.., "namespaces", ns, _] => ns,
        _ => "",
    };
    let review = segs.last().and_then(|p| Review::from_plural(p));
    let answer = review.ok_or(ApiError::PathNotFound).and_then(|review| {
        let body = decode_body(&headers, &body)?;
        let policy = st.authorizer.policy();
        review
            .answer(&policy, &user, namespace, body)
            .map_err(|e| match e {
                ReviewError::Decode => ApiError::bad_request(format!("not a {}", review.kind())),
                ReviewError::Invalid(causes) => ApiError::Invalid {
                    kind: review.kind().into(),
                    group: review.group().into(),
                    name: String::new(),
                    causes,
                },
            })
    });
    match answer {
        Ok(v) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

/// Anything but a create of a review.
pub async fn method_not_allowed() -> Response {
    ApiError::MethodNotAllowed.into_response()
}
