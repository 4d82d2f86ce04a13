//! The registry of kinds: one file per kind holds its discovery entry and its strategy, and
//! one line below serves it. Discovery lists them in this order (core first).

mod configmap;
mod endpoints;
mod endpointslice;
mod event;
mod lease;
mod namespace;
mod node;
pub mod pod;
mod secret;
mod service;
mod serviceaccount;

use crate::strategy::ResourceInfo;

/// Every served resource.
pub static REGISTRY: &[ResourceInfo] = &[
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
    lease::RESOURCE,
];

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers the kinds' tests share.

    use crate::field_errors::FieldError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn one_cell_per_column() {
        for r in REGISTRY {
            let s = r.strategy;
            assert_eq!(
                s.columns().len(),
                s.cells(&json!({}), testing::now()).len(),
                "{}",
                r.kind
            );
        }
    }

    /// The status subresource and the update hooks agree: an update of the object keeps the
    /// stored status exactly for kinds that serve `status`, and a status update changes only
    /// the status.
    #[test]
    fn status_rules_follow_the_status_subresource() {
        let old = json!({"metadata": {"name": "x", "generation": 1}, "spec": {"a": 1}, "status": {"s": "old"}});
        for r in REGISTRY {
            let mut new = json!({"metadata": {"name": "x", "generation": 1}, "spec": {"a": 2}, "status": {"s": "new"}});
            r.strategy.prepare_for_update(&old, &mut new);
            let kept = new["status"]["s"] == "old";
            assert_eq!(kept, r.subresource("status").is_some(), "{}", r.kind);
            assert_eq!(new["metadata"]["generation"], 2, "{}", r.kind);
            let mut status =
                json!({"metadata": {"name": "y"}, "spec": {"a": 3}, "status": {"s": "new"}});
            r.strategy.prepare_for_status_update(&old, &mut status);
            assert_eq!(status["spec"], old["spec"], "{}", r.kind);
            assert_eq!(status["metadata"], old["metadata"], "{}", r.kind);
            assert_eq!(status["status"]["s"], "new", "{}", r.kind);
        }
    }

    #[test]
    fn strict_decoding_knows_every_kind() {
        for r in REGISTRY {
            let obj =
                json!({"apiVersion": r.api_version(), "kind": r.kind, "metadata": {"name": "x"}});
            let back = r.strategy.round_trip(obj).expect(r.kind);
            assert_eq!(back["metadata"]["name"], "x", "{}", r.kind);
        }
    }
}
