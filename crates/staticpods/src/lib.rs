//! Static pods, as kubelet runs them: a file source turns the manifests under `staticPodPath`
//! into pods that the agent runs without the API server, and a mirror manager shows each one
//! in the API as a mirror pod named `<name>-<nodename>`, keeps its status there, and
//! recreates it when someone deletes it.
//!
//! The split follows kubelet v1.33: `pkg/kubelet/config/file*.go` (periodic scan plus
//! inotify, content hash as the config hash and the uid) and `pkg/kubelet/pod/mirror_client.go`
//! (mirror pods owned by the Node, deleted with grace 0 and recreated when outdated). Mirror
//! pods seen on the pod watch are never run: the static pod is the one that runs.

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::authentication::v1::TokenRequest;
use k8s_openapi::api::core::v1::{
    ConfigMap, Event, Node, PersistentVolume, PersistentVolumeClaim, Pod, PodStatus, Secret,
    Service,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use serde_json::Value;
use sha2::Digest;
use tokio::sync::{mpsc, watch, Notify};

use podapi::{ApiError, PodApi};

/// Which source a pod came from (`file` for static pods, `api` otherwise).
pub(crate) const SOURCE_ANNOTATION: &str = "kubernetes.io/config.source";
/// The hash of the static pod's manifest; also its uid.
pub(crate) const HASH_ANNOTATION: &str = "kubernetes.io/config.hash";
/// Set on mirror pods only: the config hash of the static pod they mirror.
pub(crate) const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// When the agent first saw the pod (RFC 3339 with nanoseconds).
pub(crate) const SEEN_ANNOTATION: &str = "kubernetes.io/config.seen";
/// `kubernetes.io/config.source` of static pods read from files.
pub(crate) const FILE_SOURCE: &str = "file";

/// kubelet's default `fileCheckFrequency`.
pub const DEFAULT_FILE_CHECK: Duration = Duration::from_secs(20);
/// How often mirror pods are checked when nothing prompts it (kubelet checks on each pod
/// sync; a watch event or a failed status write prompts us sooner).
const MIRROR_CHECK: Duration = Duration::from_secs(10);
/// Retry delay after a failed mirror check (API server unreachable).
const MIRROR_RETRY: Duration = Duration::from_secs(2);
/// Quiet time after an inotify event before rescanning, so that a file being written is read
/// once complete.
const SETTLE: Duration = Duration::from_millis(100);

/// Why a manifest or the kubelet configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StaticPodError {
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("parsing {path}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_yaml_ng::Error,
    },
    #[error("{path}: file was empty")]
    Empty { path: PathBuf },
    #[error("{path}: not a regular file")]
    NotRegular { path: PathBuf },
    #[error("{path}: larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("{path}: expected {expected}, found apiVersion {api_version:?} kind {kind:?}")]
    WrongKind {
        path: PathBuf,
        expected: &'static str,
        api_version: String,
        kind: String,
    },
    #[error("{path}: not a JSON object")]
    NotAnObject { path: PathBuf },
    #[error("{path}: metadata: must be an object")]
    MetadataNotAnObject { path: PathBuf },
    /// The pod fails the API server's validation; `causes` are its field errors.
    #[error("{path}: invalid pod: {}", messages(.causes))]
    Invalid {
        path: PathBuf,
        causes: Vec<api::validation::FieldError>,
    },
    #[error("{path}: decoding the pod")]
    Decode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {field}: invalid duration {value:?}")]
    Duration {
        path: PathBuf,
        field: &'static str,
        value: String,
    },
    #[error("{path}: {field}: {value:?} {reason}")]
    Setting {
        path: PathBuf,
        field: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error(
        "{path}: cannot specify both shutdownGracePeriodByPodPriority and shutdownGracePeriod at the same time"
    )]
    ShutdownBothWays { path: PathBuf },
    #[error("{path}: invalid {field}")]
    Eviction {
        path: PathBuf,
        field: &'static str,
        #[source]
        source: node_pressure::ThresholdError,
    },
    #[error("{path}: static pod {namespace}/{name} is already defined in {first}")]
    Duplicate {
        path: PathBuf,
        namespace: String,
        name: String,
        first: PathBuf,
    },
}

