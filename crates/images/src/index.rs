//! The image index: which images the store holds and which references point at them, kept in
//! one JSON file replaced atomically (write temp, fsync, rename, fsync dir) under an exclusive
//! `flock`, so `peapod image import` and a running `peapod up` can share one store.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::blobs::{sync_dir, temp_path};
use crate::{Image, ImageConfig};

/// Errors reading or updating the index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("reading image index {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("image index {path} is corrupt")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("writing image index {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("locking image store {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One image as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub manifest_digest: String,
    #[serde(default)]
    pub repo_tags: Vec<String>,
    #[serde(default)]
    pub repo_digests: Vec<String>,
    pub size_bytes: u64,
    pub config: ImageConfig,
    pub layers: Vec<String>,
    /// Blobs that belong to the image besides manifest, config and layers (an index).
    #[serde(default)]
    pub extra_blobs: Vec<String>,
}

impl Record {
    pub fn image(&self) -> Image {
        Image {
            id: self.id.clone(),
            repo_tags: self.repo_tags.clone(),
            repo_digests: self.repo_digests.clone(),
            size_bytes: self.size_bytes,
            config: self.config.clone(),
            layers: self.layers.clone(),
        }
    }

    /// Every blob the image needs.
    pub fn blobs(&self) -> impl Iterator<Item = &String> {
        [&self.manifest_digest, &self.id]
            .into_iter()
            .chain(self.layers.iter())
            .chain(self.extra_blobs.iter())
    }
}

/// The index file's content, images keyed by id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexData {
    #[serde(default)]
    pub images: BTreeMap<String, Record>,
}

impl IndexData {
    /// Adds an image or new names for it. Tags and digests move to it from any other image (a
    /// tag names one image at a time); an image left with no name at all is kept, listed by id,
    /// as Docker keeps dangling images. When the image (same id) is already stored, its
    /// manifest and layers stay: running containers may sit on those layer directories, and
    /// another packaging of the same config (say a docker-archive of a pulled image) describes
    /// the same filesystem.
    pub fn add(&mut self, mut record: Record) {
        for other in self.images.values_mut() {
            if other.id != record.id {
                other.repo_tags.retain(|t| !record.repo_tags.contains(t));
                other
                    .repo_digests
                    .retain(|d| !record.repo_digests.contains(d));
            }
        }
        if let Some(existing) = self.images.get(&record.id) {
            let mut merged = existing.clone();
            for t in record.repo_tags.drain(..) {
                if !merged.repo_tags.contains(&t) {
                    merged.repo_tags.push(t);
                }
            }
            for d in record.repo_digests.drain(..) {
                if !merged.repo_digests.contains(&d) {
                    merged.repo_digests.push(d);
                }
            }
            record = merged;
        }
        record.repo_tags.sort();
        record.repo_digests.sort();
        self.images.insert(record.id.clone(), record);
    }

    /// Whether any image needs `blob`.
    pub fn blob_referenced(&self, blob: &str) -> bool {
        self.images.values().any(|r| r.blobs().any(|b| b == blob))
    }
}

/// The index file and its lock.
#[derive(Debug, Clone)]
pub struct IndexFile {
    dir: PathBuf,
    path: PathBuf,
    lock_path: PathBuf,
}

/// Held while the store is locked; the `flock` goes with the file descriptor.
pub struct Lock {
    _file: File,
}

impl IndexFile {
    pub fn new(root: &Path) -> Self {
        Self {
            dir: root.to_owned(),
            path: root.join("index.json"),
            lock_path: root.join("lock"),
        }
    }

    /// Takes the store-wide exclusive lock (blocking). flock locks belong to the open file
    /// description, so this excludes other threads of this process as well as other processes.
    pub fn lock(&self) -> Result<Lock, IndexError> {
        exclusive(&self.lock_path)
    }

