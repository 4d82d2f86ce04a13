//! Field management as kube-apiserver's server-side apply does it: which manager owns which
//! fields of an object (`metadata.managedFields`, FieldsV1), how an update moves ownership,
//! and how an apply merges a configuration, removes what its manager stopped applying and
//! refuses to change fields other managers own.
//!
//! The crate knows no kinds: how a list is keyed comes from a [`Schema`] the caller gives.
//!
//! Modules depend downwards only: `path` ← `schema` ← `set` ← `merge` ← `managers`.

pub mod managers;
pub mod merge;
pub mod path;
pub mod schema;
pub mod set;

pub use managers::{Conflict, Entry, ManagedFields, Operation};
pub use path::{KeyField, Path, PathElement};
pub use schema::{ListType, Schema};
pub use set::FieldSet;
