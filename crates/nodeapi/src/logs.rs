//! Reading CRI log files back for `kubectl logs`, with kubelet's options: `tailLines`,
//! `sinceTime`/`sinceSeconds`, `timestamps`, `limitBytes`, and `follow` that streams new
//! lines until the container has exited and the file is drained.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use jiff::Timestamp;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Parsed query of a log request (kubelet's `PodLogOptions` as far as files are concerned).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub tail_lines: Option<u64>,
    pub timestamps: bool,
    pub since: Option<Timestamp>,
    pub limit_bytes: Option<u64>,
}

/// Formats the complete lines of `data` for output, honouring `since`, `timestamps` and the
/// remaining byte budget. Returns the output and how many bytes of `data` were consumed
/// (an incomplete last line is left for later).
pub fn format_lines(data: &[u8], opts: &LogOptions, budget: &mut Option<u64>) -> (Vec<u8>, usize) {
    let mut out = Vec::new();
    let mut consumed = 0;
    while let Some(pos) = data[consumed..].iter().position(|b| *b == b'\n') {
        let line = &data[consumed..consumed + pos + 1];
        consumed += pos + 1;
        if budget == &Some(0) {
            break;
        }
        let Some(parsed) = crilog::parse_line(line) else {
            continue;
        };
        if opts.since.is_some_and(|since| parsed.time < since) {
            continue;
        }
        let mut piece = Vec::with_capacity(parsed.content.len() + 40);
        if opts.timestamps {
            piece.extend_from_slice(rfc3339_nano(parsed.time).as_bytes());
            piece.push(b' ');
        }
        piece.extend_from_slice(&parsed.content);
        if !parsed.partial {
            piece.push(b'\n');
        }
        if let Some(left) = budget.as_mut() {
            let take = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(piece.len());
            piece.truncate(take);
            *left -= take as u64;
        }
        out.extend_from_slice(&piece);
    }
    (out, consumed)
}

/// Whether the container writing a log file still runs (so `follow` should keep waiting).
#[async_trait]
pub trait ContainerLiveness: Send + Sync + 'static {
    async fn is_running(&self, log_path: &Path) -> bool;
}

/// Liveness from the runtime's container list.
pub struct RuntimeLiveness(pub Arc<dyn runtime::RuntimeService>);

#[async_trait]
impl ContainerLiveness for RuntimeLiveness {
    async fn is_running(&self, log_path: &Path) -> bool {
        match self.0.list_containers(None).await {
            Ok(list) => list.iter().any(|c| {
                c.log_path == log_path
                    && matches!(
                        c.state,
                        runtime::ContainerState::Running | runtime::ContainerState::Created
                    )
            }),
            // Unknown: stop following rather than hang forever.
            Err(_) => false,
        }
    }
}

/// How often a followed file is polled for new data.
pub const FOLLOW_POLL: Duration = Duration::from_millis(200);

/// How much of a log file is read at a time.
const CHUNK: usize = 256 * 1024;

/// Where the last `tail` lines of an open file begin, found by reading backwards from its end
/// in chunks (a `--tail` of a large log reads only what it shows). A final newline does not
/// start an empty last line.
pub async fn tail_start(file: &mut tokio::fs::File, tail: u64) -> std::io::Result<u64> {
    let len = file.seek(std::io::SeekFrom::End(0)).await?;
    if tail == 0 {
        return Ok(len);
    }
    let mut end = len;
    let mut seen = 0;
    let mut buf = vec![0u8; CHUNK];
    let mut skip_final = true;
    while end > 0 {
        let n = usize::try_from(end).unwrap_or(CHUNK).min(CHUNK);
        let from = end - n as u64;
        file.seek(std::io::SeekFrom::Start(from)).await?;
        file.read_exact(&mut buf[..n]).await?;
        for i in (0..n).rev() {
            if buf[i] != b'\n' {
                skip_final = false;
                continue;
            }
            if std::mem::take(&mut skip_final) {
                continue;
            }
            seen += 1;
            if seen == tail {
                return Ok(from + i as u64 + 1);
            }
        }
        end = from;
    }
    Ok(0)
}

/// Appends up to [`CHUNK`] bytes from `file` to `pending`; 0 at the end of the file.
async fn read_chunk(file: &mut tokio::fs::File, pending: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut chunk = vec![0u8; CHUNK];
    let n = file.read(&mut chunk).await?;
    pending.extend_from_slice(&chunk[..n]);
    Ok(n)
}

/// Whether `path` now names another file than the open one: the log was rotated (renamed
/// away and a new file started), as the kubelet notices before reopening.
async fn rotated(file: &tokio::fs::File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata().await, tokio::fs::metadata(path).await) {
        (Ok(open), Ok(now)) => open.ino() != now.ino() || open.dev() != now.dev(),
        _ => false,
    }
}

