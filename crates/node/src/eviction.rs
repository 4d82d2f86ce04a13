//! kubelet's local-storage eviction: every period the pods' local ephemeral storage is
//! measured (container writable layers, container logs, disk-backed emptyDirs) and a pod
//! over an emptyDir `sizeLimit` or an `ephemeral-storage` limit is evicted. kubelet v1.33
//! enforces these limits by eviction, not by cgroups (`localStorageEviction` in its eviction
//! manager). The admission side (`OutOfephemeral-storage`) is in `admission`. The same
//! loop runs node-pressure eviction (`pressure`): when no pod is over a limit and a
//! threshold acts (a hard one when met, a soft one once met for its grace period), the node
//! reclaims unused images for a disk signal and, unless that relieved it, one pod is
//! evicted per round. An evicted pod's worker kills it with the eviction's grace period
//! and the loop waits for that before its next round, as the kubelet's does.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod};
use tokio::sync::{mpsc, oneshot, watch};

use crate::pressure::{self, Monitor, Usage};
use crate::qos::parse_quantity;
use crilog::pod_log_dir;
use node_pressure::format_binary;
use runtime::RuntimeService;

use podapi::PodCache;

/// kubelet's `evictionMonitoringPeriod`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);

/// kubelet's `podCleanupTimeout`: how long a round waits for the pods it evicted to end.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The eviction manager's request to end a pod (kubelet's `killPodFunc`): its worker kills
/// it with `grace` and it ends `Failed` with reason `Evicted` and `message`; `done` fires
/// once that is over.
#[derive(Debug)]
pub struct Request {
    pub pod: Pod,
    pub message: String,
    pub grace: Duration,
    pub done: oneshot::Sender<()>,
}

/// Why a pod is evicted; `message` is kubelet's wording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    pub message: String,
}

fn storage_limit(c: &Container) -> Option<(&str, u64)> {
    let q = c
        .resources
        .as_ref()?
        .limits
        .as_ref()?
        .get("ephemeral-storage")?;
    let bytes = parse_quantity(&q.0)?;
    (bytes > 0.0).then(|| (q.0.as_str(), bytes.ceil() as u64))
}

/// The eviction decision, in kubelet's order: emptyDir size limits, then the pod's total
/// against the sum of its containers' limits, then each container's own limit. Usage must
/// exceed the limit (kubelet compares with `Cmp > 0`).
pub fn decide(pod: &Pod, usage: &Usage) -> Option<Eviction> {
    let spec = pod.spec.as_ref()?;
    for v in spec.volumes.iter().flatten() {
        let Some(ed) = &v.empty_dir else { continue };
        if ed.medium.as_deref() == Some("Memory") {
            continue;
        }
        let Some(limit) = &ed.size_limit else {
            continue;
        };
        let Some(bytes) = parse_quantity(&limit.0).filter(|b| *b > 0.0) else {
            continue;
        };
        let used = usage.empty_dirs.get(&v.name).copied().unwrap_or(0);
        if used as f64 > bytes {
            return Some(Eviction {
                message: format!(
                    "Usage of EmptyDir volume {:?} exceeds the limit {:?}. ",
                    v.name, limit.0
                ),
            });
        }
    }
    // The pod-level limit exists only when every container sets one.
    let all: Vec<&Container> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .collect();
    let limits: Vec<Option<(&str, u64)>> = spec.containers.iter().map(storage_limit).collect();
    if !limits.is_empty() && limits.iter().all(Option::is_some) {
        let sum: u64 = limits.iter().flatten().map(|(_, b)| b).sum();
        if usage.total() > sum {
            let shown = match limits.as_slice() {
                [Some((q, _))] => (*q).to_string(),
                _ => format_binary(sum),
            };
            return Some(Eviction {
                message: format!(
                    "Pod ephemeral local storage usage exceeds the total limit of containers {shown}. "
                ),
            });
        }
    }
    for c in all {
        let Some((q, bytes)) = storage_limit(c) else {
            continue;
        };
        if usage.containers.get(&c.name).copied().unwrap_or(0) > bytes {
            return Some(Eviction {
                message: format!(
                    "Container {} exceeded its local ephemeral storage limit {q:?}. ",
                    c.name
                ),
            });
        }
    }
    None
}

/// What a directory tree uses of its filesystem.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes allocated (st_blocks, as `du` counts).
    pub bytes: u64,
    /// Inodes (files, directories, links), `root` included.
    pub inodes: u64,
}

