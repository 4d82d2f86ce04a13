//! PATCH bodies: JSON patch (RFC 6902), merge patch (RFC 7386), strategic merge patch.
//!
//! No Rust crate implements Kubernetes' strategic merge patch, so it lives here, driven by a
//! table of the `patchStrategy`/`patchMergeKey` tags of the built-in types (k8s.io/api).
//! Lists without a tag are replaced whole, as upstream does.

use serde_json::{Map, Value};

use crate::resources::lookup_any_kind;
use apimachinery::strategy::{ListStrategy, Strategy};

#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// A JSON patch body that is not a list of operations.
    #[error(transparent)]
    Malformed(serde_json::Error),
    /// A merge or strategic merge patch that is not a JSON object.
    #[error("{patch_type} patch must be a JSON object, got {got}")]
    NotAnObject {
        patch_type: &'static str,
        got: Value,
    },
    /// A JSON patch operation that does not apply to the document.
    #[error(transparent)]
    Operation(json_patch::PatchError),
    /// A `$patch` directive other than `replace`, `delete` and `merge`.
    #[error("Unknown patch type: {0}")]
    UnknownDirective(Value),
    /// A directive (`$retainKeys`, `$setElementOrder/…`, `$deleteFromPrimitiveList/…`) whose
    /// value is not a list.
    #[error("invalid {directive} value: {value}")]
    InvalidDirective { directive: String, value: Value },
    /// A list element without its list's merge key.
    #[error("map: {item} does not contain declared merge key: {key}")]
    MissingMergeKey { item: Value, key: String },
}

impl PatchError {
    /// Whether the body itself is unreadable (400), as opposed to a patch that does not
    /// apply to the object (422).
    pub fn is_malformed(&self) -> bool {
        matches!(
            self,
            PatchError::Malformed(_) | PatchError::NotAnObject { .. }
        )
    }
}

pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_value(patch.clone()).map_err(PatchError::Malformed)?;
    let mut out = doc.clone();
    json_patch::patch(&mut out, &ops).map_err(PatchError::Operation)?;
    Ok(out)
}

pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::NotAnObject {
            patch_type: "merge",
            got: patch.clone(),
        });
    }
    let mut out = doc.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// Strategic merge patch for built-in `kind`, with Kubernetes' merge keys and directives
/// (`$patch`, `$setElementOrder/…`, `$retainKeys`, `$deleteFromPrimitiveList/…`).
pub fn strategic_merge_patch(kind: &str, doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::NotAnObject {
            patch_type: "strategic merge",
            got: patch.clone(),
        });
    };
    let orig = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let ctx = Ctx {
        strategy: lookup_any_kind(kind).map(|info| info.strategy),
        path: Vec::new(),
    };
    Ok(Value::Object(merge_map(&ctx, orig, p)?))
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_PRIMITIVE: &str = "$deleteFromPrimitiveList/";

/// Where in the object a map being merged sits: the kind's strategy (none for a kind that
/// is not served) and the field names leading to it.
#[derive(Clone)]
struct Ctx {
    strategy: Option<&'static dyn Strategy>,
    path: Vec<String>,
}

impl Ctx {
    fn child(&self, field: &str) -> Self {
        let mut path = self.path.clone();
        path.push(field.to_string());
        Ctx {
            strategy: self.strategy,
            path,
        }
    }

    /// The merge strategy of list `field` of the map at this context.
    fn list_strategy(&self, field: &str) -> ListStrategy {
        list_strategy_in(self.strategy, &self.path, field)
    }
}

/// The merge strategy of list `field` of the map reached by the field names `path` in an
/// object of `kind` (the k8s.io/api tags): those of the shared types (metadata, pod specs,
/// conditions) here, the rest from the kind's strategy. Server-side apply keys lists the
/// same way.
pub fn list_strategy(kind: &str, path: &[String], field: &str) -> ListStrategy {
    list_strategy_in(lookup_any_kind(kind).map(|info| info.strategy), path, field)
}

