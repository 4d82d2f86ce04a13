//! The JSON documents of an image: image manifests (OCI and Docker v2 schema 2), image indexes
//! (OCI) / manifest lists (Docker), and the image config; plus choosing the host's platform
//! from an index as kubelet's runtime does (linux + the host architecture).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::reference::is_valid_digest;
use crate::ImageConfig;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// Media types we ask registries for, best first.
pub const ACCEPTED_MANIFEST_TYPES: &[&str] =
    &[OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// Errors interpreting manifests and configs.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("parsing manifest {digest}")]
    Parse {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("manifest {digest} uses Docker schema 1, which is deprecated and not supported; re-push the image with a current client")]
    Schema1 { digest: String },
    #[error("manifest {digest} has unsupported media type {media_type:?}")]
    UnsupportedMediaType { digest: String, media_type: String },
    #[error("manifest {digest} references invalid digest {bad:?}")]
    BadDescriptor { digest: String, bad: String },
    #[error("image index {digest} has no manifest for linux/{arch} (available: {available})")]
    NoMatchingPlatform {
        digest: String,
        arch: String,
        available: String,
    },
    #[error("parsing image config {digest}")]
    Config {
        digest: String,
        #[source]
        source: serde_json::Error,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Descriptor {
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// An image manifest (OCI or Docker schema 2: the shapes coincide).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// An image index / manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub manifests: Vec<Descriptor>,
}

/// What a manifest document turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Document {
    Manifest(Manifest),
    Index(Index),
}

/// Just enough to tell documents apart before parsing them fully.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<serde_json::Value>,
}

/// Parses a manifest or index and checks every digest in it (digests become file names).
pub fn parse_document(digest: &str, data: &[u8]) -> Result<Document, ManifestError> {
    let parse_err = |source| ManifestError::Parse {
        digest: digest.to_owned(),
        source,
    };
    let probe: Probe = serde_json::from_slice(data).map_err(parse_err)?;
    if probe.schema_version == 1
        || probe.media_type == DOCKER_SCHEMA1
        || probe.media_type == DOCKER_SCHEMA1_SIGNED
    {
        return Err(ManifestError::Schema1 {
            digest: digest.to_owned(),
        });
    }
    let is_index = match probe.media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => true,
        OCI_MANIFEST | DOCKER_MANIFEST => false,
        "" => probe.manifests.is_some(),
        other => {
            return Err(ManifestError::UnsupportedMediaType {
                digest: digest.to_owned(),
                media_type: other.to_owned(),
            })
        }
    };
    let check = |d: &Descriptor| {
        if is_valid_digest(&d.digest) {
            Ok(())
        } else {
            Err(ManifestError::BadDescriptor {
                digest: digest.to_owned(),
                bad: d.digest.clone(),
            })
        }
    };
    if is_index {
        let index: Index = serde_json::from_slice(data).map_err(parse_err)?;
        index.manifests.iter().try_for_each(check)?;
        Ok(Document::Index(index))
    } else {
        let manifest: Manifest = serde_json::from_slice(data).map_err(parse_err)?;
        check(&manifest.config)?;
        manifest.layers.iter().try_for_each(check)?;
        Ok(Document::Manifest(manifest))
    }
}

/// The host architecture in OCI terms (Go's GOARCH names).
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        "loongarch64" => "loong64",
        other => other,
    }
}

/// Picks the entry for linux/`arch` from an index; for arm64 an entry with variant `v8` or no
/// variant, as containerd's default platform matcher does.
pub fn select_platform<'a>(
    index_digest: &str,
    index: &'a Index,
    arch: &str,
) -> Result<&'a Descriptor, ManifestError> {
    let matches = |d: &&Descriptor| {
        d.platform.as_ref().is_some_and(|p| {
            p.os == "linux"
                && p.architecture == arch
                && (arch != "arm64" || matches!(p.variant.as_deref(), None | Some("v8") | Some("")))
        })
    };
    index
        .manifests
        .iter()
        .find(matches)
        // An index entry without a platform is taken only when it is the sole entry: OCI
        // archives often wrap a single image that way.
        .or_else(|| match index.manifests.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        })
        .ok_or_else(|| ManifestError::NoMatchingPlatform {
            digest: index_digest.to_owned(),
            arch: arch.to_owned(),
            available: index
                .manifests
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect::<Vec<_>>()
                .join(", "),
        })
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawExecConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    stop_signal: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RawConfig {
    #[serde(default)]
    config: Option<RawExecConfig>,
}

