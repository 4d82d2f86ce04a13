//! The etcd backend of the object store, laid out as kube-apiserver lays out its objects
//! (`/registry/<resource>/<namespace>/<name>`, JSON values). An object's resourceVersion is its
//! etcd mod revision, written into `metadata.resourceVersion` when it is read (never stored);
//! a list is one read at one revision and reports it; writes are transactions that compare the
//! key's create or mod revision, so two API servers on one etcd never overwrite each other;
//! watches are etcd watches. A background task compacts the history periodically, and objects
//! that expire (Events) get a shared etcd lease on each write.

mod compaction;
mod keys;
mod leases;
mod members;
mod watch;

pub use compaction::DEFAULT_INTERVAL as DEFAULT_COMPACTION_INTERVAL;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, GetOptions, Identity, KeyValue,
    PutOptions, TlsOptions, Txn, TxnOp, WatchOptions,
};
use serde_json::Value;
use store::rules::{decide, set_resource_version, Change, WriteOp};
use store::{
    ListResult, ObjectKey, Page, PageRequest, Preconditions, Store, StoreError, WatchStream,
};

/// Client TLS files, as kube-apiserver's `--etcd-cafile`, `--etcd-certfile`, `--etcd-keyfile`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// CA bundle that signed the members' serving certificates (required for `https://`).
    pub ca_file: Option<PathBuf>,
    /// Client certificate, for members that require client authentication.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

/// How to reach and look after the etcd cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdOptions {
    pub tls: TlsFiles,
    /// How often the history is compacted (`None`: never, another client does it).
    pub compaction_interval: Option<Duration>,
}

impl Default for EtcdOptions {
    fn default() -> Self {
        EtcdOptions {
            tls: TlsFiles::default(),
            compaction_interval: Some(compaction::DEFAULT_INTERVAL),
        }
    }
}

/// Why the client could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading {path}")]
    ReadTls {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("an https:// etcd endpoint needs the CA of its certificate (--etcd-cafile)")]
    MissingCa,
    #[error("--etcd-certfile and --etcd-keyfile go together")]
    HalfIdentity,
    #[error("connecting to etcd")]
    Connect(#[source] etcd_client::Error),
}

/// Reads in one etcd range request; lists and pages are read in chunks of this many keys.
const CHUNK: usize = 500;
/// How many times a write re-reads the object after losing a race to another writer.
const WRITE_ATTEMPTS: u32 = 16;

