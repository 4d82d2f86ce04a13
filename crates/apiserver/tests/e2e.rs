//! End-to-end tests over real TLS: the stock `kubectl` and a `kube` client against a server
//! started in-process, plus the logs proxy against a fake node API. No node agent involved.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use serde_json::json;

/// An API server and, as in `peapod up`, the controllers (scheduler, namespaces,
/// endpoints) running as its clients.
struct Cluster {
    dir: tempfile::TempDir,
    server: apiserver::RunningApiServer,
    controllers: tokio::task::JoinHandle<()>,
    kubeconfig: PathBuf,
    home: PathBuf,
}

async fn start_in(dir: tempfile::TempDir, node_token: Option<&str>) -> Cluster {
    let server = apiserver::start(apiserver::ApiServerConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        state_dir: dir.path().join("state"),
        store: apiserver::StoreSpec::default_in(&dir.path().join("state")),
        etcd: Default::default(),
        node_api_token: node_token.map(str::to_string),
        cluster_listen: None,
        event_ttl: apiserver::DEFAULT_EVENT_TTL,
        advertise: None,
    })
    .await
    .expect("start");
    let kubeconfig = dir.path().join("kubeconfig");
    apiserver::write_kubeconfig(
        &kubeconfig,
        &format!("https://{}", server.local_addr()),
        server.ca_pem(),
        server.admin_token(),
    )
    .expect("kubeconfig");
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).expect("home");
    let client = client_of(&kubeconfig).await;
    let settings = controllers::Settings {
        root_ca: Some(server.ca_pem().to_string()),
        ..Default::default()
    };
    let controllers = tokio::spawn(controllers::run(
        client,
        settings,
        None,
        std::future::pending(),
    ));
    Cluster {
        dir,
        server,
        controllers,
        kubeconfig,
        home,
    }
}

async fn client_of(kubeconfig: &Path) -> kube::Client {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).expect("read kubeconfig");
    let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    kube::Client::try_from(cfg).expect("client")
}

async fn start(node_token: Option<&str>) -> Cluster {
    start_in(tempfile::tempdir().expect("tempdir"), node_token).await
}

struct Out {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Cluster {
    async fn kubectl(&self, args: &[&str]) -> Out {
        self.kubectl_stdin(args, None).await
    }

    async fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = tokio::process::Command::new("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("kubectl runs");
        if let Some(input) = stdin {
            use tokio::io::AsyncWriteExt;
            let mut si = child.stdin.take().expect("stdin");
            si.write_all(input.as_bytes()).await.expect("write stdin");
        } else {
            drop(child.stdin.take());
        }
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("kubectl finishes")
            .expect("kubectl output");
        Out {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).to_string(),
        }
    }

    async fn client(&self) -> kube::Client {
        client_of(&self.kubeconfig).await
    }