/// Field errors as one line, as kube-apiserver joins them.
fn messages(causes: &[api::validation::FieldError]) -> String {
    causes
        .iter()
        .map(|c| c.message.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The fields of a `KubeletConfiguration` (kubelet.config.k8s.io/v1beta1) that the agent
/// uses; the others are accepted and ignored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KubeletConfig {
    /// Resolved against the configuration file's directory when relative, as kubelet does.
    pub static_pod_path: Option<PathBuf>,
    pub sync_frequency: Option<Duration>,
    pub file_check_frequency: Option<Duration>,
    /// `containerLogMaxSize` in bytes.
    pub container_log_max_size: Option<u64>,
    /// `containerLogMaxFiles`.
    pub container_log_max_files: Option<u32>,
    pub allowed_unsafe_sysctls: Vec<String>,
    /// `imageGCHighThresholdPercent`: image-filesystem usage that starts image GC.
    pub image_gc_high_threshold_percent: Option<u8>,
    /// `imageGCLowThresholdPercent`: the usage image GC frees down to.
    pub image_gc_low_threshold_percent: Option<u8>,
    /// `imageMinimumGCAge`: how long an unused image is kept after it was first seen.
    pub image_minimum_gc_age: Option<Duration>,
    /// `serializeImagePulls` (kubelet default `true`).
    pub serialize_image_pulls: Option<bool>,
    /// `maxParallelImagePulls`: a bound on parallel pulls when they are not serialized.
    pub max_parallel_image_pulls: Option<u32>,
    /// `shutdownGracePeriod`: how long stopping the node drains its pods (0: no drain).
    pub shutdown_grace_period: Option<Duration>,
    /// `shutdownGracePeriodCriticalPods`: the part of it kept for critical pods.
    pub shutdown_grace_period_critical_pods: Option<Duration>,
    /// `shutdownGracePeriodByPodPriority`, instead of the two above.
    pub shutdown_grace_period_by_pod_priority: Vec<node_shutdown::PriorityGrace>,
    /// `evictionHard`: the hard eviction thresholds, parsed (`None`: absent, the kubelet's
    /// defaults apply).
    pub eviction_hard: Option<Vec<node_pressure::Threshold>>,
    /// `evictionSoft` with `evictionSoftGracePeriod`: the soft thresholds, each with its
    /// grace period.
    pub eviction_soft: Vec<node_pressure::Threshold>,
    /// `evictionMaxPodGracePeriod`, in seconds.
    pub eviction_max_pod_grace_period: Option<i64>,
    /// `evictionPressureTransitionPeriod`.
    pub eviction_pressure_transition_period: Option<Duration>,
    /// `evictionMinimumReclaim`, parsed: by signal, how far above its threshold a signal
    /// must get back once the threshold acted.
    pub eviction_minimum_reclaim:
        std::collections::BTreeMap<node_pressure::Signal, node_pressure::Value>,
    /// `nodeStatusUpdateFrequency`: how often the node status is computed.
    pub node_status_update_frequency: Option<Duration>,
    /// `nodeStatusReportFrequency`: how often an unchanged node status is still posted.
    pub node_status_report_frequency: Option<Duration>,
    /// `nodeLeaseDurationSeconds`: the Lease's duration; it is renewed every quarter of it.
    pub node_lease_duration_seconds: Option<i32>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawKubeletConfig {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    static_pod_path: Option<String>,
    sync_frequency: Option<String>,
    file_check_frequency: Option<String>,
    container_log_max_size: Option<String>,
    container_log_max_files: Option<i64>,
    #[serde(default)]
    allowed_unsafe_sysctls: Vec<String>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    image_gc_high_threshold_percent: Option<i64>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    image_gc_low_threshold_percent: Option<i64>,
    #[serde(rename = "imageMinimumGCAge")]
    image_minimum_gc_age: Option<String>,
    serialize_image_pulls: Option<bool>,
    max_parallel_image_pulls: Option<i64>,
    shutdown_grace_period: Option<String>,
    shutdown_grace_period_critical_pods: Option<String>,
    #[serde(default)]
    shutdown_grace_period_by_pod_priority: Vec<RawPriorityGrace>,
    eviction_hard: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    eviction_soft: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    eviction_soft_grace_period: std::collections::BTreeMap<String, String>,
    eviction_max_pod_grace_period: Option<i32>,
    eviction_pressure_transition_period: Option<String>,
    #[serde(default)]
    eviction_minimum_reclaim: std::collections::BTreeMap<String, String>,
    node_status_update_frequency: Option<String>,
    node_status_report_frequency: Option<String>,
    node_lease_duration_seconds: Option<i64>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawPriorityGrace {
    #[serde(default)]
    priority: i32,
    #[serde(default)]
    shutdown_grace_period_seconds: i64,
}

const KUBELET_CONFIG_API: &str = "kubelet.config.k8s.io/v1beta1";

/// Parses a kubelet configuration file (YAML or JSON).
pub fn parse_kubelet_config(text: &str, path: &Path) -> Result<KubeletConfig, StaticPodError> {
    let raw: RawKubeletConfig =
        serde_yaml_ng::from_str(text).map_err(|source| StaticPodError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
    if raw.api_version != KUBELET_CONFIG_API || raw.kind != "KubeletConfiguration" {
        return Err(StaticPodError::WrongKind {
            path: path.to_path_buf(),
            expected: "kubelet.config.k8s.io/v1beta1 KubeletConfiguration",
            api_version: raw.api_version,
            kind: raw.kind,
        });
    }
    let duration = |field: &'static str, value: Option<String>| match value {
        None => Ok(None),
        Some(v) => api::duration::parse_go_duration(&v)
            .map(Some)
            .ok_or_else(|| StaticPodError::Duration {
                path: path.to_path_buf(),
                field,
                value: v,
            }),
    };
    let setting =
        |field: &'static str, value: String, reason: &'static str| StaticPodError::Setting {
            path: path.to_path_buf(),
            field,
            value,
            reason,
        };
    let container_log_max_size = match raw.container_log_max_size {
        None => None,
        Some(v) => Some(
            api::quantity::Quantity::parse(&v)
                .filter(|q| q.is_positive())
                .map(|q| q.as_f64() as u64)
                .ok_or_else(|| setting("containerLogMaxSize", v, "is not a positive quantity"))?,
        ),
    };
    let container_log_max_files = match raw.container_log_max_files {
        None => None,
        Some(n) => Some(u32::try_from(n).ok().filter(|n| *n > 1).ok_or_else(|| {
            setting(
                "containerLogMaxFiles",
                n.to_string(),
                "must be greater than 1",
            )
        })?),
    };
    let percent = |field: &'static str, value: Option<i64>| match value {
        None => Ok(None),
        Some(n) => u8::try_from(n)
            .ok()
            .filter(|n| *n <= 100)
            .map(Some)
            .ok_or_else(|| setting(field, n.to_string(), "must be between 0 and 100")),
    };
    let high = percent(
        "imageGCHighThresholdPercent",
        raw.image_gc_high_threshold_percent,
    )?;
    let low = percent(
        "imageGCLowThresholdPercent",
        raw.image_gc_low_threshold_percent,
    )?;
    // kubelet's validation: the low threshold must stay below the high one (defaults 80/85).
    let (l, h) = (low.unwrap_or(80), high.unwrap_or(85));
    if l >= h {
        return Err(setting(
            "imageGCLowThresholdPercent",
            l.to_string(),
            "must be less than imageGCHighThresholdPercent",
        ));
    }
    // kubelet's validation: a positive bound, and none above 1 while pulls are serialized.
    let max_parallel_image_pulls = match raw.max_parallel_image_pulls {
        None => None,
        Some(n) => Some(u32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
            setting(
                "maxParallelImagePulls",
                n.to_string(),
                "must be a positive number",
            )
        })?),
    };
    if raw.serialize_image_pulls.unwrap_or(true) && max_parallel_image_pulls.is_some_and(|n| n > 1)
    {
        return Err(setting(
            "maxParallelImagePulls",
            max_parallel_image_pulls.unwrap_or_default().to_string(),
            "must be 1 or unset when serializeImagePulls is true",
        ));
    }
    let shutdown = duration("shutdownGracePeriod", raw.shutdown_grace_period)?;
    let shutdown_critical = duration(
        "shutdownGracePeriodCriticalPods",
        raw.shutdown_grace_period_critical_pods,
    )?;
    // kubelet's validation: the critical pods' share fits in the whole period.
    if shutdown_critical.unwrap_or_default() > shutdown.unwrap_or_default() {
        return Err(setting(
            "shutdownGracePeriodCriticalPods",
            format!("{}s", shutdown_critical.unwrap_or_default().as_secs()),
            "must be <= shutdownGracePeriod",
        ));
    }
    // kubelet's validation: shutdown by pod priority replaces the two periods.
    if !raw.shutdown_grace_period_by_pod_priority.is_empty()
        && (shutdown.is_some_and(|d| !d.is_zero())
            || shutdown_critical.is_some_and(|d| !d.is_zero()))
    {
        return Err(StaticPodError::ShutdownBothWays {
            path: path.to_path_buf(),
        });
    }
    let mut by_priority = Vec::new();
    for g in raw.shutdown_grace_period_by_pod_priority {
        let secs = u64::try_from(g.shutdown_grace_period_seconds).map_err(|_| {
            setting(
                "shutdownGracePeriodByPodPriority",
                g.shutdown_grace_period_seconds.to_string(),
                "shutdownGracePeriodSeconds must not be negative",
            )
        })?;
        by_priority.push(node_shutdown::PriorityGrace {
            priority: g.priority,
            grace_period: Duration::from_secs(secs),
        });
    }
    let eviction_hard = raw
        .eviction_hard
        .map(|m| node_pressure::parse_hard(&m))
        .transpose()
        .map_err(|source| StaticPodError::Eviction {
            path: path.to_path_buf(),
            field: "evictionHard",
            source,
        })?;
    // kubelet refuses a soft threshold without a grace period.
    let eviction_soft =
        node_pressure::parse_soft(&raw.eviction_soft, &raw.eviction_soft_grace_period).map_err(
            |source| StaticPodError::Eviction {
                path: path.to_path_buf(),
                field: "evictionSoft",
                source,
            },
        )?;
    // kubelet refuses a minimum reclaim of a signal it does not know, as it does a threshold.
    let eviction_minimum_reclaim =
        node_pressure::parse_minimum_reclaim(&raw.eviction_minimum_reclaim).map_err(|source| {
            StaticPodError::Eviction {
                path: path.to_path_buf(),
                field: "evictionMinimumReclaim",
                source,
            }
        })?;
    // kubelet's validation: the sync, node status and Lease periods are positive.
    let positive = |field: &'static str, value: Option<Duration>| match value {
        Some(d) if d.is_zero() => Err(setting(field, "0s".into(), "must be > 0")),
        _ => Ok(value),
    };
    let node_status_update_frequency = positive(
        "nodeStatusUpdateFrequency",
        duration(
            "nodeStatusUpdateFrequency",
            raw.node_status_update_frequency,
        )?,
    )?;
    let node_status_report_frequency = positive(
        "nodeStatusReportFrequency",
        duration(
            "nodeStatusReportFrequency",
            raw.node_status_report_frequency,
        )?,
    )?;
    let node_lease_duration_seconds = match raw.node_lease_duration_seconds {
        None => None,
        Some(n) => Some(i32::try_from(n).ok().filter(|n| *n > 0).ok_or_else(|| {
            setting(
                "nodeLeaseDurationSeconds",
                n.to_string(),
                "must be greater than 0",
            )
        })?),
    };
    let base = path.parent().unwrap_or(Path::new("/"));
    Ok(KubeletConfig {
        node_status_update_frequency,
        node_status_report_frequency,
        node_lease_duration_seconds,
        static_pod_path: raw
            .static_pod_path
            .filter(|p| !p.is_empty())
            .map(|p| base.join(p)),
        sync_frequency: positive(
            "syncFrequency",
            duration("syncFrequency", raw.sync_frequency)?,
        )?,
        file_check_frequency: duration("fileCheckFrequency", raw.file_check_frequency)?,
        container_log_max_size,
        container_log_max_files,
        allowed_unsafe_sysctls: raw.allowed_unsafe_sysctls,
        image_gc_high_threshold_percent: high,
        image_gc_low_threshold_percent: low,
        image_minimum_gc_age: duration("imageMinimumGCAge", raw.image_minimum_gc_age)?,
        serialize_image_pulls: raw.serialize_image_pulls,
        max_parallel_image_pulls,
        shutdown_grace_period: shutdown,
        shutdown_grace_period_critical_pods: shutdown_critical,
        shutdown_grace_period_by_pod_priority: by_priority,
        eviction_hard,
        eviction_soft,
        eviction_max_pod_grace_period: raw.eviction_max_pod_grace_period.map(i64::from),
        eviction_pressure_transition_period: duration(
            "evictionPressureTransitionPeriod",
            raw.eviction_pressure_transition_period,
        )?,
        eviction_minimum_reclaim,
    })
}

