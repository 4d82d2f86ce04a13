//! ServiceAccounts end to end, with the real kubectl: a new namespace gets its `default`
//! ServiceAccount and `kube-root-ca.crt` ConfigMap; a pod gets the projected
//! `kube-api-access-*` volume (token, `ca.crt`, `namespace`) and the `kubernetes` Service's
//! variables, and lists its namespace's pods from inside with kubectl's in-cluster config
//! through https://10.96.0.1 (checking the server against `ca.crt`); `kubectl create token`
//! gives a token `kubectl --token` can use, which stops working when its ServiceAccount is
//! deleted (and the controller makes a new `default`); `automountServiceAccountToken: false`
//! gives no volume; a pod naming a missing account is refused. And the seed's init
//! containers (`examples/init-wait-for-service.yaml`) find the namespace in the token volume
//! and hold the app back until both Services exist.
//!
//! In-pod HTTPS uses the host's kubectl (a static binary, bind-mounted): busybox's wget
//! cannot complete a TLS handshake with the server (it sends no signature_algorithms,
//! which rustls requires).
//!
//! The proxy's nftables table, the DNS address 10.96.0.10 and the API's in-cluster address
//! 10.96.0.1 are node-wide, so the tests of this binary never run two peapods at once.

mod common;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{wait_until, workspace_root, Peapod};

