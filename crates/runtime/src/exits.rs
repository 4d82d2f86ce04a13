//! Container exits as they happen (CRI `GetContainerEvents`, what kubelet's evented PLEG
//! listens to), so the agent re-reads a pod when one of its containers stops instead of
//! polling every pod every second.
//!
//! The shim records an exit by renaming `exit.json` into the container's directory; an
//! inotify watch on each live container's directory sees that rename. Watches are added when
//! a container is created and, when the first subscriber comes, for every container already
//! on disk that has not exited (the runtime of a restarted agent). Events are a hint, never
//! the truth: the records on disk stay what status is read from, and a subscriber that lags
//! behind (or a runtime without watches) still re-reads now and then.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use inotify::{EventMask, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::broadcast;

use crate::ContainerEvent;

/// The file whose arrival means the container has exited.
const EXIT_FILE: &str = "exit.json";
/// Events held for a subscriber that is behind; past this it is told it lagged.
const BACKLOG: usize = 1024;

type ByWatch = Arc<Mutex<HashMap<WatchDescriptor, ContainerEvent>>>;

/// The inotify instance, its watches and the channel exits are sent on.
pub struct ExitWatcher {
    watches: Mutex<Watches>,
    by_watch: ByWatch,
    tx: broadcast::Sender<ContainerEvent>,
    /// The instance until the first subscriber turns it into a stream read by `task`.
    pending: Mutex<Option<Inotify>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for ExitWatcher {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl ExitWatcher {
    pub fn new() -> io::Result<Self> {
        let inotify = Inotify::init()?;
        Ok(Self {
            watches: Mutex::new(inotify.watches()),
            by_watch: Arc::default(),
            tx: broadcast::channel(BACKLOG).0,
            pending: Mutex::new(Some(inotify)),
            task: Mutex::new(None),
        })
    }

    /// Watches `dir`, the directory of the container `event` names, for its exit.
    pub fn watch(&self, dir: &Path, event: ContainerEvent) -> io::Result<()> {
        let wd = lock(&self.watches).add(dir, WatchMask::MOVED_TO | WatchMask::ONLYDIR)?;
        lock(&self.by_watch).insert(wd, event);
        Ok(())
    }

    /// A receiver of every exit from now on; the first call starts reading the watches
    /// (it must run inside a tokio runtime). `existing` lists the containers already on
    /// disk, each with its directory, to be watched from then on.
    pub fn subscribe(
        &self,
        existing: impl FnOnce() -> Vec<(std::path::PathBuf, ContainerEvent)>,
    ) -> broadcast::Receiver<ContainerEvent> {
        let rx = self.tx.subscribe();
        let Some(inotify) = lock(&self.pending).take() else {
            return rx;
        };
        for (dir, event) in existing() {
            if dir.join(EXIT_FILE).exists() {
                continue;
            }
            if let Err(err) = self.watch(&dir, event) {
                tracing::warn!(dir = %dir.display(), error = %err, "watching a container for its exit failed");
            }
        }
        match inotify.into_event_stream([0u8; 4096]) {
            Ok(stream) => {
                let task = tokio::spawn(forward(stream, self.by_watch.clone(), self.tx.clone()));
                *lock(&self.task) = Some(task);
            }
            Err(err) => {
                tracing::warn!(error = %err, "reading container exits failed; pods are re-read on a timer only");
            }
        }
        rx
    }
}

/// Sends an event for each exit file that arrives; a directory that goes (the container was
/// removed) drops its watch.
async fn forward(
    mut stream: inotify::EventStream<[u8; 4096]>,
    by_watch: ByWatch,
    tx: broadcast::Sender<ContainerEvent>,
) {
    while let Some(next) = stream.next().await {
        let event = match next {
            Ok(event) => event,
            Err(err) => {
                tracing::warn!(error = %err, "reading container exits failed; pods are re-read on a timer only");
                return;
            }
        };
        if event.mask.contains(EventMask::IGNORED) {
            lock(&by_watch).remove(&event.wd);
            continue;
        }
        if event.name.as_deref() != Some(OsStr::new(EXIT_FILE)) {
            continue;
        }
        let known = lock(&by_watch).get(&event.wd).cloned();
        if let Some(exited) = known {
            // Nobody listening is fine: the exit is on disk for the next read.
            let _ = tx.send(exited);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn event(id: &str) -> ContainerEvent {
        ContainerEvent {
            container_id: id.into(),
            sandbox_id: "s".into(),
            pod_uid: "u".into(),
        }
    }

    async fn next(rx: &mut broadcast::Receiver<ContainerEvent>) -> ContainerEvent {
        tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("an event in time")
            .expect("an event")
    }

    #[tokio::test]
    async fn an_exit_file_renamed_into_a_watched_directory_is_an_event() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (old, new, done) = (
            dir.path().join("old"),
            dir.path().join("new"),
            dir.path().join("done"),
        );
        for d in [&old, &new, &done] {
            std::fs::create_dir(d).expect("mkdir");
        }
        // An exited container on disk is not watched; a running one is.
        std::fs::write(done.join(EXIT_FILE), "{}").expect("write");
        let watcher = ExitWatcher::new().expect("inotify");
        let existing = vec![(old.clone(), event("old")), (done.clone(), event("done"))];
        let mut rx = watcher.subscribe(|| existing);
        watcher.watch(&new, event("new")).expect("watch");
        // Other files are not exits.
        std::fs::write(new.join("state.json"), "{}").expect("write");
        shim::protocol::write_json_atomic(&new.join(EXIT_FILE), &1).expect("exit");
        assert_eq!(next(&mut rx).await.container_id, "new");
        shim::protocol::write_json_atomic(&old.join(EXIT_FILE), &1).expect("exit");
        assert_eq!(next(&mut rx).await.container_id, "old");
        // A removed container's watch goes with its directory.
        std::fs::remove_dir_all(&new).expect("rm");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(lock(&watcher.by_watch).len(), 1);
        assert!(rx.try_recv().is_err());
    }
}