/// What is allocated below `root`: symlinks are not followed, mount points below `root` are
/// not entered and hard-linked files count once. A missing `root` uses nothing; entries that
/// vanish during the walk are skipped.
pub fn disk_usage(root: &Path) -> io::Result<DiskUsage> {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(DiskUsage::default()),
        Err(e) => return Err(e),
    };
    let dev = meta.dev();
    let mut seen = HashSet::new();
    let mut total = DiskUsage {
        bytes: meta.blocks() * 512,
        inodes: 1,
    };
    let mut stack = vec![root.to_path_buf()];
    if !meta.is_dir() {
        return Ok(total);
    }
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let Ok(entry) = entry else { continue };
            let Ok(m) = entry.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            if m.nlink() > 1 && !m.is_dir() && !seen.insert(m.ino()) {
                continue;
            }
            total.bytes += m.blocks() * 512;
            total.inodes += 1;
            if m.is_dir() {
                stack.push(entry.path());
            }
        }
    }
    Ok(total)
}

/// Where a pod's local ephemeral storage lives on this node.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The runtime's state dir: writable layers are `pods/<sandbox>/containers/<id>/upper`.
    pub runtime_dir: PathBuf,
    /// `<state>/logs`.
    pub log_root: PathBuf,
    /// `<state>/volumes`.
    pub volumes_root: PathBuf,
}

/// One container of the pod as the runtime lists it: (name, sandbox id, container id).
pub type ContainerRef = (String, String, String);

fn du(path: &Path) -> DiskUsage {
    disk_usage(path).unwrap_or_else(|err| {
        tracing::debug!(path = %path.display(), error = %err, "measuring disk usage failed");
        DiskUsage::default()
    })
}

/// Measures `pod`'s usage: its containers' writable layers and logs, and its disk-backed
/// emptyDirs.
pub fn measure(layout: &Layout, pod: &Pod, containers: &[ContainerRef]) -> Usage {
    let m = &pod.metadata;
    let (ns, name, uid) = (
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default(),
    );
    let mut usage = Usage::default();
    let log_dir = pod_log_dir(&layout.log_root, ns, name, uid);
    for (cname, sandbox, id) in containers {
        let upper = layout
            .runtime_dir
            .join("pods")
            .join(sandbox)
            .join("containers")
            .join(id)
            .join("upper");
        let used = du(&upper);
        *usage.containers.entry(cname.clone()).or_default() += used.bytes;
        usage.inodes += used.inodes;
    }
    let names: HashSet<&String> = containers.iter().map(|(n, _, _)| n).collect();
    for cname in names {
        let used = du(&log_dir.join(cname));
        *usage.containers.entry(cname.clone()).or_default() += used.bytes;
        usage.inodes += used.inodes;
    }
    let vol_dir = layout
        .volumes_root
        .join(uid)
        .join("kubernetes.io~empty-dir");
    for v in pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
    {
        if let Some(ed) = &v.empty_dir {
            if ed.medium.as_deref() != Some("Memory") {
                let used = du(&vol_dir.join(&v.name));
                usage.empty_dirs.insert(v.name.clone(), used.bytes);
                usage.inodes += used.inodes;
            }
        }
    }
    usage
}

fn is_active(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded" | "Failed")
        )
}