    /// Stops the controllers, then the server; hands back the state dir.
    async fn shutdown(self) -> tempfile::TempDir {
        self.controllers.abort();
        let _ = self.controllers.await;
        self.server.shutdown().await;
        self.dir
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).expect("write manifest");
        p
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  labels:\n    app: web\nspec:\n  containers:\n  - name: main\n    image: busybox\n    ports:\n    - containerPort: 80\n";

async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_basics() {
    let c = start(None).await;
    let v = c.kubectl(&["version"]).await;
    assert!(
        v.stdout.contains("Server Version: v1.33.0"),
        "{}{}",
        v.stdout,
        v.stderr
    );

    let ns = c.kubectl(&["get", "ns"]).await;
    for n in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.stdout.contains(n), "{}", ns.stdout);
    }
    let ar = c.kubectl(&["api-resources"]).await;
    assert!(
        ar.ok && ar.stdout.contains("pods") && ar.stdout.contains("leases"),
        "{}",
        ar.stderr
    );

    let f = c.write("pod.yaml", POD);
    let a = c.kubectl(&["apply", "-f", path_str(&f)]).await;
    assert!(
        a.stdout.contains("pod/web created"),
        "{}{}",
        a.stdout,
        a.stderr
    );
    let a = c.kubectl(&["apply", "-f", path_str(&f)]).await;
    assert!(
        a.stdout.contains("pod/web unchanged"),
        "{}{}",
        a.stdout,
        a.stderr
    );
    let changed = POD.replace("app: web", "app: web\n    tier: front");
    let f2 = c.write("pod2.yaml", &changed);
    let a = c.kubectl(&["apply", "-f", path_str(&f2)]).await;
    assert!(
        a.stdout.contains("pod/web configured"),
        "{}{}",
        a.stdout,
        a.stderr
    );

    let cm = c.write(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\ndata:\n  k: v\n",
    );
    let cr = c.kubectl(&["create", "-f", path_str(&cm)]).await;
    assert!(
        cr.stdout.contains("configmap/cfg created"),
        "{}{}",
        cr.stdout,
        cr.stderr
    );
    let bad = c.write(
        "bad.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: bad\nfoo: 1\n",
    );
    let cr = c.kubectl(&["create", "-f", path_str(&bad)]).await;
    assert!(
        !cr.ok && cr.stderr.contains("unknown field \"foo\""),
        "{}",
        cr.stderr
    );

    let wide = c
        .kubectl(&["get", "pods", "-o", "wide", "-l", "app=web"])
        .await;
    assert!(
        wide.stdout.contains("NOMINATED NODE") && wide.stdout.contains("web"),
        "{}{}",
        wide.stdout,
        wide.stderr
    );
    let all = c.kubectl(&["get", "pods", "-A"]).await;
    assert!(
        all.stdout.contains("default") && all.stdout.contains("web"),
        "{}",
        all.stdout
    );
    let name = c.kubectl(&["get", "pods", "-o", "name"]).await;
    assert_eq!(name.stdout.trim(), "pod/web");
    let y = c.kubectl(&["get", "pod", "web", "-o", "yaml"]).await;
    assert!(
        y.stdout.contains("terminationGracePeriodSeconds: 30"),
        "{}",
        y.stdout
    );
    let j = c.kubectl(&["get", "pod", "web", "-o", "json"]).await;
    let pod: serde_json::Value = serde_json::from_str(&j.stdout).expect("json");
    assert_eq!(pod["metadata"]["labels"]["tier"], "front");
    let none = c.kubectl(&["get", "pods", "-l", "app=nothing"]).await;
    assert!(
        none.stderr
            .contains("No resources found in default namespace."),
        "{}",
        none.stderr
    );

    // The scheduler binds once a node is Ready; describe shows the event.
    let node = c.write(
        "node.json",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "allocatable": {"pods": "110", "cpu": "2", "memory": "4Gi"}}})
        .to_string(),
    );
    assert!(c.kubectl(&["create", "-f", path_str(&node)]).await.ok);
    eventually("pod scheduled", || async {
        c.kubectl(&["get", "pod", "web", "-o", "jsonpath={.spec.nodeName}"])
            .await
            .stdout
            == "n1"
    })
    .await;
    let d = c.kubectl(&["describe", "pod", "web"]).await;
    assert!(
        d.stdout.contains("Successfully assigned default/web to n1"),
        "{}",
        d.stdout
    );
    let nodes = c.kubectl(&["get", "nodes"]).await;
    assert!(nodes.stdout.contains("Ready"), "{}", nodes.stdout);

    // get -w sees the change; wait finishes once Ready is patched in.
    let mut watch = tokio::process::Command::new("kubectl")
        .args(["get", "pods", "-w", "--request-timeout=0"])
        .env("KUBECONFIG", &c.kubeconfig)
        .env("HOME", &c.home)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("watch");
    let wait = {
        let kubeconfig = c.kubeconfig.clone();
        let home = c.home.clone();
        tokio::spawn(async move {
            tokio::process::Command::new("kubectl")
                .args(["wait", "--for=condition=Ready", "pod/web", "--timeout=30s"])
                .env("KUBECONFIG", kubeconfig)
                .env("HOME", home)
                .kill_on_drop(true)
                .output()
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let p = c
        .kubectl(&[
            "patch",
            "pod",
            "web",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
        ])
        .await;
    assert!(p.ok, "{}", p.stderr);
    let w = wait.await.expect("join").expect("wait runs");
    assert!(w.status.success(), "{}", String::from_utf8_lossy(&w.stderr));
    let mut stdout = watch.stdout.take().expect("stdout");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !seen.contains("Running") && tokio::time::Instant::now() < deadline {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1024];
        match tokio::time::timeout(Duration::from_secs(1), stdout.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.push_str(&String::from_utf8_lossy(&buf[..n])),
            _ => {}
        }
    }
    assert!(seen.contains("Running"), "{seen}");
    let _ = watch.kill().await;

    // Graceful deletion: Terminating until a grace-0 delete.
    let del = c.kubectl(&["delete", "pod", "web", "--wait=false"]).await;
    assert!(del.ok, "{}", del.stderr);
    let g = c.kubectl(&["get", "pod", "web"]).await;
    assert!(g.stdout.contains("Terminating"), "{}", g.stdout);
    let del = c
        .kubectl(&["delete", "pod", "web", "--grace-period=0", "--force"])
        .await;
    assert!(del.ok, "{}", del.stderr);
    let g = c.kubectl(&["get", "pod", "web"]).await;
    assert!(g.stderr.contains("pods \"web\" not found"), "{}", g.stderr);
    let del = c.kubectl(&["delete", "configmap", "cfg"]).await;
    assert!(
        del.stdout.contains("configmap \"cfg\" deleted"),
        "{}",
        del.stdout
    );

    // Namespaces: create, delete (the controller removes it), persistence after restart.
    let cr = c.kubectl(&["create", "namespace", "team"]).await;
    assert!(
        cr.stdout.contains("namespace/team created"),
        "{}",
        cr.stderr
    );
    let cr = c
        .kubectl(&[
            "create",
            "configmap",
            "lit",
            "-n",
            "team",
            "--from-literal=a=b",
        ])
        .await;
    assert!(cr.ok, "{}", cr.stderr);
    let cr = c
        .kubectl(&[
            "create",
            "secret",
            "generic",
            "s",
            "-n",
            "team",
            "--from-literal=p=q",
        ])
        .await;
    assert!(cr.ok, "{}", cr.stderr);
    let got = c
        .kubectl(&[
            "get",
            "secret",
            "s",
            "-n",
            "team",
            "-o",
            "jsonpath={.data.p}",
        ])
        .await;
    assert_eq!(got.stdout, "cQ==");
    let del = c.kubectl(&["delete", "namespace", "team"]).await;
    assert!(del.ok, "{}", del.stderr);
    let gone = c.kubectl(&["get", "namespace", "team"]).await;
    assert!(
        gone.stderr.contains("not found"),
        "{}{}",
        gone.stdout,
        gone.stderr
    );
    let dir = c.shutdown().await;
    let c2 = start_in(dir, None).await;
    let ns = c2.kubectl(&["get", "node", "n1", "-o", "name"]).await;
    assert_eq!(ns.stdout.trim(), "node/n1", "{}", ns.stderr);
    c2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_client_agent_flows() {
    let c = start(None).await;
    let client = c.client().await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // The agent's pod watch: fieldSelector spec.nodeName.
    let cfg = watcher::Config::default().fields("spec.nodeName=n1");
    let mut stream = Box::pin(watcher(pods.clone(), cfg).applied_objects());

    let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("create node");
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
                                    "allocatable": {"pods": "110", "cpu": "2", "memory": "4Gi"},
                                    "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .expect("node status");

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let lease: Lease = serde_json::from_value(json!({"metadata": {"name": "n1"}, "spec": {"holderIdentity": "n1", "leaseDurationSeconds": 40}})).expect("lease");
    let mut l = leases
        .create(&PostParams::default(), &lease)
        .await
        .expect("lease");
    l.spec.get_or_insert_with(Default::default).renew_time = None;
    leases
        .replace("n1", &PostParams::default(), &l)
        .await
        .expect("renew lease");
    // Optimistic concurrency, which leader election relies on: once the Lease has changed,
    // a write carrying the resourceVersion read before loses with 409 Conflict.
    let mut renewed = l.clone();
    renewed
        .spec
        .get_or_insert_with(Default::default)
        .lease_duration_seconds = Some(41);
    leases
        .replace("n1", &PostParams::default(), &renewed)
        .await
        .expect("change lease");
    l.spec.get_or_insert_with(Default::default).holder_identity = Some("intruder".into());
    match leases.replace("n1", &PostParams::default(), &l).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 409, "{s:?}"),
        other => panic!("a stale lease write was not refused: {other:?}"),
    }

    let pod: Pod = serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})).expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");

    // The scheduler binds it; the watcher (list+watch with the selector) sees it.
    let seen = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(ev) = stream.next().await {
            if let Ok(p) = ev {
                if p.metadata.name.as_deref() == Some("p") {
                    return p;
                }
            }
        }
        panic!("watch ended");
    })
    .await
    .expect("watcher saw the pod");
    assert_eq!(
        seen.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("n1")
    );

    let ps = json!({"status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}});
    pods.patch_status("p", &PatchParams::default(), &Patch::Strategic(&ps))
        .await
        .expect("strategic status patch");
    let got = pods.get("p").await.expect("get");
    assert_eq!(got.status.and_then(|s| s.phase).as_deref(), Some("Running"));

    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let ev: Event = serde_json::from_value(json!({"metadata": {"name": "p.1"}, "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"}, "reason": "Started", "message": "Started container c", "type": "Normal", "source": {"component": "kubelet"}})).expect("event");
    events
        .create(&PostParams::default(), &ev)
        .await
        .expect("event");

    pods.delete("p", &DeleteParams::default().grace_period(0))
        .await
        .expect("delete");
    eventually("pod gone", || async {
        pods.get_opt("p").await.expect("get").is_none()
    })
    .await;
    drop(stream);
    c.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unauthenticated_requests_are_refused() {
    let c = start(None).await;
    let kc = kube::config::Kubeconfig::read_from(&c.kubeconfig).expect("read");
    let mut cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    cfg.auth_info.token = Some("wrong".to_string().into());
    let client = kube::Client::try_from(cfg).expect("client");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    match pods.list(&Default::default()).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 401),
        other => panic!("expected 401, got {other:?}"),
    }
    c.shutdown().await;
}

