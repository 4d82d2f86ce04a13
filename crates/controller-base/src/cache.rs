//! The watches controllers keep caches from, and waiting for a cache's first list. Each
//! object arrives without
//! `metadata.managedFields`, as kube-controller-manager's and kube-scheduler's informers drop
//! them: no controller reads them, and decoded they are trees of small allocations in every
//! cached object. A cached object written back loses nothing: an update that carries no
//! managedFields keeps the stored ones.

use std::fmt::Debug;
use std::time::Duration;

use futures::Stream;
use kube::runtime::reflector::store::WriterDropped;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

/// How often a wait for a cache's first list looks again.
const READY_RECHECK: Duration = Duration::from_millis(100);

/// Waits until `store` holds its first list. kube's `Store::wait_until_ready` keeps one
/// waker: of several reconciles that wait before the list is in, only the last is woken and
/// the others would wait forever. Asking again every 100 ms wakes every one of them.
pub async fn ready<K>(store: &Store<K>) -> Result<(), WriterDropped>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone,
{
    loop {
        if let Ok(ready) = tokio::time::timeout(READY_RECHECK, store.wait_until_ready()).await {
            return ready;
        }
    }
}

/// Drops what no cache needs from `obj`.
pub fn trim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// `kube::runtime::watcher` over `api`, its objects trimmed.
pub fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<watcher::Event<K>>> + Send
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    watcher(api, config).modify(trim)
}

/// `Controller::new`, its cache of `K` holding trimmed objects.
pub fn controller<K>(api: Api<K>, config: watcher::Config) -> Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (reader, writer): (Store<K>, _) = reflector::store();
    let objects = reflector::reflector(writer, watch(api, config)).applied_objects();
    Controller::for_stream(objects, reader)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    #[tokio::test]
    async fn every_reconcile_waiting_for_the_first_list_is_woken_where_kube_wakes_one() {
        let (store, mut writer) = reflector::store::<Pod>();
        // Each with its own waker in one task, as a controller's reconciles are.
        let waiting: futures::stream::FuturesUnordered<_> = (0..3).map(|_| ready(&store)).collect();
        let waiting = waiting.collect::<Vec<_>>();
        let list = async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            writer.apply_watcher_event(&watcher::Event::Init);
            writer.apply_watcher_event(&watcher::Event::InitDone);
        };
        let (woken, ()) = tokio::time::timeout(
            Duration::from_secs(10),
            futures::future::join(waiting, list),
        )
        .await
        .expect("every waiter woken");
        assert_eq!(woken.len(), 3);
        assert!(woken.iter().all(Result::is_ok));
    }

    #[test]
    fn trim_drops_managed_fields_and_keeps_the_rest() {
        let mut pod = Pod {
            metadata: ObjectMeta {
                name: Some("p".into()),
                managed_fields: Some(vec![ManagedFieldsEntry {
                    manager: Some("kubectl".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            },
            ..Default::default()
        };
        trim(&mut pod);
        assert_eq!(pod.metadata.managed_fields, None);
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
    }
}