pub struct EtcdStore {
    members: Arc<members::Members>,
    /// Resources whose objects expire, and after how long.
    ttls: Mutex<HashMap<(String, String), Duration>>,
    /// The lease shared by writes of one TTL (see [`leases`]).
    leases: tokio::sync::Mutex<HashMap<Duration, leases::Granted>>,
    compactor: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for EtcdStore {
    fn drop(&mut self) {
        if let Some(task) = &self.compactor {
            task.abort();
        }
    }
}

fn unavailable(
    op: &'static str,
    target: impl std::fmt::Display,
    e: impl std::error::Error + Send + Sync + 'static,
) -> StoreError {
    StoreError::Unavailable {
        op,
        target: target.to_string(),
        source: Box::new(e),
    }
}

/// The object in `kv`, with its mod revision as resourceVersion.
fn stamped(key: &ObjectKey, kv: &KeyValue) -> Result<Value, StoreError> {
    let mut obj: Value =
        serde_json::from_slice(kv.value()).map_err(|source| StoreError::Decode {
            target: key.to_string(),
            source,
        })?;
    set_resource_version(key, &mut obj, revision(kv.mod_revision()))?;
    Ok(obj)
}

/// The bytes stored for `obj`: its JSON without the resourceVersion, which etcd keeps.
fn encode(key: &ObjectKey, obj: &Value) -> Result<Vec<u8>, StoreError> {
    let mut obj = obj.clone();
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    serde_json::to_vec(&obj).map_err(|source| StoreError::Decode {
        target: key.to_string(),
        source,
    })
}

fn revision(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

fn header_revision(h: Option<&etcd_client::ResponseHeader>) -> u64 {
    h.map_or(0, |h| revision(h.revision()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn read_file(path: &PathBuf) -> Result<Vec<u8>, ConnectError> {
    tokio::fs::read(path)
        .await
        .map_err(|source| ConnectError::ReadTls {
            path: path.clone(),
            source,
        })
}

impl EtcdStore {
    /// Connects to the members at `endpoints` and starts the compactor. Fails when no member
    /// answers.
    pub async fn connect(endpoints: &[String], options: &EtcdOptions) -> Result<Self, StoreError> {
        let target = endpoints.join(",");
        let mut clients = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            clients.push(
                Self::client(e, &options.tls)
                    .await
                    .map_err(|err| unavailable("connect", e, err))?,
            );
        }
        let members = Arc::new(members::Members::new(clients, target));
        let store = EtcdStore {
            compactor: options
                .compaction_interval
                .filter(|i| !i.is_zero())
                .map(|i| tokio::spawn(compaction::run(members.clone(), i))),
            members,
            ttls: Mutex::new(HashMap::new()),
            leases: tokio::sync::Mutex::new(HashMap::new()),
        };
        store.current_resource_version().await?;
        Ok(store)
    }

    /// A client of one member (failover between members is [`members`]' job).
    async fn client(endpoint: &str, tls: &TlsFiles) -> Result<Client, ConnectError> {
        let mut opts = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            // Finds a member that went away (and the watches on it) within seconds.
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5))
            .with_keep_alive_while_idle(true);
        if endpoint.starts_with("https://") {
            let ca = tls.ca_file.as_ref().ok_or(ConnectError::MissingCa)?;
            let mut t =
                TlsOptions::new().ca_certificate(Certificate::from_pem(read_file(ca).await?));
            match (&tls.cert_file, &tls.key_file) {
                (Some(cert), Some(key)) => {
                    t = t.identity(Identity::from_pem(
                        read_file(cert).await?,
                        read_file(key).await?,
                    ));
                }
                (None, None) => {}
                _ => return Err(ConnectError::HalfIdentity),
            }
            opts = opts.with_tls(t);
        }
        Client::connect([endpoint], Some(opts))
            .await
            .map_err(ConnectError::Connect)
    }

    /// The TTL of objects of `key`'s resource, if they expire.
    fn ttl_of(&self, key: &ObjectKey) -> Option<Duration> {
        lock(&self.ttls)
            .get(&(key.group.clone(), key.resource.clone()))
            .copied()
    }

    /// Put options for a write of `key`: a shared lease when its resource expires.
    async fn put_options(&self, key: &ObjectKey) -> Result<Option<PutOptions>, StoreError> {
        let Some(ttl) = self.ttl_of(key) else {
            return Ok(None);
        };
        let mut cache = self.leases.lock().await;
        let now = Instant::now();
        let id = match leases::reusable(cache.get(&ttl).copied(), ttl, now) {
            Some(id) => id,
            None => {
                let secs = leases::grant_seconds(ttl);
                let granted = self
                    .members
                    .call("grant lease", &key.to_string(), |mut c| async move {
                        c.lease_grant(secs, None).await
                    })
                    .await?;
                cache.insert(
                    ttl,
                    leases::Granted {
                        id: granted.id(),
                        at: now,
                    },
                );
                granted.id()
            }
        };
        Ok(Some(PutOptions::new().with_lease(id)))
    }

    /// The object's current key-value, if any.
    async fn read(&self, key: &ObjectKey) -> Result<Option<KeyValue>, StoreError> {
        let k = keys::object_key(key);
        let mut resp = self
            .members
            .call("get", &key.to_string(), |mut c| {
                let k = k.clone();
                async move { c.get(k, None).await }
            })
            .await?;
        Ok(resp.take_kvs().into_iter().next())
    }

    /// Create without a read: the transaction only puts when the key has never been created.
    async fn create_new(&self, key: &ObjectKey, mut obj: Value) -> Result<Value, StoreError> {
        let k = keys::object_key(key);
        let txn = Txn::new()
            .when([Compare::create_revision(k.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                k,
                encode(key, &obj)?,
                self.put_options(key).await?,
            )]);
        let resp = self
            .members
            .call("create", &key.to_string(), |mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await?;
        if !resp.succeeded() {
            return Err(StoreError::AlreadyExists { key: key.clone() });
        }
        set_resource_version(key, &mut obj, header_revision(resp.header()))?;
        Ok(obj)
    }

    /// Read, decide, and write only if nobody wrote in between (the key's mod revision is
    /// still the one read); otherwise read and decide again.
    async fn write(&self, key: &ObjectKey, change: Change) -> Result<Value, StoreError> {
        let k = keys::object_key(key);
        for _ in 0..WRITE_ATTEMPTS {
            let kv = self.read(key).await?;
            let current = kv.as_ref().map(|kv| stamped(key, kv)).transpose()?;
            let unchanged_since = match &kv {
                Some(kv) => Compare::mod_revision(k.clone(), CompareOp::Equal, kv.mod_revision()),
                None => Compare::create_revision(k.clone(), CompareOp::Equal, 0),
            };
            let (op, result) = match decide(key, current.as_ref(), change.clone())? {
                WriteOp::Unchanged(v) => return Ok(v),
                WriteOp::Put(obj) => (
                    TxnOp::put(k.clone(), encode(key, &obj)?, self.put_options(key).await?),
                    obj,
                ),
                WriteOp::Delete => match current {
                    Some(last) => (TxnOp::delete(k.clone(), None), last),
                    None => return Err(StoreError::NotFound { key: key.clone() }),
                },
            };
            let txn = Txn::new().when([unchanged_since]).and_then([op]);
            let resp = self
                .members
                .call("write", &key.to_string(), |mut c| {
                    let txn = txn.clone();
                    async move { c.txn(txn).await }
                })
                .await?;
            if resp.succeeded() {
                let mut result = result;
                set_resource_version(key, &mut result, header_revision(resp.header()))?;
                return Ok(result);
            }
        }
        Err(StoreError::TooManyRetries {
            key: key.clone(),
            attempts: WRITE_ATTEMPTS,
        })
    }

    /// One page under `prefix` (see [`Store::list_page`]), read in chunks at the revision of
    /// the first chunk so that the page is one consistent snapshot.
    async fn page(&self, prefix: &str, page: &PageRequest) -> Result<Page, StoreError> {
        let end = keys::prefix_end(prefix);
        let mut from = format!("{prefix}{}", page.start.as_deref().unwrap_or("")).into_bytes();
        let mut at = 0i64;
        let mut items = Vec::new();
        loop {
            let want = if page.filter.is_some() {
                CHUNK
            } else {
                (page.limit - items.len()).saturating_add(1).min(CHUNK)
            };
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(i64::try_from(want).unwrap_or(i64::MAX));
            if at > 0 {
                opts = opts.with_revision(at);
            }
            let mut resp = self
                .members
                .call("list", prefix, |mut c| {
                    let (from, opts) = (from.clone(), opts.clone());
                    async move { c.get(from, Some(opts)).await }
                })
                .await?;
            if at == 0 {
                at = resp.header().map_or(0, |h| h.revision());
            }
            let count = revision(resp.count());
            let more = resp.more();
            let kvs = resp.take_kvs();
            for (i, kv) in kvs.iter().enumerate() {
                let key_str = String::from_utf8_lossy(kv.key());
                let rel = key_str.strip_prefix(prefix).unwrap_or(&key_str);
                if items.len() == page.limit {
                    // The next page starts at this key (inclusive); without a filter, etcd's
                    // count of the range tells how many remain.
                    return Ok(Page {
                        items,
                        resource_version: revision(at),
                        next_start: Some(rel.to_string()),
                        remaining: page.filter.is_none().then(|| count - i as u64),
                    });
                }
                let target = ObjectKey::new("", "", "", rel);
                let mut obj: Value =
                    serde_json::from_slice(kv.value()).map_err(|source| StoreError::Decode {
                        target: key_str.to_string(),
                        source,
                    })?;
                if page.filter.as_ref().is_some_and(|f| !f(&obj)) {
                    continue;
                }
                set_resource_version(&target, &mut obj, revision(kv.mod_revision()))?;
                items.push(obj);
            }
            match kvs.last() {
                Some(last) if more => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => {
                    return Ok(Page {
                        items,
                        resource_version: revision(at),
                        next_start: None,
                        remaining: None,
                    })
                }
            }
        }
    }
}

#[async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &ObjectKey) -> Result<Value, StoreError> {
        match self.read(key).await? {
            Some(kv) => stamped(key, &kv),
            None => Err(StoreError::NotFound { key: key.clone() }),
        }
    }

    async fn list(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
    ) -> Result<ListResult, StoreError> {
        let all = PageRequest {
            start: None,
            limit: usize::MAX,
            filter: None,
        };
        let page = self
            .page(&keys::list_prefix(group, resource, namespace), &all)
            .await?;
        Ok(ListResult {
            items: page.items,
            resource_version: page.resource_version,
        })
    }

    async fn list_page(
        &self,
        group: &str,
        resource: &str,
        namespace: Option<&str>,
        page: PageRequest,
    ) -> Result<Page, StoreError> {
        self.page(&keys::list_prefix(group, resource, namespace), &page)
            .await
    }

    async fn create(&self, key: &ObjectKey, obj: Value) -> Result<Value, StoreError> {
        self.create_new(key, obj).await
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
        let prefix = keys::list_prefix(group, resource, namespace);
        let start = i64::try_from(from_rv.saturating_add(1)).unwrap_or(i64::MAX);
        // A read at the start revision fails exactly when a watch from it would be compacted
        // (a future revision is fine: the watch waits for it).
        let probe = GetOptions::new()
            .with_range(keys::prefix_end(&prefix))
            .with_count_only()
            .with_revision(start);
        let compacted = match self
            .members
            .try_call(|mut c| {
                let (p, probe) = (prefix.clone(), probe.clone());
                async move { c.get(p, Some(probe)).await }
            })
            .await
        {
            Ok(_) => false,
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("compacted") => true,
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("future") => false,
            Err(e) => return Err(unavailable("watch", &prefix, e)),
        };
        let opts = WatchOptions::new()
            .with_range(keys::prefix_end(&prefix))
            .with_prev_key()
            .with_start_revision(start);
        let stream = self
            .members
            .call("watch", &prefix, |mut c| {
                let (p, opts) = (prefix.clone(), opts.clone());
                async move { c.watch(p, Some(opts)).await }
            })
            .await?;
        watch::start(
            watch::Scope {
                group: group.to_string(),
                resource: resource.to_string(),
                prefix,
                from_rv,
            },
            self.members.clone(),
            stream,
            compacted,
        )
        .await
    }

    async fn current_resource_version(&self) -> Result<u64, StoreError> {
        let resp = self
            .members
            .call("read revision", &self.members.target, |mut c| async move {
                c.get(
                    compaction::COMPACT_KEY,
                    Some(GetOptions::new().with_count_only()),
                )
                .await
            })
            .await?;
        Ok(header_revision(resp.header()))
    }

    fn expire_after_write(&self, group: &str, resource: &str, ttl: Duration) -> bool {
        lock(&self.ttls).insert((group.to_string(), resource.to_string()), ttl);
        true
    }
}
