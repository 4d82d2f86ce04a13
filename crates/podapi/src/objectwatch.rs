//! The ConfigMaps and Secrets pods' volumes read, kept by a watch on each object (kubelet's
//! watch-based configMap and secret managers), so the periodic volume refresh of every pod
//! reads memory instead of asking the API server: a node of idle pods otherwise GETs each
//! pod's `kube-root-ca.crt` every refresh. Until an object's watch has listed it, and
//! whenever the watch fails, reads go to the API as before; a watch nobody read for
//! [`IDLE_DROP`] is stopped. A change of a watched object is announced on
//! [`WatchingPodApi::changes`], so the pods that show it refresh their volumes at once
//! instead of at their next periodic sync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use futures::StreamExt;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, PersistentVolume, PersistentVolumeClaim, PodStatus, Secret,
};
use k8s_openapi::api::node::v1::RuntimeClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::{watcher, WatchStreamExt};
use tokio::sync::broadcast;
use tokio::time::Instant;

use crate::apiclient::{ApiError, PodApi};

/// How long a watch is kept after its object was last read.
pub const IDLE_DROP: Duration = Duration::from_secs(5 * 60);

/// A watched object changed (updated, deleted or recreated) after its watch had listed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectChange {
    pub kind: ObjectKind,
    pub namespace: String,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    ConfigMap,
    Secret,
}

/// How many changes a slow listener may fall behind before it is told it lagged.
const CHANGES_BUFFER: usize = 256;

/// One object's watch events.
pub type Feed<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;
/// Starts the watch of `(namespace, name)`.
pub type Watch<K> = Arc<dyn Fn(&str, &str) -> Feed<K> + Send + Sync>;

/// What a watch knows of its object.
#[derive(Debug, Clone)]
enum Known<K> {
    /// Not listed yet, or the watch failed since: ask the API.
    Unsynced,
    /// The object as last seen (`None`: it does not exist).
    Synced(Option<K>),
}

struct Entry<K> {
    known: Arc<Mutex<Known<K>>>,
    last_read: Instant,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Drop for Entry<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The watched objects of one kind.
struct Watched<K> {
    kind: ObjectKind,
    watch: Watch<K>,
    entries: Mutex<HashMap<(String, String), Entry<K>>>,
    changes: broadcast::Sender<ObjectChange>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl<K: kube::Resource + Clone + Send + 'static> Watched<K> {
    fn new(kind: ObjectKind, watch: Watch<K>, changes: broadcast::Sender<ObjectChange>) -> Self {
        Watched {
            kind,
            watch,
            entries: Mutex::new(HashMap::new()),
            changes,
        }
    }

    /// The object as its watch knows it, `None` when the API must be asked. Starts the
    /// object's watch on its first read, and stops the watches nobody read for a while.
    fn cached(&self, namespace: &str, name: &str) -> Option<Option<K>> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        entries.retain(|_, e| now.duration_since(e.last_read) < IDLE_DROP);
        let key = (namespace.to_string(), name.to_string());
        let entry = entries.entry(key).or_insert_with(|| {
            let known = Arc::new(Mutex::new(Known::Unsynced));
            let feed = (self.watch)(namespace, name);
            let change = ObjectChange {
                kind: self.kind,
                namespace: namespace.to_string(),
                name: name.to_string(),
            };
            let changes = self.changes.clone();
            let announce = move || {
                // Nobody listening is fine: the periodic refresh still comes.
                let _ = changes.send(change.clone());
            };
            let task = tokio::spawn(follow(feed, known.clone(), announce));
            Entry {
                known,
                last_read: now,
                task,
            }
        });
        entry.last_read = now;
        let known = match &*lock(&entry.known) {
            Known::Unsynced => None,
            Known::Synced(obj) => Some(obj.clone()),
        };
        known
    }

    /// How many objects are watched.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.entries).len()
    }
}

/// The version of what a watch knows: `None` for an absent object.
fn version<K: kube::Resource>(obj: Option<&K>) -> Option<String> {
    obj.map(|o| o.meta().resource_version.clone().unwrap_or_default())
}

/// Keeps `known` up to date from the watch's events, and calls `announce` when the object
/// differs from what the watch knew before (not for its first listing).
async fn follow<K: kube::Resource + Clone + Send + 'static>(
    mut feed: Feed<K>,
    known: Arc<Mutex<Known<K>>>,
    announce: impl Fn() + Send + 'static,
) {
    // The listing in progress: the object once the list is complete.
    let mut listed: Option<Option<K>> = None;
    // The version last known, once listed (kept across a failed watch, so a relist that
    // finds the object changed announces it).
    let mut last: Option<Option<String>> = None;
    let mut settle = |obj: Option<K>| {
        let now = version(obj.as_ref());
        if last.as_ref().is_some_and(|was| *was != now) {
            announce();
        }
        last = Some(now);
        *lock(&known) = Known::Synced(obj);
    };
    while let Some(event) = feed.next().await {
        match event {
            Ok(watcher::Event::Init) => listed = Some(None),
            Ok(watcher::Event::InitApply(obj)) => listed = Some(Some(obj)),
            Ok(watcher::Event::InitDone) => settle(listed.take().flatten()),
            Ok(watcher::Event::Apply(obj)) => settle(Some(obj)),
            Ok(watcher::Event::Delete(_)) => settle(None),
            Err(err) => {
                tracing::debug!(error = %err, "watch of a volume's object failed; reading it from the API");
                *lock(&known) = Known::Unsynced;
            }
        }
    }
    *lock(&known) = Known::Unsynced;
}

