//! What the crate must be told about a kind: how each list merges and which maps are atomic.
//! kube-apiserver reads this from OpenAPI (`x-kubernetes-list-type`, `-list-map-keys`,
//! `-map-type`); callers here answer from the strategic-merge-patch tags they already hold.

use crate::path::KeyField;

/// How a list's items are told apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced and owned as one value.
    Atomic,
    /// A set of scalars: each value is owned on its own (`v:`).
    Set,
    /// Items keyed by these fields (`k:`), merged and owned item by item.
    Map(Vec<KeyField>),
}

/// The shape of a kind. `path` is the field names from the root down to the map holding
/// `field` (list fields appear once for their items: `["spec", "containers"]` for a field of
/// a container).
pub trait Schema {
    fn list_type(&self, path: &[String], field: &str) -> ListType;

    /// Whether map `field` is one value (`x-kubernetes-map-type: atomic`).
    fn atomic_map(&self, path: &[String], field: &str) -> bool;
}
