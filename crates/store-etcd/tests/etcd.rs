//! The etcd backend against a real one-member etcd (Debian's `etcd-server`) on loopback, with
//! free ports and a temp data dir (and, for TLS, certificates made for the test); the member is
//! killed and its dir removed when the test ends.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;
use store::{EventKind, ObjectKey, PageRequest, Preconditions, Store, StoreError};
use store_etcd::{EtcdOptions, EtcdStore, TlsFiles};

/// One etcd member; killed and its data removed on drop.
struct Etcd {
    child: Child,
    url: String,
    certs: Option<Certs>,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Files of a CA, the member's serving certificate and a client certificate.
struct Certs {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    client: (PathBuf, PathBuf),
}

fn certs(dir: &Path) -> Certs {
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    };
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).expect("writing a certificate");
        path
    };
    let mut ca = CertificateParams::default();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca_cert = ca.clone().self_signed(&ca_key).expect("CA");
    let issuer = Issuer::new(ca, ca_key);
    let issue = |name: &str, usage: ExtendedKeyUsagePurpose| {
        let mut params = CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("SAN");
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &issuer).expect("certificate");
        (
            write(&format!("{name}.crt"), cert.pem()),
            write(&format!("{name}.key"), key.serialize_pem()),
        )
    };
    Certs {
        server: issue("server", ExtendedKeyUsagePurpose::ServerAuth),
        client: issue("client", ExtendedKeyUsagePurpose::ClientAuth),
        ca: write("ca.crt", ca_cert.pem()),
    }
}

impl Etcd {
    fn start() -> Self {
        Self::start_with(None)
    }

