//! Local image store: pulls images over the OCI distribution protocol, imports OCI-archive and
//! docker-archive tarballs, keeps blobs content-addressed on disk and unpacks each layer once so
//! the runtime can stack them as an overlayfs rootfs.
//!
//! On disk, under the root (`<state-dir>/images`):
//! - `blobs/sha256/<hex>`: manifests, configs, layers; written to a temp file, verified, renamed.
//! - `layers/<hex>/`: one unpacked layer (overlayfs lower dir), named by its blob digest.
//! - `index.json`: images by id with their names, replaced atomically under the `lock` flock.

mod archive;
mod blobs;
mod index;
mod keyring;
mod manifest;
mod reference;
mod registry;
mod unpack;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use archive::ImportError;
pub use blobs::BlobError;
pub use index::IndexError;
pub use keyring::{ConfigFormat, Credentials, CredentialsError, Keyring};
pub use manifest::{parse_config, parse_document, Document, ManifestError};
pub use reference::{Reference, ReferenceError};
pub use registry::{default_auth_file, PullError};
pub use unpack::{unpack, Privileges, UnpackError, UnpackLimits};

use index::{IndexData, IndexFile, Record};

/// Image configuration the runtime needs to build a container (OCI image config `config`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` strings, as in the image config.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// Raw `User` of the image config.
    pub user: Option<String>,
    /// Raw `StopSignal` of the image config.
    pub stop_signal: Option<String>,
}

/// An image in the local store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Image {
    /// `sha256:<hex of config blob>`.
    pub id: String,
    /// Normalised tags, e.g. `127.0.0.1:5000/busybox:latest`, `docker.io/library/busybox:latest`.
    pub repo_tags: Vec<String>,
    /// `127.0.0.1:5000/busybox@sha256:<manifest digest>`.
    pub repo_digests: Vec<String>,
    pub size_bytes: u64,
    pub config: ImageConfig,
    /// Layer blob digests, lowest first.
    pub layers: Vec<String>,
}

/// Progress of a pull, reported to an optional callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullProgress {
    Resolving,
    Layer {
        digest: String,
        downloaded: u64,
        total: u64,
    },
    Done,
}

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    InvalidReference(#[from] ReferenceError),
    #[error("opening image store {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Index(#[from] IndexError),
    #[error(transparent)]
    Pull(#[from] PullError),
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error("image {image}: invalid stored manifest or config")]
    Manifest {
        image: String,
        #[source]
        source: ManifestError,
    },
    #[error(
        "image {image}: blob {digest} disappeared while storing it (removed concurrently); retry"
    )]
    BlobVanished { image: String, digest: String },
    #[error("unpacking layer {digest}")]
    Unpack {
        digest: String,
        #[source]
        source: UnpackError,
    },
    #[error("unpacking layer {digest}: filesystem operation on {path}")]
    LayerDir {
        digest: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    #[error("background task for {what} failed")]
    Join {
        what: String,
        #[source]
        source: tokio::task::JoinError,
    },
}

/// Handle on the on-disk image store; cheap to clone, safe to share between threads, and
/// between processes using the same root (mutations take a file lock).
#[derive(Debug, Clone)]
pub struct ImageStore {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    root: PathBuf,
    blobs: blobs::BlobStore,
    index: IndexFile,
    layers: PathBuf,
    privileges: Privileges,
    unpack_limits: UnpackLimits,
    auth_file: Option<PathBuf>,
}

/// Reads a docker-style configuration; a missing file is an empty keyring. `config.json`
/// holds `auths`; a file named `.dockercfg` is the legacy shape.
pub fn read_keyring(path: &Path) -> Result<Keyring, CredentialsError> {
    let data = match fs::read(path) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Keyring::default()),
        Err(e) => return Err(CredentialsError::Read(e)),
    };
    let format = if path.file_name().is_some_and(|n| n == ".dockercfg") {
        ConfigFormat::Dockercfg
    } else {
        ConfigFormat::ConfigJson
    };
    Keyring::parse(&data, format)
}

/// What a parsed `get`/`remove` argument designates.
enum Selector {
    Id(String),
    Tag(String),
    Digest(String),
}

