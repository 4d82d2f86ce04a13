//! The cluster's certificates, admin token and service-account signing key, generated on
//! first start under `<state-dir>/pki` and reused afterwards, so kubeconfigs and issued
//! ServiceAccount tokens stay valid across restarts.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("generating or loading key/certificate {what}")]
    Cert {
        what: String,
        #[source]
        source: rcgen::Error,
    },
}

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
pub const SERVING_CERT: &str = "apiserver.crt";
pub const SERVING_KEY: &str = "apiserver.key";
pub const ADMIN_TOKEN: &str = "admin-token";
/// The SANs the serving certificate was issued for, one a line: a start that wants more
/// (a new listen address, the `kubernetes` Service's names) issues it again.
pub const SERVING_SANS: &str = "apiserver.sans";
/// The ServiceAccount token signing key (kubeadm's `sa.key`/`sa.pub`).
pub const SA_KEY: &str = "sa.key";
pub const SA_PUB: &str = "sa.pub";

/// The names in-cluster clients reach the API server by: the `kubernetes` Service.
pub const SERVICE_SANS: &[&str] = &[
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

/// What the API server needs from its PKI directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_pem: String,
    pub serving_cert_pem: String,
    pub serving_key_pem: String,
    pub admin_token: String,
    /// PKCS#8 private and SubjectPublicKeyInfo public key (PEM) that sign and check
    /// ServiceAccount tokens.
    pub sa_key_pem: String,
    pub sa_pub_pem: String,
}

fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(PkiError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes via a temp file and rename so a crash never leaves half a key; `mode` 0600 for
/// secrets.
fn write(path: &Path, contents: &str, mode: u32) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(contents.as_bytes()).map_err(err)?;
    f.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Cert {
        what: what.to_string(),
        source,
    }
}

/// The CA's parameters. Rebuilt identically on every start: together with the stored key they
/// make the same issuer name and key identifier, so no certificate parser is needed to sign.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "peapod-ca");
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    params
}

fn load_issuer(dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let key_path = dir.join(CA_KEY);
    let key_pem = read(&key_path)?.ok_or_else(|| PkiError::Read {
        path: key_path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "CA key missing"),
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(cert_err("CA key"))?;
    Ok(Issuer::new(ca_params(), key))
}

/// kubeadm's `--discovery-token-ca-cert-hash` of the CA in `dir`: `sha256:` and the hex
/// SHA-256 of the CA certificate's SubjectPublicKeyInfo, which a joining node pins.
pub fn ca_cert_hash(dir: &Path) -> Result<String, PkiError> {
    use rcgen::PublicKeyData as _;
    use sha2::Digest as _;
    let key_path = dir.join(CA_KEY);
    let key_pem = read(&key_path)?.ok_or_else(|| PkiError::Read {
        path: key_path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::NotFound, "CA key missing"),
    })?;
    let key = KeyPair::from_pem(&key_pem).map_err(cert_err("CA key"))?;
    let digest = sha2::Sha256::digest(key.subject_public_key_info());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256:{hex}"))
}

