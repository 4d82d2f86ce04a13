//! The runtime's side of the shim protocol: one connection per request, a JSON line out and
//! a JSON line back, with a deadline so a wedged shim cannot hang the agent.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use shim::protocol::{Request, Response, MAX_MESSAGE};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Longest socket path `connect` takes directly (sun_path is 108 bytes with the NUL).
const MAX_SUN_PATH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("talking to {path}: {source}")]
    Exchange {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("no answer from {path} within {timeout:?}")]
    Timeout { path: String, timeout: Duration },
    #[error("bad answer from {path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: serde_json::Error,
    },
}

/// Sends `request` to the shim listening on `socket` and returns its response.
pub async fn call(
    socket: &Path,
    request: &Request,
    timeout: Duration,
) -> Result<Response, ClientError> {
    let path = socket.display().to_string();
    match tokio::time::timeout(timeout, exchange(socket, request, &path)).await {
        Ok(r) => r,
        Err(_) => Err(ClientError::Timeout { path, timeout }),
    }
}

async fn exchange(socket: &Path, request: &Request, path: &str) -> Result<Response, ClientError> {
    let stream = connect(socket)
        .await
        .map_err(|source| ClientError::Connect {
            path: path.into(),
            source,
        })?;
    let exchange_err = |source| ClientError::Exchange {
        path: path.into(),
        source,
    };
    let mut line = serde_json::to_vec(request).map_err(|e| exchange_err(io::Error::other(e)))?;
    line.push(b'\n');
    let (read, mut write) = stream.into_split();
    write.write_all(&line).await.map_err(exchange_err)?;
    let mut answer = String::new();
    BufReader::new(read.take(MAX_MESSAGE))
        .read_line(&mut answer)
        .await
        .map_err(exchange_err)?;
    serde_json::from_str(&answer).map_err(|source| ClientError::Decode {
        path: path.into(),
        source,
    })
}

async fn connect(socket: &Path) -> io::Result<UnixStream> {
    if socket.as_os_str().len() < MAX_SUN_PATH {
        return UnixStream::connect(socket).await;
    }
    // Too long for sun_path: go through our fd of its directory instead.
    let dir = socket
        .parent()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let name = socket
        .file_name()
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
    let dir_fd = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(dir_fd.as_raw_fd().to_string())
        .join(name);
    let result = UnixStream::connect(&short).await;
    drop(dir_fd);
    result
}
