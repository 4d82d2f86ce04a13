//! One download per image however many pods want it at once, and the KubeletConfiguration's
//! limit on pulls at a time: `serializeImagePulls` (the default) runs one pull after another
//! in the order asked, `maxParallelImagePulls` bounds parallel ones. Every pod that asks
//! while the same image (with the same credentials) is being pulled waits for that pull
//! instead of starting its own. A pull runs in its own task, so a pod deleted while it waits
//! neither cancels the others' pull nor leaves the queue stuck.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt as _, Shared};
use images::Credentials;
use tokio::sync::Semaphore;

/// The runtime's pull (CRI `PullImage` with an optional `AuthConfig`).
pub type PullFn<T, E> =
    Arc<dyn Fn(String, Option<Credentials>) -> BoxFuture<'static, Result<T, E>> + Send + Sync>;

/// The KubeletConfiguration's pull settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullerConfig {
    /// `serializeImagePulls` (kubelet default `true`).
    pub serialize: bool,
    /// `maxParallelImagePulls` when pulls are not serialized; `None` is no limit.
    pub max_parallel: Option<u32>,
}

impl Default for PullerConfig {
    fn default() -> Self {
        Self {
            serialize: true,
            max_parallel: None,
        }
    }
}

/// Why a pull gave no image.
#[derive(Debug, thiserror::Error)]
pub enum PullFailure<E: std::error::Error + 'static> {
    /// The runtime's error for the last credentials tried.
    #[error(transparent)]
    Pull(Arc<E>),
    #[error("the image pull was interrupted (the node agent is stopping)")]
    Interrupted,
}

impl<E: std::error::Error + 'static> Clone for PullFailure<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Pull(e) => Self::Pull(e.clone()),
            Self::Interrupted => Self::Interrupted,
        }
    }
}

/// A finished pull as one pod saw it.
#[derive(Debug, Clone)]
pub struct PullDone<T> {
    pub image: T,
    /// How long the download itself took.
    pub pull_time: Duration,
    /// From this pod's request to the image: the pull plus waiting for its turn.
    pub total_time: Duration,
}

type Outcome<T, E> = Result<(T, Duration), PullFailure<E>>;
type Key = (String, Vec<Credentials>);
/// Pulls under way, by image and credentials.
type Inflight<T, E> = Arc<Mutex<HashMap<Key, Shared<BoxFuture<'static, Outcome<T, E>>>>>>;

/// Runs pulls; cheap to share between pod workers.
pub struct ImagePuller<T, E: std::error::Error + 'static> {
    pull: PullFn<T, E>,
    slots: Option<Arc<Semaphore>>,
    inflight: Inflight<T, E>,
}

impl<T, E> ImagePuller<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    pub fn new(config: PullerConfig, pull: PullFn<T, E>) -> Self {
        let slots = match (config.serialize, config.max_parallel) {
            (true, _) => Some(1),
            (false, Some(n)) => Some(n.max(1) as usize),
            (false, None) => None,
        };
        Self {
            pull,
            slots: slots.map(|n| Arc::new(Semaphore::new(n))),
            inflight: Arc::default(),
        }
    }

    /// Pulls `image` trying each of `candidates` in turn until one succeeds (anonymously
    /// when there are none), as the kubelet tries the keyring's matches; joins a pull of the
    /// same image and credentials already under way.
    pub async fn pull(
        &self,
        image: &str,
        candidates: Vec<Credentials>,
    ) -> Result<PullDone<T>, PullFailure<E>> {
        let asked = Instant::now();
        let shared = self.shared_pull(image, candidates);
        let (image, pull_time) = shared.await?;
        Ok(PullDone {
            image,
            pull_time,
            total_time: asked.elapsed(),
        })
    }

    /// The pull under way for this key, or a new one.
    fn shared_pull(
        &self,
        image: &str,
        candidates: Vec<Credentials>,
    ) -> Shared<BoxFuture<'static, Outcome<T, E>>> {
        let key: Key = (image.to_owned(), candidates);
        let mut inflight = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(running) = inflight.get(&key) {
            return running.clone();
        }
        let task = tokio::spawn(run(
            self.pull.clone(),
            self.slots.clone(),
            key.clone(),
            self.inflight.clone(),
        ));
        let shared = async move { task.await.unwrap_or(Err(PullFailure::Interrupted)) }
            .boxed()
            .shared();
        inflight.insert(key, shared.clone());
        shared
    }

    /// Pulls under way (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.inflight.lock().map(|m| m.len()).unwrap_or_default()
    }
}

