//! Pulling from OCI distribution registries (Docker Hub, any registry) through `oci-client`:
//! resolves the reference to a manifest (choosing linux + host architecture from an index),
//! downloads config and layers into the blob store with digests verified, and turns the
//! registry's failures into errors a user can act on (kubelet shows them as `ErrImagePull`).

use std::path::Path;
use std::time::Duration;

use futures::{StreamExt as _, TryStreamExt as _};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::manifest::OciDescriptor;
use oci_client::secrets::RegistryAuth;
use oci_client::RegistryOperation;

use crate::blobs::{BlobError, BlobStore};
use crate::keyring::{Credentials, CredentialsError};
use crate::manifest::{
    host_arch, parse_document, select_platform, Descriptor, Document, Manifest, ManifestError,
    ACCEPTED_MANIFEST_TYPES,
};
use crate::reference::Reference;
use crate::PullProgress;

/// Layers downloaded at once, as containerd's default.
const CONCURRENT_LAYERS: usize = 3;

/// Errors pulling an image.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("creating registry client for {registry}")]
    Client {
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{reference}: not found (the repository or tag does not exist on {registry})")]
    NotFound {
        reference: String,
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{reference}: pull access denied: unauthorized: {}", unauthorized_hint(.reference, .user.as_deref()))]
    Unauthorized {
        reference: String,
        /// The user whose credentials were sent, if any.
        user: Option<String>,
        #[source]
        source: OciDistributionError,
    },
    #[error("{reference}: cannot connect to registry {registry}")]
    Connect {
        reference: String,
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{reference}: registry {registry} answered with an error")]
    Registry {
        reference: String,
        registry: String,
        #[source]
        source: OciDistributionError,
    },
    #[error("{reference}: manifest digest mismatch: expected {expected}, registry sent {actual}")]
    ManifestDigest {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: storing blob {digest}")]
    Blob {
        reference: String,
        digest: String,
        #[source]
        source: BlobError,
    },
    #[error("{reference}: blob digest mismatch: expected {expected}, registry sent {actual}")]
    BlobDigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },
    #[error(
        "{reference}: registry sent more than the {size} bytes blob {digest} is declared to hold"
    )]
    BlobTooLarge {
        reference: String,
        digest: String,
        size: u64,
    },
    #[error("{reference}: downloading blob {digest}")]
    Download {
        reference: String,
        digest: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{reference}: invalid manifest")]
    Manifest {
        reference: String,
        #[source]
        source: ManifestError,
    },
    #[error("{reference}: reading registry credentials from {path}")]
    Credentials {
        reference: String,
        path: String,
        #[source]
        source: CredentialsError,
    },
    #[error("{reference}: background task failed")]
    Join {
        reference: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// What a pull brought into the blob store.
#[derive(Debug, Clone)]
pub(crate) struct Pulled {
    /// Digest of the platform-specific image manifest.
    pub manifest_digest: String,
    pub manifest: Manifest,
    /// Digest the reference resolved to (an index's digest when the tag names an index); the
    /// one `repo_digests` report, as Docker and containerd do.
    pub resolved_digest: String,
    /// Other blobs fetched (the index), kept with the image so removal frees them.
    pub extra_blobs: Vec<String>,
}

pub(crate) type ProgressFn<'a> = Option<&'a (dyn Fn(PullProgress) + Send + Sync)>;

fn report(progress: ProgressFn<'_>, p: PullProgress) {
    if let Some(f) = progress {
        f(p);
    }
}

/// Why a registry refused a pull, in words a user can act on.
fn unauthorized_hint(reference: &str, user: Option<&str>) -> String {
    let registry = reference.split('/').next().unwrap_or(reference);
    match user {
        Some(user) => format!("the registry {registry} refused the credentials of user {user:?}"),
        None => format!(
            "no credentials for {registry} were sent (add an imagePullSecret or a node-wide \
             config.json entry); the repository may also not exist"
        ),
    }
}

/// Pulls `reference` into `blobs`, authenticating with `auth` when given (anonymously
/// otherwise).
pub(crate) async fn pull(
    blobs: &BlobStore,
    reference: &Reference,
    auth: Option<&Credentials>,
    progress: ProgressFn<'_>,
) -> Result<Pulled, PullError> {
    let refname = reference.to_string();
    let host = reference.api_host().to_owned();
    report(progress, PullProgress::Resolving);
    let user = auth.map(|c| c.username.clone());
    let auth = match auth {
        Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
        None => RegistryAuth::Anonymous,
    };
    // A refusal names the user whose credentials were sent.
    pull_as(blobs, reference, &refname, &host, &auth, progress)
        .await
        .map_err(|e| match e {
            PullError::Unauthorized {
                reference, source, ..
            } => PullError::Unauthorized {
                reference,
                user,
                source,
            },
            other => other,
        })
}

async fn pull_as(
    blobs: &BlobStore,
    reference: &Reference,
    refname: &str,
    host: &str,
    auth: &RegistryAuth,
    progress: ProgressFn<'_>,
) -> Result<Pulled, PullError> {
    let refname = refname.to_owned();
    let host = host.to_owned();
    let client = registry_client(&host, reference.allows_plain_http())?;
    let oref = match (&reference.tag, &reference.digest) {
        (_, Some(d)) => oci_client::Reference::with_digest(
            host.clone(),
            reference.repository.clone(),
            d.clone(),
        ),
        (Some(t), None) => {
            oci_client::Reference::with_tag(host.clone(), reference.repository.clone(), t.clone())
        }
        (None, None) => oci_client::Reference::with_tag(
            host.clone(),
            reference.repository.clone(),
            "latest".to_owned(),
        ),
    };
    let classify = |source| classify_error(&refname, &reference.registry, source);

    client
        .auth(&oref, auth, RegistryOperation::Pull)
        .await
        .map_err(classify)?;

    let (data, resolved_digest) =
        fetch_manifest(&client, &oref, auth, reference.digest.as_deref(), &refname).await?;
    let store = |digest: &str, data: &[u8]| {
        blobs
            .put(Some(digest), data)
            .map_err(|source| PullError::Blob {
                reference: refname.clone(),
                digest: digest.to_owned(),
                source,
            })
    };
    store(&resolved_digest, &data)?;
    let manifest_err = |source| PullError::Manifest {
        reference: refname.clone(),
        source,
    };
    let mut extra_blobs = Vec::new();
    let (manifest_digest, manifest) =
        match parse_document(&resolved_digest, &data).map_err(manifest_err)? {
            Document::Manifest(m) => (resolved_digest.clone(), m),
            Document::Index(index) => {
                let chosen = select_platform(&resolved_digest, &index, host_arch())
                    .map_err(manifest_err)?
                    .digest
                    .clone();
                extra_blobs.push(resolved_digest.clone());
                let child = oref.clone_with_digest(chosen.clone());
                let (data, digest) =
                    fetch_manifest(&client, &child, auth, Some(&chosen), &refname).await?;
                store(&digest, &data)?;
                match parse_document(&digest, &data).map_err(manifest_err)? {
                    Document::Manifest(m) => (digest, m),
                    Document::Index(_) => {
                        return Err(manifest_err(ManifestError::UnsupportedMediaType {
                            digest,
                            media_type: "nested image index".to_owned(),
                        }))
                    }
                }
            }
        };

    fetch_blob(&client, &oref, blobs, &manifest.config, &refname, None).await?;
    futures::stream::iter(manifest.layers.iter())
        .map(|layer| fetch_blob(&client, &oref, blobs, layer, &refname, progress))
        .buffer_unordered(CONCURRENT_LAYERS)
        .try_collect::<Vec<()>>()
        .await?;
    report(progress, PullProgress::Done);
    Ok(Pulled {
        manifest_digest,
        manifest,
        resolved_digest,
        extra_blobs,
    })
}

/// A registry client for `host`, speaking plain HTTP to it only when `plain_http`.
fn registry_client(host: &str, plain_http: bool) -> Result<oci_client::Client, PullError> {
    ensure_crypto_provider();
    let config = ClientConfig {
        // Plain HTTP only for loopback registries, as Docker allows by default.
        protocol: if plain_http {
            ClientProtocol::HttpsExcept(vec![host.to_owned()])
        } else {
            ClientProtocol::Https
        },
        // We choose from indexes ourselves, to keep the index digest and report choices.
        platform_resolver: None,
        connect_timeout: Some(Duration::from_secs(30)),
        read_timeout: Some(Duration::from_secs(120)),
        ..ClientConfig::default()
    };
    oci_client::Client::try_from(config).map_err(|source| PullError::Client {
        registry: host.to_owned(),
        source,
    })
}

/// oci-client's reqwest is compiled without a TLS crypto provider of its own, so that ring is
/// the only one linked; it takes the process default and panics when none is installed.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may install one first; any installed provider will do.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Fetches a manifest and checks its digest (against `expected` when pulling by digest).
async fn fetch_manifest(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    auth: &RegistryAuth,
    expected: Option<&str>,
    refname: &str,
) -> Result<(Vec<u8>, String), PullError> {
    let registry = oref.registry().to_owned();
    let (data, _) = client
        .pull_manifest_raw(oref, auth, ACCEPTED_MANIFEST_TYPES)
        .await
        .map_err(|source| classify_error(refname, &registry, source))?;
    let actual = crate::blobs::sha256_digest(&data);
    if let Some(expected) = expected {
        if expected != actual {
            return Err(PullError::ManifestDigest {
                reference: refname.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    Ok((data.to_vec(), actual))
}

/// Downloads one blob into the store unless it is there already, reporting progress.
async fn fetch_blob(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    blobs: &BlobStore,
    desc: &Descriptor,
    refname: &str,
    progress: ProgressFn<'_>,
) -> Result<(), PullError> {
    let digest = desc.digest.clone();
    let blob_err = |source| PullError::Blob {
        reference: refname.to_owned(),
        digest: digest.clone(),
        source,
    };
    if blobs.contains(&digest) {
        report(
            progress,
            PullProgress::Layer {
                digest: digest.clone(),
                downloaded: desc.size,
                total: desc.size,
            },
        );
        return Ok(());
    }
    let odesc = OciDescriptor {
        media_type: desc.media_type.clone(),
        digest: digest.clone(),
        size: i64::try_from(desc.size).unwrap_or(i64::MAX),
        ..OciDescriptor::default()
    };
    let mut stream = client
        .pull_blob_stream(oref, &odesc)
        .await
        .map_err(|source| classify_error(refname, oref.registry(), source))?;
    let mut writer = blobs.writer(Some(&digest)).map_err(blob_err)?;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|source| download_error(refname, &digest, source))?;
        // The descriptor's size bounds what a registry may send (dropping the writer removes
        // its temp file).
        if writer.written().saturating_add(chunk.len() as u64) > desc.size {
            return Err(PullError::BlobTooLarge {
                reference: refname.to_owned(),
                digest: digest.clone(),
                size: desc.size,
            });
        }
        writer.write_chunk(&chunk).map_err(blob_err)?;
        report(
            progress,
            PullProgress::Layer {
                digest: digest.clone(),
                downloaded: writer.written(),
                total: desc.size,
            },
        );
    }
    // fsync can take a while: keep it off the async workers.
    let size = (desc.size > 0).then_some(desc.size);
    tokio::task::spawn_blocking(move || writer.commit(size))
        .await
        .map_err(|source| PullError::Join {
            reference: refname.to_owned(),
            source,
        })?
        .map_err(blob_err)?;
    Ok(())
}

/// oci-client checks digests inside its stream too and reports a mismatch as an I/O error;
/// surface it as the mismatch it is.
fn download_error(reference: &str, digest: &str, source: std::io::Error) -> PullError {
    if let Some(oci_client::errors::DigestError::VerificationError { expected, actual }) = source
        .get_ref()
        .and_then(|e| e.downcast_ref::<oci_client::errors::DigestError>())
    {
        return PullError::BlobDigestMismatch {
            reference: reference.to_owned(),
            expected: expected.clone(),
            actual: actual.clone(),
        };
    }
    PullError::Download {
        reference: reference.to_owned(),
        digest: digest.to_owned(),
        source,
    }
}

/// Sorts registry failures into the cases a user must tell apart.
fn classify_error(reference: &str, registry: &str, source: OciDistributionError) -> PullError {
    let reference = reference.to_owned();
    let registry = registry.to_owned();
    enum Kind {
        NotFound,
        Unauthorized,
        Connect,
        Other,
    }
    let kind = match &source {
        OciDistributionError::ImageManifestNotFoundError(_) => Kind::NotFound,
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Kind::Unauthorized,
        OciDistributionError::RegistryError { envelope, .. } => {
            if envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::NotFound
                        | OciErrorCode::BlobUnknown
                )
            }) {
                Kind::NotFound
            } else if envelope
                .errors
                .iter()
                .any(|e| matches!(e.code, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Kind::Unauthorized
            } else {
                Kind::Other
            }
        }
        OciDistributionError::ServerError { code: 404, .. } => Kind::NotFound,
        OciDistributionError::ServerError {
            code: 401 | 403, ..
        } => Kind::Unauthorized,
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => Kind::Connect,
        _ => Kind::Other,
    };
    match kind {
        Kind::NotFound => PullError::NotFound {
            reference,
            registry,
            source,
        },
        Kind::Unauthorized => PullError::Unauthorized {
            reference,
            user: None,
            source,
        },
        Kind::Connect => PullError::Connect {
            reference,
            registry,
            source,
        },
        Kind::Other => PullError::Registry {
            reference,
            registry,
            source,
        },
    }
}

/// The docker config.json to read credentials from: `$DOCKER_CONFIG/config.json`, else
/// `$HOME/.docker/config.json`.
pub fn default_auth_file() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(Path::new(&dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|home| Path::new(&home).join(".docker").join("config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_clients_with_ring() {
        for plain_http in [false, true] {
            assert!(registry_client("127.0.0.1:5000", plain_http).is_ok());
        }
        assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    }

    #[test]
    fn classifies_registry_errors() {
        let c = |e| classify_error("r", "reg", e);
        assert!(matches!(
            c(OciDistributionError::UnauthorizedError { url: "u".into() }),
            PullError::Unauthorized { .. }
        ));
        assert!(matches!(
            c(OciDistributionError::AuthenticationFailure("bad".into())),
            PullError::Unauthorized { .. }
        ));
        let envelope = |code: &str| -> OciDistributionError {
            let json = format!(r#"{{"errors":[{{"code":"{code}","message":"m"}}]}}"#);
            match serde_json::from_str(&json) {
                Ok(envelope) => OciDistributionError::RegistryError {
                    envelope,
                    url: "u".into(),
                },
                Err(e) => OciDistributionError::JsonError(e),
            }
        };
        assert!(matches!(
            c(envelope("MANIFEST_UNKNOWN")),
            PullError::NotFound { .. }
        ));
        assert!(matches!(
            c(envelope("NAME_UNKNOWN")),
            PullError::NotFound { .. }
        ));
        assert!(matches!(
            c(envelope("DENIED")),
            PullError::Unauthorized { .. }
        ));
        assert!(matches!(
            c(envelope("TOOMANYREQUESTS")),
            PullError::Registry { .. }
        ));
        let e = c(OciDistributionError::ServerError {
            code: 404,
            url: "u".into(),
            message: String::new(),
        });
        assert!(e.to_string().contains("not found"), "{e}");
        let e = c(OciDistributionError::UnauthorizedError { url: "u".into() });
        assert!(e.to_string().contains("unauthorized"), "{e}");
    }
}
