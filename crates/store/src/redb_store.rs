//! The embedded backend: one `redb` file. Each write is one transaction that stores the object
//! and the new global resourceVersion together, committed before the call returns, so a crash
//! never leaves an object newer than the counter (or the reverse). Transactions and commits
//! (with their fsync) run on tokio's blocking pool, never on an async worker.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde_json::Value;

use crate::rules::{decide, set_resource_version as set_rv, Change, WriteOp};
use crate::watch::{self, lock, EventLog, HistoryLimit, SharedLog, WatchFilter};
use crate::{
    EventKind, ListResult, ObjectKey, Page, PageRequest, Preconditions, Store, StoreError,
    WatchEvent, WatchStream,
};

/// Objects: "group/resource/namespace/name" → JSON bytes.
const OBJECTS: TableDefinition<&str, &[u8]> = TableDefinition::new("objects");
/// Metadata: "rv" → the last resourceVersion handed out.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const RV_KEY: &str = "rv";

/// How much recent history a watch can resume from: the last 75 s of events and at least the
/// last 100 (kube-apiserver's watch cache: `eventFreshDuration`, its lower bound of
/// capacity), within 10 000 events or 64 MiB of objects.
pub const DEFAULT_HISTORY: HistoryLimit = HistoryLimit {
    events: 10_000,
    bytes: 64 << 20,
    fresh: Duration::from_secs(75),
    min_events: 100,
};

/// The store; cheap to share, every call moves its blocking part to the blocking pool.
pub struct RedbStore {
    inner: Arc<Inner>,
}

struct Inner {
    db: Database,
    /// Serialises writes from transaction to event-log push, so RV order = history order =
    /// live order. Only ever taken on the blocking pool.
    writing: Mutex<()>,
    /// Held only to push one event or to take a subscription, never across a commit.
    log: SharedLog,
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
    StoreError::Unavailable {
        op,
        target: target.to_string(),
        source: Box::new(e.into()),
    }
}

fn decode(target: &str, bytes: &[u8]) -> Result<Value, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        target: target.to_string(),
        source,
    })
}

/// Runs `f` on the blocking pool.
async fn blocking<T, F>(op: &'static str, target: String, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T, StoreError> + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Unavailable {
            op,
            target,
            source: Box::new(e),
        })?
}

impl RedbStore {
    /// Opens (or creates) the store file.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_history(path, DEFAULT_HISTORY).await
    }

    /// As [`RedbStore::open`] with a chosen watch-history limit (tests use a small one).
    pub async fn open_with_history(path: &Path, history: HistoryLimit) -> Result<Self, StoreError> {
        let path = path.to_path_buf();
        let target = path.display().to_string();
        let inner = blocking("open", target, move || Inner::open(path, history)).await?;
        Ok(RedbStore {
            inner: Arc::new(inner),
        })
    }

    async fn write(&self, key: &ObjectKey, change: Change) -> Result<Value, StoreError> {
        let inner = self.inner.clone();
        let key = key.clone();
        blocking("write", key.to_string(), move || inner.write(&key, change)).await
    }
}

