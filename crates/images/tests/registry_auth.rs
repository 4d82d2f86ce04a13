//! Pulls from a loopback registry that demands credentials, by HTTP Basic auth or by the
//! Bearer token flow (`WWW-Authenticate: Bearer realm=…` sends the client to a token
//! endpoint with its user and password): right credentials pull, none or wrong ones give
//! an unauthorized error that says which, and an auth file's matching entries are tried most
//! specific first.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use images::{Credentials, ImageError, ImageStore, PullError};
use sha2::Digest as _;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const USER: &str = "alice";
const PASSWORD: &str = "s3cret";
const TOKEN: &str = "token-for-alice";

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

#[derive(Clone, Copy, PartialEq)]
enum Scheme {
    Basic,
    Bearer,
}

/// A registry serving one image `app:latest` to clients that authenticate by `scheme`.
struct AuthRegistry {
    port: u16,
    stop: Arc<AtomicBool>,
    /// `(path with query, Authorization header)` of every request.
    seen: Arc<Mutex<Vec<(String, String)>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Routes {
    scheme: Scheme,
    port: u16,
    files: Vec<(String, &'static str, Vec<u8>)>,
}

impl AuthRegistry {
    fn start(scheme: Scheme) -> std::io::Result<Self> {
        let layer = vec![5u8; 4096];
        let config = serde_json::to_vec(&serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Cmd": ["sh"]},
            "rootfs": {"type": "layers", "diff_ids": [digest(&layer)]}
        }))?;
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": digest(&config), "size": config.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": digest(&layer), "size": layer.len()}]
        }))?;
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let routes = Arc::new(Routes {
            scheme,
            port,
            files: vec![
                (
                    "/v2/app/manifests/latest".to_owned(),
                    "application/vnd.oci.image.manifest.v1+json",
                    manifest,
                ),
                (
                    format!("/v2/app/blobs/{}", digest(&config)),
                    "application/octet-stream",
                    config,
                ),
                (
                    format!("/v2/app/blobs/{}", digest(&layer)),
                    "application/octet-stream",
                    layer,
                ),
            ],
        });
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stopping, log) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let (routes, log) = (routes.clone(), log.clone());
                        std::thread::spawn(move || serve(conn, &routes, &log));
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
                }
            }
        });
        Ok(Self {
            port,
            stop,
            seen,
            thread: Some(thread),
        })
    }

    fn image(&self) -> String {
        format!("127.0.0.1:{}/app:latest", self.port)
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// The response to one request.
fn respond(routes: &Routes, target: &str, authorization: &str) -> Vec<u8> {
    let (path, _query) = target.split_once('?').unwrap_or((target, ""));
    let unauthorized = |challenge: String| {
        format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}").into_bytes()
    };
    let challenge = match routes.scheme {
        Scheme::Basic => "Basic realm=\"test\"".to_owned(),
        Scheme::Bearer => format!(
            "Bearer realm=\"http://127.0.0.1:{}/token\",service=\"test-registry\"",
            routes.port
        ),
    };
    if path == "/token" {
        if routes.scheme == Scheme::Bearer && authorization == basic(USER, PASSWORD) {
            let body = format!("{{\"token\":\"{TOKEN}\"}}");
            return format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes();
        }
        return b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 6\r\n\r\ndenied".to_vec();
    }
    let allowed = match routes.scheme {
        Scheme::Basic => authorization == basic(USER, PASSWORD),
        Scheme::Bearer => authorization == format!("Bearer {TOKEN}"),
    };
    if !allowed {
        return unauthorized(challenge);
    }
    if path == "/v2/" {
        return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec();
    }
    match routes.files.iter().find(|(p, _, _)| p == path) {
        Some((_, ctype, data)) => {
            let mut r = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: {ctype}\r\nDocker-Content-Digest: {}\r\nContent-Length: {}\r\n\r\n",
                digest(data),
                data.len()
            )
            .into_bytes();
            r.extend_from_slice(data);
            r
        }
        None => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_vec(),
    }
}

/// Answers the requests of one keep-alive connection.
fn serve(conn: std::net::TcpStream, routes: &Routes, seen: &Mutex<Vec<(String, String)>>) {
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).unwrap_or(0) == 0 {
            return;
        }
        let (mut content_length, mut authorization) = (0usize, String::new());
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 {
                return;
            }
            if header == "\r\n" {
                break;
            }
            let Some((name, value)) = header.split_once(':') else {
                continue;
            };
            match name.to_ascii_lowercase().as_str() {
                "content-length" => content_length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_owned(),
                _ => {}
            }
        }
        let mut body = vec![0; content_length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let target = request.split_whitespace().nth(1).unwrap_or("").to_owned();
        let response = respond(routes, &target, &authorization);
        if let Ok(mut s) = seen.lock() {
            s.push((target, authorization));
        }
        if writer.write_all(&response).is_err() {
            return;
        }
    }
}

