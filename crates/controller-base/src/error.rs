//! Why a reconcile failed. The controllers' error policy turns any of these into a retry
//! with back-off; they never stop a controller.

use kube::runtime::reflector::store::WriterDropped;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API request failed (`what` names the request, e.g. "binding pod default/web").
    #[error("{what}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    /// An owner about to adopt objects was deleted or replaced since the cache saw it
    /// (upstream's `CanAdopt` recheck); the next event brings its current state.
    #[error("{kind} {namespace}/{name} changed before adopting: uid {found:?}, wanted {wanted}, or deleting")]
    OwnerChanged {
        kind: String,
        namespace: String,
        name: String,
        wanted: String,
        found: Option<String>,
    },
    /// The watch that fills a cache ended before its first list.
    #[error("waiting for the {0} cache")]
    Cache(&'static str, #[source] WriterDropped),
}

impl Error {
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
        let what = what.into();
        move |source| Error::Api { what, source }
    }
}

/// The API's answer was 404 Not Found.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// The API's answer was 422 Invalid (a conditional write whose condition no longer holds,
/// such as a patch naming a uid the object no longer has).
pub fn is_invalid(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_invalid())
}

/// The API's answer was 409: a conflict or an object that already exists; the next watch
/// event brings the state that won.
pub fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}
