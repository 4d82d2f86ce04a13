//! Leader election on a `coordination.k8s.io/v1` Lease, as kube-controller-manager does it
//! (client-go's `leaderelection`): several copies may run, only the holder of the Lease runs
//! the controllers.
//!
//! A candidate reads the Lease every `retry_period`; it takes the Lease when it is missing,
//! released (no holder) or expired — expired meaning the holder's record has not changed for
//! `leaseDurationSeconds` as measured on the candidate's own clock since it saw it change,
//! so clocks need not agree. Every write carries the resourceVersion it read, so of two
//! candidates only one wins. The leader renews every `retry_period`; when it has not renewed
//! for `renew_deadline` (or sees another holder) it stops its controllers before anyone else
//! may take over, and becomes a candidate again. On a clean shutdown it stops its controllers
//! and then releases the Lease, so a successor takes over at once.
//!
//! [`decide`] is the pure step; [`run`] does the reading and writing.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::Client;
use tokio::time::Instant;

use controller_base::error::{is_conflict, is_not_found};
use controller_base::runner::chain;

/// Which Lease, who we are, and kube-controller-manager's timings.
#[derive(Debug, Clone)]
pub struct LeaderElection {
    pub namespace: String,
    pub name: String,
    /// Unique per process (see [`unique_identity`]), or stable across restarts of a process
    /// that is known to be the only one with that identity.
    pub identity: String,
    /// How long a Lease that is not renewed keeps others waiting (upstream default 15 s).
    pub lease_duration: Duration,
    /// How long the leader keeps acting without a successful renewal (default 10 s).
    pub renew_deadline: Duration,
    /// How often candidates look and the leader renews (default 2 s).
    pub retry_period: Duration,
}

impl LeaderElection {
    /// kube-controller-manager's defaults on the Lease `namespace/name`.
    pub fn new(namespace: &str, name: &str, identity: String) -> Self {
        LeaderElection {
            namespace: namespace.to_string(),
            name: name.to_string(),
            identity,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Timings that cannot work (client-go refuses them too).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("the lease duration ({lease:?}) must be longer than the renew deadline ({renew:?})")]
    LeaseNotLongerThanRenewDeadline { lease: Duration, renew: Duration },
    #[error("the renew deadline ({renew:?}) must be longer than the retry period ({retry:?})")]
    RenewDeadlineNotLongerThanRetry { renew: Duration, retry: Duration },
    #[error("the leader election identity is empty")]
    EmptyIdentity,
}

impl LeaderElection {
    /// The holder must stop acting (renew deadline) before others may take over (lease
    /// duration), and must get more than one try to renew.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.identity.is_empty() {
            return Err(ConfigError::EmptyIdentity);
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::LeaseNotLongerThanRenewDeadline {
                lease: self.lease_duration,
                renew: self.renew_deadline,
            });
        }
        if self.renew_deadline <= self.retry_period {
            return Err(ConfigError::RenewDeadlineNotLongerThanRetry {
                renew: self.renew_deadline,
                retry: self.retry_period,
            });
        }
        Ok(())
    }
}

/// `<host>_<random uuid>`, as client-go builds a leader-election identity.
pub fn unique_identity(host: &str) -> String {
    format!("{host}_{}", uuid::Uuid::new_v4())
}

/// What of a Lease decides who may hold it; a change of any part is a sign of life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub holder: String,
    pub lease_duration: Duration,
    pub renew_time: Option<Timestamp>,
    pub transitions: i32,
}

