//! Exec and attach over SPDY/3.1, as kubectl ≤1.29 and SPDY-only clients speak them with the
//! `v4.channel.k8s.io` stream protocol: the client opens one stream per channel, named by its
//! `streamtype` header (`error`, `stdin`, `stdout`, `stderr`, `resize`), and waits for each to
//! be answered. Once every stream the query asked for is open, the session runs on the same
//! channel framing as over a WebSocket: stdin data (and its FIN, as end of input) and resize
//! events come in, stdout/stderr data go out on their streams, and the final `Status` goes on
//! the error stream; then every stream is finished (FIN), which is what the client waits for.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use axum::extract::ws::Message;
use futures::channel::mpsc as fmpsc;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::channel;
use super::client::Client;
use super::exec::Streams;
use super::spdy::{self, Frame};
use super::spdy_conn::{self, FrameReader};

/// How long the client may take to open the streams it asked for (kubelet's stream creation
/// timeout).
const STREAM_CREATION: Duration = Duration::from_secs(30);
/// Client messages held while the streams are still being opened.
const MAX_EARLY_INPUT: usize = 64;
/// Streams one session may open: one per channel, and a few to spare.
const MAX_STREAMS: usize = 16;

/// What a client stream carries, from its `streamtype` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl Kind {
    fn parse(streamtype: &str) -> Option<Self> {
        match streamtype {
            "error" => Some(Self::Error),
            "stdin" => Some(Self::Stdin),
            "stdout" => Some(Self::Stdout),
            "stderr" => Some(Self::Stderr),
            "resize" => Some(Self::Resize),
            _ => None,
        }
    }

    /// The outbound channel this stream carries, if any.
    fn outbound(channel: u8) -> Option<Self> {
        match channel {
            channel::STDOUT => Some(Self::Stdout),
            channel::STDERR => Some(Self::Stderr),
            channel::ERROR => Some(Self::Error),
            _ => None,
        }
    }
}

/// The streams a session needs before it starts (kubelet waits for the same).
pub fn expected(streams: Streams) -> Vec<Kind> {
    let mut kinds = vec![Kind::Error];
    for (wanted, kind) in [
        (streams.stdin, Kind::Stdin),
        (streams.stdout, Kind::Stdout),
        (streams.stderr, Kind::Stderr),
        (streams.tty, Kind::Resize),
    ] {
        if wanted {
            kinds.push(kind);
        }
    }
    kinds
}

/// What one inbound DATA frame means to the session, in channel framing.
pub fn inbound(kind: Kind, fin: bool, data: &[u8]) -> Vec<Message> {
    let mut out = Vec::new();
    let ch = match kind {
        Kind::Stdin => channel::STDIN,
        Kind::Resize => channel::RESIZE,
        Kind::Error | Kind::Stdout | Kind::Stderr => return out,
    };
    if !data.is_empty() {
        out.push(Message::Binary(channel::frame(ch, data).into()));
    }
    if fin && kind == Kind::Stdin {
        out.push(Message::Binary(vec![channel::CLOSE, channel::STDIN].into()));
    }
    out
}

/// Sends the session's messages on their streams; when it ends, finishes every stream.
async fn translate_out(
    mut from_session: fmpsc::Receiver<Message>,
    ids: HashMap<Kind, u32>,
    out: mpsc::Sender<Frame>,
) {
    while let Some(msg) = from_session.next().await {
        let bytes = match msg {
            Message::Binary(b) => b,
            Message::Close(_) => break,
            Message::Text(_) | Message::Ping(_) | Message::Pong(_) => continue,
        };
        let Some((&ch, data)) = bytes.split_first() else {
            continue;
        };
        let Some(stream_id) = Kind::outbound(ch).and_then(|k| ids.get(&k).copied()) else {
            continue;
        };
        let frame = Frame::Data {
            stream_id,
            fin: false,
            data: data.to_vec(),
        };
        if out.send(frame).await.is_err() {
            return;
        }
    }
    let mut all: Vec<u32> = ids.values().copied().collect();
    all.sort_unstable();
    for stream_id in all {
        if out.send(spdy_conn::fin(stream_id)).await.is_err() {
            return;
        }
    }
}

