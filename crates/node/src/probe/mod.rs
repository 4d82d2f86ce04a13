//! Container probes as kubelet's prober manager runs them: one cheap tokio task per probe
//! (an interval on tokio's timer wheel, no thread per probe), liveness/readiness/startup
//! semantics from the pure `state::ProbeState`, results shared with the pod worker (which
//! kills on liveness/startup failure and computes readiness), and `Unhealthy` events.
//! exec probes go through `RuntimeService::exec_sync`; httpGet, tcpSocket and grpc probes
//! are made by the agent from inside the pod's network namespace (`net::Dialer`).

pub mod grpc;
pub mod http;
pub mod net;
pub mod state;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use runtime::RuntimeService;

use crate::events::{EventRecorder, EventType};
use crate::podstatus::ProbeView;
use crate::worker::Clock;
use net::Dialer;
use state::ProbeState;

/// The three probe kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    /// kubelet's capitalised name in event messages.
    pub fn label(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    pub fn of(self, c: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => c.liveness_probe.as_ref(),
            ProbeKind::Readiness => c.readiness_probe.as_ref(),
            ProbeKind::Startup => c.startup_probe.as_ref(),
        }
    }
}

/// What a probe (or a lifecycle hook) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    Exec {
        command: Vec<String>,
    },
    Http(http::HttpGet),
    /// `host: None` means the pod IP (or 127.0.0.1 in the pod without one).
    Tcp {
        host: Option<String>,
        port: u16,
    },
    Grpc {
        port: u16,
        service: String,
    },
}

/// A probe with Kubernetes' defaults applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeSpec {
    pub handler: Handler,
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
    /// Probe-level `terminationGracePeriodSeconds` (liveness/startup kills).
    pub termination_grace: Option<i64>,
}

/// A probe or hook that cannot be made as written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("probe has no handler")]
    NoHandler,
    #[error("couldn't find port {port:?} in container {container:?}")]
    UnknownPort { port: String, container: String },
    #[error("invalid port number: {port}")]
    BadPort { port: i32 },
}

fn secs(v: Option<i32>, default: u64) -> Duration {
    Duration::from_secs(v.and_then(|v| u64::try_from(v).ok()).unwrap_or(default))
}

/// Resolves a port given by number or by the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, c: &Container) -> Result<u16, ProbeError> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|p| *p > 0)
            .ok_or(ProbeError::BadPort { port: *n }),
        IntOrString::String(name) => {
            if let Ok(n) = name.parse::<i32>() {
                return resolve_port(&IntOrString::Int(n), c);
            }
            c.ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| ProbeError::UnknownPort {
                    port: name.clone(),
                    container: c.name.clone(),
                })
        }
    }
}

/// An httpGet action as a request; `host` empty means the pod's address.
pub fn http_get(a: &HTTPGetAction, c: &Container) -> Result<http::HttpGet, ProbeError> {
    let port = resolve_port(&a.port, c)?;
    let mut path = a.path.clone().unwrap_or_default();
    if !path.starts_with('/') {
        path = format!("/{path}");
    }
    Ok(http::HttpGet {
        https: a.scheme.as_deref() == Some("HTTPS"),
        host: a.host.clone().unwrap_or_default(),
        port,
        path,
        headers: a
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect(),
    })
}

impl ProbeSpec {
    /// kubelet's defaults: timeout 1 s, period 10 s, thresholds 1 and 3.
    pub fn from_api(p: &Probe, c: &Container) -> Result<Self, ProbeError> {
        let handler = if let Some(e) = &p.exec {
            Handler::Exec {
                command: e.command.clone().unwrap_or_default(),
            }
        } else if let Some(h) = &p.http_get {
            Handler::Http(http_get(h, c)?)
        } else if let Some(t) = &p.tcp_socket {
            Handler::Tcp {
                host: t.host.clone().filter(|h| !h.is_empty()),
                port: resolve_port(&t.port, c)?,
            }
        } else if let Some(g) = &p.grpc {
            Handler::Grpc {
                port: u16::try_from(g.port)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or(ProbeError::BadPort { port: g.port })?,
                service: g.service.clone().unwrap_or_default(),
            }
        } else {
            return Err(ProbeError::NoHandler);
        };
        let count = |v: Option<i32>, d: u32| {
            v.and_then(|v| u32::try_from(v).ok())
                .filter(|v| *v > 0)
                .unwrap_or(d)
        };
        Ok(Self {
            handler,
            initial_delay: secs(p.initial_delay_seconds, 0),
            period: secs(p.period_seconds, 10).max(Duration::from_secs(1)),
            timeout: secs(p.timeout_seconds, 1).max(Duration::from_secs(1)),
            success_threshold: count(p.success_threshold, 1),
            failure_threshold: count(p.failure_threshold, 3),
            termination_grace: p.termination_grace_period_seconds,
        })
    }
}

/// One run of a probe, as kubelet's prober classifies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Success with a warning (`ProbeWarning` event).
    Warning(String),
    Failure(String),
    /// The probe could not be run (kubelet: "errored"): the result is thrown away.
    Error(String),
}

/// Where a pod's probes connect to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodNet {
    pub dialer: Dialer,
    pub pod_ip: Option<IpAddr>,
}

impl PodNet {
    /// kubelet's default probe host is the pod IP; without one (loopback-only pod) the
    /// pod's own 127.0.0.1, reachable because we dial from inside its namespace.
    pub fn default_host(&self) -> String {
        self.pod_ip
            .map_or_else(|| "127.0.0.1".to_string(), |ip| ip.to_string())
    }
}