/// Streams a log file into `tx`: the initial content (tail/since applied), then, with
/// `follow`, new lines until the container is no longer running and the file is drained —
/// across rotations, continuing in the new file once the old one is drained.
/// Returns when done or when the receiver is gone.
pub async fn stream_log(
    path: PathBuf,
    opts: LogOptions,
    liveness: Arc<dyn ContainerLiveness>,
    tx: tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>,
) {
    let send_err = |e: std::io::Error| {
        let tx = tx.clone();
        async move {
            let _ = tx.send(Err(e)).await;
        }
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(f) => f,
        Err(e) => return send_err(e).await,
    };
    let start = match opts.tail_lines {
        Some(n) => tail_start(&mut file, n).await,
        None => Ok(0),
    };
    if let Err(e) = async { file.seek(std::io::SeekFrom::Start(start?)).await }.await {
        return send_err(e).await;
    }
    let mut budget = opts.limit_bytes;
    let mut pending = Vec::new();
    let mut finishing = false;
    loop {
        let read = match read_chunk(&mut file, &mut pending).await {
            Ok(n) => n,
            Err(e) => return send_err(e).await,
        };
        let (out, consumed) = format_lines(&pending, &opts, &mut budget);
        pending.drain(..consumed);
        if !out.is_empty() && tx.send(Ok(Bytes::from(out))).await.is_err() {
            return;
        }
        if read > 0 && budget != Some(0) {
            continue;
        }
        if !opts.follow || budget == Some(0) || finishing {
            if !pending.is_empty() && budget != Some(0) {
                pending.push(b'\n');
                let (out, _) = format_lines(&pending, &opts, &mut budget);
                let _ = tx.send(Ok(Bytes::from(out))).await;
            }
            return;
        }
        // At the end of the file.
        if rotated(&file, &path).await {
            // The writer renamed the file away and writes the new one only: what it appended
            // to the old one before the rename is still unread, so drain it, then go on in
            // the new file.
            if let Err(e) = file.read_to_end(&mut pending).await {
                return send_err(e).await;
            }
            match tokio::fs::File::open(&path).await {
                Ok(f) => file = f,
                Err(e) => return send_err(e).await,
            }
            continue;
        }
        // Stop once the container is gone (one more round then drains what it wrote last).
        if !liveness.is_running(&path).await {
            finishing = true;
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(FOLLOW_POLL) => {}
            _ = tx.closed() => return,
        }
        // Re-seek to the current position: some filesystems need it to see appends.
        if let Err(e) = file.seek(std::io::SeekFrom::Current(0)).await {
            return send_err(e).await;
        }
    }
}

/// kubelet's `--timestamps` format: always nine fractional digits, UTC.
pub fn rfc3339_nano(t: Timestamp) -> String {
    format!(
        "{}.{:09}Z",
        t.strftime("%Y-%m-%dT%H:%M:%S"),
        t.subsec_nanosecond()
    )
}

