//! kubeadm's CA pin, `--discovery-token-ca-cert-hash sha256:<hex>`: the SHA-256 of the CA
//! certificate's DER SubjectPublicKeyInfo (what `openssl x509 -pubkey | openssl pkey -pubin
//! -outform der | sha256sum` prints), so a joining node trusts the CA it fetched over an
//! unverified connection only when its key is the one the operator saw.

use sha2::Digest as _;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HashError {
    #[error("the CA data holds no PEM certificate")]
    NoCertificate,
    #[error("the CA certificate cannot be parsed")]
    BadCertificate,
    #[error("{pin:?} is not a CA pin of the form sha256:<64 hex digits>")]
    BadPin { pin: String },
}

/// `sha256:<hex>` of a DER SubjectPublicKeyInfo.
pub fn spki_hash(spki_der: &[u8]) -> String {
    let digest = sha2::Sha256::digest(spki_der);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// The pin of the first certificate in `ca_pem`.
pub fn ca_pem_hash(ca_pem: &[u8]) -> Result<String, HashError> {
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(ca_pem).map_err(|_| HashError::NoCertificate)?;
    let cert = pem.parse_x509().map_err(|_| HashError::BadCertificate)?;
    Ok(spki_hash(cert.tbs_certificate.subject_pki.raw))
}

/// A pin as given on the command line, normalized (kubeadm accepts upper-case hex).
pub fn parse_pin(pin: &str) -> Result<String, HashError> {
    let bad = || HashError::BadPin {
        pin: pin.to_string(),
    };
    let hex = pin.strip_prefix("sha256:").ok_or_else(bad)?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(format!("sha256:{}", hex.to_ascii_lowercase()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pin_is_the_hash_of_the_public_key_info() {
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["ca".to_string()])
            .expect("params")
            .self_signed(&key)
            .expect("cert");
        use rcgen::PublicKeyData as _;
        let want = spki_hash(&key.subject_public_key_info());
        assert_eq!(ca_pem_hash(cert.pem().as_bytes()), Ok(want.clone()));
        assert_eq!(want.len(), "sha256:".len() + 64);
        assert_eq!(
            parse_pin(&want.to_ascii_uppercase().replace("SHA256", "sha256")),
            Ok(want)
        );
        assert_eq!(ca_pem_hash(b"nothing"), Err(HashError::NoCertificate));
        for bad in [
            "sha256:abc",
            "md5:00",
            &format!("sha256:{}", "g".repeat(64)),
        ] {
            assert!(parse_pin(bad).is_err(), "{bad}");
        }
    }
}