/// A kube watch of one object by name, retried with back-off.
fn watch_by_name<K>(client: kube::Client) -> Watch<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
    K::DynamicType: Default,
{
    Arc::new(move |namespace: &str, name: &str| {
        let api: kube::Api<K> = kube::Api::namespaced(client.clone(), namespace);
        let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
        watcher::watcher(api, config).default_backoff().boxed()
    })
}

/// A [`PodApi`] whose ConfigMap and Secret reads come from per-object watches when they can.
pub struct WatchingPodApi {
    inner: Arc<dyn PodApi>,
    config_maps: Watched<ConfigMap>,
    secrets: Watched<Secret>,
    changes: broadcast::Sender<ObjectChange>,
}

impl WatchingPodApi {
    pub fn new(inner: Arc<dyn PodApi>, client: kube::Client) -> Self {
        Self::with_watches(inner, watch_by_name(client.clone()), watch_by_name(client))
    }

    pub fn with_watches(
        inner: Arc<dyn PodApi>,
        config_maps: Watch<ConfigMap>,
        secrets: Watch<Secret>,
    ) -> Self {
        let (changes, _) = broadcast::channel(CHANGES_BUFFER);
        WatchingPodApi {
            inner,
            config_maps: Watched::new(ObjectKind::ConfigMap, config_maps, changes.clone()),
            secrets: Watched::new(ObjectKind::Secret, secrets, changes.clone()),
            changes,
        }
    }

    /// The changes of the watched objects from now on.
    pub fn changes(&self) -> broadcast::Receiver<ObjectChange> {
        self.changes.subscribe()
    }
}

