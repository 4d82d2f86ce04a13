//! ServiceAccount tokens as kube-apiserver issues and checks them: ES256-signed JWTs whose
//! registered claims (`iss`, `sub`, `aud`, `exp`, `iat`, `nbf`, `jti`) and private
//! `kubernetes.io` claim (namespace, service account, and the pod and node a bound token
//! belongs to) follow upstream's `serviceaccount` token generator, so in-cluster clients and
//! token reviewers read them as they read a real cluster's. Pure: the caller supplies the
//! time, and looks the service account and pod up itself to finish [`Authority::verify`].

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Digest;

/// Upstream's `sub` prefix for service accounts (`system:serviceaccount:NS:NAME`).
pub const SUBJECT_PREFIX: &str = "system:serviceaccount:";
/// Tokens may be this many seconds past `exp` or before `nbf` and still pass (go-jose's
/// default leeway, which kube-apiserver's validator keeps).
pub const LEEWAY_SECONDS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("loading the service account signing key")]
    Key(#[source] jsonwebtoken::errors::Error),
    #[error("signing the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
    #[error("invalid bearer token")]
    Invalid(#[source] jsonwebtoken::errors::Error),
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token subject {sub:?} does not match its kubernetes.io claim")]
    Subject { sub: String },
}

/// `{name, uid}` of an object a token names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    pub name: String,
    pub uid: String,
}

/// The `kubernetes.io` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    pub namespace: String,
    pub serviceaccount: ObjectRef,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
}

/// Every claim of a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: Vec<String>,
    pub exp: i64,
    pub iat: i64,
    pub nbf: i64,
    pub jti: String,
    #[serde(rename = "kubernetes.io")]
    pub kubernetes: KubernetesClaims,
}

impl Claims {
    /// `system:serviceaccount:NS:NAME`, the user the token authenticates as.
    pub fn username(&self) -> String {
        subject(
            &self.kubernetes.namespace,
            &self.kubernetes.serviceaccount.name,
        )
    }
}

/// The user name of service account `name` in `namespace`.
pub fn subject(namespace: &str, name: &str) -> String {
    format!("{SUBJECT_PREFIX}{namespace}:{name}")
}

/// The groups a service account's user is in (besides `system:authenticated`).
pub fn groups(namespace: &str) -> Vec<String> {
    vec![
        "system:serviceaccounts".to_string(),
        format!("system:serviceaccounts:{namespace}"),
    ]
}

/// What a token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub namespace: String,
    pub service_account: ObjectRef,
    /// The pod the token is bound to, and the node that pod runs on.
    pub pod: Option<ObjectRef>,
    pub node: Option<ObjectRef>,
    /// Empty: the API server's own audiences.
    pub audiences: Vec<String>,
    pub expiration_seconds: i64,
}

/// A signed token and when it expires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub token: String,
    pub expires_at: jiff::Timestamp,
    /// The audiences it was issued for, after defaulting.
    pub audiences: Vec<String>,
}

