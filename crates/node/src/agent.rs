//! The agent's main loop: start the node API, register the Node and keep it and its Lease
//! fresh, watch the pods bound to this node, and run one worker task per pod. Sandboxes of
//! pods that no longer exist are torn down once the first pod list is in.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use tokio::sync::watch;

use crate::apiclient::KubePodApi;
use crate::events::EventRecorder;
use crate::logs::RuntimeLiveness;
use crate::machine::{HostMachine, Machine, MachineFacts};
use crate::nodestatus::{self, NodeIdentity, HEARTBEAT};
use crate::qos::parse_quantity;
use crate::server::{self, NodeApiState, PodCache};
use crate::worker::{pod_log_dir, PodWorker, SystemClock, WorkerEnv};
use crate::{AgentConfig, AgentError};

/// One worker: its task and the channel carrying the latest pod (`None`: gone from the API).
struct WorkerHandle {
    tx: watch::Sender<Option<Pod>>,
    task: tokio::task::JoinHandle<()>,
}

/// Runs one pod's worker until the pod is gone (or the agent stops).
async fn worker_loop(
    env: Arc<WorkerEnv>,
    mut rx: watch::Receiver<Option<Pod>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Some(first) = rx.borrow_and_update().clone() else {
        return;
    };
    let mut worker = PodWorker::new(&first);
    let mut last = first;
    loop {
        let current = rx.borrow_and_update().clone();
        let requeue = match current {
            Some(pod) => {
                last = pod.clone();
                worker.sync(&env, &pod).await
            }
            None => {
                worker.cleanup_gone(&env, &last).await;
                return;
            }
        };
        let wait = requeue.unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

fn uid_of(pod: &Pod) -> Option<String> {
    pod.metadata.uid.clone()
}

struct Dispatcher {
    env: Arc<WorkerEnv>,
    pods: PodCache,
    workers: HashMap<String, WorkerHandle>,
    shutdown: watch::Receiver<bool>,
}

impl Dispatcher {
    fn apply(&mut self, pod: Pod) {
        let Some(uid) = uid_of(&pod) else { return };
        self.pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uid.clone(), pod.clone());
        self.workers.retain(|_, w| !w.task.is_finished());
        if let Some(w) = self.workers.get(&uid) {
            w.tx.send_replace(Some(pod));
            return;
        }
        let (tx, rx) = watch::channel(Some(pod));
        let task = tokio::spawn(worker_loop(self.env.clone(), rx, self.shutdown.clone()));
        self.workers.insert(uid, WorkerHandle { tx, task });
    }

    fn delete(&mut self, uid: &str) {
        self.pods
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(uid);
        if let Some(w) = self.workers.get(uid) {
            w.tx.send_replace(None);
        }
    }

    /// After a (re)list: pods we knew that were not listed are gone.
    fn resync(&mut self, listed: &HashSet<String>) {
        let known: Vec<String> = self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for uid in known.iter().filter(|u| !listed.contains(*u)) {
            self.delete(uid);
        }
    }

    /// Tears down sandboxes whose pod is not bound here any more (deleted while the agent
    /// was down), with their logs.
    async fn remove_orphans(&self) {
        let sandboxes = match self.env.runtime.list_pod_sandboxes().await {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(error = %err, "listing sandboxes failed");
                return;
            }
        };
        let known: HashSet<String> = self
            .pods
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .cloned()
            .collect();
        for s in sandboxes.iter().filter(|s| !known.contains(&s.config.uid)) {
            tracing::info!(sandbox = %s.id, pod = %format!("{}/{}", s.config.namespace, s.config.name), "removing orphaned sandbox");
            let stopped = self.env.runtime.stop_pod_sandbox(&s.id).await;
            let removed = self.env.runtime.remove_pod_sandbox(&s.id).await;
            if let Err(err) = stopped.and(removed) {
                tracing::warn!(sandbox = %s.id, error = %err, "removing orphaned sandbox failed");
            }
            let dir = pod_log_dir(
                &self.env.log_root,
                &s.config.namespace,
                &s.config.name,
                &s.config.uid,
            );
            if let Err(err) = std::fs::remove_dir_all(&dir) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(dir = %dir.display(), error = %err, "removing orphaned logs failed");
                }
            }
        }
    }
}

