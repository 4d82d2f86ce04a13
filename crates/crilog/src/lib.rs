//! CRI log format (`<RFC3339Nano> <stdout|stderr> <F|P> <content>\n`), as kubelet and CRI
//! runtimes write container logs: the shim writes lines as a container produces bytes, the
//! node agent parses them back for `kubectl logs`. `layout` places the files on disk.

mod layout;
mod rotation;

pub use layout::{log_attempts, pod_log_dir};
pub use rotation::{rotated_files, Rotation};

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// Longest content kept in one line before it is split into partial (`P`) lines, as
/// containerd does with its 16 KiB buffer.
pub const MAX_LINE: usize = 16 * 1024;

/// One parsed log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub time: jiff::Timestamp,
    pub stream: Stream,
    /// `P`: the content continues in the next line of the same stream.
    pub partial: bool,
    /// Content without the trailing newline.
    pub content: Vec<u8>,
}

/// Formats one line: time with nanoseconds in UTC, stream, tag, content, newline.
pub fn format_line(
    time: jiff::Timestamp,
    stream: Stream,
    partial: bool,
    content: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 48);
    out.extend_from_slice(format_time(time).as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(if partial { b" P " } else { b" F " });
    out.extend_from_slice(content);
    out.push(b'\n');
    out
}

/// RFC 3339 with nine fractional digits, as `kubectl logs --timestamps` prints.
pub fn format_time(time: jiff::Timestamp) -> String {
    time.strftime("%Y-%m-%dT%H:%M:%S.%9fZ").to_string()
}

/// Parses one line (with or without its trailing newline); `None` when malformed.
pub fn parse_line(line: &[u8]) -> Option<LogLine> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let mut parts = line.splitn(4, |b| *b == b' ');
    // RFC 3339's four-digit year: the parser would also take a signed extended year
    // (`-002026-…`), which no runtime writes and the line's format would not give back.
    let time = parts
        .next()
        .filter(|t| t.first().is_some_and(u8::is_ascii_digit))?;
    let time = std::str::from_utf8(time).ok()?.parse().ok()?;
    let stream = match parts.next()? {
        b"stdout" => Stream::Stdout,
        b"stderr" => Stream::Stderr,
        _ => return None,
    };
    let partial = match parts.next()? {
        b"P" => true,
        b"F" => false,
        _ => return None,
    };
    let content = parts.next().unwrap_or_default().to_vec();
    Some(LogLine {
        time,
        stream,
        partial,
        content,
    })
}

/// The mode of container log files.
pub const LOG_MODE: u32 = 0o640;

