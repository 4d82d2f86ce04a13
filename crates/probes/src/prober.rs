//! kubelet's prober manager for one pod: one cheap tokio task per probe (an interval on
//! tokio's timer wheel, no thread per probe), liveness/readiness/startup semantics from the
//! pure `state::ProbeState`, results shared with the pod worker (which kills on
//! liveness/startup failure and computes readiness), and `Unhealthy` events.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::RuntimeService;

use crate::execute::{execute, Outcome, PodNet};
use crate::spec::{ProbeKind, ProbeSpec};
use crate::state::ProbeState;
use podapi::{Clock, EventRecorder, EventType};

/// What the probers say about running containers, by runtime container id. A container
/// without a startup (readiness) probe is started (ready) as soon as it runs, as kubelet's
/// prober manager reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProbeView {
    /// Running containers whose startup probe has not succeeded yet.
    pub not_started: HashSet<String>,
    /// Running containers whose readiness probe does not report success.
    pub not_ready: HashSet<String>,
    /// The pod is being deleted: kubelet reports every container not ready.
    pub all_unready: bool,
}

impl ProbeView {
    pub fn started(&self, id: &str) -> bool {
        !self.not_started.contains(id)
    }
    pub fn ready(&self, id: &str) -> bool {
        !self.all_unready && self.started(id) && !self.not_ready.contains(id)
    }
}

/// The reported results of one container's probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Reported {
    started: Option<bool>,
    ready: Option<bool>,
    live: Option<bool>,
}

type Results = Arc<Mutex<HashMap<String, Reported>>>;

/// The results the probe tasks report, and who is woken when one changes.
#[derive(Clone, Default)]
struct Reports {
    results: Results,
    /// The pod's worker, so it acts on a changed result at once.
    poke: Option<Arc<Notify>>,
}

impl Reports {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reported>> {
        self.results.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `kind`'s result for container `id`; wakes the worker when it changed.
    fn report(&self, id: &str, kind: ProbeKind, ok: bool) {
        let changed = {
            let mut all = self.lock();
            let r = all.entry(id.to_string()).or_default();
            let slot = match kind {
                ProbeKind::Liveness => &mut r.live,
                ProbeKind::Readiness => &mut r.ready,
                ProbeKind::Startup => &mut r.started,
            };
            slot.replace(ok) != Some(ok)
        };
        if let (true, Some(poke)) = (changed, &self.poke) {
            poke.notify_one();
        }
    }

    fn started(&self, id: &str) -> Option<bool> {
        self.lock().get(id).and_then(|r| r.started)
    }
}

/// A running container to probe.
#[derive(Debug, Clone)]
pub struct Target {
    pub container: Container,
    pub id: String,
    pub started_at: Timestamp,
}

/// What probe tasks need from the agent.
#[derive(Clone)]
pub struct ProbeDeps {
    pub runtime: Arc<dyn RuntimeService>,
    pub events: Arc<EventRecorder>,
    pub clock: Arc<dyn Clock>,
    /// kubelet's `prober_probe_total`, labelled by [`PROBE_RESULT_LABELS`].
    pub results: Option<Arc<metrics::Counter>>,
}

/// The labels of `prober_probe_total`, as kubelet has them.
pub const PROBE_RESULT_LABELS: &[&str] = &[
    "probe_type",
    "result",
    "container",
    "pod",
    "namespace",
    "pod_uid",
];

/// Why the worker must kill a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillRequest {
    pub kind: ProbeKind,
}

/// The probes of one pod: tasks keyed by container id and kind.
#[derive(Default)]
pub struct PodProber {
    reports: Reports,
    tasks: HashMap<(String, ProbeKind), tokio::task::JoinHandle<()>>,
    /// By container id: what the startup probe signals when it succeeds, so the readiness
    /// probe runs at once rather than at its next period (kubelet's manual trigger).
    started: HashMap<String, Arc<tokio::sync::Notify>>,
    /// The result counter and the pod's uid its series carry, to drop them with the pod.
    counted: Option<(Arc<metrics::Counter>, String)>,
}

impl Drop for PodProber {
    fn drop(&mut self) {
        self.stop();
        if let Some((counter, uid)) = self.counted.take() {
            counter.remove_where("pod_uid", &uid);
        }
    }
}