/// Reads and parses a kubelet configuration file.
pub fn load_kubelet_config(path: &Path) -> Result<KubeletConfig, StaticPodError> {
    let data = read_capped(path)?;
    let text = String::from_utf8(data).map_err(|e| StaticPodError::Read {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    parse_kubelet_config(&text, path)
}

/// The most a manifest or configuration file may hold: kubelet's `maxConfigLength` (10 MiB),
/// the cap of its HTTP manifest source. Nothing larger is a pod, and without a cap a file
/// that never ends (a link to /dev/zero) would fill the agent's memory.
pub const MAX_FILE_BYTES: u64 = 10 << 20;

/// Reads a regular file of at most [`MAX_FILE_BYTES`]. Opened non-blocking, so a FIFO
/// placed among the manifests cannot stall the scan; anything but a regular file is
/// refused, as kubelet's file source skips it.
pub fn read_capped(path: &Path) -> Result<Vec<u8>, StaticPodError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_err = |source| StaticPodError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(read_err)?;
    if !file.metadata().map_err(read_err)?.is_file() {
        return Err(StaticPodError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let mut data = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(read_err)?;
    if data.len() as u64 > MAX_FILE_BYTES {
        return Err(StaticPodError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_FILE_BYTES,
        });
    }
    Ok(data)
}

fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// A mirror pod: the API's copy of a static pod (never run by the agent itself).
pub fn is_mirror_pod(pod: &Pod) -> bool {
    annotation(pod, MIRROR_ANNOTATION).is_some()
}

/// A pod the agent read from a file (not from the API).
pub fn is_static_pod(pod: &Pod) -> bool {
    annotation(pod, SOURCE_ANNOTATION).is_some_and(|s| s != "api")
}

fn full_name(pod: &Pod) -> (String, String) {
    (
        pod.metadata.namespace.clone().unwrap_or_default(),
        pod.metadata.name.clone().unwrap_or_default(),
    )
}

/// Turns one manifest into the static pod kubelet's file source makes of it: defaulted and
/// validated like an API pod, named `<name>-<nodename>`, bound to this node, namespace
/// `default` when unset, and a uid that is the hash of the content, the node and the file
/// (so an edited manifest is a new pod, and a restarted agent finds the same uid).
pub fn pod_from_manifest(data: &[u8], path: &Path, node_name: &str) -> Result<Pod, StaticPodError> {
    let err_path = || path.to_path_buf();
    if data.iter().all(u8::is_ascii_whitespace) {
        return Err(StaticPodError::Empty { path: err_path() });
    }
    let mut obj: Value =
        serde_yaml_ng::from_slice(data).map_err(|source| StaticPodError::Parse {
            path: err_path(),
            source,
        })?;
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    if api_version != "v1" || kind != "Pod" {
        return Err(StaticPodError::WrongKind {
            path: err_path(),
            expected: "apiVersion v1 kind Pod",
            api_version,
            kind,
        });
    }
    api::defaults::apply_defaults("Pod", &mut obj);
    let Some(root) = obj.as_object_mut() else {
        return Err(StaticPodError::NotAnObject { path: err_path() });
    };
    root.remove("status");
    let meta = root
        .entry("metadata")
        .or_insert_with(|| Value::Object(Default::default()));
    if !meta.is_object() {
        return Err(StaticPodError::MetadataNotAnObject { path: err_path() });
    }
    let uid = match meta["uid"].as_str().filter(|u| !u.is_empty()) {
        Some(u) => u.to_string(),
        None => config_hash(&obj, node_name, path),
    };
    let meta = &mut obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default().to_string();
    if !name.is_empty() {
        // kubelet's generatePodName: the node name (lower-cased) is appended.
        meta["name"] = Value::String(format!("{name}-{}", node_name.to_lowercase()));
    }
    if meta["namespace"].as_str().is_none_or(str::is_empty) {
        meta["namespace"] = Value::String("default".into());
    }
    meta["uid"] = Value::String(uid.clone());
    if !meta["annotations"].is_object() {
        meta["annotations"] = Value::Object(Default::default());
    }
    meta["annotations"][HASH_ANNOTATION] = Value::String(uid);
    meta["annotations"][SOURCE_ANNOTATION] = Value::String(FILE_SOURCE.into());
    if obj["spec"].is_object() {
        obj["spec"]["nodeName"] = Value::String(node_name.to_string());
    }
    if let Err(causes) = api::validation::validate_create("Pod", &obj) {
        return Err(StaticPodError::Invalid {
            path: err_path(),
            causes,
        });
    }
    serde_json::from_value(obj).map_err(|source| StaticPodError::Decode {
        path: err_path(),
        source,
    })
}

/// The config hash: 128 bits of SHA-256 over the defaulted pod, the node and the file, in hex
/// (kubelet uses MD5 over the same three things; the shape — 32 hex digits — is the same).
fn config_hash(obj: &Value, node_name: &str, path: &Path) -> String {
    let mut h = sha2::Sha256::new();
    h.update(obj.to_string().as_bytes());
    h.update(format!("host:{node_name}").as_bytes());
    h.update(format!("file:{}", path.display()).as_bytes());
    hex::encode(&h.finalize()[..16])
}

/// What one scan of `staticPodPath` found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub pods: Vec<Pod>,
    /// Manifests that were skipped (logged; their pods are not run).
    pub errors: Vec<StaticPodError>,
}

/// Reads every manifest under `path` (a directory, or a single file), in file-name order.
/// Hidden files and subdirectories are skipped as kubelet skips them. A missing path is an
/// empty set (kubelet then stops every static pod); `Err` when the path cannot be read at
/// all (the previous set stays).
pub(crate) fn read_manifests(path: &Path, node_name: &str) -> Result<Scan, StaticPodError> {
    let read_err = |source| StaticPodError::Read {
        path: path.to_path_buf(),
        source,
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Scan::default()),
        Err(e) => return Err(read_err(e)),
    };
    let files = if meta.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(read_err)?
            .filter_map(Result::ok)
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()))
            .map(|e| e.path())
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut scan = Scan::default();
    let mut seen: HashMap<(String, String), PathBuf> = HashMap::new();
    for file in files {
        let result = read_capped(&file).and_then(|data| pod_from_manifest(&data, &file, node_name));
        match result {
            Ok(pod) => {
                let key = full_name(&pod);
                if let Some(first) = seen.get(&key) {
                    scan.errors.push(StaticPodError::Duplicate {
                        path: file,
                        namespace: key.0,
                        name: key.1,
                        first: first.clone(),
                    });
                    continue;
                }
                seen.insert(key, file);
                scan.pods.push(pod);
            }
            Err(err) => scan.errors.push(err),
        }
    }
    Ok(scan)
}

/// A change to the set of static pods.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Add(Box<Pod>),
    Remove {
        uid: String,
        namespace: String,
        name: String,
    },
}

