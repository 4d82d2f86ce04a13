//! Importing image tarballs: OCI archives (an OCI image layout in a tar: `oci-layout`,
//! `index.json`, `blobs/`) and docker-archives (`docker save`: `manifest.json` naming config
//! and layer files). The tarball is read once; every file is streamed into the blob store with
//! its digest computed (and checked against its name under `blobs/`), so nothing is unpacked to
//! disk in between and nothing in the archive can write outside the store.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::blobs::{BlobError, BlobStore};
use crate::manifest::{
    host_arch, parse_document, select_platform, Descriptor, Document, Index, Manifest,
    ManifestError, ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, OCI_CONFIG, OCI_LAYER_GZIP,
    OCI_LAYER_TAR, OCI_MANIFEST,
};
use crate::reference::{Reference, ReferenceError};
use crate::unpack::normalize_entry_path;

/// Metadata files are read into memory; bigger than this is not a plausible one.
const MAX_METADATA: u64 = 16 << 20;

/// Errors importing an archive.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("opening image archive {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading image archive {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image archive {path}: storing {entry}")]
    Blob {
        path: PathBuf,
        entry: String,
        #[source]
        source: BlobError,
    },
    #[error("{path} is neither an OCI archive (index.json) nor a docker-archive (manifest.json)")]
    NotAnArchive { path: PathBuf },
    #[error("image archive {path}: parsing {file}")]
    Parse {
        path: PathBuf,
        file: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("image archive {path}: invalid manifest")]
    Manifest {
        path: PathBuf,
        #[source]
        source: ManifestError,
    },
    #[error("image archive {path}: {file} is referenced but missing")]
    MissingFile { path: PathBuf, file: String },
    #[error("image archive {path}: blob {digest} is referenced but missing")]
    MissingBlob { path: PathBuf, digest: String },
    #[error("image archive {path}: invalid image name {name:?}")]
    InvalidName {
        path: PathBuf,
        name: String,
        #[source]
        source: ReferenceError,
    },
}

/// One image found in an archive, its blobs already in the store.
#[derive(Debug, Clone)]
pub(crate) struct Imported {
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub extra_blobs: Vec<String>,
}

/// What one pass over the tarball collected.
#[derive(Default)]
struct Scan {
    /// Small metadata files at the archive root, by name.
    metadata: BTreeMap<String, Vec<u8>>,
    /// Every other regular file, by normalised path, with the digest it was stored under.
    files: BTreeMap<String, String>,
    /// Symlinks and hard links: normalised path → normalised target.
    aliases: BTreeMap<String, String>,
    /// Blobs this import added to the store (candidates for cleanup if unreferenced).
    added: BTreeSet<String>,
}

impl Scan {
    fn digest_of(&self, file: &str) -> Option<&String> {
        let mut path = normalize(file)?;
        // Follow aliases a bounded number of times: a cycle must not hang the import.
        for _ in 0..16 {
            if let Some(d) = self.files.get(&path) {
                return Some(d);
            }
            path = self.aliases.get(&path)?.clone();
        }
        None
    }
}

fn normalize(p: &str) -> Option<String> {
    let comps = normalize_entry_path(p.as_bytes())?;
    Some(
        comps
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join("/"),
    )
}

const METADATA_FILES: &[&str] = &["manifest.json", "index.json", "oci-layout", "repositories"];

/// Imports every image of the archive at `path` into `blobs`.
pub(crate) fn import(blobs: &BlobStore, path: &Path) -> Result<Vec<Imported>, ImportError> {
    let scan = scan(blobs, path)?;
    let result = if scan.metadata.contains_key("index.json") {
        import_oci(blobs, path, &scan)
    } else if scan.metadata.contains_key("manifest.json") {
        import_docker(blobs, path, &scan)
    } else {
        Err(ImportError::NotAnArchive {
            path: path.to_owned(),
        })
    };
    // Drop what this import stored but no image needs (docker-archive `json`/`VERSION`
    // files, or everything when the import failed).
    let keep: BTreeSet<&String> = match &result {
        Ok(images) => images
            .iter()
            .flat_map(|i| {
                [&i.manifest_digest, &i.manifest.config.digest]
                    .into_iter()
                    .chain(i.manifest.layers.iter().map(|l| &l.digest))
                    .chain(i.extra_blobs.iter())
            })
            .collect(),
        Err(_) => BTreeSet::new(),
    };
    for digest in scan.added.iter().filter(|d| !keep.contains(d)) {
        if let Err(e) = blobs.remove(digest) {
            tracing::warn!(error = %e, "removing unused blob after import");
        }
    }
    result
}

