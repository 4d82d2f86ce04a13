//! The OpenAPI v2 document in the protobuf form client-go asks for (`Accept:
//! application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, gnostic's `openapi_v2.Document`,
//! the only form kubectl 1.27 and 1.28 decode): the parts kubectl reads (definitions with their
//! types, properties, items, references, descriptions, required lists and vendor extensions;
//! paths with their operations' GVK and query parameters), written by field number. Vendor
//! extensions carry their value as YAML text, which JSON is.

use serde_json::{Map, Value};

/// The Content-Type of the protobuf form: the type clients ask for with `@v1.0` written
/// `.v1.0`, as kube-apiserver answers (Go's media type parser refuses the `@`).
pub const MEDIA_TYPE: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// A protobuf message being written.
#[derive(Default)]
struct Msg(Vec<u8>);

impl Msg {
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.0.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        self.0.push(n as u8);
    }

    fn bytes(&mut self, field: u64, b: &[u8]) {
        self.varint(field << 3 | 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn string(&mut self, field: u64, s: &str) {
        self.bytes(field, s.as_bytes());
    }

    fn msg(&mut self, field: u64, m: Msg) {
        self.bytes(field, &m.0);
    }

    fn bool(&mut self, field: u64, b: bool) {
        if b {
            self.varint(field << 3);
            self.varint(1);
        }
    }
}

/// `NamedAny { name = 1; value = 2 (Any { yaml = 2 }) }`.
fn named_any(name: &str, value: &Value) -> Msg {
    let mut any = Msg::default();
    any.string(2, &value.to_string());
    let mut m = Msg::default();
    m.string(1, name);
    m.msg(2, any);
    m
}

/// `NamedSchema { name = 1; value = 2 }`.
fn named_schema(name: &str, schema: &Value) -> Msg {
    let mut m = Msg::default();
    m.string(1, name);
    m.msg(2, schema_msg(schema));
    m
}

/// gnostic's `Schema`: $ref 1, format 2, title 3, description 4, required 19,
/// additionalProperties 21, type 22, items 23, allOf 24, properties 25, readOnly 27,
/// vendor extensions 31.
fn schema_msg(s: &Value) -> Msg {
    let mut m = Msg::default();
    let Some(o) = s.as_object() else {
        return m;
    };
    let text = |k: &str| o.get(k).and_then(Value::as_str);
    if let Some(r) = text("$ref") {
        m.string(1, r);
    }
    if let Some(f) = text("format") {
        m.string(2, f);
    }
    if let Some(t) = text("title") {
        m.string(3, t);
    }
    if let Some(d) = text("description") {
        m.string(4, d);
    }
    for r in o
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(r) = r.as_str() {
            m.string(19, r);
        }
    }
    match o.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let mut item = Msg::default();
            item.bool(2, *b);
            m.msg(21, item);
        }
        Some(v @ Value::Object(_)) => {
            let mut item = Msg::default();
            item.msg(1, schema_msg(v));
            m.msg(21, item);
        }
        _ => {}
    }
    let types: Vec<&str> = match o.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !types.is_empty() {
        let mut item = Msg::default();
        for t in types {
            item.string(1, t);
        }
        m.msg(22, item);
    }
    if let Some(items) = o.get("items").filter(|i| i.is_object()) {
        let mut item = Msg::default();
        item.msg(1, schema_msg(items));
        m.msg(23, item);
    }
    for s in o
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        m.msg(24, schema_msg(s));
    }
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        let mut p = Msg::default();
        for (name, schema) in props {
            p.msg(1, named_schema(name, schema));
        }
        m.msg(25, p);
    }
    if o.get("readOnly").and_then(Value::as_bool) == Some(true) {
        m.bool(27, true);
    }
    extensions(&mut m, 31, o);
    m
}

fn extensions(m: &mut Msg, field: u64, o: &Map<String, Value>) {
    for (k, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
        m.msg(field, named_any(k, v));
    }
}

/// A query parameter: `ParametersItem { parameter = 1 (Parameter { non_body_parameter = 2
/// (NonBodyParameter { query_parameter_sub_schema = 3 (QueryParameterSubSchema { in = 2;
/// name = 4; type = 6 }) }) }) }`.
fn parameter(p: &Value) -> Msg {
    let mut q = Msg::default();
    q.string(2, p["in"].as_str().unwrap_or("query"));
    q.string(4, p["name"].as_str().unwrap_or(""));
    q.string(6, p["type"].as_str().unwrap_or("string"));
    let mut non_body = Msg::default();
    non_body.msg(3, q);
    let mut param = Msg::default();
    param.msg(2, non_body);
    let mut item = Msg::default();
    item.msg(1, param);
    item
}

