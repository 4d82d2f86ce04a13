//! The protobuf wire format as Kubernetes request bodies use it: the error type, a field
//! reader, and the shared messages (object metadata, owner references, maps, IntOrString)
//! the per-kind decoders build on.

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
    #[error("protobuf field {field} of {message} is not supported; send JSON")]
    UnsupportedField { message: &'static str, field: u64 },
}

/// One field of a message: number and value.
pub(super) enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

pub(super) struct Reader<'a> {
    pub(super) buf: &'a [u8],
    pub(super) pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8], base: usize) -> Self {
        Reader { buf, pos: 0, base }
    }

    fn err(&self) -> ProtobufError {
        ProtobufError::Malformed {
            offset: self.base + self.pos,
        }
    }

    pub(super) fn varint(&mut self) -> Result<u64, ProtobufError> {
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

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.err())?;
        self.pos = end;
        Ok(s)
    }

    pub(super) fn next(&mut self) -> Result<Option<(u64, Field<'a>, usize)>, ProtobufError> {
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

pub(super) fn string(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// A `map<string, string|bytes>` entry (key = 1, value = 2).
pub(super) fn map_entry(
    b: &[u8],
    base: usize,
    bytes_value: bool,
) -> Result<(String, Value), ProtobufError> {
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

pub(super) fn insert_map(obj: &mut Map<String, Value>, key: &str, entry: (String, Value)) {
    let m = obj.entry(key).or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = m.as_object_mut() {
        m.insert(entry.0, entry.1);
    }
}

pub(super) fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    let l = obj.entry(key).or_insert_with(|| Value::Array(Vec::new()));
    if let Some(l) = l.as_array_mut() {
        l.push(v);
    }
}

/// ObjectMeta: the fields a client sets on create.
pub(super) fn object_meta(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
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
            (13, Field::Bytes(b)) => push(&mut m, "ownerReferences", owner_reference(b, at)?),
            (14, Field::Bytes(b)) => push(&mut m, "finalizers", string(b)),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

/// OwnerReference: kind 1, name 3, uid 4, apiVersion 5, controller 6, blockOwnerDeletion 7
/// (`kubectl create job --from=cronjob/NAME` sets one).
pub(super) fn owner_reference(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut o = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, _)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => set_string(&mut o, "kind", b),
            (3, Field::Bytes(b)) => set_string(&mut o, "name", b),
            (4, Field::Bytes(b)) => set_string(&mut o, "uid", b),
            (5, Field::Bytes(b)) => set_string(&mut o, "apiVersion", b),
            (6, Field::Varint(v)) => {
                o.insert("controller".into(), json!(v != 0));
            }
            (7, Field::Varint(v)) => {
                o.insert("blockOwnerDeletion".into(), json!(v != 0));
            }
            _ => {}
        }
    }
    Ok(Value::Object(o))
}

/// A non-pointer string field: gogo-protobuf writes it even when empty, which JSON would omit.
pub(super) fn set_string(obj: &mut Map<String, Value>, key: &str, b: &[u8]) {
    if !b.is_empty() {
        obj.insert(key.into(), string(b));
    }
}

/// An int32 field (negative values are sign-extended to ten bytes on the wire); 0 is unset.
pub(super) fn set_int(obj: &mut Map<String, Value>, key: &str, v: u64) {
    // Two's complement reinterpretation is the wire format's int32 encoding.
    let n = i64::from_ne_bytes(v.to_ne_bytes());
    if n != 0 {
        obj.insert(key.into(), json!(n));
    }
}

/// IntOrString (type = 1 → 0 int, 1 string; intVal = 2; strVal = 3); None for the zero value,
/// which the Service defaults turn into `port`, as JSON's omitted targetPort would be.
pub(super) fn int_or_string(b: &[u8], base: usize) -> Result<Option<Value>, ProtobufError> {
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
