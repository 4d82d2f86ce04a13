//! Label and field selectors as `labelSelector=` / `fieldSelector=` query strings.

use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Parse(String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// A parsed label selector (`k=v,k!=v,k in (a,b),k notin (a),k,!k`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    _private: (),
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let _ = s;
        unimplemented!()
    }
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let _ = labels;
        unimplemented!()
    }
}

/// A parsed field selector (`a=b,c!=d`, `==` too).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector {
    _private: (),
}

impl FieldSelector {
    /// Parses and checks each field is supported for `kind` (`metadata.name`,
    /// `metadata.namespace` everywhere; pods `spec.nodeName`, `status.phase`,
    /// `spec.restartPolicy`, `spec.schedulerName`, `status.podIP`; events
    /// `involvedObject.*`, `reason`, `type`, `source`; ...).
    pub fn parse(kind: &str, s: &str) -> Result<Self, SelectorError> {
        let _ = (kind, s);
        unimplemented!()
    }
    pub fn matches(&self, obj: &serde_json::Value) -> bool {
        let _ = obj;
        unimplemented!()
    }
}
