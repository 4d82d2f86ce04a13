//! kubelet's image garbage collection: every period the image filesystem's usage is read, and
//! when it reaches `imageGCHighThresholdPercent` the images no container uses (running or
//! exited) are removed, least recently used first, until usage is back at
//! `imageGCLowThresholdPercent`. An image younger than `imageMinimumGCAge` (since this agent
//! first saw it) is kept, so a freshly pulled image is not removed before its pod starts.
//! A high threshold of 100 % turns the periodic collection off.
//!
//! The eviction manager reclaims disk through the same collector before it evicts a pod
//! (kubelet's `DeleteUnusedImages`): every unused image old enough goes, whatever the usage.
//!
//! When a collection cannot free what it needed, the node gets kubelet's Warning event
//! `FreeDiskSpaceFailed`.
//!
//! The bookkeeping and the choice ([`Collector`]) are pure; [`ImageGc`] feeds them from the
//! runtime, and [`run`] collects periodically.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use podapi::{EventRecorder, EventType};
use runtime::{FsStats, ImageInfo, RuntimeError, RuntimeService};
use tokio::sync::{watch, Mutex};

/// kubelet's `ImageGCPeriod`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(5 * 60);

/// The KubeletConfiguration's image GC settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub high_threshold_percent: u8,
    pub low_threshold_percent: u8,
    pub minimum_age: Duration,
}

impl Default for Policy {
    /// kubelet's defaults: 85 %, 80 %, 2 minutes.
    fn default() -> Self {
        Self {
            high_threshold_percent: 85,
            low_threshold_percent: 80,
            minimum_age: Duration::from_secs(120),
        }
    }
}

/// What is remembered of an image between runs (kubelet's `imageRecord`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Record {
    first_detected: Timestamp,
    last_used: Option<Timestamp>,
    size: u64,
}

/// The outcome of one collection: what to remove, and how much was needed and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Image ids, in removal order.
    pub remove: Vec<String>,
    pub wanted: u64,
    pub found: u64,
}

/// kubelet's event reason when image GC frees less than it needed.
pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";

/// The message of kubelet's `FreeDiskSpaceFailed` event (and its error) when a collection
/// that wanted to free `plan.wanted` bytes freed only `freed`; `None` when it freed enough.
pub fn free_space_failure(plan: &Plan, freed: u64) -> Option<String> {
    (freed < plan.wanted).then(|| {
        format!(
            "Failed to garbage collect required amount of images. Attempted to free {} bytes, but only found {} bytes eligible to free.",
            plan.wanted, freed
        )
    })
}

/// The image records and the policy.
#[derive(Debug, Default)]
pub struct Collector {
    policy: Policy,
    records: HashMap<String, Record>,
}

impl Collector {
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            records: HashMap::new(),
        }
    }

    /// Records the images present at `now` and marks those in use as used now; forgets
    /// images that are gone.
    pub fn detect(&mut self, images: &[ImageInfo], in_use: &HashSet<String>, now: Timestamp) {
        let present: HashSet<&str> = images.iter().map(|i| i.id.as_str()).collect();
        self.records.retain(|id, _| present.contains(id.as_str()));
        for image in images {
            let record = self.records.entry(image.id.clone()).or_insert(Record {
                first_detected: now,
                last_used: None,
                size: image.size_bytes,
            });
            record.size = image.size_bytes;
            if in_use.contains(&image.id) {
                record.last_used = Some(now);
            }
        }
    }

    /// The images that may be removed at `now`, in removal order (kubelet's
    /// `imagesInEvictionOrder` and `freeSpace`'s age check): those no container uses and
    /// older than the minimum age, least recently used first (never used before used),
    /// then first detected first.
    fn eligible(&self, in_use: &HashSet<String>, now: Timestamp) -> Vec<(&String, &Record)> {
        let mut candidates: Vec<(&String, &Record)> = self
            .records
            .iter()
            .filter(|(id, _)| !in_use.contains(*id))
            .filter(|(_, r)| {
                now.duration_since(r.first_detected)
                    .try_into()
                    .is_ok_and(|age: Duration| age >= self.policy.minimum_age)
            })
            .collect();
        candidates.sort_by_key(|(id, r)| (r.last_used, r.first_detected, (*id).clone()));
        candidates
    }

    /// Every image that may be removed at `now`, in removal order, whatever the disk usage
    /// and the thresholds (kubelet's `DeleteUnusedImages`, the eviction manager's reclaim).
    pub fn unused(&self, in_use: &HashSet<String>, now: Timestamp) -> Vec<String> {
        self.eligible(in_use, now)
            .into_iter()
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// What to remove for a filesystem at `fs`: nothing below the high threshold; otherwise
    /// unused images old enough, least recently used first, until enough is freed to reach
    /// the low threshold.
    pub fn plan(&self, in_use: &HashSet<String>, fs: FsStats, now: Timestamp) -> Plan {
        let capacity = fs.capacity_bytes;
        // A high threshold of 100 % turns image GC off, as in the kubelet.
        if capacity == 0 || self.policy.high_threshold_percent >= 100 {
            return Plan::default();
        }
        let available = fs.available_bytes.min(capacity);
        let used_percent = 100 - available.saturating_mul(100) / capacity;
        if used_percent < u64::from(self.policy.high_threshold_percent) {
            return Plan::default();
        }
        let target_free =
            capacity / 100 * u64::from(100 - self.policy.low_threshold_percent.min(100));
        let wanted = target_free.saturating_sub(available);
        let mut plan = Plan {
            wanted,
            ..Plan::default()
        };
        for (id, record) in self.eligible(in_use, now) {
            if plan.found >= wanted {
                break;
            }
            plan.found = plan.found.saturating_add(record.size);
            plan.remove.push(id.clone());
        }
        plan
    }

    /// The recorded size of an image.
    fn size_of(&self, id: &str) -> u64 {
        self.records.get(id).map_or(0, |r| r.size)
    }
}