fn uid_of(pod: &Pod) -> String {
    pod.metadata.uid.clone().unwrap_or_default()
}

/// The pure step of the file source: the changes that turn `current` (by uid) into `desired`.
/// Removals come first, so that an edited manifest stops its old pod before the new one is
/// known.
pub(crate) fn diff(current: &BTreeMap<String, Pod>, desired: &[Pod]) -> Vec<Change> {
    let wanted: BTreeMap<String, &Pod> = desired.iter().map(|p| (uid_of(p), p)).collect();
    let mut out: Vec<Change> = current
        .iter()
        .filter(|(uid, _)| !wanted.contains_key(*uid))
        .map(|(uid, pod)| {
            let (namespace, name) = full_name(pod);
            Change::Remove {
                uid: uid.clone(),
                namespace,
                name,
            }
        })
        .collect();
    out.extend(
        desired
            .iter()
            .filter(|p| !current.contains_key(&uid_of(p)))
            .map(|p| Change::Add(Box::new(p.clone()))),
    );
    out
}

/// kubelet's file source: the manifests under one path and the pods they currently make.
pub struct FileSource {
    path: PathBuf,
    node_name: String,
    current: BTreeMap<String, Pod>,
}

impl FileSource {
    pub fn new(path: PathBuf, node_name: String) -> Self {
        Self {
            path,
            node_name,
            current: BTreeMap::new(),
        }
    }

    /// Reads the manifests and returns what changed since the last scan. New pods get their
    /// `kubernetes.io/config.seen` time.
    pub fn scan(&mut self, now: jiff::Timestamp) -> Vec<Change> {
        let scan = match read_manifests(&self.path, &self.node_name) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "reading static pod manifests failed");
                return Vec::new();
            }
        };
        for err in &scan.errors {
            tracing::warn!(error = %err, "skipping static pod manifest");
        }
        let mut changes = diff(&self.current, &scan.pods);
        for change in &mut changes {
            match change {
                Change::Add(pod) => {
                    let seen = format!("{:.9}", now);
                    pod.metadata
                        .annotations
                        .get_or_insert_with(Default::default)
                        .insert(SEEN_ANNOTATION.into(), seen);
                    self.current.insert(uid_of(pod), (**pod).clone());
                }
                Change::Remove { uid, .. } => {
                    self.current.remove(uid);
                }
            }
        }
        changes
    }

    /// Rescans on every change inotify reports under the path and every `period`, sending
    /// the changes to the agent, until shutdown.
    pub async fn watch(
        mut self,
        tx: mpsc::UnboundedSender<Change>,
        period: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut notify: Option<tokio::io::unix::AsyncFd<Watch>> = None;
        loop {
            if notify.is_none() {
                notify = Watch::new(&self.path)
                    .and_then(Watch::register)
                    .map_err(|err| {
                        tracing::debug!(path = %self.path.display(), error = %err, "no inotify watch on the static pod path; polling")
                    })
                    .ok();
            }
            let woke = async {
                match notify.as_ref() {
                    Some(fd) => fd.readable().await.map(|mut guard| {
                        guard.clear_ready();
                    }),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = woke => {
                    if let Some(fd) = notify.as_ref() {
                        match fd.get_ref().drain() {
                            Ok(true) => {}
                            // The watched path went away (or the queue overflowed):
                            // watch again on the next round.
                            Ok(false) | Err(_) => notify = None,
                        }
                    }
                    if r.is_err() {
                        notify = None;
                    }
                    // Let a writer finish before reading.
                    tokio::select! {
                        _ = tokio::time::sleep(SETTLE) => {}
                        _ = shutdown.changed() => return,
                    }
                    if let Some(fd) = notify.as_ref() {
                        if !matches!(fd.get_ref().drain(), Ok(true)) {
                            notify = None;
                        }
                    }
                }
                _ = tokio::time::sleep(period) => {}
                _ = shutdown.changed() => return,
            }
            for change in self.scan(jiff::Timestamp::now()) {
                if tx.send(change).is_err() {
                    return;
                }
            }
        }
    }
}

/// A non-blocking inotify watch on the static pod path.
struct Watch(nix::sys::inotify::Inotify);

