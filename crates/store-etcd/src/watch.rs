//! A store watch from an etcd watch: events of one key prefix from a revision on, with the
//! previous state (`prev_kv`), so a delete carries the object's last state stamped with the
//! delete's revision and an update carries what it replaced. etcd's "compacted" answer becomes
//! [`StoreError::Expired`], which the API server turns into `410 Gone`.
//!
//! The watch asks etcd for its progress every [`PROGRESS_EVERY`] and passes each answer on as
//! a bookmark: a quiet watch then knows a recent revision it is complete up to, so that when
//! its member goes away it goes on from there on another member (and its clients resume from
//! there) rather than from its last event, which compaction may have dropped long ago.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Event, EventType, WatchResponse};
use store::{EventKind, StoreError, WatchEvent, WatchStream};

use crate::members::Members;
use crate::{keys, stamped, unavailable};

/// Which resource a watch follows, to turn its keys back into object keys.
#[derive(Debug, Clone)]
pub struct Scope {
    pub group: String,
    pub resource: String,
    /// For error messages.
    pub prefix: String,
    pub from_rv: u64,
}

/// The store event of one etcd event; `None` for a key outside the layout or a delete whose
/// previous state etcd no longer has.
pub fn to_event(scope: &Scope, ev: &Event) -> Result<Option<WatchEvent>, StoreError> {
    let Some(kv) = ev.kv() else { return Ok(None) };
    let Some(key) = keys::parse(&scope.group, &scope.resource, kv.key()) else {
        return Ok(None);
    };
    let rv = rev(kv.mod_revision());
    let prev = ev.prev_kv().map(|p| stamped(&key, p)).transpose()?;
    match ev.event_type() {
        EventType::Put => Ok(Some(WatchEvent {
            kind: if kv.create_revision() == kv.mod_revision() {
                EventKind::Added
            } else {
                EventKind::Modified
            },
            object: Arc::new(stamped(&key, kv)?),
            key,
            resource_version: rv,
            prev_object: prev.map(Arc::new),
        })),
        EventType::Delete => {
            let Some(prev) = prev else {
                tracing::warn!(%key, rv, "etcd delete event without the previous state");
                return Ok(None);
            };
            let mut last = prev.clone();
            store::rules::set_resource_version(&key, &mut last, rv)?;
            Ok(Some(WatchEvent {
                kind: EventKind::Deleted,
                key,
                resource_version: rv,
                object: Arc::new(last),
                prev_object: Some(Arc::new(prev)),
            }))
        }
    }
}

/// How often a watch asks etcd how far it has got. Compaction keeps at least one compaction
/// interval of history, so a watch resumed from a revision this recent is never compacted
/// for any interval above this (tests compact every 2 s; kube-apiserver's default is 5 min).
pub const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// What one etcd watch response means for the stream.
pub enum Step {
    Events(Vec<WatchEvent>),
    /// etcd has sent every event up to this revision (an answer to a progress request).
    Progress(u64),
    /// The history before `oldest` is gone.
    Compacted {
        oldest: u64,
    },
    /// etcd ended the watch for another reason.
    Canceled {
        reason: String,
    },
}

/// The pure step from one etcd response to the stream's next items.
pub fn step(scope: &Scope, resp: &WatchResponse) -> Result<Step, StoreError> {
    if resp.compact_revision() > 0 {
        return Ok(Step::Compacted {
            oldest: rev(resp.compact_revision()),
        });
    }
    if resp.canceled() {
        return Ok(Step::Canceled {
            reason: resp.cancel_reason().to_string(),
        });
    }
    // Only progress answers come without events once the watch is created: etcd sends them
    // when every event up to the header's revision has been sent.
    if resp.events().is_empty() && !resp.created() {
        return Ok(Step::Progress(
            resp.header().map_or(0, |h| rev(h.revision())),
        ));
    }
    let mut out = Vec::with_capacity(resp.events().len());
    for ev in resp.events() {
        if let Some(e) = to_event(scope, ev)? {
            out.push(e);
        }
    }
    Ok(Step::Events(out))
}

/// The bookmark of a watch complete up to `rv`.
fn bookmark(scope: &Scope, rv: u64) -> WatchEvent {
    let mut object = serde_json::json!({"metadata": {}});
    object["metadata"]["resourceVersion"] = rv.to_string().into();
    WatchEvent {
        kind: EventKind::Bookmark,
        key: store::ObjectKey::new(&scope.group, &scope.resource, "", ""),
        resource_version: rv,
        object: Arc::new(object),
        prev_object: None,
    }
}

fn rev(r: i64) -> u64 {
    u64::try_from(r).unwrap_or(0)
}

/// The error of a canceled watch.
#[derive(Debug, thiserror::Error)]
#[error("etcd canceled the watch: {reason}")]
pub struct Canceled {
    reason: String,
}

/// How many times in a row a broken etcd watch is opened again before the store watch ends.
const MAX_REOPENS: u32 = 5;

