//! Watch responses: one JSON event per line, flushed per event, with kube-apiserver's
//! resourceVersion semantics (RV ""/"0" = current state as ADDED then live; RV N = events
//! after N; too old = an ERROR event carrying 410 Expired), selector transitions turned into
//! ADDED/DELETED, Table-shaped events for `kubectl get -w`, bookmarks and timeouts.

use std::collections::VecDeque;
use std::time::Duration;

use api::resources::ResourceInfo;
use api::tables::IncludeObject;
use bytes::Bytes;
use futures::StreamExt;
use serde_json::{json, Value};
use store::{EventKind, StoreError, WatchStream};

use crate::error::ApiError;
use crate::objects::{api_version, Registry, Selectors};

/// How the events are shaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Table(IncludeObject),
}

/// A parsed watch request.
#[derive(Debug, Clone)]
pub struct WatchRequest {
    pub info: &'static ResourceInfo,
    pub namespace: Option<String>,
    pub selectors: Selectors,
    /// The `resourceVersion` parameter as sent.
    pub resource_version: Option<String>,
    pub timeout: Duration,
    pub bookmarks: bool,
    pub format: Format,
}

/// How often a watch with `allowWatchBookmarks` gets a BOOKMARK (kube-apiserver: about 1/min).
const BOOKMARK_EVERY: Duration = Duration::from_secs(60);

/// kube-apiserver's default watch length when the client gives none: 30–60 minutes.
pub fn default_timeout() -> Duration {
    Duration::from_secs(rand::random_range(1800..3600))
}

/// The longest watch served, whatever `timeoutSeconds` asks (a year): `Instant + Duration`
/// panics on overflow, and `timeoutSeconds` is any `i64` a client sends.
const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// When a watch started at `now` with `timeout` ends.
fn deadline(now: tokio::time::Instant, timeout: Duration) -> tokio::time::Instant {
    let timeout = timeout.min(MAX_TIMEOUT);
    now.checked_add(timeout).unwrap_or(now)
}

/// One line of a watch response.
#[derive(serde::Serialize)]
struct EventLine<'a> {
    #[serde(rename = "type")]
    ty: &'a str,
    object: &'a Value,
}

struct State {
    req: WatchRequest,
    watch: Option<WatchStream>,
    /// The resourceVersion of the last store event or bookmark seen (or the start RV).
    last_rv: u64,
    pending: VecDeque<Bytes>,
    first_table: bool,
    deadline: tokio::time::Instant,
    next_bookmark: tokio::time::Instant,
    done: bool,
}

impl State {
    fn encode(&mut self, ty: &str, obj: &Value) -> Bytes {
        let table = match self.req.format {
            Format::Json => None,
            Format::Table(include) => {
                let rv = obj
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                let t = api::tables::table_for(
                    self.req.info,
                    std::slice::from_ref(obj),
                    include,
                    self.first_table,
                    &rv,
                    jiff::Timestamp::now(),
                );
                self.first_table = false;
                Some(t)
            }
        };
        // Written from the history's object itself: no copy of it per watcher.
        let event = EventLine {
            ty,
            object: table.as_ref().unwrap_or(obj),
        };
        let mut line = serde_json::to_vec(&event).unwrap_or_default();
        line.push(b'\n');
        Bytes::from(line)
    }

    fn error_event(&mut self, err: ApiError) {
        let mut line = json!({"type": "ERROR", "object": err.to_status()}).to_string();
        line.push('\n');
        self.pending.push_back(Bytes::from(line));
        self.done = true;
    }