/// `Operation { parameters = 8; responses = 9; vendor_extension = 13 }`, each response a
/// `NamedResponseValue { name = 1; value = 2 (ResponseValue { response = 1 (Response {
/// description = 1 }) }) }`.
fn operation(op: &Value) -> Msg {
    let mut m = Msg::default();
    for p in op["parameters"].as_array().into_iter().flatten() {
        m.msg(8, parameter(p));
    }
    let mut responses = Msg::default();
    for (code, r) in op["responses"].as_object().into_iter().flatten() {
        let mut response = Msg::default();
        response.string(1, r["description"].as_str().unwrap_or(""));
        let mut value = Msg::default();
        value.msg(1, response);
        let mut named = Msg::default();
        named.string(1, code);
        named.msg(2, value);
        responses.msg(1, named);
    }
    m.msg(9, responses);
    if let Some(o) = op.as_object() {
        extensions(&mut m, 13, o);
    }
    m
}

/// `PathItem { get = 2; put = 3; post = 4; delete = 5; options = 6; head = 7; patch = 8 }`.
fn path_item(item: &Value) -> Msg {
    let mut m = Msg::default();
    for (field, verb) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = item.get(verb) {
            m.msg(field, operation(op));
        }
    }
    m
}

/// `Document { swagger = 1; info = 2 (Info { title = 1; version = 2 }); paths = 8 (Paths {
/// path = 2 (NamedPathItem { name = 1; value = 2 }) }); definitions = 9 (Definitions {
/// additional_properties = 1 }) }`.
pub fn encode(doc: &Value) -> Vec<u8> {
    let mut m = Msg::default();
    m.string(1, doc["swagger"].as_str().unwrap_or("2.0"));
    let mut info = Msg::default();
    info.string(1, doc["info"]["title"].as_str().unwrap_or(""));
    info.string(2, doc["info"]["version"].as_str().unwrap_or(""));
    m.msg(2, info);
    let mut paths = Msg::default();
    for (name, item) in doc["paths"].as_object().into_iter().flatten() {
        let mut named = Msg::default();
        named.string(1, name);
        named.msg(2, path_item(item));
        paths.msg(2, named);
    }
    m.msg(8, paths);
    let mut defs = Msg::default();
    for (name, schema) in doc["definitions"].as_object().into_iter().flatten() {
        defs.msg(1, named_schema(name, schema));
    }
    m.msg(9, defs);
    m.0
}

/// The served document, encoded once (it is a function of the binary).
pub fn served() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| encode(crate::v2::document()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn writes_fields_by_number() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "K", "version": "v"},
            "paths": {},
            "definitions": {"A": {"type": "object", "description": "d",
                                  "x-k": [1]}},
        });
        let bytes = encode(&doc);
        let schema = [
            vec![0x22, 1, b'd'],
            vec![0xb2, 0x01, 8, 0x0a, 6],
            b"object".to_vec(),
            vec![0xfa, 0x01, 12, 0x0a, 3],
            b"x-k".to_vec(),
            vec![0x12, 5, 0x12, 3],
            b"[1]".to_vec(),
        ]
        .concat();
        let named = [vec![0x0a, 1, b'A', 0x12, schema.len() as u8], schema].concat();
        let defs = [vec![0x0a, named.len() as u8], named].concat();
        let expected = [
            vec![0x0a, 3],
            b"2.0".to_vec(),
            vec![0x12, 6, 0x0a, 1, b'K', 0x12, 1, b'v'],
            vec![0x42, 0],
            vec![0x4a, defs.len() as u8],
            defs,
        ]
        .concat();
        assert_eq!(bytes, expected);
    }

    #[test]
    fn encodes_the_served_document() {
        let bytes = served();
        assert!(bytes.len() > 100_000, "{}", bytes.len());
        let text = String::from_utf8_lossy(bytes);
        assert!(text.contains("io.k8s.api.core.v1.Pod"));
        assert!(text.contains("x-kubernetes-group-version-kind"));
        assert!(text.contains("fieldValidation"));
    }
}