/// Measures every pod of `active` (lists the runtime once).
async fn measure_active(
    runtime: &dyn RuntimeService,
    layout: &Layout,
    active: Vec<Pod>,
) -> Vec<(Pod, Usage)> {
    if active.is_empty() {
        return Vec::new();
    }
    let (sandboxes, containers) = match (
        runtime.list_pod_sandboxes().await,
        runtime.list_containers(None).await,
    ) {
        (Ok(s), Ok(c)) => (s, c),
        (Err(err), _) | (_, Err(err)) => {
            tracing::warn!(error = %err, "listing the runtime for eviction failed");
            return Vec::new();
        }
    };
    let uid_of: HashMap<&str, &str> = sandboxes
        .iter()
        .map(|s| (s.id.as_str(), s.config.uid.as_str()))
        .collect();
    let mut work: Vec<(Pod, Vec<ContainerRef>)> = Vec::new();
    for pod in active {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let refs = containers
            .iter()
            .filter(|c| uid_of.get(c.sandbox_id.as_str()) == Some(&uid.as_str()))
            .map(|c| (c.config.name.clone(), c.sandbox_id.clone(), c.id.clone()))
            .collect();
        work.push((pod, refs));
    }
    let layout = layout.clone();
    tokio::task::spawn_blocking(move || {
        work.into_iter()
            .map(|(pod, refs)| {
                let usage = measure(&layout, &pod, &refs);
                (pod, usage)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default()
}

/// One round, in kubelet's order: observes node pressure; measures every active pod in
/// `pods` and evicts those over a limit; or else, under a threshold that acts, reclaims on
/// the node first (the `EvictionThresholdMet` event; unused images deleted for a disk
/// signal) and, unless that relieved the node, evicts the one pod ranked first (a Warning
/// `Evicted` event, the `DisruptionTarget` condition, its containers killed with the
/// eviction's grace period, phase Failed; the pod is never restarted). Returns the uids
/// evicted, each with what fires once its worker has ended it.
pub async fn evict_round(
    runtime: &dyn RuntimeService,
    evictor: &mpsc::UnboundedSender<Request>,
    pods: &PodCache,
    layout: &Layout,
    monitor: &mut Monitor,
) -> Vec<(String, oneshot::Receiver<()>)> {
    let round = monitor.observe().await;
    let active: Vec<Pod> = pods
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .values()
        .filter(|p| is_active(p))
        .map(|p| Pod::clone(p))
        .collect();
    let measured = measure_active(runtime, layout, active).await;
    // kubelet evicts for local storage limits with its immediate grace period.
    let mut decided: Vec<(Pod, Eviction, Duration)> = measured
        .iter()
        .filter_map(|(pod, usage)| {
            decide(pod, usage).map(|e| (pod.clone(), e, node_pressure::IMMEDIATE_GRACE_PERIOD))
        })
        .collect();
    if decided.is_empty() {
        if let Some((threshold, _)) = round.met.first() {
            if monitor.reclaim_node_level(&round).await {
                return Vec::new();
            }
            match pressure::choose(&round, &measured) {
                Some((pod, message)) => {
                    let grace = monitor.settings.pod_grace_period(threshold, &pod);
                    decided.push((pod, Eviction { message }, grace));
                }
                None => tracing::info!("eviction manager: unable to evict any pods from the node"),
            }
        }
    }
    let mut evicted = Vec::new();
    for (pod, eviction, grace) in decided {
        tracing::info!(pod = ?pod.metadata.name, message = %eviction.message, ?grace, "evicting pod");
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let (done, ended) = oneshot::channel();
        let request = Request {
            pod,
            message: eviction.message,
            grace,
            done,
        };
        if evictor.send(request).is_err() {
            tracing::debug!("the agent no longer takes evictions");
            break;
        }
        evicted.push((uid, ended));
    }
    evicted
}

/// kubelet's eviction manager loop: a round every `period` until shutdown; after a round
/// that evicted, it waits for those pods to end (at most `CLEANUP_TIMEOUT`) and goes on at
/// once. A pod evicted once is not evicted again while the API catches up.
pub async fn run(
    runtime: Arc<dyn RuntimeService>,
    evictor: mpsc::UnboundedSender<Request>,
    pods: PodCache,
    layout: Layout,
    mut monitor: Monitor,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut done: HashSet<String> = HashSet::new();
    let mut wait = period;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
        let live: HashSet<String> = pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        done.retain(|u| live.contains(u));
        let filtered: PodCache = Arc::new(std::sync::RwLock::new(
            pods.read()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .filter(|(u, _)| !done.contains(*u))
                .map(|(u, p)| (u.clone(), p.clone()))
                .collect(),
        ));
        let evicted =
            evict_round(runtime.as_ref(), &evictor, &filtered, &layout, &mut monitor).await;
        if evicted.is_empty() {
            wait = period;
            continue;
        }
        let (uids, ended): (Vec<String>, Vec<_>) = evicted.into_iter().unzip();
        done.extend(uids);
        tokio::select! {
            result = tokio::time::timeout(CLEANUP_TIMEOUT, futures::future::join_all(ended)) => {
                if result.is_err() {
                    tracing::info!("timed out waiting for evicted pods to end");
                }
            }
            _ = shutdown.changed() => return,
        }
        wait = Duration::ZERO;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "default", "uid": "u1"},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn usage(containers: &[(&str, u64)], dirs: &[(&str, u64)]) -> Usage {
        Usage {
            containers: containers
                .iter()
                .map(|(n, b)| (n.to_string(), *b))
                .collect(),
            empty_dirs: dirs.iter().map(|(n, b)| (n.to_string(), *b)).collect(),
            inodes: 0,
        }
    }

    const MI: u64 = 1024 * 1024;

    fn limited(name: &str, limit: &str) -> serde_json::Value {
        serde_json::json!({"name": name, "resources": {"limits": {"ephemeral-storage": limit}}})
    }

    #[test]
    fn single_container_over_its_limit_is_a_pod_eviction() {
        let p = pod(serde_json::json!({"containers": [limited("c", "10Mi")]}));
        assert_eq!(decide(&p, &usage(&[("c", 10 * MI)], &[])), None);
        let e = decide(&p, &usage(&[("c", 30 * MI)], &[])).expect("evicted");
        assert_eq!(
            e.message,
            "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. "
        );
    }

    #[test]
    fn container_limit_applies_when_not_every_container_has_one() {
        let p = pod(serde_json::json!({"containers": [
            limited("c", "10Mi"), {"name": "free"}
        ]}));
        assert_eq!(decide(&p, &usage(&[("free", 100 * MI)], &[])), None);
        let e = decide(&p, &usage(&[("c", 11 * MI), ("free", 1)], &[])).expect("evicted");
        assert_eq!(
            e.message,
            "Container c exceeded its local ephemeral storage limit \"10Mi\". "
        );
    }

    #[test]
    fn pod_total_counts_empty_dirs_and_sums_limits() {
        let p = pod(serde_json::json!({
            "containers": [limited("a", "4Mi"), limited("b", "6Mi")],
            "volumes": [{"name": "x", "emptyDir": {}}],
        }));
        let u = usage(&[("a", MI), ("b", MI)], &[("x", 9 * MI)]);
        let e = decide(&p, &u).expect("evicted");
        assert_eq!(
            e.message,
            "Pod ephemeral local storage usage exceeds the total limit of containers 10Mi. "
        );
    }

    #[test]
    fn empty_dir_over_size_limit_wins_and_memory_is_ignored() {
        let p = pod(serde_json::json!({
            "containers": [{"name": "c"}],
            "volumes": [
                {"name": "x", "emptyDir": {"sizeLimit": "5Mi"}},
                {"name": "m", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            ],
        }));
        assert_eq!(
            decide(&p, &usage(&[], &[("x", 5 * MI), ("m", 9 * MI)])),
            None
        );
        let e = decide(&p, &usage(&[], &[("x", 20 * MI)])).expect("evicted");
        assert_eq!(
            e.message,
            "Usage of EmptyDir volume \"x\" exceeds the limit \"5Mi\". "
        );
    }

    #[test]
    fn no_limits_no_eviction() {
        let p = pod(serde_json::json!({"containers": [{"name": "c"}]}));
        assert_eq!(decide(&p, &usage(&[("c", 1 << 40)], &[])), None);
    }

    #[test]
    fn disk_usage_counts_blocks_once_and_skips_symlink_targets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("r");
        std::fs::create_dir_all(root.join("sub")).expect("mkdir");
        let mut f = std::fs::File::create(root.join("sub/data")).expect("create");
        f.write_all(&vec![1u8; 1024 * 1024]).expect("write");
        f.sync_all().expect("sync");
        // A sparse file allocates (almost) nothing.
        let sparse = std::fs::File::create(root.join("sparse")).expect("create");
        sparse.set_len(100 * MI).expect("truncate");
        // A hard link counts once; a symlink to a big file outside counts as a link only.
        std::fs::hard_link(root.join("sub/data"), root.join("link")).expect("link");
        let outside = dir.path().join("outside");
        std::fs::write(&outside, vec![1u8; 4 * 1024 * 1024]).expect("write");
        std::os::unix::fs::symlink(&outside, root.join("sym")).expect("symlink");
        let used = disk_usage(&root).expect("du");
        assert!(used.bytes >= MI, "{used:?}");
        assert!(used.bytes < 2 * MI, "{used:?}");
        // r, sub, sub/data, sparse, sym (the hard link is the data file again).
        assert_eq!(used.inodes, 5, "{used:?}");
        assert_eq!(
            disk_usage(&dir.path().join("missing")).expect("du"),
            DiskUsage::default()
        );
    }

    #[test]
    fn measure_finds_layers_logs_and_disk_empty_dirs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout {
            runtime_dir: dir.path().to_path_buf(),
            log_root: dir.path().join("logs"),
            volumes_root: dir.path().join("volumes"),
        };
        let p = pod(serde_json::json!({
            "containers": [{"name": "c"}],
            "volumes": [{"name": "x", "emptyDir": {}}, {"name": "m", "emptyDir": {"medium": "Memory"}}],
        }));
        let upper = dir.path().join("pods/s1/containers/k1/upper");
        std::fs::create_dir_all(&upper).expect("mkdir");
        std::fs::write(upper.join("big"), vec![1u8; 2 * MI as usize]).expect("write");
        let logs = dir.path().join("logs/default_p_u1/c");
        std::fs::create_dir_all(&logs).expect("mkdir");
        std::fs::write(logs.join("0.log"), vec![1u8; MI as usize]).expect("write");
        let ed = dir.path().join("volumes/u1/kubernetes.io~empty-dir/x");
        std::fs::create_dir_all(&ed).expect("mkdir");
        std::fs::write(ed.join("f"), vec![1u8; 3 * MI as usize]).expect("write");
        let u = measure(&layout, &p, &[("c".into(), "s1".into(), "k1".into())]);
        let c = u.containers["c"];
        assert!((3 * MI..4 * MI).contains(&c), "{c}");
        let x = u.empty_dirs["x"];
        assert!((3 * MI..4 * MI).contains(&x), "{x}");
        assert!(!u.empty_dirs.contains_key("m"));
    }
}
