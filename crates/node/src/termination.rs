//! Termination messages (`terminationMessagePath`, `terminationMessagePolicy`) as kubelet
//! handles them: a host file per container attempt is bind-mounted at the path, read when the
//! container has exited (at most 4096 bytes) and shown as `state.terminated.message`; with
//! `FallbackToLogsOnError` an empty file on a failed exit falls back to the log's last
//! 80 lines (at most 2048 bytes). The file lives beside the attempt's log
//! (`<container>/<attempt>.termination-log`), so it goes when the pod's logs go.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::{ContainerConfig, Mount};

use crilog::pod_log_dir;

/// kubelet's cap on one container's termination message.
pub const MAX_MESSAGE: usize = 4096;
/// kubelet's fallback: the last 80 log lines, at most 2048 bytes.
pub const FALLBACK_LINES: usize = 80;
pub const FALLBACK_BYTES: usize = 2048;

/// The host file of an attempt whose log is `log_path` (`<n>.log` → `<n>.termination-log`).
pub fn message_file(log_path: &Path) -> PathBuf {
    log_path.with_extension("termination-log")
}

/// Creates the attempt's (empty, world-writable: the container may run as any user) file
/// and mounts it at `terminationMessagePath`.
pub fn add_mount(log_root: &Path, pod: &Pod, container: &Container, config: &mut ContainerConfig) {
    let Some(target) = container
        .termination_message_path
        .as_deref()
        .filter(|p| !p.is_empty())
    else {
        return;
    };
    let m = &pod.metadata;
    let dir = pod_log_dir(
        log_root,
        m.namespace.as_deref().unwrap_or_default(),
        m.name.as_deref().unwrap_or_default(),
        m.uid.as_deref().unwrap_or_default(),
    );
    let file = message_file(&dir.join(&config.log_path));
    let created = file
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::File::create(&file))
        .and_then(|f| f.set_permissions(std::fs::Permissions::from_mode(0o666)));
    if let Err(err) = created {
        // kubelet goes on without the mount too; the message will just be empty.
        tracing::warn!(file = %file.display(), error = %err, "creating termination message file failed");
        return;
    }
    config.mounts.push(Mount {
        host_path: file,
        container_path: target.to_string(),
        readonly: false,
        recursive_read_only: false,
    });
}

fn read_capped(path: &Path, max: usize) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let mut buf = Vec::new();
    f.by_ref()
        .take(u64::try_from(max).unwrap_or(u64::MAX))
        .read_to_end(&mut buf)
        .ok()?;
    Some(String::from_utf8_lossy(&buf).into_owned())
}

/// The message of an exited container: its file, else (with `fallback` and a failed exit)
/// the tail of its log.
pub fn read_message(c: &runtime::ContainerStatus, fallback: bool) -> Option<String> {
    let from_file = read_capped(&message_file(&c.log_path), MAX_MESSAGE).filter(|m| !m.is_empty());
    if from_file.is_some() {
        return from_file;
    }
    if fallback && c.exit_code.unwrap_or(0) != 0 {
        return log_tail(&c.log_path).filter(|m| !m.is_empty());
    }
    None
}

/// The last `FALLBACK_LINES` lines of a CRI log, at most `FALLBACK_BYTES` bytes, as the
/// container wrote them.
fn log_tail(path: &Path) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    let len = f.metadata().ok()?.len();
    // Each CRI line carries ~40 bytes of prefix: 64 KiB holds 80 lines of any sane log.
    let start = len.saturating_sub(64 * 1024);
    f.seek(SeekFrom::Start(start)).ok()?;
    let mut raw = Vec::new();
    f.read_to_end(&mut raw).ok()?;
    let mut text = String::new();
    for line in raw.split(|b| *b == b'\n') {
        if let Some(l) = crilog::parse_line(line) {
            text.push_str(&String::from_utf8_lossy(&l.content));
            if !l.partial {
                text.push('\n');
            }
        }
    }
    let lines: Vec<&str> = text.lines().collect();
    let mut tail = lines[lines.len().saturating_sub(FALLBACK_LINES)..].join("\n");
    if text.ends_with('\n') {
        tail.push('\n');
    }
    if tail.len() > FALLBACK_BYTES {
        let mut cut = tail.len() - FALLBACK_BYTES;
        while !tail.is_char_boundary(cut) {
            cut += 1;
        }
        tail = tail[cut..].to_string();
    }
    Some(tail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(dir: &Path, exit: i32) -> runtime::ContainerStatus {
        runtime::ContainerStatus {
            id: "c".into(),
            sandbox_id: "s".into(),
            config: ContainerConfig::default(),
            state: runtime::ContainerState::Exited,
            created_at: jiff::Timestamp::UNIX_EPOCH,
            started_at: None,
            finished_at: None,
            exit_code: Some(exit),
            reason: None,
            message: None,
            pid: None,
            log_path: dir.join("0.log"),
            user: None,
        }
    }

    #[test]
    fn file_wins_then_log_fallback_on_error_only() {
        let dir = tempfile::tempdir().expect("tmp");
        let c = status(dir.path(), 1);
        let mut log = String::new();
        for i in 0..100 {
            log.push_str(&format!(
                "2024-01-01T00:00:00.000000000Z stdout F line {i}\n"
            ));
        }
        std::fs::write(&c.log_path, log).expect("log");
        let tail = read_message(&c, true).expect("tail");
        assert!(tail.starts_with("line 20\n"), "{tail}");
        assert!(tail.ends_with("line 99\n"));
        assert_eq!(read_message(&c, false), None);
        assert_eq!(read_message(&status(dir.path(), 0), true), None);
        std::fs::write(message_file(&c.log_path), "bye").expect("msg");
        assert_eq!(read_message(&c, true).as_deref(), Some("bye"));
    }
}