/// The image ids of every container the runtime holds, exited ones included.
async fn images_in_use(runtime: &dyn RuntimeService) -> Result<HashSet<String>, RuntimeError> {
    Ok(runtime
        .list_containers(None)
        .await?
        .into_iter()
        .map(|c| c.config.image_id)
        .filter(|id| !id.is_empty())
        .collect())
}

/// The node's image garbage collector: one collector, its records and its choice of what is
/// unused, shared by the periodic collection and the eviction manager's reclaim. The lock
/// is held through a whole collection, so the two never remove at once.
pub struct ImageGc {
    runtime: Arc<dyn RuntimeService>,
    collector: Mutex<Collector>,
}

impl ImageGc {
    pub fn new(runtime: Arc<dyn RuntimeService>, policy: Policy) -> Self {
        Self {
            runtime,
            collector: Mutex::new(Collector::new(policy)),
        }
    }

    /// One periodic collection (kubelet's `GarbageCollect`): detect, plan against the image
    /// filesystem's usage, remove. Returns the plan and the bytes its removals freed.
    pub async fn collect(&self, now: Timestamp) -> Result<(Plan, u64), RuntimeError> {
        let mut collector = self.collector.lock().await;
        let in_use = self.detect(&mut collector, now).await?;
        let fs = self.runtime.image_fs_stats().await?;
        let plan = collector.plan(&in_use, fs, now);
        let freed = self.remove(&collector, &plan.remove).await?;
        Ok((plan, freed))
    }

    /// Removes every image no container uses that is older than the minimum age, whatever
    /// the usage (kubelet's `DeleteUnusedImages`, which the eviction manager calls to
    /// reclaim disk before it evicts a pod). Returns the bytes freed.
    pub async fn delete_unused(&self, now: Timestamp) -> Result<u64, RuntimeError> {
        tracing::info!("attempting to delete unused images");
        let mut collector = self.collector.lock().await;
        let in_use = self.detect(&mut collector, now).await?;
        let unused = collector.unused(&in_use, now);
        self.remove(&collector, &unused).await
    }

    /// Records the runtime's images and which are in use now; returns those in use.
    async fn detect(
        &self,
        collector: &mut Collector,
        now: Timestamp,
    ) -> Result<HashSet<String>, RuntimeError> {
        let images = self.runtime.list_images().await?;
        let in_use = images_in_use(self.runtime.as_ref()).await?;
        collector.detect(&images, &in_use, now);
        Ok(in_use)
    }

    /// Removes `ids` in order; a failed removal is logged and the rest go on. Returns the
    /// recorded sizes of those removed.
    async fn remove(&self, collector: &Collector, ids: &[String]) -> Result<u64, RuntimeError> {
        let mut freed = 0u64;
        for id in ids {
            // A container created since the listing keeps its image.
            if images_in_use(self.runtime.as_ref()).await?.contains(id) {
                continue;
            }
            match self.runtime.remove_image(id).await {
                Ok(()) => {
                    freed = freed.saturating_add(collector.size_of(id));
                    tracing::info!(image = %id, "image garbage collected");
                }
                Err(e) => {
                    tracing::warn!(image = %id, error = %e, "image garbage collection failed")
                }
            }
        }
        Ok(freed)
    }
}

/// kubelet's `FreeDiskSpaceFailed` Warning on the node when a collection freed too little.
async fn report_shortfall(events: &EventRecorder, plan: &Plan, freed: u64, now: Timestamp) {
    if let Some(message) = free_space_failure(plan, freed) {
        tracing::warn!("{message}");
        events
            .record_node(EventType::Warning, FREE_DISK_SPACE_FAILED, &message, now)
            .await;
    }
}

