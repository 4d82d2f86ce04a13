//! Strict field validation (`fieldValidation=Strict|Warn`): unknown and duplicate fields.
//!
//! The schema comes from the `k8s-openapi` types: the object is decoded into its typed form
//! (which drops fields it does not know) and encoded again; every key of the input that did
//! not survive the round trip is unknown. Null values are skipped because a known optional
//! field set to null also disappears.

use serde_json::Value;

/// Paths of fields in `obj` that the schema of `kind` does not know, in kube-apiserver's
/// form (`spec.containers[0].foo`). Empty when every field is known.
pub fn unknown_fields(kind: &str, obj: &Value) -> Vec<String> {
    let Ok(Some(typed)) = round_trip(kind, obj) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    compare(obj, &typed, "", &mut out);
    out
}

/// Removes the fields [`unknown_fields`] reports (`fieldValidation=Ignore`, and `Warn`
/// after the warnings are sent), as upstream's decoder drops them.
pub fn drop_unknown_fields(kind: &str, obj: &mut Value) {
    let Ok(Some(typed)) = round_trip(kind, obj) else {
        return;
    };
    prune(obj, &typed);
}

fn prune(input: &mut Value, typed: &Value) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            a.retain(|k, v| v.is_null() || b.contains_key(k));
            for (k, v) in a.iter_mut() {
                if let Some(t) = b.get(k) {
                    prune(v, t);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (x, y) in a.iter_mut().zip(b) {
                prune(x, y);
            }
        }
        _ => {}
    }
}

/// Why `obj` cannot be decoded as a `kind` at all (a field of the wrong type, bad base64),
/// in kube-apiserver's wording (`Pod in version "v1" cannot be handled as a Pod: …`).
/// `None` when it decodes or the kind has no schema here.
pub fn decode_error(kind: &str, obj: &Value) -> Option<String> {
    match round_trip(kind, obj) {
        Err(e) => {
            let version = obj
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or("v1");
            let version = version.rsplit('/').next().unwrap_or(version);
            Some(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: {e}"
            ))
        }
        Ok(_) => None,
    }
}

/// Decodes into the typed struct of `kind` and encodes again; `Ok(None)` for kinds that are
/// not served (they have no schema here).
fn round_trip(kind: &str, obj: &Value) -> Result<Option<Value>, serde_json::Error> {
    let Some(info) = crate::resources::lookup_any_kind(kind) else {
        return Ok(None);
    };
    let mut v = obj.clone();
    quantities_as_strings(&mut v);
    info.strategy.round_trip(v).map(Some)
}

/// Kubernetes accepts `cpu: 1` as a quantity; the typed `Quantity` wants a string.
fn quantities_as_strings(v: &mut Value) {
    const QUANTITY_MAPS: &[&str] = &[
        "limits",
        "requests",
        "capacity",
        "allocatable",
        "hard",
        "used",
        // A LimitRange item's bounds (its `limits` is the list of items).
        "max",
        "min",
        "default",
        "defaultRequest",
        "maxLimitRequestRatio",
    ];
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if QUANTITY_MAPS.contains(&k.as_str()) {
                    match child {
                        Value::Object(q) => {
                            for val in q.values_mut() {
                                if let Value::Number(n) = val {
                                    *val = Value::String(n.to_string());
                                }
                            }
                        }
                        other => quantities_as_strings(other),
                    }
                } else if matches!(k.as_str(), "divisor" | "sizeLimit") {
                    if let Value::Number(n) = child {
                        *child = Value::String(n.to_string());
                    }
                } else {
                    quantities_as_strings(child);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(quantities_as_strings),
        _ => {}
    }
}

fn compare(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match b.get(k) {
                    None => out.push(p),
                    Some(t) => compare(v, t, &p, out),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                compare(x, y, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_unknown_fields() {
        let pod = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"x","labels":{"any":"k"},"bogus":1},
            "spec":{"containers":[{"name":"a","image":"i","foo":true,"resources":{"limits":{"cpu":1}},
              "ports":[{"containerPort":80,"hostIP":null,"portt":1}]}],"securityContext":{}},
            "extra":{}});
        let mut got = unknown_fields("Pod", &pod);
        got.sort();
        assert_eq!(
            got,
            vec![
                "extra",
                "metadata.bogus",
                "spec.containers[0].foo",
                "spec.containers[0].ports[0].portt"
            ]
        );
    }

    #[test]
    fn clean_objects_and_other_kinds() {
        let cm = json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"},"data":{"a":"b"},"immutable":false});
        assert!(unknown_fields("ConfigMap", &cm).is_empty());
        let svc = json!({"apiVersion":"v1","kind":"Service","metadata":{"name":"s"},
            "spec":{"ports":[{"port":80,"targetPort":"http"}],"selector":{"a":"b"},"tpye":"x"}});
        assert_eq!(unknown_fields("Service", &svc), vec!["spec.tpye"]);
        assert!(unknown_fields("Widget", &json!({"x":1})).is_empty());
        let lease = json!({"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l"},
            "spec":{"holderIdentity":"n","leaseDurationSeconds":40,"renewTime":"2026-01-02T15:04:05.000000Z"}});
        assert!(unknown_fields("Lease", &lease).is_empty());
    }

    #[test]
    fn decode_errors() {
        let bad = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},
            "spec":{"containers":[{"name":"a","ports":[{"containerPort":"eighty"}]}]}});
        let msg = decode_error("Pod", &bad).expect("type error");
        assert!(
            msg.starts_with("Pod in version \"v1\" cannot be handled as a Pod: "),
            "{msg}"
        );
        assert!(unknown_fields("Pod", &bad).is_empty());
        assert_eq!(
            decode_error(
                "Pod",
                &json!({"metadata":{"name":"x"},"spec":{"containers":[]}})
            ),
            None
        );
        // `cpu: 1` is a quantity in a LimitRange's bounds too.
        let lr = json!({"apiVersion":"v1","kind":"LimitRange","metadata":{"name":"l"},
            "spec":{"limits":[{"type":"Container","max":{"cpu":2},"min":{"cpu":1},
              "default":{"memory":1024},"defaultRequest":{"cpu":1},"maxLimitRequestRatio":{"cpu":2}}]}});
        assert_eq!(decode_error("LimitRange", &lr), None);
        assert!(unknown_fields("LimitRange", &lr).is_empty());
    }
}