fn open_archive(path: &Path) -> Result<Box<dyn Read>, ImportError> {
    let file = File::open(path).map_err(|source| ImportError::Open {
        path: path.to_owned(),
        source,
    })?;
    // `docker save | gzip` is common; layer decompression logic recognises the magic.
    crate::unpack::decompressed(file).map_err(|e| ImportError::Read {
        path: path.to_owned(),
        source: io::Error::other(e),
    })
}

fn scan(blobs: &BlobStore, path: &Path) -> Result<Scan, ImportError> {
    let read_err = |source| ImportError::Read {
        path: path.to_owned(),
        source,
    };
    let mut archive = tar::Archive::new(open_archive(path)?);
    let mut scan = Scan::default();
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let Some(name) = normalize(&String::from_utf8_lossy(&raw)) else {
            // A path climbing out of the archive names nothing we would use.
            continue;
        };
        let kind = entry.header().entry_type();
        if kind.is_symlink() || kind.is_hard_link() {
            let Some(target) = entry.link_name_bytes() else {
                continue;
            };
            let target = String::from_utf8_lossy(&target).into_owned();
            // Symlinks are relative to their directory; hard links to the archive root.
            let resolved = if kind.is_symlink() && !target.starts_with('/') {
                let dir = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                normalize(&format!("{dir}/{target}"))
            } else {
                normalize(&target)
            };
            if let Some(resolved) = resolved {
                scan.aliases.insert(name, resolved);
            }
            continue;
        }
        if !kind.is_file() && kind != tar::EntryType::Continuous {
            continue;
        }
        if METADATA_FILES.contains(&name.as_str()) && entry.size() <= MAX_METADATA {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(read_err)?;
            scan.metadata.insert(name, data);
            continue;
        }
        // Files under blobs/sha256/ are named by their digest: verify against it.
        let expected = name
            .strip_prefix("blobs/")
            .map(|rest| rest.replacen('/', ":", 1))
            .filter(|d| crate::reference::is_valid_digest(d));
        let existed = expected.as_deref().is_some_and(|d| blobs.contains(d));
        let digest = if existed {
            expected.clone().unwrap_or_default()
        } else {
            let blob_err = |source| ImportError::Blob {
                path: path.to_owned(),
                entry: name.clone(),
                source,
            };
            let mut writer = blobs.writer(expected.as_deref()).map_err(blob_err)?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = entry.read(&mut buf).map_err(read_err)?;
                if n == 0 {
                    break;
                }
                writer.write_chunk(&buf[..n]).map_err(blob_err)?;
            }
            let (digest, _, existed) = writer.commit(None).map_err(blob_err)?;
            if !existed {
                scan.added.insert(digest.clone());
            }
            digest
        };
        scan.files.insert(name, digest);
    }
    Ok(scan)
}

fn parse_json<T: for<'de> Deserialize<'de>>(
    path: &Path,
    file: &str,
    data: &[u8],
) -> Result<T, ImportError> {
    serde_json::from_slice(data).map_err(|source| ImportError::Parse {
        path: path.to_owned(),
        file: file.to_owned(),
        source,
    })
}

/// Tags and digests for a name from an archive; a bare tag (no repository) names nothing.
fn names_for(path: &Path, name: &str) -> Result<(Vec<String>, Vec<String>), ImportError> {
    let r = Reference::parse(name).map_err(|source| ImportError::InvalidName {
        path: path.to_owned(),
        name: name.to_owned(),
        source,
    })?;
    let tags = r.tagged().into_iter().collect();
    let digests = r
        .digest
        .as_deref()
        .map(|d| r.with_digest(d))
        .into_iter()
        .collect();
    Ok((tags, digests))
}

