//! Content-addressed blob store (`blobs/sha256/<hex>`): every blob is hashed while it is
//! written to a temporary file and only renamed into place when its digest matches, so a blob
//! present under its name is always intact, even after a crash mid-download.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest as _, Sha256};

use crate::reference::is_valid_digest;

/// Errors of blob store operations.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid digest {digest:?}: only sha256:<64 lowercase hex> is supported")]
    InvalidDigest { digest: String },
    #[error("creating blob directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing blob temp file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("committing blob {digest} to {path}")]
    Commit {
        digest: String,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} is {size} bytes, too large for a manifest or config")]
    TooLarge { digest: String, size: u64 },
    #[error("blob {digest} is not in the store")]
    Missing { digest: String },
    #[error("reading blob {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing blob {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Largest manifest, index or config we read into memory (registries cap manifests at 4 MiB).
const MAX_DOCUMENT: u64 = 16 << 20;

/// Where blobs live; cheap to clone.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
}

/// Used to make temp file names unique within the process; the pid makes them unique across
/// processes sharing the store.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique temp name `<prefix>.tmp-<pid>-<n>` in `dir`.
pub(crate) fn temp_path(dir: &Path, prefix: &str) -> PathBuf {
    let n = TEMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".tmp-{prefix}-{}-{n}", std::process::id()))
}

/// fsyncs a directory so a rename inside it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl BlobStore {
    /// Opens `<root>/blobs/sha256`, creating it if needed.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let dir = root.join("blobs").join("sha256");
        fs::create_dir_all(&dir).map_err(|source| BlobError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(Self { dir })
    }

    /// Path of a blob (whether or not it exists). The digest is validated first because it
    /// becomes a file name.
    pub fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        let hex = digest_hex(digest)?;
        Ok(self.dir.join(hex))
    }

    pub fn contains(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    /// Size of a stored blob.
    pub fn size(&self, digest: &str) -> Result<u64, BlobError> {
        let path = self.path(digest)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::Missing {
                digest: digest.to_owned(),
            }),
            Err(source) => Err(BlobError::Read { path, source }),
        }
    }

    /// Opens a stored blob for reading.
    pub fn open_blob(&self, digest: &str) -> Result<File, BlobError> {
        let path = self.path(digest)?;
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::Missing {
                digest: digest.to_owned(),
            }),
            Err(source) => Err(BlobError::Read { path, source }),
        }
    }

    /// Reads a small blob (manifest, config) whole, re-verifying its digest: it is about to be
    /// trusted as JSON describing other blobs.
    pub fn read(&self, digest: &str) -> Result<Vec<u8>, BlobError> {
        let size = self.size(digest)?;
        if size > MAX_DOCUMENT {
            // A descriptor pointing a "manifest" at a huge layer must not fill memory.
            return Err(BlobError::TooLarge {
                digest: digest.to_owned(),
                size,
            });
        }
        let mut file = self.open_blob(digest)?;
        let mut data = Vec::new();
        file.read_to_end(&mut data)
            .map_err(|source| BlobError::Read {
                path: self.dir.join(digest.trim_start_matches("sha256:")),
                source,
            })?;
        let actual = sha256_digest(&data);
        if actual != digest {
            return Err(BlobError::DigestMismatch {
                expected: digest.to_owned(),
                actual,
            });
        }
        Ok(data)
    }

    /// Starts writing a blob; `expected` is the digest it must have, when known.
    pub fn writer(&self, expected: Option<&str>) -> Result<BlobWriter, BlobError> {
        if let Some(d) = expected {
            digest_hex(d)?;
        }
        let path = temp_path(&self.dir, "blob");
        let file = File::create(&path).map_err(|source| BlobError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(BlobWriter {
            dir: self.dir.clone(),
            temp: Some(path),
            file: Some(file),
            hasher: Sha256::new(),
            size: 0,
            expected: expected.map(str::to_owned),
        })
    }

    /// Stores bytes as a blob and returns its digest.
    pub fn put(&self, expected: Option<&str>, data: &[u8]) -> Result<String, BlobError> {
        let mut w = self.writer(expected)?;
        w.write_chunk(data)?;
        Ok(w.commit(None)?.0)
    }

    /// Removes a blob; a blob already gone is fine.
    pub fn remove(&self, digest: &str) -> Result<(), BlobError> {
        let path = self.path(digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(BlobError::Remove { path, source }),
        }
    }
}

