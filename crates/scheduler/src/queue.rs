//! kube-scheduler's scheduling queue (upstream's `PriorityQueue`), so that pods are tried in
//! the order kube would try them:
//!
//! - **activeQ**: pods ready to be tried, the one of highest `spec.priority` first and, at
//!   equal priority, the one that entered the queue earliest (PrioritySort).
//! - **backoffQ**: pods that failed and wait out their backoff (1 s after the first attempt,
//!   doubling up to 10 s: `podInitialBackoffSeconds`/`podMaxBackoffSeconds`), aligned to whole
//!   1 s windows and flushed to activeQ once a second. When activeQ is empty the next pod is
//!   taken from backoffQ (`SchedulerPopFromBackoffQ`, on in v1.33), but never a pod that
//!   failed with an error rather than a filter's rejection.
//! - **unschedulable pods**: pods no node took, parked until a cluster event that may cure
//!   one of the filters that rejected them (the queueing hints) moves them to backoffQ or
//!   activeQ, or until they have waited 5 minutes (`podMaxInUnschedulablePodsDuration`).
//!
//! Events that arrive while a pod is being tried are remembered for it, so a rejection
//! decided on an older view of the cluster does not park the pod past the event.
//!
//! [`SchedulingQueue`] is the pure bookkeeping (every method takes the time); [`Queue`] shares
//! it between the watch handlers and the scheduling loop, whose `pop` waits for work.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use tokio::sync::Notify;

use crate::misfit::Misfit;
use crate::preemption;

/// `podInitialBackoffSeconds`.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(1);
/// `podMaxBackoffSeconds`.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The backoff ordering window: expirations are truncated to it, and backoffQ is flushed
/// this often.
pub const BACKOFF_WINDOW: Duration = Duration::from_secs(1);
/// How long a pod stays unschedulable without an event before it is tried again.
pub const MAX_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);
/// How often the unschedulable pods are checked against [`MAX_UNSCHEDULABLE`].
pub const LEFTOVER_FLUSH: Duration = Duration::from_secs(30);

/// The filters (upstream plugins) that can reject a pod; a parked pod waits for an event
/// one of its rejectors cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Plugin {
    NodeUnschedulable,
    TaintToleration,
    NodeAffinity,
    NodePorts,
    NodeResourcesFit,
    VolumeBinding,
    PodTopologySpread,
    InterPodAffinity,
}

impl Plugin {
    /// The filter behind a node's rejection (a node that is not Ready carries upstream's
    /// `not-ready` taint).
    pub fn of(misfit: &Misfit) -> Plugin {
        match misfit {
            Misfit::NotReady | Misfit::Taint { .. } => Plugin::TaintToleration,
            Misfit::Unschedulable => Plugin::NodeUnschedulable,
            Misfit::NodeSelector => Plugin::NodeAffinity,
            Misfit::Ports => Plugin::NodePorts,
            Misfit::Insufficient(_) | Misfit::TooManyPods => Plugin::NodeResourcesFit,
            Misfit::VolumeAffinity | Misfit::NoVolume => Plugin::VolumeBinding,
            Misfit::SpreadMissingLabel | Misfit::Spread => Plugin::PodTopologySpread,
            Misfit::ExistingAntiAffinity | Misfit::AntiAffinity | Misfit::Affinity => {
                Plugin::InterPodAffinity
            }
        }
    }
}

/// What changed on an existing node, as far as the filters look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeChange {
    pub labels: bool,
    /// Taints or readiness (upstream's `not-ready` taint).
    pub taints: bool,
    pub unschedulable: bool,
    pub allocatable: bool,
}

impl NodeChange {
    pub fn any(&self) -> bool {
        self.labels || self.taints || self.unschedulable || self.allocatable
    }
}

/// A change in the cluster that may make parked pods schedulable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterEvent {
    NodeAdd,
    NodeUpdate(NodeChange),
    NodeDelete,
    /// A pod was bound, or a bound pod's labels changed: affinity terms and spreading may
    /// now be satisfied.
    AssignedPodAdd,
    /// A bound pod's requests changed (an in-place resize).
    AssignedPodResize,
    /// A bound pod went away or finished, freeing its node.
    AssignedPodDelete,
    /// A claim, volume or storage class appeared or changed.
    Storage,
    /// A namespace appeared or changed its labels (affinity's `namespaceSelector`).
    Namespace,
    /// The watch of some kind was re-listed: anything may have changed.
    Resync,
    /// The pod waited [`MAX_UNSCHEDULABLE`] without a cure.
    UnschedulableTimeout,
}