    fn on_event(&mut self, ev: &store::WatchEvent) {
        self.last_rv = ev.resource_version;
        if ev.kind == EventKind::Bookmark {
            return;
        }
        let now_match = self.req.selectors.matches(&ev.object);
        let was_match = ev
            .prev_object
            .as_ref()
            .is_some_and(|p| self.req.selectors.matches(p));
        let ty = match ev.kind {
            EventKind::Added if now_match => "ADDED",
            EventKind::Modified => match (was_match, now_match) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return,
            },
            EventKind::Deleted if was_match || now_match => "DELETED",
            _ => return,
        };
        let b = self.encode(ty, &ev.object);
        self.pending.push_back(b);
    }

    fn bookmark(&mut self) {
        if self.watch.is_none()
            || !self.req.bookmarks
            || matches!(self.req.format, Format::Table(_))
        {
            return;
        }
        let obj = json!({
            "kind": self.req.info.kind,
            "apiVersion": api_version(self.req.info),
            "metadata": {"resourceVersion": self.last_rv.to_string()},
        });
        let mut line = json!({"type": "BOOKMARK", "object": obj}).to_string();
        line.push('\n');
        self.pending.push_back(Bytes::from(line));
    }

    /// The next chunk of the response, or None at the end.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(b) = self.pending.pop_front() {
                return Some(b);
            }
            if self.done {
                return None;
            }
            let watch = self.watch.as_mut()?;
            tokio::select! {
                ev = watch.next() => match ev {
                    Some(Ok(ev)) => self.on_event(&ev),
                    Some(Err(StoreError::WatchLagged { .. })) => {
                        let rv = self.last_rv;
                        self.error_event(ApiError::Expired {
                            message: format!("too old resource version: {rv} ({rv})"),
                        });
                    }
                    // etcd compacted the history this watch was still reading.
                    Some(Err(e @ StoreError::Expired { .. })) => {
                        self.error_event(ApiError::from_store(e, self.req.info, ""))
                    }
                    Some(Err(e)) => self.error_event(ApiError::Store(e)),
                    None => return None,
                },
                // As kube-apiserver does, a last bookmark just before the end, so that the
                // client resumes from a recent resourceVersion and not from its last event,
                // which compaction may have dropped meanwhile.
                _ = tokio::time::sleep_until(self.deadline) => {
                    self.bookmark();
                    self.done = true;
                }
                _ = tokio::time::sleep_until(self.next_bookmark) => {
                    self.next_bookmark += BOOKMARK_EVERY;
                    self.bookmark();
                }
            }
        }
    }
}

