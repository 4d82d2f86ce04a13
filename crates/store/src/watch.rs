//! The watch feed: a bounded in-memory history of recent events, which watchers read from
//! when woken, so a watcher can resume from any resourceVersion still in the history without
//! a gap, and no event outlives the history.
//!
//! The history is kept as kube-apiserver's watch cache keeps it: every event of the last
//! [`HistoryLimit::fresh`] (75 s upstream) and at least the last [`HistoryLimit::min_events`]
//! (its lower bound, 100), within hard caps. Older events go: each holds whole objects, so a
//! history kept by count alone held tens of MiB long after a burst of pods. A watch resuming
//! from before the history gets "too old resource version" and relists, as upstream.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::watch;

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
    pub object: Arc<Value>,
    /// The state before the write (None for `Added`): lets watchers with selectors turn an
    /// update into ADDED/DELETED when the object starts or stops matching. In the history it
    /// is the previous event's `object` itself when that event is still there.
    pub prev_object: Option<Arc<Value>>,
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

/// History of recent events; one per store, pushed to under the store's write lock so that
/// history order is RV order. It is also the live feed: a watcher is woken by `newest` and
/// reads what it has not seen from the history itself, so an event is held only while the
/// history keeps it (a broadcast ring would hold its last N events long after).
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
    /// The RV of the newest event pushed; watchers wait for it to change.
    newest: watch::Sender<u64>,
    /// Per key, the object of its newest event in the history. The next write's previous
    /// state is that object: the event shares it instead of holding a second copy, which
    /// halves what a burst of updates keeps.
    latest: HashMap<ObjectKey, Arc<Value>>,
}

/// The log as the store and its watchers share it. Watchers hold it weakly: when the store
/// goes, the log goes and their streams end.
pub(crate) type SharedLog = Arc<Mutex<EventLog>>;

/// Locks a mutex whose holder cannot leave its data half-updated (a push or `()` is the last
/// step), so a poisoned lock is still usable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An object's `metadata.resourceVersion`: one key's states are told apart by it.
fn resource_version(obj: &Value) -> Option<&str> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

impl EventLog {
    pub fn new(current_rv: u64, limit: HistoryLimit) -> Self {
        EventLog {
            history: VecDeque::new(),
            limit,
            bytes: 0,
            start: current_rv,
            floors: HashMap::new(),
            newest: watch::Sender::new(current_rv),
            latest: HashMap::new(),
        }
    }

    /// Appends `ev` (`size`: the bytes of its encoded object and previous state), dropping the
    /// oldest events beyond the limit; a watch can no longer resume from before them.
    pub fn push(&mut self, ev: WatchEvent, size: usize) {
        self.push_at(ev, size, Instant::now());
    }

    fn push_at(&mut self, mut ev: WatchEvent, size: usize, now: Instant) {
        let rv = ev.resource_version;
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
            if self
                .latest
                .get(&old.key)
                .is_some_and(|o| Arc::ptr_eq(o, &old.object))
            {
                self.latest.remove(&old.key);
            }
            self.history.pop_front();
        }
        if ev.kind != EventKind::Bookmark {
            if let (Some(prev), Some(last)) = (&ev.prev_object, self.latest.get(&ev.key)) {
                if resource_version(prev) == resource_version(last) {
                    ev.prev_object = Some(last.clone());
                }
            }
            self.latest.insert(ev.key.clone(), ev.object.clone());
        }
        self.bytes += size;
        self.history.push_back((Arc::new(ev), size, now));
        // Wakes every watcher, none waiting is normal.
        self.newest.send_replace(rv);
    }

    /// Refuses a watch from `from_rv` if an event of its resource after it is gone.
    fn check_from(&self, filter: &WatchFilter, from_rv: u64) -> Result<(), StoreError> {
        let floor = self.floor(&filter.group, &filter.resource);
        if from_rv < floor {
            return Err(StoreError::Expired {
                requested: from_rv,
                oldest: floor,
            });
        }
        Ok(())
    }

    /// The events after `seen` that pass `filter`, and the RV they reach; an error if one of
    /// them has already gone from the history (the watcher fell behind).
    fn events_after(
        &self,
        filter: &WatchFilter,
        seen: u64,
        into: &mut VecDeque<Arc<WatchEvent>>,
    ) -> Result<u64, StoreError> {
        let floor = self.floor(&filter.group, &filter.resource);
        if floor > seen {
            return Err(StoreError::WatchLagged {
                missed: floor - seen,
            });
        }
        let first = self
            .history
            .partition_point(|(e, _, _)| e.resource_version <= seen);
        into.extend(
            self.history
                .range(first..)
                .filter(|(e, _, _)| filter.matches(e))
                .map(|(e, _, _)| e.clone()),
        );
        Ok(self
            .history
            .back()
            .map_or(seen, |(e, _, _)| e.resource_version.max(seen)))
    }

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