/// The running session and its outbound translator.
struct Running {
    /// None once it has ended.
    session: Option<JoinHandle<()>>,
    translator: JoinHandle<()>,
}

/// Completes when the session ends (never before it starts, nor again after).
async fn session_ended(running: &mut Option<Running>) {
    let Some(r) = running.as_mut() else {
        return std::future::pending().await;
    };
    let Some(session) = r.session.as_mut() else {
        return std::future::pending().await;
    };
    let _ = session.await;
    r.session = None;
}

/// Serves one SPDY connection: waits for the streams `streams` asks for, then runs `session`
/// over them until it ends or the client goes away.
pub async fn serve<S, F, Fut>(io: S, streams: Streams, session: F)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
    F: FnOnce(Client) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out, writer) = spdy_conn::start_writer(wr).await;
    let mut frames = FrameReader::new(rd);
    let needed = expected(streams);
    let mut ids: HashMap<Kind, u32> = HashMap::new();
    let mut kinds: HashMap<u32, Kind> = HashMap::new();
    let mut session = Some(session);
    let (mut to_session, from_client) = fmpsc::channel::<Message>(16);
    let mut from_client = Some(from_client);
    let mut early: Vec<Message> = Vec::new();
    let mut running: Option<Running> = None;
    let deadline = tokio::time::sleep(STREAM_CREATION);
    tokio::pin!(deadline);
    loop {
        let frame = tokio::select! {
            f = frames.next() => match f {
                Some(f) => f,
                None => break,
            },
            _ = session_ended(&mut running) => break,
            _ = &mut deadline, if running.is_none() => {
                tracing::debug!("exec over SPDY: the client did not open its streams in time");
                break;
            }
        };
        let mut messages = Vec::new();
        match frame {
            Frame::SynStream {
                stream_id, headers, ..
            } => {
                let accept = kinds.len() < MAX_STREAMS;
                spdy_conn::answer(&out, stream_id, accept).await;
                if !accept {
                    continue;
                }
                if let Some(kind) = spdy::header(&headers, "streamtype").and_then(Kind::parse) {
                    kinds.insert(stream_id, kind);
                    ids.entry(kind).or_insert(stream_id);
                }
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if let Some(&kind) = kinds.get(&stream_id) {
                    messages = inbound(kind, fin, &data);
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if kinds.get(&stream_id) == Some(&Kind::Stdin) {
                    messages = inbound(Kind::Stdin, true, &[]);
                }
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
        if running.is_none() {
            let room = MAX_EARLY_INPUT.saturating_sub(early.len());
            early.extend(std::mem::take(&mut messages).into_iter().take(room));
            if needed.iter().all(|k| ids.contains_key(k)) {
                if let (Some(start), Some(rx)) = (session.take(), from_client.take()) {
                    let (session_tx, session_rx) = fmpsc::channel::<Message>(16);
                    let translator =
                        tokio::spawn(translate_out(session_rx, ids.clone(), out.clone()));
                    let client = Client::channels(session_tx, rx);
                    running = Some(Running {
                        session: Some(tokio::spawn(start(client))),
                        translator,
                    });
                    messages = std::mem::take(&mut early);
                }
            }
        }
        if running.is_some() {
            for m in messages {
                if futures::SinkExt::send(&mut to_session, m).await.is_err() {
                    break;
                }
            }
        }
    }
    // The client went away (or the session ended): the session sees the end of its input,
    // which ends a process still running.
    drop(to_session);
    if let Some(r) = running {
        if let Some(session) = r.session {
            let _ = session.await;
        }
        let _ = r.translator.await;
    }
    drop(out);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streaming::spdy::{Decoder, Encoder};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn streams_a_session_waits_for() {
        let all = Streams {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        assert_eq!(
            expected(all),
            [Kind::Error, Kind::Stdin, Kind::Stdout, Kind::Stderr]
        );
        let tty = Streams {
            stdin: true,
            stdout: true,
            stderr: false,
            tty: true,
        };
        assert_eq!(
            expected(tty),
            [Kind::Error, Kind::Stdin, Kind::Stdout, Kind::Resize]
        );
    }

    fn syn(stream_id: u32, kind: &str) -> Frame {
        Frame::SynStream {
            stream_id,
            fin: false,
            headers: vec![("streamtype".into(), kind.into())],
        }
    }

    /// A session that echoes stdin on stdout and ends with a Status when stdin ends.
    async fn echo(mut client: Client) {
        use futures::SinkExt;
        while let Some(msg) = client.inbound.next().await {
            let bytes = msg.into_data();
            match channel::decode(&bytes) {
                channel::Inbound::Stdin(data) => {
                    let out = Message::Binary(channel::frame(channel::STDOUT, data).into());
                    let _ = client.outbound.send(out).await;
                }
                channel::Inbound::CloseStdin => {
                    let status = channel::exit_status(3).to_string();
                    let out =
                        Message::Binary(channel::frame(channel::ERROR, status.as_bytes()).into());
                    let _ = client.outbound.send(out).await;
                    let _ = client.outbound.send(Message::Close(None)).await;
                    return;
                }
                _ => {}
            }
        }
    }

    /// The client's view: every stream answered, stdin echoed on the stdout stream, the Status
    /// on the error stream, and every stream finished.
    #[tokio::test]
    async fn a_session_runs_over_the_streams_the_client_opened() {
        let (client, server) = tokio::io::duplex(1 << 20);
        let streams = Streams {
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let served = tokio::spawn(serve(server, streams, echo));
        let (mut rd, mut wr) = tokio::io::split(client);
        let mut enc = Encoder::default();
        let mut send = |f: Frame| enc.encode(&f).expect("encode");
        let mut bytes = Vec::new();
        for (id, kind) in [(1, "error"), (3, "stdin"), (5, "stdout"), (7, "stderr")] {
            bytes.extend(send(syn(id, kind)));
        }
        bytes.extend(send(Frame::Data {
            stream_id: 3,
            fin: false,
            data: b"hi".to_vec(),
        }));
        bytes.extend(send(Frame::Data {
            stream_id: 3,
            fin: true,
            data: Vec::new(),
        }));
        wr.write_all(&bytes).await.expect("write");
        let mut dec = Decoder::default();
        let mut buf = Vec::new();
        let (mut replies, mut data, mut fins) = (Vec::new(), Vec::new(), Vec::new());
        while fins.len() < 4 {
            let mut chunk = [0u8; 4096];
            let n = rd.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "connection ended early: {replies:?} {data:?} {fins:?}"
            );
            buf.extend_from_slice(&chunk[..n]);
            while let Some((frame, used)) = dec.next(&buf).expect("decode") {
                buf.drain(..used);
                match frame {
                    Frame::SynReply { stream_id, .. } => replies.push(stream_id),
                    Frame::Data {
                        stream_id,
                        fin: true,
                        ..
                    } => fins.push(stream_id),
                    Frame::Data {
                        stream_id, data: d, ..
                    } => data.push((stream_id, String::from_utf8_lossy(&d).into_owned())),
                    _ => {}
                }
            }
        }
        assert_eq!(replies, [1, 3, 5, 7]);
        assert_eq!(data[0], (5, "hi".to_string()));
        assert_eq!(data[1].0, 1);
        assert!(data[1].1.contains("\"NonZeroExitCode\""), "{data:?}");
        fins.sort_unstable();
        assert_eq!(fins, [1, 3, 5, 7]);
        drop(wr);
        drop(rd);
        served.await.expect("served");
    }

    #[test]
    fn inbound_data_in_channel_framing() {
        let m = inbound(Kind::Stdin, false, b"hi");
        assert_eq!(m, [Message::Binary(b"\x00hi".to_vec().into())]);
        let m = inbound(Kind::Stdin, true, b"");
        assert_eq!(m, [Message::Binary(vec![255, 0].into())]);
        let m = inbound(Kind::Resize, false, b"{\"Width\":80,\"Height\":24}");
        assert_eq!(
            channel::decode(m[0].clone().into_data().as_ref()),
            channel::Inbound::Resize {
                width: 80,
                height: 24
            }
        );
        assert!(inbound(Kind::Stdout, true, b"x").is_empty());
    }
}