impl ClusterEvent {
    /// Whether the event may lift `plugin`'s rejection (upstream's events each plugin
    /// registers, narrowed by their queueing hints).
    fn may_help(&self, plugin: Plugin) -> bool {
        use Plugin::*;
        match self {
            ClusterEvent::NodeAdd | ClusterEvent::Resync | ClusterEvent::UnschedulableTimeout => {
                true
            }
            ClusterEvent::NodeUpdate(change) => match plugin {
                NodeUnschedulable => change.unschedulable || change.taints,
                TaintToleration => change.taints,
                NodeAffinity | VolumeBinding | InterPodAffinity => change.labels,
                NodePorts => false,
                NodeResourcesFit => change.allocatable,
                PodTopologySpread => change.labels || change.taints,
            },
            ClusterEvent::NodeDelete => plugin == PodTopologySpread,
            ClusterEvent::AssignedPodAdd => matches!(plugin, PodTopologySpread | InterPodAffinity),
            ClusterEvent::AssignedPodResize => plugin == NodeResourcesFit,
            ClusterEvent::AssignedPodDelete => matches!(
                plugin,
                NodePorts | NodeResourcesFit | PodTopologySpread | InterPodAffinity
            ),
            ClusterEvent::Storage => plugin == VolumeBinding,
            ClusterEvent::Namespace => plugin == InterPodAffinity,
        }
    }
}

/// A pod in the queue and what the queue knows of its attempts.
#[derive(Debug, Clone)]
pub struct QueuedPod {
    pub pod: Arc<Pod>,
    uid: String,
    priority: i32,
    /// When the pod entered the queue, refreshed when an attempt fails.
    timestamp: Instant,
    /// Tie-breaker for equal timestamps: the order pods were seen.
    seq: u64,
    attempts: u32,
    /// The filters that rejected the pod last time; empty after an error.
    rejectors: BTreeSet<Plugin>,
}

impl QueuedPod {
    pub fn uid(&self) -> &str {
        &self.uid
    }

    fn worth_requeuing(&self, event: &ClusterEvent) -> bool {
        self.rejectors.is_empty() || self.rejectors.iter().any(|p| event.may_help(*p))
    }

    fn failed_with_error(&self) -> bool {
        self.rejectors.is_empty()
    }
}

/// activeQ's order: higher priority first, then older first.
fn active_order(a: &QueuedPod, b: &QueuedPod) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then(a.timestamp.cmp(&b.timestamp))
        .then(a.seq.cmp(&b.seq))
}

/// The pod being tried and what happened to it meanwhile.
#[derive(Debug)]
struct InFlight {
    uid: String,
    events: Vec<ClusterEvent>,
    /// A newer version of the pod whose spec or metadata changed.
    updated: Option<Arc<Pod>>,
    deleted: bool,
}

/// Where a requeued pod went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placed {
    Active,
    Backoff,
    Unschedulable,
    Dropped,
}

#[derive(Debug)]
pub struct SchedulingQueue {
    /// The origin of the backoff windows.
    epoch: Instant,
    active: HashMap<String, QueuedPod>,
    backoff: HashMap<String, QueuedPod>,
    unschedulable: HashMap<String, QueuedPod>,
    in_flight: Option<InFlight>,
    seq: u64,
}

/// Whether the pod changed in a way that may change its scheduling: anything but its
/// status, resourceVersion, managed fields and finalizers (upstream's `isPodUpdated`).
fn pod_updated(old: &Pod, new: &Pod) -> bool {
    let strip = |p: &Pod| {
        let mut meta = p.metadata.clone();
        meta.resource_version = None;
        meta.generation = None;
        meta.managed_fields = None;
        meta.finalizers = None;
        (meta, p.spec.clone())
    };
    strip(old) != strip(new)
}

impl SchedulingQueue {
    pub fn new(epoch: Instant) -> Self {
        SchedulingQueue {
            epoch,
            active: HashMap::new(),
            backoff: HashMap::new(),
            unschedulable: HashMap::new(),
            in_flight: None,
            seq: 0,
        }
    }

