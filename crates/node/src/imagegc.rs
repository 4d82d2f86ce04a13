//! kubelet's image garbage collection: every period the image filesystem's usage is read, and
//! when it reaches `imageGCHighThresholdPercent` the images no container uses (running or
//! exited) are removed, least recently used first, until usage is back at
//! `imageGCLowThresholdPercent`. An image younger than `imageMinimumGCAge` (since this agent
//! first saw it) is kept, so a freshly pulled image is not removed before its pod starts.
//! A high threshold of 100 % turns collection off.
//!
//! When a collection cannot free what it needed, the node gets kubelet's Warning event
//! `FreeDiskSpaceFailed`.
//!
//! The bookkeeping and the choice ([`Collector`]) are pure; [`run`] feeds them from the runtime.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use podapi::{EventRecorder, EventType};
use runtime::{FsStats, ImageInfo, RuntimeError, RuntimeService};
use tokio::sync::watch;

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
        let mut plan = Plan {
            wanted,
            ..Plan::default()
        };
        for (id, record) in candidates {
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

/// One collection: detect, plan, remove. Returns the plan and the bytes its removals freed.
pub async fn collect_once(
    runtime: &dyn RuntimeService,
    collector: &mut Collector,
    now: Timestamp,
) -> Result<(Plan, u64), RuntimeError> {
    let images = runtime.list_images().await?;
    let in_use = images_in_use(runtime).await?;
    collector.detect(&images, &in_use, now);
    let fs = runtime.image_fs_stats().await?;
    let plan = collector.plan(&in_use, fs, now);
    let mut freed = 0u64;
    for id in &plan.remove {
        // A container created since the listing keeps its image.
        if images_in_use(runtime).await?.contains(id) {
            continue;
        }
        match runtime.remove_image(id).await {
            Ok(()) => {
                freed = freed.saturating_add(collector.size_of(id));
                tracing::info!(image = %id, "image garbage collected");
            }
            Err(e) => tracing::warn!(image = %id, error = %e, "image garbage collection failed"),
        }
    }
    Ok((plan, freed))
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
    runtime: Arc<dyn RuntimeService>,
    events: Arc<EventRecorder>,
    policy: Policy,
    period: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut collector = Collector::new(policy);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let now = Timestamp::now();
        match collect_once(runtime.as_ref(), &mut collector, now).await {
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
