//! The `scale` subresource: an autoscaling/v1 `Scale` view of any kind whose strategy says
//! where it keeps its replica counts and selector ([`ScalePaths`]). GET builds the Scale
//! from the object; PUT and PATCH change the Scale and write its `spec.replicas` back into
//! the object through the ordinary update path (defaults, validation, generation), as
//! kube-apiserver's per-kind scale storage does. `kubectl scale` and autoscalers use it.

use serde_json::{json, Value};

use api::field_errors::FieldErrors;
use api::json::at;
use api::resources::ResourceInfo;
use api::strategy::ScalePaths;

use crate::error::ApiError;
use crate::objects::{parse_patch_body, Part, PatchType, Registry, WriteOptions};

/// The kind's scale paths; 404 for kinds without the subresource.
fn paths(info: &ResourceInfo) -> Result<&'static ScalePaths, ApiError> {
    info.strategy.scale().ok_or(ApiError::PathNotFound)
}

fn int_at(obj: &Value, path: &[&str]) -> i64 {
    at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

/// The Scale of `obj` (upstream `scaleFromReplicaSet` and friends).
pub fn scale_of(paths: &ScalePaths, obj: &Value) -> Value {
    let meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let mut m = serde_json::Map::new();
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = meta.get(k) {
            m.insert(k.into(), v.clone());
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": m,
        "spec": {"replicas": int_at(obj, paths.spec_replicas)},
        "status": {
            "replicas": int_at(obj, paths.status_replicas),
            "selector": api::labelselector::to_string(at(obj, paths.selector)),
        },
    })
}

/// `ValidateScale`: the replicas a Scale asks for.
fn desired_replicas(scale: &Value, name: &str) -> Result<i64, ApiError> {
    let mut e = FieldErrors::default();
    let n = match scale.pointer("/spec/replicas") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64().and_then(|n| i32::try_from(n).ok()) {
            Some(n) if n >= 0 => i64::from(n),
            Some(n) => {
                e.invalid(
                    "spec.replicas",
                    &Value::from(n),
                    "must be greater than or equal to 0",
                );
                0
            }
            None => {
                e.invalid("spec.replicas", v, "must be a 32-bit integer");
                0
            }
        },
    };
    e.finish().map_err(|causes| ApiError::Invalid {
        kind: "Scale".into(),
        group: "autoscaling".into(),
        name: name.to_string(),
        causes,
    })?;
    Ok(n)
}

/// `obj` with its desired replicas set to `n`.
fn with_replicas(paths: &ScalePaths, obj: &Value, n: i64) -> Value {
    let mut out = obj.clone();
    let mut cur = &mut out;
    let (last, parents) = match paths.spec_replicas.split_last() {
        Some(split) => split,
        None => return out,
    };
    for p in parents {
        let Some(map) = cur.as_object_mut() else {
            return obj.clone();
        };
        cur = map.entry(p.to_string()).or_insert_with(|| json!({}));
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert(last.to_string(), json!(n));
    }
    out
}

impl Registry {
    /// GET `.../NAME/scale`.
    pub async fn get_scale(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let paths = paths(info)?;
        let obj = self.get(info, namespace, name).await?;
        Ok(scale_of(paths, &obj))
    }

    /// PUT `.../NAME/scale` with a Scale; a resourceVersion in it must be the object's.
    pub async fn update_scale(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let paths = paths(info)?;
        if let Some(n) = body.pointer("/metadata/name").and_then(Value::as_str) {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        let replicas = desired_replicas(&body, name)?;
        let expected = match body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
        {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
            ),
        };
        let key = Self::key(info, namespace, name);
        let stored = self
            .retry_update(
                info,
                &key,
                expected,
                |old| Ok(with_replicas(paths, old, replicas)),
                Part::Object,
                opts.dry_run,
                opts.writer(info, "scale").as_ref(),
            )
            .await?;
        Ok(scale_of(paths, &stored))
    }

    /// PATCH `.../NAME/scale`: the patch applies to the current Scale.
    pub async fn patch_scale(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let paths = paths(info)?;
        let patch = parse_patch_body(patch_type, body)?;
        let expected = patch
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok());
        let key = Self::key(info, namespace, name);
        let stored = self
            .retry_update(
                info,
                &key,
                expected,
                |old| {
                    let current = scale_of(paths, old);
                    let patched = match patch_type {
                        PatchType::Json => api::patch::json_patch(&current, &patch),
                        PatchType::Merge => api::patch::merge_patch(&current, &patch),
                        PatchType::Strategic | PatchType::Apply => {
                            api::patch::strategic_merge_patch("Scale", &current, &patch)
                        }
                    }
                    .map_err(|e| match e {
                        e if e.is_malformed() => ApiError::bad_request(e.to_string()),
                        e => ApiError::Invalid {
                            kind: "Scale".into(),
                            group: "autoscaling".into(),
                            name: name.to_string(),
                            causes: vec![api::validation::FieldError {
                                field: String::new(),
                                reason: api::validation::CauseReason::FieldValueInvalid,
                                message: e.to_string(),
                            }],
                        },
                    })?;
                    let replicas = desired_replicas(&patched, name)?;
                    Ok(with_replicas(paths, old, replicas))
                },
                Part::Object,
                opts.dry_run,
                opts.writer(info, "scale").as_ref(),
            )
            .await?;
        Ok(scale_of(paths, &stored))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use api::strategy::REPLICAS_SCALE;

    #[test]
    fn scale_views_and_writes_replicas() {
        let rs = json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7",
                                     "labels": {"x": "y"}},
                        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}}},
                        "status": {"replicas": 2}});
        let s = scale_of(&REPLICAS_SCALE, &rs);
        assert_eq!(
            s,
            json!({"kind": "Scale", "apiVersion": "autoscaling/v1",
                   "metadata": {"name": "web", "namespace": "ns", "uid": "u", "resourceVersion": "7"},
                   "spec": {"replicas": 3}, "status": {"replicas": 2, "selector": "app=web"}})
        );
        let scaled = with_replicas(&REPLICAS_SCALE, &rs, 5);
        assert_eq!(scaled["spec"]["replicas"], 5);
        assert_eq!(scaled["status"], rs["status"]);
        let bare = with_replicas(&REPLICAS_SCALE, &json!({"metadata": {}}), 1);
        assert_eq!(bare["spec"]["replicas"], 1);
        assert_eq!(scale_of(&REPLICAS_SCALE, &bare)["status"]["replicas"], 0);
    }

    #[test]
    fn negative_replicas_are_invalid() {
        assert_eq!(
            desired_replicas(&json!({"spec": {"replicas": 4}}), "w").ok(),
            Some(4)
        );
        let err = desired_replicas(&json!({"spec": {"replicas": -1}}), "w");
        assert!(matches!(err, Err(ApiError::Invalid { ref kind, .. }) if kind == "Scale"));
    }
}