/// Prepares the watch: the initial events (for RV ""/"0") and the store subscription. Errors
/// here (a bad RV) are answered as plain HTTP errors; a too-old RV becomes an ERROR event, as
/// kube-apiserver's watch cache does.
pub async fn start(
    registry: Registry,
    req: WatchRequest,
) -> Result<impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>>, ApiError> {
    let now = tokio::time::Instant::now();
    let mut st = State {
        deadline: deadline(now, req.timeout),
        next_bookmark: now + BOOKMARK_EVERY,
        req,
        watch: None,
        last_rv: 0,
        pending: VecDeque::new(),
        first_table: true,
        done: false,
    };
    let info = st.req.info;
    let ns = st.req.namespace.clone();
    let ns = if info.namespaced { ns.as_deref() } else { None };
    let from = match st.req.resource_version.as_deref() {
        None | Some("") | Some("0") => {
            let (items, rv) = registry.list(info, ns, &st.req.selectors).await?;
            for obj in &items {
                let b = st.encode("ADDED", obj);
                st.pending.push_back(b);
            }
            rv
        }
        Some(s) => s
            .parse::<u64>()
            .map_err(|_| ApiError::bad_request(format!("invalid resource version: {s:?}")))?,
    };
    st.last_rv = from;
    match registry
        .store
        .watch(info.group, info.plural, ns, from)
        .await
    {
        Ok(w) => st.watch = Some(w),
        Err(e @ StoreError::Expired { .. }) => st.error_event(ApiError::from_store(e, info, "")),
        Err(e) => return Err(ApiError::Store(e)),
    }
    Ok(futures::stream::unfold(st, |mut st| async move {
        st.next_chunk().await.map(|b| (Ok(b), st))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::sync::Arc;
    use store::{ObjectKey, Store};

    /// `timeoutSeconds=9223372036854775807` once overflowed `Instant + Duration`.
    #[test]
    fn huge_timeouts_are_capped_not_overflowed() {
        let now = tokio::time::Instant::now();
        let end = deadline(now, Duration::from_secs(i64::MAX.unsigned_abs()));
        assert_eq!(end, now + MAX_TIMEOUT);
        assert_eq!(deadline(now, Duration::MAX), now + MAX_TIMEOUT);
        assert_eq!(
            deadline(now, Duration::from_secs(5)),
            now + Duration::from_secs(5)
        );
    }

    async fn registry() -> (tempfile::TempDir, Registry, Arc<store::RedbStore>) {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(
            store::RedbStore::open(&dir.path().join("s.redb"))
                .await
                .expect("open"),
        );
        (dir, Registry::new(s.clone()), s)
    }

    fn info() -> &'static ResourceInfo {
        api::resources::lookup("", "configmaps").expect("configmaps are served")
    }

    fn cm(name: &str, app: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "d", "labels": {"app": app}}})
    }

    async fn next_json(
        s: &mut (impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Unpin),
    ) -> Value {
        let b = tokio::time::timeout(Duration::from_secs(5), s.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .expect("infallible");
        serde_json::from_slice(&b).expect("json line")
    }

    #[tokio::test]
    async fn initial_state_then_live_with_name_selector_transitions() {
        let (_d, reg, s) = registry().await;
        let k = |n: &str| ObjectKey::new("", "configmaps", "d", n);
        s.create(&k("a"), cm("a", "web")).await.expect("create");
        s.create(&k("b"), cm("b", "db")).await.expect("create");
        let req = WatchRequest {
            info: info(),
            namespace: Some("d".into()),
            selectors: Selectors {
                name: Some("a".into()),
                ..Default::default()
            },
            resource_version: Some("0".into()),
            timeout: Duration::from_secs(30),
            bookmarks: false,
            format: Format::Json,
        };
        let mut stream = Box::pin(start(reg.clone(), req).await.expect("start"));
        let ev = next_json(&mut stream).await;
        assert_eq!(ev["type"], "ADDED");
        assert_eq!(ev["object"]["metadata"]["name"], "a");
        let mut a = s.get(&k("a")).await.expect("get");
        a["data"] = json!({"x": "1"});
        s.update(&k("a"), a, None).await.expect("update");
        s.delete(&k("b"), &Default::default())
            .await
            .expect("delete b");
        s.delete(&k("a"), &Default::default())
            .await
            .expect("delete a");
        assert_eq!(next_json(&mut stream).await["type"], "MODIFIED");
        assert_eq!(next_json(&mut stream).await["type"], "DELETED");
    }

    #[tokio::test]
    async fn too_old_rv_gives_error_event_and_timeout_ends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let s = Arc::new(
            store::RedbStore::open_with_history(
                &dir.path().join("s.redb"),
                store::HistoryLimit {
                    events: 1,
                    ..store::DEFAULT_HISTORY
                },
            )
            .await
            .expect("open"),
        );
        let reg = Registry::new(s.clone());
        for n in ["a", "b", "c"] {
            s.create(&ObjectKey::new("", "configmaps", "d", n), cm(n, "x"))
                .await
                .expect("create");
        }
        let mut req = WatchRequest {
            info: info(),
            namespace: None,
            selectors: Selectors::default(),
            resource_version: Some("1".into()),
            timeout: Duration::from_millis(200),
            bookmarks: true,
            format: Format::Json,
        };
        let mut stream = Box::pin(start(reg.clone(), req.clone()).await.expect("start"));
        let ev = next_json(&mut stream).await;
        assert_eq!(ev["type"], "ERROR");
        assert_eq!(ev["object"]["code"], 410);
        assert!(stream.next().await.is_none());

        // A current RV with a short timeout: a last bookmark at the current RV, then the end.
        req.resource_version = Some("3".into());
        let mut stream = Box::pin(start(reg.clone(), req.clone()).await.expect("start"));
        let ev = next_json(&mut stream).await;
        assert_eq!(ev["type"], "BOOKMARK");
        assert_eq!(ev["object"]["metadata"]["resourceVersion"], "3");
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("ends in time");
        assert!(end.is_none());

        // Without bookmarks asked for, the stream just ends.
        req.bookmarks = false;
        let mut stream = Box::pin(start(reg, req).await.expect("start"));
        let end = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("ends in time");
        assert!(end.is_none());
    }

    #[tokio::test]
    async fn label_selector_transitions() {
        let (_d, reg, s) = registry().await;
        let k = ObjectKey::new("", "configmaps", "d", "a");
        s.create(&k, cm("a", "web")).await.expect("create");
        let req = WatchRequest {
            info: info(),
            namespace: Some("d".into()),
            selectors: Selectors {
                label: Some(api::selectors::LabelSelector::parse("app=web").expect("sel")),
                ..Default::default()
            },
            resource_version: Some(s.current_resource_version().await.expect("rv").to_string()),
            timeout: Duration::from_secs(30),
            bookmarks: false,
            format: Format::Json,
        };
        let mut stream = Box::pin(start(reg, req).await.expect("start"));
        let mut o = s.get(&k).await.expect("get");
        o["metadata"]["labels"]["app"] = json!("db");
        s.update(&k, o.clone(), None).await.expect("update");
        o["metadata"]["labels"]["app"] = json!("web");
        s.update(&k, o, None).await.expect("update");
        assert_eq!(next_json(&mut stream).await["type"], "DELETED");
        assert_eq!(next_json(&mut stream).await["type"], "ADDED");
    }
}