impl Selector {
    fn parse(s: &str) -> Result<Self, ImageError> {
        let s = s.trim();
        if reference::is_valid_digest(s) {
            return Ok(Self::Id(s.to_owned()));
        }
        if s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Self::Id(format!("sha256:{}", s.to_ascii_lowercase())));
        }
        let r = Reference::parse(s)?;
        Ok(match &r.digest {
            Some(d) => Self::Digest(r.with_digest(d)),
            None => Self::Tag(r.tagged().unwrap_or_else(|| r.to_string())),
        })
    }

    fn matches(&self, r: &Record) -> bool {
        match self {
            Self::Id(id) => r.id == *id,
            Self::Tag(t) => r.repo_tags.contains(t),
            Self::Digest(d) => r.repo_digests.contains(d),
        }
    }
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root` (`<state-dir>/images`). Leftover temp
    /// files of crashed writers are removed.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let open_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ImageError::Open { path, source }
        };
        fs::create_dir_all(root).map_err(open_err(root))?;
        let layers = root.join("layers");
        fs::create_dir_all(&layers).map_err(open_err(&layers))?;
        let blobs = blobs::BlobStore::open(root)?;
        let store = Self {
            inner: Arc::new(Inner {
                root: root.to_owned(),
                index: IndexFile::new(root),
                blobs,
                layers,
                privileges: Privileges::current(),
                unpack_limits: UnpackLimits::default(),
                auth_file: registry::default_auth_file(),
            }),
        };
        store.remove_stale_temps();
        Ok(store)
    }

    /// Uses `path` as the docker-style `config.json` for registry credentials instead of
    /// `$DOCKER_CONFIG/config.json` / `~/.docker/config.json`; `None` pulls anonymously.
    pub fn with_auth_file(mut self, path: Option<PathBuf>) -> Self {
        Arc::make_mut(&mut self.inner).auth_file = path;
        self
    }

    /// Overrides which privileged operations unpacking performs (default: all when root).
    pub fn with_privileges(mut self, privileges: Privileges) -> Self {
        Arc::make_mut(&mut self.inner).privileges = privileges;
        self
    }

    /// Overrides how much one layer may unpack to (default: [`UnpackLimits::default`]).
    pub fn with_unpack_limits(mut self, limits: UnpackLimits) -> Self {
        Arc::make_mut(&mut self.inner).unpack_limits = limits;
        self
    }

    /// Root directory of the store.
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// Pulls `reference` from its registry and records it in the store, with the credentials
    /// the store's auth file holds for it (`docker pull`'s way): each matching entry in turn,
    /// anonymously when none matches.
    pub async fn pull(
        &self,
        reference: &str,
        progress: Option<&(dyn Fn(PullProgress) + Send + Sync)>,
    ) -> Result<Image, ImageError> {
        let r = Reference::parse(reference)?;
        let candidates = match &self.inner.auth_file {
            Some(path) => read_keyring(path)
                .map_err(|source| PullError::Credentials {
                    reference: r.to_string(),
                    path: path.display().to_string(),
                    source,
                })?
                .lookup(&r.name()),
            None => Vec::new(),
        };
        let Some((last, first)) = candidates.split_last() else {
            return self.pull_with_auth(reference, None, progress).await;
        };
        for creds in first {
            match self.pull_with_auth(reference, Some(creds), progress).await {
                Err(ImageError::Pull(PullError::Unauthorized { .. })) => continue,
                other => return other,
            }
        }
        self.pull_with_auth(reference, Some(last), progress).await
    }

    /// Pulls `reference` with exactly `auth` (anonymously when `None`), as CRI's
    /// `PullImage` with its `AuthConfig`, and records it in the store. Blobs already in the
    /// store are not downloaded again, so re-pulling a tag fetches only changed layers.
    pub async fn pull_with_auth(
        &self,
        reference: &str,
        auth: Option<&Credentials>,
        progress: Option<&(dyn Fn(PullProgress) + Send + Sync)>,
    ) -> Result<Image, ImageError> {
        let r = Reference::parse(reference)?;
        let pulled = registry::pull(&self.inner.blobs, &r, auth, progress).await?;
        let store = self.clone();
        let name = r.to_string();
        tokio::task::spawn_blocking(move || {
            store.record(
                &name,
                &pulled.manifest_digest,
                &pulled.manifest,
                r.tagged().into_iter().collect(),
                vec![r.with_digest(&pulled.resolved_digest)],
                pulled.extra_blobs,
            )
        })
        .await
        .map_err(|source| ImageError::Join {
            what: format!("recording {reference}"),
            source,
        })?
    }

    /// Imports an OCI-archive or docker-archive tarball (blocking). Images without a name
    /// are stored by id.
    pub fn import(&self, tarball: &Path) -> Result<Vec<Image>, ImageError> {
        let _import = self.inner.index.import_lock()?;
        let imported = archive::import(&self.inner.blobs, tarball)?;
        imported
            .into_iter()
            .map(|i| {
                self.record(
                    &tarball.display().to_string(),
                    &i.manifest_digest,
                    &i.manifest,
                    i.repo_tags,
                    i.repo_digests,
                    i.extra_blobs,
                )
            })
            .collect()
    }

    /// All images in the store.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        Ok(self
            .inner
            .index
            .load()?
            .images
            .values()
            .map(Record::image)
            .collect())
    }

    /// Looks an image up by reference (normalised: `busybox` finds
    /// `docker.io/library/busybox:latest`), by `repo@sha256:…`, or by id (`sha256:<hex>` or
    /// the bare hex).
    pub fn get(&self, reference_or_id: &str) -> Result<Option<Image>, ImageError> {
        let sel = Selector::parse(reference_or_id)?;
        Ok(self
            .inner
            .index
            .load()?
            .images
            .values()
            .find(|r| sel.matches(r))
            .map(Record::image))
    }

    /// Unpacked layer directories, LOWEST first, unpacking any not yet unpacked (blocking).
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        image.layers.iter().map(|d| self.layer_dir(d)).collect()
    }

    /// Removes a reference; when it was the image's last name, or when given an id, removes
    /// the image and frees the blobs and unpacked layers no other image uses. The caller must
    /// not remove an image that running containers use (kubelet's image GC checks this), as
    /// their overlay mounts sit on its layer directories.
    pub fn remove(&self, reference_or_id: &str) -> Result<(), ImageError> {
        let sel = Selector::parse(reference_or_id)?;
        let inner = &self.inner;
        let lock = inner.index.lock()?;
        let mut data = inner.index.load()?;
        let Some(id) = data
            .images
            .values()
            .find(|r| sel.matches(r))
            .map(|r| r.id.clone())
        else {
            return Err(ImageError::NotFound {
                reference: reference_or_id.to_owned(),
            });
        };
        let delete = match (&sel, data.images.get_mut(&id)) {
            (Selector::Tag(t), Some(r)) => {
                r.repo_tags.retain(|x| x != t);
                r.repo_tags.is_empty()
            }
            (Selector::Digest(d), Some(r)) => {
                r.repo_digests.retain(|x| x != d);
                r.repo_tags.is_empty() && r.repo_digests.is_empty()
            }
            (Selector::Id(_), _) | (_, None) => true,
        };
        let removed = if delete {
            data.images.remove(&id)
        } else {
            None
        };
        inner.index.save(&lock, &data)?;
        if let Some(record) = removed {
            self.free_unused(&data, &record);
        }
        Ok(())
    }

    /// Deletes blobs and layer directories of `record` that no image in `data` uses. Failures
    /// are logged and leave garbage, never a broken image. Call with the lock held.
    fn free_unused(&self, data: &IndexData, record: &Record) {
        for blob in record.blobs() {
            if data.blob_referenced(blob) {
                continue;
            }
            if let Err(e) = self.inner.blobs.remove(blob) {
                tracing::warn!(error = %e, blob, "removing unused blob");
            }
            if record.layers.contains(blob) {
                let dir = self.inner.layers.join(blob.trim_start_matches("sha256:"));
                // Rename first so a half-deleted directory is never taken for a layer.
                let trash = blobs::temp_path(&self.inner.layers, "trash");
                match fs::rename(&dir, &trash) {
                    Ok(()) => {
                        if let Err(e) = fs::remove_dir_all(&trash) {
                            tracing::warn!(error = %e, dir = %trash.display(), "removing layer");
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "removing layer"),
                }
            }
        }
    }

    /// Records an image whose blobs are all in the store.
    fn record(
        &self,
        what: &str,
        manifest_digest: &str,
        m: &manifest::Manifest,
        repo_tags: Vec<String>,
        repo_digests: Vec<String>,
        extra_blobs: Vec<String>,
    ) -> Result<Image, ImageError> {
        let id = m.config.digest.clone();
        let config_data = self.inner.blobs.read(&id)?;
        let config =
            manifest::parse_config(&id, &config_data).map_err(|source| ImageError::Manifest {
                image: what.to_owned(),
                source,
            })?;
        let size_bytes = config_data.len() as u64 + m.layers.iter().map(|l| l.size).sum::<u64>();
        let record = Record {
            id: id.clone(),
            manifest_digest: manifest_digest.to_owned(),
            repo_tags,
            repo_digests,
            size_bytes,
            config,
            layers: m.layers.iter().map(|l| l.digest.clone()).collect(),
            extra_blobs,
        };
        self.inner.index.update(|data| {
            // Under the lock: a concurrent remove may have freed a shared blob we skipped
            // downloading because it was present.
            if let Some(missing) = record.blobs().find(|b| !self.inner.blobs.contains(b)) {
                return Err(ImageError::BlobVanished {
                    image: what.to_owned(),
                    digest: missing.clone(),
                });
            }
            data.add(record.clone());
            // Blobs of a second packaging of an image already stored are not needed.
            for blob in record.blobs().filter(|b| !data.blob_referenced(b)) {
                if let Err(e) = self.inner.blobs.remove(blob) {
                    tracing::warn!(error = %e, blob, "removing unused blob");
                }
            }
            Ok(data
                .images
                .get(&id)
                .map(Record::image)
                .unwrap_or_else(|| record.image()))
        })
    }

    /// The unpacked directory of one layer, unpacking it first if needed: into a temp dir, then
    /// renamed, so a directory under its final name is always complete.
    fn layer_dir(&self, digest: &str) -> Result<PathBuf, ImageError> {
        // The blob path validates the digest before it becomes a directory name.
        self.inner.blobs.path(digest)?;
        let dir = self.inner.layers.join(digest.trim_start_matches("sha256:"));
        if dir.is_dir() {
            return Ok(dir);
        }
        let file = self.inner.blobs.open_blob(digest)?;
        let temp = blobs::temp_path(&self.inner.layers, "unpack");
        let dir_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ImageError::LayerDir {
                digest: digest.to_owned(),
                path,
                source,
            }
        };
        fs::create_dir(&temp).map_err(dir_err(&temp))?;
        let result = unpack::decompressed(file)
            .and_then(|reader| {
                unpack::unpack(
                    reader,
                    &temp,
                    self.inner.privileges,
                    &self.inner.unpack_limits,
                )
            })
            .map_err(|source| ImageError::Unpack {
                digest: digest.to_owned(),
                source,
            })
            .and_then(|()| match fs::rename(&temp, &dir) {
                Ok(()) => blobs::sync_dir(&self.inner.layers).map_err(dir_err(&dir)),
                // Another unpacker finished first; its copy is as good as ours.
                Err(_) if dir.is_dir() => {
                    remove_tree(&temp);
                    Ok(())
                }
                Err(e) => Err(dir_err(&dir)(e)),
            });
        if result.is_err() {
            remove_tree(&temp);
        }
        result.map(|()| dir)
    }

    /// Removes `.tmp-*` entries left by processes that no longer run.
    fn remove_stale_temps(&self) {
        for dir in [
            self.inner.layers.clone(),
            self.inner.root.join("blobs/sha256"),
            self.inner.root.clone(),
        ] {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.filter_map(Result::ok) {
                let name = entry.file_name().to_string_lossy().into_owned();
                let Some(pid) = stale_temp_pid(&name) else {
                    continue;
                };
                let alive = rustix::process::Pid::from_raw(pid)
                    .is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
                if !alive {
                    remove_tree(&entry.path());
                }
            }
        }
    }
}

/// The pid in a temp name `.tmp-<what>-<pid>-<n>`.
fn stale_temp_pid(name: &str) -> Option<i32> {
    let rest = name.strip_prefix(".tmp-")?;
    let mut parts = rest.rsplitn(3, '-');
    let _n = parts.next()?;
    parts.next()?.parse().ok()
}

/// Best-effort removal of a file or tree we created (temp or trash).
fn remove_tree(path: &Path) {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(error = %e, path = %path.display(), "removing temporary files");
    }
}

/// Normalises a reference as Docker does: `busybox` -> `docker.io/library/busybox:latest`.
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    Ok(Reference::parse(reference)?.to_string())
}