fn list_strategy_in(
    strategy: Option<&'static dyn Strategy>,
    path: &[String],
    field: &str,
) -> ListStrategy {
    let parent = path.last().map(String::as_str).unwrap_or("");
    let in_container = matches!(
        parent,
        "containers" | "initContainers" | "ephemeralContainers"
    );
    let in_spec = parent == "spec";
    match field {
        "finalizers" if parent == "metadata" || in_spec => ListStrategy::Set,
        "ownerReferences" if parent == "metadata" => ListStrategy::Key("uid"),
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "volumes"
        | "imagePullSecrets"
        | "schedulingGates"
        | "resourceClaims"
            if in_spec =>
        {
            ListStrategy::Key("name")
        }
        "hostAliases" if in_spec => ListStrategy::Key("ip"),
        "topologySpreadConstraints" if in_spec => ListStrategy::Key("topologyKey"),
        "ports" if in_container => ListStrategy::Key("containerPort"),
        "env" if in_container => ListStrategy::Key("name"),
        "volumeMounts" if in_container => ListStrategy::Key("mountPath"),
        "volumeDevices" if in_container => ListStrategy::Key("devicePath"),
        "conditions" if parent == "status" => ListStrategy::Key("type"),
        "podIPs" | "hostIPs" if parent == "status" => ListStrategy::Key("ip"),
        _ => strategy
            .and_then(|s| s.list_strategy(path, field))
            .unwrap_or(ListStrategy::Replace),
    }
}

fn merge_map(
    ctx: &Ctx,
    mut orig: Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(d) = patch.get(DIRECTIVE) {
        match d.as_str() {
            Some("replace") => {
                // The patch is the whole new map; its own nested directives still apply.
                let mut rest = patch.clone();
                rest.remove(DIRECTIVE);
                return merge_map(ctx, Map::new(), &rest);
            }
            Some("delete") => return Ok(Map::new()),
            Some("merge") => {}
            _ => return Err(PatchError::UnknownDirective(d.clone())),
        }
    }
    if let Some(keys) = patch.get(RETAIN_KEYS) {
        let Some(keys) = keys.as_array() else {
            return Err(PatchError::InvalidDirective {
                directive: RETAIN_KEYS.to_string(),
                value: keys.clone(),
            });
        };
        let keep: Vec<&str> = keys.iter().filter_map(Value::as_str).collect();
        orig.retain(|k, _| keep.contains(&k.as_str()));
    }
    let mut orders: Vec<(&str, &Vec<Value>)> = Vec::new();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix(DELETE_PRIMITIVE) {
            let Some(remove) = v.as_array() else {
                return Err(PatchError::InvalidDirective {
                    directive: k.clone(),
                    value: v.clone(),
                });
            };
            if let Some(Value::Array(list)) = orig.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
        } else if let Some(field) = k.strip_prefix(SET_ORDER) {
            let Some(order) = v.as_array() else {
                return Err(PatchError::InvalidDirective {
                    directive: k.clone(),
                    value: v.clone(),
                });
            };
            orders.push((field, order));
        }
    }
    for (k, pv) in patch {
        if k == DIRECTIVE
            || k == RETAIN_KEYS
            || k.starts_with(SET_ORDER)
            || k.starts_with(DELETE_PRIMITIVE)
        {
            continue;
        }
        if pv.is_null() {
            orig.remove(k);
            continue;
        }
        let child = ctx.child(k);
        let merged = match (orig.remove(k), pv) {
            (Some(Value::Object(o)), Value::Object(p)) => Value::Object(merge_map(&child, o, p)?),
            (Some(Value::Array(o)), Value::Array(p)) => Value::Array(merge_list(ctx, k, o, p)?),
            (_, Value::Object(p)) => Value::Object(merge_map(&child, Map::new(), p)?),
            (_, Value::Array(p)) => Value::Array(merge_list(ctx, k, Vec::new(), p)?),
            (_, scalar) => scalar.clone(),
        };
        orig.insert(k.clone(), merged);
    }
    for (field, order) in orders {
        let strategy = ctx.list_strategy(field);
        if let Some(Value::Array(list)) = orig.get_mut(field) {
            let taken = std::mem::take(list);
            *list = apply_order(taken, order, strategy);
        }
    }
    Ok(orig)
}