impl PodProber {
    /// A prober that wakes `poke` whenever a container's reported result changes.
    pub fn new(poke: Arc<Notify>) -> Self {
        let mut prober = Self::default();
        prober.reports.poke = Some(poke);
        prober
    }

    /// Starts probes of newly running containers and stops those of containers that are
    /// not running any more.
    pub fn reconcile(&mut self, deps: &ProbeDeps, pod: &Pod, running: &[Target], net: &PodNet) {
        let live: HashSet<&str> = running.iter().map(|t| t.id.as_str()).collect();
        self.tasks.retain(|(id, _), task| {
            let keep = live.contains(id.as_str()) && !task.is_finished();
            if !live.contains(id.as_str()) {
                task.abort();
            }
            keep
        });
        self.reports
            .lock()
            .retain(|id, _| live.contains(id.as_str()));
        self.started.retain(|id, _| live.contains(id.as_str()));
        if let Some(counter) = &deps.results {
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            self.counted = Some((counter.clone(), uid));
        }
        let pod = Arc::new(pod.clone());
        for t in running {
            for kind in ProbeKind::ALL {
                let Some(p) = kind.of(&t.container) else {
                    continue;
                };
                let key = (t.id.clone(), kind);
                if self.tasks.contains_key(&key) {
                    continue;
                }
                let spec = match ProbeSpec::from_api(p, &t.container) {
                    Ok(s) => s,
                    Err(err) => {
                        tracing::warn!(container = %t.container.name, error = %err, "probe not runnable");
                        continue;
                    }
                };
                let started = self.started.entry(t.id.clone()).or_default().clone();
                let task = tokio::spawn(probe_loop(
                    deps.clone(),
                    self.reports.clone(),
                    pod.clone(),
                    Probe {
                        target: t.clone(),
                        kind,
                        spec,
                        started,
                    },
                    net.clone(),
                ));
                self.tasks.insert(key, task);
            }
        }
    }

    /// Stops every probe (the pod is terminating or finished).
    pub fn stop(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
        }
    }

    /// Readiness/startup for the status and kill requests for the worker, for the given
    /// running containers.
    pub fn view(&self, running: &[Target]) -> (ProbeView, HashMap<String, KillRequest>) {
        let results = self.reports.lock();
        let mut view = ProbeView::default();
        let mut kills = HashMap::new();
        for t in running {
            let r = results.get(&t.id).copied().unwrap_or_default();
            if t.container.startup_probe.is_some() && r.started != Some(true) {
                view.not_started.insert(t.id.clone());
            }
            if t.container.readiness_probe.is_some() && r.ready != Some(true) {
                view.not_ready.insert(t.id.clone());
            }
            if r.started == Some(false) {
                kills.insert(
                    t.id.clone(),
                    KillRequest {
                        kind: ProbeKind::Startup,
                    },
                );
            } else if r.live == Some(false) {
                kills.insert(
                    t.id.clone(),
                    KillRequest {
                        kind: ProbeKind::Liveness,
                    },
                );
            }
        }
        (view, kills)
    }

    /// Sets a reported result by hand (tests of the worker).
    #[cfg(any(test, feature = "test-util"))]
    pub fn set(&self, id: &str, kind: ProbeKind, ok: bool) {
        self.reports.report(id, kind, ok);
    }
}

/// One probe of one container.
struct Probe {
    target: Target,
    kind: ProbeKind,
    spec: ProbeSpec,
    /// Signalled when the container's startup probe succeeds.
    started: Arc<tokio::sync::Notify>,
}