    /// `t` truncated to its backoff window.
    fn align(&self, t: Instant) -> Instant {
        let since = t.saturating_duration_since(self.epoch);
        let window = BACKOFF_WINDOW.as_nanos();
        let whole = since.as_nanos() - since.as_nanos() % window;
        self.epoch + Duration::from_nanos(u64::try_from(whole).unwrap_or(u64::MAX))
    }

    /// The backoff after `attempts` attempts: none before the first, then 1 s doubling up to
    /// 10 s.
    pub fn backoff_duration(attempts: u32) -> Duration {
        match attempts {
            0 => Duration::ZERO,
            n => {
                let shift = (n - 1).min(31);
                INITIAL_BACKOFF
                    .checked_mul(1u32 << shift)
                    .map_or(MAX_BACKOFF, |d| d.min(MAX_BACKOFF))
            }
        }
    }

    /// When the pod's backoff ends (its window), if it was ever tried.
    fn backoff_expiry(&self, info: &QueuedPod) -> Option<Instant> {
        (info.attempts > 0)
            .then(|| self.align(info.timestamp + Self::backoff_duration(info.attempts)))
    }

    fn backing_off(&self, info: &QueuedPod, now: Instant) -> bool {
        self.backoff_expiry(info)
            .is_some_and(|expiry| expiry >= self.align(now))
    }

    /// backoffQ's order: earlier expiry first, then as activeQ within one window.
    fn backoff_order(&self, a: &QueuedPod, b: &QueuedPod) -> Ordering {
        self.backoff_expiry(a)
            .cmp(&self.backoff_expiry(b))
            .then_with(|| active_order(a, b))
    }

    fn remove(&mut self, uid: &str) -> Option<QueuedPod> {
        self.active
            .remove(uid)
            .or_else(|| self.backoff.remove(uid))
            .or_else(|| self.unschedulable.remove(uid))
    }

    /// Back to backoffQ while the pod backs off, else to activeQ.
    fn requeue(&mut self, info: QueuedPod, now: Instant) -> Placed {
        if self.backing_off(&info, now) {
            self.backoff.insert(info.uid.clone(), info);
            Placed::Backoff
        } else {
            self.active.insert(info.uid.clone(), info);
            Placed::Active
        }
    }

    /// A pod without a node was seen (created or changed): new pods join activeQ; queued pods
    /// take the new version, and a parked pod whose spec or metadata changed is moved.
    /// Returns whether a pod may have become ready to pop.
    pub fn add_or_update(&mut self, pod: Arc<Pod>, now: Instant) -> bool {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(flight) = self.in_flight.as_mut().filter(|f| f.uid == uid) {
            flight.updated = Some(pod);
            return false;
        }
        let priority = preemption::priority(&pod);
        for queue in [&mut self.active, &mut self.backoff] {
            if let Some(info) = queue.get_mut(&uid) {
                info.pod = pod;
                info.priority = priority;
                return false;
            }
        }
        if let Some(mut info) = self.unschedulable.remove(&uid) {
            let changed = pod_updated(&info.pod, &pod);
            info.pod = pod;
            info.priority = priority;
            if changed {
                return self.requeue(info, now) != Placed::Unschedulable;
            }
            self.unschedulable.insert(uid, info);
            return false;
        }
        self.seq += 1;
        let info = QueuedPod {
            pod,
            uid: uid.clone(),
            priority,
            timestamp: now,
            seq: self.seq,
            attempts: 0,
            rejectors: BTreeSet::new(),
        };
        self.active.insert(uid, info);
        true
    }

    /// The pod no longer needs scheduling (bound, deleted, finished).
    pub fn delete(&mut self, uid: &str) {
        if let Some(flight) = self.in_flight.as_mut().filter(|f| f.uid == uid) {
            flight.deleted = true;
        }
        self.remove(uid);
    }

