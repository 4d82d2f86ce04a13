//! gRPC probes end to end. busybox has no gRPC server, so the test serves
//! `grpc.health.v1.Health/Check` over h2c itself, on the node's address, and a `hostNetwork`
//! pod probes it (kubelet dials a gRPC probe at the pod IP, which is the node's here):
//! readiness follows SERVING ↔ NOT_SERVING of a named service, liveness restarts the
//! container once the server is gone.

mod common;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);

/// grpc.health.v1 `ServingStatus` values.
const SERVING: u8 = 1;
const NOT_SERVING: u8 = 2;

/// The `service` field of a framed `HealthCheckRequest` (empty when absent).
fn requested_service(body: &[u8]) -> String {
    let msg = body.get(5..).unwrap_or_default();
    match msg {
        [0x0a, len, rest @ ..] if usize::from(*len) <= rest.len() => {
            String::from_utf8_lossy(&rest[..usize::from(*len)]).into_owned()
        }
        _ => String::new(),
    }
}

/// A Health server whose answers the test sets per service; unknown services get NOT_FOUND,
/// as grpc-go's health server answers.
struct HealthServer {
    addr: SocketAddr,
    statuses: Arc<Mutex<HashMap<String, u8>>>,
    calls: Arc<Mutex<Vec<String>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl HealthServer {
    fn start(rt: &tokio::runtime::Runtime, ip: IpAddr) -> Self {
        let listener = rt
            .block_on(tokio::net::TcpListener::bind((ip, 0)))
            .expect("binding the health server");
        let addr = listener.local_addr().expect("local addr");
        let statuses = Arc::new(Mutex::new(HashMap::new()));
        let calls = Arc::new(Mutex::new(Vec::new()));
        let (st, cl) = (statuses.clone(), calls.clone());
        let accept = rt.spawn(async move {
            // Connections live in the set, so aborting the accept task ends them too.
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (st, cl) = (st.clone(), cl.clone());
                let svc = hyper::service::service_fn(move |req| {
                    let (st, cl) = (st.clone(), cl.clone());
                    answer(req, st, cl)
                });
                conns.spawn(
                    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), svc),
                );
            }
        });
        HealthServer {
            addr,
            statuses,
            calls,
            accept,
        }
    }

    fn set(&self, service: &str, status: u8) {
        self.statuses
            .lock()
            .expect("statuses")
            .insert(service.to_string(), status);
    }

    fn calls_for(&self, service: &str) -> usize {
        let calls = self.calls.lock().expect("calls");
        calls.iter().filter(|s| *s == service).count()
    }

    /// Closes the listener and every connection: probes now get "connection refused".
    fn stop(&self, rt: &tokio::runtime::Runtime) {
        self.accept.abort();
        let handle = &self.accept;
        rt.block_on(async {
            while !handle.is_finished() {
                tokio::task::yield_now().await;
            }
        });
    }
}

type GrpcBody = http_body_util::StreamBody<
    futures::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>,
>;

async fn answer(
    req: http::Request<hyper::body::Incoming>,
    statuses: Arc<Mutex<HashMap<String, u8>>>,
    calls: Arc<Mutex<Vec<String>>>,
) -> Result<http::Response<GrpcBody>, Infallible> {
    let path = req.uri().path().to_string();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let service = requested_service(&body);
    let status = statuses.lock().expect("statuses").get(&service).copied();
    calls.lock().expect("calls").push(service);
    let (data, code) = match (path.as_str(), status) {
        ("/grpc.health.v1.Health/Check", Some(s)) => (vec![0, 0, 0, 0, 2, 0x08, s], "0"),
        ("/grpc.health.v1.Health/Check", None) => (Vec::new(), "5"),
        _ => (Vec::new(), "12"),
    };
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(code));
    let frames = vec![
        Ok(Frame::data(Bytes::from(data))),
        Ok(Frame::trailers(trailers)),
    ];
    let response = http::Response::builder()
        .header("content-type", "application/grpc")
        .body(http_body_util::StreamBody::new(futures::stream::iter(
            frames,
        )))
        .expect("a static response");
    Ok(response)
}

fn node_ip(pp: &Peapod) -> IpAddr {
    let ip = pp
        .jsonpath(
            &format!("node/{}", pp.node_name),
            "{.status.addresses[?(@.type==\"InternalIP\")].address}",
        )
        .unwrap_or_default();
    ip.parse()
        .unwrap_or_else(|_| panic!("node InternalIP {ip:?}"))
}

fn ready(pp: &Peapod, pod: &str) -> String {
    pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    )
    .unwrap_or_default()
}

fn restarts(pp: &Peapod, pod: &str) -> u32 {
    pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].restartCount}",
    )
    .unwrap_or_default()
    .parse()
    .unwrap_or(0)
}

#[test]
fn grpc_probes_follow_the_health_service() {
    let pp = Peapod::start();
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let server = HealthServer::start(&rt, node_ip(&pp));
    server.set("", SERVING);
    server.set("db", SERVING);
    let port = server.addr.port();
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: grpc-probed
spec:
  hostNetwork: true
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    readinessProbe:
      grpc: {{port: {port}, service: db}}
      periodSeconds: 1
      failureThreshold: 1
    livenessProbe:
      grpc: {{port: {port}}}
      periodSeconds: 1
      failureThreshold: 2
"#
    ));
    // SERVING: Ready, and both probes reached the server with their own service name.
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/grpc-probed",
        "--timeout=90s",
    ]);
    assert!(server.calls_for("db") >= 1 && server.calls_for("") >= 1);

    // NOT_SERVING for the readiness service only: not ready, and no restart.
    server.set("db", NOT_SERVING);
    wait_until("Ready=False on NOT_SERVING", T, || {
        (ready(&pp, "grpc-probed") == "False").then_some(())
    });
    let describe = pp.kubectl_ok(&["describe", "pod", "grpc-probed"]);
    assert!(
        describe
            .contains("Readiness probe failed: service unhealthy (responded with \"NOT_SERVING\")"),
        "{describe}"
    );
    assert_eq!(restarts(&pp, "grpc-probed"), 0);

    // SERVING again: Ready again.
    server.set("db", SERVING);
    wait_until("Ready=True on SERVING", T, || {
        (ready(&pp, "grpc-probed") == "True").then_some(())
    });
    assert_eq!(restarts(&pp, "grpc-probed"), 0);

    // Server gone: the liveness probe fails twice and the container is restarted.
    server.stop(&rt);
    wait_until("a liveness restart", T, || {
        (restarts(&pp, "grpc-probed") >= 1).then_some(())
    });
    let describe = pp.kubectl_ok(&["describe", "pod", "grpc-probed"]);
    assert!(
        describe.contains("Liveness probe failed: error: failed to connect service"),
        "{describe}"
    );
    assert!(
        describe.contains("Container app failed liveness probe, will be restarted"),
        "{describe}"
    );
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "grpc-probed",
        "--wait=true",
        "--timeout=60s",
    ]);
}