fn creds(user: &str, password: &str) -> Credentials {
    Credentials {
        username: user.to_owned(),
        password: password.to_owned(),
    }
}

fn open_store(dir: &std::path::Path) -> Result<ImageStore, ImageError> {
    ImageStore::open(&dir.join("images")).map(|s| s.with_auth_file(None))
}

async fn refused(
    store: &ImageStore,
    image: &str,
    auth: Option<&Credentials>,
) -> Result<String, Box<dyn std::error::Error>> {
    match store.pull_with_auth(image, auth, None).await {
        Err(ImageError::Pull(e @ PullError::Unauthorized { .. })) => Ok(e.to_string()),
        other => Err(format!("expected unauthorized, got {other:?}").into()),
    }
}

#[tokio::test]
async fn basic_auth_pulls_with_the_right_credentials_only() -> TestResult {
    let registry = AuthRegistry::start(Scheme::Basic)?;
    let tmp = tempfile::tempdir()?;
    let store = open_store(tmp.path())?;
    let image = registry.image();

    let anonymous = refused(&store, &image, None).await?;
    assert!(
        anonymous.contains("no credentials for 127.0.0.1"),
        "{anonymous}"
    );
    let wrong = refused(&store, &image, Some(&creds(USER, "nope"))).await?;
    assert!(
        wrong.contains("refused the credentials of user \"alice\""),
        "{wrong}"
    );
    assert!(store.get(&image)?.is_none());

    let pulled = store
        .pull_with_auth(&image, Some(&creds(USER, PASSWORD)), None)
        .await?;
    assert_eq!(store.get(&image)?.map(|i| i.id), Some(pulled.id));
    let blob_requests = registry
        .seen()
        .into_iter()
        .filter(|(p, _)| p.contains("/blobs/"))
        .collect::<Vec<_>>();
    assert!(!blob_requests.is_empty());
    assert!(blob_requests
        .iter()
        .all(|(_, a)| *a == basic(USER, PASSWORD)));
    Ok(())
}

#[tokio::test]
async fn bearer_flow_fetches_a_token_with_the_credentials() -> TestResult {
    let registry = AuthRegistry::start(Scheme::Bearer)?;
    let tmp = tempfile::tempdir()?;
    let store = open_store(tmp.path())?;
    let image = registry.image();

    let wrong = refused(&store, &image, Some(&creds(USER, "nope"))).await?;
    assert!(wrong.contains("user \"alice\""), "{wrong}");
    store
        .pull_with_auth(&image, Some(&creds(USER, PASSWORD)), None)
        .await?;
    assert!(store.get(&image)?.is_some());
    let seen = registry.seen();
    let token_request = seen
        .iter()
        .find(|(p, a)| p.starts_with("/token?") && *a == basic(USER, PASSWORD))
        .ok_or("no token request with the credentials")?;
    assert!(
        token_request.0.contains("scope=repository%3Aapp%3Apull")
            && token_request.0.contains("service=test-registry"),
        "{token_request:?}"
    );
    assert!(seen
        .iter()
        .any(|(p, a)| p == "/v2/app/manifests/latest" && *a == format!("Bearer {TOKEN}")));
    Ok(())
}

#[tokio::test]
async fn auth_file_entries_are_tried_most_specific_first() -> TestResult {
    let registry = AuthRegistry::start(Scheme::Basic)?;
    let tmp = tempfile::tempdir()?;
    let host = format!("127.0.0.1:{}", registry.port);
    let config = serde_json::json!({"auths": {
        format!("{host}/app"): {"username": "bob", "password": "old"},
        host.clone(): {"username": USER, "password": PASSWORD},
    }});
    let auth_file = tmp.path().join("config.json");
    std::fs::write(&auth_file, serde_json::to_vec(&config)?)?;
    let store = ImageStore::open(&tmp.path().join("images"))?.with_auth_file(Some(auth_file));
    store.pull(&registry.image(), None).await?;
    let manifest_users: Vec<String> = registry
        .seen()
        .into_iter()
        .filter(|(p, _)| p == "/v2/app/manifests/latest")
        .map(|(_, a)| a)
        .collect();
    assert_eq!(
        manifest_users.first().map(String::as_str),
        Some(basic("bob", "old").as_str())
    );
    assert_eq!(
        manifest_users.last().map(String::as_str),
        Some(basic(USER, PASSWORD).as_str())
    );
    Ok(())
}
