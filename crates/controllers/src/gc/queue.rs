//! The garbage collector's work queues (client-go's rate-limited work queue): an item added
//! while queued is queued once; an item added while a worker holds it is queued again when
//! the worker is done, so no two workers hold the same item; failed items come back after
//! an exponential back-off per item (5 ms doubling up to 1000 s, as upstream's default).

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

const BASE_DELAY: Duration = Duration::from_millis(5);
const MAX_DELAY: Duration = Duration::from_secs(1000);

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
    failures: HashMap<T, u32>,
}

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    ready: Notify,
}

impl<T: Hash + Eq + Clone + Send + 'static> WorkQueue<T> {
    pub fn new() -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
                failures: HashMap::new(),
            }),
            ready: Notify::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, item: T) {
        let mut s = self.lock();
        if !s.dirty.insert(item.clone()) {
            return;
        }
        if s.processing.contains(&item) {
            return;
        }
        s.queue.push_back(item);
        drop(s);
        self.ready.notify_one();
    }

    /// The next item, if one is waiting; the caller holds it until [`WorkQueue::done`].
    pub fn try_get(&self) -> Option<T> {
        let mut s = self.lock();
        let item = s.queue.pop_front()?;
        s.dirty.remove(&item);
        s.processing.insert(item.clone());
        Some(item)
    }

    /// Waits for the next item.
    pub async fn get(&self) -> T {
        loop {
            if let Some(item) = self.try_get() {
                return item;
            }
            // `notify_one` keeps a permit when nobody waits, so an add between the check
            // above and this wait is not lost.
            self.ready.notified().await;
        }
    }

    /// The worker let go of `item`; if it was added meanwhile, it is queued again.
    pub fn done(&self, item: &T) {
        let mut s = self.lock();
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.ready.notify_one();
        }
    }

    /// `item` succeeded: its back-off starts over.
    pub fn forget(&self, item: &T) {
        self.lock().failures.remove(item);
    }

    /// The delay before `item` comes back after one more failure.
    fn next_delay(&self, item: &T) -> Duration {
        let mut s = self.lock();
        let n = s.failures.entry(item.clone()).or_default();
        let delay = BASE_DELAY
            .saturating_mul(1u32 << (*n).min(20))
            .min(MAX_DELAY);
        *n = n.saturating_add(1);
        delay
    }

    /// `item` failed: it comes back after its back-off.
    pub fn add_rate_limited(self: &Arc<Self>, item: T) {
        let delay = self.next_delay(&item);
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(item);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_are_queued_once_and_never_held_twice() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.try_get(), Some("a"));
        // Added while held: waits until the holder is done.
        q.add("a");
        assert_eq!(q.try_get(), Some("b"));
        assert_eq!(q.try_get(), None);
        q.done(&"a");
        assert_eq!(q.try_get(), Some("a"));
        q.done(&"a");
        q.done(&"b");
        assert_eq!(q.try_get(), None);
    }

    #[test]
    fn back_off_doubles_per_item_and_resets() {
        let q = WorkQueue::new();
        assert_eq!(q.next_delay(&"a"), Duration::from_millis(5));
        assert_eq!(q.next_delay(&"a"), Duration::from_millis(10));
        assert_eq!(q.next_delay(&"b"), Duration::from_millis(5));
        q.forget(&"a");
        assert_eq!(q.next_delay(&"a"), Duration::from_millis(5));
        for _ in 0..40 {
            q.next_delay(&"c");
        }
        assert_eq!(q.next_delay(&"c"), MAX_DELAY);
    }

    #[tokio::test]
    async fn a_waiting_worker_wakes_for_an_item() {
        let q = WorkQueue::new();
        let waiter = {
            let q = Arc::clone(&q);
            tokio::spawn(async move { q.get().await })
        };
        tokio::task::yield_now().await;
        q.add(7);
        assert_eq!(waiter.await.expect("worker"), 7);
    }
}