fn import_oci(blobs: &BlobStore, path: &Path, scan: &Scan) -> Result<Vec<Imported>, ImportError> {
    let data = scan
        .metadata
        .get("index.json")
        .map(Vec::as_slice)
        .unwrap_or_default();
    let index: Index = parse_json(path, "index.json", data)?;
    let manifest_err = |source| ImportError::Manifest {
        path: path.to_owned(),
        source,
    };
    let read_blob = |digest: &str| {
        blobs.read(digest).map_err(|source| match source {
            BlobError::Missing { .. } => ImportError::MissingBlob {
                path: path.to_owned(),
                digest: digest.to_owned(),
            },
            source => ImportError::Blob {
                path: path.to_owned(),
                entry: digest.to_owned(),
                source,
            },
        })
    };
    let mut out = Vec::new();
    for desc in &index.manifests {
        if !crate::reference::is_valid_digest(&desc.digest) {
            return Err(manifest_err(ManifestError::BadDescriptor {
                digest: "index.json".to_owned(),
                bad: desc.digest.clone(),
            }));
        }
        let (repo_tags, repo_digests) = match name_annotation(desc) {
            Some(name) => names_for(path, name)?,
            None => (Vec::new(), Vec::new()),
        };
        let doc = parse_document(&desc.digest, &read_blob(&desc.digest)?).map_err(manifest_err)?;
        let (manifest_digest, manifest, extra_blobs) = match doc {
            Document::Manifest(m) => (desc.digest.clone(), m, Vec::new()),
            Document::Index(inner) => {
                let chosen = select_platform(&desc.digest, &inner, host_arch())
                    .map_err(manifest_err)?
                    .digest
                    .clone();
                match parse_document(&chosen, &read_blob(&chosen)?).map_err(manifest_err)? {
                    Document::Manifest(m) => (chosen, m, vec![desc.digest.clone()]),
                    Document::Index(_) => {
                        return Err(manifest_err(ManifestError::UnsupportedMediaType {
                            digest: chosen,
                            media_type: "nested image index".to_owned(),
                        }))
                    }
                }
            }
        };
        for d in std::iter::once(&manifest.config).chain(manifest.layers.iter()) {
            if !blobs.contains(&d.digest) {
                return Err(ImportError::MissingBlob {
                    path: path.to_owned(),
                    digest: d.digest.clone(),
                });
            }
        }
        out.push(Imported {
            manifest_digest,
            manifest,
            repo_tags,
            repo_digests,
            extra_blobs,
        });
    }
    Ok(out)
}

/// The full image name of an index entry: containerd's annotation is always a full name; the
/// OCI `ref.name` counts when it is one (has a `/` or `:`), not when it is a bare tag.
fn name_annotation(desc: &Descriptor) -> Option<&str> {
    if let Some(n) = desc.annotation(ANNOTATION_CONTAINERD_NAME) {
        return Some(n);
    }
    let r = desc.annotation(ANNOTATION_REF_NAME)?;
    if r.contains('/') || r.contains(':') {
        Some(r)
    } else {
        tracing::info!(
            ref_name = r,
            "OCI archive entry has only a tag, no image name; importing by id"
        );
        None
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn import_docker(
    blobs: &BlobStore,
    path: &Path,
    scan: &Scan,
) -> Result<Vec<Imported>, ImportError> {
    let data = scan
        .metadata
        .get("manifest.json")
        .map(Vec::as_slice)
        .unwrap_or_default();
    let entries: Vec<DockerEntry> = parse_json(path, "manifest.json", data)?;
    let lookup = |file: &str| {
        scan.digest_of(file)
            .cloned()
            .ok_or_else(|| ImportError::MissingFile {
                path: path.to_owned(),
                file: file.to_owned(),
            })
    };
    let blob_err = |entry: &str, source| ImportError::Blob {
        path: path.to_owned(),
        entry: entry.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in entries {
        let config_digest = lookup(&entry.config)?;
        let config = Descriptor {
            media_type: OCI_CONFIG.to_owned(),
            size: blobs
                .size(&config_digest)
                .map_err(|e| blob_err(&entry.config, e))?,
            digest: config_digest,
            platform: None,
            annotations: None,
        };
        let mut layers = Vec::new();
        for file in &entry.layers {
            let digest = lookup(file)?;
            let mut head = [0u8; 2];
            let gz = blobs
                .open_blob(&digest)
                .map_err(|e| blob_err(file, e))?
                .read_exact(&mut head)
                .is_ok()
                && head == [0x1f, 0x8b];
            layers.push(Descriptor {
                media_type: if gz { OCI_LAYER_GZIP } else { OCI_LAYER_TAR }.to_owned(),
                size: blobs.size(&digest).map_err(|e| blob_err(file, e))?,
                digest,
                platform: None,
                annotations: None,
            });
        }
        // docker-archives carry no manifest; write the OCI one describing the same blobs so
        // the image is stored like a pulled one.
        let manifest = Manifest {
            schema_version: 2,
            media_type: OCI_MANIFEST.to_owned(),
            config,
            layers,
        };
        let json = serde_json::to_vec(&manifest).map_err(|source| ImportError::Parse {
            path: path.to_owned(),
            file: "manifest.json".to_owned(),
            source,
        })?;
        let manifest_digest = blobs
            .put(None, &json)
            .map_err(|e| blob_err("manifest", e))?;
        let mut repo_tags = Vec::new();
        for tag in entry.repo_tags.unwrap_or_default() {
            repo_tags.extend(names_for(path, &tag)?.0);
        }
        out.push(Imported {
            manifest_digest,
            manifest,
            repo_tags,
            repo_digests: Vec::new(),
            extra_blobs: Vec::new(),
        });
    }
    Ok(out)
}
