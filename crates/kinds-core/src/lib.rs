//! The core kinds (core/v1 and the small groups every cluster has: discovery, coordination):
//! one file per kind holds its discovery entry and its strategy, and one line in [`KINDS`]
//! serves it. Discovery lists them in this order.

pub mod configmap;
pub mod endpoints;
pub mod endpointslice;
pub mod event;
pub mod lease;
pub mod limitrange;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod resourcequota;
pub mod secret;
pub mod service;
pub mod serviceaccount;

use apimachinery::strategy::ResourceInfo;

/// The core resources, in discovery order.
pub static KINDS: &[ResourceInfo] = &[
    namespace::RESOURCE,
    node::RESOURCE,
    pod::RESOURCE,
    event::RESOURCE,
    configmap::RESOURCE,
    secret::RESOURCE,
    service::RESOURCE,
    endpoints::RESOURCE,
    endpointslice::RESOURCE,
    serviceaccount::RESOURCE,
    limitrange::RESOURCE,
    resourcequota::RESOURCE,
    lease::RESOURCE,
];

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers the kinds' tests share.

    use apimachinery::field_errors::FieldError;

    pub fn now() -> jiff::Timestamp {
        "2026-01-02T15:00:00Z".parse().expect("timestamp")
    }

    pub fn messages(r: Result<(), Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }
}
