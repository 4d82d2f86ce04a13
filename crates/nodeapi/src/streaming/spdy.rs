//! A SPDY/3.1 framer, as far as kubectl's port-forward (and exec fallback) needs: control and
//! data frames, and name/value header blocks compressed with one zlib stream per direction
//! for the whole connection, primed with the SPDY/3 dictionary. Pure code over byte buffers;
//! the session logic lives in `portforward`.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// Frame header size (control and data frames alike).
const HEADER: usize = 8;
/// Largest header block we inflate (a bad peer cannot make us buffer without bound).
const MAX_HEADER_BLOCK: usize = 1 << 20;

/// Control frame types (SPDY/3 §2.6).
const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;
/// FLAG_FIN on data, SYN_STREAM and SYN_REPLY frames.
pub const FLAG_FIN: u8 = 0x01;
/// SETTINGS id of the initial per-stream window.
pub const SETTINGS_INITIAL_WINDOW_SIZE: u32 = 7;

/// The words of the SPDY/3 header dictionary, each stored with a 4-byte length prefix.
const DICT_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail: status codes and common values, stored as is.
const DICT_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service Unavailable",
    "Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat,",
    " Sun, GMT",
    "chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,",
    "text/plain,text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8",
    "charset=iso-8859-1,utf-,*,enq=0.",
);

/// The 1423-byte SPDY/3 zlib dictionary (Adler-32 0xe3c6a7c2).
pub fn dictionary() -> &'static [u8] {
    static DICT: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1423);
        for w in DICT_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICT_TAIL.as_bytes());
        d
    })
}

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    #[error("malformed {what} frame")]
    Malformed { what: &'static str },
    #[error("header block: {0}")]
    Inflate(#[source] flate2::DecompressError),
    #[error("header block: {0}")]
    Deflate(#[source] flate2::CompressError),
    #[error("header block larger than {MAX_HEADER_BLOCK} bytes")]
    TooLarge,
    #[error("header block after the end of the zlib stream")]
    StreamEnded,
}

pub type Headers = Vec<(String, String)>;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings(Vec<(u32, u32)>),
    Ping(u32),
    GoAway {
        last_good: u32,
        status: u32,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
    /// HEADERS and frame types we have no use for.
    Other,
}

/// Splits and decodes frames from one direction of a connection.
pub struct Decoder {
    inflate: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Self {
            inflate: Decompress::new(true),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Decoder {
    /// Decodes the first complete frame of `buf`, returning it and the bytes it used, or
    /// `None` when more bytes are needed.
    pub fn next(&mut self, buf: &[u8]) -> Result<Option<(Frame, usize)>, SpdyError> {
        if buf.len() < HEADER {
            return Ok(None);
        }
        let flags = buf[4];
        let len = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if buf.len() < HEADER + len {
            return Ok(None);
        }
        let body = &buf[HEADER..HEADER + len];
        let fin = flags & FLAG_FIN != 0;
        let frame = if buf[0] & 0x80 == 0 {
            Frame::Data {
                stream_id: u32_at(buf, 0) & 0x7fff_ffff,
                fin,
                data: body.to_vec(),
            }
        } else {
            let version = u16::from_be_bytes([buf[0] & 0x7f, buf[1]]);
            if version != 3 {
                return Err(SpdyError::Version(version));
            }
            let kind = u16::from_be_bytes([buf[2], buf[3]]);
            let need = |n: usize, what| {
                if body.len() < n {
                    Err(SpdyError::Malformed { what })
                } else {
                    Ok(())
                }
            };
            match kind {
                SYN_STREAM => {
                    need(10, "SYN_STREAM")?;
                    Frame::SynStream {
                        stream_id: u32_at(body, 0) & 0x7fff_ffff,
                        fin,
                        headers: self.headers(&body[10..])?,
                    }
                }
                SYN_REPLY => {
                    need(4, "SYN_REPLY")?;
                    Frame::SynReply {
                        stream_id: u32_at(body, 0) & 0x7fff_ffff,
                        fin,
                        headers: self.headers(&body[4..])?,
                    }
                }
                RST_STREAM => {
                    need(8, "RST_STREAM")?;
                    Frame::RstStream {
                        stream_id: u32_at(body, 0) & 0x7fff_ffff,
                        status: u32_at(body, 4),
                    }
                }
                SETTINGS => {
                    need(4, "SETTINGS")?;
                    let n = u32_at(body, 0) as usize;
                    need(4 + n.saturating_mul(8), "SETTINGS")?;
                    Frame::Settings(
                        (0..n)
                            .map(|i| {
                                let at = 4 + i * 8;
                                (u32_at(body, at) & 0x00ff_ffff, u32_at(body, at + 4))
                            })
                            .collect(),
                    )
                }
                PING => {
                    need(4, "PING")?;
                    Frame::Ping(u32_at(body, 0))
                }
                GOAWAY => {
                    need(8, "GOAWAY")?;
                    Frame::GoAway {
                        last_good: u32_at(body, 0) & 0x7fff_ffff,
                        status: u32_at(body, 4),
                    }
                }
                WINDOW_UPDATE => {
                    need(8, "WINDOW_UPDATE")?;
                    Frame::WindowUpdate {
                        stream_id: u32_at(body, 0) & 0x7fff_ffff,
                        delta: u32_at(body, 4) & 0x7fff_ffff,
                    }
                }
                HEADERS => {
                    // Its block still advances the shared zlib stream.
                    need(4, "HEADERS")?;
                    self.headers(&body[4..])?;
                    Frame::Other
                }
                _ => Frame::Other,
            }
        };
        Ok(Some((frame, HEADER + len)))
    }

    /// Inflates and parses one name/value block.
    fn headers(&mut self, block: &[u8]) -> Result<Headers, SpdyError> {
        let raw = self.inflate(block)?;
        parse_headers(&raw)
    }

    fn inflate(&mut self, mut input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        while !input.is_empty() {
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::TooLarge);
                }
                out.reserve(out.len().max(256));
            }
            let before = self.inflate.total_in();
            let produced_before = out.len();
            let primed = match self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => false,
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(dictionary())
                        .map_err(SpdyError::Inflate)?;
                    true
                }
                Err(e) => return Err(SpdyError::Inflate(e)),
            };
            let used = usize::try_from(self.inflate.total_in().saturating_sub(before))
                .unwrap_or(usize::MAX)
                .min(input.len());
            // Once the zlib stream has ended (or the inflater is stuck) nothing more is
            // consumed or produced: the rest of the block can never be read.
            if !primed && used == 0 && out.len() == produced_before {
                return Err(SpdyError::StreamEnded);
            }
            input = &input[used..];
        }
        Ok(out)
    }
}

