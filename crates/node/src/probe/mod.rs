//! Container probes and the handlers lifecycle hooks share with them, as kubelet's prober
//! runs them: `spec` turns an API probe into a runnable one, `execute` runs it once,
//! `state` is the pure threshold logic and `prober` the per-pod tasks that feed the worker.
//! exec probes go through `RuntimeService::exec_sync`; httpGet, tcpSocket and grpc probes
//! are made by the agent from inside the pod's network namespace (`net::Dialer`).

pub mod execute;
pub mod grpc;
pub mod http;
pub mod net;
pub mod prober;
pub mod spec;
pub mod state;

pub use execute::{execute, Outcome, PodNet};
pub use prober::{KillRequest, PodProber, ProbeDeps, ProbeView, Target};
pub use spec::{http_get, resolve_port, Handler, ProbeError, ProbeKind, ProbeSpec};
