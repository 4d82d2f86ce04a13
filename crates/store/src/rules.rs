//! The write rules every backend applies between reading the stored object and writing the
//! new one: create only what is missing, update only what exists (at the expected
//! resourceVersion; a write that changes nothing is not a write), delete under
//! preconditions. Kept apart from any transaction so the embedded and the etcd backend agree.

use serde_json::Value;

use crate::{resource_version_of, ObjectKey, Preconditions, StoreError};

/// What a write wants done to the stored object.
#[derive(Debug, Clone)]
pub enum Change {
    Create(Value),
    Update {
        obj: Value,
        expected_rv: Option<u64>,
    },
    Delete(Preconditions),
}

/// What a write decided, given the stored object.
pub enum WriteOp {
    Put(Value),
    Delete,
    Unchanged(Value),
}

/// Writes `rv` into `metadata.resourceVersion`.
pub fn set_resource_version(key: &ObjectKey, obj: &mut Value, rv: u64) -> Result<(), StoreError> {
    let meta = obj
        .as_object_mut()
        .and_then(|o| {
            o.entry("metadata")
                .or_insert_with(|| Value::Object(Default::default()))
                .as_object_mut()
        })
        .ok_or_else(|| StoreError::NotAnObject { key: key.clone() })?;
    meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    Ok(())
}

/// The write rules, apart from the transaction: create only what is missing, update only
/// what exists (at the expected RV; a no-op writes nothing), delete under preconditions.
pub fn decide(
    key: &ObjectKey,
    current: Option<&Value>,
    change: Change,
) -> Result<WriteOp, StoreError> {
    match change {
        Change::Create(obj) => match current {
            Some(_) => Err(StoreError::AlreadyExists { key: key.clone() }),
            None => Ok(WriteOp::Put(obj)),
        },
        Change::Update { obj, expected_rv } => {
            let Some(current) = current else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            let current_rv = resource_version_of(current);
            if let Some(want) = expected_rv {
                if current_rv != Some(want) {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        reason: format!(
                            "resourceVersion is {}, expected {want}",
                            current_rv.map_or_else(|| "unset".to_string(), |r| r.to_string())
                        ),
                    });
                }
            }
            // Compare with the RV normalised: a write that changes nothing is not a write.
            let mut normalised = obj.clone();
            if let Some(rv) = current_rv {
                set_resource_version(key, &mut normalised, rv)?;
            }
            if &normalised == current {
                return Ok(WriteOp::Unchanged(current.clone()));
            }
            Ok(WriteOp::Put(obj))
        }
        Change::Delete(pre) => {
            let Some(current) = current else {
                return Err(StoreError::NotFound { key: key.clone() });
            };
            if let Some(uid) = &pre.uid {
                let have = current.pointer("/metadata/uid").and_then(Value::as_str);
                if have != Some(uid.as_str()) {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        reason: format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                            have.unwrap_or("")
                        ),
                    });
                }
            }
            if let Some(rv) = pre.resource_version {
                let have = resource_version_of(current);
                if have != Some(rv) {
                    return Err(StoreError::Conflict {
                        key: key.clone(),
                        reason: format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                            have.map_or_else(String::new, |r| r.to_string())
                        ),
                    });
                }
            }
            Ok(WriteOp::Delete)
        }
    }
}