/// Extracts what the runtime needs from an image config blob. Empty strings mean unset, as in
/// Docker.
pub fn parse_config(digest: &str, data: &[u8]) -> Result<ImageConfig, ManifestError> {
    let raw: RawConfig = serde_json::from_slice(data).map_err(|source| ManifestError::Config {
        digest: digest.to_owned(),
        source,
    })?;
    let c = raw.config.unwrap_or_default();
    let non_empty = |s: Option<String>| s.filter(|s| !s.is_empty());
    Ok(ImageConfig {
        entrypoint: c.entrypoint.unwrap_or_default(),
        cmd: c.cmd.unwrap_or_default(),
        env: c.env.unwrap_or_default(),
        working_dir: non_empty(c.working_dir),
        user: non_empty(c.user),
        stop_signal: non_empty(c.stop_signal),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn parses_docker_and_oci_manifests() -> Result<(), ManifestError> {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"x","digest":"{}","size":3}},"layers":[{{"mediaType":"y","digest":"{}","size":5}}]}}"#,
            d('a'),
            d('b')
        );
        let Document::Manifest(m) = parse_document("m", m.as_bytes())? else {
            panic!("not a manifest");
        };
        assert_eq!(m.layers[0].digest, d('b'));
        let i = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"digest":"{}","size":1}}]}}"#,
            d('c')
        );
        assert!(matches!(
            parse_document("i", i.as_bytes())?,
            Document::Index(_)
        ));
        Ok(())
    }

    #[test]
    fn rejects_schema1_and_bad_digests() {
        assert!(matches!(
            parse_document("x", br#"{"schemaVersion":1,"fsLayers":[]}"#),
            Err(ManifestError::Schema1 { .. })
        ));
        let m = br#"{"schemaVersion":2,"config":{"digest":"sha256:../../x","size":1},"layers":[]}"#;
        assert!(matches!(
            parse_document("x", m),
            Err(ManifestError::BadDescriptor { .. })
        ));
    }

    #[test]
    fn selects_linux_host_platform() -> Result<(), ManifestError> {
        let entry = |arch: &str, variant: Option<&str>, os: &str, c| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: d(c),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
            annotations: None,
        };
        let index = Index {
            schema_version: 2,
            media_type: OCI_INDEX.into(),
            manifests: vec![
                entry("amd64", None, "windows", '1'),
                entry("arm", Some("v7"), "linux", '2'),
                entry("arm64", Some("v8"), "linux", '3'),
                entry("amd64", None, "linux", '4'),
                entry("unknown", None, "unknown", '5'),
            ],
        };
        assert_eq!(select_platform("i", &index, "amd64")?.digest, d('4'));
        assert_eq!(select_platform("i", &index, "arm64")?.digest, d('3'));
        let err = select_platform("i", &index, "s390x");
        assert!(
            matches!(&err, Err(ManifestError::NoMatchingPlatform { available, .. }) if available.contains("linux/arm/v7")),
            "{err:?}"
        );
        Ok(())
    }

    #[test]
    fn config_fields() -> Result<(), ManifestError> {
        let c = parse_config(
            "c",
            br#"{"architecture":"amd64","config":{"Cmd":["sh"],"Env":["PATH=/bin"],"Entrypoint":null,"WorkingDir":"","User":"1000:1000","StopSignal":"SIGQUIT"}}"#,
        )?;
        assert_eq!(c.cmd, vec!["sh"]);
        assert!(c.entrypoint.is_empty());
        assert_eq!(c.working_dir, None);
        assert_eq!(c.user.as_deref(), Some("1000:1000"));
        assert_eq!(c.stop_signal.as_deref(), Some("SIGQUIT"));
        assert_eq!(parse_config("c", b"{}")?, ImageConfig::default());
        Ok(())
    }
}