/// Runs one probe (or hook handler) once.
pub async fn execute(
    runtime: &dyn RuntimeService,
    container_id: &str,
    handler: &Handler,
    net: &PodNet,
    timeout: Duration,
) -> Outcome {
    match handler {
        Handler::Exec { command } => {
            let started = std::time::Instant::now();
            match runtime.exec_sync(container_id, command, timeout).await {
                Ok(r) if r.exit_code == 0 => Outcome::Success,
                Ok(r) => {
                    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                    out.push_str(&String::from_utf8_lossy(&r.stderr));
                    Outcome::Failure(out)
                }
                // kubelet (ExecProbeTimeout, GA) counts a timed-out command as a failure.
                Err(_) if started.elapsed() >= timeout => {
                    Outcome::Failure(format!("command {:?} timed out", command.join(" ")))
                }
                Err(err) => Outcome::Error(err.to_string()),
            }
        }
        Handler::Http(req) => {
            let mut req = req.clone();
            if req.host.is_empty() {
                req.host = net.default_host();
            }
            match http::get(&net.dialer, &req, timeout).await {
                http::HttpOutcome::Success(_) => Outcome::Success,
                http::HttpOutcome::Warning(w) => Outcome::Warning(w),
                http::HttpOutcome::Failure(f) => Outcome::Failure(f),
            }
        }
        Handler::Tcp { host, port } => {
            let host = host.clone().unwrap_or_else(|| net.default_host());
            let addr = match net.dialer.resolve(&host, *port).await {
                Ok(a) => a,
                Err(e) => return Outcome::Failure(format!("dial tcp: lookup {host}: {e}")),
            };
            match net.dialer.connect(addr, timeout).await {
                Ok(_) => Outcome::Success,
                Err(e) => Outcome::Failure(net::dial_error(addr, &e)),
            }
        }
        Handler::Grpc { port, service } => {
            let host = net.default_host();
            match grpc::check(&net.dialer, &host, *port, service, timeout).await {
                grpc::GrpcOutcome::Success(_) => Outcome::Success,
                grpc::GrpcOutcome::Failure(f) => Outcome::Failure(f),
            }
        }
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
}

/// Why the worker must kill a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillRequest {
    pub kind: ProbeKind,
}

/// The probes of one pod: tasks keyed by container id and kind.
#[derive(Default)]
pub struct PodProber {
    results: Results,
    tasks: HashMap<(String, ProbeKind), tokio::task::JoinHandle<()>>,
}

impl Drop for PodProber {
    fn drop(&mut self) {
        for (_, t) in self.tasks.drain() {
            t.abort();
        }
    }
}

impl PodProber {
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
        self.results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|id, _| live.contains(id.as_str()));
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
                let task = tokio::spawn(probe_loop(
                    deps.clone(),
                    self.results.clone(),
                    pod.clone(),
                    t.clone(),
                    kind,
                    spec,
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
        let results = self.results.lock().unwrap_or_else(|e| e.into_inner());
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
    #[cfg(test)]
    pub fn set(&self, id: &str, kind: ProbeKind, ok: bool) {
        let mut results = self.results.lock().unwrap_or_else(|e| e.into_inner());
        let r = results.entry(id.to_string()).or_default();
        match kind {
            ProbeKind::Liveness => r.live = Some(ok),
            ProbeKind::Readiness => r.ready = Some(ok),
            ProbeKind::Startup => r.started = Some(ok),
        }
    }
}

fn started(results: &Results, id: &str) -> Option<bool> {
    results
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .and_then(|r| r.started)
}

/// One probe's task: waits out the initial delay, then probes every period.
async fn probe_loop(
    deps: ProbeDeps,
    results: Results,
    pod: Arc<Pod>,
    target: Target,
    kind: ProbeKind,
    spec: ProbeSpec,
    net: PodNet,
) {
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
        tick.tick().await;
        let started_now = started(&results, &target.id);
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
            let mut all = results.lock().unwrap_or_else(|e| e.into_inner());
            let r = all.entry(target.id.clone()).or_default();
            match kind {
                ProbeKind::Liveness => r.live = Some(reported),
                ProbeKind::Readiness => r.ready = Some(reported),
                ProbeKind::Startup => r.started = Some(reported),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn container(v: serde_json::Value) -> Container {
        serde_json::from_value(v).expect("container")
    }

    #[test]
    fn spec_defaults_and_named_ports() {
        let c = container(
            json!({"name": "app", "ports": [{"name": "http", "containerPort": 8080}],
            "livenessProbe": {"httpGet": {"path": "healthz", "port": "http", "scheme": "HTTPS",
                "httpHeaders": [{"name": "X", "value": "y"}]}}}),
        );
        let s = ProbeSpec::from_api(c.liveness_probe.as_ref().expect("probe"), &c).expect("spec");
        assert_eq!(s.period, Duration::from_secs(10));
        assert_eq!(s.timeout, Duration::from_secs(1));
        assert_eq!((s.success_threshold, s.failure_threshold), (1, 3));
        assert_eq!(
            s.handler,
            Handler::Http(http::HttpGet {
                https: true,
                host: String::new(),
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X".into(), "y".into())],
            })
        );
        let c =
            container(json!({"name": "app", "readinessProbe": {"tcpSocket": {"port": "nope"}}}));
        assert_eq!(
            ProbeSpec::from_api(c.readiness_probe.as_ref().expect("probe"), &c),
            Err(ProbeError::UnknownPort {
                port: "nope".into(),
                container: "app".into()
            })
        );
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
