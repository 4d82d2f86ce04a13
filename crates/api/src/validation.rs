//! Validation with kube-apiserver's field paths and messages, for 422 Invalid answers.

/// kube-apiserver's `StatusCause.reason` values for field errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseReason {
    FieldValueRequired,
    FieldValueInvalid,
    FieldValueNotSupported,
    FieldValueDuplicate,
    FieldValueForbidden,
    FieldValueTooLong,
    FieldValueTypeInvalid,
}

impl CauseReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            CauseReason::FieldValueRequired => "FieldValueRequired",
            CauseReason::FieldValueInvalid => "FieldValueInvalid",
            CauseReason::FieldValueNotSupported => "FieldValueNotSupported",
            CauseReason::FieldValueDuplicate => "FieldValueDuplicate",
            CauseReason::FieldValueForbidden => "FieldValueForbidden",
            CauseReason::FieldValueTooLong => "FieldValueTooLong",
            CauseReason::FieldValueTypeInvalid => "FieldValueTypeInvalid",
        }
    }
}

/// One invalid field: `field` is the path (`spec.containers[0].image`), `message` the full text
/// kube-apiserver prints for it (`spec.containers[0].image: Required value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: CauseReason,
    pub message: String,
}

/// Validates a whole object of `kind` on create (after defaulting).
pub fn validate_create(kind: &str, obj: &serde_json::Value) -> Result<(), Vec<FieldError>> {
    let _ = (kind, obj);
    unimplemented!()
}

/// Validates an update: the new object and what may not change from the old (pod spec fields
/// other than container images, activeDeadlineSeconds, tolerations are immutable, etc.).
pub fn validate_update(
    kind: &str,
    old: &serde_json::Value,
    new: &serde_json::Value,
) -> Result<(), Vec<FieldError>> {
    let _ = (kind, old, new);
    unimplemented!()
}