/// A serving certificate for `sans` (IPs or DNS names) signed by the CA in `dir`.
pub fn issue(dir: &Path, sans: &[String]) -> Result<(String, String), PkiError> {
    let issuer = load_issuer(dir)?;
    let mut params = CertificateParams::new(sans.to_vec()).map_err(cert_err("SANs"))?;
    let cn = sans
        .first()
        .cloned()
        .unwrap_or_else(|| "peapod".to_string());
    params.distinguished_name.push(DnType::CommonName, cn);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().map_err(cert_err("serving key"))?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(cert_err("serving certificate"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The directory 0700 and its private keys and tokens 0600, also when an older version
/// left them with the umask's modes.
fn secure_modes(dir: &Path) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    let chmod = |path: &Path, mode: u32| match std::fs::set_permissions(
        path,
        std::fs::Permissions::from_mode(mode),
    ) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(PkiError::Write {
            path: path.to_path_buf(),
            source,
        }),
    };
    chmod(dir, 0o700)?;
    for name in [CA_KEY, SERVING_KEY, SA_KEY, ADMIN_TOKEN] {
        chmod(&dir.join(name), 0o600)?;
    }
    Ok(())
}

/// Loads the PKI in `dir`, creating what is missing.
pub fn ensure(dir: &Path, extra_sans: &[String]) -> Result<Pki, PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    secure_modes(dir)?;
    let ca_cert_path = dir.join(CA_CERT);
    let ca_key_path = dir.join(CA_KEY);
    let ca_pem = match (read(&ca_cert_path)?, read(&ca_key_path)?) {
        (Some(c), Some(_)) => c,
        _ => {
            let key = KeyPair::generate().map_err(cert_err("CA key"))?;
            let cert = ca_params()
                .self_signed(&key)
                .map_err(cert_err("CA certificate"))?;
            write(&ca_key_path, &key.serialize_pem(), 0o600)?;
            write(&ca_cert_path, &cert.pem(), 0o644)?;
            // A new CA invalidates any serving certificate signed by an old one.
            let _ = std::fs::remove_file(dir.join(SERVING_CERT));
            cert.pem()
        }
    };
    let mut sans = vec![
        "127.0.0.1".to_string(),
        "::1".to_string(),
        "localhost".to_string(),
    ];
    if let Ok(h) = nix_hostname() {
        sans.push(h);
    }
    sans.extend(SERVICE_SANS.iter().map(|s| s.to_string()));
    for s in extra_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    let cert_path = dir.join(SERVING_CERT);
    let key_path = dir.join(SERVING_KEY);
    let sans_path = dir.join(SERVING_SANS);
    let issued_for = read(&sans_path)?.unwrap_or_default();
    let covered = sans.iter().all(|s| issued_for.lines().any(|l| l == s));
    let (serving_cert_pem, serving_key_pem) = match (read(&cert_path)?, read(&key_path)?) {
        (Some(c), Some(k)) if covered => (c, k),
        _ => {
            let (c, k) = issue(dir, &sans)?;
            write(&key_path, &k, 0o600)?;
            write(&cert_path, &c, 0o644)?;
            write(&sans_path, &(sans.join("\n") + "\n"), 0o644)?;
            (c, k)
        }
    };
    let (sa_key_pem, sa_pub_pem) = match (read(&dir.join(SA_KEY))?, read(&dir.join(SA_PUB))?) {
        (Some(k), Some(p)) => (k, p),
        _ => {
            let key = KeyPair::generate().map_err(cert_err("service account key"))?;
            let (k, p) = (key.serialize_pem(), key.public_key_pem());
            write(&dir.join(SA_KEY), &k, 0o600)?;
            write(&dir.join(SA_PUB), &p, 0o644)?;
            (k, p)
        }
    };
    let token_path = dir.join(ADMIN_TOKEN);
    let admin_token = match read(&token_path)? {
        Some(t) if !t.trim().is_empty() => t.trim().to_string(),
        _ => {
            let bytes: [u8; 32] = rand::random();
            let t: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
            write(&token_path, &t, 0o600)?;
            t
        }
    };
    Ok(Pki {
        ca_pem,
        serving_cert_pem,
        serving_key_pem,
        admin_token,
        sa_key_pem,
        sa_pub_pem,
    })
}

/// The machine's host name (for the serving certificate), from the kernel.
fn nix_hostname() -> std::io::Result<String> {
    let h = std::fs::read_to_string("/proc/sys/kernel/hostname")?;
    let h = h.trim().to_string();
    if h.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "empty host name",
        ));
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_and_reused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = ensure(dir.path(), &[]).expect("first");
        let b = ensure(dir.path(), &[]).expect("second");
        assert_eq!(a.ca_pem, b.ca_pem);
        assert_eq!(a.admin_token, b.admin_token);
        assert_eq!(a.serving_cert_pem, b.serving_cert_pem);
        assert_eq!(a.sa_key_pem, b.sa_key_pem);
        assert!(a.sa_pub_pem.contains("PUBLIC KEY"));
        // A start that wants another address gets a new serving certificate, same CA.
        let c = ensure(dir.path(), &["10.96.0.1".into()]).expect("third");
        assert_ne!(c.serving_cert_pem, a.serving_cert_pem);
        assert_eq!(c.ca_pem, a.ca_pem);
        let d = ensure(dir.path(), &["10.96.0.1".into()]).expect("fourth");
        assert_eq!(d.serving_cert_pem, c.serving_cert_pem);
        let mode = std::fs::metadata(dir.path().join(CA_KEY))
            .expect("stat")
            .permissions();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.mode() & 0o777, 0o600);
        let (cert, key) = issue(dir.path(), &["10.0.0.1".into(), "node1".into()]).expect("issue");
        assert!(cert.contains("BEGIN CERTIFICATE"));
        assert!(key.contains("PRIVATE KEY"));
    }
}
