//! `kubectl port-forward` sessions: a SPDY/3.1 connection (straight after a `SPDY/3.1` POST
//! upgrade, or tunnelled in a `SPDY/3.1+portforward.k8s.io` WebSocket) on which the client
//! opens, per local TCP connection, an `error` and a `data` stream with the same `requestid`
//! and `port` headers. Each pair becomes a TCP connection to 127.0.0.1:<port> inside the
//! pod's network namespace; bytes are piped both ways, and failures are written on the error
//! stream in kubelet's words (kubectl prints them and gives up).

use std::collections::HashMap;
use std::sync::Arc;

use runtime::RuntimeService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, Decoder, Encoder, Frame};

/// The upgrade and WebSocket subprotocol names kubectl offers for port-forward.
pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Largest DATA frame we send.
const CHUNK: usize = 32 * 1024;

/// Which pod a session forwards to, for the runtime and for error texts.
#[derive(Debug, Clone)]
pub struct Target {
    pub sandbox_id: String,
    pub pod_name: String,
    pub pod_uid: String,
}

/// One forwarded connection's two streams, filled as their SYN_STREAMs arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: Option<String>,
}

/// Serves one SPDY connection until the client goes away.
pub async fn serve<S>(io: S, runtime: Arc<dyn RuntimeService>, target: Target)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(io);
    let (out, mut out_rx) = mpsc::channel::<Frame>(64);
    // One writer, so header blocks enter the zlib stream in the order they hit the wire.
    let writer = tokio::spawn(async move {
        let mut enc = Encoder::default();
        while let Some(frame) = out_rx.recv().await {
            let bytes = match enc.encode(&frame) {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: encoding a frame");
                    break;
                }
            };
            if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });
    // Our receive windows are never the limit; we do not send WINDOW_UPDATEs.
    let _ = out
        .send(Frame::Settings(vec![(
            spdy::SETTINGS_INITIAL_WINDOW_SIZE,
            0x7fff_ffff,
        )]))
        .await;

    let mut dec = Decoder::default();
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inputs: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks = Vec::new();
    'conn: loop {
        let mut chunk = [0u8; 32 * 1024];
        let n = match rd.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let (frame, used) = match dec.next(&buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "port-forward: bad SPDY input");
                    break 'conn;
                }
            };
            buf.drain(..used);
            match frame {
                Frame::SynStream {
                    stream_id, headers, ..
                } => {
                    // The client blocks until each stream is answered.
                    let _ = out
                        .send(Frame::SynReply {
                            stream_id,
                            fin: false,
                            headers: Vec::new(),
                        })
                        .await;
                    let request = spdy::header(&headers, "requestid")
                        .unwrap_or_default()
                        .to_string();
                    let pair = pairs.entry(request.clone()).or_default();
                    pair.port = spdy::header(&headers, "port").map(str::to_string);
                    match spdy::header(&headers, "streamtype") {
                        Some("error") => pair.error = Some(stream_id),
                        Some("data") => pair.data = Some(stream_id),
                        _ => {}
                    }
                    if let (Some(error), Some(data)) = (pair.error, pair.data) {
                        let port = pair.port.clone().unwrap_or_default();
                        pairs.remove(&request);
                        let (tx, rx) = mpsc::channel(16);
                        inputs.insert(data, tx);
                        tasks.push(tokio::spawn(forward(
                            runtime.clone(),
                            target.clone(),
                            port,
                            error,
                            data,
                            rx,
                            out.clone(),
                        )));
                    }
                }
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    if let Some(tx) = inputs.get(&stream_id) {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            inputs.remove(&stream_id);
                        }
                    }
                    if fin {
                        // Dropping the sender half-closes the pod side.
                        inputs.remove(&stream_id);
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    inputs.remove(&stream_id);
                }
                Frame::Ping(id) => {
                    let _ = out.send(Frame::Ping(id)).await;
                }
                Frame::GoAway { .. } => break 'conn,
                Frame::SynReply { .. }
                | Frame::Settings(_)
                | Frame::WindowUpdate { .. }
                | Frame::Other => {}
            }
        }
    }
    for t in tasks {
        t.abort();
    }
    drop(out);
    let _ = writer.await;
}

/// Pipes one forwarded connection; reports a failure on the error stream.
async fn forward(
    runtime: Arc<dyn RuntimeService>,
    target: Target,
    port: String,
    error_stream: u32,
    data_stream: u32,
    mut input: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Frame>,
) {
    let fin = |stream_id| Frame::Data {
        stream_id,
        fin: true,
        data: Vec::new(),
    };
    let conn = match port.parse::<u16>() {
        Ok(p) if p > 0 => runtime
            .port_forward(&target.sandbox_id, p)
            .await
            .map_err(|e| e.to_string()),
        _ => Err(format!("invalid port {port:?}")),
    };
    let tcp = match conn {
        Ok(tcp) => tcp,
        Err(e) => {
            // kubelet's text: "error forwarding port <p> to pod <pod>, uid <uid>: <cause>".
            let message = format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                target.pod_name, target.pod_uid
            );
            let _ = out
                .send(Frame::Data {
                    stream_id: error_stream,
                    fin: false,
                    data: message.into_bytes(),
                })
                .await;
            let _ = out.send(fin(data_stream)).await;
            let _ = out.send(fin(error_stream)).await;
            return;
        }
    };
    let (mut pod_rd, mut pod_wr) = tcp.into_split();
    let upstream = tokio::spawn(async move {
        while let Some(bytes) = input.recv().await {
            if pod_wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = pod_wr.shutdown().await;
    });
    let mut buf = vec![0u8; CHUNK];
    loop {
        match pod_rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let frame = Frame::Data {
                    stream_id: data_stream,
                    fin: false,
                    data: buf[..n].to_vec(),
                };
                if out.send(frame).await.is_err() {
                    break;
                }
            }
        }
    }
    // The pod side closed: FIN the data stream, then the error stream (kubectl reads the
    // error stream to its end before it lets the local connection go).
    let _ = out.send(fin(data_stream)).await;
    let _ = out.send(fin(error_stream)).await;
    upstream.abort();
}
