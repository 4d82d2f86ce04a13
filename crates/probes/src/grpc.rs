//! gRPC probes: one `grpc.health.v1.Health/Check` call over h2c, as kubelet's gRPC prober
//! makes it. The two tiny protobuf messages are encoded by hand (no protoc):
//! `HealthCheckRequest { string service = 1; }` and
//! `HealthCheckResponse { ServingStatus status = 1; }`.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::net::{DialError, Dialer};

/// What the call came to, in kubelet's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GrpcOutcome {
    Success(String),
    Failure(String),
}

/// The request message, length-prefixed for the wire (gRPC framing: flag byte, u32 length).
pub fn encode_request(service: &str) -> Vec<u8> {
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a); // field 1, length-delimited
        let mut len = service.len();
        while len >= 0x80 {
            msg.push(u8::try_from(len & 0x7f).unwrap_or(0) | 0x80);
            len >>= 7;
        }
        msg.push(u8::try_from(len).unwrap_or(0));
        msg.extend_from_slice(service.as_bytes());
    }
    let mut out = vec![0u8];
    out.extend_from_slice(&u32::try_from(msg.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(&msg);
    out
}

/// The `status` of a framed response (0, UNKNOWN, when absent as proto3 defaults say).
pub fn decode_response(body: &[u8]) -> Option<u64> {
    let msg = body.get(5..)?;
    let mut i = 0;
    let mut status = 0;
    while i < msg.len() {
        let key = read_varint(msg, &mut i)?;
        match key & 7 {
            0 => {
                let v = read_varint(msg, &mut i)?;
                if key >> 3 == 1 {
                    status = v;
                }
            }
            2 => {
                let len = usize::try_from(read_varint(msg, &mut i)?).ok()?;
                i = i.checked_add(len)?;
            }
            _ => return None,
        }
    }
    Some(status)
}

fn read_varint(buf: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*i)?;
        *i += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn status_name(s: u64) -> String {
    match s {
        0 => "UNKNOWN".to_string(),
        1 => "SERVING".to_string(),
        2 => "NOT_SERVING".to_string(),
        3 => "SERVICE_UNKNOWN".to_string(),
        n => n.to_string(),
    }
}

/// Calls Health/Check on `host:port` within `timeout`.
pub async fn check(
    dialer: &Dialer,
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> GrpcOutcome {
    let target = format!("{host}:{port}");
    match tokio::time::timeout(timeout, call(dialer, host, port, service, timeout)).await {
        Ok(Ok(1)) => GrpcOutcome::Success("service healthy".to_string()),
        Ok(Ok(status)) => GrpcOutcome::Failure(format!(
            "service unhealthy (responded with {:?})",
            status_name(status)
        )),
        Ok(Err(CallError::Connect(e))) => GrpcOutcome::Failure(format!(
            "error: failed to connect service {target:?}: {e}"
        )),
        Ok(Err(CallError::Rpc(12, msg))) => GrpcOutcome::Failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {msg}"
        )),
        Ok(Err(CallError::Rpc(code, msg))) => GrpcOutcome::Failure(format!(
            "error: health rpc probe failed: rpc error: code = {code} desc = {msg}"
        )),
        Ok(Err(CallError::Protocol(msg))) => {
            GrpcOutcome::Failure(format!("error: health rpc probe failed: {msg}"))
        }
        Err(_) => GrpcOutcome::Failure(format!(
            "timeout: failed to connect service {target:?} within {}s",
            timeout.as_secs()
        )),
    }
}

enum CallError {
    Connect(ConnectError),
    /// The server's `grpc-status` and `grpc-message`.
    Rpc(u32, String),
    Protocol(ProtocolError),
}