impl Record {
    fn of(spec: Option<&LeaseSpec>, default_duration: Duration) -> Record {
        Record {
            holder: spec
                .and_then(|s| s.holder_identity.clone())
                .unwrap_or_default(),
            lease_duration: spec
                .and_then(|s| s.lease_duration_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(default_duration),
            renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
            transitions: spec.and_then(|s| s.lease_transitions).unwrap_or(0),
        }
    }
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// No Lease yet: create it holding it.
    Create,
    /// Free, released or expired: take it.
    Acquire,
    /// Ours: renew it.
    Renew,
    /// Another holder's, still valid.
    Wait,
}

/// The pure step: `record` is the Lease as read (None: missing), `changed_at` when this
/// process saw that record change last.
pub fn decide(
    identity: &str,
    record: Option<&Record>,
    changed_at: Instant,
    now: Instant,
) -> Decision {
    let Some(r) = record else {
        return Decision::Create;
    };
    if r.holder == identity {
        Decision::Renew
    } else if r.holder.is_empty() || now.duration_since(changed_at) >= r.lease_duration {
        Decision::Acquire
    } else {
        Decision::Wait
    }
}

/// The spec we write to hold the Lease: a new holder counts a transition and sets the
/// acquire time; a renewal moves only the renew time.
fn holding_spec(old: Option<&LeaseSpec>, cfg: &LeaderElection, now: Timestamp) -> LeaseSpec {
    let mut spec = old.cloned().unwrap_or_default();
    let ours = spec.holder_identity.as_deref() == Some(cfg.identity.as_str());
    if !ours {
        spec.lease_transitions = Some(match old {
            None => 0,
            Some(_) => spec.lease_transitions.unwrap_or(0).saturating_add(1),
        });
        spec.acquire_time = Some(MicroTime(now));
        spec.holder_identity = Some(cfg.identity.clone());
    }
    spec.lease_duration_seconds = Some(i32::try_from(cfg.lease_duration.as_secs()).unwrap_or(15));
    spec.renew_time = Some(MicroTime(now));
    spec
}

/// What a released Lease looks like (client-go: no holder, 1 s duration).
fn released_spec(old: Option<&LeaseSpec>, now: Timestamp) -> LeaseSpec {
    let mut spec = old.cloned().unwrap_or_default();
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(now));
    spec.acquire_time = Some(MicroTime(now));
    spec
}

/// The record last read and when it last changed (the candidate's expiry clock).
#[derive(Default)]
struct Observer(Option<(Record, Instant)>);

impl Observer {
    /// Notes the record read at `now`; returns when it last changed.
    fn see(&mut self, record: Option<&Record>, now: Instant) -> Instant {
        match record {
            None => self.0 = None,
            Some(r) => {
                if self.0.as_ref().is_none_or(|(seen, _)| seen != r) {
                    self.0 = Some((r.clone(), now));
                }
            }
        }
        self.0.as_ref().map_or(now, |(_, at)| *at)
    }

    fn holder(&self) -> Option<&str> {
        self.0.as_ref().map(|(r, _)| r.holder.as_str())
    }
}

struct Elector {
    api: Api<Lease>,
    cfg: LeaderElection,
    observer: Observer,
}

/// Why one attempt to hold the Lease did not succeed.
enum Attempt {
    Held,
    NotHeld,
    Failed(kube::Error),
}

impl Elector {
    fn record(&self, lease: Option<&Lease>) -> Option<Record> {
        lease.map(|l| Record::of(l.spec.as_ref(), self.cfg.lease_duration))
    }