/// Gives every log file under `log_root` (`<pod>/<container>/<n>.log` and rotated
/// `<n>.log.*`) [`LOG_MODE`]: those an older version wrote keep the umask's mode otherwise.
/// Errors are per file and skipped; the next open fixes that file too.
pub fn secure_log_modes(log_root: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let children = |dir: &Path| -> Vec<(std::path::PathBuf, std::fs::FileType)> {
        std::fs::read_dir(dir)
            .map(|it| {
                it.flatten()
                    .filter_map(|e| Some((e.path(), e.file_type().ok()?)))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (pod, kind) in children(log_root) {
        if !kind.is_dir() {
            continue;
        }
        for (container, kind) in children(&pod) {
            if !kind.is_dir() {
                continue;
            }
            for (file, kind) in children(&container) {
                let is_log = file
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.contains(".log"));
                if kind.is_file() && is_log {
                    let _ =
                        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(LOG_MODE));
                }
            }
        }
    }
}

/// Appends a container's output to its log file, one CRI line per output line. Bytes after the
/// last newline wait in a per-stream buffer until the line completes, is too long, or
/// `flush_partial` is called (when the stream closes).
pub struct LogWriter {
    file: File,
    path: PathBuf,
    /// Bytes in the current file.
    size: u64,
    rotation: Option<Rotation>,
    pending: [Vec<u8>; 2],
}

/// Opens (creating, appending) a log file, readable by the owner's group as the kubelet's
/// ([`LOG_MODE`]), a file left by an older version included.
fn open_log(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::PermissionsExt;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(LOG_MODE)
        .open(path)?;
    if file.metadata()?.permissions().mode() & 0o7777 != LOG_MODE {
        file.set_permissions(std::fs::Permissions::from_mode(LOG_MODE))?;
    }
    Ok(file)
}

impl LogWriter {
    /// Opens (creating, appending) the log file; with `rotation`, rotates it as it grows.
    pub fn open(path: &Path, rotation: Option<Rotation>) -> io::Result<Self> {
        let file = open_log(path)?;
        let size = file.metadata()?.len();
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            rotation,
            pending: [Vec::new(), Vec::new()],
        })
    }

    /// Appends `out`, first rotating the file if `out` would take it past the size.
    fn append(&mut self, out: &[u8], time: jiff::Timestamp) -> io::Result<()> {
        if let Some(r) = self.rotation {
            if self.size > 0 && self.size + out.len() as u64 > r.max_size {
                if let Some(rotated) = rotation::rotated_path(&self.path, time) {
                    std::fs::rename(&self.path, &rotated)?;
                    self.file = open_log(&self.path)?;
                    self.size = 0;
                    rotation::prune(&self.path, r.max_files)?;
                }
            }
        }
        self.file.write_all(out)?;
        self.size += out.len() as u64;
        Ok(())
    }

    fn slot(stream: Stream) -> usize {
        match stream {
            Stream::Stdout => 0,
            Stream::Stderr => 1,
        }
    }

    /// Writes the complete lines in `data` (after whatever was pending for `stream`).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        self.write_at(jiff::Timestamp::now(), stream, data)
    }

    /// `write` with an explicit time (for tests).
    pub fn write_at(
        &mut self,
        time: jiff::Timestamp,
        stream: Stream,
        data: &[u8],
    ) -> io::Result<()> {
        let slot = Self::slot(stream);
        let mut out = Vec::new();
        let mut rest = data;
        while let Some(pos) = rest.iter().position(|b| *b == b'\n') {
            let pending = &mut self.pending[slot];
            pending.extend_from_slice(&rest[..pos]);
            emit(&mut out, time, stream, pending);
            rest = &rest[pos + 1..];
        }
        let pending = &mut self.pending[slot];
        pending.extend_from_slice(rest);
        while pending.len() >= MAX_LINE {
            let tail = pending.split_off(MAX_LINE);
            out.extend_from_slice(&format_line(time, stream, true, pending));
            *pending = tail;
        }
        if !out.is_empty() {
            self.append(&out, time)?;
        }
        Ok(())
    }

    /// Writes what is pending for `stream` (the stream ended without a newline) as a partial
    /// (`P`) line, as containerd does: no newline was written, so readers add none, and
    /// `kubectl logs` and a `FallbackToLogsOnError` message show `echo -n DONE` as `DONE`.
    pub fn flush_partial(&mut self, stream: Stream) -> io::Result<()> {
        let slot = Self::slot(stream);
        if self.pending[slot].is_empty() {
            return Ok(());
        }
        let now = jiff::Timestamp::now();
        let out = format_line(now, stream, true, &self.pending[slot]);
        self.pending[slot].clear();
        self.append(&out, now)
    }
}

