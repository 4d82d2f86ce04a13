//! Exec and attach sessions in the channel framing of `v5.channel.k8s.io` (over a WebSocket, or
//! translated from SPDY streams): stdin and resize from the client go to the process, its stdout/stderr (or its tty) go back on channels 1 and 2, and
//! the exit ends the session with a Status on channel 3 and a normal close (1000), which is
//! what kubectl waits for. A client that goes away ends the session, and dropping the
//! runtime's session kills the process.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message};
use futures::{SinkExt, StreamExt};
use runtime::{AttachOutput, AttachSession, ExecIo, ExecOptions, RuntimeService};
use tokio::sync::mpsc;

use super::channel::{self, Inbound};
use super::client::{payload, Client, Outbound};

/// After the process exits, how long output still in flight may take to drain (a background
/// child holding stdout open must not keep the session forever).
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// After our close frame, how long the client may take to answer it.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// Reads what the client still sends until its close frame or EOF, so the connection closes
/// cleanly: dropping a socket with unread input (a resize, a keystroke) resets the TCP
/// connection, and the client may then lose our close frame and report 1006.
async fn await_client_close(source: &mut futures::stream::BoxStream<'static, Message>) {
    let drain = async {
        while let Some(msg) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_HANDSHAKE, drain).await;
}

/// The streams a client asked for (`stdin`, `stdout`, `stderr`, `tty` query flags).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Sends frames to the socket from one task, ending with the Status and a normal close.
async fn writer(mut sink: Outbound, mut rx: mpsc::Receiver<Message>) {
    while let Some(msg) = rx.recv().await {
        let last = matches!(msg, Message::Close(_));
        if sink.send(msg).await.is_err() || last {
            break;
        }
    }
    let _ = sink.close().await;
}

fn close_normal() -> Message {
    Message::Close(Some(CloseFrame {
        code: 1000,
        reason: "".into(),
    }))
}

/// Copies one output fd to a channel until EOF.
async fn pump(io: ExecIo, ch: u8, keep: bool, tx: mpsc::Sender<Message>) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        match io.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if keep
                    && tx
                        .send(Message::Binary(channel::frame(ch, &buf[..n]).into()))
                        .await
                        .is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Runs `cmd` in container `container_id` and streams it over `socket`.
pub async fn serve_exec(
    client: Client,
    runtime: Arc<dyn RuntimeService>,
    container_id: String,
    cmd: Vec<String>,
    streams: Streams,
) {
    let (sink, mut source, format) = (client.outbound, client.inbound, client.status_format);
    let (tx, rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(writer(sink, rx));
    let options = ExecOptions {
        cmd,
        tty: streams.tty,
        stdin: streams.stdin && !streams.tty,
    };
    let session = match runtime.exec(&container_id, &options).await {
        Ok(s) => s,
        Err(e) => {
            // kubelet (through the CRI runtime) reports a failed start as an internal error.
            let message =
                format!("error executing command in container: failed to exec in container: {e}");
            finish(&tx, format, channel::error_status(&message)).await;
            drop(tx);
            let _ = writer.await;
            await_client_close(&mut source).await;
            return;
        }
    };
    let tty = session.tty.map(Arc::new);
    let mut stdin = session.stdin;
    let mut outputs = Vec::new();
    if let Some(out) = session.stdout {
        outputs.push(tokio::spawn(pump(
            out,
            channel::STDOUT,
            streams.stdout,
            tx.clone(),
        )));
    }
    if let Some(err) = session.stderr {
        outputs.push(tokio::spawn(pump(
            err,
            channel::STDERR,
            streams.stderr,
            tx.clone(),
        )));
    }
    if let Some(t) = &tty {
        let t = t.clone();
        let tx = tx.clone();
        outputs.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match t.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let msg =
                            Message::Binary(channel::frame(channel::STDOUT, &buf[..n]).into());
                        if tx.send(msg).await.is_err() {
                            return;
                        }
                    }
                }
            }
        }));
    }
    let input = async {
        while let Some(msg) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some(data) = payload(msg) else { continue };
            match channel::decode(&data) {
                Inbound::Stdin(bytes) => {
                    let res = match (&tty, &stdin) {
                        (Some(t), _) => t.write_all(bytes).await,
                        (None, Some(s)) => s.write_all(bytes).await,
                        (None, None) => Ok(()),
                    };
                    if res.is_err() {
                        stdin = None;
                    }
                }
                Inbound::Resize { width, height } => {
                    if let Some(t) = &tty {
                        let _ = t.resize(width, height);
                    }
                }
                // Closing our end of the pipe gives the process EOF on stdin.
                Inbound::CloseStdin => stdin = None,
                Inbound::Ignored => {}
            }
        }
    };
    let exit = session.exit;
    tokio::pin!(exit);
    let code = tokio::select! {
        code = &mut exit => Some(code),
        // The client went away: dropping the session kills the process.
        _ = input => None,
    };
    let Some(code) = code else {
        for o in outputs {
            o.abort();
        }
        return;
    };
    let drained = async {
        for o in outputs.iter_mut() {
            let _ = o.await;
        }
    };
    if tokio::time::timeout(DRAIN_AFTER_EXIT, drained)
        .await
        .is_err()
    {
        for o in &outputs {
            o.abort();
        }
    }
    let status = match code {
        Ok(code) => channel::exit_status(code),
        Err(e) => channel::error_status(&e.to_string()),
    };
    finish(&tx, format, status).await;
    drop(tx);
    let _ = writer.await;
    await_client_close(&mut source).await;
}

