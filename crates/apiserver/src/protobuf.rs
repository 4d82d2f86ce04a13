//! Decoding of `application/vnd.kubernetes.protobuf` request bodies, which kubectl ≥1.32
//! sends for typed creates (`kubectl create namespace|configmap|secret|serviceaccount|service`,
//! and the TokenRequest of `kubectl create token`).
//! A small wire-format reader for the `k8s\0` + `runtime.Unknown` envelope and the few kinds
//! those commands create, turned into the JSON the rest of the server works on. Field numbers
//! are those of k8s.io/api's generated.proto.

use base64::Engine;
use serde_json::{json, Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProtobufError {
    #[error("protobuf body does not start with the k8s\\0 magic")]
    Magic,
    #[error("truncated or malformed protobuf at byte {offset}")]
    Malformed { offset: usize },
    #[error("protobuf bodies of kind {kind:?} are not supported; send JSON")]
    UnsupportedKind { kind: String },
}

/// One field of a message: number and value.
enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn err(&self) -> ProtobufError {
        ProtobufError::Malformed {
            offset: self.base + self.pos,
        }
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let b = *self.buf.get(self.pos).ok_or_else(|| self.err())?;
            self.pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(self.err())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.err())?;
        self.pos = end;
        Ok(s)
    }

    fn next(&mut self) -> Result<Option<(u64, Field<'a>, usize)>, ProtobufError> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => {
                self.take(8)?;
                Field::Fixed
            }
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| self.err())?;
                let start = self.base + self.pos;
                let b = self.take(n)?;
                return Ok(Some((key >> 3, Field::Bytes(b), start)));
            }
            5 => {
                self.take(4)?;
                Field::Fixed
            }
            _ => return Err(self.err()),
        };
        Ok(Some((key >> 3, field, self.base + self.pos)))
    }
}

