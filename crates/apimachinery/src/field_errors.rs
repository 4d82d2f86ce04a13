//! Field errors with kube-apiserver's paths, reasons and messages, for 422 Invalid answers.
//!
//! Messages follow upstream's `field.Error` rendering (`<path>: <type>[: <value>][: <detail>]`)
//! because users and tests compare them with what a real cluster prints.

use serde_json::Value;

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
    FieldValueNotFound,
    FieldValueTooMany,
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
            CauseReason::FieldValueNotFound => "FieldValueNotFound",
            CauseReason::FieldValueTooMany => "FieldValueTooMany",
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

/// Collects field errors as validation walks an object.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: &str, reason: CauseReason, body: String) {
        let message = if field.is_empty() {
            body
        } else {
            format!("{field}: {body}")
        };
        self.0.push(FieldError {
            field: field.to_string(),
            reason,
            message,
        });
    }
    pub fn required(&mut self, field: &str, detail: &str) {
        self.push(
            field,
            CauseReason::FieldValueRequired,
            with_detail("Required value".into(), detail),
        );
    }
    pub fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        let body = format!("Invalid value: {}", go_value(value));
        self.push(
            field,
            CauseReason::FieldValueInvalid,
            with_detail(body, detail),
        );
    }
    /// [`Self::invalid`] with the value already printed as upstream prints it (Go's `%#v`
    /// of a struct or map).
    pub fn invalid_text(&mut self, field: &str, value: &str, detail: &str) {
        let body = format!("Invalid value: {value}");
        self.push(
            field,
            CauseReason::FieldValueInvalid,
            with_detail(body, detail),
        );
    }
    pub fn not_supported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let list = supported
            .iter()
            .map(|s| go_quote(s))
            .collect::<Vec<_>>()
            .join(", ");
        let body = format!("Unsupported value: {}", go_value(value));
        let detail = if supported.is_empty() {
            String::new()
        } else {
            format!("supported values: {list}")
        };
        self.push(
            field,
            CauseReason::FieldValueNotSupported,
            with_detail(body, &detail),
        );
    }
    pub fn duplicate(&mut self, field: &str, value: &Value) {
        self.push(
            field,
            CauseReason::FieldValueDuplicate,
            format!("Duplicate value: {}", go_value(value)),
        );
    }
    pub fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(
            field,
            CauseReason::FieldValueForbidden,
            with_detail("Forbidden".into(), detail),
        );
    }
    pub fn not_found(&mut self, field: &str, value: &Value) {
        self.push(
            field,
            CauseReason::FieldValueNotFound,
            format!("Not found: {}", go_value(value)),
        );
    }
    pub fn too_long(&mut self, field: &str, max: usize) {
        let body = format!("Too long: may not be more than {max} bytes");
        self.push(field, CauseReason::FieldValueTooLong, body);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

fn with_detail(body: String, detail: &str) -> String {
    if detail.is_empty() {
        body
    } else {
        format!("{body}: {detail}")
    }
}

/// Go's `%q` for a string: double quotes with Go escapes.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How upstream prints a bad value: strings quoted, numbers and booleans bare; a nil one
/// becomes the string "null", quoted as strings are (`field.Error.ErrorBody`).
pub fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => go_quote("null"),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rendering() {
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
        assert_eq!(go_value(&json!(5)), "5");
        assert_eq!(go_value(&Value::Null), "\"null\"");
        let mut e = FieldErrors::default();
        assert!(e.is_empty());
        e.not_supported("spec.type", &json!("X"), &["A", "B"]);
        e.required("", "name or generateName is required");
        let errs = e.finish().expect_err("two errors");
        assert_eq!(
            errs[0].message,
            "spec.type: Unsupported value: \"X\": supported values: \"A\", \"B\""
        );
        assert_eq!(errs[0].reason, CauseReason::FieldValueNotSupported);
        assert_eq!(
            errs[1].message,
            "Required value: name or generateName is required"
        );
    }
}
