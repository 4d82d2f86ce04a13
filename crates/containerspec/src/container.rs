//! Builds the runtime's `ContainerConfig` from a pod's container and its image, with
//! Kubernetes' rules: `command` replaces ENTRYPOINT (and drops CMD when `args` is unset),
//! `args` replaces CMD, `$(VAR)` expansion from the container's env, env = image env
//! overridden by the pod's, workingDir over the image's, user from the security context, stop
//! signal from the image. Pure: config maps and secrets are fetched by the caller.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVar, Pod, Secret};
use runtime::{ContainerConfig, ImageInfo, SupplementalGroupsPolicy, UserSpec};

use crate::expand::{expand, lookup_in};
use api::quantity::Quantity;

/// Why a container's config could not be built. Kubelet reports all of these as
/// `CreateContainerConfigError`, except the ones the runtime would reject
/// (`CreateContainerError`); see `is_config_error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContainerSpecError {
    #[error("configmap {name:?} not found")]
    ConfigMapNotFound { name: String },
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("secret {name:?} not found")]
    SecretNotFound { name: String },
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        namespace: String,
        name: String,
        key: String,
    },
    #[error("unsupported fieldPath: {path}")]
    UnsupportedFieldPath { path: String },
    #[error("unsupported container resource : {resource}")]
    UnsupportedResource { resource: String },
    #[error("invalid divisor {divisor:?} in resourceFieldRef of env {env}")]
    InvalidDivisor { env: String, divisor: String },
    #[error("env {env} has an empty valueFrom")]
    EmptyValueFrom { env: String },
    #[error("no command specified")]
    NoCommand,
    #[error("failed to parse stop signal {signal:?}")]
    InvalidStopSignal { signal: String },
    #[error("{0}")]
    Security(#[from] crate::security::SecurityError),
}

impl ContainerSpecError {
    /// `true` for kubelet's `CreateContainerConfigError` cases, `false` for the ones a CRI
    /// runtime rejects at create time (`CreateContainerError`).
    pub fn is_config_error(&self) -> bool {
        match self {
            Self::ConfigMapNotFound { .. }
            | Self::ConfigMapKeyNotFound { .. }
            | Self::SecretNotFound { .. }
            | Self::SecretKeyNotFound { .. }
            | Self::UnsupportedFieldPath { .. }
            | Self::UnsupportedResource { .. }
            | Self::InvalidDivisor { .. }
            | Self::EmptyValueFrom { .. }
            | Self::Security(_) => true,
            Self::NoCommand | Self::InvalidStopSignal { .. } => false,
        }
    }
}

/// Facts about the pod's placement that env `fieldRef`s and `resourceFieldRef`s read.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    pub node_name: String,
    pub host_ip: String,
    pub pod_ip: String,
    /// Node allocatable cpu cores, memory and ephemeral-storage bytes: what an unset limit
    /// means.
    pub node_cpu: f64,
    pub node_memory: f64,
    pub node_ephemeral_storage: f64,
}

/// Config maps and secrets (by name, `None` when absent) the container's env refers to, and
/// the Service variables (see [`crate::service_env`]) it gets.
#[derive(Debug, Clone, Default)]
pub struct EnvSources {
    pub config_maps: HashMap<String, Option<ConfigMap>>,
    pub secrets: HashMap<String, Option<Secret>>,
    pub services: Vec<(String, String)>,
}

/// Names of the config maps and secrets a container's `env` and `envFrom` refer to.
pub fn referenced_sources(container: &Container) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut maps = BTreeSet::new();
    let mut secrets = BTreeSet::new();
    for from in container.env_from.iter().flatten() {
        if let Some(r) = &from.config_map_ref {
            maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_ref {
            secrets.insert(r.name.clone());
        }
    }
    for var in container.env.iter().flatten() {
        let Some(from) = &var.value_from else {
            continue;
        };
        if let Some(r) = &from.config_map_key_ref {
            maps.insert(r.name.clone());
        }
        if let Some(r) = &from.secret_key_ref {
            secrets.insert(r.name.clone());
        }
    }
    (maps, secrets)
}

/// Kubelet's container labels (what `crictl ps` and an agent restart find containers by).
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const ANNOTATION_RESTART_COUNT: &str = "io.kubernetes.container.restartCount";
/// The hash of the container's spec it was created from (kubelet's `containerChanged`).
pub const ANNOTATION_CONTAINER_HASH: &str = "io.kubernetes.container.hash";

