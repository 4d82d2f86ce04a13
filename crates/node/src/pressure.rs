//! Node-pressure eviction, the machine side of kubelet's eviction manager: each eviction
//! round observes the signals, publishes the pressure conditions (read by the node status
//! and admission) and, when a threshold acts, first reclaims on the node (a disk signal
//! deletes unused images through the image GC, then observes again) and only then picks
//! the one pod to evict, ranked by `node_pressure`, which also keeps the soft thresholds'
//! grace periods and the minimum reclaims.
//!
//! `memory.available` is the node's memory less its working set, both from /proc/meminfo
//! (MemTotal − (MemTotal − MemFree − Inactive(file))), as the node stats report it; kubelet
//! takes the root cgroup's usage less `inactive_file`, the same figure for the whole
//! machine. `nodefs.*` are the statvfs of the state dir, `imagefs.*` that of the image
//! store's directory: usually the same filesystem, then both see the same figures, as the
//! kubelet's do when the image filesystem is the node's. When the image store is on a
//! filesystem of its own (another device), it is a dedicated image filesystem: only the
//! `imagefs` signals reclaim images then, as in the kubelet.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use node_pressure::{
    eviction_message, pod_request, rank, reclaim_message, Candidate, Conditions, ContainerUsage,
    Evaluator, Observation, Resource, Settings, Signal, Threshold, EVICTION_THRESHOLD_MET,
};
use podapi::{EventRecorder, EventType};
use tokio::sync::watch;

use crate::imagegc::ImageGc;

/// A pod's measured local ephemeral storage, in bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Usage {
    /// Writable layer plus logs, by container name (all attempts of that name).
    pub containers: HashMap<String, u64>,
    /// Disk-backed emptyDir volumes, by volume name.
    pub empty_dirs: HashMap<String, u64>,
    /// The inodes all of those use (what the kubelet ranks pods by under inode pressure).
    pub inodes: u64,
}

impl Usage {
    pub(crate) fn total(&self) -> u64 {
        self.containers
            .values()
            .chain(self.empty_dirs.values())
            .sum()
    }
}

/// kubelet's critical pods: static and mirror pods, and those of system priority (at least
/// `system-cluster-critical`'s 2000000000); pressure neither refuses nor evicts them.
pub fn is_critical(pod: &Pod) -> bool {
    staticpods::is_static_pod(pod)
        || staticpods::is_mirror_pod(pod)
        || pod
            .spec
            .as_ref()
            .and_then(|s| s.priority)
            .is_some_and(|p| p >= 2_000_000_000)
}

/// The directories whose filesystems are observed: the node filesystem's (the state dir)
/// and the image filesystem's (the image store).
#[derive(Debug, Clone)]
pub struct Filesystems {
    pub node: PathBuf,
    pub images: PathBuf,
}

/// How the node reclaims before it evicts: the image GC deletes unused images, and the
/// node gets kubelet's `EvictionThresholdMet` event first.
pub struct NodeReclaim {
    pub images: Arc<ImageGc>,
    pub events: Arc<EventRecorder>,
}

/// What the eviction manager watches, what it remembers between rounds, how it reclaims,
/// and where it publishes the conditions.
pub struct Monitor {
    pub settings: Settings,
    evaluator: Evaluator,
    stats: Arc<nodestats::Collector>,
    filesystems: Filesystems,
    /// The node's memory capacity in bytes.
    memory_capacity: u64,
    conditions: watch::Sender<Conditions>,
    reclaim: NodeReclaim,
}

/// One round's observations: the thresholds that act (met, soft ones for their grace
/// period, acted ones until their minimum reclaim), memory's first.
pub struct Round {
    pub met: Vec<(Threshold, Observation)>,
    pub summary: Option<Arc<nodestats::Summary>>,
    /// Whether the image store is on a filesystem other than the state dir's.
    pub dedicated_image_fs: bool,
}

/// One filesystem's figures: bytes, inodes, and the device it is on.
#[derive(Debug, Clone, Copy, Default)]
struct Filesystem {
    bytes: Option<Observation>,
    inodes: Option<Observation>,
    device: Option<u64>,
}

fn observe_fs(dir: &Path) -> Filesystem {
    let device = std::fs::metadata(dir).map(|m| m.dev()).ok();
    match nix::sys::statvfs::statvfs(dir) {
        Ok(v) => {
            let frsize = v.fragment_size();
            Filesystem {
                bytes: Some(Observation {
                    available: v.blocks_available().saturating_mul(frsize),
                    capacity: v.blocks().saturating_mul(frsize),
                }),
                inodes: Some(Observation {
                    available: v.files_available(),
                    capacity: v.files(),
                }),
                device,
            }
        }
        Err(err) => {
            tracing::debug!(path = %dir.display(), error = %err, "statvfs for eviction failed");
            Filesystem::default()
        }
    }
}

/// Every signal's observation at one moment.
#[derive(Debug, Clone, Copy)]
struct Observed {
    memory: Option<Observation>,
    nodefs: Filesystem,
    imagefs: Filesystem,
}

