//! Local image store: pulls images over the OCI distribution protocol, imports OCI-archive and
//! docker-archive tarballs, keeps blobs content-addressed on disk and unpacks each layer once so
//! the runtime can stack them as an overlayfs rootfs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

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
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
}

/// Handle on the on-disk image store; cheap to clone, safe to share between threads.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
}

impl ImageStore {
    /// Opens (creating if needed) the store at `root` (`<state-dir>/images`).
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        let _ = root;
        todo!()
    }

    /// Pulls `reference` from its registry and records it in the store.
    pub async fn pull(
        &self,
        reference: &str,
        progress: Option<&(dyn Fn(PullProgress) + Send + Sync)>,
    ) -> Result<Image, ImageError> {
        let _ = (reference, progress, &self.root);
        todo!()
    }

    /// Imports an OCI-archive or docker-archive tarball (blocking).
    pub fn import(&self, tarball: &Path) -> Result<Vec<Image>, ImageError> {
        let _ = tarball;
        todo!()
    }

    /// All images in the store.
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        todo!()
    }

    /// Looks an image up by reference (normalised), `sha256:` id, id prefix or `repo@digest`.
    pub fn get(&self, reference_or_id: &str) -> Result<Option<Image>, ImageError> {
        let _ = reference_or_id;
        todo!()
    }

    /// Unpacked layer directories, LOWEST first, unpacking any not yet unpacked (blocking).
    pub fn layer_dirs(&self, image: &Image) -> Result<Vec<PathBuf>, ImageError> {
        let _ = image;
        todo!()
    }

    /// Removes a reference (or, given an id, the image and all its references).
    pub fn remove(&self, reference_or_id: &str) -> Result<(), ImageError> {
        let _ = reference_or_id;
        todo!()
    }
}

/// Normalises a reference as Docker does: `busybox` -> `docker.io/library/busybox:latest`.
pub fn normalize_reference(reference: &str) -> Result<String, ImageError> {
    let _ = reference;
    todo!()
}