    /// With `tls`, the member serves https and requires a client certificate of the CA.
    fn start_with(tls: Option<&dyn Fn(&Path) -> Certs>) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let (client, peer) = (free_port(), free_port());
        let certs = tls.map(|f| f(dir.path()));
        let scheme = if certs.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = std::fs::File::create(dir.path().join("etcd.log")).expect("log");
        let mut cmd = Command::new("etcd");
        if let Some(c) = &certs {
            cmd.arg(format!("--cert-file={}", c.server.0.display()))
                .arg(format!("--key-file={}", c.server.1.display()))
                .arg(format!("--trusted-ca-file={}", c.ca.display()))
                .arg("--client-cert-auth");
        }
        let child = cmd
            .arg("--name=m0")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={url}"))
            .arg(format!("--advertise-client-urls={url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=m0={peer_url}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("starting etcd (Debian package etcd-server)");
        Etcd {
            child,
            url,
            certs,
            _dir: dir,
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(etcd: &Etcd) -> EtcdStore {
    let opts = EtcdOptions {
        compaction_interval: None,
        tls: etcd
            .certs
            .as_ref()
            .map(|c| TlsFiles {
                ca_file: Some(c.ca.clone()),
                cert_file: Some(c.client.0.clone()),
                key_file: Some(c.client.1.clone()),
            })
            .unwrap_or_default(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match EtcdStore::connect(std::slice::from_ref(&etcd.url), &opts).await {
            Ok(s) => return s,
            Err(e) if Instant::now() > deadline => panic!("etcd never answered: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn cm(name: &str, data: &str) -> serde_json::Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
           "data": {"k": data}})
}

fn rv(v: &serde_json::Value) -> u64 {
    store::resource_version_of(v).expect("resourceVersion")
}

/// The next change of a watch, past the bookmarks its progress requests bring.
async fn next_change(w: &mut store::WatchStream) -> Arc<store::WatchEvent> {
    loop {
        let ev = w.next().await.expect("event").expect("ok");
        if ev.kind != EventKind::Bookmark {
            return ev;
        }
    }
}

#[tokio::test]
async fn reads_writes_pages_and_watches_at_etcd_revisions() {
    let etcd = Etcd::start();
    let s = connect(&etcd).await;
    let key = |n: &str| ObjectKey::new("", "configmaps", "default", n);

    let a = s.create(&key("a"), cm("a", "1")).await.expect("create");
    let r1 = rv(&a);
    assert_eq!(s.get(&key("a")).await.expect("get"), a);
    assert!(matches!(
        s.create(&key("a"), cm("a", "again")).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert_eq!(s.current_resource_version().await.expect("rv"), r1);

    // Optimistic concurrency on the mod revision; a no-op writes nothing.
    assert!(matches!(
        s.update(&key("a"), cm("a", "2"), Some(r1 + 100)).await,
        Err(StoreError::Conflict { .. })
    ));
    let a2 = s
        .update(&key("a"), cm("a", "2"), Some(r1))
        .await
        .expect("update");
    let r2 = rv(&a2);
    assert!(r2 > r1);
    let same = s.update(&key("a"), a2.clone(), None).await.expect("no-op");
    assert_eq!(rv(&same), r2);
    assert!(matches!(
        s.update(&key("zz"), cm("zz", "1"), None).await,
        Err(StoreError::NotFound { .. })
    ));

    for n in ["b", "c"] {
        s.create(&key(n), cm(n, "x")).await.expect("create");
    }
    let list = s
        .list("", "configmaps", Some("default"))
        .await
        .expect("list");
    assert_eq!(list.items.len(), 3);
    assert_eq!(
        list.resource_version,
        s.current_resource_version().await.expect("rv")
    );
    assert!(s
        .list("", "configmaps", Some("other"))
        .await
        .expect("list")
        .items
        .is_empty());

    // Pages: `remaining` from etcd's count, the next page from the returned start key.
    let page = s
        .list_page(
            "",
            "configmaps",
            None,
            PageRequest {
                start: None,
                limit: 1,
                filter: None,
            },
        )
        .await
        .expect("page");
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.remaining, Some(2));
    let next = page.next_start.expect("more pages");
    let page = s
        .list_page(
            "",
            "configmaps",
            None,
            PageRequest {
                start: Some(next),
                limit: 5,
                filter: None,
            },
        )
        .await
        .expect("page 2");
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next_start, None);
    let only_x: store::ListFilter = Arc::new(|o| o["data"]["k"] == "x");
    let page = s
        .list_page(
            "",
            "configmaps",
            None,
            PageRequest {
                start: None,
                limit: 1,
                filter: Some(only_x),
            },
        )
        .await
        .expect("filtered page");
    assert_eq!(page.items[0]["metadata"]["name"], "b");
    assert!(page.next_start.is_some());
    assert_eq!(page.remaining, None);

    // Watch from r1: the update (with what it replaced), two creates, then a delete carrying
    // the last state at the delete's revision.
    let mut w = s
        .watch("", "configmaps", Some("default"), r1)
        .await
        .expect("watch");
    let ev = next_change(&mut w).await;
    assert_eq!(
        (ev.kind, ev.resource_version, ev.key.clone()),
        (EventKind::Modified, r2, key("a"))
    );
    assert_eq!(ev.prev_object.as_deref().map(rv), Some(r1));
    for n in ["b", "c"] {
        let ev = next_change(&mut w).await;
        assert_eq!((ev.kind, ev.key.name.as_str()), (EventKind::Added, n));
    }
    assert!(matches!(
        s.delete(
            &key("a"),
            &Preconditions {
                uid: Some("wrong".into()),
                ..Default::default()
            }
        )
        .await,
        Err(StoreError::Conflict { .. })
    ));
    let gone = s
        .delete(&key("a"), &Preconditions::default())
        .await
        .expect("delete");
    let ev = next_change(&mut w).await;
    assert_eq!(ev.kind, EventKind::Deleted);
    assert_eq!(ev.resource_version, rv(&gone));
    assert_eq!(*ev.object, gone);
    assert_eq!(ev.object["data"]["k"], "2");

    // After compaction, a watch from before it is Expired (410 Gone at the API).
    let now = s.current_resource_version().await.expect("rv");
    let mut client = etcd_client::Client::connect([&etcd.url], None)
        .await
        .expect("client");
    client.compact(now as i64, None).await.expect("compact");
    match s.watch("", "configmaps", None, r1).await {
        Err(StoreError::Expired { requested, oldest }) => {
            assert_eq!((requested, oldest), (r1, now));
        }
        Err(e) => panic!("watch after compaction: {e}"),
        Ok(_) => panic!("a watch from a compacted revision started"),
    }
}

/// A quiet watch learns how far the store has got from etcd's progress answers, so that it
/// (and its clients) resume from a recent revision, not from its last event.
#[tokio::test]
async fn a_quiet_watch_gets_bookmarks_at_the_store_revision() {
    let etcd = Etcd::start();
    let s = connect(&etcd).await;
    let quiet = ObjectKey::new("", "configmaps", "quiet", "a");
    let start = rv(&s.create(&quiet, cm("a", "1")).await.expect("create"));
    let mut w = s
        .watch("", "configmaps", Some("quiet"), start)
        .await
        .expect("watch");
    // Writes elsewhere move the store revision on; the watch sees no event of them.
    let mut last = start;
    for i in 0..3 {
        let other = ObjectKey::new("", "configmaps", "busy", &format!("c{i}"));
        last = rv(&s.create(&other, cm("c", "x")).await.expect("create"));
    }
    let ev = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let ev = w.next().await.expect("event").expect("ok");
            assert_eq!(
                ev.kind,
                EventKind::Bookmark,
                "an event of another namespace"
            );
            if ev.resource_version >= last {
                return ev;
            }
        }
    })
    .await
    .expect("a bookmark at the store revision");
    assert_eq!(rv(&ev.object), ev.resource_version);
    // A change of the watched range still comes through, after the bookmark.
    let changed = s.update(&quiet, cm("a", "2"), None).await.expect("update");
    let ev = next_change(&mut w).await;
    assert_eq!(
        (ev.kind, ev.resource_version),
        (EventKind::Modified, rv(&changed))
    );
}

#[tokio::test]
async fn objects_of_an_expiring_resource_go_with_their_lease() {
    let etcd = Etcd::start();
    let s = connect(&etcd).await;
    assert!(s.expire_after_write("", "events", Duration::from_secs(2)));
    let ev = ObjectKey::new("", "events", "default", "e1");
    let kept = ObjectKey::new("", "configmaps", "default", "kept");
    s.create(
        &ev,
        json!({"metadata": {"name": "e1", "namespace": "default"}}),
    )
    .await
    .expect("create event");
    s.create(&kept, cm("kept", "1")).await.expect("create");
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.get(&ev).await.is_ok() {
        assert!(Instant::now() < deadline, "the event outlived its lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        s.get(&kept).await.is_ok(),
        "an object without a TTL expired"
    );
}

#[tokio::test]
async fn connects_over_tls_with_a_client_certificate() {
    let etcd = Etcd::start_with(Some(&certs));
    let s = connect(&etcd).await;
    let key = ObjectKey::new("", "configmaps", "default", "tls");
    s.create(&key, cm("tls", "1"))
        .await
        .expect("create over TLS");
    assert_eq!(s.get(&key).await.expect("get")["data"]["k"], "1");
    // Without the CA an https endpoint is refused before any connection.
    let err = EtcdStore::connect(std::slice::from_ref(&etcd.url), &EtcdOptions::default())
        .await
        .err()
        .expect("https without a CA");
    assert!(err.to_string().contains("connect"), "{err}");
    // The member requires a client certificate: the CA alone is not enough.
    let ca_only = EtcdOptions {
        tls: TlsFiles {
            ca_file: etcd.certs.as_ref().map(|c| c.ca.clone()),
            ..Default::default()
        },
        compaction_interval: None,
    };
    assert!(
        EtcdStore::connect(std::slice::from_ref(&etcd.url), &ca_only)
            .await
            .is_err(),
        "connected without a client certificate"
    );
}
