//! Kubernetes API object logic that needs no I/O: the kinds the API server serves, each with
//! its strategy (defaulting, validation, create/update preparation, status rules, table
//! columns, field selectors), strict-field checks, label and field selectors, patches, the
//! server-side Tables `kubectl get` prints, resource quantities and the pod QoS class.
//! Objects travel as `serde_json::Value`; typed `k8s-openapi` structs are used inside for
//! checks.
//!
//! Modules depend downwards only: `resources`, `defaults`, `validation`, `tables`, `fields`
//! and `selectors` look kinds up in `kinds`; each kind builds on `strategy` and the shared
//! helpers (`checks`, `names`, `field_errors`, `printing`, `json`, `quantity`, `qos`).

pub mod checks;
pub mod defaults;
pub mod field_errors;
pub mod fields;
mod json;
pub mod kinds;
pub mod names;
pub mod patch;
pub mod printing;
pub mod qos;
pub mod quantity;
pub mod resources;
pub mod selectors;
pub mod strategy;
pub mod tables;
pub mod validation;