/// A hash of a container's spec, recorded on the runtime container so a changed definition
/// (a new image in a bare Pod) is noticed and the container restarted. FNV-1a over the
/// spec's JSON, as hex, like the kubelet's. Resources and resize policy are left out, as
/// kubelet v1.33 leaves them out: a resize is carried out in place, or restarts the
/// container only when its `resizePolicy` says so.
pub fn container_hash(container: &Container) -> String {
    full_container_hash(&Container {
        resources: None,
        resize_policy: None,
        ..container.clone()
    })
}

/// The hash agents recorded before resources were left out of it: a container created by
/// such an agent whose spec has not changed at all is not restarted after an upgrade.
pub fn full_container_hash(container: &Container) -> String {
    let bytes = serde_json::to_vec(container).unwrap_or_default();
    let hash = bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:x}")
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    if let Some(v) = secret.data.as_ref().and_then(|d| d.get(key)) {
        return Some(String::from_utf8_lossy(&v.0).into_owned());
    }
    secret
        .string_data
        .as_ref()
        .and_then(|d| d.get(key))
        .cloned()
}

/// A ConfigMap key as the kubelet reads it for env: from `data` only.
fn config_map_value(map: &ConfigMap, key: &str) -> Option<String> {
    map.data.as_ref().and_then(|d| d.get(key)).cloned()
}

