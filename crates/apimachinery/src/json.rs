//! Small accessors and setters over `serde_json` objects, shared by defaulting, validation
//! and printing, which all work on the JSON form so that fields this crate does not model
//! survive untouched.

use serde_json::{json, Map, Value};

/// The value at `path` (object keys), if every step exists.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

/// The string at `path`, `""` when absent or not a string (Go's zero value).
pub fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

/// `v` as an object, if it is one.
pub fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

/// `v` as a slice, empty when absent or not an array.
pub fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// True when `v` is set to something other than null.
pub fn present(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

/// Sets `key` when it is absent or null (Go's zero value is what upstream tests for).
pub fn set(map: &mut Map<String, Value>, key: &str, value: Value) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), value);
        }
        Some(_) => {}
    }
}

/// Sets `key` when absent, null or the empty string (string fields whose zero value is "").
pub fn set_str(map: &mut Map<String, Value>, key: &str, value: &str) {
    match map.get(key) {
        None | Some(Value::Null) => {
            map.insert(key.to_string(), json!(value));
        }
        Some(Value::String(s)) if s.is_empty() => {
            map.insert(key.to_string(), json!(value));
        }
        Some(_) => {}
    }
}

/// The object under `key`, created as `{}` when missing or null. `None` when the field holds
/// something other than an object (validation reports that later).
pub fn child<'a>(map: &'a mut Map<String, Value>, key: &str) -> Option<&'a mut Map<String, Value>> {
    set(map, key, json!({}));
    map.get_mut(key).and_then(Value::as_object_mut)
}

/// Each object element of the array under `key`, when present.
pub fn each_item(
    map: &mut Map<String, Value>,
    key: &str,
    mut f: impl FnMut(&mut Map<String, Value>),
) {
    if let Some(items) = map.get_mut(key).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setters_fill_only_zero_values() {
        let mut m = Map::new();
        m.insert("a".into(), json!(""));
        m.insert("b".into(), json!(null));
        m.insert("c".into(), json!(1));
        set_str(&mut m, "a", "x");
        set(&mut m, "b", json!(2));
        set(&mut m, "c", json!(3));
        assert_eq!(Value::Object(m.clone()), json!({"a": "x", "b": 2, "c": 1}));
        m.insert("d".into(), json!(5));
        assert!(child(&mut m, "d").is_none());
        assert!(child(&mut m, "e").is_some());
    }

    #[test]
    fn accessors() {
        let v = json!({"a": {"b": "c", "l": [1, 2]}});
        assert_eq!(str_at(&v, &["a", "b"]), "c");
        assert_eq!(str_at(&v, &["a", "x"]), "");
        assert_eq!(arr(at(&v, &["a", "l"])).len(), 2);
        assert!(arr(at(&v, &["a", "b"])).is_empty());
        assert!(present(v.get("a")) && !present(v.get("z")));
    }
}