/// A fake node API: answers /containerLogs with two lines sent apart, checking the token.
async fn fake_node(pki_dir: &Path, token: &'static str) -> std::net::SocketAddr {
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    use rustls::pki_types::pem::PemObject;
    let (cert, key) = apiserver::issue_serving_cert(pki_dir, &["127.0.0.1".into()]).expect("cert");
    let certs = rustls::pki_types::CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certs");
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes()).expect("key");
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("tls");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| async move {
                        let authed = req
                            .headers()
                            .get("authorization")
                            .is_some_and(|v| v.as_bytes() == format!("Bearer {token}").as_bytes());
                        let path = req.uri().to_string();
                        let (mut tx, body) = futures::channel::mpsc::channel::<
                            Result<hyper::body::Frame<bytes::Bytes>, std::convert::Infallible>,
                        >(4);
                        tokio::spawn(async move {
                            use futures::SinkExt;
                            if !authed {
                                let _ = tx
                                    .send(Ok(hyper::body::Frame::data(bytes::Bytes::from(
                                        "unauthorized\n",
                                    ))))
                                    .await;
                                return;
                            }
                            let _ = tx
                                .send(Ok(hyper::body::Frame::data(bytes::Bytes::from(format!(
                                    "path {path}\n"
                                )))))
                                .await;
                            tokio::time::sleep(Duration::from_millis(200)).await;
                            let _ = tx
                                .send(Ok(hyper::body::Frame::data(bytes::Bytes::from(
                                    "second line\n",
                                ))))
                                .await;
                        });
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(
                            http_body_util::StreamBody::new(body),
                        ))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_proxied_to_the_node() {
    let c = start(Some("node-secret")).await;
    let addr = fake_node(&c.server.pki_dir(), "node-secret").await;
    let node = c.write(
        "node.json",
        &json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
                "status": {"conditions": [{"type": "Ready", "status": "True"}],
                           "allocatable": {"pods": "110", "cpu": "2", "memory": "4Gi"},
                           "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                           "daemonEndpoints": {"kubeletEndpoint": {"Port": addr.port()}}}})
        .to_string(),
    );
    assert!(c.kubectl(&["create", "-f", path_str(&node)]).await.ok);
    let pod = c.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: two\nspec:\n  containers:\n  - name: a\n    image: busybox\n  - name: b\n    image: busybox\n",
    );
    assert!(c.kubectl(&["create", "-f", path_str(&pod)]).await.ok);
    eventually("pod scheduled", || async {
        c.kubectl(&["get", "pod", "two", "-o", "jsonpath={.spec.nodeName}"])
            .await
            .stdout
            == "n1"
    })
    .await;
    let l = c
        .kubectl(&["logs", "two", "-c", "b", "--tail=5", "-f"])
        .await;
    assert!(l.ok, "{}", l.stderr);
    assert!(
        l.stdout.contains("path /containerLogs/default/two/b?") && l.stdout.contains("tailLines=5"),
        "{}",
        l.stdout
    );
    assert!(l.stdout.contains("second line"), "{}", l.stdout);
    let l = c.kubectl(&["logs", "two", "-c", "zz"]).await;
    assert!(
        l.stderr.contains("container zz is not valid for pod two"),
        "{}",
        l.stderr
    );
    c.shutdown().await;
}
