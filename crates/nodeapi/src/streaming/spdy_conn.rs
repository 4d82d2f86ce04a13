//! The server side of one SPDY/3.1 connection, shared by port-forward and by exec/attach over
//! SPDY: frames read off the wire one at a time, one writer task (so header blocks enter the
//! connection's zlib stream in the order they hit the wire), the opening SETTINGS, and the
//! answer to each stream the client opens (kubectl blocks until every stream is answered).

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::spdy::{self, Decoder, Encoder, Frame};

/// RST_STREAM status REFUSED_STREAM (SPDY/3 §2.4.2).
pub const REFUSED_STREAM: u32 = 3;
/// Bytes read from the connection at a time.
const READ_CHUNK: usize = 32 * 1024;

/// Decodes the frames a client sends.
pub struct FrameReader<R> {
    rd: R,
    dec: Decoder,
    buf: Vec<u8>,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    pub fn new(rd: R) -> Self {
        Self {
            rd,
            dec: Decoder::default(),
            buf: Vec::with_capacity(64 * 1024),
        }
    }

    /// The next frame; `None` once the client closed the connection or sent bytes that are
    /// not SPDY. Cancel-safe: a frame is only taken off the buffer when it is returned, and
    /// the only wait is the read itself.
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            match self.dec.next(&self.buf) {
                Ok(Some((frame, used))) => {
                    self.buf.drain(..used);
                    return Some(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY: bad input");
                    return None;
                }
            }
            let mut chunk = [0u8; READ_CHUNK];
            match self.rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }
}

/// Starts the connection's writer and sends the opening SETTINGS: our receive windows are
/// never the limit, so we never send WINDOW_UPDATEs. Frames sent on the returned sender go
/// out in order; the writer ends (and shuts the connection down) once every sender is gone.
pub async fn start_writer<W>(wr: W) -> (mpsc::Sender<Frame>, tokio::task::JoinHandle<()>)
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (out, rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_frames(wr, rx));
    let _ = out
        .send(Frame::Settings(vec![(
            spdy::SETTINGS_INITIAL_WINDOW_SIZE,
            0x7fff_ffff,
        )]))
        .await;
    (out, writer)
}

/// Writes frames in order through one encoder.
async fn write_frames<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Frame>) {
    let mut enc = Encoder::default();
    while let Some(frame) = rx.recv().await {
        let bytes = match enc.encode(&frame) {
            Ok(b) => b,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY: encoding a frame");
                break;
            }
        };
        if wr.write_all(&bytes).await.is_err() || wr.flush().await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// Answers a stream the client opened: a SYN_REPLY, or REFUSED_STREAM when the session has
/// no room for it.
pub async fn answer(out: &mpsc::Sender<Frame>, stream_id: u32, accept: bool) {
    let frame = if accept {
        Frame::SynReply {
            stream_id,
            fin: false,
            headers: Vec::new(),
        }
    } else {
        Frame::RstStream {
            stream_id,
            status: REFUSED_STREAM,
        }
    };
    let _ = out.send(frame).await;
}

/// An empty DATA frame with FIN: the end of a stream.
pub fn fin(stream_id: u32) -> Frame {
    Frame::Data {
        stream_id,
        fin: true,
        data: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames split across reads and several frames in one read all come out, in order.
    #[tokio::test]
    async fn frames_come_out_whole_and_in_order() {
        let mut enc = Encoder::default();
        let mut wire = Vec::new();
        for id in [1u32, 3, 5] {
            wire.extend(enc.encode(&fin(id)).expect("encode"));
        }
        wire.extend(enc.encode(&Frame::Ping(7)).expect("encode"));
        let (client, server) = tokio::io::duplex(64);
        let feeder = tokio::spawn(async move {
            let mut client = client;
            for piece in wire.chunks(5) {
                client.write_all(piece).await.expect("write");
            }
        });
        let mut reader = FrameReader::new(server);
        let mut seen = Vec::new();
        while let Some(frame) = reader.next().await {
            seen.push(frame);
        }
        feeder.await.expect("feeder");
        assert_eq!(seen, vec![fin(1), fin(3), fin(5), Frame::Ping(7)]);
    }

    /// Garbage ends the connection instead of spinning.
    #[tokio::test]
    async fn bad_input_ends_the_reader() {
        let (mut client, server) = tokio::io::duplex(64);
        client
            .write_all(&[0x80, 0x09, 0, 1, 0, 0, 0, 0])
            .await
            .expect("write");
        let mut reader = FrameReader::new(server);
        assert!(reader.next().await.is_none());
    }
}
