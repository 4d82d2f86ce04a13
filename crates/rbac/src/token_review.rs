//! `authentication.k8s.io/v1` TokenReview as kube-apiserver answers it, in the parts that need
//! no I/O: reading the request, which audiences a token is checked against, and the answer's
//! `status`. The API server authenticates the token itself (it owns the store and keys).
//!
//! Audiences: a review that names none is checked against the API server's own. A
//! ServiceAccount token is audience-aware: it passes when one of its `aud` is among those
//! asked for, and the answer lists the ones in common. Other tokens (the admin token, a
//! bootstrap token) know no audience: they pass only when the API server's audiences meet
//! the ones asked for, as upstream's audience-agnostic wrapper decides.

use serde_json::{json, Value};

use crate::user::User;

/// Why a TokenReview request is refused before any token is looked at.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum TokenReviewError {
    #[error("not a TokenReview")]
    Decode,
    /// Upstream's words for an empty `spec.token`.
    #[error("token is required for TokenReview in authentication")]
    NoToken,
}

/// What a TokenReview asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenReviewRequest {
    pub token: String,
    /// As asked; empty means the API server's own.
    pub audiences: Vec<String>,
}

impl TokenReviewRequest {
    pub fn parse(body: &Value) -> Result<Self, TokenReviewError> {
        let typed: k8s_openapi::api::authentication::v1::TokenReview =
            serde_json::from_value(body.clone()).map_err(|_| TokenReviewError::Decode)?;
        let token = typed.spec.token.unwrap_or_default();
        if token.is_empty() {
            return Err(TokenReviewError::NoToken);
        }
        Ok(TokenReviewRequest {
            token,
            audiences: typed.spec.audiences.unwrap_or_default(),
        })
    }

    /// The audiences the token is checked against.
    pub fn wanted<'a>(&'a self, api_audiences: &'a [String]) -> &'a [String] {
        if self.audiences.is_empty() {
            api_audiences
        } else {
            &self.audiences
        }
    }
}

/// How the token authenticated, if it did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A token bound to audiences (a ServiceAccount token), valid for `audiences` (its own
    /// that were asked for).
    Audiences { user: User, audiences: Vec<String> },
    /// A token that knows no audience.
    Plain(User),
    /// Not authenticated; `error` is the authenticator's reason (empty: unknown token).
    Refused { error: String },
}

/// The request body with its `status` filled in for `outcome`.
pub fn answer(
    mut body: Value,
    request: &TokenReviewRequest,
    api_audiences: &[String],
    outcome: Outcome,
) -> Value {
    let wanted = request.wanted(api_audiences);
    let (user, audiences, error) = match outcome {
        Outcome::Audiences { user, audiences } if !audiences.is_empty() => (user, audiences, ""),
        Outcome::Audiences { .. } => (User::default(), vec![], "token audiences are invalid"),
        Outcome::Plain(user) => {
            let common: Vec<String> = wanted
                .iter()
                .filter(|a| api_audiences.contains(a))
                .cloned()
                .collect();
            if common.is_empty() {
                (User::default(), vec![], "token audiences are invalid")
            } else {
                (user, common, "")
            }
        }
        Outcome::Refused { error } => {
            let status = match error.is_empty() {
                true => json!({"authenticated": false, "user": {}}),
                false => json!({"authenticated": false, "user": {}, "error": error}),
            };
            body["status"] = status;
            return body;
        }
    };
    if !error.is_empty() {
        body["status"] = json!({"authenticated": false, "user": {}, "error": error});
        return body;
    }
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    body["status"] = json!({"authenticated": true, "user": info, "audiences": audiences});
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(token: &str, audiences: &[&str]) -> Value {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
            "spec": {"token": token, "audiences": audiences}})
    }

    fn api() -> Vec<String> {
        vec!["https://kubernetes.default.svc.cluster.local".into()]
    }

    fn sa() -> User {
        User {
            name: "system:serviceaccount:ns:app".into(),
            uid: "u1".into(),
            groups: vec![
                "system:serviceaccounts".into(),
                "system:authenticated".into(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn parsing_needs_a_token_and_defaults_the_audiences() {
        assert_eq!(
            TokenReviewRequest::parse(&review("", &[])),
            Err(TokenReviewError::NoToken)
        );
        assert_eq!(
            TokenReviewRequest::parse(&json!({"spec": {"token": 5}})),
            Err(TokenReviewError::Decode)
        );
        let r = TokenReviewRequest::parse(&review("t", &[])).expect("parse");
        assert_eq!(r.wanted(&api()), api().as_slice());
        let r = TokenReviewRequest::parse(&review("t", &["vault"])).expect("parse");
        assert_eq!(r.wanted(&api()), ["vault".to_string()]);
    }

    #[test]
    fn service_account_tokens_answer_with_their_user_and_audiences() {
        let body = review("t", &["vault"]);
        let r = TokenReviewRequest::parse(&body).expect("parse");
        let out = answer(
            body,
            &r,
            &api(),
            Outcome::Audiences {
                user: sa(),
                audiences: vec!["vault".into()],
            },
        );
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(
            out["status"]["user"]["username"],
            "system:serviceaccount:ns:app"
        );
        assert_eq!(out["status"]["user"]["uid"], "u1");
        assert_eq!(out["status"]["audiences"], json!(["vault"]));
    }

    #[test]
    fn plain_tokens_pass_only_for_the_api_audiences() {
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        let body = review("t", &[]);
        let r = TokenReviewRequest::parse(&body).expect("parse");
        let out = answer(body, &r, &api(), Outcome::Plain(admin.clone()));
        assert_eq!(out["status"]["authenticated"], true);
        assert_eq!(out["status"]["audiences"], json!(api()));
        let body = review("t", &["vault"]);
        let r = TokenReviewRequest::parse(&body).expect("parse");
        let out = answer(body, &r, &api(), Outcome::Plain(admin));
        assert_eq!(out["status"]["authenticated"], false);
        assert_eq!(out["status"]["error"], "token audiences are invalid");
    }

    #[test]
    fn refusals_say_why() {
        let body = review("t", &[]);
        let r = TokenReviewRequest::parse(&body).expect("parse");
        let out = answer(
            body,
            &r,
            &api(),
            Outcome::Refused {
                error: "token has expired".into(),
            },
        );
        assert_eq!(
            out["status"],
            json!({"authenticated": false, "user": {}, "error": "token has expired"})
        );
    }
}
