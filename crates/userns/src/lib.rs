//! The node's user-namespace ranges for `hostUsers: false` pods, as kubelet v1.33's
//! `pkg/kubelet/userns` manager hands them out: each pod gets 65536 consecutive host IDs
//! (UIDs and GIDs alike, mapped from 0 inside), a whole multiple of 65536, taken from the
//! node's host range ([`HostRange`]: the `kubelet` user's `/etc/subuid` range, or every ID
//! above the first 65536). A pod's range is written to `<dir>/<pod uid>.json` before it is used, so
//! it survives an agent restart (the pod's running containers and files keep their IDs);
//! it is released when the pod is gone.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use cri::IdMapping;
use serde::{Deserialize, Serialize};

mod hostrange;
pub use hostrange::{HostRange, HostRangeError, USER};

/// IDs per pod: kubelet's `userNsLength`, the 16-bit range a container image expects.
pub const RANGE: u32 = 1 << 16;

/// Directory under the state dir that holds the allocations.
pub const DIR: &str = "userns";

/// A failed allocation, or a record that could not be written or removed.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("invalid pod uid {uid:?} for a user namespace record")]
    InvalidUid { uid: String },
    #[error("no free user namespace range left on this node ({blocks} in use)")]
    Exhausted { blocks: usize },
    #[error("reading user namespace records in {path}: {source}")]
    List {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing user namespace record {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("removing user namespace record {path}: {source}")]
    Remove {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The on-disk record of one pod's range.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Record {
    host_id: u32,
    length: u32,
}

/// Hands out and remembers the pods' ranges; one per agent.
pub struct Allocator {
    dir: PathBuf,
    /// Host ID of block 0.
    first: u32,
    /// Number of blocks of [`RANGE`] IDs available.
    blocks: u32,
    /// Pod uid → block index.
    used: Mutex<BTreeMap<String, u32>>,
}

impl Allocator {
    /// The allocator over the node's host `range`, with its records under
    /// `<state_dir>/userns`.
    pub fn for_state_dir(state_dir: &Path, range: HostRange) -> Result<Self, UsernsError> {
        Self::open(&state_dir.join(DIR), range.first, range.blocks())
    }

    /// Loads the records under `dir` (created if missing); the range is `blocks` blocks of
    /// [`RANGE`] IDs from `first`, which must be a multiple of [`RANGE`]. Records outside it,
    /// unreadable, or claiming a block already claimed are ignored (and their pods get a new
    /// range when next asked).
    pub fn open(dir: &Path, first: u32, blocks: u32) -> Result<Self, UsernsError> {
        let list = |source| UsernsError::List {
            path: dir.to_path_buf(),
            source,
        };
        fs::create_dir_all(dir).map_err(list)?;
        let alloc = Self {
            dir: dir.to_path_buf(),
            first,
            blocks,
            used: Mutex::new(BTreeMap::new()),
        };
        let mut used = BTreeMap::new();
        let mut names = Vec::new();
        for entry in fs::read_dir(dir).map_err(list)? {
            names.push(entry.map_err(list)?.file_name());
        }
        names.sort();
        for name in names {
            let Some(uid) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Some(block) = fs::read(dir.join(&name))
                .ok()
                .and_then(|b| serde_json::from_slice::<Record>(&b).ok())
                .and_then(|r| alloc.block_of(&r))
            else {
                continue;
            };
            if !used.values().any(|b| *b == block) {
                used.insert(uid.to_string(), block);
            }
        }
        *alloc.lock() = used;
        Ok(alloc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, u32>> {
        self.used.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The block a record names, if it is one of ours.
    fn block_of(&self, r: &Record) -> Option<u32> {
        let offset = r.host_id.checked_sub(self.first)?;
        (r.length == RANGE && offset % RANGE == 0 && offset / RANGE < self.blocks)
            .then_some(offset / RANGE)
    }

    fn mapping(&self, block: u32) -> IdMapping {
        IdMapping {
            container_id: 0,
            host_id: self.first + block * RANGE,
            length: RANGE,
        }
    }

    fn record_path(&self, uid: &str) -> Result<PathBuf, UsernsError> {
        let valid = !uid.is_empty()
            && uid.len() <= 128
            && uid
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(UsernsError::InvalidUid {
                uid: uid.to_string(),
            });
        }
        Ok(self.dir.join(format!("{uid}.json")))
    }

    /// The pod's range: the one it has, or the lowest free block, recorded on disk before
    /// it is returned.
    pub fn get_or_allocate(&self, pod_uid: &str) -> Result<IdMapping, UsernsError> {
        let path = self.record_path(pod_uid)?;
        let mut used = self.lock();
        if let Some(block) = used.get(pod_uid) {
            return Ok(self.mapping(*block));
        }
        let taken: HashSet<u32> = used.values().copied().collect();
        let block = (0..self.blocks)
            .find(|b| !taken.contains(b))
            .ok_or(UsernsError::Exhausted { blocks: used.len() })?;
        let mapping = self.mapping(block);
        let record = Record {
            host_id: mapping.host_id,
            length: mapping.length,
        };
        write_atomic(&path, &record).map_err(|source| UsernsError::Write { path, source })?;
        used.insert(pod_uid.to_string(), block);
        Ok(mapping)
    }

    /// The range the pod holds, without allocating one.
    pub fn get(&self, pod_uid: &str) -> Option<IdMapping> {
        self.lock().get(pod_uid).map(|b| self.mapping(*b))
    }

    /// Frees the pod's range (nothing to do when it has none).
    pub fn release(&self, pod_uid: &str) -> Result<(), UsernsError> {
        let path = self.record_path(pod_uid)?;
        let mut used = self.lock();
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(UsernsError::Remove { path, source }),
        }
        used.remove(pod_uid);
        Ok(())
    }

    /// Frees the range of every pod not in `known` (kubelet's
    /// `CleanupOrphanedPodUsernsAllocations`), keeping going past failures.
    pub fn retain(&self, known: &HashSet<String>) -> Vec<UsernsError> {
        let orphans: Vec<String> = self
            .lock()
            .keys()
            .filter(|uid| !known.contains(*uid))
            .cloned()
            .collect();
        orphans
            .iter()
            .filter_map(|uid| self.release(uid).err())
            .collect()
    }
}

/// Writes `record` to a temporary file beside `path`, syncs it and renames it into place.
fn write_atomic(path: &Path, record: &Record) -> io::Result<()> {
    let body = serde_json::to_vec(record).map_err(io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    let mut f = fs::File::create(&tmp)?;
    f.write_all(&body)?;
    f.sync_all()?;
    fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pods_get_distinct_aligned_ranges_that_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Allocator::open(dir.path(), RANGE, 4).expect("open");
        let one = a.get_or_allocate("pod-one").expect("one");
        let two = a.get_or_allocate("pod-two").expect("two");
        assert_eq!(one.host_id, 65536);
        assert_eq!(two.host_id, 131072);
        assert_eq!((one.container_id, one.length), (0, RANGE));
        assert_eq!(a.get_or_allocate("pod-one").expect("again"), one);

        let again = Allocator::open(dir.path(), RANGE, 4).expect("reopen");
        assert_eq!(again.get("pod-one"), Some(one));
        assert_eq!(again.get("pod-two"), Some(two));
        assert_eq!(
            again.get_or_allocate("pod-three").expect("three").host_id,
            196608
        );
    }

    #[test]
    fn released_ranges_are_reused_and_the_range_can_run_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Allocator::open(dir.path(), RANGE, 2).expect("open");
        let one = a.get_or_allocate("a").expect("a");
        a.get_or_allocate("b").expect("b");
        assert!(matches!(
            a.get_or_allocate("c"),
            Err(UsernsError::Exhausted { blocks: 2 })
        ));
        a.release("a").expect("release");
        assert!(!dir.path().join("a.json").exists());
        assert_eq!(a.get_or_allocate("c").expect("c"), one);
        let known: HashSet<String> = ["c".to_string()].into();
        assert!(a.retain(&known).is_empty());
        assert_eq!(a.get("b"), None);
        assert!(Allocator::open(dir.path(), RANGE, 2)
            .expect("reopen")
            .get("b")
            .is_none());
    }

    #[test]
    fn bad_records_and_uids_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(
            dir.path().join("x.json"),
            "{\"hostId\": 70000, \"length\": 65536}",
        )
        .expect("write");
        fs::write(dir.path().join("y.json"), "not json").expect("write");
        fs::write(
            dir.path().join("z.json"),
            "{\"hostId\": 65536, \"length\": 65536}",
        )
        .expect("write");
        fs::write(
            dir.path().join("w.json"),
            "{\"hostId\": 65536, \"length\": 65536}",
        )
        .expect("write");
        let a = Allocator::open(dir.path(), RANGE, 4).expect("open");
        assert_eq!(a.get("x"), None);
        assert_eq!(a.get("y"), None);
        // Two records claiming one block: only the first (in name order) keeps it.
        assert_eq!(a.get("w").map(|m| m.host_id), Some(65536));
        assert_eq!(a.get("z"), None);
        assert!(matches!(
            a.get_or_allocate("../etc"),
            Err(UsernsError::InvalidUid { .. })
        ));
    }

    #[test]
    fn default_range_is_kubelets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Allocator::for_state_dir(dir.path(), HostRange::default()).expect("open");
        assert_eq!(a.blocks, 65535);
        let m = a.get_or_allocate("p").expect("p");
        assert_eq!(m.host_id, 65536);
        assert!(m.host_id.checked_add(RANGE * 65534 + RANGE - 1).is_some());
    }
}
