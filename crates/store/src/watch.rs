//! The watch feed: a bounded in-memory history of recent events plus a live broadcast, so a
//! watcher can resume from any resourceVersion still in the history without a gap.
//!
//! The history is kept as kube-apiserver's watch cache keeps it: every event of the last
//! [`HistoryLimit::fresh`] (75 s upstream) and at least the last [`HistoryLimit::min_events`]
//! (its lower bound, 100), within hard caps. Older events go: each holds whole objects, so a
//! history kept by count alone held tens of MiB long after a burst of pods. A watch resuming
//! from before the history gets "too old resource version" and relists, as upstream.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::broadcast;

use crate::{ObjectKey, StoreError, WatchStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
    /// No change: every change of the watched range up to `resource_version` has been
    /// delivered (kube's watch.Bookmark). A watch resumed from there misses nothing, so
    /// quiet watches keep a recent resourceVersion and do not fall behind compaction.
    /// `key` names only the range, `object` is empty, `prev_object` is `None`.
    Bookmark,
}

/// One committed change, or a [`EventKind::Bookmark`].
#[derive(Debug, Clone, PartialEq)]
pub struct WatchEvent {
    pub kind: EventKind,
    pub key: ObjectKey,
    /// The resourceVersion of the write.
    pub resource_version: u64,
    /// The new state; for `Deleted`, the last state stamped with the deletion's RV.
    pub object: Value,
    /// The state before the write (None for `Added`): lets watchers with selectors turn an
    /// update into ADDED/DELETED when the object starts or stops matching.
    pub prev_object: Option<Value>,
}

/// Which events a watcher wants.
#[derive(Debug, Clone)]
pub(crate) struct WatchFilter {
    pub group: String,
    pub resource: String,
    pub namespace: Option<String>,
}

impl WatchFilter {
    fn matches(&self, ev: &WatchEvent) -> bool {
        ev.key.group == self.group
            && ev.key.resource == self.resource
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ev.key.namespace == ns)
    }
}

/// How much history a log keeps: at most `events` events and `bytes` bytes of encoded objects
/// (an event holds the new and the previous state), whichever bound is reached first; of
/// those, events older than `fresh` go once more than `min_events` remain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimit {
    pub events: usize,
    pub bytes: usize,
    pub fresh: Duration,
    pub min_events: usize,
}

/// History of recent events and the live channel; one per store, guarded by the store's
/// write lock so that history and live feed never disagree about ordering.
pub(crate) struct EventLog {
    /// Each event with the encoded size it was accounted with and when it was pushed.
    history: VecDeque<(Arc<WatchEvent>, usize, Instant)>,
    limit: HistoryLimit,
    bytes: usize,
    /// The RV the log started at: nothing before it is kept.
    start: u64,
    /// Per (group, resource), the RV of its newest event dropped from `history`: every event
    /// of that resource with a later RV is still there. Kept per resource, as kube-apiserver
    /// keeps one watch cache per resource: a watch of a quiet kind resumes from its last RV
    /// however many events of other kinds went by since.
    floors: HashMap<(String, String), u64>,
    live: broadcast::Sender<Arc<WatchEvent>>,
}

impl EventLog {
    pub fn new(current_rv: u64, limit: HistoryLimit) -> Self {
        // The live channel must absorb bursts (a namespace deletion, a deletecollection) while
        // a watcher's HTTP stream is momentarily blocked.
        let (live, _) = broadcast::channel(limit.events.max(16));
        EventLog {
            history: VecDeque::new(),
            limit,
            bytes: 0,
            start: current_rv,
            floors: HashMap::new(),
            live,
        }
    }

    /// Appends `ev` (`size`: the bytes of its encoded object and previous state), dropping the
    /// oldest events beyond the limit; a watch can no longer resume from before them.
    pub fn push(&mut self, ev: WatchEvent, size: usize) {
        self.push_at(ev, size, Instant::now());
    }

    fn push_at(&mut self, ev: WatchEvent, size: usize, now: Instant) {
        let ev = Arc::new(ev);
        while let Some((old, old_size, at)) = self.history.front() {
            let full =
                self.history.len() >= self.limit.events || self.bytes + size > self.limit.bytes;
            let stale = self.history.len() >= self.limit.min_events
                && now.saturating_duration_since(*at) > self.limit.fresh;
            if !full && !stale {
                break;
            }
            let resource = (old.key.group.clone(), old.key.resource.clone());
            self.floors.insert(resource, old.resource_version);
            self.bytes -= old_size;
            self.history.pop_front();
        }
        self.bytes += size;
        self.history.push_back((ev.clone(), size, now));
        // No receivers is normal (nobody watching).
        let _ = self.live.send(ev);
    }

    /// A stream of the events after `from_rv` that pass `filter`: the retained history, then
    /// the live feed (taken under the same lock, so nothing falls between them).
    pub fn subscribe(&self, filter: WatchFilter, from_rv: u64) -> Result<WatchStream, StoreError> {
        let floor = self.floor(&filter.group, &filter.resource);
        if from_rv < floor {
            return Err(StoreError::Expired {
                requested: from_rv,
                oldest: floor,
            });
        }
        let replay = self
            .history
            .iter()
            .filter(|(e, _, _)| e.resource_version > from_rv && filter.matches(e))
            .map(|(e, _, _)| e.clone())
            .collect();
        let watcher = Watcher {
            replay,
            live: self.live.subscribe(),
            filter,
            last_rv: from_rv,
            ended: false,
        };
        Ok(Box::pin(futures::stream::unfold(
            watcher,
            |mut w| async move { w.next().await.map(|ev| (ev, w)) },
        )))
    }
}