/// The merge key value of a list element, or an error naming the missing key as upstream.
fn key_of<'v>(item: &'v Value, key: &str) -> Result<&'v Value, PatchError> {
    match item.get(key) {
        Some(v) => Ok(v),
        None => Err(PatchError::MissingMergeKey {
            item: item.clone(),
            key: key.to_string(),
        }),
    }
}

fn merge_list(
    ctx: &Ctx,
    field: &str,
    orig: Vec<Value>,
    patch: &[Value],
) -> Result<Vec<Value>, PatchError> {
    let strategy = ctx.list_strategy(field);
    let elem_ctx = ctx.child(field);
    let is_replace = |v: &Value| v.get(DIRECTIVE).and_then(Value::as_str) == Some("replace");
    match strategy {
        ListStrategy::Replace => patch.iter().map(|v| strip(&elem_ctx, v)).collect(),
        ListStrategy::Set => {
            if patch.iter().any(is_replace) {
                return Ok(patch.iter().filter(|v| !is_replace(v)).cloned().collect());
            }
            let mut out = orig;
            for v in patch {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(out)
        }
        ListStrategy::Key(key) => {
            // `{"$patch":"replace"}` among the elements: the rest of the patch list is the
            // whole new list.
            if patch.iter().any(is_replace) {
                return patch
                    .iter()
                    .filter(|v| !is_replace(v))
                    .map(|v| strip(&elem_ctx, v))
                    .collect();
            }
            let mut out = orig;
            for pv in patch {
                let Value::Object(pm) = pv else {
                    // Scalars in a keyed list: upstream merges them as a set.
                    if !out.contains(pv) {
                        out.push(pv.clone());
                    }
                    continue;
                };
                let kv = key_of(pv, key)?;
                let pos = out.iter().position(|o| o.get(key) == Some(kv));
                match pm.get(DIRECTIVE).and_then(Value::as_str) {
                    Some("delete") => {
                        out.retain(|o| o.get(key) != Some(kv));
                        continue;
                    }
                    Some("replace") | Some("merge") | None => {}
                    Some(_) => return Err(PatchError::UnknownDirective(pm[DIRECTIVE].clone())),
                }
                match pos {
                    Some(i) => {
                        let base = match std::mem::take(&mut out[i]) {
                            Value::Object(m) => m,
                            _ => Map::new(),
                        };
                        out[i] = Value::Object(merge_map(&elem_ctx, base, pm)?);
                    }
                    None => out.push(Value::Object(merge_map(&elem_ctx, Map::new(), pm)?)),
                }
            }
            Ok(out)
        }
    }
}

/// A patch value with directives applied against nothing (what a new field becomes).
fn strip(ctx: &Ctx, v: &Value) -> Result<Value, PatchError> {
    match v {
        Value::Object(m) => Ok(Value::Object(merge_map(ctx, Map::new(), m)?)),
        other => Ok(other.clone()),
    }
}

/// Applies `$setElementOrder`: elements named in `order` come in that order; elements only
/// the server has keep their relative place, interleaved as upstream's `mergeSortedSlice`.
fn apply_order(list: Vec<Value>, order: &[Value], strategy: ListStrategy) -> Vec<Value> {
    let ident = |v: &Value| -> Value {
        match strategy {
            ListStrategy::Key(k) => v.get(k).cloned().unwrap_or(Value::Null),
            _ => v.clone(),
        }
    };
    let order_ids: Vec<Value> = order.iter().map(&ident).collect();
    let server_pos = |v: &Value, list: &[Value]| list.iter().position(|x| ident(x) == ident(v));
    let original = list.clone();
    let (mut ordered, server_only): (Vec<Value>, Vec<Value>) = list
        .into_iter()
        .partition(|v| order_ids.contains(&ident(v)));
    ordered.sort_by_key(|v| {
        order_ids
            .iter()
            .position(|o| *o == ident(v))
            .unwrap_or(usize::MAX)
    });
    let mut out = Vec::with_capacity(ordered.len() + server_only.len());
    let (mut i, mut j) = (0, 0);
    while i < ordered.len() && j < server_only.len() {
        let left = server_pos(&ordered[i], &original);
        let right = server_pos(&server_only[j], &original);
        let take_left = matches!((left, right), (Some(l), Some(r)) if l < r);
        if take_left {
            out.push(ordered[i].clone());
            i += 1;
        } else {
            out.push(server_only[j].clone());
            j += 1;
        }
    }
    out.extend_from_slice(&ordered[i..]);
    out.extend_from_slice(&server_only[j..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","labels":{"app":"web","x":"1"},
            "finalizers":["a"]},
          "spec":{"containers":[
            {"name":"main","image":"nginx:1.25","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],
             "ports":[{"containerPort":80,"protocol":"TCP"}],"args":["x","y"]},
            {"name":"side","image":"busybox"}],
           "tolerations":[{"key":"k","operator":"Exists"}],
           "volumes":[{"name":"d","emptyDir":{}}]}})
    }

    #[test]
    fn set_image_as_kubectl_sends_it() {
        let patch = json!({"spec":{"$setElementOrder/containers":[{"name":"main"},{"name":"side"}],
            "containers":[{"image":"nginx:1.27","name":"main"}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["spec"]["containers"][0]["image"], "nginx:1.27");
        assert_eq!(
            out["spec"]["containers"][0]["env"].as_array().map(Vec::len),
            Some(2)
        );
        assert_eq!(out["spec"]["containers"][1]["name"], "side");
    }

    #[test]
    fn deployment_template_and_rollout_restart() {
        let d = json!({"spec":{"template":{"metadata":{"labels":{"app":"w"}},"spec":{"containers":[{"name":"c","image":"a"}]}}}});
        let patch = json!({"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"now"}},
            "spec":{"containers":[{"name":"c2","image":"b"}]}}}});
        let out = strategic_merge_patch("Deployment", &d, &patch).expect("patch");
        assert_eq!(
            out["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"],
            "now"
        );
        assert_eq!(out["spec"]["template"]["metadata"]["labels"]["app"], "w");
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str())
            .collect();
        assert_eq!(names, ["c", "c2"]);
    }

    #[test]
    fn client_side_apply_patch() {
        // What `kubectl apply` sends after the user removed env B, changed the port list and
        // dropped label x.
        let patch = json!({"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}\n"},
            "labels":{"x":null}},
          "spec":{"$setElementOrder/containers":[{"name":"main"},{"name":"side"}],
            "containers":[{"$setElementOrder/env":[{"name":"A"}],"env":[{"$patch":"delete","name":"B"}],
              "name":"main","args":["z"]}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["metadata"]["labels"], json!({"app":"web"}));
        assert_eq!(
            out["spec"]["containers"][0]["env"],
            json!([{"name":"A","value":"1"}])
        );
        // Lists without a merge key are replaced.
        assert_eq!(out["spec"]["containers"][0]["args"], json!(["z"]));
        assert_eq!(
            out["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"],
            "{}\n"
        );
    }

    #[test]
    fn directives() {
        // $patch: replace on a list.
        let patch =
            json!({"spec":{"containers":[{"name":"only","image":"x"},{"$patch":"replace"}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name":"only","image":"x"}])
        );
        // $patch: replace on a map.
        let patch = json!({"metadata":{"labels":{"$patch":"replace","new":"1"}}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["metadata"]["labels"], json!({"new":"1"}));
        // $patch: delete on a map.
        let patch = json!({"spec":{"containers":[{"name":"main","ports":[{"containerPort":80,"$patch":"delete"}]}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["spec"]["containers"][0]["ports"], json!([]));
        let patch = json!({"metadata":{"labels":{"$patch":"delete"}}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["metadata"]["labels"], json!({}));
        // finalizers merge as a set; $deleteFromPrimitiveList removes.
        let patch = json!({"metadata":{"finalizers":["b","a"]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["metadata"]["finalizers"], json!(["a", "b"]));
        let patch = json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["a"]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["metadata"]["finalizers"], json!([]));
        // $retainKeys drops fields of the original not listed.
        let patch = json!({"spec":{"volumes":[{"name":"d","$retainKeys":["name","hostPath"],"hostPath":{"path":"/x"}}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(
            out["spec"]["volumes"],
            json!([{"name":"d","hostPath":{"path":"/x"}}])
        );
        // Unknown directive.
        let patch = json!({"metadata":{"$patch":"explode"}});
        assert!(strategic_merge_patch("Pod", &pod(), &patch).is_err());
    }

    #[test]
    fn tolerations_replace_and_missing_key() {
        let patch = json!({"spec":{"tolerations":[{"key":"z","operator":"Exists"}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(
            out["spec"]["tolerations"],
            json!([{"key":"z","operator":"Exists"}])
        );
        let patch = json!({"spec":{"containers":[{"image":"x"}]}});
        let err = strategic_merge_patch("Pod", &pod(), &patch).expect_err("no merge key");
        assert!(err
            .to_string()
            .contains("does not contain declared merge key: name"));
        assert!(strategic_merge_patch("Pod", &pod(), &json!([1])).is_err());
    }

    #[test]
    fn debug_ephemeral_and_status_conditions() {
        let patch = json!({"spec":{"$setElementOrder/ephemeralContainers":[{"name":"debugger-1"}],
            "ephemeralContainers":[{"name":"debugger-1","image":"busybox","stdin":true,"tty":true}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["spec"]["ephemeralContainers"][0]["name"], "debugger-1");
        let with_status = json!({"status":{"conditions":[{"type":"Ready","status":"False"},{"type":"Initialized","status":"True"}]}});
        let patch = json!({"status":{"conditions":[{"type":"Ready","status":"True"}]}});
        let out = strategic_merge_patch("Pod", &with_status, &patch).expect("patch");
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type":"Ready","status":"True"},{"type":"Initialized","status":"True"}])
        );
    }

    #[test]
    fn set_element_order_reorders() {
        let patch =
            json!({"spec":{"$setElementOrder/containers":[{"name":"side"},{"name":"main"}]}});
        let out = strategic_merge_patch("Pod", &pod(), &patch).expect("patch");
        assert_eq!(out["spec"]["containers"][0]["name"], "side");
        assert_eq!(out["spec"]["containers"][1]["name"], "main");
    }

    #[test]
    fn service_ports_by_port() {
        let svc = json!({"spec":{"ports":[{"port":80,"targetPort":8080},{"port":443}]}});
        let patch = json!({"spec":{"ports":[{"port":80,"targetPort":9090}]}});
        let out = strategic_merge_patch("Service", &svc, &patch).expect("patch");
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port":80,"targetPort":9090},{"port":443}])
        );
    }

    #[test]
    fn kind_lists_come_from_the_strategy() {
        let node = json!({"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.1"},{"type":"Hostname","address":"n1"}]}});
        let patch = json!({"status":{"addresses":[{"type":"InternalIP","address":"10.0.0.2"}]}});
        let out = strategic_merge_patch("Node", &node, &patch).expect("patch");
        assert_eq!(out["status"]["addresses"][0]["address"], "10.0.0.2");
        assert_eq!(out["status"]["addresses"][1]["address"], "n1");
        // The same list of another kind has no merge key: it is replaced.
        let out = strategic_merge_patch("Pod", &node, &patch).expect("patch");
        assert_eq!(out["status"]["addresses"], patch["status"]["addresses"]);
    }

    #[test]
    fn json_and_merge() {
        let doc = json!({"spec":{"replicas":1,"list":[1,2]}});
        let out = merge_patch(&doc, &json!({"spec":{"replicas":3,"list":[3]}})).expect("merge");
        assert_eq!(out, json!({"spec":{"replicas":3,"list":[3]}}));
        let out = merge_patch(&doc, &json!({"spec":{"list":null}})).expect("merge");
        assert_eq!(out, json!({"spec":{"replicas":1}}));
        let ops = json!([{"op":"replace","path":"/spec/replicas","value":5},{"op":"add","path":"/spec/list/-","value":9}]);
        let out = json_patch(&doc, &ops).expect("json patch");
        assert_eq!(out, json!({"spec":{"replicas":5,"list":[1,2,9]}}));
        assert!(matches!(
            json_patch(&doc, &json!({"op":"x"})),
            Err(PatchError::Malformed(_))
        ));
        let bad = json!([{"op":"remove","path":"/nope"}]);
        assert!(matches!(
            json_patch(&doc, &bad),
            Err(PatchError::Operation(_))
        ));
        let test_fail = json!([{"op":"test","path":"/spec/replicas","value":2}]);
        assert!(json_patch(&doc, &test_fail).is_err());
    }
}
