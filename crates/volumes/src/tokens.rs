//! kubelet's token manager, for `serviceAccountToken` volume projections: a token bound to
//! the pod is requested through the TokenRequest API, kept, and requested again once 80% of
//! its lifetime has passed (or it is a day old), as kubelet does; should the refresh fail,
//! the kept token serves until it expires. A pod's tokens are forgotten with its volumes.

use std::collections::HashMap;
use std::sync::Mutex;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::Pod;
use podapi::{ApiError, PodApi};

/// The lifetime a projection asks for when it names none (the API's default).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// kubelet refreshes tokens older than this whatever their lifetime.
const MAX_AGE: SignedDuration = SignedDuration::from_hours(24);

/// One token a pod uses: its account, the pod it is bound to, and what it is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub namespace: String,
    pub service_account: String,
    pub pod_name: String,
    pub pod_uid: String,
    /// Empty: the API server's own audience.
    pub audience: String,
    pub expiration_seconds: i64,
}

impl TokenKey {
    /// The key of a projection `(audience, expirationSeconds)` of `pod`.
    pub fn for_pod(pod: &Pod, audience: &str, expiration_seconds: i64) -> Self {
        let spec = pod.spec.as_ref();
        TokenKey {
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            service_account: spec
                .and_then(|s| {
                    s.service_account_name
                        .clone()
                        .or_else(|| s.service_account.clone())
                })
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "default".to_string()),
            pod_name: pod.metadata.name.clone().unwrap_or_default(),
            pod_uid: pod.metadata.uid.clone().unwrap_or_default(),
            audience: audience.to_string(),
            expiration_seconds,
        }
    }

    /// The TokenRequest kubelet sends for it.
    fn request(&self) -> TokenRequest {
        TokenRequest {
            spec: TokenRequestSpec {
                audiences: if self.audience.is_empty() {
                    Vec::new()
                } else {
                    vec![self.audience.clone()]
                },
                expiration_seconds: Some(self.expiration_seconds),
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: Some(self.pod_name.clone()),
                    uid: Some(self.pod_uid.clone()),
                }),
            },
            ..Default::default()
        }
    }
}

/// A token and its validity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub issued_at: Timestamp,
    pub expires_at: Timestamp,
}

impl Token {
    /// kubelet's `requiresRefresh`: within the last 20% of its lifetime, or a day old.
    pub fn needs_refresh(&self, now: Timestamp) -> bool {
        let life = self.expires_at.duration_since(self.issued_at);
        let refresh_at = self.expires_at - life / 5;
        now >= refresh_at || now >= self.issued_at + MAX_AGE
    }

    pub fn expired(&self, now: Timestamp) -> bool {
        now >= self.expires_at
    }
}

/// The tokens the node's pods use.
#[derive(Debug, Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<TokenKey, Token>>,
}

impl TokenCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TokenKey, Token>> {
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The token for `key` at `now`: the kept one while fresh, else a new one.
    pub async fn get(
        &self,
        api: &dyn PodApi,
        key: &TokenKey,
        now: Timestamp,
    ) -> Result<String, ApiError> {
        let kept = self.lock().get(key).cloned();
        if let Some(t) = kept.as_ref().filter(|t| !t.needs_refresh(now)) {
            return Ok(t.token.clone());
        }
        match api
            .create_token(&key.namespace, &key.service_account, &key.request())
            .await
        {
            Ok(TokenRequest {
                status: Some(status),
                ..
            }) => {
                let token = Token {
                    token: status.token,
                    issued_at: now,
                    expires_at: status.expiration_timestamp.0,
                };
                self.lock().insert(key.clone(), token.clone());
                Ok(token.token)
            }
            // An answer without a token: keep using the current one, as after an error.
            Ok(TokenRequest { status: None, .. }) => kept
                .filter(|t| !t.expired(now))
                .map(|t| t.token)
                .ok_or(ApiError::NoToken {
                    namespace: key.namespace.clone(),
                    name: key.service_account.clone(),
                }),
            Err(err) => match kept.filter(|t| !t.expired(now)) {
                Some(t) => {
                    tracing::warn!(pod = %format!("{}/{}", key.namespace, key.pod_name),
                        error = %err, "refreshing a service account token failed; keeping the current one");
                    Ok(t.token)
                }
                None => Err(err),
            },
        }
    }

    /// Forgets the tokens of the pod with `uid`.
    pub fn forget_pod(&self, uid: &str) {
        self.lock().retain(|k, _| k.pod_uid != uid);
    }

    /// How many tokens are kept (tests).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("time")
    }

    #[test]
    fn refresh_at_eighty_percent_or_a_day() {
        let t = Token {
            token: "t".into(),
            issued_at: at(0),
            expires_at: at(3600),
        };
        assert!(!t.needs_refresh(at(2879)));
        assert!(t.needs_refresh(at(2880)));
        assert!(!t.expired(at(3599)));
        assert!(t.expired(at(3600)));
        let long = Token {
            token: "t".into(),
            issued_at: at(0),
            expires_at: at(10 * 86_400),
        };
        assert!(!long.needs_refresh(at(86_399)));
        assert!(long.needs_refresh(at(86_400)));
    }

    #[test]
    fn request_is_bound_to_the_pod() {
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u1"},
            "spec": {"serviceAccountName": "builder", "containers": []}
        }))
        .expect("pod");
        let key = TokenKey::for_pod(&pod, "vault", 600);
        assert_eq!(key.service_account, "builder");
        let r = key.request();
        assert_eq!(r.spec.audiences, vec!["vault".to_string()]);
        assert_eq!(r.spec.expiration_seconds, Some(600));
        let b = r.spec.bound_object_ref.expect("bound");
        assert_eq!(
            (b.kind.as_deref(), b.name.as_deref(), b.uid.as_deref()),
            (Some("Pod"), Some("web"), Some("u1"))
        );
        let default = TokenKey::for_pod(&pod, "", 3607).request();
        assert!(default.spec.audiences.is_empty());
    }
}