impl EventLog {
    /// Every event of `resource` with an RV above this is in the history.
    fn floor(&self, group: &str, resource: &str) -> u64 {
        let dropped = self
            .floors
            .get(&(group.to_string(), resource.to_string()))
            .copied()
            .unwrap_or(0);
        self.start.max(dropped)
    }
}

/// One watcher's position in the feed.
struct Watcher {
    replay: VecDeque<Arc<WatchEvent>>,
    live: broadcast::Receiver<Arc<WatchEvent>>,
    filter: WatchFilter,
    last_rv: u64,
    ended: bool,
}

impl Watcher {
    /// The next event; `None` when the store is gone or after a `WatchLagged` (events were
    /// lost, so the watch cannot go on without a gap).
    async fn next(&mut self) -> Option<Result<Arc<WatchEvent>, StoreError>> {
        if self.ended {
            return None;
        }
        if let Some(ev) = self.replay.pop_front() {
            self.last_rv = ev.resource_version;
            return Some(Ok(ev));
        }
        loop {
            match self.live.recv().await {
                Ok(ev) => {
                    // The subscription may overlap the replayed history.
                    if ev.resource_version <= self.last_rv || !self.filter.matches(&ev) {
                        continue;
                    }
                    self.last_rv = ev.resource_version;
                    return Some(Ok(ev));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    self.ended = true;
                    return Some(Err(StoreError::WatchLagged { missed }));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(rv: u64) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Added,
            key: ObjectKey::new("", "pods", "default", &format!("p{rv}")),
            resource_version: rv,
            object: json!({}),
            prev_object: None,
        }
    }

    fn oldest(log: &EventLog) -> Option<u64> {
        log.history.front().map(|(e, _, _)| e.resource_version)
    }

    #[test]
    fn events_older_than_fresh_go_once_more_than_the_minimum_remain() {
        let limit = HistoryLimit {
            events: 100,
            bytes: usize::MAX,
            fresh: Duration::from_secs(75),
            min_events: 3,
        };
        let mut log = EventLog::new(0, limit);
        let t0 = Instant::now();
        for rv in 1..=5 {
            log.push_at(event(rv), 10, t0);
        }
        // All five are fresh: kept, beyond the minimum.
        assert_eq!(log.history.len(), 5);
        // 80 s later the five are stale: the new one and the two newest make the minimum.
        log.push_at(event(6), 10, t0 + Duration::from_secs(80));
        assert_eq!(log.history.len(), 3);
        assert_eq!(oldest(&log), Some(4));
        assert_eq!(log.floor("", "pods"), 3);
        assert_eq!(log.bytes, 30);
        // A watch from before the floor is refused; from the floor on it resumes.
        let filter = || WatchFilter {
            group: String::new(),
            resource: "pods".into(),
            namespace: None,
        };
        assert!(matches!(
            log.subscribe(filter(), 2),
            Err(StoreError::Expired { oldest: 3, .. })
        ));
        assert!(log.subscribe(filter(), 3).is_ok());
    }

    #[test]
    fn fresh_events_stay_up_to_the_caps() {
        let limit = HistoryLimit {
            events: 4,
            bytes: usize::MAX,
            fresh: Duration::from_secs(75),
            min_events: 1,
        };
        let mut log = EventLog::new(0, limit);
        let t0 = Instant::now();
        for rv in 1..=6 {
            log.push_at(event(rv), 10, t0 + Duration::from_secs(rv));
        }
        assert_eq!(log.history.len(), 4);
        assert_eq!(oldest(&log), Some(3));
    }

    #[test]
    fn a_quiet_resource_resumes_after_other_resources_events_went() {
        let limit = HistoryLimit {
            events: 3,
            bytes: usize::MAX,
            fresh: Duration::from_secs(75),
            min_events: 1,
        };
        let mut log = EventLog::new(10, limit);
        let secret = WatchEvent {
            key: ObjectKey::new("", "secrets", "default", "s"),
            ..event(11)
        };
        log.push(secret, 10);
        for rv in 12..=20 {
            log.push(event(rv), 10);
        }
        let filter = |resource: &str| WatchFilter {
            group: String::new(),
            resource: resource.into(),
            namespace: None,
        };
        // The secret's event went, so a watch from before it is refused...
        assert!(matches!(
            log.subscribe(filter("secrets"), 10),
            Err(StoreError::Expired { oldest: 11, .. })
        ));
        // ...but from it on nothing of secrets is missing, though pods' events went too.
        assert!(log.subscribe(filter("secrets"), 11).is_ok());
        assert!(log.subscribe(filter("configmaps"), 10).is_ok());
        assert!(matches!(
            log.subscribe(filter("pods"), 11),
            Err(StoreError::Expired { oldest: 17, .. })
        ));
        assert!(log.subscribe(filter("pods"), 17).is_ok());
        // Nothing from before the log's start.
        assert!(matches!(
            log.subscribe(filter("configmaps"), 9),
            Err(StoreError::Expired { oldest: 10, .. })
        ));
    }
}
