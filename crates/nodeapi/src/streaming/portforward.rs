//! `kubectl port-forward` sessions: a SPDY/3.1 connection (straight after a `SPDY/3.1` POST
//! upgrade, or tunnelled in a `SPDY/3.1+portforward.k8s.io` WebSocket) on which the client
//! opens, per local TCP connection, an `error` and a `data` stream with the same `requestid`
//! and `port` headers. Each pair becomes a TCP connection to 127.0.0.1:<port> inside the
//! pod's network namespace; bytes are piped both ways, and failures are written on the error
//! stream in kubelet's words (kubectl prints them and gives up).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::forwarded::{self, Dial, Target};
use super::spdy::{self, Frame};
use super::spdy_conn::{self, FrameReader};

/// The upgrade and WebSocket subprotocol names kubectl offers for port-forward.
pub const SPDY_PROTOCOL: &str = "portforward.k8s.io";
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

/// Streams one session may have open (kubectl opens two per forwarded connection): more are
/// refused with RST_STREAM, so one client cannot make the node hold sockets and tasks
/// without bound.
pub const MAX_STREAMS: usize = 256;

/// One forwarded connection's two streams, filled as their SYN_STREAMs arrive.
#[derive(Default)]
struct Pair {
    error: Option<u32>,
    data: Option<u32>,
    port: Option<String>,
}

/// Serves one SPDY connection until the client goes away.
pub async fn serve<S>(io: S, runtime: Arc<dyn Dial>, target: Target)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out, writer) = spdy_conn::start_writer(wr).await;
    let mut frames = FrameReader::new(rd);
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut inputs: HashMap<u32, mpsc::Sender<Vec<u8>>> = HashMap::new();
    let mut tasks = Vec::new();
    while let Some(frame) = frames.next().await {
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                tasks.retain(|t: &tokio::task::JoinHandle<()>| !t.is_finished());
                inputs.retain(|_, tx| !tx.is_closed());
                let open = pairs.len() + 2 * tasks.len();
                let accept = open < MAX_STREAMS;
                if !accept {
                    tracing::debug!(open, "port-forward: too many streams; refusing one");
                }
                spdy_conn::answer(&out, stream_id, accept).await;
                if !accept {
                    continue;
                }
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
                        (error, data),
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
                // A half-open pair the client gave up on frees its place.
                pairs.retain(|_, p| p.error != Some(stream_id) && p.data != Some(stream_id));
            }
            Frame::Ping(id) => {
                let _ = out.send(Frame::Ping(id)).await;
            }
            Frame::GoAway { .. } => break,
            Frame::SynReply { .. }
            | Frame::Settings(_)
            | Frame::WindowUpdate { .. }
            | Frame::Other => {}
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
    runtime: Arc<dyn Dial>,
    target: Target,
    port: String,
    (error_stream, data_stream): (u32, u32),
    input: mpsc::Receiver<Vec<u8>>,
    out: mpsc::Sender<Frame>,
) {
    let conn = match port.parse::<u16>() {
        Ok(p) if p > 0 => runtime.dial(&target.sandbox_id, p).await,
        _ => Err(format!("invalid port {port:?}")),
    };
    match conn {
        Ok(tcp) => {
            forwarded::pipe(tcp, input, &out, |bytes| Frame::Data {
                stream_id: data_stream,
                fin: false,
                data: bytes.to_vec(),
            })
            .await;
        }
        Err(e) => {
            let message = target.forward_error(&port, e);
            let _ = out
                .send(Frame::Data {
                    stream_id: error_stream,
                    fin: false,
                    data: message.into_bytes(),
                })
                .await;
        }
    }
    // FIN the data stream, then the error stream (kubectl reads the error stream to its end
    // before it lets the local connection go).
    let _ = out.send(spdy_conn::fin(data_stream)).await;
    let _ = out.send(spdy_conn::fin(error_stream)).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::spdy::{Decoder, Encoder};
    use crate::streaming::spdy_conn::REFUSED_STREAM;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// Dials a listener on loopback that stands for the pod's port.
    struct Loopback(std::net::SocketAddr);

    #[async_trait::async_trait]
    impl Dial for Loopback {
        async fn dial(&self, _: &str, _: u16) -> Result<tokio::net::TcpStream, String> {
            tokio::net::TcpStream::connect(self.0)
                .await
                .map_err(|e| e.to_string())
        }
    }

    fn syn(stream_id: u32, kind: &str, request: u32) -> Frame {
        Frame::SynStream {
            stream_id,
            fin: false,
            headers: vec![
                ("streamtype".into(), kind.into()),
                ("port".into(), "80".into()),
                ("requestid".into(), request.to_string()),
            ],
        }
    }

    /// A client opening streams without end gets REFUSED_STREAM past the cap, and the
    /// session still forwards a connection afterwards.
    #[tokio::test]
    async fn streams_over_the_cap_are_refused_and_the_session_keeps_working() {
        let pod = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let pod_addr = pod.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut c, _)) = pod.accept().await {
                let _ = c.write_all(b"hello").await;
            }
        });
        let (client, server) = tokio::io::duplex(1 << 20);
        let target = Target {
            sandbox_id: "s".into(),
            pod_name: "p".into(),
            pod_uid: "u".into(),
        };
        let session = tokio::spawn(serve(server, Arc::new(Loopback(pod_addr)), target));
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut enc = Encoder::default();
        // Error streams whose data streams never come: each stays open.
        let extra = 10;
        let total = u32::try_from(MAX_STREAMS + extra).expect("count");
        for i in 0..total {
            wr.write_all(&enc.encode(&syn(2 * i + 1, "error", i)).expect("encode"))
                .await
                .expect("write");
        }
        let mut dec = Decoder::default();
        let mut buf = Vec::new();
        let (mut replies, mut refused) = (0usize, Vec::new());
        let mut hello = false;
        // Once every stream is answered, one more request whose data stream completes a
        // pending pair (request 0) must still be forwarded.
        let mut sent_data = false;
        while !hello {
            let mut chunk = [0u8; 4096];
            let n = rd.read(&mut chunk).await.expect("read");
            assert!(n > 0, "session ended");
            buf.extend_from_slice(&chunk[..n]);
            while let Some((frame, used)) = dec.next(&buf).expect("decode") {
                buf.drain(..used);
                match frame {
                    Frame::SynReply { .. } => replies += 1,
                    Frame::RstStream { stream_id, status } => {
                        assert_eq!(status, REFUSED_STREAM);
                        refused.push(stream_id);
                    }
                    Frame::Data { data, .. } if data == b"hello" => hello = true,
                    _ => {}
                }
            }
            if !sent_data && replies + refused.len() == MAX_STREAMS + extra {
                assert_eq!(replies, MAX_STREAMS);
                assert_eq!(refused.len(), extra);
                sent_data = true;
                // The client gives up on two pending streams; a new pair then fits.
                for (stream_id, status) in [(1, 5), (3, 5)] {
                    let rst = Frame::RstStream { stream_id, status };
                    wr.write_all(&enc.encode(&rst).expect("encode"))
                        .await
                        .expect("write");
                }
                for f in [syn(100_001, "error", 9999), syn(100_003, "data", 9999)] {
                    wr.write_all(&enc.encode(&f).expect("encode"))
                        .await
                        .expect("write");
                }
            }
        }
        session.abort();
    }
}