/// The signing key pair (P-256, PEM) and the issuer's identity: issues tokens and checks
/// them. kube-apiserver's `--service-account-signing-key-file`, `--service-account-key-file`,
/// `--service-account-issuer` and `--api-audiences`.
pub struct Authority {
    encoding: EncodingKey,
    decoding: DecodingKey,
    key_id: String,
    issuer: String,
    audiences: Vec<String>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("key_id", &self.key_id)
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// From a PKCS#8 private key and its SubjectPublicKeyInfo (both PEM). `audiences` empty
    /// means the issuer is the only audience, as kube-apiserver defaults `--api-audiences`.
    pub fn new(
        private_pem: &str,
        public_pem: &str,
        issuer: &str,
        audiences: Vec<String>,
    ) -> Result<Self, TokenError> {
        let encoding = EncodingKey::from_ec_pem(private_pem.as_bytes()).map_err(TokenError::Key)?;
        let decoding = DecodingKey::from_ec_pem(public_pem.as_bytes()).map_err(TokenError::Key)?;
        let audiences = if audiences.is_empty() {
            vec![issuer.to_string()]
        } else {
            audiences
        };
        Ok(Authority {
            encoding,
            decoding,
            key_id: key_id(public_pem),
            issuer: issuer.to_string(),
            audiences,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences the API server accepts, and gives tokens that ask for none.
    pub fn audiences(&self) -> &[String] {
        &self.audiences
    }

    /// Signs a token for `grant` at `now`.
    pub fn issue(&self, grant: &Grant, now: jiff::Timestamp) -> Result<Issued, TokenError> {
        let iat = now.as_second();
        let exp = iat.saturating_add(grant.expiration_seconds);
        let audiences = if grant.audiences.is_empty() {
            self.audiences.clone()
        } else {
            grant.audiences.clone()
        };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject(&grant.namespace, &grant.service_account.name),
            aud: audiences.clone(),
            exp,
            iat,
            nbf: iat,
            jti: uuid::Uuid::new_v4().to_string(),
            kubernetes: KubernetesClaims {
                namespace: grant.namespace.clone(),
                serviceaccount: grant.service_account.clone(),
                pod: grant.pod.clone(),
                node: grant.node.clone(),
            },
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.key_id.clone());
        let token =
            jsonwebtoken::encode(&header, &claims, &self.encoding).map_err(TokenError::Sign)?;
        Ok(Issued {
            token,
            expires_at: jiff::Timestamp::from_second(exp).unwrap_or(jiff::Timestamp::MAX),
            audiences,
        })
    }

    /// Checks the signature, issuer, audience (one of ours), and validity window at `now`.
    /// The caller still has to check that the service account (and pod) the claims name
    /// exist with the same uids.
    pub fn verify(&self, token: &str, now: jiff::Timestamp) -> Result<Claims, TokenError> {
        self.verify_for(token, now, &self.audiences)
    }

    /// As [`Authority::verify`], with the token valid for one of `audiences` (a
    /// TokenReview's) rather than the API server's.
    pub fn verify_for(
        &self,
        token: &str,
        now: jiff::Timestamp,
        audiences: &[String],
    ) -> Result<Claims, TokenError> {
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(audiences);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The window is checked below against the caller's clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(TokenError::Invalid)?;
        let claims = data.claims;
        let now = now.as_second();
        if now > claims.exp.saturating_add(LEEWAY_SECONDS) {
            return Err(TokenError::Expired);
        }
        if now < claims.nbf.saturating_sub(LEEWAY_SECONDS) {
            return Err(TokenError::NotYetValid);
        }
        if claims.sub != claims.username() {
            return Err(TokenError::Subject { sub: claims.sub });
        }
        Ok(claims)
    }
}

/// A JWT key id for the public key: the URL-safe SHA-256 of its PEM body (the DER), as
/// upstream derives `kid` from the key's DER.
fn key_id(public_pem: &str) -> String {
    let der: String = public_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(der.trim())
        .unwrap_or_else(|_| public_pem.as_bytes().to_vec());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

    fn authority() -> Authority {
        let key = rcgen::KeyPair::generate().expect("key");
        Authority::new(&key.serialize_pem(), &key.public_key_pem(), ISSUER, vec![])
            .expect("authority")
    }

    fn grant() -> Grant {
        Grant {
            namespace: "ns1".into(),
            service_account: ObjectRef {
                name: "builder".into(),
                uid: "sa-uid".into(),
            },
            pod: Some(ObjectRef {
                name: "web".into(),
                uid: "pod-uid".into(),
            }),
            node: Some(ObjectRef {
                name: "node-a".into(),
                uid: "node-uid".into(),
            }),
            audiences: vec![],
            expiration_seconds: 3600,
        }
    }

    fn at(s: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(s).expect("time")
    }

    fn payload(token: &str) -> serde_json::Value {
        let part = token.split('.').nth(1).expect("payload");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn claims_as_upstream_names_them() {
        let a = authority();
        let issued = a.issue(&grant(), at(1_800_000_000)).expect("issue");
        assert_eq!(issued.expires_at, at(1_800_003_600));
        let p = payload(&issued.token);
        assert_eq!(p["iss"], ISSUER);
        assert_eq!(p["sub"], "system:serviceaccount:ns1:builder");
        assert_eq!(p["aud"], serde_json::json!([ISSUER]));
        assert_eq!(p["iat"], 1_800_000_000);
        assert_eq!(p["nbf"], 1_800_000_000);
        assert_eq!(p["exp"], 1_800_003_600);
        assert_eq!(p["kubernetes.io"]["namespace"], "ns1");
        assert_eq!(
            p["kubernetes.io"]["serviceaccount"],
            serde_json::json!({"name": "builder", "uid": "sa-uid"})
        );
        assert_eq!(p["kubernetes.io"]["pod"]["uid"], "pod-uid");
        assert_eq!(p["kubernetes.io"]["node"]["name"], "node-a");
        let header = token_header(&issued.token);
        assert_eq!(header["alg"], "ES256");
        assert!(header["kid"].as_str().is_some_and(|k| !k.is_empty()));

        let unbound = a
            .issue(
                &Grant {
                    pod: None,
                    node: None,
                    ..grant()
                },
                at(1_800_000_000),
            )
            .expect("issue");
        let p = payload(&unbound.token);
        assert!(p["kubernetes.io"].get("pod").is_none());
        assert!(p["kubernetes.io"].get("node").is_none());
    }

    fn token_header(token: &str) -> serde_json::Value {
        let part = token.split('.').next().expect("header");
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(part)
            .expect("base64");
        serde_json::from_slice(&bytes).expect("json")
    }

    #[test]
    fn verifies_until_expiry_plus_leeway() {
        let a = authority();
        let issued = a.issue(&grant(), at(1_800_000_000)).expect("issue");
        let claims = a.verify(&issued.token, at(1_800_000_010)).expect("valid");
        assert_eq!(claims.username(), "system:serviceaccount:ns1:builder");
        assert!(a.verify(&issued.token, at(1_800_003_600 + 60)).is_ok());
        assert!(matches!(
            a.verify(&issued.token, at(1_800_003_600 + 61)),
            Err(TokenError::Expired)
        ));
        assert!(matches!(
            a.verify(&issued.token, at(1_800_000_000 - 61)),
            Err(TokenError::NotYetValid)
        ));
    }

    #[test]
    fn refuses_other_audiences_keys_and_tampering() {
        let a = authority();
        let now = at(1_800_000_000);
        let vault = a
            .issue(
                &Grant {
                    audiences: vec!["vault".into()],
                    ..grant()
                },
                now,
            )
            .expect("issue");
        assert!(matches!(
            a.verify(&vault.token, now),
            Err(TokenError::Invalid(_))
        ));
        let other = authority();
        let foreign = other.issue(&grant(), now).expect("issue");
        assert!(matches!(
            a.verify(&foreign.token, now),
            Err(TokenError::Invalid(_))
        ));
        let good = a.issue(&grant(), now).expect("issue");
        let mut parts: Vec<String> = good.token.split('.').map(str::to_string).collect();
        let mut claims = payload(&good.token);
        claims["kubernetes.io"]["namespace"] = "kube-system".into();
        parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
        assert!(a.verify(&parts.join("."), now).is_err());
        assert!(a.verify("not-a-jwt", now).is_err());
        assert!(a.verify("", now).is_err());
    }

    #[test]
    fn extra_audiences_are_accepted() {
        let key = rcgen::KeyPair::generate().expect("key");
        let a = Authority::new(
            &key.serialize_pem(),
            &key.public_key_pem(),
            ISSUER,
            vec!["https://kubernetes.default.svc".into(), "api".into()],
        )
        .expect("authority");
        let now = at(1_800_000_000);
        let t = a
            .issue(
                &Grant {
                    audiences: vec!["api".into()],
                    ..grant()
                },
                now,
            )
            .expect("issue");
        assert!(a.verify(&t.token, now).is_ok());
        let default = a.issue(&grant(), now).expect("issue");
        assert_eq!(default.audiences, a.audiences());
    }
}