impl Observed {
    fn signal(&self, signal: Signal) -> Option<Observation> {
        match signal {
            Signal::MemoryAvailable => self.memory,
            Signal::NodefsAvailable => self.nodefs.bytes,
            Signal::NodefsInodesFree => self.nodefs.inodes,
            Signal::ImagefsAvailable => self.imagefs.bytes,
            Signal::ImagefsInodesFree => self.imagefs.inodes,
        }
    }

    fn dedicated_image_fs(&self) -> bool {
        matches!((self.nodefs.device, self.imagefs.device), (Some(n), Some(i)) if n != i)
    }
}

impl Monitor {
    pub fn new(
        settings: Settings,
        stats: Arc<nodestats::Collector>,
        filesystems: Filesystems,
        memory_capacity: u64,
        conditions: watch::Sender<Conditions>,
        reclaim: NodeReclaim,
    ) -> Self {
        Self {
            evaluator: Evaluator::new(&settings),
            settings,
            stats,
            filesystems,
            memory_capacity,
            conditions,
            reclaim,
        }
    }

    async fn observe_signals(&self) -> (Observed, Option<Arc<nodestats::Summary>>) {
        let summary = match self.stats.summary().await {
            Ok(s) => Some(s),
            Err(err) => {
                tracing::debug!(error = %err, "node stats for eviction unavailable");
                None
            }
        };
        let memory = summary
            .as_ref()
            .and_then(|s| s.node.memory.as_ref()?.available_bytes)
            .map(|available| Observation {
                available,
                capacity: self.memory_capacity,
            });
        let dirs = self.filesystems.clone();
        let (nodefs, imagefs) =
            tokio::task::spawn_blocking(move || (observe_fs(&dirs.node), observe_fs(&dirs.images)))
                .await
                .unwrap_or_default();
        let observed = Observed {
            memory,
            nodefs,
            imagefs,
        };
        (observed, summary)
    }

    /// Observes the signals, updates the published conditions and returns what acts.
    pub async fn observe(&mut self) -> Round {
        let (observed, summary) = self.observe_signals().await;
        let decision = self
            .evaluator
            .step(|signal| observed.signal(signal), Instant::now());
        self.conditions.send_if_modified(|c| {
            let changed = *c != decision.conditions;
            *c = decision.conditions;
            changed
        });
        Round {
            met: decision.reclaim,
            summary,
            dedicated_image_fs: observed.dedicated_image_fs(),
        }
    }

    /// kubelet's step before it evicts for the round's first threshold: the node's Warning
    /// `EvictionThresholdMet` event, then, for a signal the node can reclaim for, every
    /// unused image deleted and the signals observed again. True when that relieved every
    /// threshold (with its minimum reclaim), so no pod is evicted this round.
    pub async fn reclaim_node_level(&self, round: &Round) -> bool {
        let Some((threshold, _)) = round.met.first() else {
            return true;
        };
        let resource = threshold.signal.resource();
        tracing::info!(
            resource = resource.name(),
            "eviction manager: attempting to reclaim"
        );
        self.reclaim
            .events
            .record_node(
                EventType::Warning,
                EVICTION_THRESHOLD_MET,
                &reclaim_message(resource),
                Timestamp::now(),
            )
            .await;
        if !threshold.signal.reclaims_images(round.dedicated_image_fs) {
            return false;
        }
        match self.reclaim.images.delete_unused(Timestamp::now()).await {
            Ok(freed) => tracing::info!(freed, "eviction manager: deleted unused images"),
            Err(err) => tracing::info!(
                resource = resource.name(),
                error = %err,
                "eviction manager: unexpected error when attempting to reduce resource pressure"
            ),
        }
        let (after, _) = self.observe_signals().await;
        let relieved = self.evaluator.relieved(|signal| after.signal(signal));
        if relieved {
            tracing::info!(
                resource = resource.name(),
                "eviction manager: able to reduce resource pressure without evicting pods"
            );
        } else {
            tracing::info!(
                resource = resource.name(),
                "eviction manager: must evict pod(s) to reclaim"
            );
        }
        relieved
    }
}

