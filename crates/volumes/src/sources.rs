//! Pure payload building for the API-data volumes, as kubelet's volume plugins do it: which
//! files a configMap, secret, downwardAPI or projected volume (with its service account
//! tokens) holds, with which bytes and modes (`items` select and rename keys, `mode` beats
//! `defaultMode`, `optional` turns a missing object or key into nothing instead of an
//! error).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, Volume,
};

use containerspec::{ContainerSpecError, PodContext};

use crate::atomic::{FileProjection, Payload};

/// kubelet's default file mode for API-data volumes (0644).
pub const DEFAULT_MODE: i32 = 0o644;

/// Why a volume's content could not be computed; the text is what kubelet shows after
/// `MountVolume.SetUp failed for volume "x" : `.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    #[error("configmap references non-existent config key: {key}")]
    ConfigMapKey { key: String },
    #[error("references non-existent secret key: {key}")]
    SecretKey { key: String },
    #[error("downward API volume item {path:?}: {source}")]
    DownwardApi {
        path: String,
        #[source]
        source: Box<ContainerSpecError>,
    },
    #[error(
        "downward API volume item {path:?}: resourceFieldRef needs a containerName of this pod"
    )]
    NoContainer { path: String },
    #[error("no service account token was fetched for audience {audience:?}")]
    TokenMissing { audience: String },
}

/// The API objects a pod's volumes refer to, fetched by the caller (`None`: absent), and
/// each claim resolved to its volume's host directory (or why it has none yet).
#[derive(Debug, Clone, Default)]
pub struct Objects {
    pub config_maps: BTreeMap<String, Option<ConfigMap>>,
    pub secrets: BTreeMap<String, Option<Secret>>,
    /// Service account tokens by (audience, expirationSeconds) of their projection.
    pub tokens: BTreeMap<(String, i64), String>,
    pub claims: BTreeMap<String, Result<crate::claims::ClaimVolume, crate::claims::ClaimError>>,
}

