//! Running one plugin binary: the narrow seam between the CNI client and the processes it
//! starts, so the client's chaining and caching logic is tested with a fake.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long one plugin may run before it is killed (containerd gives the whole network
/// setup a similar bound; a hung plugin must not wedge a pod worker forever).
pub const PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// What a plugin run produced when it could run at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginOutput {
    pub success: bool,
    /// The plugin's stdout: its result on success, its error object on failure.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// Why a plugin could not be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("plugin {plugin:?} not found in {dirs:?}")]
    NotFound { plugin: String, dirs: Vec<PathBuf> },
    #[error("running plugin {path}")]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("plugin {path} did not finish within {timeout:?}")]
    Timeout { path: PathBuf, timeout: Duration },
}

/// Runs plugin binaries; `RealExec` in production, a recording fake in tests.
pub trait PluginExec: Send + Sync {
    /// The binary for plugin `plugin_type`: the first of `dirs` that has it (CNI_PATH order).
    fn find(&self, plugin_type: &str, dirs: &[PathBuf]) -> Result<PathBuf, ExecError> {
        dirs.iter()
            .map(|d| d.join(plugin_type))
            .find(|p| p.is_file())
            .ok_or_else(|| ExecError::NotFound {
                plugin: plugin_type.to_string(),
                dirs: dirs.to_vec(),
            })
    }

    /// Runs `path` with the CNI environment `env` and `stdin`, to completion.
    fn run(
        &self,
        path: &Path,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<PluginOutput, ExecError>;
}

/// Runs plugins as child processes (inheriting our environment, as libcni does, so they
/// find `iptables` on PATH).
#[derive(Debug, Clone, Copy, Default)]
pub struct RealExec;

impl PluginExec for RealExec {
    fn run(
        &self,
        path: &Path,
        env: &[(String, String)],
        stdin: &[u8],
    ) -> Result<PluginOutput, ExecError> {
        let spawn_err = |source| ExecError::Spawn {
            path: path.to_path_buf(),
            source,
        };
        let mut child = Command::new(path)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .current_dir("/")
            .spawn()
            .map_err(spawn_err)?;
        // Readers first, so a plugin writing a lot never blocks while we feed stdin.
        let out = child.stdout.take().map(reader);
        let err = child.stderr.take().map(reader);
        if let Some(mut input) = child.stdin.take() {
            // A plugin that exits without reading its config is judged by its exit status.
            let _ = input.write_all(stdin);
        }
        let deadline = Instant::now() + PLUGIN_TIMEOUT;
        let status = loop {
            match child.try_wait().map_err(spawn_err)? {
                Some(status) => break status,
                None if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ExecError::Timeout {
                        path: path.to_path_buf(),
                        timeout: PLUGIN_TIMEOUT,
                    });
                }
                None => std::thread::sleep(Duration::from_millis(2)),
            }
        };
        let join = |h: Option<std::thread::JoinHandle<Vec<u8>>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Ok(PluginOutput {
            success: status.success(),
            stdout: join(out),
            stderr: join(err),
        })
    }
}

fn reader(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}