fn parse_headers(raw: &[u8]) -> Result<Headers, SpdyError> {
    let bad = || SpdyError::Malformed {
        what: "header block",
    };
    let mut at = 0usize;
    let mut take = |n: usize| -> Result<&[u8], SpdyError> {
        let s = raw
            .get(at..at.checked_add(n).ok_or_else(bad)?)
            .ok_or_else(bad)?;
        at += n;
        Ok(s)
    };
    let count = u32_at(take(4)?, 0) as usize;
    let mut headers = Vec::new();
    for _ in 0..count {
        let n = u32_at(take(4)?, 0) as usize;
        let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
        let n = u32_at(take(4)?, 0) as usize;
        let value = String::from_utf8_lossy(take(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// Encodes frames for one direction of a connection (one zlib stream for its headers).
pub struct Encoder {
    deflate: Compress,
    primed: bool,
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            deflate: Compress::new(Compression::default(), true),
            primed: false,
        }
    }
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&[0x80, 3]);
    out.extend_from_slice(&kind.to_be_bytes());
    out.push(flags);
    out.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(body);
    out
}

impl Encoder {
    fn deflate(&mut self, raw: &[u8]) -> Result<Vec<u8>, SpdyError> {
        if !self.primed {
            self.deflate
                .set_dictionary(dictionary())
                .map_err(SpdyError::Deflate)?;
            self.primed = true;
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = raw;
        loop {
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            let before = self.deflate.total_in();
            self.deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(SpdyError::Deflate)?;
            let used = (self.deflate.total_in() - before) as usize;
            input = &input[used..];
            // A sync flush is complete once input is used and the output buffer was not
            // filled to the brim.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Serialises `frame` (SYN_STREAM, SYN_REPLY and HEADERS compress their headers).
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<u8>, SpdyError> {
        let flag = |fin: bool| if fin { FLAG_FIN } else { 0 };
        Ok(match frame {
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                let mut out = Vec::with_capacity(HEADER + data.len());
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.push(flag(*fin));
                out.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                out.extend_from_slice(data);
                out
            }
            Frame::SynStream {
                stream_id,
                fin,
                headers,
            } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend_from_slice(&[0; 6]);
                body.extend(self.deflate(&encode_headers(headers))?);
                control(SYN_STREAM, flag(*fin), &body)
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend(self.deflate(&encode_headers(headers))?);
                control(SYN_REPLY, flag(*fin), &body)
            }
            Frame::RstStream { stream_id, status } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, &body)
            }
            Frame::Settings(entries) => {
                let mut body = (entries.len() as u32).to_be_bytes().to_vec();
                for (id, value) in entries {
                    body.extend_from_slice(&(id & 0x00ff_ffff).to_be_bytes());
                    body.extend_from_slice(&value.to_be_bytes());
                }
                control(SETTINGS, 0, &body)
            }
            Frame::Ping(id) => control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last_good, status } => {
                let mut body = last_good.to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, &body)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut body = stream_id.to_be_bytes().to_vec();
                body.extend_from_slice(&delta.to_be_bytes());
                control(WINDOW_UPDATE, 0, &body)
            }
            Frame::Other => Vec::new(),
        })
    }
}

