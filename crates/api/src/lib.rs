//! The Kubernetes API as the API server serves it, with no I/O: the registry of every served
//! kind (core kinds from `kinds-core`, workloads from `kinds-workloads`) and what dispatches
//! on it — defaulting, validation with strict-field checks, label and field selectors,
//! patches and the server-side Tables `kubectl get` prints. Objects travel as
//! `serde_json::Value`. The machinery kinds are built from (strategies, metadata checks,
//! quantities, the pod QoS class) is `apimachinery`, re-exported here under its old paths.
//!
//! Modules depend downwards only: `defaults`, `validation`, `tables`, `fields`, `patch`,
//! `selectors` and `discovery` (the discovery documents) look kinds up in `resources`.

pub use apimachinery::{
    checks, deletion, duration, field_errors, json, labelselector, names, printing, qos, quantity,
    strategy,
};

pub mod defaults;
pub mod discovery;
pub mod fields;
pub mod patch;
pub mod resources;
pub mod selectors;
pub mod tables;
pub mod validation;
