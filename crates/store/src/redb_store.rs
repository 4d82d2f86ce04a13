//! The embedded backend: one `redb` file. Each write is one transaction that stores the object
//! and the new global resourceVersion together, committed before the call returns, so a crash
//! never leaves an object newer than the counter (or the reverse).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::watch::{EventLog, WatchFilter};
use crate::{
    resource_version_of, EventKind, ListResult, ObjectKey, Preconditions, Store, StoreError, Watch,
    WatchEvent,
};

/// Objects: "group/resource/namespace/name" → JSON bytes.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// Metadata: "rv" → the last resourceVersion handed out.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RV_KEY: &str = "rv";

/// How many recent events a watch can resume from.
pub const DEFAULT_HISTORY: usize = 10_000;

pub struct RedbStore {
    db: Database,
    path: PathBuf,
    /// Serialises writes with the event log so RV order = history order = live order.
    log: Mutex<EventLog>,
}

fn encode_key(key: &ObjectKey) -> String {
    // Kubernetes names, namespaces, resources and groups never contain '/', so the key is
    // unambiguous and a prefix scan lists one resource (and namespace).
    format!(
        "{}/{}/{}/{}",
        key.group, key.resource, key.namespace, key.name
    )
}

fn backend(
    op: &'static str,
    target: impl std::fmt::Display,
    e: impl Into<redb::Error>,
) -> StoreError {
    StoreError::Backend {
        op,
        target: target.to_string(),
        source: Box::new(e.into()),
    }
}

fn set_rv(key: &ObjectKey, obj: &mut Value, rv: u64) -> Result<(), StoreError> {
    let meta = obj
        .as_object_mut()
        .and_then(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
        })
        .ok_or_else(|| StoreError::NotAnObject { key: key.clone() })?;
    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    Ok(())
}

impl RedbStore {
    /// Opens (or creates) the store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_history(path, DEFAULT_HISTORY)
    }

    /// As [`RedbStore::open`] with a chosen watch-history length (tests use a small one).
    pub fn open_with_history(path: &Path, history: usize) -> Result<Self, StoreError> {
        let open_err = |e: redb::Error| StoreError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        };
        let db = Database::create(path).map_err(|e| open_err(e.into()))?;
        // Make sure both tables exist so read transactions never see "table missing".
        let txn = db.begin_write().map_err(|e| open_err(e.into()))?;
        let rv = {
            txn.open_table(OBJECTS).map_err(|e| open_err(e.into()))?;
            let meta = txn.open_table(META).map_err(|e| open_err(e.into()))?;
            let rv = meta
                .get(RV_KEY)
                .map_err(|e| open_err(e.into()))?
                .map(|g| g.value())
                .unwrap_or(0);
            rv
        };
        txn.commit().map_err(|e| open_err(e.into()))?;
        Ok(RedbStore {
            db,
            path: path.to_path_buf(),
            log: Mutex::new(EventLog::new(rv, history.max(1))),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock_log(&self) -> std::sync::MutexGuard<'_, EventLog> {
        // A panic while holding the lock cannot leave the log half-updated (push is the last
        // step), so a poisoned lock is still usable.
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn decode(target: &str, bytes: &[u8]) -> Result<Value, StoreError> {
        serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
            target: target.to_string(),
            source,
        })
    }

    /// Runs one write transaction: `f` sees the current stored object and the next RV and
    /// returns what to store (Some) or delete (None) plus the event to publish.
    fn write<F>(&self, key: &ObjectKey, f: F) -> Result<Value, StoreError>
    where
        F: FnOnce(Option<Value>, u64) -> Result<WriteOp, StoreError>,
    {
        let k = encode_key(key);
        let mut log = self.lock_log();
        let txn = self
            .db
            .begin_write()
            .map_err(|e| backend("begin write", &k, e))?;
        let (result, event) = {
            let mut objects = txn
                .open_table(OBJECTS)
                .map_err(|e| backend("open", &k, e))?;
            let mut meta = txn.open_table(META).map_err(|e| backend("open", &k, e))?;
            let rv = meta
                .get(RV_KEY)
                .map_err(|e| backend("read rv", &k, e))?
                .map(|g| g.value())
                .unwrap_or(0);
            let current = match objects.get(k.as_str()).map_err(|e| backend("get", &k, e))? {
                Some(g) => Some(Self::decode(&k, g.value())?),
                None => None,
            };
            let next_rv = rv + 1;
            match f(current.clone(), next_rv)? {
                WriteOp::Unchanged(v) => return Ok(v),
                WriteOp::Put(mut obj) => {
                    set_rv(key, &mut obj, next_rv)?;
                    let bytes = serde_json::to_vec(&obj).map_err(|source| StoreError::Decode {
                        target: k.clone(),
                        source,
                    })?;
                    objects
                        .insert(k.as_str(), bytes.as_slice())
                        .map_err(|e| backend("insert", &k, e))?;
                    meta.insert(RV_KEY, next_rv)
                        .map_err(|e| backend("write rv", &k, e))?;
                    let kind = if current.is_some() {
                        EventKind::Modified
                    } else {
                        EventKind::Added
                    };
                    (
                        obj.clone(),
                        WatchEvent {
                            kind,
                            key: key.clone(),
                            resource_version: next_rv,
                            object: obj,
                            prev_object: current,
                        },
                    )
                }
                WriteOp::Delete => {
                    let Some(mut last) = current.clone() else {
                        return Err(StoreError::NotFound { key: key.clone() });
                    };
                    objects
                        .remove(k.as_str())
                        .map_err(|e| backend("remove", &k, e))?;
                    meta.insert(RV_KEY, next_rv)
                        .map_err(|e| backend("write rv", &k, e))?;
                    set_rv(key, &mut last, next_rv)?;
                    (
                        last.clone(),
                        WatchEvent {
                            kind: EventKind::Deleted,
                            key: key.clone(),
                            resource_version: next_rv,
                            object: last,
                            prev_object: current,
                        },
                    )
                }
            }
        };
        txn.commit().map_err(|e| backend("commit", &k, e))?;
        log.push(event);
        Ok(result)
    }
}

