//! kubectl's tools beyond get/apply, against a real `peapod up`: `explain` reads the kinds'
//! schemas from OpenAPI v3, `diff` runs a server-side dry run, `events` lists and filters
//! Events, `get --watch-only` prints only changes, `cp` copies both ways through exec + tar.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;
use std::time::Duration;

use common::Peapod;

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: tools
spec:
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

#[test]
fn explain_reads_field_docs_from_openapi_v3() {
    let pp = Peapod::start();
    let image = pp.kubectl_ok(&["explain", "pod.spec.containers.image"]);
    assert!(
        image.contains("KIND:       Pod")
            && image.contains("FIELD: image <string>")
            && image.contains("Container image name"),
        "{image}"
    );
    let strategy = pp.kubectl_ok(&[
        "explain",
        "deployments.spec.strategy",
        "--api-version=apps/v1",
    ]);
    assert!(
        strategy.contains("GROUP:      apps")
            && strategy.contains("rollingUpdate")
            && strategy.contains("<RollingUpdateDeployment>"),
        "{strategy}"
    );
    let recursive = pp.kubectl_ok(&["explain", "cronjob.spec.jobTemplate", "--recursive"]);
    assert!(recursive.contains("backoffLimit"), "{recursive}");
    let missing = pp.kubectl(&["explain", "pod.spec.nosuchfield"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("field \"nosuchfield\" does not exist"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

#[test]
fn diff_events_watch_only_and_cp() {
    let pp = Peapod::start();
    pp.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: {a: b}\n");
    let dir = tempfile::tempdir().expect("tempdir");
    let changed = dir.path().join("cm.yaml");
    std::fs::write(
        &changed,
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: d}\ndata: {a: c}\n",
    )
    .expect("write manifest");
    let diff = pp.kubectl(&["diff", "-f", changed.to_str().expect("utf-8 path")]);
    let out = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff.status.code(), Some(1), "{out}");
    assert!(out.contains("-  a: b") && out.contains("+  a: c"), "{out}");
    assert_eq!(
        pp.jsonpath("configmap/d", "{.data.a}").as_deref(),
        Some("b")
    );

    pp.apply(POD);
    pp.wait_pod_phase("tools", "Running", Duration::from_secs(60));
    let events = pp.kubectl_ok(&["events", "--for", "pod/tools"]);
    assert!(
        events.contains("Scheduled") && events.contains("Started") && events.contains("Pod/tools"),
        "{events}"
    );
    let warnings = pp.kubectl_ok(&["events", "--types=Warning"]);
    assert!(!warnings.contains("Started"), "{warnings}");

    // Objects that exist when the watch starts are not printed; a change is.
    let mut watch = pp
        .kubectl_cmd()
        .args(["get", "configmaps", "--watch-only", "-o", "name"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl get --watch-only");
    let stdout = watch.stdout.take().expect("watch stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut round = 0;
    let first = common::wait_until("a watched change", Duration::from_secs(30), || {
        round += 1;
        pp.kubectl_ok(&[
            "label",
            "configmap",
            "d",
            "--overwrite",
            &format!("round=r{round}"),
        ]);
        rx.recv_timeout(Duration::from_secs(1)).ok()
    });
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();
    assert_eq!(first, "configmap/d");
    let rest: Vec<String> = rx.try_iter().collect();
    assert!(rest.iter().all(|l| l == "configmap/d"), "{rest:?}");

    let local = dir.path().join("in.txt");
    std::fs::write(&local, "copied in\n").expect("write local file");
    pp.kubectl_ok(&[
        "cp",
        local.to_str().expect("utf-8 path"),
        "tools:/tmp/in.txt",
    ]);
    assert_eq!(
        pp.kubectl_ok(&["exec", "tools", "--", "cat", "/tmp/in.txt"]),
        "copied in\n"
    );
    let mut exec = pp
        .kubectl_cmd()
        .args([
            "exec",
            "-i",
            "tools",
            "--",
            "sh",
            "-c",
            "cat > /tmp/out.txt",
        ])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kubectl exec -i");
    exec.stdin
        .take()
        .expect("stdin")
        .write_all(b"copied out\n")
        .expect("write stdin");
    assert!(exec.wait().expect("exec").success());
    let back = dir.path().join("out.txt");
    pp.kubectl_ok(&[
        "cp",
        "tools:/tmp/out.txt",
        back.to_str().expect("utf-8 path"),
    ]);
    assert_eq!(
        std::fs::read_to_string(&back).expect("copied file"),
        "copied out\n"
    );
    pp.kubectl_ok(&["delete", "pod", "tools", "--timeout=60s"]);
    pp.kubectl_ok(&["delete", "configmap", "d"]);
}
