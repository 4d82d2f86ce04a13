//! One watch and one cache of a kind for all the controllers, as kube-controller-manager's
//! shared informers: every controller that follows pods reads the same cache and hears of the
//! same changes, so a pod is decoded once and held once however many controllers look at it.
//! kube's own shared stores tell their subscribers of applied objects only; these also tell
//! of deletions (a ReplicaSet whose pod went must hear of it), of what each change replaced,
//! and of each full list.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::channel::mpsc;
use futures::future::{self, BoxFuture};
use futures::{FutureExt, Stream, StreamExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// A change to the cache, as a subscriber hears of it.
#[derive(Debug)]
pub enum Change<K> {
    /// `new` was added or changed; `old` is what the cache held before.
    Applied { old: Option<Arc<K>>, new: Arc<K> },
    /// The object is gone; this is its last state.
    Deleted(Arc<K>),
    /// A full list is in the cache: every object of it has been sent as `Applied`, and every
    /// object the list no longer holds (deleted while the watch was broken) as `Deleted`.
    Listed,
}

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Applied { old, new } => Change::Applied {
                old: old.clone(),
                new: new.clone(),
            },
            Change::Deleted(obj) => Change::Deleted(obj.clone()),
            Change::Listed => Change::Listed,
        }
    }
}

/// The cache of one kind and its subscribers. Clones share them.
pub struct Informer<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    subscribers: Arc<Mutex<Subscribers<K>>>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Informer<K> {
    fn clone(&self) -> Self {
        Informer {
            store: self.store.clone(),
            subscribers: self.subscribers.clone(),
        }
    }
}

struct Subscribers<K> {
    senders: Vec<mpsc::UnboundedSender<Change<K>>>,
    /// Whether a first full list is in the cache.
    listed: bool,
}