    /// Takes the exclusive lock that orders archive imports (blocking), apart from the index
    /// lock that each import also takes to record its images: an import stores blobs before
    /// it records them and drops those its images do not use, so two imports at once could
    /// drop a blob the other one stored first and still needs.
    pub fn import_lock(&self) -> Result<Lock, IndexError> {
        exclusive(&self.dir.join("import.lock"))
    }
}

/// An exclusive flock on `lock_path` (created if missing), held until the [`Lock`] drops.
fn exclusive(lock_path: &Path) -> Result<Lock, IndexError> {
    let lock_err = |source| IndexError::Lock {
        path: lock_path.to_path_buf(),
        source,
    };
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_path)
        .map_err(lock_err)?;
    loop {
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(lock_err(e.into())),
        }
    }
    Ok(Lock { _file: file })
}

impl IndexFile {
    /// Reads the index; readers need no lock because the file is only ever replaced whole.
    pub fn load(&self) -> Result<IndexData, IndexError> {
        match fs::read(&self.path) {
            Ok(data) => serde_json::from_slice(&data).map_err(|source| IndexError::Corrupt {
                path: self.path.clone(),
                source,
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(IndexData::default()),
            Err(source) => Err(IndexError::Read {
                path: self.path.clone(),
                source,
            }),
        }
    }

    /// Replaces the index crash-consistently. Call with the lock held.
    pub fn save(&self, _lock: &Lock, data: &IndexData) -> Result<(), IndexError> {
        let write_err = |source| IndexError::Write {
            path: self.path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(data).map_err(|e| write_err(io::Error::other(e)))?;
        let temp = temp_path(&self.dir, "index");
        let result = (|| {
            let mut f = File::create(&temp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&temp, &self.path)?;
            sync_dir(&self.dir)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result.map_err(write_err)
    }

    /// Locks, loads, lets `f` change the data, saves; returns what `f` returned.
    pub fn update<T, E: From<IndexError>>(
        &self,
        f: impl FnOnce(&mut IndexData) -> Result<T, E>,
    ) -> Result<T, E> {
        let lock = self.lock()?;
        let mut data = self.load()?;
        let out = f(&mut data)?;
        self.save(&lock, &data)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, tags: &[&str]) -> Record {
        Record {
            id: id.to_owned(),
            manifest_digest: format!("m-{id}"),
            repo_tags: tags.iter().map(|s| s.to_string()).collect(),
            repo_digests: vec![],
            size_bytes: 1,
            config: ImageConfig::default(),
            layers: vec!["l1".to_owned()],
            extra_blobs: vec![],
        }
    }

    #[test]
    fn tags_move_between_images() {
        let mut d = IndexData::default();
        d.add(rec("a", &["x:latest", "y:1"]));
        d.add(rec("b", &["x:latest"]));
        assert_eq!(d.images["a"].repo_tags, vec!["y:1"]);
        assert_eq!(d.images["b"].repo_tags, vec!["x:latest"]);
        let mut again = rec("b", &["z:2"]);
        again.manifest_digest = "m-other".to_owned();
        d.add(again);
        assert_eq!(d.images["b"].repo_tags, vec!["x:latest", "z:2"]);
        assert_eq!(d.images["b"].manifest_digest, "m-b", "first manifest stays");
        assert!(!d.blob_referenced("m-other"));
        assert!(d.blob_referenced("l1"));
    }

    #[test]
    fn update_persists_atomically() -> Result<(), IndexError> {
        let dir = tempfile::tempdir().map_err(|source| IndexError::Read {
            path: PathBuf::new(),
            source,
        })?;
        let idx = IndexFile::new(dir.path());
        assert_eq!(idx.load()?, IndexData::default());
        idx.update(|d| {
            d.add(rec("a", &["x:latest"]));
            Ok::<_, IndexError>(())
        })?;
        assert_eq!(idx.load()?.images["a"].repo_tags, vec!["x:latest"]);
        let leftovers = fs::read_dir(dir.path())
            .map(|it| {
                it.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".tmp"))
                    .count()
            })
            .unwrap_or(0);
        assert_eq!(leftovers, 0);
        Ok(())
    }
}
