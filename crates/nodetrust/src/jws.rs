//! Detached JWS signatures over the `cluster-info` kubeconfig, as kube-controller-manager's
//! bootstrap signer writes them into `jws-kubeconfig-<token-id>` and kubeadm's discovery checks
//! them: compact JWS with protected header `{"alg":"HS256","kid":"<token-id>"}`, HMAC-SHA256
//! keyed with the token secret, and the payload left out (`<header>..<signature>`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JwsError {
    #[error("the signature is not a detached JWS (<header>..<signature>)")]
    Malformed,
    #[error("the JWS header is not HS256 for token id {expected}")]
    Header { expected: String },
    #[error("the signature does not match the token's secret")]
    Mismatch,
}

fn header(token_id: &str) -> String {
    let header = serde_json::json!({"alg": "HS256", "kid": token_id});
    URL_SAFE_NO_PAD.encode(header.to_string())
}

fn signing_input(header_b64: &str, payload: &[u8]) -> String {
    format!("{header_b64}.{}", URL_SAFE_NO_PAD.encode(payload))
}

/// The detached signature of `payload` with bootstrap token `token_id`.`token_secret`.
pub fn sign_detached(payload: &[u8], token_id: &str, token_secret: &str) -> String {
    let header_b64 = header(token_id);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    let tag = ring::hmac::sign(&key, signing_input(&header_b64, payload).as_bytes());
    format!("{header_b64}..{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

/// Checks that `jws` signs `payload` with the given token (in constant time).
pub fn verify_detached(
    jws: &str,
    payload: &[u8],
    token_id: &str,
    token_secret: &str,
) -> Result<(), JwsError> {
    let mut parts = jws.trim().split('.');
    let (Some(header_b64), Some(""), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header_b64)
        .map_err(|_| JwsError::Malformed)?;
    let header: serde_json::Value =
        serde_json::from_slice(&header_json).map_err(|_| JwsError::Malformed)?;
    if header.get("alg").and_then(|v| v.as_str()) != Some("HS256")
        || header.get("kid").and_then(|v| v.as_str()) != Some(token_id)
    {
        return Err(JwsError::Header {
            expected: token_id.to_string(),
        });
    }
    let sig = URL_SAFE_NO_PAD
        .decode(sig_b64)
        .map_err(|_| JwsError::Malformed)?;
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, token_secret.as_bytes());
    ring::hmac::verify(&key, signing_input(header_b64, payload).as_bytes(), &sig)
        .map_err(|_| JwsError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_with_its_token_only() {
        let payload = b"apiVersion: v1\nkind: Config\n";
        let jws = sign_detached(payload, "abcdef", "0123456789abcdef");
        let (head, rest) = jws.split_once("..").expect("detached form");
        assert!(!head.is_empty() && !rest.is_empty() && !rest.contains('.'));
        assert_eq!(
            URL_SAFE_NO_PAD.decode(head).expect("b64"),
            br#"{"alg":"HS256","kid":"abcdef"}"#
        );
        assert_eq!(
            verify_detached(&jws, payload, "abcdef", "0123456789abcdef"),
            Ok(())
        );
        assert_eq!(
            verify_detached(&jws, payload, "abcdef", "0000000000000000"),
            Err(JwsError::Mismatch)
        );
        assert_eq!(
            verify_detached(&jws, b"other payload", "abcdef", "0123456789abcdef"),
            Err(JwsError::Mismatch)
        );
        assert!(matches!(
            verify_detached(&jws, payload, "zzzzzz", "0123456789abcdef"),
            Err(JwsError::Header { .. })
        ));
        for bad in ["", "a.b.c", "a..b..c", "!!..??"] {
            assert!(
                verify_detached(bad, payload, "abcdef", "x").is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_signature_is_hs256_over_header_dot_payload() {
        // RFC 7515 A.1's key and input shape: recompute independently of sign_detached.
        let payload = b"x";
        let jws = sign_detached(payload, "abcdef", "secret");
        let (head, sig) = jws.split_once("..").expect("detached");
        let input = format!("{head}.{}", URL_SAFE_NO_PAD.encode(payload));
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"secret");
        let want = ring::hmac::sign(&key, input.as_bytes());
        assert_eq!(sig, URL_SAFE_NO_PAD.encode(want.as_ref()));
    }
}
