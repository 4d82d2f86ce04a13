//! Admission plugins: what kube-apiserver's mutating and validating admission chain does to a
//! new object after defaulting and before validation, where that needs the store. A kind
//! with a plugin is one impl plus one line in [`PLUGINS`].

use api::resources::ResourceInfo;
use serde_json::Value;
use store::Store;

use crate::error::ApiError;

/// Admission of a new object.
#[async_trait::async_trait]
pub trait Admission: Send + Sync {
    /// May change `obj`, or refuse it.
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError>;
}

/// The ServiceAccount plugin on pods.
struct ServiceAccount;

#[async_trait::async_trait]
impl Admission for ServiceAccount {
    async fn admit(&self, store: &dyn Store, obj: &mut Value) -> Result<(), ApiError> {
        crate::serviceaccounts::admit_pod(store, obj).await
    }
}

/// (group, plural) of each resource with an admission plugin.
static PLUGINS: &[(&str, &str, &dyn Admission)] = &[("", "pods", &ServiceAccount)];

/// The admission plugin of `info`'s resource on create, if it has one.
pub fn of(info: &ResourceInfo) -> Option<&'static dyn Admission> {
    PLUGINS
        .iter()
        .find(|(group, plural, _)| *group == info.group && *plural == info.plural)
        .map(|(_, _, plugin)| *plugin)
}
