//! The watch feed: a bounded in-memory history of recent events plus a live broadcast, so a
//! watcher can resume from any resourceVersion still in the history without a gap.

use std::collections::VecDeque;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::broadcast;

use crate::{ObjectKey, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Added,
    Modified,
    Deleted,
}

/// One committed change.
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

/// History of recent events and the live channel; one per store, guarded by the store's
/// write lock so that history and live feed never disagree about ordering.
pub(crate) struct EventLog {
    history: VecDeque<Arc<WatchEvent>>,
    capacity: usize,
    /// Every event with RV > floor is in `history`.
    floor: u64,
    live: broadcast::Sender<Arc<WatchEvent>>,
}

impl EventLog {
    pub fn new(current_rv: u64, capacity: usize) -> Self {
        // The live channel must absorb bursts (a namespace deletion, a deletecollection) while
        // a watcher's HTTP stream is momentarily blocked.
        let (live, _) = broadcast::channel(capacity.max(16));
        EventLog {
            history: VecDeque::with_capacity(capacity),
            capacity,
            floor: current_rv,
            live,
        }
    }

    pub fn push(&mut self, ev: WatchEvent) {
        let ev = Arc::new(ev);
        if self.history.len() == self.capacity {
            if let Some(old) = self.history.pop_front() {
                self.floor = old.resource_version;
            }
        }
        self.history.push_back(ev.clone());
        // No receivers is normal (nobody watching).
        let _ = self.live.send(ev);
    }

    pub fn subscribe(&self, filter: WatchFilter, from_rv: u64) -> Result<Watch, StoreError> {
        if from_rv < self.floor {
            return Err(StoreError::Expired {
                requested: from_rv,
                oldest: self.floor,
            });
        }
        let replay = self
            .history
            .iter()
            .filter(|e| e.resource_version > from_rv && filter.matches(e))
            .cloned()
            .collect();
        Ok(Watch {
            replay,
            live: self.live.subscribe(),
            filter,
            last_rv: from_rv,
        })
    }
}

/// A stream of events for one watcher.
pub struct Watch {
    replay: VecDeque<Arc<WatchEvent>>,
    live: broadcast::Receiver<Arc<WatchEvent>>,
    filter: WatchFilter,
    last_rv: u64,
}

impl Watch {
    /// The next event; `None` when the store is gone; `WatchLagged` when this watcher fell too
    /// far behind (the caller should end the watch so the client re-lists or resumes).
    pub async fn next(&mut self) -> Option<Result<Arc<WatchEvent>, StoreError>> {
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
                    return Some(Err(StoreError::WatchLagged { missed }))
                }
            }
        }
    }

    /// The resourceVersion of the last event handed out (or the start RV).
    pub fn last_resource_version(&self) -> u64 {
        self.last_rv
    }
}
