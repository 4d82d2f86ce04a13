//! The seam between the runtime and the image store: a small trait with the real
//! implementation over `images::ImageStore`, so runtime tests can serve plain directories as
//! image layers.

use std::path::PathBuf;

use crate::{Credentials, FsStats, ImageConfig, ImageInfo, RuntimeError};

/// What the runtime needs of an image store.
#[async_trait::async_trait]
pub trait ImageBackend: Send + Sync + 'static {
    /// Pulls with exactly `auth` (anonymously when `None`).
    async fn pull(
        &self,
        reference: &str,
        auth: Option<&Credentials>,
    ) -> Result<ImageInfo, RuntimeError>;
    /// Looks an image up by reference or id (blocking).
    fn get(&self, reference_or_id: &str) -> Result<Option<ImageInfo>, RuntimeError>;
    /// Every image in the store (blocking).
    fn list(&self) -> Result<Vec<ImageInfo>, RuntimeError>;
    /// The unpacked layer directories of an image, lowest first (blocking; may unpack).
    fn layer_dirs(&self, reference_or_id: &str) -> Result<Vec<PathBuf>, RuntimeError>;
    /// Removes an image by id (blocking).
    fn remove(&self, id: &str) -> Result<(), RuntimeError>;
    /// The filesystem the store lives on (blocking).
    fn fs_stats(&self) -> Result<FsStats, RuntimeError>;
}

fn store_error(reference: &str, source: images::ImageError) -> RuntimeError {
    RuntimeError::ImageStore {
        reference: reference.to_string(),
        source: Box::new(source),
    }
}

/// Converts the store's record into the contract's shape.
pub fn image_info(image: images::Image) -> ImageInfo {
    let c = image.config;
    ImageInfo {
        id: image.id,
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size_bytes: image.size_bytes,
        config: ImageConfig {
            entrypoint: c.entrypoint,
            cmd: c.cmd,
            env: c.env,
            working_dir: c.working_dir,
            user: c.user,
            stop_signal: c.stop_signal,
        },
    }
}

#[async_trait::async_trait]
impl ImageBackend for images::ImageStore {
    async fn pull(
        &self,
        reference: &str,
        auth: Option<&Credentials>,
    ) -> Result<ImageInfo, RuntimeError> {
        // The store's pull future is not provably Send (a higher-ranked closure inside it),
        // so drive it on a blocking thread of the same tokio runtime instead of in this task.
        let store = self.clone();
        let owned = reference.to_string();
        let auth = auth.cloned();
        let handle = tokio::runtime::Handle::current();
        let joined = tokio::task::spawn_blocking(move || {
            handle.block_on(store.pull_with_auth(&owned, auth.as_ref(), None))
        })
        .await;
        match joined {
            Ok(Ok(image)) => Ok(image_info(image)),
            Ok(Err(source)) => Err(RuntimeError::PullImage {
                reference: reference.to_string(),
                source: Box::new(source),
            }),
            Err(source) => Err(RuntimeError::Task { source }),
        }
    }

    fn get(&self, reference_or_id: &str) -> Result<Option<ImageInfo>, RuntimeError> {
        images::ImageStore::get(self, reference_or_id)
            .map(|i| i.map(image_info))
            .map_err(|e| store_error(reference_or_id, e))
    }

    fn list(&self) -> Result<Vec<ImageInfo>, RuntimeError> {
        images::ImageStore::list(self)
            .map(|v| v.into_iter().map(image_info).collect())
            .map_err(|e| store_error("*", e))
    }

    fn layer_dirs(&self, reference_or_id: &str) -> Result<Vec<PathBuf>, RuntimeError> {
        let image = images::ImageStore::get(self, reference_or_id)
            .map_err(|e| store_error(reference_or_id, e))?
            .ok_or_else(|| RuntimeError::ImageNotFound {
                reference: reference_or_id.to_string(),
            })?;
        images::ImageStore::layer_dirs(self, &image).map_err(|e| store_error(reference_or_id, e))
    }

    fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        images::ImageStore::remove(self, id).map_err(|e| store_error(id, e))
    }

    fn fs_stats(&self) -> Result<FsStats, RuntimeError> {
        let st = nix::sys::statvfs::statvfs(self.root()).map_err(|e| RuntimeError::ImageFs {
            path: self.root().to_path_buf(),
            source: e.into(),
        })?;
        let frag = st.fragment_size();
        Ok(FsStats {
            capacity_bytes: st.blocks().saturating_mul(frag),
            available_bytes: st.blocks_available().saturating_mul(frag),
        })
    }
}