fn emit(out: &mut Vec<u8>, time: jiff::Timestamp, stream: Stream, pending: &mut Vec<u8>) {
    out.extend_from_slice(&format_line(time, stream, false, pending));
    pending.clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fuzz findings: signed extended years parsed, and formatted back otherwise.
    #[test]
    fn signed_extended_years_are_no_log_line() {
        for line in [
            &b"-002026-12-08T12:00:00.89Z stdout F x"[..],
            b"-000026-11-06T12:09Z stdout F he",
            b"+002026-12-03T12:00:09Z stdout F x",
        ] {
            assert_eq!(parse_line(line), None, "{}", String::from_utf8_lossy(line));
        }
        assert!(parse_line(b"2026-12-03T12:00:09Z stdout F x").is_some());
    }

    #[test]
    fn log_files_are_0640_new_or_old() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        let new = dir.path().join("0.log");
        LogWriter::open(&new, None).expect("open new");
        assert_eq!(mode(&new), 0o640);
        let old = dir.path().join("1.log");
        std::fs::write(&old, "").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        LogWriter::open(&old, None).expect("open old");
        assert_eq!(mode(&old), 0o640);

        let c = dir.path().join("ns_pod_uid/main");
        std::fs::create_dir_all(&c).expect("dirs");
        for name in ["0.log", "1.log.20261203-120000"] {
            std::fs::write(c.join(name), "").expect("write");
            std::fs::set_permissions(c.join(name), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        secure_log_modes(dir.path());
        assert_eq!(mode(&c.join("0.log")), 0o640);
        assert_eq!(mode(&c.join("1.log.20261203-120000")), 0o640);
    }

    #[test]
    fn round_trip() {
        let t: jiff::Timestamp = "2026-11-22T01:51:44.652224000Z".parse().expect("time");
        let line = format_line(t, Stream::Stderr, false, b"hello world");
        assert_eq!(
            line,
            b"2026-11-22T01:51:44.652224000Z stderr F hello world\n"
        );
        let parsed = parse_line(&line).expect("parse");
        assert_eq!(parsed.time, t);
        assert_eq!(parsed.stream, Stream::Stderr);
        assert!(!parsed.partial);
        assert_eq!(parsed.content, b"hello world");
        assert_eq!(parse_line(b"garbage"), None);
    }

    #[test]
    fn writer_splits_lines_and_keeps_partials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, None).expect("open");
        let t: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        w.write_at(t, Stream::Stdout, b"a\nb").expect("write");
        w.write_at(t, Stream::Stderr, b"err\n").expect("write");
        w.write_at(t, Stream::Stdout, b"c\n").expect("write");
        w.write_at(t, Stream::Stdout, b"tail").expect("write");
        w.flush_partial(Stream::Stdout).expect("flush");
        let text = std::fs::read(&path).expect("read");
        let lines: Vec<LogLine> = text
            .split_inclusive(|b| *b == b'\n')
            .filter_map(parse_line)
            .collect();
        let contents: Vec<&[u8]> = lines.iter().map(|l| l.content.as_slice()).collect();
        assert_eq!(contents, vec![&b"a"[..], b"err", b"bc", b"tail"]);
        assert_eq!(lines[1].stream, Stream::Stderr);
        let partial: Vec<bool> = lines.iter().map(|l| l.partial).collect();
        assert_eq!(
            partial,
            [false, false, false, true],
            "an unterminated end stays partial"
        );
    }

    #[test]
    fn long_lines_become_partials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let mut w = LogWriter::open(&path, None).expect("open");
        let big = vec![b'x'; MAX_LINE + 10];
        w.write(Stream::Stdout, &big).expect("write");
        w.write(Stream::Stdout, b"\n").expect("write");
        let text = std::fs::read(&path).expect("read");
        let lines: Vec<LogLine> = text
            .split_inclusive(|b| *b == b'\n')
            .filter_map(parse_line)
            .collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].partial);
        assert_eq!(
            lines[0].content.len() + lines[1].content.len(),
            MAX_LINE + 10
        );
    }

    #[test]
    fn writer_rotates_past_the_size_and_keeps_max_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("0.log");
        let rotation = Rotation {
            max_size: 210,
            max_files: 3,
        };
        let mut w = LogWriter::open(&path, Some(rotation)).expect("open");
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("time");
        // Each line is 69 bytes: three fit in 210, the fourth starts a new file. One write
        // per second, so every rotation gets its own name.
        for i in 0..20i64 {
            let t = start + jiff::SignedDuration::from_secs(i);
            w.write_at(
                t,
                Stream::Stdout,
                format!("line {i:02} {}\n", "x".repeat(20)).as_bytes(),
            )
            .expect("write");
        }
        let current = std::fs::read_to_string(&path).expect("current");
        assert!(current.len() <= 210, "{current}");
        assert!(current.ends_with(&format!("line 19 {}\n", "x".repeat(20))));
        let rotated = rotated_files(&path);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        for r in &rotated {
            let text = std::fs::read_to_string(r).expect("rotated");
            assert_eq!(text.lines().count(), 3, "{text}");
        }
        // Every line is in exactly one kept file, newest last.
        let mut kept: Vec<String> = rotated
            .iter()
            .flat_map(|r| {
                std::fs::read_to_string(r)
                    .expect("read")
                    .lines()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect();
        kept.extend(current.lines().map(str::to_string));
        let numbers: Vec<&str> = kept.iter().filter_map(|l| l.split(' ').nth(4)).collect();
        assert_eq!(numbers, ["12", "13", "14", "15", "16", "17", "18", "19"]);
        // A reopened writer continues the current file's size.
        drop(w);
        let mut again = LogWriter::open(&path, Some(rotation)).expect("reopen");
        for i in [20, 21] {
            let t = start + jiff::SignedDuration::from_secs(100 + i);
            again
                .write_at(
                    t,
                    Stream::Stdout,
                    format!("line {i} {}\n", "x".repeat(20)).as_bytes(),
                )
                .expect("write");
        }
        assert_eq!(
            std::fs::read_to_string(&path)
                .expect("read")
                .lines()
                .count(),
            1
        );
    }
}

#[cfg(test)]
mod time_tests {
    #[test]
    fn nine_fractional_digits_always() {
        let t: jiff::Timestamp = "2026-01-01T00:00:23Z".parse().expect("time");
        assert_eq!(super::format_time(t), "2026-01-01T00:00:23.000000000Z");
    }
}
