//! Container probes and lifecycle hooks, as kubelet's prober and handler runner run them:
//! `spec` turns an API probe into a runnable one, `execute` runs it (or a hook's handler)
//! once, `state` is the pure threshold logic, `prober` the per-pod tasks that feed the pod
//! worker, and `hooks` runs `postStart` / `preStop`.
//! exec probes go through `RuntimeService::exec_sync`; httpGet, tcpSocket and grpc probes
//! are made by the agent from inside the pod's network namespace (`net::Dialer`).

mod execute;
mod grpc;
mod hooks;
mod http;
mod net;
mod prober;
mod spec;
mod state;

pub use execute::PodNet;
pub use hooks::{run_hook, Hook, HookError};
pub use net::Dialer;
pub use prober::{KillRequest, PodProber, ProbeDeps, ProbeView, Target, PROBE_RESULT_LABELS};
pub use spec::{ProbeError, ProbeKind};
