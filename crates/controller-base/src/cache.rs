//! The watches controllers keep caches from. Each object arrives without
//! `metadata.managedFields`, as kube-controller-manager's and kube-scheduler's informers drop
//! them: no controller reads them, and decoded they are trees of small allocations in every
//! cached object. A cached object written back loses nothing: an update that carries no
//! managedFields keeps the stored ones.

use std::fmt::Debug;

use futures::Stream;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, Controller, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;

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
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

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
