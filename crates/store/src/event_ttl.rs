//! Events expire, as kube-apiserver's `--event-ttl` (1 h) makes them: etcd drops an Event
//! when the lease attached at its last write runs out. The embedded store has no leases, so a
//! sweeper deletes, page by page, every Event whose last activity (the newest of its
//! timestamps: `lastTimestamp`, `series.lastObservedTime`, `eventTime`, creation) is older
//! than the TTL. A client that keeps updating an Event keeps it, as with the lease.

use std::sync::Arc;
use std::time::Duration;

use crate::{ObjectKey, PageRequest, Preconditions, Store, StoreError};
use jiff::Timestamp;
use serde_json::Value;

/// kube-apiserver's default `--event-ttl`.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// Events read per page while sweeping.
const PAGE: usize = 500;

/// When the Event was last written to, as far as its fields tell.
pub fn last_activity(event: &Value) -> Option<Timestamp> {
    [
        "/lastTimestamp",
        "/series/lastObservedTime",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .filter_map(|p| event.pointer(p).and_then(Value::as_str))
    .filter_map(|t| t.parse::<Timestamp>().ok())
    .max()
}

/// Deletes the Events older than `ttl` at `now`; returns how many went.
pub async fn sweep(store: &dyn Store, ttl: Duration, now: Timestamp) -> Result<usize, StoreError> {
    let cutoff = jiff::SignedDuration::try_from(ttl)
        .ok()
        .and_then(|d| now.checked_sub(d).ok())
        .unwrap_or(Timestamp::MIN);
    let expired: crate::ListFilter =
        Arc::new(move |ev: &Value| last_activity(ev).is_some_and(|t| t < cutoff));
    let mut start = None;
    let mut removed = 0;
    loop {
        let page = store
            .list_page(
                "",
                "events",
                None,
                PageRequest {
                    start,
                    limit: PAGE,
                    filter: Some(expired.clone()),
                },
            )
            .await?;
        for ev in &page.items {
            let meta = |f: &str| {
                ev.pointer(&format!("/metadata/{f}"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            };
            let key = ObjectKey::new("", "events", &meta("namespace"), &meta("name"));
            let pre = Preconditions {
                resource_version: crate::resource_version_of(ev),
                ..Default::default()
            };
            match store.delete(&key, &pre).await {
                Ok(_) => removed += 1,
                // Gone already, or updated since the read (so no longer expired).
                Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        match page.next_start {
            Some(next) => start = Some(next),
            None => return Ok(removed),
        }
    }
}

/// Sweeps every `ttl / 10` (at most a minute, at least a second) until `stop` turns true.
pub async fn run(
    store: Arc<dyn Store>,
    ttl: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let period = (ttl / 10).clamp(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        match sweep(store.as_ref(), ttl, Timestamp::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(removed = n, "expired events deleted"),
            Err(e) => tracing::warn!(error = %e, "sweeping expired events"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(name: &str, last: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Event",
               "metadata": {"name": name, "namespace": "default",
                            "creationTimestamp": "2026-01-01T00:00:00Z"},
               "lastTimestamp": last})
    }

    #[test]
    fn last_activity_is_the_newest_timestamp() {
        let mut e = event("a", "2026-01-01T00:10:00Z");
        e["series"] = json!({"lastObservedTime": "2026-01-01T00:20:00.000000Z", "count": 3});
        assert_eq!(
            last_activity(&e),
            Some("2026-01-01T00:20:00Z".parse().expect("ts"))
        );
        assert_eq!(last_activity(&json!({})), None);
    }

    #[tokio::test]
    async fn sweeps_only_expired_events() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = crate::RedbStore::open(&dir.path().join("s.redb"))
            .await
            .expect("open");
        for (name, last) in [
            ("old-1", "2026-01-01T00:00:00Z"),
            ("fresh", "2026-01-01T00:59:00Z"),
            ("old-2", "2026-01-01T00:29:00Z"),
        ] {
            s.create(
                &ObjectKey::new("", "events", "default", name),
                event(name, last),
            )
            .await
            .expect("create");
        }
        let now: Timestamp = "2026-01-01T01:30:00Z".parse().expect("now");
        assert_eq!(sweep(&s, DEFAULT_EVENT_TTL, now).await.expect("sweep"), 2);
        let left = s.list("", "events", None).await.expect("list");
        assert_eq!(left.items.len(), 1);
        assert_eq!(left.items[0]["metadata"]["name"], "fresh");
        assert_eq!(sweep(&s, DEFAULT_EVENT_TTL, now).await.expect("again"), 0);
    }
}