    /// The next pod to try: activeQ's head, else (activeQ empty) backoffQ's head unless it
    /// failed with an error. The pod is in flight until [`Self::done`] or
    /// [`Self::add_unschedulable`].
    pub fn pop(&mut self) -> Option<QueuedPod> {
        let next = self
            .active
            .values()
            .min_by(|a, b| active_order(a, b))
            .map(|p| p.uid.clone())
            .or_else(|| {
                self.backoff
                    .values()
                    .filter(|p| !p.failed_with_error())
                    .min_by(|a, b| self.backoff_order(a, b))
                    .map(|p| p.uid.clone())
            })?;
        let mut info = self.remove(&next)?;
        info.attempts = info.attempts.saturating_add(1);
        self.in_flight = Some(InFlight {
            uid: info.uid.clone(),
            events: Vec::new(),
            updated: None,
            deleted: false,
        });
        Some(info)
    }

    /// The popped pod is placed (or no longer needs a decision).
    pub fn done(&mut self, uid: &str) {
        if self.in_flight.as_ref().is_some_and(|f| f.uid == uid) {
            self.in_flight = None;
        }
    }

    /// The popped pod was not placed: `rejectors` are the filters that turned it down, or
    /// empty after an error (the pod then only waits out its backoff). It is parked unless an
    /// event while it was tried, or a change to the pod, may cure a rejection.
    pub fn add_unschedulable(
        &mut self,
        mut info: QueuedPod,
        rejectors: BTreeSet<Plugin>,
        now: Instant,
    ) -> Placed {
        let flight = match self.in_flight.take() {
            Some(f) if f.uid == info.uid => Some(f),
            other => {
                self.in_flight = other;
                None
            }
        };
        if flight.as_ref().is_some_and(|f| f.deleted) {
            return Placed::Dropped;
        }
        if self.active.contains_key(&info.uid)
            || self.backoff.contains_key(&info.uid)
            || self.unschedulable.contains_key(&info.uid)
        {
            return Placed::Dropped;
        }
        info.timestamp = now;
        info.rejectors = rejectors;
        let (events, updated) = match flight {
            Some(f) => (f.events, f.updated),
            None => (Vec::new(), None),
        };
        let pod_changed = updated
            .as_ref()
            .is_some_and(|newer| pod_updated(&info.pod, newer));
        if let Some(newer) = updated {
            info.priority = preemption::priority(&newer);
            info.pod = newer;
        }
        if info.failed_with_error() {
            self.backoff.insert(info.uid.clone(), info);
            return Placed::Backoff;
        }
        if pod_changed || events.iter().any(|e| info.worth_requeuing(e)) {
            return self.requeue(info, now);
        }
        self.unschedulable.insert(info.uid.clone(), info);
        Placed::Unschedulable
    }

    /// Moves the parked pods `event` may help to backoffQ or activeQ, and remembers the event
    /// for the pod in flight. Returns whether a pod may have become ready to pop.
    pub fn on_event(&mut self, event: ClusterEvent, now: Instant) -> bool {
        if let Some(flight) = self.in_flight.as_mut() {
            flight.events.push(event);
        }
        let moving: Vec<String> = self
            .unschedulable
            .values()
            .filter(|p| p.worth_requeuing(&event))
            .map(|p| p.uid.clone())
            .collect();
        let mut woke = false;
        for uid in moving {
            if let Some(info) = self.unschedulable.remove(&uid) {
                woke |= self.requeue(info, now) != Placed::Unschedulable;
            }
        }
        woke
    }

    /// Moves the pods whose backoff is over to activeQ.
    pub fn flush_backoff_completed(&mut self, now: Instant) -> bool {
        let done: Vec<String> = self
            .backoff
            .values()
            .filter(|p| !self.backing_off(p, now))
            .map(|p| p.uid.clone())
            .collect();
        for uid in &done {
            if let Some(info) = self.backoff.remove(uid) {
                self.active.insert(uid.clone(), info);
            }
        }
        !done.is_empty()
    }

    /// Moves the pods parked longer than [`MAX_UNSCHEDULABLE`] to backoffQ or activeQ.
    pub fn flush_unschedulable_leftover(&mut self, now: Instant) -> bool {
        let stale: Vec<String> = self
            .unschedulable
            .values()
            .filter(|p| now.saturating_duration_since(p.timestamp) > MAX_UNSCHEDULABLE)
            .map(|p| p.uid.clone())
            .collect();
        let mut woke = false;
        for uid in stale {
            if let Some(info) = self.unschedulable.remove(&uid) {
                woke |= self.requeue(info, now) != Placed::Unschedulable;
            }
        }
        woke
    }
}