fn string(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// A `map<string, string|bytes>` entry (key = 1, value = 2).
fn map_entry(b: &[u8], base: usize, bytes_value: bool) -> Result<(String, Value), ProtobufError> {
    let mut r = Reader::new(b, base);
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((n, f, _)) = r.next()? {
        if let Field::Bytes(b) = f {
            match n {
                1 => k = String::from_utf8_lossy(b).into_owned(),
                2 if bytes_value => {
                    v = Value::String(base64::engine::general_purpose::STANDARD.encode(b))
                }
                2 => v = string(b),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn insert_map(obj: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    let m = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = m.as_object_mut() {
        m.insert(entry.0, entry.1);
    }
}

fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    let l = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if let Some(l) = l.as_array_mut() {
        l.push(v);
    }
}

/// ObjectMeta: the fields a client sets on create.
fn object_meta(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut m = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => {
                m.insert("name".into(), string(b));
            }
            (2, Field::Bytes(b)) => {
                m.insert("generateName".into(), string(b));
            }
            (3, Field::Bytes(b)) => {
                m.insert("namespace".into(), string(b));
            }
            (11, Field::Bytes(b)) => insert_map(&mut m, "labels", map_entry(b, at, false)?),
            (12, Field::Bytes(b)) => insert_map(&mut m, "annotations", map_entry(b, at, false)?),
            (14, Field::Bytes(b)) => push(&mut m, "finalizers", string(b)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

/// A non-pointer string field: gogo-protobuf writes it even when empty, which JSON would omit.
fn set_string(obj: &mut Map<String, Value>, key: &str, b: &[u8]) {
    if !b.is_empty() {
        obj.insert(key.into(), string(b));
    }
}

/// An int32 field (negative values are sign-extended to ten bytes on the wire); 0 is unset.
fn set_int(obj: &mut Map<String, Value>, key: &str, v: u64) {
    // Two's complement reinterpretation is the wire format's int32 encoding.
    let n = i64::from_ne_bytes(v.to_ne_bytes());
    if n != 0 {
        obj.insert(key.into(), json!(n));
    }
}

/// IntOrString (type = 1 → 0 int, 1 string; intVal = 2; strVal = 3); None for the zero value,
/// which the Service defaults turn into `port`, as JSON's omitted targetPort would be.
fn int_or_string(b: &[u8], base: usize) -> Result<Option<Value>, ProtobufError> {
    let (mut is_string, mut int_val, mut str_val) = (false, 0u64, String::new());
    let mut r = Reader::new(b, base);
    while let Some((n, f, _)) = r.next()? {
        match (n, f) {
            (1, Field::Varint(v)) => is_string = v == 1,
            (2, Field::Varint(v)) => int_val = v,
            (3, Field::Bytes(b)) => str_val = String::from_utf8_lossy(b).into_owned(),
            _ => {}
        }
    }
    let mut m = Map::new();
    if is_string {
        set_string(&mut m, "v", str_val.as_bytes());
    } else {
        set_int(&mut m, "v", int_val);
    }
    Ok(m.remove("v"))
}

/// ServicePort: name 1, protocol 2, port 3, targetPort 4, nodePort 5, appProtocol 6.
fn service_port(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut p = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => set_string(&mut p, "name", b),
            (2, Field::Bytes(b)) => set_string(&mut p, "protocol", b),
            (3, Field::Varint(v)) => set_int(&mut p, "port", v),
            (4, Field::Bytes(b)) => {
                if let Some(v) = int_or_string(b, at)? {
                    p.insert("targetPort".into(), v);
                }
            }
            (5, Field::Varint(v)) => set_int(&mut p, "nodePort", v),
            (6, Field::Bytes(b)) => set_string(&mut p, "appProtocol", b),
            _ => {}
        }
    }
    Ok(Value::Object(p))
}

/// ServiceSpec: the fields `kubectl create service clusterip|nodeport|loadbalancer|
/// externalname` and `kubectl expose` set.
fn service_spec(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut s = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => push(&mut s, "ports", service_port(b, at)?),
            (2, Field::Bytes(b)) => insert_map(&mut s, "selector", map_entry(b, at, false)?),
            (3, Field::Bytes(b)) => set_string(&mut s, "clusterIP", b),
            (4, Field::Bytes(b)) => set_string(&mut s, "type", b),
            (5, Field::Bytes(b)) => push(&mut s, "externalIPs", string(b)),
            (7, Field::Bytes(b)) => set_string(&mut s, "sessionAffinity", b),
            (10, Field::Bytes(b)) => set_string(&mut s, "externalName", b),
            (11, Field::Bytes(b)) => set_string(&mut s, "externalTrafficPolicy", b),
            (13, Field::Varint(v)) if v != 0 => {
                s.insert("publishNotReadyAddresses".into(), json!(true));
            }
            (17, Field::Bytes(b)) => set_string(&mut s, "ipFamilyPolicy", b),
            (18, Field::Bytes(b)) => push(&mut s, "clusterIPs", string(b)),
            (19, Field::Bytes(b)) => push(&mut s, "ipFamilies", string(b)),
            (22, Field::Bytes(b)) => set_string(&mut s, "internalTrafficPolicy", b),
            _ => {}
        }
    }
    Ok(Value::Object(s))
}

/// TokenRequestSpec: audiences 1, boundObjectRef 3 (kind 1, apiVersion 2, name 3, uid 4),
/// expirationSeconds 4.
fn token_request_spec(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut s = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => push(&mut s, "audiences", string(b)),
            (3, Field::Bytes(b)) => {
                let mut o = Map::new();
                let mut rr = Reader::new(b, at);
                while let Some((n, f, _)) = rr.next()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => set_string(&mut o, "kind", b),
                        (2, Field::Bytes(b)) => set_string(&mut o, "apiVersion", b),
                        (3, Field::Bytes(b)) => set_string(&mut o, "name", b),
                        (4, Field::Bytes(b)) => set_string(&mut o, "uid", b),
                        _ => {}
                    }
                }
                s.insert("boundObjectRef".into(), Value::Object(o));
            }
            (4, Field::Varint(v)) => {
                s.insert(
                    "expirationSeconds".into(),
                    json!(i64::from_ne_bytes(v.to_ne_bytes())),
                );
            }
            _ => {}
        }
    }
    Ok(Value::Object(s))
}