/// Why the health service could not be reached.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error("{0}")]
    Lookup(#[source] std::io::Error),
    #[error(transparent)]
    Dial(DialError),
    #[error("{0}")]
    Handshake(#[source] hyper::Error),
}

/// Why the health call failed on a connection that was made.
#[derive(Debug, thiserror::Error)]
enum ProtocolError {
    #[error("{0}")]
    Request(#[source] http::Error),
    #[error("{0}")]
    Http(#[source] hyper::Error),
    #[error("malformed HealthCheckResponse")]
    MalformedResponse,
}

async fn call(
    dialer: &Dialer,
    host: &str,
    port: u16,
    service: &str,
    timeout: Duration,
) -> Result<u64, CallError> {
    let addr = dialer
        .resolve(host, port)
        .await
        .map_err(|e| CallError::Connect(ConnectError::Lookup(e)))?;
    let stream = dialer
        .connect(addr, timeout)
        .await
        .map_err(|source| CallError::Connect(ConnectError::Dial(DialError { addr, source })))?;
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .map_err(|e| CallError::Connect(ConnectError::Handshake(e)))?;
    tokio::spawn(async move {
        if let Err(err) = conn.await {
            tracing::debug!(error = %err, "grpc probe connection ended");
        }
    });
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let request = http::Request::post(format!("http://{authority}/grpc.health.v1.Health/Check"))
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header("te", "trailers")
        .header(http::header::USER_AGENT, crate::http::USER_AGENT)
        .body(Full::new(Bytes::from(encode_request(service))))
        .map_err(|e| CallError::Protocol(ProtocolError::Request(e)))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| CallError::Protocol(ProtocolError::Http(e)))?;
    let header_status = grpc_status(response.headers());
    let collected = response
        .into_body()
        .collect()
        .await
        .map_err(|e| CallError::Protocol(ProtocolError::Http(e)))?;
    let trailer_status = collected.trailers().and_then(grpc_status);
    let (code, message) = trailer_status
        .or(header_status)
        .unwrap_or((2, "missing grpc-status".to_string()));
    if code != 0 {
        return Err(CallError::Rpc(code, message));
    }
    decode_response(&collected.to_bytes())
        .ok_or(CallError::Protocol(ProtocolError::MalformedResponse))
}

fn grpc_status(h: &http::HeaderMap) -> Option<(u32, String)> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse().ok()?;
    let msg = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Some((code, msg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        assert_eq!(encode_request(""), vec![0, 0, 0, 0, 0]);
        assert_eq!(
            encode_request("db"),
            vec![0, 0, 0, 0, 4, 0x0a, 2, b'd', b'b']
        );
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08, 1]), Some(1));
        assert_eq!(decode_response(&[0, 0, 0, 0, 0]), Some(0));
        assert_eq!(decode_response(&[0, 0, 0, 0, 2, 0x08]), None);
        assert_eq!(decode_response(&[0, 0]), None);
    }

    /// A real h2c server answering Health/Check with `status`.
    async fn h2_server(status: u8) -> u16 {
        use hyper::server::conn::http2;
        use hyper::service::service_fn;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let svc = service_fn(
                    move |req: http::Request<hyper::body::Incoming>| async move {
                        let path = req.uri().path().to_string();
                        let _ = req.into_body().collect().await;
                        let (data, code) = if path == "/grpc.health.v1.Health/Check" {
                            (vec![0, 0, 0, 0, 2, 0x08, status], "0")
                        } else {
                            (Vec::new(), "12")
                        };
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", http::HeaderValue::from_static(code));
                        let body = http_body_util::StreamBody::new(futures::stream::iter(vec![
                            Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(
                                Bytes::from(data),
                            )),
                            Ok(hyper::body::Frame::trailers(trailers)),
                        ]));
                        Ok::<_, std::convert::Infallible>(
                            http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .expect("response"),
                        )
                    },
                );
                tokio::spawn(
                    http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc),
                );
            }
        });
        port
    }

    #[tokio::test]
    async fn health_check_against_h2c_server() {
        let t = Duration::from_secs(2);
        let d = Dialer::default();
        let port = h2_server(1).await;
        assert_eq!(
            check(&d, "127.0.0.1", port, "", t).await,
            GrpcOutcome::Success("service healthy".into())
        );
        let port = h2_server(2).await;
        assert_eq!(
            check(&d, "127.0.0.1", port, "x", t).await,
            GrpcOutcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
    }
}