/// The (audience, expirationSeconds) of each `serviceAccountToken` projection of the pod.
pub fn token_projections(pod: &Pod) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = volumes(pod)
        .iter()
        .flat_map(|v| v.projected.iter().flat_map(|p| p.sources.iter().flatten()))
        .filter_map(|src| src.service_account_token.as_ref())
        .map(|t| {
            (
                t.audience.clone().unwrap_or_default(),
                t.expiration_seconds
                    .unwrap_or(crate::tokens::DEFAULT_EXPIRATION_SECONDS),
            )
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Names of the config maps and secrets the pod's volumes refer to.
pub fn referenced(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut maps = Vec::new();
    let mut secrets = Vec::new();
    for v in volumes(pod) {
        if let Some(c) = &v.config_map {
            maps.push(c.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
        for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(c) = &src.config_map {
                maps.push(c.name.clone());
            }
            if let Some(s) = &src.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    maps.sort();
    maps.dedup();
    secrets.sort();
    secrets.dedup();
    (maps, secrets)
}

pub fn volumes(pod: &Pod) -> &[Volume] {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_deref())
        .unwrap_or_default()
}

fn mode_of(item: Option<i32>, default: i32) -> u32 {
    u32::try_from(item.unwrap_or(default)).unwrap_or(0o644) & 0o777
}

/// Keys of a config map with their bytes (`data` and `binaryData`).
fn config_map_keys(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.as_bytes().to_vec()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        out.entry(k.clone()).or_insert_with(|| v.0.clone());
    }
    out
}

/// Keys of a secret with their bytes (`data`, then `stringData` should the server not have
/// merged it).
fn secret_keys(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut out: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .collect();
    for (k, v) in secret.string_data.iter().flatten() {
        out.insert(k.clone(), v.as_bytes().to_vec());
    }
    out
}

/// kubelet's `MakePayload` shared by configMap and secret volumes.
fn key_payload(
    keys: Option<BTreeMap<String, Vec<u8>>>,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    missing_object: SourceError,
    missing_key: impl Fn(&str) -> SourceError,
    out: &mut Payload,
) -> Result<(), SourceError> {
    let Some(keys) = keys else {
        return if optional {
            Ok(())
        } else {
            Err(missing_object)
        };
    };
    match items.filter(|i| !i.is_empty()) {
        None => {
            for (k, data) in keys {
                out.insert(
                    k,
                    FileProjection {
                        data,
                        mode: mode_of(None, default_mode),
                    },
                );
            }
        }
        Some(items) => {
            for item in items {
                match keys.get(&item.key) {
                    Some(data) => {
                        out.insert(
                            item.path.clone(),
                            FileProjection {
                                data: data.clone(),
                                mode: mode_of(item.mode, default_mode),
                            },
                        );
                    }
                    None if optional => {}
                    None => return Err(missing_key(&item.key)),
                }
            }
        }
    }
    Ok(())
}

fn config_map_into(
    objects: &Objects,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), SourceError> {
    let keys = objects
        .config_maps
        .get(name)
        .cloned()
        .flatten()
        .map(|c| config_map_keys(&c));
    key_payload(
        keys,
        items,
        default_mode,
        optional,
        SourceError::ConfigMapNotFound {
            name: name.to_string(),
        },
        |k| SourceError::ConfigMapKey { key: k.to_string() },
        out,
    )
}

fn secret_into(
    objects: &Objects,
    name: &str,
    items: Option<&[KeyToPath]>,
    default_mode: i32,
    optional: bool,
    out: &mut Payload,
) -> Result<(), SourceError> {
    let keys = objects
        .secrets
        .get(name)
        .cloned()
        .flatten()
        .map(|s| secret_keys(&s));
    key_payload(
        keys,
        items,
        default_mode,
        optional,
        SourceError::SecretNotFound {
            name: name.to_string(),
        },
        |k| SourceError::SecretKey { key: k.to_string() },
        out,
    )
}

/// kubelet's `fieldpath.FormatMap`: sorted `key="value"` lines (Go-quoted values), no
/// trailing newline.
pub fn format_map(map: Option<&BTreeMap<String, String>>) -> String {
    map.iter()
        .flat_map(|m| m.iter())
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Go's `%q` for the strings labels and annotations hold.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn downward_into(
    pod: &Pod,
    ctx: &PodContext,
    items: &[DownwardAPIVolumeFile],
    default_mode: i32,
    out: &mut Payload,
) -> Result<(), SourceError> {
    for item in items {
        let text = if let Some(f) = &item.field_ref {
            match f.field_path.as_str() {
                "metadata.labels" => format_map(pod.metadata.labels.as_ref()),
                "metadata.annotations" => format_map(pod.metadata.annotations.as_ref()),
                path => containerspec::field_ref_value(pod, ctx, path).map_err(|source| {
                    SourceError::DownwardApi {
                        path: item.path.clone(),
                        source: Box::new(source),
                    }
                })?,
            }
        } else if let Some(r) = &item.resource_field_ref {
            let container = r.container_name.as_deref().and_then(|name| {
                pod.spec
                    .as_ref()
                    .and_then(|s| s.containers.iter().find(|c| c.name == name))
            });
            let Some(container) = container else {
                return Err(SourceError::NoContainer {
                    path: item.path.clone(),
                });
            };
            containerspec::resource_field_value(pod, container, ctx, &item.path, r).map_err(
                |source| SourceError::DownwardApi {
                    path: item.path.clone(),
                    source: Box::new(source),
                },
            )?
        } else {
            continue;
        };
        out.insert(
            item.path.clone(),
            FileProjection {
                data: text.into_bytes(),
                mode: mode_of(item.mode, default_mode),
            },
        );
    }
    Ok(())
}

/// What a projected volume could not provide and was skipped (kubelet would provide it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub volume: String,
    pub source: &'static str,
}

/// The files of one API-data volume; `None` for other volume kinds.
pub fn payload(
    pod: &Pod,
    volume: &Volume,
    ctx: &PodContext,
    objects: &Objects,
    skipped: &mut Vec<Skipped>,
) -> Option<Result<Payload, SourceError>> {
    let mut out = Payload::new();
    let result = if let Some(c) = &volume.config_map {
        config_map_into(
            objects,
            &c.name,
            c.items.as_deref(),
            c.default_mode.unwrap_or(DEFAULT_MODE),
            c.optional == Some(true),
            &mut out,
        )
    } else if let Some(s) = &volume.secret {
        secret_into(
            objects,
            s.secret_name.as_deref().unwrap_or_default(),
            s.items.as_deref(),
            s.default_mode.unwrap_or(DEFAULT_MODE),
            s.optional == Some(true),
            &mut out,
        )
    } else if let Some(d) = &volume.downward_api {
        downward_into(
            pod,
            ctx,
            d.items.as_deref().unwrap_or_default(),
            d.default_mode.unwrap_or(DEFAULT_MODE),
            &mut out,
        )
    } else if let Some(p) = &volume.projected {
        let default_mode = p.default_mode.unwrap_or(DEFAULT_MODE);
        let mut result = Ok(());
        for src in p.sources.iter().flatten() {
            let step = if let Some(c) = &src.config_map {
                config_map_into(
                    objects,
                    &c.name,
                    c.items.as_deref(),
                    default_mode,
                    c.optional == Some(true),
                    &mut out,
                )
            } else if let Some(s) = &src.secret {
                secret_into(
                    objects,
                    &s.name,
                    s.items.as_deref(),
                    default_mode,
                    s.optional == Some(true),
                    &mut out,
                )
            } else if let Some(d) = &src.downward_api {
                downward_into(
                    pod,
                    ctx,
                    d.items.as_deref().unwrap_or_default(),
                    default_mode,
                    &mut out,
                )
            } else if let Some(t) = &src.service_account_token {
                let key = (
                    t.audience.clone().unwrap_or_default(),
                    t.expiration_seconds
                        .unwrap_or(crate::tokens::DEFAULT_EXPIRATION_SECONDS),
                );
                match objects.tokens.get(&key) {
                    Some(token) => {
                        out.insert(
                            t.path.clone(),
                            FileProjection {
                                data: token.clone().into_bytes(),
                                mode: mode_of(None, default_mode),
                            },
                        );
                        Ok(())
                    }
                    None => Err(SourceError::TokenMissing { audience: key.0 }),
                }
            } else {
                let source = if src.cluster_trust_bundle.is_some() {
                    "clusterTrustBundle"
                } else {
                    "unknown"
                };
                skipped.push(Skipped {
                    volume: volume.name.clone(),
                    source,
                });
                Ok(())
            };
            if step.is_err() {
                result = step;
                break;
            }
        }
        result
    } else {
        return None;
    };
    Some(result.map(|()| out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(volumes: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u",
                         "labels": {"b": "2", "a": "x\"y"}},
            "spec": {"containers": [{"name": "c", "image": "i",
                      "resources": {"limits": {"memory": "64Mi", "cpu": "250m"}}}],
                     "volumes": volumes}
        }))
        .expect("pod")
    }

    fn objects() -> Objects {
        let mut o = Objects::default();
        o.config_maps.insert(
            "cm".into(),
            Some(
                serde_json::from_value(json!({"metadata": {"name": "cm"},
                    "data": {"k1": "v1", "k2": "v2"}, "binaryData": {"bin": "AAE="}}))
                .expect("cm"),
            ),
        );
        o.config_maps.insert("gone".into(), None);
        o.secrets.insert(
            "s".into(),
            Some(
                serde_json::from_value(json!({"metadata": {"name": "s"},
                    "data": {"pw": "aHVudGVyMg=="}}))
                .expect("secret"),
            ),
        );
        o
    }

    fn build(v: serde_json::Value) -> Result<Payload, SourceError> {
        let p = pod(json!([v]));
        let vol = volumes(&p)[0].clone();
        let mut skipped = Vec::new();
        payload(&p, &vol, &PodContext::default(), &objects(), &mut skipped).expect("api volume")
    }

    #[test]
    fn config_map_all_keys_and_items() {
        let all = build(json!({"name": "v", "configMap": {"name": "cm"}})).expect("all");
        assert_eq!(all.len(), 3);
        assert_eq!(all["k1"].data, b"v1");
        assert_eq!(all["bin"].data, vec![0, 1]);
        assert_eq!(all["k1"].mode, 0o644);
        let items = build(json!({"name": "v", "configMap": {"name": "cm", "defaultMode": 0o600,
            "items": [{"key": "k2", "path": "dir/two"}, {"key": "k1", "path": "one", "mode": 0o400}]}}))
        .expect("items");
        assert_eq!(items.keys().collect::<Vec<_>>(), vec!["dir/two", "one"]);
        assert_eq!(items["dir/two"].mode, 0o600);
        assert_eq!(items["one"].mode, 0o400);
    }

    #[test]
    fn missing_objects_and_keys() {
        let err = build(json!({"name": "v", "configMap": {"name": "gone"}})).expect_err("missing");
        assert_eq!(err.to_string(), "configmap \"gone\" not found");
        let empty = build(json!({"name": "v", "configMap": {"name": "gone", "optional": true}}))
            .expect("optional");
        assert!(empty.is_empty());
        let err = build(json!({"name": "v", "configMap": {"name": "cm",
            "items": [{"key": "nope", "path": "x"}]}}))
        .expect_err("key");
        assert_eq!(
            err.to_string(),
            "configmap references non-existent config key: nope"
        );
        let err =
            build(json!({"name": "v", "secret": {"secretName": "other"}})).expect_err("secret");
        assert_eq!(err.to_string(), "secret \"other\" not found");
    }

    #[test]
    fn secret_bytes_are_decoded() {
        let s = build(json!({"name": "v", "secret": {"secretName": "s"}})).expect("secret");
        assert_eq!(s["pw"].data, b"hunter2");
    }

    #[test]
    fn downward_api_fields_and_resources() {
        let d = build(json!({"name": "v", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}}
        ]}}))
        .expect("downward");
        assert_eq!(
            String::from_utf8_lossy(&d["labels"].data),
            "a=\"x\\\"y\"\nb=\"2\""
        );
        assert_eq!(d["name"].data, b"p");
        assert_eq!(d["mem"].data, b"64");
        assert_eq!(d["cpu"].data, b"250");
        let err = build(json!({"name": "v", "downwardAPI": {"items": [
            {"path": "x", "resourceFieldRef": {"resource": "limits.cpu"}}]}}))
        .expect_err("no container");
        assert!(err.to_string().contains("containerName"), "{err}");
    }

    #[test]
    fn projected_merges_sources_and_tokens() {
        let p = pod(
            json!([{"name": "all", "projected": {"defaultMode": 0o440, "sources": [
                {"configMap": {"name": "cm", "items": [{"key": "k1", "path": "cfg/k1"}]}},
                {"secret": {"name": "s"}},
                {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
                {"serviceAccountToken": {"path": "token"}},
                {"serviceAccountToken": {"path": "vault-token", "audience": "vault", "expirationSeconds": 600}},
                {"clusterTrustBundle": {"path": "bundle", "signerName": "example.com/x"}}
            ]}}]),
        );
        assert_eq!(
            token_projections(&p),
            vec![(String::new(), 3600), ("vault".to_string(), 600)]
        );
        let vol = volumes(&p)[0].clone();
        let mut objs = objects();
        objs.tokens
            .insert((String::new(), 3600), "api-token".into());
        objs.tokens
            .insert(("vault".into(), 600), "vault-token".into());
        let mut skipped = Vec::new();
        let out = payload(&p, &vol, &PodContext::default(), &objs, &mut skipped)
            .expect("api volume")
            .expect("payload");
        assert_eq!(
            out.keys().collect::<Vec<_>>(),
            vec!["cfg/k1", "ns", "pw", "token", "vault-token"]
        );
        assert_eq!(out["token"].data, b"api-token");
        assert_eq!(out["vault-token"].data, b"vault-token");
        assert!(out.values().all(|f| f.mode == 0o440));
        assert_eq!(
            skipped,
            vec![Skipped {
                volume: "all".into(),
                source: "clusterTrustBundle"
            }]
        );
        let (maps, secrets) = referenced(&p);
        assert_eq!(
            (maps, secrets),
            (vec!["cm".to_string()], vec!["s".to_string()])
        );
        let err = payload(
            &p,
            &vol,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
        )
        .expect("api volume")
        .expect_err("no token fetched");
        assert!(matches!(err, SourceError::TokenMissing { .. }), "{err}");
    }
}
