//! Strict field validation (`fieldValidation=Strict|Warn`): unknown and duplicate fields.

/// Paths of fields in `obj` that the schema of `kind` does not know, in kube-apiserver's
/// form (`spec.containers[0].foo`). Empty when every field is known.
pub fn unknown_fields(kind: &str, obj: &serde_json::Value) -> Vec<String> {
    let _ = (kind, obj);
    unimplemented!()
}