/// A blob being written; dropped without `commit`, its temp file is removed.
#[derive(Debug)]
pub struct BlobWriter {
    dir: PathBuf,
    temp: Option<PathBuf>,
    file: Option<File>,
    hasher: Sha256,
    size: u64,
    expected: Option<String>,
}

impl BlobWriter {
    pub fn write_chunk(&mut self, data: &[u8]) -> Result<(), BlobError> {
        self.hasher.update(data);
        self.size += data.len() as u64;
        let temp = self.temp.clone().unwrap_or_default();
        match self.file.as_mut() {
            Some(f) => f
                .write_all(data)
                .map_err(|source| BlobError::Write { path: temp, source }),
            None => Err(BlobError::Write {
                path: temp,
                source: io::Error::other("blob writer already committed"),
            }),
        }
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.size
    }

    /// Verifies digest (and size, if given), fsyncs and renames the blob into place; returns
    /// `(digest, size, whether the store already had it)`.
    pub fn commit(mut self, expected_size: Option<u64>) -> Result<(String, u64, bool), BlobError> {
        let actual = format!("sha256:{}", hex::encode(self.hasher.clone().finalize()));
        if let Some(expected) = &self.expected {
            if *expected != actual {
                return Err(BlobError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        if let Some(expected) = expected_size {
            if expected != self.size {
                return Err(BlobError::SizeMismatch {
                    digest: actual,
                    expected,
                    actual: self.size,
                });
            }
        }
        let temp = self.temp.clone().unwrap_or_default();
        let final_path = self.dir.join(actual.trim_start_matches("sha256:"));
        let commit_err = |source| BlobError::Commit {
            digest: actual.clone(),
            path: final_path.clone(),
            source,
        };
        if let Some(file) = self.file.take() {
            file.sync_all().map_err(commit_err)?;
        }
        let existed = final_path.is_file();
        fs::rename(&temp, &final_path).map_err(commit_err)?;
        self.temp = None;
        sync_dir(&self.dir).map_err(commit_err)?;
        Ok((actual, self.size, existed))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Best effort: an abandoned temp file is garbage, never a blob.
            let _ = fs::remove_file(temp);
        }
    }
}

/// `sha256:<hex>` of some bytes.
pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

fn digest_hex(digest: &str) -> Result<&str, BlobError> {
    if is_valid_digest(digest) {
        Ok(&digest["sha256:".len()..])
    } else {
        Err(BlobError::InvalidDigest {
            digest: digest.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_verifies_and_is_idempotent() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path())?;
        let d = store.put(None, b"hello")?;
        assert_eq!(d, sha256_digest(b"hello"));
        assert!(store.contains(&d));
        assert_eq!(store.read(&d)?, b"hello");
        assert_eq!(store.put(Some(&d), b"hello")?, d);
        let other = sha256_digest(b"other");
        assert!(matches!(
            store.put(Some(&other), b"hello"),
            Err(BlobError::DigestMismatch { .. })
        ));
        assert!(!store.contains(&other));
        // No temp files left behind by the failed write.
        let names: Vec<_> = fs::read_dir(dir.path().join("blobs/sha256"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
        Ok(())
    }

    #[test]
    fn rejects_path_like_digests() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path())?;
        assert!(store.path("sha256:../../etc/passwd").is_err());
        assert!(store.writer(Some("sha256:abc")).is_err());
        Ok(())
    }

    #[test]
    fn detects_corruption_on_read() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = BlobStore::open(dir.path())?;
        let d = store.put(None, b"{}")?;
        fs::write(store.path(&d)?, b"{\"x\":1}")?;
        assert!(matches!(
            store.read(&d),
            Err(BlobError::DigestMismatch { .. })
        ));
        Ok(())
    }
}