/// Registers the Node (retrying until the API answers), then renews status and Lease every
/// `HEARTBEAT` until shutdown.
async fn heartbeat(
    client: kube::Client,
    id: NodeIdentity,
    facts: MachineFacts,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut uid = None;
    let mut status = None;
    let mut registered = false;
    loop {
        if !registered {
            match nodestatus::register(&client, &id, &facts).await {
                Ok(u) => {
                    registered = true;
                    uid = u;
                    tracing::info!(node = %id.name, "node registered");
                }
                Err(err) => tracing::warn!(error = %err, "node registration failed; retrying"),
            }
        } else {
            match nodestatus::update_status(&client, &id, &facts, status.as_ref()).await {
                Ok(s) => status = s,
                Err(err) => tracing::warn!(error = %err, "node status update failed"),
            }
        }
        if registered {
            if let Err(err) = nodestatus::renew_lease(&client, &id.name, uid.as_deref()).await {
                tracing::warn!(error = %err, "node lease renewal failed");
            }
        }
        let wait = if registered {
            HEARTBEAT
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.changed() => return,
        }
    }
}

pub(crate) async fn run(
    client: kube::Client,
    runtime: Arc<dyn runtime::RuntimeService>,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let log_root = config.state_dir.join("logs");
    std::fs::create_dir_all(&log_root).map_err(|source| AgentError::StateDir {
        path: log_root.clone(),
        source,
    })?;
    let facts = HostMachine.facts(&config.state_dir);

    let listener = tokio::net::TcpListener::bind(config.node_api_listen)
        .await
        .map_err(|source| AgentError::Bind {
            addr: config.node_api_listen,
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| AgentError::Bind {
            addr: config.node_api_listen,
            source,
        })?
        .port();
    let tls = server::tls_config(&config.node_api_tls.0, &config.node_api_tls.1)?;
    let pods: PodCache = Default::default();
    let api_state = NodeApiState {
        pods: pods.clone(),
        log_root: log_root.clone(),
        token: config.node_api_token.clone(),
        liveness: Arc::new(RuntimeLiveness(runtime.clone())),
    };
    let server_task = tokio::spawn(server::serve(
        listener,
        tls,
        server::router(api_state),
        shutdown.clone(),
    ));

    let id = NodeIdentity {
        name: config.node_name.clone(),
        ip: config.node_api_advertise_ip,
        port,
    };
    let heartbeat_task = tokio::spawn(heartbeat(
        client.clone(),
        id,
        facts.clone(),
        shutdown.clone(),
    ));

    let pod_api = Arc::new(KubePodApi::new(client.clone()));
    let env = Arc::new(WorkerEnv {
        runtime,
        api: pod_api.clone(),
        events: Arc::new(EventRecorder::new(pod_api, &config.node_name)),
        clock: Arc::new(SystemClock),
        node_name: config.node_name.clone(),
        host_ip: config.node_api_advertise_ip.to_string(),
        log_root,
        node_cpu: f64::from(facts.cpus),
        node_memory: parse_quantity(&format!("{}Ki", facts.memory_ki)).unwrap_or(0.0),
    });
    let mut dispatcher = Dispatcher {
        env,
        pods,
        workers: HashMap::new(),
        shutdown: shutdown.clone(),
    };

    let api: Api<Pod> = Api::all(client);
    let selector = format!("spec.nodeName={}", config.node_name);
    let stream = watcher(api, watcher::Config::default().fields(&selector));
    futures::pin_mut!(stream);
    let mut listing: Option<HashSet<String>> = None;
    let mut orphans_checked = false;
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.changed() => break,
        };
        let Some(event) = event else { break };
        match event {
            Ok(watcher::Event::Apply(pod)) => dispatcher.apply(pod),
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = uid_of(&pod) {
                    dispatcher.delete(&uid);
                }
            }
            Ok(watcher::Event::Init) => listing = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(set), Some(uid)) = (listing.as_mut(), uid_of(&pod)) {
                    set.insert(uid);
                }
                dispatcher.apply(pod);
            }
            Ok(watcher::Event::InitDone) => {
                if let Some(set) = listing.take() {
                    dispatcher.resync(&set);
                }
                if !orphans_checked {
                    dispatcher.remove_orphans().await;
                    orphans_checked = true;
                }
            }
            Err(err) => {
                // The watcher re-lists by itself; back off a little so a down API server
                // is not hammered.
                tracing::warn!(error = %err, "pod watch failed");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => break,
                }
            }
        }
    }
    // Pods survive the agent: workers just stop, containers keep running.
    for (_, w) in dispatcher.workers.drain() {
        w.task.abort();
    }
    heartbeat_task.abort();
    server_task.abort();
    Ok(())
}