/// A stream of the events after `from_rv` that pass `filter`: what the history holds, then
/// each new event as it is pushed.
pub(crate) fn subscribe(
    log: &SharedLog,
    filter: WatchFilter,
    from_rv: u64,
) -> Result<WatchStream, StoreError> {
    let guard = lock(log);
    guard.check_from(&filter, from_rv)?;
    let watcher = Watcher {
        pending: VecDeque::new(),
        newest: guard.newest.subscribe(),
        log: Arc::downgrade(log),
        filter,
        seen: from_rv,
        ended: false,
    };
    drop(guard);
    Ok(Box::pin(futures::stream::unfold(
        watcher,
        |mut w| async move { w.next().await.map(|ev| (ev, w)) },
    )))
}

/// One watcher's position in the log.
struct Watcher {
    /// Read from the history, not yet returned.
    pending: VecDeque<Arc<WatchEvent>>,
    newest: watch::Receiver<u64>,
    log: Weak<Mutex<EventLog>>,
    filter: WatchFilter,
    /// Every event up to this RV has been read into `pending` (or did not match).
    seen: u64,
    ended: bool,
}

impl Watcher {
    /// The next event; `None` when the store is gone or after a `WatchLagged` (events were
    /// lost, so the watch cannot go on without a gap).
    async fn next(&mut self) -> Option<Result<Arc<WatchEvent>, StoreError>> {
        loop {
            if self.ended {
                return None;
            }
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            // Marked seen before reading, so a push after the read wakes the wait below.
            self.newest.borrow_and_update();
            let log = self.log.upgrade()?;
            let read = lock(&log).events_after(&self.filter, self.seen, &mut self.pending);
            drop(log);
            match read {
                Ok(reached) => self.seen = reached,
                Err(lagged) => {
                    self.ended = true;
                    return Some(Err(lagged));
                }
            }
            if self.pending.is_empty() && self.newest.changed().await.is_err() {
                return None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use serde_json::json;

    fn event(rv: u64) -> WatchEvent {
        WatchEvent {
            kind: EventKind::Added,
            key: ObjectKey::new("", "pods", "default", &format!("p{rv}")),
            resource_version: rv,
            object: Arc::new(json!({})),
            prev_object: None,
        }
    }

    fn oldest(log: &EventLog) -> Option<u64> {
        log.history.front().map(|(e, _, _)| e.resource_version)
    }

    fn write(kind: EventKind, name: &str, rv: u64, prev_rv: Option<u64>) -> WatchEvent {
        let state =
            |rv: u64| json!({"metadata": {"name": name, "resourceVersion": rv.to_string()}});
        WatchEvent {
            kind,
            key: ObjectKey::new("", "pods", "default", name),
            resource_version: rv,
            object: Arc::new(state(rv)),
            prev_object: prev_rv.map(|r| Arc::new(state(r))),
        }
    }

    #[test]
    fn an_update_shares_its_previous_state_with_the_event_before() {
        let mut log = EventLog::new(0, crate::redb_store::DEFAULT_HISTORY);
        log.push(write(EventKind::Added, "a", 1, None), 10);
        log.push(write(EventKind::Added, "b", 2, None), 10);
        log.push(write(EventKind::Modified, "a", 3, Some(1)), 10);
        log.push(write(EventKind::Deleted, "a", 4, Some(3)), 10);
        // A previous state the history does not hold (its write was before) is kept as given.
        log.push(write(EventKind::Modified, "b", 5, Some(1)), 10);
        let events: Vec<_> = log.history.iter().map(|(e, _, _)| e.clone()).collect();
        let shared = |later: usize, earlier: usize| {
            events[later]
                .prev_object
                .as_ref()
                .is_some_and(|p| Arc::ptr_eq(p, &events[earlier].object))
        };
        assert!(shared(2, 0));
        assert!(shared(3, 2));
        assert!(!shared(4, 1));
        assert_eq!(
            events[4].prev_object.as_deref(),
            Some(&json!({"metadata": {"name": "b", "resourceVersion": "1"}}))
        );
    }

    #[test]
    fn an_object_that_leaves_the_history_is_not_held_for_sharing() {
        let limit = HistoryLimit {
            events: 2,
            bytes: usize::MAX,
            fresh: Duration::from_secs(75),
            min_events: 1,
        };
        let mut log = EventLog::new(0, limit);
        log.push(write(EventKind::Added, "a", 1, None), 10);
        let first = log.history[0].0.object.clone();
        log.push(write(EventKind::Added, "b", 2, None), 10);
        log.push(write(EventKind::Added, "c", 3, None), 10);
        assert_eq!(oldest(&log), Some(2));
        assert_eq!(
            Arc::strong_count(&first),
            1,
            "still held after leaving the history"
        );
        assert!(!log
            .latest
            .contains_key(&ObjectKey::new("", "pods", "default", "a")));
        assert_eq!(log.latest.len(), 2);
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
            log.check_from(&filter(), 2),
            Err(StoreError::Expired { oldest: 3, .. })
        ));
        assert!(log.check_from(&filter(), 3).is_ok());
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
            log.check_from(&filter("secrets"), 10),
            Err(StoreError::Expired { oldest: 11, .. })
        ));
        // ...but from it on nothing of secrets is missing, though pods' events went too.
        assert!(log.check_from(&filter("secrets"), 11).is_ok());
        assert!(log.check_from(&filter("configmaps"), 10).is_ok());
        assert!(matches!(
            log.check_from(&filter("pods"), 11),
            Err(StoreError::Expired { oldest: 17, .. })
        ));
        assert!(log.check_from(&filter("pods"), 17).is_ok());
        // Nothing from before the log's start.
        assert!(matches!(
            log.check_from(&filter("configmaps"), 9),
            Err(StoreError::Expired { oldest: 10, .. })
        ));
    }

    fn pods() -> WatchFilter {
        WatchFilter {
            group: String::new(),
            resource: "pods".into(),
            namespace: Some("default".into()),
        }
    }

    fn shared(limit: HistoryLimit) -> SharedLog {
        Arc::new(Mutex::new(EventLog::new(0, limit)))
    }

    const SMALL: HistoryLimit = HistoryLimit {
        events: 3,
        bytes: usize::MAX,
        fresh: Duration::from_secs(75),
        min_events: 1,
    };

    #[tokio::test]
    async fn a_watch_reads_the_history_then_each_new_event() {
        let log = shared(HistoryLimit {
            events: 100,
            ..SMALL
        });
        lock(&log).push(event(1), 10);
        let other = WatchEvent {
            key: ObjectKey::new("", "pods", "kube-system", "x"),
            ..event(2)
        };
        lock(&log).push(other, 10);
        lock(&log).push(event(3), 10);
        let mut stream = subscribe(&log, pods(), 1).expect("subscribe");
        let rv = |ev: Option<Result<Arc<WatchEvent>, StoreError>>| {
            ev.expect("event").expect("not lagged").resource_version
        };
        assert_eq!(rv(stream.next().await), 3);
        let writer = {
            let log = log.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                lock(&log).push(event(4), 10);
            })
        };
        assert_eq!(rv(stream.next().await), 4);
        writer.await.expect("writer");
    }

    #[tokio::test]
    async fn a_watch_whose_events_went_before_it_read_them_ends_lagged() {
        let log = shared(SMALL);
        let mut stream = subscribe(&log, pods(), 0).expect("subscribe");
        for rv in 1..=5 {
            lock(&log).push(event(rv), 10);
        }
        assert!(matches!(
            stream.next().await,
            Some(Err(StoreError::WatchLagged { .. }))
        ));
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn an_event_is_freed_when_the_history_drops_it_even_while_watched() {
        let log = shared(SMALL);
        let mut stream = subscribe(&log, pods(), 0).expect("subscribe");
        lock(&log).push(event(1), 10);
        let first = Arc::downgrade(&lock(&log).history[0].0);
        let read = stream.next().await.expect("event").expect("not lagged");
        assert_eq!(read.resource_version, 1);
        drop(read);
        for rv in 2..=4 {
            lock(&log).push(event(rv), 10);
        }
        assert_eq!(oldest(&lock(&log)), Some(2));
        assert!(first.upgrade().is_none(), "a dropped event is still held");
    }

    #[tokio::test]
    async fn a_watch_ends_when_its_store_goes() {
        let log = shared(SMALL);
        let mut stream = subscribe(&log, pods(), 0).expect("subscribe");
        let waiting = tokio::spawn(async move { stream.next().await.is_none() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(log);
        assert!(waiting.await.expect("watcher"));
    }
}
