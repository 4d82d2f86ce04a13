//! The watch feed: a bounded in-memory history of recent events plus a live broadcast, so a
//! watcher can resume from any resourceVersion still in the history without a gap.

use std::collections::VecDeque;
use std::sync::Arc;

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
/// (an event holds the new and the previous state), whichever bound is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimit {
    pub events: usize,
    pub bytes: usize,
}

/// History of recent events and the live channel; one per store, guarded by the store's
/// write lock so that history and live feed never disagree about ordering.
pub(crate) struct EventLog {
    /// Each event with the encoded size it was accounted with.
    history: VecDeque<(Arc<WatchEvent>, usize)>,
    limit: HistoryLimit,
    bytes: usize,
    /// Every event with RV > floor is in `history`.
    floor: u64,
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
            floor: current_rv,
            live,
        }
    }

    /// Appends `ev` (`size`: the bytes of its encoded object and previous state), dropping the
    /// oldest events beyond the limit; a watch can no longer resume from before them.
    pub fn push(&mut self, ev: WatchEvent, size: usize) {
        let ev = Arc::new(ev);
        while !self.history.is_empty()
            && (self.history.len() >= self.limit.events || self.bytes + size > self.limit.bytes)
        {
            if let Some((old, old_size)) = self.history.pop_front() {
                self.floor = old.resource_version;
                self.bytes -= old_size;
            }
        }
        self.bytes += size;
        self.history.push_back((ev.clone(), size));
        // No receivers is normal (nobody watching).
        let _ = self.live.send(ev);
    }

    /// A stream of the events after `from_rv` that pass `filter`: the retained history, then
    /// the live feed (taken under the same lock, so nothing falls between them).
    pub fn subscribe(&self, filter: WatchFilter, from_rv: u64) -> Result<WatchStream, StoreError> {
        if from_rv < self.floor {
            return Err(StoreError::Expired {
                requested: from_rv,
                oldest: self.floor,
            });
        }
        let replay = self
            .history
            .iter()
            .filter(|(e, _)| e.resource_version > from_rv && filter.matches(e))
            .map(|(e, _)| e.clone())
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