/// Ends a session: the status on channel 3 as the protocol tells it, then a normal close.
async fn finish(
    tx: &mpsc::Sender<Message>,
    format: channel::StatusFormat,
    status: serde_json::Value,
) {
    if let Some(data) = format.encode(&status) {
        let _ = tx
            .send(Message::Binary(
                channel::frame(channel::ERROR, &data).into(),
            ))
            .await;
    }
    let _ = tx.send(close_normal()).await;
}

/// Attach: the container's main process's output from now on reaches the client on stdout
/// and stderr (one stream with a tty) until the process exits; the client's stdin and
/// resizes go to the process's stdin or terminal. The client going away ends the session;
/// the process keeps running.
pub async fn serve_attach(client: Client, mut session: AttachSession, streams: Streams) {
    let (sink, mut source, format) = (client.outbound, client.inbound, client.status_format);
    let (tx, rx) = mpsc::channel::<Message>(64);
    let writer = tokio::spawn(writer(sink, rx));
    let tty = session.tty;
    // A tty's input is kept without stdin too: resizes go through it.
    let mut input = session.input.take().filter(|_| streams.stdin || tty);
    let session = &session;
    let output = async {
        let mut buf = vec![0u8; runtime::attach::MAX_CHUNK];
        while let Ok(Some((stream, n))) = session.read(&mut buf).await {
            let (ch, wanted) = match stream {
                AttachOutput::Stdout => (channel::STDOUT, streams.stdout),
                AttachOutput::Stderr => (channel::STDERR, streams.stderr),
            };
            if wanted
                && tx
                    .send(Message::Binary(channel::frame(ch, &buf[..n]).into()))
                    .await
                    .is_err()
            {
                return;
            }
        }
    };
    let inbound = async {
        while let Some(msg) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some(data) = payload(msg) else { continue };
            match channel::decode(&data) {
                Inbound::Stdin(bytes) if streams.stdin => {
                    if let Some(i) = &input {
                        if i.write_all(bytes).await.is_err() {
                            input = None;
                        }
                    }
                }
                Inbound::Resize { width, height } if tty => {
                    if let Some(i) = &input {
                        let _ = i.resize(width, height);
                    }
                }
                // With `stdinOnce` the shim then closes the process's stdin; our copy of a
                // stdin pipe must be closed as well for the process to see EOF.
                Inbound::CloseStdin if streams.stdin => {
                    if !tty {
                        input = None;
                    }
                    let _ = session.close_stdin().await;
                }
                Inbound::Stdin(_)
                | Inbound::Resize { .. }
                | Inbound::CloseStdin
                | Inbound::Ignored => {}
            }
        }
    };
    let ended = tokio::select! {
        _ = output => true,
        _ = inbound => false,
    };
    if ended {
        finish(&tx, format, channel::exit_status(0)).await;
    }
    drop(tx);
    let _ = writer.await;
    if ended {
        await_client_close(&mut source).await;
    }
}