enum WriteOp {
    Put(Value),
    Delete,
    Unchanged(Value),
}

impl Store for RedbStore {
    fn get(&self, key: &ObjectKey) -> Result<Value, StoreError> {
        let k = encode_key(key);
        let txn = self
            .db
            .begin_read()
            .map_err(|e| backend("begin read", &k, e))?;
        let objects = txn
            .open_table(OBJECTS)
            .map_err(|e| backend("open", &k, e))?;
        match objects.get(k.as_str()).map_err(|e| backend("get", &k, e))? {
            Some(g) => Self::decode(&k, g.value()),
            None => Err(StoreError::NotFound { key: key.clone() }),
        }
    }

    fn list(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<ListResult, StoreError> {
        let prefix = match namespace {
            Some(ns) => format!("{group}/{resource}/{ns}/"),
            None => format!("{group}/{resource}/"),
        };
        let txn = self
            .db
            .begin_read()
            .map_err(|e| backend("begin read", &prefix, e))?;
        let objects = txn
            .open_table(OBJECTS)
            .map_err(|e| backend("open", &prefix, e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| backend("open", &prefix, e))?;
        let resource_version = meta
            .get(RV_KEY)
            .map_err(|e| backend("read rv", &prefix, e))?
            .map(|g| g.value())
            .unwrap_or(0);
        let mut items = Vec::new();
        for entry in objects
            .range::<&str>(prefix.as_str()..)
            .map_err(|e| backend("range", &prefix, e))?
        {
            let (k, v) = entry.map_err(|e| backend("range", &prefix, e))?;
            let k = k.value();
            if !k.starts_with(prefix.as_str()) {
                break;
            }
            items.push(Self::decode(k, v.value())?);
        }
        Ok(ListResult {
            items,
            resource_version,
        })
    }

    fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
        self.write(key, |current, _| match current {
            Some(_) => Err(StoreError::AlreadyExists { key: key.clone() }),
            None => Ok(WriteOp::Put(obj)),
        })
    }

    fn update(
        &self,
        key: &ObjectKey,
        obj: Value,
        expected_rv: Option<u64>,
    ) -> Result<Value, StoreError> {
        self.write(key, |current, _| {
            let Some(current) = current else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            let current_rv = resource_version_of(&current);
            if let Some(want) = expected_rv {
                if current_rv != Some(want) {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        reason: format!(
                            "resourceVersion is {}, expected {want}",
                            current_rv.map_or_else(|| "unset".to_string(), |r| r.to_string())
                        ),
                    });
                }
            }
            // Compare with the RV normalised: a write that changes nothing is not a write.
            let mut normalised = obj.clone();
            if let Some(rv) = current_rv {
                set_rv(key, &mut normalised, rv)?;
            }
            if normalised == current {
                return Ok(WriteOp::Unchanged(current));
            }
            Ok(WriteOp::Put(obj))
        })
    }

    fn delete(&self, key: &ObjectKey, pre: &Preconditions) -> Result<Value, StoreError> {
        self.write(key, |current, _| {
            let Some(current) = current else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            if let Some(uid) = &pre.uid {
                let have = current.pointer("/metadata/uid").and_then(Value::as_str);
                if have != Some(uid.as_str()) {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        reason: format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            have.unwrap_or("")
                        ),
                    });
                }
            }
            if let Some(rv) = pre.resource_version {
                let have = resource_version_of(&current);
                if have != Some(rv) {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        reason: format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            have.map_or_else(String::new, |r| r.to_string())
                        ),
                    });
                }
            }
            Ok(WriteOp::Delete)
        })
    }

    fn watch(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        from_rv: u64,
    ) -> Result<Watch, StoreError> {
        let log = self.lock_log();
        log.subscribe(
            WatchFilter {
                group: group.to_string(),
                resource: resource.to_string(),
                namespace: namespace.map(str::to_string),
            },
            from_rv,
        )
    }

    fn current_resource_version(&self) -> Result<u64, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| backend("begin read", RV_KEY, e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| backend("open", RV_KEY, e))?;
        Ok(meta
            .get(RV_KEY)
            .map_err(|e| backend("read rv", RV_KEY, e))?
            .map(|g| g.value())
            .unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}})
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("", "pods", "default", name)
    }

    fn open(dir: &tempfile::TempDir) -> RedbStore {
        RedbStore::open(&dir.path().join("store.redb")).expect("open")
    }

    #[test]
    fn crud_and_resource_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(&dir);
        let a = s.create(&key("a"), pod("a")).expect("create");
        assert_eq!(resource_version_of(&a), Some(1));
        assert!(matches!(
            s.create(&key("a"), pod("a")),
            Err(StoreError::AlreadyExists { .. })
        ));
        s.create(&key("b"), pod("b")).expect("create b");
        s.create(&ObjectKey::new("", "pods", "other", "c"), pod("c"))
            .expect("create c");
        s.create(&ObjectKey::new("", "podsx", "default", "d"), pod("d"))
            .expect("create d");
        let all = s.list("", "pods", None).expect("list");
        assert_eq!(all.items.len(), 3);
        assert_eq!(all.resource_version, 4);
        assert_eq!(
            s.list("", "pods", Some("default"))
                .expect("list")
                .items
                .len(),
            2
        );

        let mut changed = a.clone();
        changed["spec"] = json!({"x": 1});
        let updated = s
            .update(&key("a"), changed.clone(), Some(1))
            .expect("update");
        assert_eq!(resource_version_of(&updated), Some(5));
        assert!(matches!(
            s.update(&key("a"), changed.clone(), Some(1)),
            Err(StoreError::Conflict { .. })
        ));
        // No-op update: no new RV.
        let same = s.update(&key("a"), updated.clone(), None).expect("noop");
        assert_eq!(resource_version_of(&same), Some(5));
        assert_eq!(s.current_resource_version().expect("rv"), 5);

        assert!(matches!(
            s.delete(
                &key("a"),
                &Preconditions {
                    uid: Some("wrong".into()),
                    resource_version: None
                }
            ),
            Err(StoreError::Conflict { .. })
        ));
        let gone = s
            .delete(
                &key("a"),
                &Preconditions {
                    uid: Some("uid-a".into()),
                    resource_version: Some(5),
                },
            )
            .expect("delete");
        assert_eq!(resource_version_of(&gone), Some(6));
        assert!(matches!(s.get(&key("a")), Err(StoreError::NotFound { .. })));
        assert!(matches!(
            s.delete(&key("a"), &Preconditions::default()),
            Err(StoreError::NotFound { .. })
        ));
    }

    #[test]
    fn persists_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open(&dir);
            s.create(&key("a"), pod("a")).expect("create");
            s.create(&key("b"), pod("b")).expect("create");
            s.delete(&key("b"), &Preconditions::default())
                .expect("delete");
        }
        let s = open(&dir);
        assert_eq!(s.current_resource_version().expect("rv"), 3);
        assert_eq!(s.get(&key("a")).expect("get")["metadata"]["name"], "a");
        let created = s.create(&key("c"), pod("c")).expect("create");
        assert_eq!(resource_version_of(&created), Some(4));
        // History does not survive a restart: resuming from before it is Expired.
        assert!(matches!(
            s.watch("", "pods", None, 1),
            Err(StoreError::Expired { .. })
        ));
        assert!(s.watch("", "pods", None, 3).is_ok());
    }

    #[test]
    fn guaranteed_update_retries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(&dir);
        s.create(&key("a"), pod("a")).expect("create");
        let mut first = true;
        let out = crate::guaranteed_update::<StoreError, _>(&s, &key("a"), |mut obj| {
            if first {
                // Someone else writes between our read and our write.
                first = false;
                let mut other = obj.clone();
                other["metadata"]["labels"] = json!({"by": "other"});
                s.update(&key("a"), other, None)?;
            }
            obj["spec"] = json!({"mine": true});
            Ok(obj)
        })
        .expect("guaranteed update");
        assert_eq!(out["metadata"]["labels"]["by"], "other");
        assert_eq!(out["spec"]["mine"], true);
    }

    #[tokio::test]
    async fn watch_replays_then_streams_and_filters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(&dir);
        s.create(&key("a"), pod("a")).expect("create"); // rv 1
        s.create(&ObjectKey::new("", "pods", "other", "x"), pod("x"))
            .expect("create"); // rv 2
        s.create(
            &ObjectKey::new("", "configmaps", "default", "cm"),
            json!({}),
        )
        .expect("create"); // rv 3
        let mut w = s.watch("", "pods", Some("default"), 0).expect("watch");
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!((ev.kind, ev.resource_version), (EventKind::Added, 1));
        let mut changed = pod("a");
        changed["spec"] = json!({});
        s.update(&key("a"), changed, None).expect("update"); // rv 4
        s.delete(&key("a"), &Preconditions::default())
            .expect("delete"); // rv 5
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!((ev.kind, ev.resource_version), (EventKind::Modified, 4));
        assert!(ev.prev_object.is_some());
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!((ev.kind, ev.resource_version), (EventKind::Deleted, 5));
        assert_eq!(resource_version_of(&ev.object), Some(5));

        // Resume from the middle.
        let mut w = s.watch("", "pods", None, 2).expect("watch");
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!(ev.resource_version, 4);
    }

    #[tokio::test]
    async fn watch_expires_when_history_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = RedbStore::open_with_history(&dir.path().join("s.redb"), 2).expect("open");
        for n in ["a", "b", "c", "d"] {
            s.create(&key(n), pod(n)).expect("create");
        }
        match s.watch("", "pods", None, 1) {
            Err(StoreError::Expired { requested, oldest }) => {
                assert_eq!((requested, oldest), (1, 2))
            }
            other => panic!("expected Expired, got {:?}", other.map(|_| ())),
        }
        let mut w = s.watch("", "pods", None, 2).expect("watch");
        assert_eq!(w.next().await.expect("ev").expect("ok").resource_version, 3);
    }
}
