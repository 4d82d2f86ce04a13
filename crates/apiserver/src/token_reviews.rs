//! `POST /apis/authentication.k8s.io/v1/tokenreviews`: a webhook authenticator or an
//! in-cluster service (a `system:auth-delegator`) asks whether a bearer token is good and
//! whose it is. The token is checked as a request's bearer token would be (the admin token,
//! a bootstrap token, a ServiceAccount token against the audiences asked for); the answer
//! is built by `rbac::token_review` and never stored.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rbac::token_review::{self, Outcome, TokenReviewError, TokenReviewRequest};

use crate::error::{error_chain, ApiError};
use crate::request::decode_body;
use crate::state::AppState;

pub async fn create(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let answered = async {
        let body = decode_body(&headers, &body)?;
        let request = TokenReviewRequest::parse(&body).map_err(|e| match e {
            TokenReviewError::Decode | TokenReviewError::NoToken => {
                ApiError::bad_request(e.to_string())
            }
        })?;
        let api = st.tokens.audiences().to_vec();
        let outcome = authenticate(&st, &request, &api).await;
        Ok::<_, ApiError>(token_review::answer(body, &request, &api, outcome))
    }
    .await;
    match answered {
        Ok(v) => (
            StatusCode::CREATED,
            [(header::CONTENT_TYPE, "application/json")],
            v.to_string(),
        )
            .into_response(),
        Err(e) => e.into_response(),
    }
}

async fn authenticate(st: &AppState, request: &TokenReviewRequest, api: &[String]) -> Outcome {
    let token = request.token.as_str();
    let now = jiff::Timestamp::now();
    if crate::admin::token_eq(token.as_bytes(), st.admin_token.as_bytes()) {
        return Outcome::Plain(crate::admin::user());
    }
    let store = st.registry.store.as_ref();
    if let Some(bootstrap) = crate::bootstrap_tokens::BootstrapToken::parse(token) {
        return match crate::bootstrap_tokens::authenticate(store, &bootstrap, now).await {
            Ok(user) => Outcome::Plain(user),
            Err(e) => Outcome::Refused {
                error: error_chain(&e),
            },
        };
    }
    let wanted = request.wanted(api);
    match crate::serviceaccounts::authenticate_for(store, &st.tokens, token, now, wanted).await {
        Ok((user, audiences)) => Outcome::Audiences { user, audiences },
        Err(e) => Outcome::Refused {
            error: error_chain(&e),
        },
    }
}
