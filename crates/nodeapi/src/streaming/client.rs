//! The client end of an exec or attach session, whatever carries it: a WebSocket
//! (`v5.channel.k8s.io`, `v4.channel.k8s.io` or `channel.k8s.io`), or SPDY streams translated to the same channel
//! framing. Sessions read and write messages in that framing and need not know the transport.

use axum::extract::ws::{Message, WebSocket};
use futures::future::ready;
use futures::sink::SinkExt;
use futures::stream::{BoxStream, StreamExt};
use futures::Sink;
use std::pin::Pin;

use super::channel::StatusFormat;

/// Where a session sends its messages; an error means the client is gone.
pub type Outbound = Pin<Box<dyn Sink<Message, Error = ClientGone> + Send>>;

/// The client went away, or its transport failed.
#[derive(Debug, thiserror::Error)]
#[error("the streaming client went away")]
pub struct ClientGone;

/// Both directions of a session's client.
pub struct Client {
    pub outbound: Outbound,
    /// Messages from the client; ends when it goes away.
    pub inbound: BoxStream<'static, Message>,
    /// How the session's end goes on channel 3, as the agreed protocol says.
    pub status_format: StatusFormat,
}

impl Client {
    /// A WebSocket client, speaking the subprotocol the upgrade agreed on.
    pub fn websocket(socket: WebSocket) -> Self {
        let status_format =
            StatusFormat::of_protocol(socket.protocol().and_then(|p| p.to_str().ok()));
        let (sink, source) = socket.split();
        Client {
            outbound: Box::pin(sink.sink_map_err(|_| ClientGone)),
            inbound: source
                .take_while(|m| ready(m.is_ok()))
                .filter_map(|m| ready(m.ok()))
                .boxed(),
            status_format,
        }
    }

    /// A client made of two in-process channels (SPDY streams translated to the v4
    /// framing, or a test).
    pub fn channels(
        outbound: futures::channel::mpsc::Sender<Message>,
        inbound: futures::channel::mpsc::Receiver<Message>,
    ) -> Self {
        Client {
            outbound: Box::pin(outbound.sink_map_err(|_| ClientGone)),
            inbound: inbound.boxed(),
            status_format: StatusFormat::Json,
        }
    }
}

/// A message's bytes, text or binary: clients send stdin in either (the Python client sends
/// `str` data as text messages), and kubelet reads both alike.
pub fn payload(msg: Message) -> Option<axum::body::Bytes> {
    match msg {
        Message::Binary(b) => Some(b),
        Message::Text(t) => Some(Message::Text(t).into_data()),
        Message::Ping(_) | Message::Pong(_) | Message::Close(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_binary_messages_carry_data() {
        assert_eq!(
            payload(Message::Text("\u{0}ls\n".into())).as_deref(),
            Some(&b"\x00ls\n"[..])
        );
        assert_eq!(
            payload(Message::Binary(vec![0, b'x'].into())).as_deref(),
            Some(&b"\x00x"[..])
        );
        assert_eq!(payload(Message::Ping(Vec::new().into())), None);
        assert_eq!(payload(Message::Close(None)), None);
    }
}
