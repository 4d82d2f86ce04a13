//! What a probe is, with Kubernetes' defaults applied: its kind, its handler (exec, httpGet,
//! tcpSocket, grpc) with named ports resolved, its timings and thresholds.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::http;

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
}
