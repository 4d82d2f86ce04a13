//! Kubernetes API object logic that needs no I/O: the resource registry (what discovery
//! serves), defaulting, validation, strict-field checks, label and field selectors, patches,
//! and the server-side Tables `kubectl get` prints. Objects travel as `serde_json::Value`;
//! typed `k8s-openapi` structs are used inside for checks.
//!
//! INTERFACE CONTRACT: the public signatures below are what `apiserver` is written against.

pub mod defaults;
pub mod fields;
pub mod patch;
pub mod resources;
pub mod selectors;
pub mod tables;
pub mod validation;