    /// One read and, when the Lease is ours to take or keep, one write.
    async fn try_hold(&mut self) -> Attempt {
        let lease = match self.api.get_opt(&self.cfg.name).await {
            Ok(l) => l,
            Err(e) => return Attempt::Failed(e),
        };
        let now = Instant::now();
        let record = self.record(lease.as_ref());
        let changed_at = self.observer.see(record.as_ref(), now);
        let pp = PostParams::default();
        let result = match decide(&self.cfg.identity, record.as_ref(), changed_at, now) {
            Decision::Wait => return Attempt::NotHeld,
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(holding_spec(None, &self.cfg, Timestamp::now())),
                };
                self.api.create(&pp, &lease).await
            }
            Decision::Acquire | Decision::Renew => {
                let Some(mut lease) = lease else {
                    return Attempt::NotHeld;
                };
                // The resourceVersion we read stays on the object: of two writers, one wins.
                lease.spec = Some(holding_spec(
                    lease.spec.as_ref(),
                    &self.cfg,
                    Timestamp::now(),
                ));
                self.api.replace(&self.cfg.name, &pp, &lease).await
            }
        };
        match result {
            Ok(written) => {
                let record = self.record(Some(&written));
                self.observer.see(record.as_ref(), Instant::now());
                Attempt::Held
            }
            Err(e) if is_conflict(&e) => Attempt::NotHeld,
            Err(e) => Attempt::Failed(e),
        }
    }

    /// Waits until we hold the Lease.
    async fn acquire(&mut self) {
        let mut waiting_logged = false;
        loop {
            match self.try_hold().await {
                Attempt::Held => return,
                Attempt::NotHeld => {
                    if !waiting_logged {
                        tracing::info!(lease = %self.cfg.name, holder = ?self.observer.holder(),
                            "waiting for the leader lease");
                        waiting_logged = true;
                    }
                }
                Attempt::Failed(e) => {
                    tracing::warn!(lease = %self.cfg.name, error = %chain(&e), "reading the leader lease failed");
                }
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Renews until a renewal has failed for `renew_deadline` or another holder shows up;
    /// returns then (leadership lost).
    async fn keep(&mut self) {
        let mut renewed = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            let left = self.cfg.renew_deadline.saturating_sub(renewed.elapsed());
            match tokio::time::timeout(left, self.try_hold()).await {
                Ok(Attempt::Held) => renewed = Instant::now(),
                Ok(Attempt::NotHeld) => {
                    if self.observer.holder() != Some(self.cfg.identity.as_str()) {
                        tracing::warn!(lease = %self.cfg.name, "another process holds the leader lease");
                        return;
                    }
                }
                Ok(Attempt::Failed(e)) => {
                    tracing::warn!(lease = %self.cfg.name, error = %chain(&e), "renewing the leader lease failed");
                }
                Err(_) => {}
            }
            if renewed.elapsed() >= self.cfg.renew_deadline {
                tracing::warn!(lease = %self.cfg.name, "could not renew the leader lease in time");
                return;
            }
        }
    }

    /// Gives the Lease up if it is still ours.
    async fn release(&mut self) {
        let lease = match self.api.get_opt(&self.cfg.name).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(lease = %self.cfg.name, error = %chain(&e), "releasing the leader lease failed");
                return;
            }
        };
        let mine = lease
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            == Some(self.cfg.identity.as_str());
        if !mine {
            return;
        }
        let mut lease = lease;
        lease.spec = Some(released_spec(lease.spec.as_ref(), Timestamp::now()));
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.cfg.name, "released the leader lease"),
            Err(e) if is_conflict(&e) || is_not_found(&e) => {}
            Err(e) => {
                tracing::warn!(lease = %self.cfg.name, error = %chain(&e), "releasing the leader lease failed")
            }
        }
    }
}

