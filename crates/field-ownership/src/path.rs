//! Paths into an object, as FieldsV1 names their steps: a map field (`f:name`), a list item
//! by its key fields (`k:{"name":"x"}`), a member of a set-like list (`v:"x"`) or an item by
//! position (`i:0`).

use std::fmt;

use serde_json::{Map, Value};

/// One step of a [`Path`]. Keys and values are kept as their canonical JSON text (object
/// keys sorted), so elements compare and order as FieldsV1 writes them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    Field(String),
    Key(String),
    Value(String),
    Index(u64),
}

/// A path from the root of an object.
pub type Path = Vec<PathElement>;

#[derive(Debug, thiserror::Error)]
pub enum PathError {
    #[error("unknown FieldsV1 path element {0:?}")]
    UnknownPrefix(String),
    #[error("invalid FieldsV1 path element {text:?}")]
    BadJson {
        text: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid FieldsV1 list index {0:?}")]
    BadIndex(String),
    #[error("FieldsV1 key element {0:?} is not a JSON object")]
    KeyNotObject(String),
}

/// JSON text with object keys sorted at every depth.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    // A sorted object serialises with its keys in order whether or not serde_json keeps
    // insertion order, since they were inserted sorted.
    sorted(v).to_string()
}

/// One field of a keyed list's key, with the value an item that leaves it out has (as
/// OpenAPI defaults `protocol: TCP` in a port's key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyField {
    pub name: &'static str,
    pub default: Option<&'static str>,
}

impl KeyField {
    /// A key field with a default value.
    pub const fn defaulted(name: &'static str, default: &'static str) -> Self {
        Self {
            name,
            default: Some(default),
        }
    }
}

impl From<&'static str> for KeyField {
    fn from(name: &'static str) -> Self {
        Self {
            name,
            default: None,
        }
    }
}

impl PathElement {
    /// The key element of list item `item` for key fields `keys`; `None` when the item is not
    /// an object or lacks a key field that has no default.
    pub fn key_of(item: &Value, keys: &[KeyField]) -> Option<PathElement> {
        let obj = item.as_object()?;
        let mut key = Map::new();
        for k in keys {
            let value = match (obj.get(k.name), k.default) {
                (Some(v), _) => v.clone(),
                (None, Some(d)) => Value::String(d.to_string()),
                (None, None) => return None,
            };
            key.insert(k.name.to_string(), value);
        }
        Some(PathElement::Key(canonical_json(&Value::Object(key))))
    }

    /// The set-member element of scalar `item`.
    pub fn value_of(item: &Value) -> PathElement {
        PathElement::Value(canonical_json(item))
    }

    /// Whether list item `item` is the one this element names (`index` is its position).
    pub fn matches_item(&self, index: usize, item: &Value) -> bool {
        match self {
            PathElement::Field(_) => false,
            PathElement::Key(k) => {
                let Ok(Value::Object(want)) = serde_json::from_str::<Value>(k) else {
                    return false;
                };
                let Some(obj) = item.as_object() else {
                    return false;
                };
                want.iter().all(|(f, v)| obj.get(f) == Some(v))
            }
            PathElement::Value(v) => canonical_json(item) == *v,
            PathElement::Index(i) => *i == index as u64,
        }
    }

    /// The FieldsV1 spelling: `f:name`, `k:{...}`, `v:...`, `i:0`.
    pub fn to_fields_v1(&self) -> String {
        match self {
            PathElement::Field(n) => format!("f:{n}"),
            PathElement::Key(k) => format!("k:{k}"),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Reads a FieldsV1 spelling back.
    pub fn from_fields_v1(text: &str) -> Result<PathElement, PathError> {
        let json = |s: &str| {
            serde_json::from_str::<Value>(s).map_err(|source| PathError::BadJson {
                text: text.to_string(),
                source,
            })
        };
        if let Some(n) = text.strip_prefix("f:") {
            Ok(PathElement::Field(n.to_string()))
        } else if let Some(k) = text.strip_prefix("k:") {
            let v = json(k)?;
            if !v.is_object() {
                return Err(PathError::KeyNotObject(text.to_string()));
            }
            Ok(PathElement::Key(canonical_json(&v)))
        } else if let Some(v) = text.strip_prefix("v:") {
            Ok(PathElement::Value(canonical_json(&json(v)?)))
        } else if let Some(i) = text.strip_prefix("i:") {
            i.parse()
                .map(PathElement::Index)
                .map_err(|_| PathError::BadIndex(text.to_string()))
        } else {
            Err(PathError::UnknownPrefix(text.to_string()))
        }
    }
}

/// How conflicts name a step: `.name`, `[name="x"]`, `[="x"]`, `[0]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(k) => {
                let parts: Vec<String> = match serde_json::from_str::<Value>(k) {
                    Ok(Value::Object(m)) => m.iter().map(|(k, v)| format!("{k}={v}")).collect(),
                    _ => vec![k.clone()],
                };
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={v}]"),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A whole path as conflicts print it: `.spec.containers[name="web"].image`.
pub fn display(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn elements_round_trip_through_fields_v1() {
        for text in [
            "f:replicas",
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
            "v:\"x\"",
            "v:3",
            "i:2",
        ] {
            let pe = PathElement::from_fields_v1(text).expect(text);
            assert_eq!(pe.to_fields_v1(), text);
        }
        assert!(PathElement::from_fields_v1("x:1").is_err());
        assert!(PathElement::from_fields_v1("k:[1]").is_err());
        assert!(PathElement::from_fields_v1("k:{").is_err());
        assert!(PathElement::from_fields_v1("i:-1").is_err());
    }

    #[test]
    fn keys_are_canonical_and_match_their_items() {
        let item = json!({"protocol": "TCP", "containerPort": 80, "name": "http"});
        let pe =
            PathElement::key_of(&item, &["protocol".into(), "containerPort".into()]).expect("key");
        assert_eq!(
            pe.to_fields_v1(),
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}"
        );
        assert!(pe.matches_item(5, &item));
        assert!(!pe.matches_item(5, &json!({"containerPort": 81, "protocol": "TCP"})));
        assert_eq!(
            PathElement::key_of(&json!({"name": "a"}), &["port".into()]),
            None
        );
        let port = [
            KeyField::from("containerPort"),
            KeyField::defaulted("protocol", "TCP"),
        ];
        assert_eq!(
            PathElement::key_of(&json!({"containerPort": 80}), &port),
            Some(pe.clone()),
            "a left-out protocol is keyed as its default"
        );
        let udp = PathElement::key_of(&json!({"containerPort": 80, "protocol": "UDP"}), &port);
        assert_ne!(udp, Some(pe.clone()));
        assert!(PathElement::value_of(&json!("a")).matches_item(0, &json!("a")));
    }

    #[test]
    fn paths_print_as_conflicts_show_them() {
        let p = vec![
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            PathElement::key_of(&json!({"name": "web"}), &["name".into()]).expect("key"),
            PathElement::Field("image".into()),
        ];
        assert_eq!(display(&p), ".spec.containers[name=\"web\"].image");
        assert_eq!(
            display(&[
                PathElement::Field("finalizers".into()),
                PathElement::value_of(&json!("a"))
            ]),
            ".finalizers[=\"a\"]"
        );
    }
}
