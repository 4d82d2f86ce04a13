//! The machinery every served kind is built from, with no kind named: what a kind is
//! ([`strategy`]: its discovery entry and the hooks kube-apiserver runs per kind), object
//! metadata checks, what a DELETE does with dependents, name rules, field errors with kube's
//! causes, table printing helpers, JSON access, label selectors (validated and printed),
//! resource quantities and the pod QoS class. Kinds live in `kinds-core` and
//! `kinds-workloads`; the `api` crate puts them in one registry.

pub mod checks;
pub mod deletion;
pub mod duration;
pub mod field_errors;
pub mod json;
pub mod labelselector;
pub mod names;
pub mod printing;
pub mod qos;
pub mod quantity;
pub mod quantity_text;
pub mod strategy;