/// The queue shared by the watch handlers, the flush timer and the scheduling loop.
pub struct Queue {
    inner: Mutex<SchedulingQueue>,
    ready: Notify,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            inner: Mutex::new(SchedulingQueue::new(Instant::now())),
            ready: Notify::new(),
        }
    }
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, SchedulingQueue> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `change` on the queue and wakes the loop if it says a pod may be ready.
    pub fn update(&self, change: impl FnOnce(&mut SchedulingQueue, Instant) -> bool) {
        let woke = change(&mut self.lock(), Instant::now());
        if woke {
            self.ready.notify_one();
        }
    }

    /// The next pod to try, waiting for one.
    pub async fn pop(&self) -> QueuedPod {
        loop {
            if let Some(info) = self.lock().pop() {
                return info;
            }
            // A wake-up between the check and here leaves a permit, so none is lost.
            self.ready.notified().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str, priority: i32) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": uid, "namespace": "default", "uid": uid},
                "spec": {"priority": priority, "containers": []}
            }))
            .expect("pod"),
        )
    }

    fn rejected_by(plugins: &[Plugin]) -> BTreeSet<Plugin> {
        plugins.iter().copied().collect()
    }

    fn popped(q: &mut SchedulingQueue) -> Option<String> {
        let info = q.pop()?;
        q.done(&info.uid);
        Some(info.uid)
    }

    /// Tries `uid` (which must be next) and parks it as rejected by `plugins`.
    fn fail(q: &mut SchedulingQueue, uid: &str, plugins: &[Plugin], now: Instant) -> Placed {
        let info = q.pop().expect("a pod to pop");
        assert_eq!(info.uid, uid);
        q.add_unschedulable(info, rejected_by(plugins), now)
    }

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn active_pods_go_by_priority_then_age() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("old-low", 10), t0);
        q.add_or_update(pod("high", 1000), t0 + SEC);
        q.add_or_update(pod("new-low", 10), t0 + 2 * SEC);
        q.add_or_update(pod("same-time-low", 10), t0 + 2 * SEC);
        let order: Vec<String> = std::iter::from_fn(|| popped(&mut q)).collect();
        assert_eq!(order, ["high", "old-low", "new-low", "same-time-low"]);
    }

    #[test]
    fn parked_pods_come_back_on_a_relevant_event_and_go_by_priority() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("low", 10), t0);
        assert_eq!(
            fail(&mut q, "low", &[Plugin::NodeUnschedulable], t0),
            Placed::Unschedulable
        );
        q.add_or_update(pod("high", 1000), t0 + SEC);
        assert_eq!(
            fail(&mut q, "high", &[Plugin::NodeUnschedulable], t0 + SEC),
            Placed::Unschedulable
        );
        assert!(q.pop().is_none(), "parked pods wait for an event");

        // A bound pod going away cannot cure a cordoned node; new labels neither.
        let later = t0 + 5 * SEC;
        assert!(!q.on_event(ClusterEvent::AssignedPodDelete, later));
        let labels = NodeChange {
            labels: true,
            ..Default::default()
        };
        assert!(!q.on_event(ClusterEvent::NodeUpdate(labels), later));
        assert!(q.pop().is_none());

        // Uncordoning may: both are back, the later high-priority pod first.
        let uncordon = NodeChange {
            unschedulable: true,
            ..Default::default()
        };
        assert!(q.on_event(ClusterEvent::NodeUpdate(uncordon), later));
        assert_eq!(popped(&mut q).as_deref(), Some("high"));
        assert_eq!(popped(&mut q).as_deref(), Some("low"));
    }

    #[test]
    fn backoff_starts_at_one_second_and_doubles_up_to_ten() {
        let durations: Vec<u64> = (0..7)
            .map(|n| SchedulingQueue::backoff_duration(n).as_secs())
            .collect();
        assert_eq!(durations, [0, 1, 2, 4, 8, 10, 10]);
        assert_eq!(SchedulingQueue::backoff_duration(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_pod_moved_while_backing_off_waits_in_backoff_unless_active_is_empty() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("a", 10), t0);
        fail(&mut q, "a", &[Plugin::NodeResourcesFit], t0);
        // Moved within its 1 s backoff: backoffQ.
        q.on_event(ClusterEvent::AssignedPodDelete, t0);
        assert_eq!(q.backoff.len(), 1);
        // A new pod in activeQ goes before it.
        q.add_or_update(pod("b", 0), t0);
        assert_eq!(popped(&mut q).as_deref(), Some("b"));
        // With activeQ empty, backoffQ's head is taken.
        assert_eq!(popped(&mut q).as_deref(), Some("a"));
    }

    #[test]
    fn backoff_completes_by_whole_windows() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("a", 10), t0);
        let failed_at = t0 + Duration::from_millis(300);
        fail(&mut q, "a", &[Plugin::NodeResourcesFit], failed_at);
        q.on_event(ClusterEvent::AssignedPodDelete, failed_at);
        // Expiry t0+1.3 s is aligned to t0+1 s; it is still backing off in that window.
        assert!(!q.flush_backoff_completed(t0 + Duration::from_millis(1900)));
        assert!(q.flush_backoff_completed(t0 + 2 * SEC));
        assert_eq!(q.active.len(), 1);
    }

    #[test]
    fn a_pod_failing_with_an_error_only_waits_out_its_growing_backoff() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("a", 10), t0);
        assert_eq!(fail(&mut q, "a", &[], t0), Placed::Backoff);
        // Not popped early even with activeQ empty.
        assert!(q.pop().is_none());
        assert!(q.flush_backoff_completed(t0 + 2 * SEC));
        assert_eq!(fail(&mut q, "a", &[], t0 + 2 * SEC), Placed::Backoff);
        // Second attempt: 2 s.
        assert!(!q.flush_backoff_completed(t0 + 3 * SEC));
        assert!(q.flush_backoff_completed(t0 + 5 * SEC));
    }

    #[test]
    fn an_event_while_the_pod_is_tried_is_not_lost() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("a", 10), t0);
        let info = q.pop().expect("pod");
        q.on_event(ClusterEvent::NodeAdd, t0);
        assert_eq!(
            q.add_unschedulable(info, rejected_by(&[Plugin::NodeAffinity]), t0),
            Placed::Backoff
        );
        // An event that cannot help is not enough.
        q.add_or_update(pod("b", 10), t0);
        let info = q.pop().expect("pod");
        assert_eq!(info.uid, "b");
        q.on_event(ClusterEvent::Storage, t0);
        assert_eq!(
            q.add_unschedulable(info, rejected_by(&[Plugin::NodeAffinity]), t0),
            Placed::Unschedulable
        );
    }

    #[test]
    fn parked_pods_are_retried_after_five_minutes() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("a", 10), t0);
        fail(&mut q, "a", &[Plugin::NodeAffinity], t0);
        assert!(!q.flush_unschedulable_leftover(t0 + MAX_UNSCHEDULABLE));
        assert!(q.flush_unschedulable_leftover(t0 + MAX_UNSCHEDULABLE + SEC));
        assert_eq!(popped(&mut q).as_deref(), Some("a"));
    }

    #[test]
    fn a_changed_spec_moves_a_parked_pod_but_a_status_update_does_not() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("a", 10), t0);
        fail(&mut q, "a", &[Plugin::TaintToleration], t0);
        let mut status_only = (*pod("a", 10)).clone();
        status_only.metadata.resource_version = Some("7".into());
        status_only.status = Some(Default::default());
        assert!(!q.add_or_update(Arc::new(status_only), t0 + 5 * SEC));
        assert!(q.pop().is_none());
        let mut tolerating = (*pod("a", 10)).clone();
        if let Some(spec) = tolerating.spec.as_mut() {
            spec.tolerations = Some(vec![Default::default()]);
        }
        assert!(q.add_or_update(Arc::new(tolerating), t0 + 5 * SEC));
        assert_eq!(popped(&mut q).as_deref(), Some("a"));
    }

    #[test]
    fn deleted_pods_leave_the_queue_even_in_flight() {
        let t0 = Instant::now();
        let mut q = SchedulingQueue::new(t0);
        q.add_or_update(pod("a", 10), t0);
        q.add_or_update(pod("b", 10), t0);
        q.delete("b");
        let info = q.pop().expect("pod");
        q.delete("a");
        assert_eq!(
            q.add_unschedulable(info, rejected_by(&[Plugin::NodeAffinity]), t0),
            Placed::Dropped
        );
        assert!(q.pop().is_none());
    }
}