/// Runs `lead()` while this process holds the Lease, until `shutdown` completes; on
/// shutdown the work is stopped first, then the Lease released.
pub async fn run<F, Fut>(
    client: Client,
    cfg: LeaderElection,
    shutdown: impl Future<Output = ()>,
    mut lead: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut elector = Elector {
        api: Api::namespaced(client, &cfg.namespace),
        cfg,
        observer: Observer::default(),
    };
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = elector.acquire() => {}
            _ = &mut shutdown => return,
        }
        tracing::info!(lease = %elector.cfg.name, identity = %elector.cfg.identity, "acquired the leader lease");
        let work = lead();
        tokio::pin!(work);
        tokio::select! {
            _ = &mut work => {
                elector.release().await;
                return;
            }
            _ = elector.keep() => {
                tracing::warn!(lease = %elector.cfg.name, "lost the leader lease; controllers stopped");
            }
            // Leaving the loop drops `work` (the controllers stop) before the release below.
            _ = &mut shutdown => break,
        }
    }
    elector.release().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str) -> Record {
        Record {
            holder: holder.to_string(),
            lease_duration: Duration::from_secs(15),
            renew_time: None,
            transitions: 0,
        }
    }

    #[test]
    fn timings_must_leave_room_to_hand_over() {
        let ok = LeaderElection::new("kube-system", "l", "me".into());
        assert!(ok.validate().is_ok());
        let bad = LeaderElection {
            renew_deadline: Duration::from_secs(15),
            ..ok.clone()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::LeaseNotLongerThanRenewDeadline { .. })
        ));
        let bad = LeaderElection {
            retry_period: Duration::from_secs(10),
            ..ok.clone()
        };
        assert!(matches!(
            bad.validate(),
            Err(ConfigError::RenewDeadlineNotLongerThanRetry { .. })
        ));
        let bad = LeaderElection::new("kube-system", "l", String::new());
        assert!(matches!(bad.validate(), Err(ConfigError::EmptyIdentity)));
    }

    #[test]
    fn a_missing_free_or_expired_lease_is_taken() {
        let t0 = Instant::now();
        assert_eq!(decide("me", None, t0, t0), Decision::Create);
        assert_eq!(decide("me", Some(&record("")), t0, t0), Decision::Acquire);
        let other = record("other");
        assert_eq!(
            decide("me", Some(&other), t0, t0 + Duration::from_secs(14)),
            Decision::Wait
        );
        assert_eq!(
            decide("me", Some(&other), t0, t0 + Duration::from_secs(15)),
            Decision::Acquire
        );
        assert_eq!(decide("me", Some(&record("me")), t0, t0), Decision::Renew);
    }

    #[test]
    fn taking_over_counts_a_transition_and_renewing_does_not() {
        let cfg = LeaderElection::new("kube-system", "l", "me".into());
        let t1 = Timestamp::from_second(1_000).expect("t1");
        let t2 = Timestamp::from_second(1_002).expect("t2");
        let created = holding_spec(None, &cfg, t1);
        assert_eq!(created.holder_identity.as_deref(), Some("me"));
        assert_eq!(created.lease_transitions, Some(0));
        assert_eq!(created.lease_duration_seconds, Some(15));
        let renewed = holding_spec(Some(&created), &cfg, t2);
        assert_eq!(renewed.lease_transitions, Some(0));
        assert_eq!(renewed.acquire_time, Some(MicroTime(t1)));
        assert_eq!(renewed.renew_time, Some(MicroTime(t2)));
        let theirs = LeaseSpec {
            holder_identity: Some("other".into()),
            lease_transitions: Some(3),
            ..Default::default()
        };
        let taken = holding_spec(Some(&theirs), &cfg, t2);
        assert_eq!(taken.holder_identity.as_deref(), Some("me"));
        assert_eq!(taken.lease_transitions, Some(4));
        assert_eq!(taken.acquire_time, Some(MicroTime(t2)));
    }

    #[test]
    fn a_released_lease_has_no_holder_and_is_free_at_once() {
        let t = Timestamp::from_second(1_000).expect("t");
        let held = LeaseSpec {
            holder_identity: Some("me".into()),
            ..Default::default()
        };
        let released = released_spec(Some(&held), t);
        assert_eq!(released.holder_identity, None);
        let r = Record::of(Some(&released), Duration::from_secs(15));
        let now = Instant::now();
        assert_eq!(decide("next", Some(&r), now, now), Decision::Acquire);
    }

    #[test]
    fn a_record_that_changes_restarts_the_expiry_clock() {
        let t0 = Instant::now();
        let mut seen = Observer::default();
        let mut r = record("other");
        assert_eq!(seen.see(Some(&r), t0), t0);
        assert_eq!(seen.see(Some(&r), t0 + Duration::from_secs(10)), t0);
        r.renew_time = Some(Timestamp::from_second(2).expect("t"));
        let t12 = t0 + Duration::from_secs(12);
        assert_eq!(seen.see(Some(&r), t12), t12);
        assert_eq!(seen.holder(), Some("other"));
        assert_eq!(seen.see(None, t12), t12);
        assert_eq!(seen.holder(), None);
    }
}