/// Collects every `period` until `shutdown`; a collection that falls short is a Warning
/// event on the node.
pub async fn run(
    gc: Arc<ImageGc>,
    events: Arc<EventRecorder>,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Timestamp::now();
        match gc.collect(now).await {
            Ok((plan, freed)) => report_shortfall(&events, &plan, freed, now).await,
            Err(e) => tracing::warn!(error = %e, "image garbage collection"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn image(id: &str, size: u64) -> ImageInfo {
        ImageInfo {
            id: id.to_string(),
            repo_tags: vec![],
            repo_digests: vec![],
            size_bytes: size,
            config: Default::default(),
        }
    }

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).expect("timestamp")
    }

    fn used(ids: &[&str]) -> HashSet<String> {
        ids.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn below_the_high_threshold_nothing_is_removed() {
        let mut c = Collector::new(Policy::default());
        c.detect(&[image("a", GIB)], &used(&[]), at(0));
        let fs = FsStats {
            capacity_bytes: 100 * GIB,
            available_bytes: 16 * GIB,
        };
        assert_eq!(c.plan(&used(&[]), fs, at(3600)), Plan::default());
    }

    #[test]
    fn frees_least_recently_used_unused_old_images_down_to_the_low_threshold() {
        let mut c = Collector::new(Policy::default());
        let images = [
            image("in-use", 4 * GIB),
            image("old-used", 2 * GIB),
            image("never-used", 2 * GIB),
            image("young", 8 * GIB),
            image("spare", 3 * GIB),
        ];
        c.detect(&images[..3], &used(&["in-use", "old-used"]), at(0));
        c.detect(&images[..3], &used(&["in-use"]), at(600));
        c.detect(&images, &used(&["in-use"]), at(1000));
        // 90 % used: free up to 20 % available = 10 GiB wanted.
        let fs = FsStats {
            capacity_bytes: 100 * GIB,
            available_bytes: 10 * GIB,
        };
        let plan = c.plan(&used(&["in-use"]), fs, at(1060));
        // never-used (no last use) first, then old-used; spare and young are too young.
        assert_eq!(plan.remove, vec!["never-used", "old-used"]);
        assert_eq!(plan.wanted, 10 * GIB);
        assert_eq!(plan.found, 4 * GIB);
        // Once old enough, never-used images go first, then by first detection.
        let later = c.plan(&used(&["in-use"]), fs, at(1200));
        assert_eq!(later.remove, vec!["never-used", "spare", "young"]);
        assert!(!later.remove.contains(&"in-use".to_string()));
    }

    #[test]
    fn unused_images_are_every_eligible_one_whatever_the_usage() {
        let mut c = Collector::new(Policy {
            // Periodic collection off: the eviction manager's reclaim still deletes.
            high_threshold_percent: 100,
            ..Policy::default()
        });
        let images = [
            image("in-use", GIB),
            image("old-used", GIB),
            image("never-used", GIB),
            image("young", GIB),
        ];
        c.detect(&images[..3], &used(&["in-use", "old-used"]), at(0));
        c.detect(&images, &used(&["in-use"]), at(600));
        let in_use = used(&["in-use"]);
        // The same choice as the periodic collection's, without its thresholds.
        assert_eq!(c.unused(&in_use, at(700)), vec!["never-used", "old-used"]);
        // Never used ones first, by first detection; then by last use.
        assert_eq!(
            c.unused(&in_use, at(720)),
            vec!["never-used", "young", "old-used"]
        );
        let full = FsStats {
            capacity_bytes: 100 * GIB,
            available_bytes: 0,
        };
        assert_eq!(c.plan(&in_use, full, at(720)), Plan::default());
    }

    fn container(id: &str, image_id: &str) -> runtime::ContainerStatus {
        runtime::ContainerStatus {
            id: id.to_string(),
            sandbox_id: "s".to_string(),
            config: runtime::ContainerConfig {
                name: id.to_string(),
                image_id: image_id.to_string(),
                ..Default::default()
            },
            state: runtime::ContainerState::Exited,
            created_at: at(0),
            started_at: None,
            finished_at: None,
            exit_code: Some(0),
            reason: None,
            message: None,
            pid: None,
            log_path: Default::default(),
            user: None,
        }
    }

    #[tokio::test]
    async fn delete_unused_removes_what_no_container_uses_through_the_shared_collector() {
        let fake = crate::testsupport::FakeRuntime::new(crate::testsupport::FakeClock::new());
        {
            let mut st = fake.state.lock().expect("lock");
            for (id, size) in [("kept", GIB), ("spare", 2 * GIB), ("other", 3 * GIB)] {
                st.images.insert(id.to_string(), image(id, size));
            }
            // An exited container still holds its image.
            st.containers
                .insert("c1".to_string(), container("c1", "kept"));
            st.image_fs = FsStats {
                capacity_bytes: 100 * GIB,
                available_bytes: GIB,
            };
        }
        let gc = ImageGc::new(
            fake.clone(),
            Policy {
                high_threshold_percent: 100,
                low_threshold_percent: 80,
                minimum_age: Duration::from_secs(60),
            },
        );
        // GC is off, and the reclaim keeps images younger than the minimum age.
        assert_eq!(
            gc.collect(at(0)).await.expect("collect"),
            (Plan::default(), 0)
        );
        assert_eq!(gc.delete_unused(at(30)).await.expect("delete"), 0);
        assert!(fake.calls().iter().all(|c| !c.starts_with("remove_image")));
        // First detected at 0: old enough at 60.
        assert_eq!(gc.delete_unused(at(60)).await.expect("delete"), 5 * GIB);
        let mut removed: Vec<String> = fake
            .calls()
            .into_iter()
            .filter(|c| c.starts_with("remove_image"))
            .collect();
        removed.sort();
        assert_eq!(removed, ["remove_image other", "remove_image spare"]);
        let left: Vec<String> = fake
            .state
            .lock()
            .expect("lock")
            .images
            .keys()
            .cloned()
            .collect();
        assert_eq!(left, ["kept"]);
        assert_eq!(gc.delete_unused(at(120)).await.expect("delete"), 0);
    }

    #[test]
    fn falling_short_of_the_wanted_bytes_is_a_failure_with_kubelets_message() {
        let plan = Plan {
            remove: vec!["a".into()],
            wanted: 10 * GIB,
            found: 4 * GIB,
        };
        assert_eq!(
            free_space_failure(&plan, 4 * GIB).as_deref(),
            Some("Failed to garbage collect required amount of images. Attempted to free 10737418240 bytes, but only found 4294967296 bytes eligible to free.")
        );
        assert_eq!(free_space_failure(&plan, 10 * GIB), None);
        assert_eq!(free_space_failure(&plan, 11 * GIB), None);
        // Nothing wanted (below the high threshold, or GC off): never a failure.
        assert_eq!(free_space_failure(&Plan::default(), 0), None);
    }

    #[tokio::test]
    async fn a_shortfall_is_one_node_event_counted_while_it_repeats() {
        let api = Arc::new(crate::testsupport::FakeApi::default());
        let events = EventRecorder::new(api.clone(), "node-a");
        let plan = Plan {
            remove: vec![],
            wanted: 100,
            found: 0,
        };
        report_shortfall(&events, &plan, 100, at(0)).await;
        assert!(api.reasons().is_empty(), "enough was freed");
        report_shortfall(&events, &plan, 40, at(1)).await;
        report_shortfall(&events, &plan, 40, at(2)).await;
        report_shortfall(&events, &plan, 30, at(3)).await;
        let st = api.lock();
        let seen: Vec<_> = st
            .events
            .iter()
            .map(|e| (e.0.as_str(), e.1.as_str(), e.3))
            .collect();
        assert_eq!(
            seen,
            [
                ("Warning", FREE_DISK_SPACE_FAILED, 2),
                ("Warning", FREE_DISK_SPACE_FAILED, 1)
            ]
        );
        assert!(st.events[1]
            .2
            .ends_with("but only found 30 bytes eligible to free."));
        assert!(st.event_names.iter().all(|n| n.starts_with("node-a.")));
    }

    #[test]
    fn stops_once_enough_is_found_and_forgets_removed_images() {
        let mut c = Collector::new(Policy {
            minimum_age: Duration::ZERO,
            ..Policy::default()
        });
        c.detect(
            &[image("a", 6 * GIB), image("b", 6 * GIB)],
            &used(&[]),
            at(0),
        );
        let fs = FsStats {
            capacity_bytes: 100 * GIB,
            available_bytes: 15 * GIB,
        };
        let plan = c.plan(&used(&[]), fs, at(1));
        assert_eq!(plan.remove, vec!["a"]);
        c.detect(&[image("b", 6 * GIB)], &used(&[]), at(2));
        assert_eq!(c.plan(&used(&[]), fs, at(3)).remove, vec!["b"]);
        let empty = FsStats::default();
        assert_eq!(c.plan(&used(&[]), empty, at(4)), Plan::default());
        let off = Collector {
            policy: Policy {
                high_threshold_percent: 100,
                ..c.policy
            },
            records: c.records.clone(),
        };
        let full = FsStats {
            capacity_bytes: 100 * GIB,
            available_bytes: 0,
        };
        assert_eq!(off.plan(&used(&[]), full, at(5)), Plan::default());
    }
}
