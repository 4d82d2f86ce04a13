//! Port-forward in the WebSocket channel protocol the client libraries speak
//! (`v4.channel.k8s.io`, and kubelet's choice when the client names none): the ports come in
//! the query (`ports=80&ports=8080` or `ports=80,8080`; `port` as kube-apiserver passes it on),
//! port number i has data channel 2i and error channel 2i+1, and the first message on each
//! channel carries the port as two little-endian bytes. Each port is one connection into the
//! pod; a failure is written on its error channel in kubelet's words, and the WebSocket closes
//! normally once every port's connection has ended.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use super::channel;
use super::client::payload;
use super::forwarded::{self, Dial, Target};

/// Channels are one byte, two per port.
pub const MAX_PORTS: usize = 128;
/// After the last port ended, how long the client may take to answer our close.
const CLOSE_HANDSHAKE: Duration = Duration::from_secs(2);

/// A `ports` query that names no usable port; texts follow kubelet's.
#[derive(Debug, thiserror::Error)]
pub enum PortsError {
    #[error("query parameter \"ports\" is required")]
    Missing,
    #[error("query parameter \"ports\" cannot be empty")]
    Empty,
    #[error("unable to parse {0:?} as a port")]
    Unparsable(String),
    #[error("port {0:?} must be > 0")]
    Zero(String),
    #[error("at most {MAX_PORTS} ports can be forwarded on one connection")]
    TooMany,
    #[error("invalid query: {0}")]
    Query(#[source] serde_urlencoded::de::Error),
}

/// The ports of a port-forward query, in order.
pub fn parse_ports(raw_query: &str) -> Result<Vec<u16>, PortsError> {
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw_query).map_err(PortsError::Query)?;
    let mut ports = Vec::new();
    let mut named = false;
    for (k, v) in pairs {
        if k != "ports" && k != "port" {
            continue;
        }
        named = true;
        if v.is_empty() {
            return Err(PortsError::Empty);
        }
        for p in v.split(',') {
            let port: u16 = p
                .trim()
                .parse()
                .map_err(|_| PortsError::Unparsable(p.to_string()))?;
            if port == 0 {
                return Err(PortsError::Zero(p.to_string()));
            }
            ports.push(port);
        }
    }
    if !named {
        return Err(PortsError::Missing);
    }
    if ports.len() > MAX_PORTS {
        return Err(PortsError::TooMany);
    }
    Ok(ports)
}

/// The data and error channel of the port at `index` (below [`MAX_PORTS`]).
fn channels(index: usize) -> (u8, u8) {
    let data = u8::try_from(index * 2).unwrap_or(u8::MAX - 1);
    (data, data + 1)
}

/// Serves one port-forward WebSocket until every port's connection ended or the client left.
pub async fn serve(socket: WebSocket, dial: Arc<dyn Dial>, target: Target, ports: Vec<u16>) {
    let (mut sink, mut source) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Message>(64);
    let mut writer = tokio::spawn(async move {
        while let Some(msg) = rx.recv().await {
            if sink.send(msg).await.is_err() {
                return;
            }
        }
        let close = Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        }));
        let _ = sink.send(close).await;
        let _ = sink.close().await;
    });
    let mut inputs = Vec::with_capacity(ports.len());
    let mut tasks = Vec::with_capacity(ports.len());
    for (index, port) in ports.iter().copied().enumerate() {
        let (data, error) = channels(index);
        for ch in [data, error] {
            let first = Message::Binary(channel::frame(ch, &port.to_le_bytes()).into());
            let _ = tx.send(first).await;
        }
        let (in_tx, in_rx) = mpsc::channel::<axum::body::Bytes>(16);
        inputs.push(Some(in_tx));
        tasks.push(tokio::spawn(forward(
            dial.clone(),
            target.clone(),
            port,
            (data, error),
            in_rx,
            tx.clone(),
        )));
    }
    // The writer closes the socket once every port's task dropped its sender.
    drop(tx);
    let reader = async {
        while let Some(Ok(msg)) = source.next().await {
            if matches!(msg, Message::Close(_)) {
                break;
            }
            let Some(bytes) = payload(msg) else { continue };
            let Some((&ch, data)) = bytes.split_first() else {
                continue;
            };
            // Only data channels carry input; what comes on an error channel is ignored.
            let index = usize::from(ch / 2);
            if ch % 2 != 0 || data.is_empty() {
                continue;
            }
            if let Some(Some(input)) = inputs.get(index) {
                if input.send(bytes.slice(1..)).await.is_err() {
                    inputs[index] = None;
                }
            }
        }
    };
    tokio::pin!(reader);
    tokio::select! {
        _ = &mut writer => {
            let _ = tokio::time::timeout(CLOSE_HANDSHAKE, reader).await;
        }
        _ = &mut reader => {}
    }
    for t in &tasks {
        t.abort();
    }
    writer.abort();
}

/// Pipes one port's connection into the pod; reports a failure on its error channel.
async fn forward(
    dial: Arc<dyn Dial>,
    target: Target,
    port: u16,
    (data_ch, error_ch): (u8, u8),
    input: mpsc::Receiver<axum::body::Bytes>,
    out: mpsc::Sender<Message>,
) {
    match dial.dial(&target.sandbox_id, port).await {
        Ok(tcp) => {
            forwarded::pipe(tcp, input, &out, |bytes| {
                Message::Binary(channel::frame(data_ch, bytes).into())
            })
            .await;
        }
        Err(e) => {
            let message = target.forward_error(port, e);
            let msg = Message::Binary(channel::frame(error_ch, message.as_bytes()).into());
            let _ = out.send(msg).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_from_the_query() {
        assert_eq!(parse_ports("ports=80").expect("one"), [80]);
        assert_eq!(
            parse_ports("ports=80,8080&ports=9000").expect("three"),
            [80, 8080, 9000]
        );
        assert_eq!(parse_ports("port=81").expect("kubelet's key"), [81]);
        assert!(matches!(parse_ports(""), Err(PortsError::Missing)));
        assert!(matches!(parse_ports("ports="), Err(PortsError::Empty)));
        assert!(matches!(
            parse_ports("ports=x"),
            Err(PortsError::Unparsable(_))
        ));
        assert!(matches!(
            parse_ports("ports=70000"),
            Err(PortsError::Unparsable(_))
        ));
        assert!(matches!(parse_ports("ports=0"), Err(PortsError::Zero(_))));
        let many = (1..=129)
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",");
        assert!(matches!(
            parse_ports(&format!("ports={many}")),
            Err(PortsError::TooMany)
        ));
        assert_eq!(channels(0), (0, 1));
        assert_eq!(channels(127), (254, 255));
    }
}