/// Parses Go's `strconv.ParseBool` spellings, as the apiserver's query decoding accepts them.
pub fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" | "" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte offset where the last `tail` lines of `data` begin (the whole data when `None`).
    fn tail_offset(data: &[u8], tail: Option<u64>) -> usize {
        let Some(tail) = tail else { return 0 };
        if tail == 0 {
            return data.len();
        }
        // Skip a final newline so it does not count as an empty last line.
        let end = if data.ends_with(b"\n") {
            data.len() - 1
        } else {
            data.len()
        };
        let mut seen = 0;
        for (i, b) in data[..end].iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                if seen == tail {
                    return i + 1;
                }
            }
        }
        0
    }

    /// Reads a whole log file at once (no follow).
    fn read_log(path: &Path, opts: &LogOptions) -> std::io::Result<Vec<u8>> {
        let data = std::fs::read(path)?;
        let start = tail_offset(&data, opts.tail_lines);
        let mut budget = opts.limit_bytes;
        let (mut out, consumed) = format_lines(&data[start..], opts, &mut budget);
        // A last line without newline (file being written) is still shown, as kubelet does.
        let rest = &data[start + consumed..];
        if !rest.is_empty() && budget != Some(0) {
            let mut line = rest.to_vec();
            line.push(b'\n');
            out.extend(format_lines(&line, opts, &mut budget).0);
        }
        Ok(out)
    }
    use crilog::{format_line, Stream};
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("time")
    }

    fn sample() -> Vec<u8> {
        let mut data = Vec::new();
        data.extend(format_line(t(0), Stream::Stdout, false, b"one"));
        data.extend(format_line(t(1), Stream::Stderr, false, b"two"));
        data.extend(format_line(t(2), Stream::Stdout, true, b"thr"));
        data.extend(format_line(t(2), Stream::Stdout, false, b"ee"));
        data.extend(format_line(t(3), Stream::Stdout, false, b"four"));
        data
    }

    fn write_sample(dir: &Path) -> PathBuf {
        let path = dir.join("0.log");
        std::fs::write(&path, sample()).expect("write");
        path
    }

    #[test]
    fn reads_whole_tail_since_and_limit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_sample(dir.path());
        let all = read_log(&path, &LogOptions::default()).expect("read");
        assert_eq!(all, b"one\ntwo\nthree\nfour\n");
        let tail = read_log(
            &path,
            &LogOptions {
                tail_lines: Some(2),
                ..Default::default()
            },
        )
        .expect("read");
        assert_eq!(tail, b"ee\nfour\n");
        let none = read_log(
            &path,
            &LogOptions {
                tail_lines: Some(0),
                ..Default::default()
            },
        )
        .expect("read");
        assert!(none.is_empty());
        let many = read_log(
            &path,
            &LogOptions {
                tail_lines: Some(100),
                ..Default::default()
            },
        )
        .expect("read");
        assert_eq!(many, all);
        let since = read_log(
            &path,
            &LogOptions {
                since: Some(t(2)),
                ..Default::default()
            },
        )
        .expect("read");
        assert_eq!(since, b"three\nfour\n");
        let limited = read_log(
            &path,
            &LogOptions {
                limit_bytes: Some(6),
                ..Default::default()
            },
        )
        .expect("read");
        assert_eq!(limited, b"one\ntw");
    }

    #[test]
    fn timestamps_prefix_each_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_sample(dir.path());
        let out = read_log(
            &path,
            &LogOptions {
                timestamps: true,
                tail_lines: Some(1),
                ..Default::default()
            },
        )
        .expect("read");
        assert_eq!(
            String::from_utf8_lossy(&out),
            "2023-11-14T22:13:23.000000000Z four\n"
        );
    }

    struct Flag(AtomicBool);

    #[async_trait]
    impl ContainerLiveness for Flag {
        async fn is_running(&self, _: &Path) -> bool {
            self.0.load(Ordering::SeqCst)
        }
    }

    type Rx = tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>;

    async fn recv(rx: &mut Rx, deadline: tokio::time::Instant, got: &mut Vec<u8>, want: &[u8]) {
        while !got.ends_with(want) {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(Ok(b))) => got.extend_from_slice(&b),
                other => panic!("stream ended early: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn follow_streams_until_exit_and_drains() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_sample(dir.path());
        let live = Arc::new(Flag(AtomicBool::new(true)));
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        let task = tokio::spawn(stream_log(path.clone(), opts, live.clone(), tx));
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        recv(&mut rx, deadline, &mut got, b"four\n").await;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        f.write_all(&format_line(t(4), Stream::Stdout, false, b"five"))
            .expect("append");
        recv(&mut rx, deadline, &mut got, b"five\n").await;
        // The container exits after writing a last line: it is drained, then the stream ends.
        f.write_all(&format_line(t(5), Stream::Stdout, false, b"six"))
            .expect("append");
        live.0.store(false, Ordering::SeqCst);
        recv(&mut rx, deadline, &mut got, b"six\n").await;
        assert_eq!(got, b"four\nfive\nsix\n");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stream ended")
            .expect("join");
    }

    #[tokio::test]
    async fn tail_start_reads_backwards_like_tail_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Lines long enough that the tail crosses several chunks.
        let mut data = Vec::new();
        for i in 0..2000u32 {
            let line = format!("line {i} {}", "x".repeat((i % 700) as usize));
            data.extend(format_line(
                t(i64::from(i)),
                Stream::Stdout,
                false,
                line.as_bytes(),
            ));
        }
        for (name, content) in [
            ("big", data.clone()),
            ("partial", b"a\nb".to_vec()),
            ("empty", Vec::new()),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, &content).expect("write");
            for tail in [0, 1, 2, 3, 500, 1999, 2000, 5000] {
                let mut f = tokio::fs::File::open(&path).await.expect("open");
                let got = tail_start(&mut f, tail).await.expect("tail");
                assert_eq!(
                    got as usize,
                    tail_offset(&content, Some(tail)),
                    "{name} tail {tail}"
                );
            }
        }
    }

    #[tokio::test]
    async fn follow_goes_on_in_the_new_file_after_a_rotation() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_sample(dir.path());
        let live = Arc::new(Flag(AtomicBool::new(true)));
        let (tx, mut rx) = tokio::sync::mpsc::channel(16);
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(1),
            ..Default::default()
        };
        let task = tokio::spawn(stream_log(path.clone(), opts, live.clone(), tx));
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        recv(&mut rx, deadline, &mut got, b"four\n").await;
        // The writer finishes the old file, renames it away and starts a new one.
        let mut old = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .expect("open");
        old.write_all(&format_line(t(4), Stream::Stdout, false, b"five"))
            .expect("append");
        std::fs::rename(&path, dir.path().join("0.log.20260101-000000")).expect("rotate");
        std::fs::write(&path, format_line(t(5), Stream::Stdout, false, b"six")).expect("new");
        recv(&mut rx, deadline, &mut got, b"six\n").await;
        live.0.store(false, Ordering::SeqCst);
        assert_eq!(got, b"four\nfive\nsix\n");
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stream ended")
            .expect("join");
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("true"), Some(true));
        assert_eq!(parse_bool("1"), Some(true));
        assert_eq!(parse_bool("false"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