impl Inner {
    fn open(path: PathBuf, history: HistoryLimit) -> Result<Self, StoreError> {
        let open_err = |e: redb::Error| backend("open", path.display(), e);
        // The store holds Secrets: only its owner may read it, including a file an older
        // version created with the umask's mode.
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .open(&path)
                .map_err(|e| open_err(redb::StorageError::from(e).into()))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| open_err(redb::StorageError::from(e).into()))?;
        }
        let db = Database::create(&path).map_err(|e| open_err(e.into()))?;
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
        Ok(Inner {
            db,
            writing: Mutex::new(()),
            log: Arc::new(Mutex::new(EventLog::new(
                rv,
                HistoryLimit {
                    events: history.events.max(1),
                    ..history
                },
            ))),
        })
    }

    /// One write transaction: reads the stored object, lets [`decide`] choose, stores the
    /// object and the next RV together, commits, then publishes the event.
    fn write(&self, key: &ObjectKey, change: Change) -> Result<Value, StoreError> {
        let k = encode_key(key);
        let _writing = lock(&self.writing);
        let txn = self
            .db
            .begin_write()
            .map_err(|e| backend("begin write", &k, e))?;
        let (result, size, event) = {
            let mut objects = txn
                .open_table(OBJECTS)
                .map_err(|e| backend("open", &k, e))?;
            let mut meta = txn.open_table(META).map_err(|e| backend("open", &k, e))?;
            let rv = meta
                .get(RV_KEY)
                .map_err(|e| backend("read rv", &k, e))?
                .map(|g| g.value())
                .unwrap_or(0);
            let (current, current_size) =
                match objects.get(k.as_str()).map_err(|e| backend("get", &k, e))? {
                    Some(g) => (Some(decode(&k, g.value())?), g.value().len()),
                    None => (None, 0),
                };
            let next_rv = rv + 1;
            match decide(key, current.as_ref(), change)? {
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
                    let size = bytes.len() + current_size;
                    let kind = if current.is_some() {
                        EventKind::Modified
                    } else {
                        EventKind::Added
                    };
                    (
                        obj.clone(),
                        size,
                        WatchEvent {
                            kind,
                            key: key.clone(),
                            resource_version: next_rv,
                            object: Arc::new(obj),
                            prev_object: current.map(Arc::new),
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
                        2 * current_size,
                        WatchEvent {
                            kind: EventKind::Deleted,
                            key: key.clone(),
                            resource_version: next_rv,
                            object: Arc::new(last),
                            prev_object: current.map(Arc::new),
                        },
                    )
                }
            }
        };
        txn.commit().map_err(|e| backend("commit", &k, e))?;
        lock(&self.log).push(event, size);
        Ok(result)
    }

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
            Some(g) => decode(&k, g.value()),
            None => Err(StoreError::NotFound { key: key.clone() }),
        }
    }

    /// Every object whose key starts with `prefix`, with the RV of the same snapshot.
    fn list(&self, prefix: &str) -> Result<ListResult, StoreError> {
        let all = PageRequest {
            start: None,
            limit: usize::MAX,
            filter: None,
        };
        let page = self.list_page(prefix, &all)?;
        Ok(ListResult {
            items: page.items,
            resource_version: page.resource_version,
        })
    }

    /// One page of the objects under `prefix`, from one read snapshot.
    fn list_page(&self, prefix: &str, page: &PageRequest) -> Result<Page, StoreError> {
        let txn = self
            .db
            .begin_read()
            .map_err(|e| backend("begin read", prefix, e))?;
        let objects = txn
            .open_table(OBJECTS)
            .map_err(|e| backend("open", prefix, e))?;
        let meta = txn
            .open_table(META)
            .map_err(|e| backend("open", prefix, e))?;
        let resource_version = meta
            .get(RV_KEY)
            .map_err(|e| backend("read rv", prefix, e))?
            .map(|g| g.value())
            .unwrap_or(0);
        let from = format!("{prefix}{}", page.start.as_deref().unwrap_or(""));
        let mut items = Vec::new();
        let mut next_start = None;
        let mut remaining = 0u64;
        for entry in objects
            .range::<&str>(from.as_str()..)
            .map_err(|e| backend("range", prefix, e))?
        {
            let (k, v) = entry.map_err(|e| backend("range", prefix, e))?;
            let k = k.value();
            if !k.starts_with(prefix) {
                break;
            }
            if next_start.is_some() {
                // Only counted when there is no filter; with one, the first match past the
                // page was enough to know there is more.
                remaining += 1;
                continue;
            }
            let obj = decode(k, v.value())?;
            if page.filter.as_ref().is_some_and(|f| !f(&obj)) {
                continue;
            }
            if items.len() == page.limit {
                // The next page starts at this key (inclusive).
                next_start = Some(k[prefix.len()..].to_string());
                if page.filter.is_some() {
                    break;
                }
                remaining = 1;
                continue;
            }
            items.push(obj);
        }
        Ok(Page {
            items,
            resource_version,
            remaining: next_start
                .as_ref()
                .filter(|_| page.filter.is_none())
                .map(|_| remaining),
            next_start,
        })
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

#[async_trait]
impl Store for RedbStore {
    async fn get(&self, key: &ObjectKey) -> Result<Value, StoreError> {
        let inner = self.inner.clone();
        let key = key.clone();
        blocking("get", key.to_string(), move || inner.get(&key)).await
    }

    async fn list(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<ListResult, StoreError> {
        let prefix = match namespace {
            Some(ns) => format!("{group}/{resource}/{ns}/"),
            None => format!("{group}/{resource}/"),
        };
        let inner = self.inner.clone();
        blocking("list", prefix.clone(), move || inner.list(&prefix)).await
    }

    async fn list_page(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        page: PageRequest,
    ) -> Result<Page, StoreError> {
        let prefix = match namespace {
            Some(ns) => format!("{group}/{resource}/{ns}/"),
            None => format!("{group}/{resource}/"),
        };
        let inner = self.inner.clone();
        blocking("list", prefix.clone(), move || {
            inner.list_page(&prefix, &page)
        })
        .await
    }

    async fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
        self.write(key, Change::Create(obj)).await
    }

    async fn update(
        &self,
        key: &ObjectKey,
        obj: Value,
        expected_rv: Option<u64>,
    ) -> Result<Value, StoreError> {
        self.write(key, Change::Update { obj, expected_rv }).await
    }

    async fn delete(&self, key: &ObjectKey, pre: &Preconditions) -> Result<Value, StoreError> {
        self.write(key, Change::Delete(pre.clone())).await
    }

    async fn watch(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        from_rv: u64,
    ) -> Result<WatchStream, StoreError> {
        // Only memory: a position in the history, taken under a short lock.
        watch::subscribe(
            &self.inner.log,
            WatchFilter {
                group: group.to_string(),
                resource: resource.to_string(),
                namespace: namespace.map(str::to_string),
            },
            from_rv,
        )
    }

    async fn current_resource_version(&self) -> Result<u64, StoreError> {
        let inner = self.inner.clone();
        blocking("read rv", RV_KEY.to_string(), move || {
            inner.current_resource_version()
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{resource_version_of, ListFilter};
    use futures::StreamExt;
    use serde_json::json;

    fn pod(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}})
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("", "pods", "default", name)
    }

    async fn open(dir: &tempfile::TempDir) -> RedbStore {
        RedbStore::open(&dir.path().join("store.redb"))
            .await
            .expect("open")
    }

    fn names(page: &Page) -> Vec<&str> {
        page.items
            .iter()
            .filter_map(|o| o["metadata"]["name"].as_str())
            .collect()
    }

    #[tokio::test]
    async fn pages_in_key_order_with_and_without_a_filter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(&dir).await;
        for n in ["a", "b", "c", "d", "e"] {
            s.create(&key(n), pod(n)).await.expect("create");
        }
        s.create(&ObjectKey::new("", "pods", "other", "z"), pod("z"))
            .await
            .expect("create z");
        s.create(&ObjectKey::new("", "podsx", "default", "x"), pod("x"))
            .await
            .expect("create x");
        let req = |start: Option<&str>, limit, filter| PageRequest {
            start: start.map(str::to_string),
            limit,
            filter,
        };
        let first = s
            .list_page("", "pods", None, req(None, 2, None))
            .await
            .expect("page");
        assert_eq!(names(&first), ["a", "b"]);
        assert_eq!(first.next_start.as_deref(), Some("default/c"));
        assert_eq!(first.remaining, Some(4));
        assert_eq!(first.resource_version, 7);
        let last = s
            .list_page("", "pods", None, req(Some("default/e"), 2, None))
            .await
            .expect("page");
        assert_eq!(names(&last), ["e", "z"]);
        assert_eq!((last.next_start, last.remaining), (None, None));
        // A filter fills the page with matches and reports no count.
        let odd: ListFilter =
            Arc::new(|o: &Value| matches!(o["metadata"]["name"].as_str(), Some("a" | "c" | "e")));
        let filtered = s
            .list_page("", "pods", Some("default"), req(None, 2, Some(odd.clone())))
            .await
            .expect("page");
        assert_eq!(names(&filtered), ["a", "c"]);
        assert_eq!(filtered.next_start.as_deref(), Some("e"));
        assert_eq!(filtered.remaining, None);
        let rest = s
            .list_page("", "pods", Some("default"), req(Some("e"), 2, Some(odd)))
            .await
            .expect("page");
        assert_eq!(names(&rest), ["e"]);
        assert_eq!(rest.next_start, None);
    }

    #[tokio::test]
    async fn crud_and_resource_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(&dir).await;
        let a = s.create(&key("a"), pod("a")).await.expect("create");
        assert_eq!(resource_version_of(&a), Some(1));
        assert!(matches!(
            s.create(&key("a"), pod("a")).await,
            Err(StoreError::AlreadyExists { .. })
        ));
        s.create(&key("b"), pod("b")).await.expect("create b");
        s.create(&ObjectKey::new("", "pods", "other", "c"), pod("c"))
            .await
            .expect("create c");
        s.create(&ObjectKey::new("", "podsx", "default", "d"), pod("d"))
            .await
            .expect("create d");
        let all = s.list("", "pods", None).await.expect("list");
        assert_eq!(all.items.len(), 3);
        assert_eq!(all.resource_version, 4);
        assert_eq!(
            s.list("", "pods", Some("default"))
                .await
                .expect("list")
                .items
                .len(),
            2
        );

        let mut changed = a.clone();
        changed["spec"] = json!({"x": 1});
        let updated = s
            .update(&key("a"), changed.clone(), Some(1))
            .await
            .expect("update");
        assert_eq!(resource_version_of(&updated), Some(5));
        assert!(matches!(
            s.update(&key("a"), changed.clone(), Some(1)).await,
            Err(StoreError::Conflict { .. })
        ));
        // No-op update: no new RV.
        let same = s
            .update(&key("a"), updated.clone(), None)
            .await
            .expect("noop");
        assert_eq!(resource_version_of(&same), Some(5));
        assert_eq!(s.current_resource_version().await.expect("rv"), 5);

        assert!(matches!(
            s.delete(
                &key("a"),
                &Preconditions {
                    uid: Some("wrong".into()),
                    resource_version: None
                }
            )
            .await,
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
            .await
            .expect("delete");
        assert_eq!(resource_version_of(&gone), Some(6));
        assert!(matches!(
            s.get(&key("a")).await,
            Err(StoreError::NotFound { .. })
        ));
        assert!(matches!(
            s.delete(&key("a"), &Preconditions::default()).await,
            Err(StoreError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn persists_across_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let s = open(&dir).await;
            s.create(&key("a"), pod("a")).await.expect("create");
            s.create(&key("b"), pod("b")).await.expect("create");
            s.delete(&key("b"), &Preconditions::default())
                .await
                .expect("delete");
        }
        let s = open(&dir).await;
        assert_eq!(s.current_resource_version().await.expect("rv"), 3);
        assert_eq!(
            s.get(&key("a")).await.expect("get")["metadata"]["name"],
            "a"
        );
        let created = s.create(&key("c"), pod("c")).await.expect("create");
        assert_eq!(resource_version_of(&created), Some(4));
        // History does not survive a restart: resuming from before it is Expired.
        assert!(matches!(
            s.watch("", "pods", None, 1).await,
            Err(StoreError::Expired { .. })
        ));
        assert!(s.watch("", "pods", None, 3).await.is_ok());
    }

    /// A store where another writer changes the object between the first read and the first
    /// write of a read-modify-write.
    struct Interfering {
        inner: RedbStore,
        interfered: std::sync::atomic::AtomicBool,
    }

    #[async_trait]
    impl Store for Interfering {
        async fn get(&self, key: &ObjectKey) -> Result<Value, StoreError> {
            self.inner.get(key).await
        }
        async fn list(
            &self,
            group: &str,
            resource: &str,
            namespace: Option<&str>,
        ) -> Result<ListResult, StoreError> {
            self.inner.list(group, resource, namespace).await
        }
        async fn list_page(
            &self,
            group: &str,
            resource: &str,
            namespace: Option<&str>,
            page: PageRequest,
        ) -> Result<Page, StoreError> {
            self.inner.list_page(group, resource, namespace, page).await
        }
        async fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
            self.inner.create(key, obj).await
        }
        async fn update(
            &self,
            key: &ObjectKey,
            obj: Value,
            expected_rv: Option<u64>,
        ) -> Result<Value, StoreError> {
            use std::sync::atomic::Ordering;
            if !self.interfered.swap(true, Ordering::SeqCst) {
                let mut other = self.inner.get(key).await?;
                other["metadata"]["labels"] = json!({"by": "other"});
                self.inner.update(key, other, None).await?;
            }
            self.inner.update(key, obj, expected_rv).await
        }
        async fn delete(&self, key: &ObjectKey, pre: &Preconditions) -> Result<Value, StoreError> {
            self.inner.delete(key, pre).await
        }
        async fn watch(
            &self,
            group: &str,
            resource: &str,
            namespace: Option<&str>,
            from_rv: u64,
        ) -> Result<WatchStream, StoreError> {
            self.inner.watch(group, resource, namespace, from_rv).await
        }
        async fn current_resource_version(&self) -> Result<u64, StoreError> {
            self.inner.current_resource_version().await
        }
    }

    #[tokio::test]
    async fn guaranteed_update_retries() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Interfering {
            inner: open(&dir).await,
            interfered: Default::default(),
        };
        s.create(&key("a"), pod("a")).await.expect("create");
        let mut calls = 0;
        let out = crate::guaranteed_update::<StoreError, _>(&s, &key("a"), |mut obj| {
            calls += 1;
            obj["spec"] = json!({"mine": true});
            Ok(obj)
        })
        .await
        .expect("guaranteed update");
        assert_eq!(calls, 2, "the conflicting first attempt is redone");
        assert_eq!(out["metadata"]["labels"]["by"], "other");
        assert_eq!(out["spec"]["mine"], true);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writes_get_distinct_ordered_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(open(&dir).await);
        let mut w = s.watch("", "pods", None, 0).await.expect("watch");
        let writers: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move {
                    let n = format!("p{i}");
                    s.create(&key(&n), pod(&n)).await
                })
            })
            .collect();
        let mut rvs = Vec::new();
        for h in writers {
            let obj = h.await.expect("join").expect("create");
            rvs.push(resource_version_of(&obj).expect("rv"));
        }
        rvs.sort_unstable();
        assert_eq!(rvs, (1..=20).collect::<Vec<_>>());
        for want in 1..=20 {
            let ev = w.next().await.expect("event").expect("ok");
            assert_eq!(ev.resource_version, want);
        }
    }

    #[tokio::test]
    async fn watch_replays_then_streams_and_filters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = open(&dir).await;
        s.create(&key("a"), pod("a")).await.expect("create"); // rv 1
        s.create(&ObjectKey::new("", "pods", "other", "x"), pod("x"))
            .await
            .expect("create"); // rv 2
        s.create(
            &ObjectKey::new("", "configmaps", "default", "cm"),
            json!({}),
        )
        .await
        .expect("create"); // rv 3
        let mut w = s
            .watch("", "pods", Some("default"), 0)
            .await
            .expect("watch");
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!((ev.kind, ev.resource_version), (EventKind::Added, 1));
        let mut changed = pod("a");
        changed["spec"] = json!({});
        s.update(&key("a"), changed, None).await.expect("update"); // rv 4
        s.delete(&key("a"), &Preconditions::default())
            .await
            .expect("delete"); // rv 5
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!((ev.kind, ev.resource_version), (EventKind::Modified, 4));
        assert!(ev.prev_object.is_some());
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!((ev.kind, ev.resource_version), (EventKind::Deleted, 5));
        assert_eq!(resource_version_of(&ev.object), Some(5));

        // Resume from the middle.
        let mut w = s.watch("", "pods", None, 2).await.expect("watch");
        let ev = w.next().await.expect("event").expect("ok");
        assert_eq!(ev.resource_version, 4);
    }

    #[tokio::test]
    async fn watch_expires_when_history_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let limit = HistoryLimit {
            events: 2,
            ..DEFAULT_HISTORY
        };
        let s = RedbStore::open_with_history(&dir.path().join("s.redb"), limit)
            .await
            .expect("open");
        for n in ["a", "b", "c", "d"] {
            s.create(&key(n), pod(n)).await.expect("create");
        }
        match s.watch("", "pods", None, 1).await {
            Err(StoreError::Expired { requested, oldest }) => {
                assert_eq!((requested, oldest), (1, 2))
            }
            other => panic!("expected Expired, got {:?}", other.map(|_| ())),
        }
        let mut w = s.watch("", "pods", None, 2).await.expect("watch");
        assert_eq!(w.next().await.expect("ev").expect("ok").resource_version, 3);
    }

    #[tokio::test]
    async fn history_is_bounded_by_bytes_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut stored = pod("a");
        stored["metadata"]["resourceVersion"] = json!("1");
        let one = serde_json::to_vec(&stored).expect("encode").len();
        let limit = HistoryLimit {
            events: 100,
            bytes: 3 * one + one / 2,
            ..DEFAULT_HISTORY
        };
        let s = RedbStore::open_with_history(&dir.path().join("s.redb"), limit)
            .await
            .expect("open");
        for n in ["a", "b", "c", "d", "e"] {
            s.create(&key(n), pod(n)).await.expect("create");
        }
        // Three creations fit; the two oldest were dropped.
        assert!(matches!(
            s.watch("", "pods", None, 1).await,
            Err(StoreError::Expired { oldest: 2, .. })
        ));
        let mut w = s.watch("", "pods", None, 2).await.expect("watch");
        assert_eq!(w.next().await.expect("ev").expect("ok").resource_version, 3);
        // An update holds the old and the new state: it alone takes two thirds of the budget.
        let mut e = s.get(&key("e")).await.expect("get");
        e["metadata"]["labels"] = json!({"x": "y"});
        s.update(&key("e"), e, None).await.expect("update");
        assert!(s.watch("", "pods", None, 3).await.is_err());
        assert!(s.watch("", "pods", None, 4).await.is_ok());
    }
}