struct State {
    scope: Scope,
    members: Arc<Members>,
    stream: etcd_client::WatchStream,
    pending: VecDeque<Arc<WatchEvent>>,
    /// The revision the watch is complete up to (its last event or progress answer): a
    /// reopened etcd watch goes on after it.
    last_rv: u64,
    progress: tokio::time::Interval,
    /// Reopens since the last answer from etcd.
    reopens: u32,
    ended: bool,
}

impl State {
    /// A new etcd watch from after the last event received, on whichever member answers.
    async fn reopen(&self) -> Result<etcd_client::WatchStream, StoreError> {
        let opts = etcd_client::WatchOptions::new()
            .with_range(keys::prefix_end(&self.scope.prefix))
            .with_prev_key()
            .with_start_revision(i64::try_from(self.last_rv.saturating_add(1)).unwrap_or(i64::MAX));
        let prefix = self.scope.prefix.clone();
        self.members
            .call("watch", &prefix, |mut c| {
                let (p, o) = (prefix.clone(), opts.clone());
                async move { c.watch(p, Some(o)).await }
            })
            .await
    }

    async fn next(&mut self) -> Option<Result<Arc<WatchEvent>, StoreError>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Some(Ok(ev));
            }
            if self.ended {
                return None;
            }
            let message = tokio::select! {
                m = self.stream.message() => m,
                _ = self.progress.tick() => {
                    // A failed request shows as a broken stream on the next message.
                    if let Err(e) = self.stream.request_progress().await {
                        tracing::debug!(prefix = %self.scope.prefix, error = %e, "etcd progress request failed");
                    }
                    continue;
                }
            };
            let resp = match message {
                Ok(Some(resp)) => {
                    self.reopens = 0;
                    resp
                }
                // The member went away (or closed the stream): go on from the last event on
                // another member, as kube-apiserver's watch cache does, so that clients see
                // no break while a quorum holds.
                broken if self.reopens < MAX_REOPENS => {
                    self.reopens += 1;
                    if let Err(e) = &broken {
                        tracing::debug!(prefix = %self.scope.prefix, error = %e, "etcd watch broke; reopening");
                    }
                    match self.reopen().await {
                        Ok(stream) => {
                            self.stream = stream;
                            continue;
                        }
                        Err(e) => {
                            self.ended = true;
                            return Some(Err(e));
                        }
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    self.ended = true;
                    return Some(Err(unavailable("watch", &self.scope.prefix, e)));
                }
            };
            match step(&self.scope, &resp) {
                Ok(Step::Events(evs)) => {
                    if let Some(last) = evs.last() {
                        self.last_rv = last.resource_version;
                    }
                    self.pending.extend(evs.into_iter().map(Arc::new));
                }
                Ok(Step::Progress(rv)) => {
                    if rv > self.last_rv {
                        self.last_rv = rv;
                        self.pending.push_back(Arc::new(bookmark(&self.scope, rv)));
                    }
                }
                Ok(Step::Compacted { oldest }) => {
                    self.ended = true;
                    return Some(Err(StoreError::Expired {
                        requested: self.last_rv,
                        oldest,
                    }));
                }
                Ok(Step::Canceled { reason }) => {
                    self.ended = true;
                    return Some(Err(StoreError::Unavailable {
                        op: "watch",
                        target: self.scope.prefix.clone(),
                        source: Box::new(Canceled { reason }),
                    }));
                }
                Err(e) => {
                    self.ended = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// Starts a store watch on an etcd watch stream. `compacted` says whether a read at the
/// watch's start revision found it compacted; then etcd cancels the watch right after creating
/// it, and that answer (which names the oldest revision left) becomes `Expired` here rather
/// than in the stream.
pub async fn start(
    scope: Scope,
    members: Arc<Members>,
    mut stream: etcd_client::WatchStream,
    compacted: bool,
) -> Result<WatchStream, StoreError> {
    let mut pending = VecDeque::new();
    loop {
        let Some(resp) = stream
            .message()
            .await
            .map_err(|e| unavailable("watch", &scope.prefix, e))?
        else {
            return Err(unavailable(
                "watch",
                &scope.prefix,
                Canceled {
                    reason: "the watch stream closed".into(),
                },
            ));
        };
        match step(&scope, &resp)? {
            Step::Events(evs) => pending.extend(evs.into_iter().map(Arc::new)),
            // Nothing asked for progress yet.
            Step::Progress(_) => {}
            Step::Compacted { oldest } => {
                return Err(StoreError::Expired {
                    requested: scope.from_rv,
                    oldest,
                })
            }
            Step::Canceled { reason } => {
                return Err(StoreError::Unavailable {
                    op: "watch",
                    target: scope.prefix.clone(),
                    source: Box::new(Canceled { reason }),
                })
            }
        }
        if !compacted {
            break;
        }
    }
    let mut progress =
        tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
    progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = State {
        last_rv: pending.back().map_or(scope.from_rv, |e| e.resource_version),
        progress,
        scope,
        members,
        stream,
        pending,
        reopens: 0,
        ended: false,
    };
    Ok(Box::pin(futures::stream::unfold(
        state,
        |mut s| async move { s.next().await.map(|ev| (ev, s)) },
    )))
}