/// Decodes a whole protobuf request body into a JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let raw = body.strip_prefix(b"k8s\0").ok_or(ProtobufError::Magic)?;
    let mut r = Reader::new(raw, 4);
    let (mut api_version, mut kind) = (String::new(), String::new());
    let mut inner: Option<(&[u8], usize)> = None;
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                let mut t = Reader::new(tm, at);
                while let Some((n, f, _)) = t.next()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => api_version = String::from_utf8_lossy(b).into(),
                        (2, Field::Bytes(b)) => kind = String::from_utf8_lossy(b).into(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => inner = Some((b, at)),
            _ => {}
        }
    }
    let (msg, base) = inner.unwrap_or((&[], 0));
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind.clone()));
    let mut r = Reader::new(msg, base);
    while let Some((n, f, at)) = r.next()? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(b)) => {
                obj.insert("metadata".into(), object_meta(b, at)?);
            }
            ("Namespace", 2, Field::Bytes(b)) => {
                let mut spec = Map::new();
                let mut s = Reader::new(b, at);
                while let Some((n, f, _)) = s.next()? {
                    if let (1, Field::Bytes(b)) = (n, f) {
                        push(&mut spec, "finalizers", string(b));
                    }
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
            ("Namespace", _, _) => {}
            ("ConfigMap", 2, Field::Bytes(b)) => {
                insert_map(&mut obj, "data", map_entry(b, at, false)?)
            }
            ("ConfigMap", 3, Field::Bytes(b)) => {
                insert_map(&mut obj, "binaryData", map_entry(b, at, true)?)
            }
            ("ConfigMap", 4, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("ConfigMap", _, _) => {}
            ("Secret", 2, Field::Bytes(b)) => insert_map(&mut obj, "data", map_entry(b, at, true)?),
            ("Secret", 3, Field::Bytes(b)) => {
                obj.insert("type".into(), string(b));
            }
            ("Secret", 4, Field::Bytes(b)) => {
                insert_map(&mut obj, "stringData", map_entry(b, at, false)?)
            }
            ("Secret", 5, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("Secret", _, _) => {}
            ("ServiceAccount", 4, Field::Varint(v)) => {
                obj.insert("automountServiceAccountToken".into(), json!(v != 0));
            }
            ("ServiceAccount", _, _) => {}
            ("Service", 2, Field::Bytes(b)) => {
                obj.insert("spec".into(), service_spec(b, at)?);
            }
            ("Service", _, _) => {}
            ("TokenRequest", 2, Field::Bytes(b)) => {
                obj.insert("spec".into(), token_request_spec(b, at)?);
            }
            ("TokenRequest", _, _) => {}
            _ => return Err(ProtobufError::UnsupportedKind { kind }),
        }
    }
    if !matches!(
        kind.as_str(),
        "Namespace" | "ConfigMap" | "Secret" | "ServiceAccount" | "Service" | "TokenRequest"
    ) {
        return Err(ProtobufError::UnsupportedKind { kind });
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, u8::try_from(b.len()).expect("short")];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_configmap() {
        let mut entry = ld(1, b"a");
        entry.extend(ld(2, b"b"));
        let mut meta = ld(1, b"cfg");
        meta.extend(ld(3, b"default"));
        let mut label = ld(1, b"app");
        label.extend(ld(2, b"x"));
        meta.extend(ld(11, &label));
        let mut cm = ld(1, &meta);
        cm.extend(ld(2, &entry));
        let mut tm = ld(1, b"v1");
        tm.extend(ld(2, b"ConfigMap"));
        let mut body = b"k8s\0".to_vec();
        body.extend(ld(1, &tm));
        body.extend(ld(2, &cm));
        let v = decode(&body).expect("decode");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cfg", "namespace": "default", "labels": {"app": "x"}},
                   "data": {"a": "b"}})
        );
    }

    /// The body kubectl v1.33 sends for `kubectl create service nodeport mydb2 --tcp=5432:db`.
    #[test]
    fn decodes_service_from_kubectl_create() {
        let body: &[u8] = b"k8s\0\x0a\x0d\x0a\x02v1\x12\x07Service\x12\x70\x0a\x23\x0a\x05mydb2\
            \x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x5a\x0c\x0a\x03app\x12\x05mydb2\
            \x12\x45\x0a\x1d\x0a\x075432-db\x12\x03TCP\x18\xb8\x2a\x22\x08\x08\x01\x10\x00\x1a\x02db\
            \x28\x00\x12\x0c\x0a\x03app\x12\x05mydb2\x1a\x00\x22\x08NodePort\x3a\x00\x42\x00\x52\x00\
            \x5a\x00\x60\x00\x68\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
        let v = decode(body).expect("decode");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "mydb2", "generateName": "", "namespace": "",
                                "labels": {"app": "mydb2"}},
                   "spec": {"ports": [{"name": "5432-db", "protocol": "TCP", "port": 5432,
                                       "targetPort": "db"}],
                            "selector": {"app": "mydb2"}, "type": "NodePort"}})
        );
        // An int targetPort, and the zero value left for defaulting.
        assert_eq!(
            int_or_string(b"\x08\x00\x10\xb8\x2a\x1a\x00", 0).expect("int"),
            Some(json!(5432))
        );
        assert_eq!(
            int_or_string(b"\x08\x00\x10\x00\x1a\x00", 0).expect("zero"),
            None
        );
    }

    #[test]
    fn decodes_token_request_from_kubectl_create_token() {
        let bound = [ld(1, b"Pod"), ld(2, b"v1"), ld(3, b"web"), ld(4, b"u-1")].concat();
        let mut spec = [ld(1, b"vault"), ld(3, &bound)].concat();
        spec.extend_from_slice(&[4 << 3, 0x90, 0x1c]); // expirationSeconds 3600
        let tm = [ld(1, b"authentication.k8s.io/v1"), ld(2, b"TokenRequest")].concat();
        let inner = [ld(1, &ld(1, b"default")), ld(2, &spec)].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &inner)].concat();
        assert_eq!(
            decode(&body).expect("decode"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"name": "default"},
                   "spec": {"audiences": ["vault"], "expirationSeconds": 3600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u-1"}}})
        );
    }

    #[test]
    fn rejects_garbage_and_unknown_kinds() {
        assert_eq!(decode(b"nope"), Err(ProtobufError::Magic));
        assert!(matches!(
            decode(b"k8s\0\x0a\xff"),
            Err(ProtobufError::Malformed { .. })
        ));
        let mut tm = ld(1, b"v1");
        tm.extend(ld(2, b"Pod"));
        let mut body = b"k8s\0".to_vec();
        body.extend(ld(1, &tm));
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
    }
}
