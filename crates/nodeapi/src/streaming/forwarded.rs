//! The pod side of a forwarded connection, the same for both port-forward protocols (SPDY
//! streams and WebSocket channels): which pod, how its port is dialled, the failure text in
//! kubelet's words, and the pipe that carries the client's bytes in and the pod's bytes out
//! as the protocol's own messages.

use std::fmt::Display;
use std::sync::Arc;

use runtime::RuntimeService;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Largest piece of the pod's output put in one message.
const CHUNK: usize = 32 * 1024;

/// Which pod a session forwards to, for the runtime and for error texts.
#[derive(Debug, Clone)]
pub struct Target {
    pub sandbox_id: String,
    pub pod_name: String,
    pub pod_uid: String,
}

impl Target {
    /// kubelet's text for a port that could not be forwarded.
    pub fn forward_error(&self, port: impl Display, cause: impl Display) -> String {
        format!(
            "error forwarding port {port} to pod {}, uid {}: {cause}",
            self.pod_name, self.pod_uid
        )
    }
}

/// Opens the pod side of a forwarded connection: the runtime's `port_forward`, a fake in
/// tests.
#[async_trait::async_trait]
pub trait Dial: Send + Sync {
    async fn dial(&self, sandbox_id: &str, port: u16) -> Result<TcpStream, String>;
}

/// [`Dial`] through the container runtime.
pub struct RuntimeDial(pub Arc<dyn RuntimeService>);

#[async_trait::async_trait]
impl Dial for RuntimeDial {
    async fn dial(&self, sandbox_id: &str, port: u16) -> Result<TcpStream, String> {
        self.0
            .port_forward(sandbox_id, port)
            .await
            .map_err(|e| e.to_string())
    }
}

/// Carries one connection until the pod closes it or the client's side goes away: what
/// arrives on `input` is written to the pod (its end half-closes the pod side), and what the
/// pod writes goes to `out`, each piece wrapped by `message`.
pub async fn pipe<I, M>(
    tcp: TcpStream,
    mut input: mpsc::Receiver<I>,
    out: &mpsc::Sender<M>,
    message: impl Fn(&[u8]) -> M,
) where
    I: AsRef<[u8]> + Send + 'static,
{
    let (mut pod_rd, mut pod_wr) = tcp.into_split();
    let upstream = tokio::spawn(async move {
        while let Some(bytes) = input.recv().await {
            if pod_wr.write_all(bytes.as_ref()).await.is_err() {
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
                if out.send(message(&buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    }
    upstream.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes go both ways; the client's end half-closes the pod side, whose answer still
    /// comes back.
    #[tokio::test]
    async fn bytes_go_both_ways_and_input_end_half_closes() {
        let pod = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = pod.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut c, _) = pod.accept().await.expect("accept");
            let mut got = Vec::new();
            c.read_to_end(&mut got).await.expect("read");
            c.write_all(&got.repeat(2)).await.expect("write");
        });
        let tcp = TcpStream::connect(addr).await.expect("connect");
        let (in_tx, in_rx) = mpsc::channel::<Vec<u8>>(4);
        let (out_tx, mut out_rx) = mpsc::channel::<(u8, Vec<u8>)>(4);
        in_tx.send(b"ab".to_vec()).await.expect("send");
        drop(in_tx);
        pipe(tcp, in_rx, &out_tx, |b| (7, b.to_vec())).await;
        drop(out_tx);
        let mut seen = Vec::new();
        while let Some((tag, bytes)) = out_rx.recv().await {
            assert_eq!(tag, 7);
            seen.extend(bytes);
        }
        assert_eq!(seen, b"abab");
        server.await.expect("server");
    }

    #[test]
    fn failure_text_is_kubelets() {
        let target = Target {
            sandbox_id: "s".into(),
            pod_name: "web".into(),
            pod_uid: "u1".into(),
        };
        assert_eq!(
            target.forward_error(80, "connection refused"),
            "error forwarding port 80 to pod web, uid u1: connection refused"
        );
    }
}