const T: Duration = Duration::from_secs(90);
const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// One peapod at a time in this binary (see the module doc).
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `peapod up` serving cluster DNS and in-cluster API clients (another peapod on the host
/// holds their addresses until it stops).
fn start() -> Peapod {
    let pp = Peapod::start();
    wait_until(
        "our cluster DNS and in-cluster API address",
        Duration::from_secs(300),
        || {
            let log = pp.server_log();
            (log.contains("cluster DNS serving")
                && log.contains("API server serving in-cluster clients"))
            .then_some(())
        },
    );
    pp
}

fn example(file: &str) -> String {
    std::fs::read_to_string(workspace_root().join("examples").join(file)).expect("example")
}

/// Makes `ns` the kubeconfig's namespace, so the harness's helpers work there.
fn use_namespace(pp: &Peapod, ns: &str) {
    pp.kubectl_ok(&["create", "namespace", ns]);
    pp.kubectl_ok(&["config", "set-context", "--current", "--namespace", ns]);
    // The controllers give every namespace its account and the cluster CA.
    wait_until(&format!("ServiceAccount {ns}/default"), T, || {
        pp.jsonpath("serviceaccount/default", "{.metadata.uid}")
            .filter(|u| !u.is_empty())
    });
    wait_until(&format!("ConfigMap {ns}/kube-root-ca.crt"), T, || {
        pp.jsonpath("configmap/kube-root-ca.crt", "{.data.ca\\.crt}")
            .filter(|c| !c.is_empty())
    });
}

fn logs_until(pp: &Peapod, pod: &str, container: &str, needle: &str, count: usize) -> String {
    wait_until(
        &format!("{needle:?} x{count} in {pod}/{container}"),
        T,
        || {
            let out = pp.kubectl(&["logs", pod, "-c", container]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (text.matches(needle).count() >= count).then_some(text)
        },
    )
}

fn exec(pp: &Peapod, pod: &str, cmd: &[&str]) -> String {
    let mut args = vec!["exec", pod, "--"];
    args.extend_from_slice(cmd);
    pp.kubectl_ok(&args)
}

fn host_kubectl() -> PathBuf {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v kubectl"])
        .output()
        .expect("locating kubectl");
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    std::fs::canonicalize(&path).expect("kubectl on PATH")
}

#[test]
fn pods_reach_the_api_as_their_service_account() {
    let _serial = serial();
    let pp = start();
    use_namespace(&pp, "team");
    let ca = std::fs::read_to_string(pp.state_dir.join("pki/ca.crt")).expect("cluster CA");
    assert_eq!(
        pp.jsonpath("configmap/kube-root-ca.crt", "{.data.ca\\.crt}")
            .as_deref(),
        Some(ca.as_str())
    );

    // The example, with this host's kubectl bind-mounted into the pod.
    let kubectl = host_kubectl();
    let manifest = example("serviceaccount-in-cluster.yaml").replace(
        "/usr/local/bin/kubectl",
        kubectl.to_str().expect("utf-8 path"),
    );
    pp.apply(&manifest);
    let spec = |path: &str| pp.jsonpath("pod/api-reader", path).unwrap_or_default();
    assert_eq!(spec("{.spec.serviceAccountName}"), "default");
    assert_eq!(spec("{.spec.serviceAccount}"), "default");
    let volume = spec("{.spec.volumes[?(@.projected)].name}");
    assert!(volume.starts_with("kube-api-access-"), "{volume}");
    assert_eq!(
        spec("{.spec.containers[0].volumeMounts[?(@.mountPath==\"/var/run/secrets/kubernetes.io/serviceaccount\")].readOnly}"),
        "true"
    );
    assert_eq!(
        spec("{.spec.volumes[?(@.projected)].projected.sources[0].serviceAccountToken.expirationSeconds}"),
        "3607"
    );
    pp.wait_pod_phase("api-reader", "Running", T);
    // kubectl in the pod found the API through KUBERNETES_SERVICE_HOST/PORT, checked its
    // certificate against ca.crt and listed the pods of the namespace in `namespace`.
    logs_until(&pp, "api-reader", "main", "pod/api-reader", 1);

    assert_eq!(
        exec(&pp, "api-reader", &["cat", &format!("{MOUNT}/namespace")]),
        "team"
    );
    assert_eq!(
        exec(&pp, "api-reader", &["cat", &format!("{MOUNT}/ca.crt")]),
        ca
    );
    let token = exec(&pp, "api-reader", &["cat", &format!("{MOUNT}/token")]);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let env = exec(&pp, "api-reader", &["env"]);
    for var in [
        "KUBERNETES_SERVICE_HOST=10.96.0.1",
        "KUBERNETES_SERVICE_PORT=443",
        "KUBERNETES_PORT=tcp://10.96.0.1:443",
        "KUBERNETES_PORT_443_TCP_ADDR=10.96.0.1",
    ] {
        assert!(env.lines().any(|l| l == var), "{var} missing from:\n{env}");
    }
    // The pod's token, from the host, at the address the pod uses, verified with its CA.
    let ca_file = pp.home.path().join("pod-ca.crt");
    std::fs::write(&ca_file, &ca).expect("ca file");
    let ca_arg = format!("--certificate-authority={}", ca_file.display());
    let as_pod = pp.kubectl_ok(&[
        "--kubeconfig=/dev/null",
        "--server=https://10.96.0.1:443",
        &ca_arg,
        &format!("--token={token}"),
        "get",
        "pods",
        "-n",
        "team",
        "-o",
        "name",
    ]);
    assert!(as_pod.contains("pod/api-reader"), "{as_pod}");

    // `kubectl create token` and `kubectl --token`.
    let created = pp.kubectl_ok(&["create", "token", "default", "--duration=10m"]);
    let created = created.trim().to_string();
    let with_token = |t: &str| pp.kubectl(&["--token", t, "get", "pods", "-o", "name"]);
    let out = with_token(&created);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("pod/api-reader"));
    let out = with_token("not-a-token");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
    let out = pp.kubectl(&["create", "token", "default", "--duration=1m"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("may not specify a duration less than 10 minutes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A deleted account's tokens are refused; the controller makes a new `default`, and
    // the old tokens stay refused (another uid).
    let old_uid = pp
        .jsonpath("serviceaccount/default", "{.metadata.uid}")
        .unwrap_or_default();
    pp.kubectl_ok(&["delete", "serviceaccount", "default"]);
    let new_uid = wait_until("a new default ServiceAccount", T, || {
        pp.jsonpath("serviceaccount/default", "{.metadata.uid}")
            .filter(|u| !u.is_empty() && *u != old_uid)
    });
    assert_ne!(new_uid, old_uid);
    let out = with_token(&created);
    assert!(!out.status.success(), "a deleted account's token worked");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
    let fresh = pp.kubectl_ok(&["create", "token", "default"]);
    assert!(with_token(fresh.trim()).status.success());

    // automountServiceAccountToken: false gives no volume.
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata: {name: quiet}
spec:
  automountServiceAccountToken: false
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#,
    );
    assert_eq!(
        pp.jsonpath("pod/quiet", "{.spec.volumes}").as_deref(),
        Some("")
    );
    pp.wait_pod_phase("quiet", "Running", T);
    let out = pp.kubectl(&["exec", "quiet", "--", "ls", MOUNT]);
    assert!(!out.status.success(), "the token directory exists");

    // A pod naming a missing account is refused.
    let out = pp.kubectl(&[
        "run",
        "ghostly",
        "--image=busybox",
        "--overrides",
        r#"{"apiVersion": "v1", "spec": {"serviceAccountName": "ghost"}}"#,
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "error looking up service account team/ghost: serviceaccount \"ghost\" not found"
        ),
        "{err}"
    );
}

#[test]
fn seed_init_containers_wait_for_both_services_in_their_namespace() {
    let _serial = serial();
    let pp = start();
    // Another namespace than `default`, so only the namespace file can name it.
    use_namespace(&pp, "shop");
    pp.apply(&example("init-wait-for-service.yaml"));

    logs_until(
        &pp,
        "myapp-pod",
        "init-myservice",
        "waiting for myservice",
        2,
    );
    let row = pp.kubectl_ok(&["get", "pod", "myapp-pod", "--no-headers"]);
    assert!(row.contains("Init:0/2"), "{row}");
    assert_eq!(
        pp.jsonpath("pod/myapp-pod", "{.status.phase}").as_deref(),
        Some("Pending")
    );

    pp.kubectl_ok(&[
        "create",
        "service",
        "clusterip",
        "myservice",
        "--tcp=80:9376",
    ]);
    let init_logs = logs_until(
        &pp,
        "myapp-pod",
        "init-myservice",
        "myservice.shop.svc.cluster.local",
        1,
    );
    assert!(init_logs.contains("waiting for myservice"), "{init_logs}");
    logs_until(&pp, "myapp-pod", "init-mydb", "waiting for mydb", 2);
    let row = pp.kubectl_ok(&["get", "pod", "myapp-pod", "--no-headers"]);
    assert!(row.contains("Init:1/2"), "{row}");
    assert_eq!(
        pp.jsonpath(
            "pod/myapp-pod",
            "{.status.initContainerStatuses[0].state.terminated.reason}"
        )
        .as_deref(),
        Some("Completed")
    );

    pp.kubectl_ok(&["create", "service", "clusterip", "mydb", "--tcp=80:9377"]);
    pp.wait_pod_phase("myapp-pod", "Running", T);
    logs_until(
        &pp,
        "myapp-pod",
        "myapp-container",
        "The app is running!",
        1,
    );
    logs_until(
        &pp,
        "myapp-pod",
        "init-mydb",
        "mydb.shop.svc.cluster.local",
        1,
    );
}