fn encode_headers(headers: &Headers) -> Vec<u8> {
    let mut raw = (headers.len() as u32).to_be_bytes().to_vec();
    for (name, value) in headers {
        raw.extend_from_slice(&(name.len() as u32).to_be_bytes());
        raw.extend_from_slice(name.to_ascii_lowercase().as_bytes());
        raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
        raw.extend_from_slice(value.as_bytes());
    }
    raw
}

/// The value of header `name` in a block.
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RST_STREAM status CANCEL.
    const CANCEL: u32 = 5;

    fn adler32(data: &[u8]) -> u32 {
        let (mut a, mut b) = (1u32, 0u32);
        for &x in data {
            a = (a + u32::from(x)) % 65521;
            b = (b + a) % 65521;
        }
        (b << 16) | a
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        assert_eq!(dictionary().len(), 1423);
        assert_eq!(adler32(dictionary()), 0xe3c6_a7c2);
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    }

    #[test]
    fn header_blocks_share_one_zlib_stream_per_direction() {
        let mut enc = Encoder::default();
        let mut dec = Decoder::default();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                fin: false,
                headers: hdrs(&[
                    ("streamtype", "error"),
                    ("port", "8080"),
                    ("requestid", "0"),
                ]),
            },
            Frame::SynStream {
                stream_id: 3,
                fin: false,
                headers: hdrs(&[("streamtype", "data"), ("port", "8080"), ("requestid", "0")]),
            },
            Frame::SynReply {
                stream_id: 3,
                fin: true,
                headers: vec![],
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: b"hello".to_vec(),
            },
            Frame::Ping(7),
            Frame::Settings(vec![(SETTINGS_INITIAL_WINDOW_SIZE, 0x7fff_ffff)]),
            Frame::RstStream {
                stream_id: 1,
                status: CANCEL,
            },
            Frame::GoAway {
                last_good: 3,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 100,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(enc.encode(f).expect("encode"));
        }
        // Decode from one buffer, frame after frame, as the session does.
        let mut got = Vec::new();
        let mut at = 0;
        while let Some((f, used)) = dec.next(&wire[at..]).expect("decode") {
            got.push(f);
            at += used;
        }
        assert_eq!(at, wire.len());
        assert_eq!(got, frames);
        assert_eq!(header(&hdrs(&[("port", "80")]), "port"), Some("80"));
    }

    #[test]
    fn partial_frames_wait_and_bad_input_errors() {
        let mut enc = Encoder::default();
        let wire = enc.encode(&Frame::Ping(1)).expect("encode");
        let mut dec = Decoder::default();
        assert!(dec.next(&wire[..5]).expect("partial").is_none());
        let mut bad = wire.clone();
        bad[1] = 2;
        assert!(matches!(dec.next(&bad), Err(SpdyError::Version(2))));
        // A SYN_STREAM whose block is not zlib data.
        let junk = control(SYN_STREAM, 0, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
        assert!(Decoder::default().next(&junk).is_err());
        assert!(parse_headers(&[0, 0, 0, 5]).is_err());
    }

    /// A peer that finishes the zlib stream (Z_FINISH) and keeps sending header bytes once
    /// made the inflate loop spin forever: nothing was consumed, and the input never shrank.
    #[test]
    fn header_bytes_after_the_end_of_the_zlib_stream_are_an_error() {
        let mut deflate = Compress::new(Compression::default(), true);
        deflate.set_dictionary(dictionary()).expect("dictionary");
        let raw = encode_headers(&hdrs(&[("streamtype", "data")]));
        let mut block = Vec::with_capacity(256);
        let status = deflate
            .compress_vec(&raw, &mut block, FlushCompress::Finish)
            .expect("deflate");
        assert_eq!(status, Status::StreamEnd);
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        body.extend_from_slice(&block);
        let mut dec = Decoder::default();
        let first = control(SYN_STREAM, 0, &body);
        assert!(matches!(
            dec.next(&first).expect("first block"),
            Some((Frame::SynStream { .. }, _))
        ));
        // Trailing garbage after the end in one block, and a whole second block.
        let mut trailing = body.clone();
        trailing.extend_from_slice(b"more");
        assert!(matches!(
            Decoder::default().next(&control(SYN_STREAM, 0, &trailing)),
            Err(SpdyError::StreamEnded)
        ));
        assert!(matches!(
            dec.next(&control(SYN_STREAM, 0, &body)),
            Err(SpdyError::StreamEnded)
        ));
    }
}
