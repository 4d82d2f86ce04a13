//! Validation by kind name, for callers that hold a kind rather than its resource entry
//! (static pod manifests). Each kind's rules live in its strategy under `kinds/`; the
//! messages follow kube-apiserver's (see [`apimachinery::field_errors`]).

use serde_json::Value;

use crate::resources::{all, lookup_any_kind, ResourceInfo};
pub use apimachinery::field_errors::{CauseReason, FieldError, FieldErrors};

/// The entry for `kind`, or the error an unknown kind gets.
fn served(kind: &str) -> Result<&'static ResourceInfo, Vec<FieldError>> {
    lookup_any_kind(kind).ok_or_else(|| {
        let mut errs = FieldErrors::default();
        let kinds: Vec<&str> = all().iter().map(|r| r.kind).collect();
        errs.not_supported("kind", &Value::from(kind), &kinds);
        errs.finish().err().unwrap_or_default()
    })
}

/// Validates a whole object of `kind` on create (after defaulting). A kind that is not
/// served is an error.
pub fn validate_create(kind: &str, obj: &Value) -> Result<(), Vec<FieldError>> {
    served(kind)?.validate_create(obj)
}

/// Validates an update of an object of `kind`: the new object and what may not change from
/// the old. A kind that is not served is an error.
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Result<(), Vec<FieldError>> {
    served(kind)?.validate_update(old, new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unknown_kinds_are_rejected() {
        let w = json!({"metadata": {"name": "x"}});
        let errs = validate_create("Widget", &w).expect_err("unknown kind");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "kind");
        assert_eq!(errs[0].reason, CauseReason::FieldValueNotSupported);
        assert!(errs[0]
            .message
            .starts_with("kind: Unsupported value: \"Widget\": supported values: \"Namespace\""));
        assert!(validate_update("Widget", &w, &w).is_err());
    }

    #[test]
    fn known_kinds_by_name() {
        let ns = json!({"metadata": {"name": "dev"}});
        assert_eq!(validate_create("Namespace", &ns), Ok(()));
        let lease = json!({"metadata":{"name":"n","namespace":"kube-node-lease"},"spec":{"leaseDurationSeconds":0}});
        assert!(validate_create("Lease", &lease).is_err());
        let mut renamed = ns.clone();
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            validate_update("Namespace", &ns, &renamed).expect_err("immutable")[0].message,
            "metadata.name: Invalid value: \"other\": field is immutable"
        );
    }
}
