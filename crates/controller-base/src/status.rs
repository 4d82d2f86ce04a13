//! Writing a controller's status: the whole object through the `status` subresource, at the
//! resourceVersion the controller read. Losing the race (a conflict) or finding the object
//! gone is no error: the watch brings the newer object and the next reconcile writes again.

use std::fmt::Debug;

use kube::api::{Api, PostParams};
use kube::core::NamespaceResourceScope;
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{is_conflict, is_not_found, Error};

/// Stores `next` (the object as read, with its new status); the stored object, or `None`
/// when someone else wrote first or it is gone.
pub async fn replace<K>(client: &kube::Client, next: &K) -> Result<Option<K>, Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let ns = next.namespace().unwrap_or_default();
    let name = next.name_any();
    match Api::<K>::namespaced(client.clone(), &ns)
        .replace_status(&name, &PostParams::default(), next)
        .await
    {
        Ok(stored) => Ok(Some(stored)),
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(None),
        Err(e) => Err(Error::api(format!(
            "writing the status of {} {ns}/{name}",
            K::kind(&())
        ))(e)),
    }
}