/// Changes are sent under this lock, so a poisoned one holds nothing half-done.
fn lock<K>(m: &Mutex<Subscribers<K>>) -> MutexGuard<'_, Subscribers<K>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    /// The informer of `api`'s objects, and the future that keeps it current (until dropped).
    /// Objects are cached trimmed, as [`crate::cache::watch`] gives them.
    pub fn new(api: Api<K>) -> (Self, BoxFuture<'static, ()>) {
        let (informer, mut writer) = Self::unfed();
        let feed = informer.clone();
        let watch = async move {
            let mut events = crate::cache::watch(api, watcher::Config::default())
                .default_backoff()
                .boxed();
            while let Some(event) = events.next().await {
                match event {
                    Ok(event) => feed.apply(&mut writer, event),
                    Err(e) => {
                        tracing::warn!(kind = %K::kind(&()), error = %e, "shared watch failed")
                    }
                }
            }
        };
        (informer, watch.boxed())
    }

    /// An informer and the writer of its cache, fed by [`Informer::apply`].
    fn unfed() -> (Self, Writer<K>) {
        let writer = Writer::default();
        let informer = Informer {
            store: writer.as_reader(),
            subscribers: Arc::new(Mutex::new(Subscribers {
                senders: Vec::new(),
                listed: false,
            })),
        };
        (informer, writer)
    }

    /// The cache, ready once the first list is in.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Every change from now on. When the first list is already in, the stream starts with
    /// the cached objects (as `Applied` with no `old`) and `Listed`, as a subscriber that was
    /// there from the start heard them.
    pub fn subscribe(&self) -> impl Stream<Item = Change<K>> + Send + Unpin + 'static {
        let (tx, rx) = mpsc::unbounded();
        let mut subscribers = lock(&self.subscribers);
        if subscribers.listed {
            for new in self.store.state() {
                let _ = tx.unbounded_send(Change::Applied { old: None, new });
            }
            let _ = tx.unbounded_send(Change::Listed);
        }
        subscribers.senders.push(tx);
        rx
    }

    /// Resolves once the first list is in the cache (client-go's `WaitForCacheSync`). Any
    /// number of tasks may wait here, where kube's `Store::wait_until_ready` wakes only the
    /// last of several that began waiting before the list: start what reads the cache after
    /// this.
    pub async fn synced(&self) {
        if lock(&self.subscribers).listed {
            return;
        }
        let mut changes = self.subscribe();
        while let Some(change) = changes.next().await {
            if matches!(change, Change::Listed) {
                return;
            }
        }
    }

    /// The objects added or changed: what a controller of this kind reconciles (kube's
    /// `applied_objects`).
    pub fn applied(&self) -> impl Stream<Item = Arc<K>> + Send + Unpin + 'static {
        self.subscribe().filter_map(|change| {
            future::ready(match change {
                Change::Applied { new, .. } => Some(new),
                _ => None,
            })
        })
    }

    /// The objects added, changed or deleted: what concerns their owners and watchers (kube's
    /// `touched_objects`).
    pub fn touched(&self) -> impl Stream<Item = Arc<K>> + Send + Unpin + 'static {
        self.subscribe().filter_map(|change| {
            future::ready(match change {
                Change::Applied { new, .. } => Some(new),
                Change::Deleted(obj) => Some(obj),
                Change::Listed => None,
            })
        })
    }

    /// Applies one watch event to the cache and tells every subscriber what changed.
    fn apply(&self, writer: &mut Writer<K>, event: watcher::Event<K>) {
        let mut subscribers = lock(&self.subscribers);
        let changes = match event {
            watcher::Event::Apply(obj) => {
                let key = ObjectRef::from_obj(&obj);
                let old = self.store.get(&key);
                writer.apply_watcher_event(&watcher::Event::Apply(obj));
                let new = self.store.get(&key);
                new.map(|new| Change::Applied { old, new })
                    .into_iter()
                    .collect()
            }
            watcher::Event::Delete(obj) => {
                let event = watcher::Event::Delete(obj);
                writer.apply_watcher_event(&event);
                match event {
                    watcher::Event::Delete(obj) => vec![Change::Deleted(Arc::new(obj))],
                    _ => Vec::new(),
                }
            }
            watcher::Event::InitDone => {
                let mut before: HashMap<ObjectRef<K>, Arc<K>> = self
                    .store
                    .state()
                    .into_iter()
                    .map(|obj| (ObjectRef::from_obj(&*obj), obj))
                    .collect();
                writer.apply_watcher_event(&watcher::Event::InitDone);
                let mut changes: Vec<Change<K>> = self
                    .store
                    .state()
                    .into_iter()
                    .map(|new| Change::Applied {
                        old: before.remove(&ObjectRef::from_obj(&*new)),
                        new,
                    })
                    .collect();
                changes.extend(before.into_values().map(Change::Deleted));
                changes.push(Change::Listed);
                subscribers.listed = true;
                changes
            }
            event @ (watcher::Event::Init | watcher::Event::InitApply(_)) => {
                writer.apply_watcher_event(&event);
                Vec::new()
            }
        };
        if changes.is_empty() {
            return;
        }
        subscribers.senders.retain(|tx| {
            changes
                .iter()
                .all(|change| tx.unbounded_send(change.clone()).is_ok())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, rv: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("default".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn list(informer: &Informer<Pod>, writer: &mut Writer<Pod>, pods: &[Pod]) {
        informer.apply(writer, watcher::Event::Init);
        for p in pods {
            informer.apply(writer, watcher::Event::InitApply(p.clone()));
        }
        informer.apply(writer, watcher::Event::InitDone);
    }

    /// What a subscriber has been told so far, as `+name@rv` (with `old rv<` when it replaced
    /// one), `-name@rv` and `listed`.
    fn heard(stream: &mut (impl Stream<Item = Change<Pod>> + Unpin)) -> Vec<String> {
        let rv = |p: &Pod| {
            format!(
                "{}@{}",
                p.metadata.name.as_deref().unwrap_or(""),
                p.metadata.resource_version.as_deref().unwrap_or("")
            )
        };
        let mut out = Vec::new();
        while let Some(Some(change)) = stream.next().now_or_never() {
            out.push(match change {
                Change::Applied { old: None, new } => format!("+{}", rv(&new)),
                Change::Applied {
                    old: Some(old),
                    new,
                } => {
                    format!("+{}<{}", rv(&new), rv(&old))
                }
                Change::Deleted(obj) => format!("-{}", rv(&obj)),
                Change::Listed => "listed".into(),
            });
        }
        out.sort();
        out
    }

    #[test]
    fn subscribers_hear_each_change_with_what_it_replaced() {
        let (informer, mut writer) = Informer::<Pod>::unfed();
        let mut a = informer.subscribe();
        let mut b = informer.subscribe();
        list(&informer, &mut writer, &[pod("p", "1")]);
        informer.apply(&mut writer, watcher::Event::Apply(pod("p", "2")));
        informer.apply(&mut writer, watcher::Event::Apply(pod("q", "3")));
        informer.apply(&mut writer, watcher::Event::Delete(pod("q", "4")));
        let expected = ["+p@1", "+p@2<p@1", "+q@3", "-q@4", "listed"];
        assert_eq!(heard(&mut a), expected);
        assert_eq!(heard(&mut b), expected);
        let names: Vec<_> = informer
            .store()
            .state()
            .iter()
            .map(|p| p.metadata.resource_version.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["2"]);
    }

    #[test]
    fn subscribers_share_the_cached_object() {
        let (informer, mut writer) = Informer::<Pod>::unfed();
        let mut sub = informer.subscribe();
        list(&informer, &mut writer, &[]);
        informer.apply(&mut writer, watcher::Event::Apply(pod("p", "1")));
        let cached = informer.store().state().pop().expect("cached");
        let heard = std::iter::from_fn(|| sub.next().now_or_never().flatten())
            .find_map(|c| match c {
                Change::Applied { new, .. } => Some(new),
                _ => None,
            })
            .expect("heard");
        assert!(Arc::ptr_eq(&cached, &heard));
    }

    #[test]
    fn a_relist_tells_of_what_changed_and_what_went_while_the_watch_was_broken() {
        let (informer, mut writer) = Informer::<Pod>::unfed();
        list(&informer, &mut writer, &[pod("a", "1"), pod("b", "2")]);
        let mut sub = informer.subscribe();
        heard(&mut sub);
        informer.apply(&mut writer, watcher::Event::Init);
        informer.apply(&mut writer, watcher::Event::InitApply(pod("a", "5")));
        informer.apply(&mut writer, watcher::Event::InitApply(pod("c", "6")));
        // Until the list is complete the cache and the subscribers see the old state.
        assert!(heard(&mut sub).is_empty());
        assert_eq!(informer.store().len(), 2);
        informer.apply(&mut writer, watcher::Event::InitDone);
        assert_eq!(heard(&mut sub), ["+a@5<a@1", "+c@6", "-b@2", "listed"]);
    }

    #[test]
    fn a_late_subscriber_hears_the_cached_objects_first() {
        let (informer, mut writer) = Informer::<Pod>::unfed();
        let mut early = informer.subscribe();
        assert!(
            heard(&mut early).is_empty(),
            "nothing before the first list"
        );
        list(&informer, &mut writer, &[pod("a", "1"), pod("b", "2")]);
        let mut late = informer.subscribe();
        assert_eq!(heard(&mut late), ["+a@1", "+b@2", "listed"]);
        informer.apply(&mut writer, watcher::Event::Apply(pod("a", "3")));
        assert_eq!(heard(&mut late), ["+a@3<a@1"]);
    }

    #[test]
    fn every_waiter_hears_the_first_list() {
        let (informer, mut writer) = Informer::<Pod>::unfed();
        let mut waiters: Vec<_> = (0..3).map(|_| Box::pin(informer.synced())).collect();
        for w in &mut waiters {
            assert!(w.as_mut().now_or_never().is_none());
        }
        list(&informer, &mut writer, &[pod("a", "1")]);
        for w in &mut waiters {
            assert!(w.as_mut().now_or_never().is_some());
        }
        assert!(Box::pin(informer.synced()).now_or_never().is_some());
    }

    #[test]
    fn a_dropped_subscriber_is_forgotten() {
        let (informer, mut writer) = Informer::<Pod>::unfed();
        let kept = informer.subscribe();
        drop(informer.subscribe());
        list(&informer, &mut writer, &[pod("a", "1")]);
        assert_eq!(lock(&informer.subscribers).senders.len(), 1);
        drop(kept);
        informer.apply(&mut writer, watcher::Event::Apply(pod("a", "2")));
        assert!(lock(&informer.subscribers).senders.is_empty());
    }

    #[test]
    fn applied_and_touched_streams() {
        let (informer, mut writer) = Informer::<Pod>::unfed();
        let mut applied = informer.applied();
        let mut touched = informer.touched();
        list(&informer, &mut writer, &[pod("a", "1")]);
        informer.apply(&mut writer, watcher::Event::Delete(pod("a", "2")));
        let rvs = |s: &mut (dyn Stream<Item = Arc<Pod>> + Unpin)| {
            std::iter::from_fn(|| s.next().now_or_never().flatten())
                .map(|p| p.metadata.resource_version.clone().unwrap_or_default())
                .collect::<Vec<_>>()
        };
        assert_eq!(rvs(&mut applied), ["1"]);
        assert_eq!(rvs(&mut touched), ["1", "2"]);
    }
}