#[async_trait]
impl PodApi for WatchingPodApi {
    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodStatus,
    ) -> Result<(), ApiError> {
        self.inner.patch_pod_status(namespace, name, status).await
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        self.inner.delete_pod(namespace, name, uid).await
    }

    async fn create_event(&self, event: &Event) -> Result<(), ApiError> {
        self.inner.create_event(event).await
    }

    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        count: i32,
        last: &Time,
    ) -> Result<(), ApiError> {
        self.inner.patch_event(namespace, name, count, last).await
    }

    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError> {
        match self.config_maps.cached(namespace, name) {
            Some(known) => Ok(known),
            None => self.inner.get_config_map(namespace, name).await,
        }
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        match self.secrets.cached(namespace, name) {
            Some(known) => Ok(known),
            None => self.inner.get_secret(namespace, name).await,
        }
    }

    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ApiError> {
        self.inner
            .create_token(namespace, service_account, request)
            .await
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        self.inner.list_services(namespace).await
    }

    async fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ApiError> {
        self.inner
            .get_persistent_volume_claim(namespace, name)
            .await
    }

    async fn get_persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, ApiError> {
        self.inner.get_persistent_volume(name).await
    }

    async fn get_runtime_class(&self, name: &str) -> Result<Option<RuntimeClass>, ApiError> {
        self.inner.get_runtime_class(name).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use tokio::sync::mpsc;

    type Sender = mpsc::UnboundedSender<Result<watcher::Event<ConfigMap>, watcher::Error>>;

    /// A watch fed by the test: each started watch's sender goes to `started`.
    fn fake() -> (Watch<ConfigMap>, mpsc::UnboundedReceiver<(String, Sender)>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let watch: Watch<ConfigMap> = Arc::new(move |ns: &str, name: &str| {
            let (feed_tx, feed_rx) = mpsc::unbounded_channel();
            let _ = tx.send((format!("{ns}/{name}"), feed_tx));
            tokio_stream::wrappers::UnboundedReceiverStream::new(feed_rx).boxed()
        });
        (watch, rx)
    }

    /// A ConfigMap whose version is its value.
    fn cm(value: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                resource_version: Some(value.to_string()),
                ..Default::default()
            },
            data: Some([("k".to_string(), value.to_string())].into()),
            ..Default::default()
        }
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    fn value(v: Option<Option<ConfigMap>>) -> Option<Option<String>> {
        v.map(|o| o.and_then(|c| c.data).and_then(|d| d.get("k").cloned()))
    }

    #[tokio::test]
    async fn reads_come_from_the_watch_once_it_listed_the_object() {
        let (watch, mut started) = fake();
        let w = Watched::new(ObjectKind::ConfigMap, watch, broadcast::channel(16).0);
        assert_eq!(
            value(w.cached("ns", "a")),
            None,
            "not listed yet: ask the API"
        );
        let (what, feed) = started.recv().await.expect("a watch started");
        assert_eq!(what, "ns/a");
        feed.send(Ok(watcher::Event::Init)).expect("send");
        feed.send(Ok(watcher::Event::InitApply(cm("1"))))
            .expect("send");
        settle().await;
        assert_eq!(value(w.cached("ns", "a")), None, "the list is not complete");
        feed.send(Ok(watcher::Event::InitDone)).expect("send");
        settle().await;
        assert_eq!(value(w.cached("ns", "a")), Some(Some("1".into())));
        feed.send(Ok(watcher::Event::Apply(cm("2")))).expect("send");
        settle().await;
        assert_eq!(value(w.cached("ns", "a")), Some(Some("2".into())));
        feed.send(Ok(watcher::Event::Delete(cm("2"))))
            .expect("send");
        settle().await;
        assert_eq!(
            value(w.cached("ns", "a")),
            Some(None),
            "deleted: known absent"
        );
        // One watch per object, whatever the number of reads.
        assert!(started.try_recv().is_err());
        assert_eq!(w.len(), 1);
    }

    #[tokio::test]
    async fn a_failed_or_ended_watch_sends_reads_back_to_the_api() {
        let (watch, mut started) = fake();
        let w = Watched::new(ObjectKind::ConfigMap, watch, broadcast::channel(16).0);
        assert_eq!(value(w.cached("ns", "a")), None);
        let (_, feed) = started.recv().await.expect("a watch started");
        feed.send(Ok(watcher::Event::Init)).expect("send");
        feed.send(Ok(watcher::Event::InitDone)).expect("send");
        settle().await;
        assert_eq!(value(w.cached("ns", "a")), Some(None), "listed: absent");
        feed.send(Err(watcher::Error::NoResourceVersion))
            .expect("send");
        settle().await;
        assert_eq!(value(w.cached("ns", "a")), None);
        feed.send(Ok(watcher::Event::Init)).expect("send");
        feed.send(Ok(watcher::Event::InitApply(cm("3"))))
            .expect("send");
        feed.send(Ok(watcher::Event::InitDone)).expect("send");
        settle().await;
        assert_eq!(value(w.cached("ns", "a")), Some(Some("3".into())));
        drop(feed);
        settle().await;
        assert_eq!(value(w.cached("ns", "a")), None, "ended: ask the API");
    }

    #[tokio::test]
    async fn changes_after_the_first_listing_are_announced() {
        let (watch, mut started) = fake();
        let (tx, mut changes) = broadcast::channel(16);
        let w = Watched::new(ObjectKind::ConfigMap, watch, tx);
        w.cached("ns", "a");
        let (_, feed) = started.recv().await.expect("a watch started");
        let mut announced = || {
            let mut n = 0;
            while let Ok(change) = changes.try_recv() {
                assert_eq!(
                    change,
                    ObjectChange {
                        kind: ObjectKind::ConfigMap,
                        namespace: "ns".into(),
                        name: "a".into()
                    }
                );
                n += 1;
            }
            n
        };
        let send = |e| feed.send(Ok(e)).expect("send");
        send(watcher::Event::Init);
        send(watcher::Event::InitApply(cm("1")));
        send(watcher::Event::InitDone);
        settle().await;
        assert_eq!(announced(), 0, "the first listing is no change");
        send(watcher::Event::Apply(cm("1")));
        settle().await;
        assert_eq!(announced(), 0, "the same version again is no change");
        send(watcher::Event::Apply(cm("2")));
        send(watcher::Event::Delete(cm("2")));
        settle().await;
        assert_eq!(announced(), 2, "updated, then deleted");
        // The watch fails; its relist finds the object recreated, then unchanged.
        feed.send(Err(watcher::Error::NoResourceVersion))
            .expect("send");
        for _ in 0..2 {
            send(watcher::Event::Init);
            send(watcher::Event::InitApply(cm("3")));
            send(watcher::Event::InitDone);
        }
        settle().await;
        assert_eq!(announced(), 1, "recreated while the watch was down");
    }

    #[tokio::test(start_paused = true)]
    async fn watches_nobody_reads_are_stopped() {
        let (watch, mut started) = fake();
        let w = Watched::new(ObjectKind::ConfigMap, watch, broadcast::channel(16).0);
        w.cached("ns", "a");
        let (_, feed_a) = started.recv().await.expect("watch a");
        tokio::time::advance(IDLE_DROP + Duration::from_secs(1)).await;
        w.cached("ns", "b");
        settle().await;
        assert_eq!(w.len(), 1, "a was dropped, b is watched");
        assert!(feed_a.is_closed(), "a's watch was stopped");
    }
}
