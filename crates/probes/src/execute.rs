//! Runs one probe (or lifecycle hook handler) once: exec through the runtime, httpGet,
//! tcpSocket and grpc from inside the pod's network namespace.

use std::net::IpAddr;
use std::time::Duration;

use runtime::RuntimeService;

use crate::net::{self, Dialer};
use crate::spec::Handler;
use crate::{grpc, http};

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
                http::HttpOutcome::BadStatus(f) | http::HttpOutcome::Failure(f) => {
                    Outcome::Failure(f)
                }
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