/// One probe's task: waits out the initial delay, then probes every period. A readiness
/// probe also runs as soon as the startup probe succeeded, as kubelet's prober manager
/// triggers it then instead of leaving the container unready for up to a period.
async fn probe_loop(deps: ProbeDeps, reports: Reports, pod: Arc<Pod>, probe: Probe, net: PodNet) {
    let Probe {
        target,
        kind,
        spec,
        started: started_signal,
    } = probe;
    let mut state = ProbeState::new(kind, &spec, target.started_at);
    let has_startup = target.container.startup_probe.is_some();
    let delay = state.delay_left(deps.clock.now());
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let mut tick = tokio::time::interval(spec.period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let name = target.container.name.clone();
    loop {
        if kind == ProbeKind::Readiness {
            tokio::select! {
                _ = tick.tick() => {}
                () = started_signal.notified() => {}
            }
        } else {
            tick.tick().await;
        }
        let started_now = reports.started(&target.id);
        match kind {
            // A startup probe stops once it succeeded.
            ProbeKind::Startup if started_now == Some(true) => return,
            // Liveness and readiness wait for the startup probe.
            ProbeKind::Liveness | ProbeKind::Readiness
                if has_startup && started_now != Some(true) =>
            {
                continue
            }
            _ => {}
        }
        let now = deps.clock.now();
        if !state.due(now) {
            continue;
        }
        let outcome = execute(
            deps.runtime.as_ref(),
            &target.id,
            &spec.handler,
            &net,
            spec.timeout,
        )
        .await;
        if let Some(counter) = &deps.results {
            let result = match &outcome {
                Outcome::Success | Outcome::Warning(_) => "successful",
                Outcome::Failure(_) => "failed",
                Outcome::Error(_) => "unknown",
            };
            let meta = &pod.metadata;
            counter.inc(&[
                kind.label(),
                result,
                &name,
                meta.name.as_deref().unwrap_or_default(),
                meta.namespace.as_deref().unwrap_or_default(),
                meta.uid.as_deref().unwrap_or_default(),
            ]);
        }
        let ok = match &outcome {
            Outcome::Success => true,
            Outcome::Warning(w) => {
                let msg = format!("{} probe warning: {w}", kind.label());
                deps.events
                    .record(
                        &pod,
                        Some(&name),
                        EventType::Warning,
                        "ProbeWarning",
                        &msg,
                        deps.clock.now(),
                    )
                    .await;
                true
            }
            Outcome::Failure(out) => {
                let msg = format!("{} probe failed: {out}", kind.label());
                deps.events
                    .record(
                        &pod,
                        Some(&name),
                        EventType::Warning,
                        "Unhealthy",
                        &msg,
                        deps.clock.now(),
                    )
                    .await;
                false
            }
            Outcome::Error(err) => {
                // kubelet throws an errored result away.
                let msg = format!("{} probe errored: {err}", kind.label());
                deps.events
                    .record(
                        &pod,
                        Some(&name),
                        EventType::Warning,
                        "Unhealthy",
                        &msg,
                        deps.clock.now(),
                    )
                    .await;
                continue;
            }
        };
        if let Some(reported) = state.observe(ok) {
            reports.report(&target.id, kind, reported);
            if kind == ProbeKind::Startup && reported {
                // A permit waits for a readiness probe that is busy right now.
                started_signal.notify_one();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn a_changed_result_wakes_the_worker_and_a_repeated_one_does_not() {
        let poke = Arc::new(Notify::new());
        let prober = PodProber::new(poke.clone());
        let woken = || async {
            tokio::time::timeout(std::time::Duration::from_millis(50), poke.notified())
                .await
                .is_ok()
        };
        prober.reports.report("c1", ProbeKind::Readiness, true);
        assert!(woken().await);
        prober.reports.report("c1", ProbeKind::Readiness, true);
        assert!(!woken().await);
        prober.reports.report("c1", ProbeKind::Liveness, true);
        assert!(woken().await);
        prober.reports.report("c1", ProbeKind::Readiness, false);
        assert!(woken().await);
        assert_eq!(prober.reports.started("c1"), None);
    }

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn view_gates_readiness_on_startup_and_requests_kills() {
        let c = container(json!({"name": "app",
            "startupProbe": {"exec": {"command": ["true"]}},
            "readinessProbe": {"exec": {"command": ["true"]}}}));
        let t = Target {
            container: c,
            id: "c1".into(),
            started_at: Timestamp::UNIX_EPOCH,
        };
        let p = PodProber::default();
        let (v, k) = p.view(std::slice::from_ref(&t));
        assert!(v.not_started.contains("c1") && v.not_ready.contains("c1"));
        assert!(k.is_empty());
        p.set("c1", ProbeKind::Startup, true);
        p.set("c1", ProbeKind::Readiness, true);
        let (v, _) = p.view(std::slice::from_ref(&t));
        assert_eq!(v, ProbeView::default());
        p.set("c1", ProbeKind::Liveness, false);
        let (_, k) = p.view(std::slice::from_ref(&t));
        assert_eq!(k["c1"].kind, ProbeKind::Liveness);
    }
}