/// One pull: waits for a slot, tries the credentials, then forgets the key so that a later
/// request pulls afresh.
async fn run<T, E>(
    pull: PullFn<T, E>,
    slots: Option<Arc<Semaphore>>,
    key: Key,
    inflight: Inflight<T, E>,
) -> Outcome<T, E>
where
    T: Clone + Send + Sync + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let permit = match &slots {
        Some(s) => Some(s.clone().acquire_owned().await),
        None => None,
    };
    let started = Instant::now();
    let (image, candidates) = &key;
    let attempts: Vec<Option<Credentials>> = if candidates.is_empty() {
        vec![None]
    } else {
        candidates.iter().cloned().map(Some).collect()
    };
    let mut outcome = Err(PullFailure::Interrupted);
    for auth in attempts {
        match pull(image.clone(), auth).await {
            Ok(t) => {
                outcome = Ok((t, started.elapsed()));
                break;
            }
            Err(e) => outcome = Err(PullFailure::Pull(Arc::new(e))),
        }
    }
    drop(permit);
    inflight
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(&key);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, thiserror::Error)]
    #[error("denied for {0:?}")]
    struct Denied(Option<String>);

    /// A registry that lets `gate` decide when each pull finishes, counting pulls and the
    /// most running at once.
    struct Fake {
        started: AtomicUsize,
        running: AtomicUsize,
        most: AtomicUsize,
        gate: tokio::sync::Semaphore,
        users: Mutex<Vec<Option<String>>>,
    }

    fn puller(config: PullerConfig) -> (Arc<Fake>, ImagePuller<String, Denied>) {
        let fake = Arc::new(Fake {
            started: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
            most: AtomicUsize::new(0),
            gate: tokio::sync::Semaphore::new(0),
            users: Mutex::new(Vec::new()),
        });
        let f = fake.clone();
        let pull: PullFn<String, Denied> = Arc::new(move |image, auth| {
            let f = f.clone();
            async move {
                let user = auth.map(|c| c.username);
                if let Ok(mut u) = f.users.lock() {
                    u.push(user.clone());
                }
                f.started.fetch_add(1, Ordering::SeqCst);
                let now = f.running.fetch_add(1, Ordering::SeqCst) + 1;
                f.most.fetch_max(now, Ordering::SeqCst);
                if let Ok(p) = f.gate.acquire().await {
                    p.forget();
                }
                f.running.fetch_sub(1, Ordering::SeqCst);
                match user.as_deref() {
                    Some("bad") => Err(Denied(user)),
                    _ => Ok(format!("id-of-{image}")),
                }
            }
            .boxed()
        });
        (fake, ImagePuller::new(config, pull))
    }

    async fn until(what: &str, f: impl Fn() -> bool) {
        for _ in 0..2000 {
            if f() {
                return;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn creds(user: &str) -> Credentials {
        Credentials {
            username: user.to_owned(),
            password: "p".to_owned(),
        }
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_pull() {
        let (fake, puller) = puller(PullerConfig::default());
        // join_all polls every request (each joins or starts the pull) before the gate opens.
        let requests =
            futures::future::join_all((0..5).map(|_| puller.pull("reg/app:1", Vec::new())));
        let open = async {
            until("the pull to start", || {
                fake.started.load(Ordering::SeqCst) == 1
            })
            .await;
            fake.gate.add_permits(1);
        };
        let (results, ()) = tokio::join!(requests, open);
        for done in results {
            let done = done.expect("pull");
            assert_eq!(done.image, "id-of-reg/app:1");
            assert!(done.total_time >= done.pull_time);
        }
        assert_eq!(fake.started.load(Ordering::SeqCst), 1);
        assert_eq!(puller.in_flight(), 0);
        // A later request pulls again (imagePullPolicy Always re-resolves).
        fake.gate.add_permits(1);
        puller.pull("reg/app:1", Vec::new()).await.expect("pull");
        assert_eq!(fake.started.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn serialized_pulls_run_one_at_a_time_and_parallel_ones_up_to_the_limit() {
        for (config, most) in [
            (PullerConfig::default(), 1),
            (
                PullerConfig {
                    serialize: false,
                    max_parallel: Some(2),
                },
                2,
            ),
            (
                PullerConfig {
                    serialize: false,
                    max_parallel: None,
                },
                3,
            ),
        ] {
            let (fake, puller) = puller(config);
            let puller = Arc::new(puller);
            let waiters: Vec<_> = ["a", "b", "c"]
                .into_iter()
                .map(|image| {
                    let p = puller.clone();
                    tokio::spawn(async move { p.pull(image, Vec::new()).await })
                })
                .collect();
            until("the allowed pulls to start", || {
                fake.running.load(Ordering::SeqCst) == most
            })
            .await;
            fake.gate.add_permits(3);
            for w in waiters {
                w.await.expect("join").expect("pull");
            }
            assert_eq!(fake.most.load(Ordering::SeqCst), most, "{config:?}");
            assert_eq!(fake.started.load(Ordering::SeqCst), 3);
        }
    }

    #[tokio::test]
    async fn credentials_are_tried_in_turn() {
        let (fake, puller) = puller(PullerConfig::default());
        fake.gate.add_permits(10);
        let done = puller
            .pull("reg/app:1", vec![creds("bad"), creds("good")])
            .await
            .expect("pull");
        assert_eq!(done.image, "id-of-reg/app:1");
        let failed = puller.pull("reg/app:2", vec![creds("bad")]).await;
        assert!(
            matches!(&failed, Err(PullFailure::Pull(e)) if e.to_string() == "denied for Some(\"bad\")"),
            "{failed:?}"
        );
        puller.pull("reg/app:3", Vec::new()).await.expect("pull");
        let users = fake.users.lock().expect("lock").clone();
        assert_eq!(
            users,
            [
                Some("bad".to_owned()),
                Some("good".to_owned()),
                Some("bad".to_owned()),
                None
            ]
        );
    }

    #[tokio::test]
    async fn different_credentials_do_not_share_a_pull() {
        let (fake, puller) = puller(PullerConfig {
            serialize: false,
            max_parallel: None,
        });
        let puller = Arc::new(puller);
        let (p1, p2) = (puller.clone(), puller.clone());
        let a = tokio::spawn(async move { p1.pull("reg/app:1", vec![creds("x")]).await });
        let b = tokio::spawn(async move { p2.pull("reg/app:1", Vec::new()).await });
        until("both pulls to start", || {
            fake.started.load(Ordering::SeqCst) == 2
        })
        .await;
        fake.gate.add_permits(2);
        a.await.expect("join").expect("pull");
        b.await.expect("join").expect("pull");
    }
}
