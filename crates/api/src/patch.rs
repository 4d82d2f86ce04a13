//! PATCH bodies: JSON patch (RFC 6902), merge patch (RFC 7386), strategic merge patch.

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("the body of the request was in an unknown format")]
    Malformed(String),
    #[error("{0}")]
    Apply(String),
}

pub fn json_patch(doc: &serde_json::Value, patch: &serde_json::Value) -> Result<serde_json::Value, PatchError> {
    let _ = (doc, patch);
    unimplemented!()
}

pub fn merge_patch(doc: &serde_json::Value, patch: &serde_json::Value) -> Result<serde_json::Value, PatchError> {
    let _ = (doc, patch);
    unimplemented!()
}

/// Strategic merge patch for built-in `kind`, with Kubernetes' merge keys and directives
/// (`$patch`, `$setElementOrder/…`, `$retainKeys`, `$deleteFromPrimitiveList/…`).
pub fn strategic_merge_patch(
    kind: &str,
    doc: &serde_json::Value,
    patch: &serde_json::Value,
) -> Result<serde_json::Value, PatchError> {
    let _ = (kind, doc, patch);
    unimplemented!()
}
