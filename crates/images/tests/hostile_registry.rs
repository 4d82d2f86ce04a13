//! A registry that lies: it sends more bytes for a blob than the manifest declares. The pull
//! must stop at the declared size with a clear error and leave no blob or temp file behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use images::{ImageError, ImageStore, PullError};
use sha2::Digest as _;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Serves `routes` (path → (content type, body)) over plain HTTP/1.1 until dropped.
struct FakeRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeRegistry {
    fn start(routes: Vec<(String, &'static str, Vec<u8>)>) -> std::io::Result<Self> {
        let routes = Arc::new(routes);
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let routes = routes.clone();
                        // One thread per connection: clients keep connections alive.
                        std::thread::spawn(move || serve(conn, &routes));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for FakeRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers the requests of one keep-alive connection.
fn serve(conn: std::net::TcpStream, routes: &[(String, &'static str, Vec<u8>)]) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let mut content_length = 0usize;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let path = request.split_whitespace().nth(1).unwrap_or("");
        let found = routes.iter().find(|(p, _, _)| p == path);
        let response = match found {
            Some((_, ctype, data)) => {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\r\n",
                    data.len()
                )
                .into_bytes();
                r.extend_from_slice(data);
                r
            }
            None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
        };
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn a_blob_larger_than_declared_is_refused_and_not_kept() -> TestResult {
    let layer = vec![7u8; 256 * 1024];
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]}
    }))?;
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(&config), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": digest(&layer), "size": 1024}]
    }))?;
    let registry = FakeRegistry::start(vec![
        ("/v2/".to_owned(), "application/json", b"{}".to_vec()),
        (
            "/v2/liar/manifests/latest".to_owned(),
            "application/vnd.oci.image.manifest.v1+json",
            manifest,
        ),
        (
            format!("/v2/liar/blobs/{}", digest(&config)),
            "application/octet-stream",
            config,
        ),
        (
            format!("/v2/liar/blobs/{}", digest(&layer)),
            "application/octet-stream",
            layer.clone(),
        ),
    ])?;
    let tmp = tempfile::tempdir()?;
    let store = ImageStore::open(&tmp.path().join("images"))?.with_auth_file(None);
    let reference = format!("127.0.0.1:{}/liar:latest", registry.port);
    let err = store
        .pull(&reference, None)
        .await
        .expect_err("an oversized blob must fail the pull");
    match &err {
        ImageError::Pull(PullError::BlobTooLarge {
            digest: d, size, ..
        }) => {
            assert_eq!(d, &digest(&layer));
            assert_eq!(*size, 1024);
        }
        other => panic!("unexpected error: {other:?}"),
    }
    let blobs = tmp.path().join("images/blobs/sha256");
    let left: Vec<String> = std::fs::read_dir(&blobs)?
        .chain(std::fs::read_dir(tmp.path().join("images/blobs"))?)
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            n.contains(digest(&layer).trim_start_matches("sha256:")) || n.starts_with(".tmp")
        })
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(store.list()?.is_empty());
    Ok(())
}
