//! Bootstrap tokens as kubeadm makes them and kube-apiserver's bootstrap token
//! authenticator checks them: a bearer token `<id>.<secret>` (6 and 16 characters of
//! `[a-z0-9]`) is valid while the Secret `kube-system/bootstrap-token-<id>` of type
//! `bootstrap.kubernetes.io/token` holds that id and secret, allows authentication and has
//! not expired. The caller is `system:bootstrap:<id>` in `system:bootstrappers` and the
//! Secret's `auth-extra-groups`. A token of that shape that fails any check is refused (401),
//! never passed to another authenticator.

use base64::Engine as _;
use serde_json::{json, Value};

use crate::error::ApiError;
use rbac::User;
use store::Store;

pub const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const SECRET_NAMESPACE: &str = "kube-system";
pub const SECRET_PREFIX: &str = "bootstrap-token-";
/// kubeadm's group for the tokens `kubeadm init` and `kubeadm token create` make.
pub const DEFAULT_NODE_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
const BOOTSTRAPPERS: &str = "system:bootstrappers";

/// A bootstrap token's two halves.
#[derive(Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BootstrapToken({}.<secret>)", self.id)
    }
}

impl std::fmt::Display for BootstrapToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.id, self.secret)
    }
}

fn token_chars(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl BootstrapToken {
    /// `None` unless `text` has a bootstrap token's shape.
    pub fn parse(text: &str) -> Option<Self> {
        let (id, secret) = text.split_once('.')?;
        (token_chars(id, 6) && token_chars(secret, 16)).then(|| Self {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    /// A new random token (kubeadm's `token generate`).
    pub fn generate() -> Self {
        const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let pick = |n: usize| -> String {
            (0..n)
                .map(|_| {
                    let i = rand::random::<u32>() as usize % CHARS.len();
                    char::from(CHARS[i])
                })
                .collect()
        };
        Self {
            id: pick(6),
            secret: pick(16),
        }
    }

    /// The Secret that makes this token valid until `expiration` (for ever without one),
    /// for authentication (and signing, as kubeadm's default tokens), in kubeadm's
    /// node-token group.
    pub fn secret(&self, expiration: Option<jiff::Timestamp>, description: &str) -> Value {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut secret = json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": format!("{SECRET_PREFIX}{}", self.id), "namespace": SECRET_NAMESPACE},
            "type": SECRET_TYPE,
            "data": {
                "description": b64(description),
                "token-id": b64(&self.id),
                "token-secret": b64(&self.secret),
                "usage-bootstrap-authentication": b64("true"),
                "usage-bootstrap-signing": b64("true"),
                "auth-extra-groups": b64(DEFAULT_NODE_GROUP),
            }
        });
        if let Some(at) = expiration {
            secret["data"]["expiration"] = json!(b64(&at.to_string()));
        }
        secret
    }
}

/// Why a bootstrap token was refused (logged; the client only sees 401).
#[derive(Debug, thiserror::Error)]
pub enum BootstrapAuthError {
    #[error("no bootstrap token Secret for token id {id}")]
    NoSecret { id: String },
    #[error("the bootstrap token Secret of {id} is not usable: {why}")]
    Unusable { id: String, why: &'static str },
    #[error("the bootstrap token {id} expired at {expiration}")]
    Expired { id: String, expiration: String },
    #[error("looking up the bootstrap token Secret")]
    Lookup(#[source] ApiError),
}

/// One field of the Secret's `data`, decoded.
fn data(secret: &Value, key: &str) -> Option<String> {
    let text = secret.pointer(&format!("/data/{key}"))?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// Constant-time comparison, so the secret cannot be guessed byte by byte from timings.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The user `token` is, by its Secret, at `now`.
pub fn check(
    token: &BootstrapToken,
    secret: &Value,
    now: jiff::Timestamp,
) -> Result<User, BootstrapAuthError> {
    let unusable = |why| BootstrapAuthError::Unusable {
        id: token.id.clone(),
        why,
    };
    if secret.get("type").and_then(Value::as_str) != Some(SECRET_TYPE) {
        return Err(unusable("not of type bootstrap.kubernetes.io/token"));
    }
    if secret.pointer("/metadata/deletionTimestamp").is_some() {
        return Err(unusable("being deleted"));
    }
    let id_ok = data(secret, "token-id").is_some_and(|id| id == token.id);
    let secret_ok = data(secret, "token-secret").is_some_and(|s| same(&s, &token.secret));
    if !(id_ok && secret_ok) {
        return Err(unusable("the token does not match"));
    }
    if let Some(expiration) = data(secret, "expiration") {
        match expiration.parse::<jiff::Timestamp>() {
            Ok(at) if at > now => {}
            _ => {
                return Err(BootstrapAuthError::Expired {
                    id: token.id.clone(),
                    expiration,
                })
            }
        }
    }
    if data(secret, "usage-bootstrap-authentication").as_deref() != Some("true") {
        return Err(unusable("not for authentication"));
    }
    let mut groups = vec![BOOTSTRAPPERS.to_string()];
    for g in data(secret, "auth-extra-groups")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
    {
        // Upstream accepts only groups under system:bootstrappers: a token never names
        // itself into system:masters.
        if !g.starts_with("system:bootstrappers:") {
            return Err(unusable("an extra group outside system:bootstrappers"));
        }
        groups.push(g.to_string());
    }
    groups.push("system:authenticated".into());
    Ok(User {
        name: format!("system:bootstrap:{}", token.id),
        groups,
        ..User::default()
    })
}

/// Authenticates a bootstrap token against its Secret in `store`.
pub async fn authenticate(
    store: &dyn Store,
    token: &BootstrapToken,
    now: jiff::Timestamp,
) -> Result<User, BootstrapAuthError> {
    let name = format!("{SECRET_PREFIX}{}", token.id);
    let secret = crate::serviceaccounts::get(store, "secrets", SECRET_NAMESPACE, &name)
        .await
        .map_err(BootstrapAuthError::Lookup)?
        .ok_or_else(|| BootstrapAuthError::NoSecret {
            id: token.id.clone(),
        })?;
    check(token, &secret, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    fn token() -> BootstrapToken {
        BootstrapToken::parse("abcdef.0123456789abcdef").expect("token")
    }

    #[test]
    fn only_the_token_shape_parses() {
        assert_eq!(token().id, "abcdef");
        assert_eq!(token().to_string(), "abcdef.0123456789abcdef");
        for bad in [
            "abcdef0123456789abcdef",
            "ABCDEF.0123456789abcdef",
            "abcde.0123456789abcdef",
            "abcdef.0123456789abcde",
            "abcdef.0123456789abcdef.x",
            "eyJhbGciOi.x",
        ] {
            assert!(BootstrapToken::parse(bad).is_none(), "{bad}");
        }
        let made = BootstrapToken::generate();
        assert_eq!(BootstrapToken::parse(&made.to_string()), Some(made));
    }

    #[test]
    fn a_valid_token_is_a_bootstrapper_until_it_expires() {
        let secret = token().secret(Some(at("2030-01-01T00:00:00Z")), "test");
        assert_eq!(secret["metadata"]["name"], "bootstrap-token-abcdef");
        let user = check(&token(), &secret, at("2029-12-31T23:59:59Z")).expect("valid");
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                DEFAULT_NODE_GROUP,
                "system:authenticated"
            ]
        );
        assert!(matches!(
            check(&token(), &secret, at("2030-01-01T00:00:01Z")),
            Err(BootstrapAuthError::Expired { .. })
        ));
        let forever = token().secret(None, "test");
        assert!(check(&token(), &forever, at("2100-01-01T00:00:00Z")).is_ok());
    }

    #[test]
    fn wrong_secrets_types_usages_and_groups_are_refused() {
        let now = at("2029-01-01T00:00:00Z");
        let secret = token().secret(Some(at("2030-01-01T00:00:00Z")), "test");
        let wrong = BootstrapToken::parse("abcdef.0123456789abcdee").expect("token");
        assert!(check(&wrong, &secret, now).is_err());
        let mut opaque = secret.clone();
        opaque["type"] = json!("Opaque");
        assert!(check(&token(), &opaque, now).is_err());
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let mut signing_only = secret.clone();
        signing_only["data"]["usage-bootstrap-authentication"] = json!(b64("false"));
        assert!(check(&token(), &signing_only, now).is_err());
        let mut masters = secret.clone();
        masters["data"]["auth-extra-groups"] = json!(b64("system:masters"));
        assert!(check(&token(), &masters, now).is_err());
    }
}