/// The pod to evict for the first threshold met, with its message: the highest ranked of
/// `pods` (active, each with its measured local storage) that is not critical.
pub fn choose(round: &Round, pods: &[(Pod, Usage)]) -> Option<(Pod, String)> {
    let (threshold, observed) = round.met.first()?;
    let resource = threshold.signal.resource();
    let memory: HashMap<&str, Vec<ContainerUsage>> = round
        .summary
        .iter()
        .flat_map(|s| s.pods.iter())
        .map(|p| {
            let containers = p
                .containers
                .iter()
                .map(|c| ContainerUsage {
                    name: c.name.clone(),
                    usage: c
                        .memory
                        .as_ref()
                        .and_then(|m| m.working_set_bytes)
                        .unwrap_or(0),
                })
                .collect();
            (p.pod_ref.uid.as_str(), containers)
        })
        .collect();
    let usage_of = |pod: &Pod, usage: &Usage| -> Vec<ContainerUsage> {
        match resource {
            Resource::Memory => memory
                .get(pod.metadata.uid.as_deref().unwrap_or_default())
                .cloned()
                .unwrap_or_default(),
            // The kubelet names no container's inode use in the message.
            Resource::Inodes => Vec::new(),
            Resource::EphemeralStorage => usage
                .containers
                .iter()
                .map(|(name, bytes)| ContainerUsage {
                    name: name.clone(),
                    usage: *bytes,
                })
                .collect(),
        }
    };
    let eligible: Vec<(&Pod, Vec<ContainerUsage>, u64)> = pods
        .iter()
        .filter(|(p, _)| !is_critical(p))
        .map(|(p, u)| {
            let containers = usage_of(p, u);
            let total = match resource {
                Resource::Memory => containers.iter().map(|c| c.usage).sum(),
                Resource::EphemeralStorage => u.total(),
                Resource::Inodes => u.inodes,
            };
            (p, containers, total)
        })
        .collect();
    let mut candidates: Vec<Candidate> = eligible
        .iter()
        .map(|(p, _, total)| Candidate {
            uid: p.metadata.uid.clone().unwrap_or_default(),
            priority: p.spec.as_ref().and_then(|s| s.priority).unwrap_or(0),
            usage: *total,
            request: pod_request(p, resource),
        })
        .collect();
    rank(&mut candidates);
    let first = &candidates.first()?.uid;
    let (pod, containers, _) = eligible
        .iter()
        .find(|(p, _, _)| p.metadata.uid.as_ref() == Some(first))?;
    let message = eviction_message(resource, Some((threshold, *observed)), pod, containers);
    Some(((*pod).clone(), message))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, spec: serde_json::Value, annotations: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "annotations": annotations},
            "spec": spec,
        }))
        .expect("pod")
    }

    fn used(bytes: u64) -> Usage {
        Usage {
            containers: [("c".to_string(), bytes)].into(),
            empty_dirs: HashMap::new(),
            inodes: 0,
        }
    }

    #[test]
    fn disk_pressure_evicts_the_best_effort_pod_and_spares_critical_ones() {
        let disk = node_pressure::default_hard()
            .into_iter()
            .find(|t| t.signal == Signal::NodefsAvailable)
            .expect("nodefs threshold");
        let round = Round {
            met: vec![(
                disk,
                Observation {
                    available: 1 << 20,
                    capacity: 100 << 20,
                },
            )],
            summary: None,
            dedicated_image_fs: false,
        };
        let plain = serde_json::json!({"containers": [{"name": "c"}]});
        let requested = serde_json::json!({"containers": [
            {"name": "c", "resources": {"requests": {"ephemeral-storage": "100Mi"}}}
        ]});
        let pods = vec![
            (
                pod("within", requested, serde_json::json!({})),
                used(50 << 20),
            ),
            (
                pod("besteffort", plain.clone(), serde_json::json!({})),
                used(2 << 20),
            ),
            (
                pod(
                    "static",
                    plain,
                    serde_json::json!({"kubernetes.io/config.source": "file"}),
                ),
                used(90 << 20),
            ),
        ];
        let (chosen, message) = choose(&round, &pods).expect("a pod to evict");
        assert_eq!(chosen.metadata.name.as_deref(), Some("besteffort"));
        assert_eq!(
            message,
            "The node was low on resource: ephemeral-storage. Threshold quantity: 5Mi, \
             available: 1Mi. Container c was using 2Mi, request is 0, has larger consumption \
             of ephemeral-storage. "
        );
        let calm = Round {
            met: Vec::new(),
            summary: None,
            dedicated_image_fs: false,
        };
        assert!(choose(&calm, &pods).is_none());
    }

    #[test]
    fn inode_pressure_evicts_the_pod_with_the_most_inodes_and_says_inodes() {
        let inodes = node_pressure::default_hard()
            .into_iter()
            .find(|t| t.signal == Signal::NodefsInodesFree)
            .expect("nodefs.inodesFree threshold");
        let round = Round {
            met: vec![(
                inodes,
                Observation {
                    available: 3_000,
                    capacity: 1_024_000,
                },
            )],
            summary: None,
            dedicated_image_fs: false,
        };
        let plain = serde_json::json!({"containers": [{"name": "c"}]});
        let big_files = Usage {
            inodes: 10,
            ..used(90 << 20)
        };
        let many_files = Usage {
            inodes: 50_000,
            ..used(1 << 20)
        };
        let pods = vec![
            (pod("big", plain.clone(), serde_json::json!({})), big_files),
            (pod("many", plain, serde_json::json!({})), many_files),
        ];
        let (chosen, message) = choose(&round, &pods).expect("a pod to evict");
        assert_eq!(chosen.metadata.name.as_deref(), Some("many"));
        assert_eq!(
            message,
            "The node was low on resource: inodes. Threshold quantity: 50Ki, available: 3k. "
        );
    }
}