pub fn field_ref_value(
    pod: &Pod,
    ctx: &PodContext,
    path: &str,
) -> Result<String, ContainerSpecError> {
    let meta = &pod.metadata;
    // `metadata.labels['k']` / `metadata.annotations['k']`.
    let subscript = |prefix: &str| {
        path.strip_prefix(prefix)
            .and_then(|r| r.strip_prefix("['"))
            .and_then(|r| r.strip_suffix("']"))
    };
    if let Some(key) = subscript("metadata.labels") {
        return Ok(meta
            .labels
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    if let Some(key) = subscript("metadata.annotations") {
        return Ok(meta
            .annotations
            .as_ref()
            .and_then(|l| l.get(key))
            .cloned()
            .unwrap_or_default());
    }
    let spec = pod.spec.as_ref();
    Ok(match path {
        "metadata.name" => meta.name.clone().unwrap_or_default(),
        "metadata.namespace" => meta.namespace.clone().unwrap_or_default(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => spec
            .and_then(|s| s.node_name.clone())
            .unwrap_or_else(|| ctx.node_name.clone()),
        "spec.serviceAccountName" => spec
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_default(),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.clone(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.clone(),
        _ => {
            return Err(ContainerSpecError::UnsupportedFieldPath {
                path: path.to_string(),
            })
        }
    })
}

pub fn resource_field_value(
    pod: &Pod,
    container: &Container,
    ctx: &PodContext,
    env: &str,
    sel: &k8s_openapi::api::core::v1::ResourceFieldSelector,
) -> Result<String, ContainerSpecError> {
    // The selector may name another container of the pod.
    let target = match sel.container_name.as_deref().filter(|n| !n.is_empty()) {
        Some(name) => pod
            .spec
            .as_ref()
            .and_then(|s| s.containers.iter().find(|c| c.name == name))
            .unwrap_or(container),
        None => container,
    };
    // kube-apiserver stores an unset divisor as its zero value, "0"; the kubelet reads a zero
    // divisor as 1 (`ExtractContainerResourceValue`).
    let divisor_raw = sel.divisor.as_ref().map_or("0", |q| q.0.as_str());
    let divisor = Quantity::parse(divisor_raw)
        .filter(|d| !d.is_negative())
        .ok_or_else(|| ContainerSpecError::InvalidDivisor {
            env: env.to_string(),
            divisor: divisor_raw.to_string(),
        })?;
    let divisor = if divisor.is_zero() {
        Quantity::from_units(1)
    } else {
        divisor
    };
    let res = target.resources.as_ref();
    let get = |which: &str, name: &str| {
        let list = if which == "limits" {
            res.and_then(|r| r.limits.as_ref())
        } else {
            res.and_then(|r| r.requests.as_ref())
        };
        list.and_then(|l| l.get(name))
            .and_then(|q| Quantity::parse(&q.0))
    };
    let (which, name) =
        sel.resource
            .split_once('.')
            .ok_or_else(|| ContainerSpecError::UnsupportedResource {
                resource: sel.resource.clone(),
            })?;
    // Unset limits mean "the node's allocatable", unset requests mean zero (kubelet's
    // `MergeContainerResourceLimits`).
    let allocatable = |units: f64| Quantity::parse(&format!("{units:.3}")).unwrap_or_default();
    let value = match (which, name) {
        ("limits", "cpu") => get(which, name).unwrap_or_else(|| allocatable(ctx.node_cpu)),
        ("limits", "memory") => get(which, name).unwrap_or_else(|| allocatable(ctx.node_memory)),
        ("limits", "ephemeral-storage") => {
            get(which, name).unwrap_or_else(|| allocatable(ctx.node_ephemeral_storage))
        }
        ("requests", "cpu" | "memory" | "ephemeral-storage") => {
            get(which, name).unwrap_or_default()
        }
        _ => {
            return Err(ContainerSpecError::UnsupportedResource {
                resource: sel.resource.clone(),
            })
        }
    };
    // The kubelet divides cpu in millicores and the others in whole units, each rounded up
    // first, and rounds the quotient up.
    let (amount, unit) = if name == "cpu" {
        (value.milli_value(), divisor.milli_value())
    } else {
        (value.value(), divisor.value())
    };
    let unit = unit.max(1);
    let quotient = amount / unit + i128::from(amount % unit > 0);
    Ok(quotient.to_string())
}

/// The env kubelet adds for a container, in order, with `$(VAR)` expanded in each value from
/// the variables defined before it (`envFrom` first, then `env`) and the Service variables,
/// which follow unless the container defines the same name.
pub fn container_env(
    pod: &Pod,
    container: &Container,
    ctx: &PodContext,
    sources: &EnvSources,
) -> Result<Vec<(String, String)>, ContainerSpecError> {
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut out: Vec<(String, String)> = Vec::new();
    let set = |out: &mut Vec<(String, String)>, key: String, value: String| match out
        .iter_mut()
        .find(|(k, _)| *k == key)
    {
        Some(slot) => slot.1 = value,
        None => out.push((key, value)),
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match sources.config_maps.get(&r.name).cloned().flatten() {
                // The kubelet takes every key of `data` (not `binaryData`) as it is: v1.33
                // checks no name here, since the API server's relaxed rule already allows
                // any ConfigMap key or prefix (`data-1`, `my.key`).
                Some(map) => {
                    for (k, v) in map.data.iter().flatten() {
                        set(&mut out, format!("{prefix}{k}"), v.clone());
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(ContainerSpecError::ConfigMapNotFound {
                        name: r.name.clone(),
                    })
                }
            }
        }
        if let Some(r) = &from.secret_ref {
            match sources.secrets.get(&r.name).cloned().flatten() {
                Some(secret) => {
                    let mut keys: BTreeSet<String> = secret
                        .data
                        .iter()
                        .flatten()
                        .map(|(k, _)| k.clone())
                        .collect();
                    keys.extend(secret.string_data.iter().flatten().map(|(k, _)| k.clone()));
                    for k in keys {
                        let v = secret_value(&secret, &k).unwrap_or_default();
                        set(&mut out, format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(ContainerSpecError::SecretNotFound {
                        name: r.name.clone(),
                    })
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        if let Some(value) = env_value(pod, container, ctx, sources, &namespace, var, &out)? {
            set(&mut out, var.name.clone(), value);
        }
    }
    // kubelet adds the Service variables the container did not define itself.
    for (k, v) in &sources.services {
        if !out.iter().any(|(name, _)| name == k) {
            out.push((k.clone(), v.clone()));
        }
    }
    Ok(out)
}

/// One `env[]` entry's value; `None` when an optional reference is missing (kubelet then
/// leaves the variable out).
fn env_value(
    pod: &Pod,
    container: &Container,
    ctx: &PodContext,
    sources: &EnvSources,
    namespace: &str,
    var: &EnvVar,
    defined: &[(String, String)],
) -> Result<Option<String>, ContainerSpecError> {
    let Some(from) = &var.value_from else {
        return Ok(Some(expand(
            var.value.as_deref().unwrap_or_default(),
            |name: &str| lookup_in(defined)(name).or_else(|| lookup_in(&sources.services)(name)),
        )));
    };
    if let Some(f) = &from.field_ref {
        return field_ref_value(pod, ctx, &f.field_path).map(Some);
    }
    if let Some(r) = &from.resource_field_ref {
        return resource_field_value(pod, container, ctx, &var.name, r).map(Some);
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        return match sources.config_maps.get(&r.name).cloned().flatten() {
            None if optional => Ok(None),
            None => Err(ContainerSpecError::ConfigMapNotFound {
                name: r.name.clone(),
            }),
            Some(map) => match config_map_value(&map, &r.key) {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(ContainerSpecError::ConfigMapKeyNotFound {
                    namespace: namespace.to_string(),
                    name: r.name.clone(),
                    key: r.key.clone(),
                }),
            },
        };
    }
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        return match sources.secrets.get(&r.name).cloned().flatten() {
            None if optional => Ok(None),
            None => Err(ContainerSpecError::SecretNotFound {
                name: r.name.clone(),
            }),
            Some(secret) => match secret_value(&secret, &r.key) {
                Some(v) => Ok(Some(v)),
                None if optional => Ok(None),
                None => Err(ContainerSpecError::SecretKeyNotFound {
                    namespace: namespace.to_string(),
                    name: r.name.clone(),
                    key: r.key.clone(),
                }),
            },
        };
    }
    Err(ContainerSpecError::EmptyValueFrom {
        env: var.name.clone(),
    })
}

/// The process argv: kubelet expands `$(VAR)` in command and args, then the runtime merges
/// them with the image's ENTRYPOINT and CMD (command replaces ENTRYPOINT and drops CMD; args
/// replace CMD).
pub fn container_argv(
    container: &Container,
    image: &runtime::ImageConfig,
    env: &[(String, String)],
) -> Result<Vec<String>, ContainerSpecError> {
    let expand_all = |list: &Option<Vec<String>>| {
        list.iter()
            .flatten()
            .map(|s| expand(s, lookup_in(env)))
            .collect::<Vec<_>>()
    };
    let command = expand_all(&container.command);
    let args = expand_all(&container.args);
    let argv: Vec<String> = match (command.is_empty(), args.is_empty()) {
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
        (true, false) => image.entrypoint.iter().cloned().chain(args).collect(),
        (false, _) => command.into_iter().chain(args).collect(),
    };
    if argv.is_empty() {
        return Err(ContainerSpecError::NoCommand);
    }
    Ok(argv)
}

/// Image env (`K=V` strings) with `overrides` replacing equal keys in place and the rest
/// appended, as containerd merges them.
pub fn merge_env(image_env: &[String], overrides: &[(String, String)]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = image_env
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect();
    for (k, v) in overrides {
        match out.iter_mut().find(|(key, _)| key == k) {
            Some(slot) => slot.1 = v.clone(),
            None => out.push((k.clone(), v.clone())),
        }
    }
    out
}

/// The image's STOPSIGNAL as a number (`SIGQUIT`, `QUIT`, `3`), else SIGTERM.
pub fn stop_signal(raw: Option<&str>) -> Result<i32, ContainerSpecError> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(libc::SIGTERM);
    };
    if let Ok(n) = raw.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| ContainerSpecError::InvalidStopSignal {
                signal: raw.to_string(),
            });
    }
    let upper = raw.to_ascii_uppercase();
    let name = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    nix::sys::signal::Signal::from_str(&name)
        .map(|s| s as i32)
        .map_err(|_| ContainerSpecError::InvalidStopSignal {
            signal: raw.to_string(),
        })
}

/// The user the process runs as: the container's securityContext over the pod's, else the
/// image's `User`.
pub fn user_spec(pod: &Pod, container: &Container, image: &runtime::ImageConfig) -> UserSpec {
    let pod_sc = pod.spec.as_ref().and_then(|s| s.security_context.as_ref());
    let c_sc = container.security_context.as_ref();
    let to_u32 = |v: Option<i64>| v.and_then(|v| u32::try_from(v).ok());
    let run_as_user = to_u32(
        c_sc.and_then(|s| s.run_as_user)
            .or_else(|| pod_sc.and_then(|s| s.run_as_user)),
    );
    let run_as_group = to_u32(
        c_sc.and_then(|s| s.run_as_group)
            .or_else(|| pod_sc.and_then(|s| s.run_as_group)),
    );
    // kubelet's `determineEffectiveSecurityContext`: the fsGroup first, so the volumes it
    // owns are usable, then the pod's supplementalGroups.
    let mut supplemental_groups: Vec<u32> = to_u32(pod_sc.and_then(|s| s.fs_group))
        .into_iter()
        .collect();
    for g in pod_sc
        .and_then(|s| s.supplemental_groups.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|v| u32::try_from(*v).ok())
    {
        if !supplemental_groups.contains(&g) {
            supplemental_groups.push(g);
        }
    }
    // KEP-3619: unset means Merge; validation let no other value in.
    let supplemental_groups_policy =
        match pod_sc.and_then(|s| s.supplemental_groups_policy.as_deref()) {
            Some("Strict") => SupplementalGroupsPolicy::Strict,
            _ => SupplementalGroupsPolicy::Merge,
        };
    UserSpec {
        run_as_user,
        run_as_group,
        image_user: image.user.clone().filter(|u| !u.is_empty()),
        supplemental_groups,
        supplemental_groups_policy,
    }
}

/// Everything `build_container_config` needs besides the pod and container.
pub struct BuildInput<'a> {
    pub image: &'a ImageInfo,
    pub attempt: u32,
    pub ctx: &'a PodContext,
    pub sources: &'a EnvSources,
}

/// The container's log file relative to the pod's log directory (`<name>/<attempt>.log`).
pub fn log_path(container: &str, attempt: u32) -> PathBuf {
    Path::new(container).join(format!("{attempt}.log"))
}

/// Builds the full runtime config of one container attempt.
pub fn build_container_config(
    pod: &Pod,
    container: &Container,
    input: &BuildInput<'_>,
) -> Result<ContainerConfig, ContainerSpecError> {
    let image = &input.image.config;
    let kube_env = container_env(pod, container, input.ctx, input.sources)?;
    let args = container_argv(container, image, &kube_env)?;
    let env = merge_env(&image.env, &kube_env);
    let working_dir = container
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.working_dir.clone().filter(|w| !w.is_empty()));
    let meta = &pod.metadata;
    let mut labels = BTreeMap::new();
    labels.insert(LABEL_CONTAINER_NAME.to_string(), container.name.clone());
    labels.insert(
        LABEL_POD_NAME.to_string(),
        meta.name.clone().unwrap_or_default(),
    );
    labels.insert(
        LABEL_POD_NAMESPACE.to_string(),
        meta.namespace.clone().unwrap_or_default(),
    );
    labels.insert(
        LABEL_POD_UID.to_string(),
        meta.uid.clone().unwrap_or_default(),
    );
    let mut annotations = BTreeMap::new();
    annotations.insert(
        ANNOTATION_RESTART_COUNT.to_string(),
        input.attempt.to_string(),
    );
    annotations.insert(
        ANNOTATION_CONTAINER_HASH.to_string(),
        container_hash(container),
    );
    annotations.insert(
        crate::allocated::ANNOTATION_RESOURCES.to_string(),
        crate::allocated::resources_annotation(container),
    );
    if let Some(path) = &container.termination_message_path {
        annotations.insert(
            "io.kubernetes.container.terminationMessagePath".to_string(),
            path.clone(),
        );
    }
    if let Some(grace) = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
    {
        annotations.insert(
            "io.kubernetes.pod.terminationGracePeriod".to_string(),
            grace.to_string(),
        );
    }
    let user = user_spec(pod, container, image);
    crate::security::verify_run_as_non_root(pod, container, &user)?;
    let security = crate::security::container_security(pod, container)?;
    Ok(ContainerConfig {
        name: container.name.clone(),
        attempt: input.attempt,
        image: container.image.clone().unwrap_or_default(),
        image_id: input.image.id.clone(),
        args,
        env,
        working_dir,
        user,
        log_path: log_path(&container.name, input.attempt),
        stop_signal: stop_signal(image.stop_signal.as_deref())?,
        mounts: Vec::new(),
        labels,
        annotations,
        resources: crate::security::container_resources(container),
        oom_score_adj: oom_score_adj(pod, container, input.ctx.node_memory),
        security,
        stdin: container.stdin.unwrap_or(false),
        stdin_once: container.stdin_once.unwrap_or(false),
        tty: container.tty.unwrap_or(false),
        pid_target: None,
    })
}

/// kubelet's `GetContainerOOMScoreAdjust`: Guaranteed -997, BestEffort 1000, Burstable
/// `1000 - 1000 * memory request / node memory` kept within 3..=999; `None` when the pod's
/// QoS class is not known yet.
pub fn oom_score_adj(pod: &Pod, container: &Container, node_memory: f64) -> Option<i32> {
    let qos = pod.status.as_ref()?.qos_class.as_deref()?;
    match qos {
        "Guaranteed" => Some(-997),
        "BestEffort" => Some(1000),
        _ => {
            let request = container
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("memory"))
                .and_then(|q| api::quantity::parse_quantity(&q.0))
                .unwrap_or(0.0);
            let adj = if node_memory > 0.0 {
                1000.0 - (1000.0 * request / node_memory).floor()
            } else {
                1000.0
            };
            Some((adj as i32).clamp(3, 999))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::ImageConfig;
    use serde_json::json;

    #[test]
    fn oom_score_adj_follows_the_qos_class() {
        let with = |qos: &str, request: Option<&str>| {
            let mut v = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c"}]},
                               "status": {"qosClass": qos}});
            if let Some(r) = request {
                v["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": r}});
            }
            let pod: Pod = serde_json::from_value(v).expect("pod");
            let c = pod.spec.as_ref().expect("spec").containers[0].clone();
            oom_score_adj(&pod, &c, 4.0 * 1024.0 * 1024.0 * 1024.0)
        };
        assert_eq!(with("Guaranteed", Some("1Gi")), Some(-997));
        assert_eq!(with("BestEffort", None), Some(1000));
        assert_eq!(with("Burstable", Some("1Gi")), Some(750));
        assert_eq!(with("Burstable", None), Some(999));
        assert_eq!(with("Burstable", Some("8Gi")), Some(3));
    }

    #[test]
    fn service_variables_follow_and_expand() {
        let p = pod(json!([{"name": "c", "image": "i", "env": [
            {"name": "API", "value": "https://$(KUBERNETES_SERVICE_HOST):$(KUBERNETES_SERVICE_PORT)"},
            {"name": "KUBERNETES_SERVICE_PORT", "value": "8443"}
        ]}]));
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let sources = EnvSources {
            services: vec![
                ("KUBERNETES_SERVICE_HOST".into(), "10.96.0.1".into()),
                ("KUBERNETES_SERVICE_PORT".into(), "443".into()),
            ],
            ..Default::default()
        };
        let env = container_env(&p, c, &PodContext::default(), &sources).expect("env");
        assert_eq!(
            env,
            vec![
                ("API".to_string(), "https://10.96.0.1:443".to_string()),
                ("KUBERNETES_SERVICE_PORT".to_string(), "8443".to_string()),
                (
                    "KUBERNETES_SERVICE_HOST".to_string(),
                    "10.96.0.1".to_string()
                ),
            ]
        );
    }

    fn pod(containers: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns1", "uid": "u-1", "labels": {"app": "x"}},
            "spec": {"nodeName": "node-a", "containers": containers,
                     "securityContext": {"runAsUser": 1000, "supplementalGroups": [5]}}
        }))
        .expect("pod")
    }

    fn image() -> ImageConfig {
        ImageConfig {
            entrypoint: vec!["/entry".into()],
            cmd: vec!["cmd1".into(), "cmd2".into()],
            env: vec!["PATH=/bin".into(), "A=image".into()],
            working_dir: Some("/img".into()),
            user: Some("nobody".into()),
            stop_signal: Some("SIGQUIT".into()),
        }
    }

    fn ctx() -> PodContext {
        PodContext {
            node_name: "node-a".into(),
            host_ip: "10.0.0.5".into(),
            pod_ip: "10.0.0.5".into(),
            node_cpu: 4.0,
            node_memory: 8.0 * 1024.0 * 1024.0 * 1024.0,
            node_ephemeral_storage: 100e9,
        }
    }

    #[test]
    fn resource_fields_round_up_and_a_zero_divisor_is_one() {
        let c: Container = serde_json::from_value(json!({"name": "c", "resources": {
            "limits": {"cpu": "1100m", "memory": "129Mi"},
            "requests": {"cpu": "250m", "memory": "100000001"}}}))
        .expect("container");
        let p = pod(json!([]));
        let value = |resource: &str, divisor: Option<&str>| {
            let sel: k8s_openapi::api::core::v1::ResourceFieldSelector =
                serde_json::from_value(json!({"resource": resource, "divisor": divisor}))
                    .expect("selector");
            resource_field_value(&p, &c, &ctx(), "E", &sel).expect(resource)
        };
        assert_eq!(value("limits.cpu", Some("0")), "2");
        assert_eq!(value("limits.cpu", None), "2");
        assert_eq!(value("limits.cpu", Some("1m")), "1100");
        assert_eq!(value("requests.cpu", Some("0")), "1");
        assert_eq!(value("requests.cpu", Some("100m")), "3");
        assert_eq!(value("limits.memory", Some("1Mi")), "129");
        assert_eq!(
            value("limits.memory", Some("0")),
            (129 * 1024 * 1024).to_string()
        );
        assert_eq!(value("requests.memory", Some("1M")), "101");
        assert_eq!(value("requests.ephemeral-storage", Some("0")), "0");
        assert_eq!(value("limits.ephemeral-storage", Some("1G")), "100");
        let no_limits: Container = serde_json::from_value(json!({"name": "c"})).expect("c");
        let sel = |r: &str| -> k8s_openapi::api::core::v1::ResourceFieldSelector {
            serde_json::from_value(json!({"resource": r, "divisor": "0"})).expect("selector")
        };
        let of = |r: &str| resource_field_value(&p, &no_limits, &ctx(), "E", &sel(r)).expect(r);
        assert_eq!(of("limits.cpu"), "4");
        assert_eq!(of("limits.memory"), (8u64 << 30).to_string());
        assert_eq!(of("requests.memory"), "0");
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    /// The table of https://kubernetes.io/docs/tasks/inject-data-application/define-command-argument-container/
    #[test]
    fn argv_table_from_docs() {
        let img = ImageConfig {
            entrypoint: vec!["/ep-1".into(), "foo".into()],
            cmd: vec!["bar".into()],
            ..Default::default()
        };
        let cases = [
            (json!({"name": "c"}), vec!["/ep-1", "foo", "bar"]),
            (json!({"name": "c", "command": ["/ep-2"]}), vec!["/ep-2"]),
            (
                json!({"name": "c", "args": ["zoo", "boo"]}),
                vec!["/ep-1", "foo", "zoo", "boo"],
            ),
            (
                json!({"name": "c", "command": ["/ep-2"], "args": ["zoo", "boo"]}),
                vec!["/ep-2", "zoo", "boo"],
            ),
            (
                json!({"name": "c", "command": [], "args": []}),
                vec!["/ep-1", "foo", "bar"],
            ),
        ];
        for (c, want) in cases {
            let got = container_argv(&container(c.clone()), &img, &[]).expect("argv");
            assert_eq!(got, want, "container {c}");
        }
        let empty = ImageConfig::default();
        assert_eq!(
            container_argv(&container(json!({"name": "c"})), &empty, &[]),
            Err(ContainerSpecError::NoCommand)
        );
    }

    #[test]
    fn argv_expands_from_container_env_only() {
        let c = container(json!({
            "name": "c",
            "command": ["/bin/echo", "$(GREETING) $(HONORIFIC)", "$$(GREETING)", "$(PATH)"],
            "env": [{"name": "GREETING", "value": "Warm greetings to"},
                    {"name": "HONORIFIC", "value": "The Most Honorable"}]
        }));
        let env = container_env(&pod(json!([])), &c, &ctx(), &EnvSources::default()).expect("env");
        let argv = container_argv(&c, &image(), &env).expect("argv");
        // Image env (PATH) is not visible to $(VAR), as in kubelet.
        assert_eq!(
            argv,
            vec![
                "/bin/echo",
                "Warm greetings to The Most Honorable",
                "$(GREETING)",
                "$(PATH)"
            ]
        );
    }

    #[test]
    fn env_merge_field_refs_and_dependent_vars() {
        let c = container(json!({
            "name": "c",
            "env": [
                {"name": "A", "value": "pod"},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
                {"name": "UID", "valueFrom": {"fieldRef": {"fieldPath": "metadata.uid"}}},
                {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                {"name": "HOST", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "COMBO", "value": "$(POD).$(NS)-$(LATER)"},
                {"name": "LATER", "value": "x"},
                {"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}},
                {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "requests.memory", "divisor": "1Mi"}}}
            ],
            "resources": {"requests": {"memory": "64Mi"}}
        }));
        let p = pod(json!([]));
        let info = ImageInfo {
            id: "sha256:abc".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            size_bytes: 1,
            config: image(),
        };
        let sources = EnvSources::default();
        let input = BuildInput {
            image: &info,
            attempt: 2,
            ctx: &ctx(),
            sources: &sources,
        };
        let cfg = build_container_config(&p, &c, &input).expect("config");
        let get = |k: &str| {
            cfg.env
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(cfg.env[0], ("PATH".to_string(), "/bin".to_string()));
        assert_eq!(cfg.env[1], ("A".to_string(), "pod".to_string()));
        assert_eq!(get("POD"), Some("web"));
        assert_eq!(get("NS"), Some("ns1"));
        assert_eq!(get("UID"), Some("u-1"));
        assert_eq!(get("NODE"), Some("node-a"));
        assert_eq!(get("HOST"), Some("10.0.0.5"));
        assert_eq!(get("APP"), Some("x"));
        assert_eq!(get("COMBO"), Some("web.ns1-$(LATER)"));
        assert_eq!(get("CPU"), Some("4"));
        assert_eq!(get("MEM"), Some("64"));
        assert_eq!(cfg.args, vec!["/entry", "cmd1", "cmd2"]);
        assert_eq!(cfg.working_dir.as_deref(), Some("/img"));
        assert_eq!(cfg.stop_signal, libc::SIGQUIT);
        assert_eq!(cfg.user.run_as_user, Some(1000));
        assert_eq!(cfg.user.image_user.as_deref(), Some("nobody"));
        assert_eq!(cfg.user.supplemental_groups, vec![5]);
        assert_eq!(cfg.log_path, PathBuf::from("c/2.log"));
        assert_eq!(cfg.attempt, 2);
        assert_eq!(
            cfg.annotations
                .get(ANNOTATION_RESTART_COUNT)
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(
            cfg.labels.get(LABEL_POD_UID).map(String::as_str),
            Some("u-1")
        );
    }

    #[test]
    fn config_maps_secrets_and_errors() {
        let c = container(json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "P_"}],
            "env": [
                {"name": "S", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "pw"}}},
                {"name": "OPT", "valueFrom": {"configMapKeyRef": {"name": "missing", "key": "k", "optional": true}}}
            ]
        }));
        let (maps, secrets) = referenced_sources(&c);
        assert_eq!(maps.into_iter().collect::<Vec<_>>(), vec!["cm", "missing"]);
        assert_eq!(secrets.into_iter().collect::<Vec<_>>(), vec!["sec"]);
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k1": "v1"}}))
                .expect("cm");
        let sec: Secret = serde_json::from_value(
            json!({"metadata": {"name": "sec"}, "data": {"pw": "aHVudGVyMg=="}}),
        )
        .expect("secret");
        let mut sources = EnvSources::default();
        sources.config_maps.insert("cm".into(), Some(cm));
        sources.config_maps.insert("missing".into(), None);
        sources.secrets.insert("sec".into(), Some(sec));
        let env = container_env(&pod(json!([])), &c, &ctx(), &sources).expect("env");
        assert_eq!(
            env,
            vec![
                ("P_k1".to_string(), "v1".to_string()),
                ("S".to_string(), "hunter2".to_string())
            ]
        );

        sources.secrets.insert("sec".into(), None);
        let err = container_env(&pod(json!([])), &c, &ctx(), &sources).expect_err("missing secret");
        assert_eq!(err.to_string(), "secret \"sec\" not found");
        assert!(err.is_config_error());

        let bad = container(
            json!({"name": "c", "env": [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}]}),
        );
        let err = container_env(&pod(json!([])), &bad, &ctx(), &sources).expect_err("bad path");
        assert_eq!(err.to_string(), "unsupported fieldPath: spec.bogus");
    }

    #[test]
    fn stop_signals_and_users() {
        assert_eq!(stop_signal(None), Ok(libc::SIGTERM));
        assert_eq!(stop_signal(Some("SIGQUIT")), Ok(libc::SIGQUIT));
        assert_eq!(stop_signal(Some("int")), Ok(libc::SIGINT));
        assert_eq!(stop_signal(Some("9")), Ok(libc::SIGKILL));
        assert!(stop_signal(Some("SIGNOPE")).is_err());
        let p = pod(json!([]));
        let c =
            container(json!({"name": "c", "securityContext": {"runAsUser": 7, "runAsGroup": 8}}));
        let u = user_spec(&p, &c, &image());
        assert_eq!((u.run_as_user, u.run_as_group), (Some(7), Some(8)));
        let c = container(json!({"name": "c", "workingDir": "/w"}));
        let info = ImageInfo {
            id: "sha256:abc".into(),
            repo_tags: vec![],
            repo_digests: vec![],
            size_bytes: 1,
            config: image(),
        };
        let sources = EnvSources::default();
        let cfg = build_container_config(
            &p,
            &c,
            &BuildInput {
                image: &info,
                attempt: 0,
                ctx: &ctx(),
                sources: &sources,
            },
        )
        .expect("config");
        assert_eq!(cfg.working_dir.as_deref(), Some("/w"));
        assert_eq!(cfg.user.run_as_user, Some(1000));
    }

    #[test]
    fn fs_group_is_the_first_supplemental_group() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}],
                     "securityContext": {"fsGroup": 2000, "supplementalGroups": [5, 2000]}}
        }))
        .expect("pod");
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let user = user_spec(&p, c, &ImageConfig::default());
        assert_eq!(user.supplemental_groups, vec![2000, 5]);
        assert_eq!(
            user.supplemental_groups_policy,
            SupplementalGroupsPolicy::Merge
        );
    }

    #[test]
    fn strict_supplemental_groups_policy_reaches_the_runtime() {
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c"}],
                     "securityContext": {"supplementalGroupsPolicy": "Strict"}}
        }))
        .expect("pod");
        let c = &p.spec.as_ref().expect("spec").containers[0];
        let user = user_spec(&p, c, &ImageConfig::default());
        assert_eq!(
            user.supplemental_groups_policy,
            SupplementalGroupsPolicy::Strict
        );
    }
}