impl Watch {
    fn new(path: &Path) -> std::io::Result<Self> {
        use nix::sys::inotify::{AddWatchFlags as F, InitFlags, Inotify};
        let ino = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)?;
        // kubelet's mask, with IN_CLOSE_WRITE in place of IN_MODIFY so a file is read once
        // written rather than after its first write().
        let mask = F::IN_CREATE
            | F::IN_CLOSE_WRITE
            | F::IN_DELETE
            | F::IN_MOVED_FROM
            | F::IN_MOVED_TO
            | F::IN_ATTRIB
            | F::IN_DELETE_SELF
            | F::IN_MOVE_SELF;
        ino.add_watch(path, mask)?;
        Ok(Self(ino))
    }

    fn register(self) -> std::io::Result<tokio::io::unix::AsyncFd<Self>> {
        // SAFETY: `Watch` owns its inotify descriptor (an `OwnedFd` inside `Inotify`), which
        // stays open and unchanged until the `AsyncFd` holding the `Watch` drops it.
        unsafe { tokio::io::unix::AsyncFd::register(self) }.map_err(std::io::Error::from)
    }

    /// Reads all pending events. `Ok(false)` when the watch ended (path deleted or moved, or
    /// events were lost) and must be set up again.
    fn drain(&self) -> std::io::Result<bool> {
        use nix::sys::inotify::AddWatchFlags as F;
        let mut alive = true;
        loop {
            match self.0.read_events() {
                Ok(events) if events.is_empty() => return Ok(alive),
                Ok(events) => {
                    if events.iter().any(|e| {
                        e.mask.intersects(
                            F::IN_IGNORED | F::IN_DELETE_SELF | F::IN_MOVE_SELF | F::IN_Q_OVERFLOW,
                        )
                    }) {
                        alive = false;
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => return Ok(alive),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl AsRawFd for Watch {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

/// The agent's record of its static pods, shared by the dispatcher (one writer), the status
/// path of the pod workers and the mirror manager.
#[derive(Clone, Default)]
pub struct StaticPods {
    inner: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<MirrorState>,
    kick: Notify,
}

#[derive(Default)]
struct MirrorState {
    /// The static pods by (namespace, name).
    pods: BTreeMap<(String, String), Pod>,
    /// The status each static pod's worker wrote last, and whether the mirror pod has it.
    statuses: HashMap<(String, String), (PodStatus, bool)>,
}

impl StaticPods {
    fn lock(&self) -> std::sync::MutexGuard<'_, MirrorState> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a static pod (replacing one of the same name: an edited manifest).
    pub fn set(&self, pod: &Pod) {
        let key = full_name(pod);
        let mut state = self.lock();
        let replaced = state.pods.insert(key.clone(), pod.clone());
        if replaced.is_some_and(|old| uid_of(&old) != uid_of(pod)) {
            state.statuses.remove(&key);
        }
        drop(state);
        self.kick();
    }

    /// Forgets the static pod `uid` (unless a newer pod took its name already).
    pub fn remove(&self, namespace: &str, name: &str, uid: &str) {
        let key = (namespace.to_string(), name.to_string());
        let mut state = self.lock();
        if state.pods.get(&key).is_some_and(|p| uid_of(p) == uid) {
            state.pods.remove(&key);
            state.statuses.remove(&key);
        }
        drop(state);
        self.kick();
    }

    pub fn is_static(&self, namespace: &str, name: &str) -> bool {
        self.lock()
            .pods
            .contains_key(&(namespace.to_string(), name.to_string()))
    }

    /// Asks the mirror manager to check the mirror pods now.
    pub fn kick(&self) {
        self.inner.kick.notify_one();
    }

    fn snapshot(&self) -> Vec<Pod> {
        self.lock().pods.values().cloned().collect()
    }

    fn record_status(&self, namespace: &str, name: &str, status: PodStatus, delivered: bool) {
        let key = (namespace.to_string(), name.to_string());
        let mut state = self.lock();
        if state.pods.contains_key(&key) {
            state.statuses.insert(key, (status, delivered));
        }
    }

    /// A (re)created mirror has none of the status yet.
    fn mark_undelivered(&self, namespace: &str, name: &str) {
        let key = (namespace.to_string(), name.to_string());
        if let Some(entry) = self.lock().statuses.get_mut(&key) {
            entry.1 = false;
        }
    }

    fn undelivered(&self) -> Vec<((String, String), PodStatus)> {
        self.lock()
            .statuses
            .iter()
            .filter(|(_, (_, delivered))| !delivered)
            .map(|(k, (s, _))| (k.clone(), s.clone()))
            .collect()
    }

    fn delivered(&self, key: &(String, String), status: &PodStatus) {
        if let Some(entry) = self.lock().statuses.get_mut(key) {
            if &entry.0 == status {
                entry.1 = true;
            }
        }
    }
}

/// The pod workers' `PodApi`, aware of static pods: their status goes to the mirror pod of
/// the same name, and is kept to be written again when the mirror is missing (not created
/// yet, deleted, or the API server unreachable) — kubelet's status manager does the same
/// through its uid translation. Everything else passes through.
pub struct MirrorStatusApi {
    pub inner: Arc<dyn PodApi>,
    pub statics: StaticPods,
}

#[async_trait]
impl PodApi for MirrorStatusApi {
    async fn patch_pod_status(
        &self,
        namespace: &str,
        name: &str,
        status: &PodStatus,
    ) -> Result<(), ApiError> {
        if !self.statics.is_static(namespace, name) {
            return self.inner.patch_pod_status(namespace, name, status).await;
        }
        let result = self.inner.patch_pod_status(namespace, name, status).await;
        self.statics
            .record_status(namespace, name, status.clone(), result.is_ok());
        if let Err(err) = result {
            tracing::debug!(pod = %format!("{namespace}/{name}"), error = %err, "mirror pod status not written; kept for the mirror manager");
            self.statics.kick();
        }
        Ok(())
    }

    async fn delete_pod(&self, namespace: &str, name: &str, uid: &str) -> Result<(), ApiError> {
        self.inner.delete_pod(namespace, name, uid).await
    }

    async fn create_event(&self, event: &Event) -> Result<(), ApiError> {
        self.inner.create_event(event).await
    }

    async fn patch_event(
        &self,
        namespace: &str,
        name: &str,
        count: i32,
        last: &Time,
    ) -> Result<(), ApiError> {
        self.inner.patch_event(namespace, name, count, last).await
    }

    async fn get_config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, ApiError> {
        self.inner.get_config_map(namespace, name).await
    }

    async fn get_secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, ApiError> {
        self.inner.get_secret(namespace, name).await
    }

    async fn create_token(
        &self,
        namespace: &str,
        service_account: &str,
        request: &TokenRequest,
    ) -> Result<TokenRequest, ApiError> {
        self.inner
            .create_token(namespace, service_account, request)
            .await
    }

    async fn list_services(&self, namespace: &str) -> Result<Vec<Service>, ApiError> {
        self.inner.list_services(namespace).await
    }

    async fn get_persistent_volume_claim(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<PersistentVolumeClaim>, ApiError> {
        self.inner
            .get_persistent_volume_claim(namespace, name)
            .await
    }

    async fn get_persistent_volume(
        &self,
        name: &str,
    ) -> Result<Option<PersistentVolume>, ApiError> {
        self.inner.get_persistent_volume(name).await
    }

    async fn get_runtime_class(
        &self,
        name: &str,
    ) -> Result<Option<k8s_openapi::api::node::v1::RuntimeClass>, ApiError> {
        self.inner.get_runtime_class(name).await
    }
}

/// A mirror pod to delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MirrorRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// What the mirror manager must do.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct MirrorPlan {
    /// Orphaned, outdated (hash differs) or terminating mirrors: deleted with grace 0.
    pub delete: Vec<MirrorRef>,
    /// Static pods (namespace, name) with no usable mirror.
    pub create: Vec<(String, String)>,
}

/// The pure step of the mirror manager, after kubelet's syncPod and HandlePodCleanups: a
/// mirror is kept only while it mirrors the current hash of a static pod of its name and is
/// not being deleted; every static pod without such a mirror gets a new one.
pub(crate) fn plan_mirrors(statics: &[Pod], mirrors: &[Pod]) -> MirrorPlan {
    let mut plan = MirrorPlan::default();
    let mut good: Vec<(String, String)> = Vec::new();
    for m in mirrors.iter().filter(|m| is_mirror_pod(m)) {
        let key = full_name(m);
        let hash = annotation(m, MIRROR_ANNOTATION);
        let current = statics
            .iter()
            .any(|s| full_name(s) == key && annotation(s, HASH_ANNOTATION) == hash);
        if current && m.metadata.deletion_timestamp.is_none() {
            good.push(key);
        } else {
            plan.delete.push(MirrorRef {
                namespace: key.0,
                name: key.1,
                uid: uid_of(m),
            });
        }
    }
    for s in statics {
        let key = full_name(s);
        if !good.contains(&key) {
            plan.create.push(key);
        }
    }
    plan
}

/// The mirror pod of `pod`: the same metadata and spec, the mirror annotation set to the
/// config hash, and the Node as its controlling owner (as kubelet's mirror client sets it).
pub(crate) fn mirror_pod(pod: &Pod, node_name: &str, node_uid: &str) -> Pod {
    let mut m = Pod {
        metadata: pod.metadata.clone(),
        spec: pod.spec.clone(),
        status: None,
    };
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.metadata.creation_timestamp = None;
    let hash = annotation(pod, HASH_ANNOTATION)
        .map(str::to_string)
        .unwrap_or_else(|| uid_of(pod));
    m.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert(MIRROR_ANNOTATION.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node_name.to_string(),
        uid: node_uid.to_string(),
        controller: Some(true),
        block_owner_deletion: None,
    }]);
    m
}

fn api_code(err: &kube::Error) -> Option<u16> {
    match err {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// Keeps the mirror pods of the static pods in the API, until shutdown.
pub async fn mirror_loop(
    client: kube::Client,
    node_name: String,
    statics: StaticPods,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let wait = match reconcile_mirrors(&client, &node_name, &statics).await {
            Ok(()) if statics.undelivered().is_empty() => MIRROR_CHECK,
            Ok(()) => MIRROR_RETRY,
            Err(err) => {
                tracing::debug!(error = %err, "mirror pod check failed; retrying");
                // Do not let status writes that fail prompt a storm of retries.
                tokio::select! {
                    _ = tokio::time::sleep(MIRROR_RETRY) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
        };
        tokio::select! {
            _ = statics.inner.kick.notified() => {}
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn reconcile_mirrors(
    client: &kube::Client,
    node_name: &str,
    statics: &StaticPods,
) -> Result<(), kube::Error> {
    let desired = statics.snapshot();
    let all: Api<Pod> = Api::all(client.clone());
    let listed = all
        .list(&ListParams::default().fields(&format!("spec.nodeName={node_name}")))
        .await?;
    let plan = plan_mirrors(&desired, &listed.items);
    for d in &plan.delete {
        tracing::info!(pod = %format!("{}/{}", d.namespace, d.name), "deleting outdated or orphaned mirror pod");
        let api: Api<Pod> = Api::namespaced(client.clone(), &d.namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(d.uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&d.name, &params).await {
            Ok(_) => {}
            Err(e) if matches!(api_code(&e), Some(404 | 409)) => {}
            Err(e) => return Err(e),
        }
    }
    if !plan.create.is_empty() {
        // kubelet does not create mirror pods before its Node exists (the owner reference
        // needs the Node's uid).
        let nodes: Api<Node> = Api::all(client.clone());
        let Some(node_uid) = nodes.get_opt(node_name).await?.and_then(|n| n.metadata.uid) else {
            tracing::debug!(node = %node_name, "node not registered yet; mirror pods wait");
            return Ok(());
        };
        for key in &plan.create {
            let Some(pod) = desired.iter().find(|p| &full_name(p) == key) else {
                continue;
            };
            let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
            match api
                .create(
                    &PostParams::default(),
                    &mirror_pod(pod, node_name, &node_uid),
                )
                .await
            {
                Ok(_) => {
                    tracing::info!(pod = %format!("{}/{}", key.0, key.1), "created mirror pod");
                    statics.mark_undelivered(&key.0, &key.1);
                }
                Err(e) => {
                    // A namespace that does not exist, or a pod of that name that is not our
                    // mirror: kubelet logs it and keeps running the static pod.
                    tracing::warn!(pod = %format!("{}/{}", key.0, key.1), error = %e, "creating mirror pod failed");
                }
            }
        }
    }
    for (key, status) in statics.undelivered() {
        let api: Api<Pod> = Api::namespaced(client.clone(), &key.0);
        let patch = serde_json::json!({ "status": status });
        match api
            .patch_status(&key.1, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => statics.delivered(&key, &status),
            // No mirror (yet): the next round creates it.
            Err(e) if api_code(&e) == Some(404) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A `PodApi` whose status writes fail while `fail` is set (the mirror is missing).
    #[derive(Default)]
    struct FlakyApi {
        fail: AtomicBool,
    }

    fn not_found() -> kube::Error {
        let status: kube::core::Status =
            serde_json::from_value(serde_json::json!({"code": 404, "reason": "NotFound"}))
                .expect("status");
        kube::Error::Api(Box::new(status))
    }

    #[async_trait]
    impl PodApi for FlakyApi {
        async fn patch_pod_status(
            &self,
            ns: &str,
            name: &str,
            _: &PodStatus,
        ) -> Result<(), ApiError> {
            if self.fail.load(Ordering::SeqCst) {
                return Err(ApiError::PatchPodStatus {
                    namespace: ns.into(),
                    name: name.into(),
                    source: not_found(),
                });
            }
            Ok(())
        }
        async fn delete_pod(&self, _: &str, _: &str, _: &str) -> Result<(), ApiError> {
            Ok(())
        }
        async fn create_event(&self, _: &Event) -> Result<(), ApiError> {
            Ok(())
        }
        async fn patch_event(&self, _: &str, _: &str, _: i32, _: &Time) -> Result<(), ApiError> {
            Ok(())
        }
        async fn get_config_map(&self, _: &str, _: &str) -> Result<Option<ConfigMap>, ApiError> {
            Ok(None)
        }
        async fn get_secret(&self, _: &str, _: &str) -> Result<Option<Secret>, ApiError> {
            Ok(None)
        }
        async fn create_token(
            &self,
            _: &str,
            _: &str,
            request: &TokenRequest,
        ) -> Result<TokenRequest, ApiError> {
            Ok(request.clone())
        }
        async fn list_services(&self, _: &str) -> Result<Vec<Service>, ApiError> {
            Ok(Vec::new())
        }
        async fn get_persistent_volume_claim(
            &self,
            _: &str,
            _: &str,
        ) -> Result<Option<PersistentVolumeClaim>, ApiError> {
            Ok(None)
        }
        async fn get_persistent_volume(
            &self,
            _: &str,
        ) -> Result<Option<PersistentVolume>, ApiError> {
            Ok(None)
        }
        async fn get_runtime_class(
            &self,
            _: &str,
        ) -> Result<Option<k8s_openapi::api::node::v1::RuntimeClass>, ApiError> {
            Ok(None)
        }
    }

    const NGINX: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n    command: [sleep, '3600']\n";

    fn manifest(dir: &Path, file: &str, text: &str) -> PathBuf {
        let path = dir.join(file);
        let mut f = std::fs::File::create(&path).expect("create");
        f.write_all(text.as_bytes()).expect("write");
        path
    }

    #[test]
    fn manifest_becomes_a_static_pod() {
        let path = Path::new("/etc/kubernetes/manifests/web.yaml");
        let pod = pod_from_manifest(NGINX.as_bytes(), path, "node-a").expect("pod");
        assert_eq!(pod.metadata.name.as_deref(), Some("web-node-a"));
        assert_eq!(pod.metadata.namespace.as_deref(), Some("default"));
        let uid = pod.metadata.uid.clone().expect("uid");
        assert_eq!(uid.len(), 32);
        assert!(uid.chars().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(annotation(&pod, HASH_ANNOTATION), Some(uid.as_str()));
        assert_eq!(annotation(&pod, SOURCE_ANNOTATION), Some("file"));
        assert!(is_static_pod(&pod) && !is_mirror_pod(&pod));
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.node_name.as_deref(), Some("node-a"));
        assert_eq!(spec.restart_policy.as_deref(), Some("Always"), "defaulted");
        // Same content, node and file: same uid (a restarted agent adopts the pod).
        let again = pod_from_manifest(NGINX.as_bytes(), path, "node-a").expect("pod");
        assert_eq!(again.metadata.uid, pod.metadata.uid);
        // Another node, another file or other content: another uid.
        for other in [
            pod_from_manifest(NGINX.as_bytes(), path, "node-b"),
            pod_from_manifest(NGINX.as_bytes(), Path::new("/x/web.yaml"), "node-a"),
            pod_from_manifest(NGINX.replace("3600", "60").as_bytes(), path, "node-a"),
        ] {
            assert_ne!(other.expect("pod").metadata.uid, pod.metadata.uid);
        }
    }

    #[test]
    fn bad_manifests_are_rejected_with_the_reason() {
        let path = Path::new("/m/x.yaml");
        assert!(matches!(
            pod_from_manifest(b"  \n", path, "n"),
            Err(StaticPodError::Empty { .. })
        ));
        assert!(matches!(
            pod_from_manifest(b"kind: [", path, "n"),
            Err(StaticPodError::Parse { .. })
        ));
        let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n";
        assert!(matches!(
            pod_from_manifest(deploy.as_bytes(), path, "n"),
            Err(StaticPodError::WrongKind { .. })
        ));
        let no_containers =
            "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n";
        let err = pod_from_manifest(no_containers.as_bytes(), path, "n").expect_err("invalid");
        assert!(matches!(err, StaticPodError::Invalid { .. }), "{err}");
        // JSON is YAML too.
        let json = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"j","namespace":"kube-system"},"spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        let pod = pod_from_manifest(json.as_bytes(), path, "n").expect("json pod");
        assert_eq!(pod.metadata.namespace.as_deref(), Some("kube-system"));
    }

    #[test]
    fn directory_scan_skips_hidden_bad_and_duplicate_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        manifest(dir.path(), "a.yaml", NGINX);
        manifest(dir.path(), "b.yaml", NGINX); // same name: the first file wins
        manifest(dir.path(), ".hidden.yaml", &NGINX.replace("web", "hidden"));
        manifest(dir.path(), "c.json", "not yaml: [");
        manifest(
            dir.path(),
            "d.yml",
            &NGINX.replace("name: web", "name: other"),
        );
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        manifest(
            &dir.path().join("sub"),
            "e.yaml",
            &NGINX.replace("web", "e"),
        );
        let scan = read_manifests(dir.path(), "n1").expect("scan");
        let names: Vec<_> = scan
            .pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["web-n1", "other-n1"]);
        assert_eq!(scan.errors.len(), 2, "{:?}", scan.errors);
        assert!(scan
            .errors
            .iter()
            .any(|e| matches!(e, StaticPodError::Duplicate { .. })));
        let missing = read_manifests(&dir.path().join("nope"), "n1").expect("missing is empty");
        assert!(missing.pods.is_empty());
    }

    #[test]
    fn oversized_and_irregular_manifests_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        manifest(dir.path(), "a.yaml", NGINX);
        // Valid YAML, one byte over the cap: a comment pads it.
        let pad = MAX_FILE_BYTES as usize + 1 - NGINX.len() - 2;
        let big = format!(
            "{}\n#{}",
            NGINX.replace("name: web", "name: big"),
            "x".repeat(pad)
        );
        assert_eq!(big.len() as u64, MAX_FILE_BYTES + 1);
        manifest(dir.path(), "big.yaml", &big);
        std::os::unix::fs::symlink("/dev/zero", dir.path().join("zero.yaml")).expect("link");
        nix::unistd::mkfifo(&dir.path().join("fifo.yaml"), nix::sys::stat::Mode::S_IRWXU)
            .expect("fifo");
        let scan = read_manifests(dir.path(), "n1").expect("scan");
        let names: Vec<_> = scan
            .pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap_or_default())
            .collect();
        assert_eq!(names, ["web-n1"]);
        let messages: Vec<String> = scan.errors.iter().map(ToString::to_string).collect();
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert!(
            messages
                .iter()
                .any(|m| m.ends_with("big.yaml: larger than 10485760 bytes")),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.ends_with("zero.yaml: not a regular file")),
            "{messages:?}"
        );
        // Exactly at the cap is fine.
        let at_cap = &big[..big.len() - 1];
        manifest(dir.path(), "big.yaml", at_cap);
        let scan = read_manifests(dir.path(), "n1").expect("scan");
        assert_eq!(scan.pods.len(), 2, "{:?}", scan.errors);
    }

    #[test]
    fn file_source_adds_replaces_and_removes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut source = FileSource::new(dir.path().to_path_buf(), "n1".into());
        let now = jiff::Timestamp::from_second(1_700_000_000).expect("time");
        assert!(source.scan(now).is_empty());
        let file = manifest(dir.path(), "web.yaml", NGINX);
        let changes = source.scan(now);
        let [Change::Add(first)] = changes.as_slice() else {
            panic!("{changes:?}")
        };
        assert_eq!(
            annotation(first, SEEN_ANNOTATION),
            Some("2023-11-14T22:13:20.000000000Z")
        );
        assert!(source.scan(now).is_empty(), "unchanged manifest, no change");
        manifest(dir.path(), "web.yaml", &NGINX.replace("3600", "60"));
        let changes = source.scan(now);
        match changes.as_slice() {
            [Change::Remove { uid, name, .. }, Change::Add(new)] => {
                assert_eq!(Some(uid), first.metadata.uid.as_ref());
                assert_eq!(name, "web-n1");
                assert_ne!(new.metadata.uid, first.metadata.uid);
            }
            other => panic!("{other:?}"),
        }
        std::fs::remove_file(file).expect("rm");
        assert!(matches!(
            source.scan(now).as_slice(),
            [Change::Remove { .. }]
        ));
    }

    #[test]
    fn diff_is_pure_and_ordered() {
        let p = |name: &str, uid: &str| {
            let mut pod = Pod::default();
            pod.metadata.name = Some(name.into());
            pod.metadata.namespace = Some("default".into());
            pod.metadata.uid = Some(uid.into());
            pod
        };
        let current: BTreeMap<_, _> = [
            ("u1".to_string(), p("a", "u1")),
            ("u2".to_string(), p("b", "u2")),
        ]
        .into_iter()
        .collect();
        let changes = diff(&current, &[p("a", "u1"), p("b", "u3"), p("c", "u4")]);
        assert_eq!(
            changes,
            vec![
                Change::Remove {
                    uid: "u2".into(),
                    namespace: "default".into(),
                    name: "b".into()
                },
                Change::Add(Box::new(p("b", "u3"))),
                Change::Add(Box::new(p("c", "u4"))),
            ]
        );
        assert!(diff(&current, &[p("a", "u1"), p("b", "u2")]).is_empty());
    }

    #[test]
    fn kubelet_configuration_fields() {
        let text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: manifests\nsyncFrequency: 1m0s\nfileCheckFrequency: 5s\ncontainerLogMaxSize: 20Mi\ncontainerLogMaxFiles: 3\nimageGCHighThresholdPercent: 90\nimageGCLowThresholdPercent: 70\nimageMinimumGCAge: 30s\nserializeImagePulls: false\nmaxParallelImagePulls: 4\nshutdownGracePeriod: 30s\nshutdownGracePeriodCriticalPods: 10s\nallowedUnsafeSysctls: [\"kernel.msg*\", net.core.somaxconn]\nevictionHard:\n  memory.available: \"<200Mi\"\nevictionSoft:\n  memory.available: \"<1Gi\"\nevictionSoftGracePeriod:\n  memory.available: 1m30s\nevictionMaxPodGracePeriod: 60\nevictionPressureTransitionPeriod: 30s\nevictionMinimumReclaim:\n  imagefs.available: 2Gi\n  nodefs.inodesFree: 5%\nauthentication:\n  anonymous:\n    enabled: false\n";
        let cfg =
            parse_kubelet_config(text, Path::new("/var/lib/kubelet/config.yaml")).expect("cfg");
        assert_eq!(
            cfg,
            KubeletConfig {
                static_pod_path: Some(PathBuf::from("/var/lib/kubelet/manifests")),
                sync_frequency: Some(Duration::from_secs(60)),
                file_check_frequency: Some(Duration::from_secs(5)),
                container_log_max_size: Some(20 << 20),
                container_log_max_files: Some(3),
                allowed_unsafe_sysctls: vec!["kernel.msg*".into(), "net.core.somaxconn".into()],
                image_gc_high_threshold_percent: Some(90),
                image_gc_low_threshold_percent: Some(70),
                image_minimum_gc_age: Some(Duration::from_secs(30)),
                serialize_image_pulls: Some(false),
                max_parallel_image_pulls: Some(4),
                shutdown_grace_period: Some(Duration::from_secs(30)),
                shutdown_grace_period_critical_pods: Some(Duration::from_secs(10)),
                shutdown_grace_period_by_pod_priority: Vec::new(),
                eviction_hard: Some(vec![node_pressure::Threshold {
                    signal: node_pressure::Signal::MemoryAvailable,
                    value: node_pressure::Value::Quantity {
                        amount: 200 << 20,
                        text: "200Mi".into()
                    },
                    grace_period: Duration::ZERO,
                }]),
                eviction_soft: vec![node_pressure::Threshold {
                    signal: node_pressure::Signal::MemoryAvailable,
                    value: node_pressure::Value::Quantity {
                        amount: 1 << 30,
                        text: "1Gi".into()
                    },
                    grace_period: Duration::from_secs(90),
                }],
                eviction_max_pod_grace_period: Some(60),
                eviction_pressure_transition_period: Some(Duration::from_secs(30)),
                eviction_minimum_reclaim: [
                    (
                        node_pressure::Signal::ImagefsAvailable,
                        node_pressure::Value::Quantity {
                            amount: 2 << 30,
                            text: "2Gi".into()
                        }
                    ),
                    (
                        node_pressure::Signal::NodefsInodesFree,
                        node_pressure::Value::Percent(0.05)
                    ),
                ]
                .into(),
                ..Default::default()
            }
        );
        let unknown = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionMinimumReclaim:\n  memory.free: 1Gi\n";
        let err = parse_kubelet_config(unknown, Path::new("/x")).expect_err("unknown signal");
        assert!(matches!(
            &err,
            StaticPodError::Eviction {
                field: "evictionMinimumReclaim",
                source: node_pressure::ThresholdError::UnknownSignal(s),
                ..
            } if s == "memory.free"
        ));
        assert_eq!(err.to_string(), "/x: invalid evictionMinimumReclaim");
        let eviction = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionHard:\n  memory.available: \">1Gi\"\n";
        assert!(matches!(
            parse_kubelet_config(eviction, Path::new("/x")),
            Err(StaticPodError::Eviction {
                field: "evictionHard",
                ..
            })
        ));
        let no_grace = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionSoft:\n  memory.available: \"<1Gi\"\n";
        let err = parse_kubelet_config(no_grace, Path::new("/x")).expect_err("no grace period");
        assert!(matches!(
            err,
            StaticPodError::Eviction {
                field: "evictionSoft",
                source: node_pressure::ThresholdError::NoGracePeriod { .. },
                ..
            }
        ));
        assert_eq!(err.to_string(), "/x: invalid evictionSoft");
        let critical_too_long = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nshutdownGracePeriod: 5s\nshutdownGracePeriodCriticalPods: 10s\n";
        assert!(matches!(
            parse_kubelet_config(critical_too_long, Path::new("/x")),
            Err(StaticPodError::Setting {
                field: "shutdownGracePeriodCriticalPods",
                ..
            })
        ));
        let by_priority = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nshutdownGracePeriodByPodPriority:\n- priority: 100000\n  shutdownGracePeriodSeconds: 20\n- priority: 0\n  shutdownGracePeriodSeconds: 10\n";
        assert_eq!(
            parse_kubelet_config(by_priority, Path::new("/x"))
                .expect("cfg")
                .shutdown_grace_period_by_pod_priority,
            vec![
                node_shutdown::PriorityGrace {
                    priority: 100000,
                    grace_period: Duration::from_secs(20)
                },
                node_shutdown::PriorityGrace {
                    priority: 0,
                    grace_period: Duration::from_secs(10)
                },
            ]
        );
        let both = format!("{by_priority}shutdownGracePeriod: 30s\n");
        let err = parse_kubelet_config(&both, Path::new("/x")).expect_err("both ways");
        assert_eq!(
            err.to_string(),
            "/x: cannot specify both shutdownGracePeriodByPodPriority and shutdownGracePeriod at the same time"
        );
        let negative = by_priority.replace("Seconds: 10", "Seconds: -1");
        assert!(matches!(
            parse_kubelet_config(&negative, Path::new("/x")),
            Err(StaticPodError::Setting {
                field: "shutdownGracePeriodByPodPriority",
                ..
            })
        ));
        let abs = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: /etc/kubernetes/manifests\n";
        let cfg = parse_kubelet_config(abs, Path::new("/x/c.yaml")).expect("cfg");
        assert_eq!(
            cfg.static_pod_path.as_deref(),
            Some(Path::new("/etc/kubernetes/manifests"))
        );
        let wrong = "apiVersion: v1\nkind: Pod\n";
        assert!(matches!(
            parse_kubelet_config(wrong, Path::new("/x")),
            Err(StaticPodError::WrongKind { .. })
        ));
        let bad = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nfileCheckFrequency: soon\n";
        assert!(matches!(
            parse_kubelet_config(bad, Path::new("/x")),
            Err(StaticPodError::Duration {
                field: "fileCheckFrequency",
                ..
            })
        ));
        for (field, value) in [
            ("containerLogMaxFiles", "1"),
            ("containerLogMaxSize", "lots"),
            ("containerLogMaxSize", "-1Mi"),
            ("imageGCHighThresholdPercent", "101"),
            ("imageGCLowThresholdPercent", "85"),
            ("maxParallelImagePulls", "0"),
            // Above 1 while serializeImagePulls keeps its default of true.
            ("maxParallelImagePulls", "3"),
            ("nodeStatusUpdateFrequency", "0s"),
            ("nodeStatusReportFrequency", "0s"),
            ("nodeLeaseDurationSeconds", "0"),
        ] {
            let text = format!("apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n{field}: {value}\n");
            let e = parse_kubelet_config(&text, Path::new("/x")).expect_err(value);
            assert!(
                matches!(e, StaticPodError::Setting { field: f, .. } if f == field),
                "{e}"
            );
        }
    }

    #[test]
    fn node_status_periods() {
        let text = "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nnodeStatusUpdateFrequency: 2s\nnodeStatusReportFrequency: 1m\nnodeLeaseDurationSeconds: 8\n";
        let cfg = parse_kubelet_config(text, Path::new("/x")).expect("cfg");
        assert_eq!(
            cfg.node_status_update_frequency,
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            cfg.node_status_report_frequency,
            Some(Duration::from_secs(60))
        );
        assert_eq!(cfg.node_lease_duration_seconds, Some(8));
    }

    fn static_pod(name: &str, hash: &str) -> Pod {
        let mut pod = Pod::default();
        pod.metadata.name = Some(name.into());
        pod.metadata.namespace = Some("default".into());
        pod.metadata.uid = Some(hash.into());
        pod.metadata.annotations = Some(
            [
                (HASH_ANNOTATION.to_string(), hash.to_string()),
                (SOURCE_ANNOTATION.to_string(), FILE_SOURCE.to_string()),
            ]
            .into_iter()
            .collect(),
        );
        pod
    }

    #[test]
    fn mirror_pods_copy_the_static_pod_and_are_owned_by_the_node() {
        let s = static_pod("web-n1", "h1");
        let m = mirror_pod(&s, "n1", "node-uid");
        assert!(is_mirror_pod(&m));
        assert_eq!(annotation(&m, MIRROR_ANNOTATION), Some("h1"));
        assert_eq!(m.metadata.uid, None);
        let owner = &m.metadata.owner_references.as_ref().expect("owners")[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("Node", "n1", "node-uid")
        );
        assert_eq!(owner.controller, Some(true));
    }

    #[test]
    fn mirror_plan_creates_missing_and_replaces_stale_deleted_or_orphaned() {
        let with_uid = |mut p: Pod, uid: &str| {
            p.metadata.uid = Some(uid.into());
            p
        };
        let statics = [
            static_pod("a-n1", "ha"),
            static_pod("b-n1", "hb2"),
            static_pod("c-n1", "hc"),
        ];
        let good = with_uid(mirror_pod(&statics[0], "n1", "x"), "ma");
        let stale = with_uid(mirror_pod(&static_pod("b-n1", "hb1"), "n1", "x"), "mb");
        let mut deleting = with_uid(mirror_pod(&statics[2], "n1", "x"), "mc");
        deleting.metadata.deletion_timestamp = Some(podapi::api_time(
            jiff::Timestamp::from_second(1).expect("time"),
        ));
        let orphan = with_uid(mirror_pod(&static_pod("gone-n1", "hg"), "n1", "x"), "mg");
        let plain = with_uid(static_pod("api-pod", "p").clone(), "pp");
        let mut plain = plain;
        plain.metadata.annotations = None;
        let plan = plan_mirrors(&statics, &[good, stale, deleting, orphan, plain]);
        let deleted: Vec<&str> = plan.delete.iter().map(|d| d.uid.as_str()).collect();
        assert_eq!(deleted, ["mb", "mc", "mg"]);
        assert_eq!(
            plan.create,
            vec![
                ("default".to_string(), "b-n1".to_string()),
                ("default".to_string(), "c-n1".to_string())
            ]
        );
        assert_eq!(plan_mirrors(&[], &[]), MirrorPlan::default());
    }

    #[tokio::test]
    async fn static_pod_status_is_kept_when_the_mirror_is_missing() {
        let fake = Arc::new(FlakyApi::default());
        let statics = StaticPods::default();
        let api = MirrorStatusApi {
            inner: fake.clone(),
            statics: statics.clone(),
        };
        let s = static_pod("web-n1", "h1");
        statics.set(&s);
        let status = PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        };
        fake.fail.store(true, Ordering::SeqCst);
        api.patch_pod_status("default", "web-n1", &status)
            .await
            .expect("kept, not failed");
        assert_eq!(statics.undelivered().len(), 1);
        fake.fail.store(false, Ordering::SeqCst);
        api.patch_pod_status("default", "web-n1", &status)
            .await
            .expect("written");
        assert!(statics.undelivered().is_empty());
        statics.mark_undelivered("default", "web-n1");
        assert_eq!(
            statics.undelivered()[0].1,
            status,
            "pushed to a recreated mirror"
        );
        // Pods from the API pass straight through, failures included.
        fake.fail.store(true, Ordering::SeqCst);
        assert!(api
            .patch_pod_status("default", "api-pod", &status)
            .await
            .is_err());
        // A removed static pod forgets its status; a stale uid does not remove a newer pod.
        statics.remove("default", "web-n1", "other-uid");
        assert!(statics.is_static("default", "web-n1"));
        statics.remove("default", "web-n1", "h1");
        assert!(!statics.is_static("default", "web-n1"));
        assert!(statics.undelivered().is_empty());
    }
}
