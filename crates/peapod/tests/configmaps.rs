//! ConfigMaps and Secrets through kubectl: `create configmap --from-literal/--from-file`,
//! `create secret generic`, get/describe/edit/delete, `stringData` merged into base64 `data`,
//! env from both, configMap and secret volumes (items, modes, tmpfs for secrets, a mount
//! hiding an image directory), a live update reaching a running pod, and a pod waiting for
//! a missing ConfigMap until it exists.

mod common;

use std::fs;
use std::time::Duration;

use common::{wait_until, workspace_root, Peapod};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn logs(pp: &Peapod, pod: &str) -> String {
    String::from_utf8_lossy(&pp.kubectl(&["logs", pod]).stdout).into_owned()
}

#[test]
fn configmap_and_secret_crud() {
    let pp = Peapod::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("app.properties");
    fs::write(&file, "color=blue\n").expect("file");
    let from_file = format!("--from-file={}", file.display());
    let out = pp.kubectl_ok(&[
        "create",
        "configmap",
        "cm1",
        "--from-literal=a=1",
        &from_file,
    ]);
    assert!(out.contains("configmap/cm1 created"), "{out}");
    assert_eq!(
        pp.jsonpath("configmap/cm1", "{.data.a}").as_deref(),
        Some("1")
    );
    assert_eq!(
        pp.jsonpath("configmap/cm1", "{.data.app\\.properties}")
            .as_deref(),
        Some("color=blue\n")
    );
    let listed = pp.kubectl_ok(&["get", "configmaps"]);
    assert!(
        listed.contains("cm1") && listed.contains("DATA"),
        "{listed}"
    );
    let described = pp.kubectl_ok(&["describe", "configmap", "cm1"]);
    assert!(
        described.contains("app.properties") && described.contains("color=blue"),
        "{described}"
    );

    // kubectl edit with a scripted editor.
    let out = pp
        .kubectl_cmd()
        .env("KUBE_EDITOR", "sed -i s/color=blue/color=red/")
        .args(["edit", "configmap", "cm1"])
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        pp.jsonpath("configmap/cm1", "{.data.app\\.properties}")
            .as_deref(),
        Some("color=red\n")
    );

    let out = pp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "s1",
        "--from-literal=pw=hunter2",
    ]);
    assert!(out.contains("secret/s1 created"), "{out}");
    assert_eq!(
        pp.jsonpath("secret/s1", "{.data.pw}").as_deref(),
        Some("aHVudGVyMg==")
    );
    assert_eq!(
        pp.jsonpath("secret/s1", "{.type}").as_deref(),
        Some("Opaque")
    );
    let described = pp.kubectl_ok(&["describe", "secret", "s1"]);
    assert!(
        described.contains("pw:") && described.contains("7 bytes"),
        "{described}"
    );
    assert!(!described.contains("hunter2"), "describe hides values");

    // stringData is write-only: merged into data, overriding a key of the same name.
    pp.apply(
        r#"apiVersion: v1
kind: Secret
metadata: {name: s2}
data: {user: YWRtaW4=, pw: b2xk}
stringData: {pw: new-password}
"#,
    );
    assert_eq!(
        pp.jsonpath("secret/s2", "{.data.user}").as_deref(),
        Some("YWRtaW4=")
    );
    assert_eq!(
        pp.jsonpath("secret/s2", "{.data.pw}").as_deref(),
        Some("bmV3LXBhc3N3b3Jk")
    );
    assert_eq!(
        pp.jsonpath("secret/s2", "{.stringData}").as_deref(),
        Some("")
    );

    for what in ["configmap/cm1", "secret/s1", "secret/s2"] {
        pp.kubectl_ok(&["delete", what]);
        assert!(
            pp.jsonpath(what, "{.metadata.name}").is_none(),
            "{what} gone"
        );
    }
}

#[test]
fn env_from_configmap_and_secret_example() {
    let pp = Peapod::start();
    let manifest = fs::read_to_string(workspace_root().join("examples/env-configmap-secret.yaml"))
        .expect("example");
    pp.apply(&manifest);
    pp.wait_pod_phase("env-demo", "Succeeded", Duration::from_secs(60));
    assert_eq!(
        logs(&pp, "env-demo"),
        "greeting=hello level=debug password=s3cr3t\n"
    );
    pp.kubectl_ok(&["delete", "pod/env-demo", "--wait=true", "--timeout=60s"]);
}

#[test]
fn configmap_volume_updates_live() {
    let pp = Peapod::start();
    let manifest = fs::read_to_string(workspace_root().join("examples/configmap-volume-live.yaml"))
        .expect("example");
    pp.apply(&manifest);
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/live-config",
        "--timeout=60s",
    ]);
    wait_until("the original value", Duration::from_secs(30), || {
        logs(&pp, "live-config")
            .contains("message=original")
            .then_some(())
    });
    pp.kubectl_ok(&[
        "patch",
        "configmap",
        "live-config",
        "-p",
        r#"{"data":{"message":"updated"}}"#,
    ]);
    // The node's volume sync period is 10 s by default (kubelet: about a minute).
    wait_until(
        "the update in the running pod",
        Duration::from_secs(60),
        || {
            logs(&pp, "live-config")
                .contains("message=updated")
                .then_some(())
        },
    );
    assert_eq!(
        pp.jsonpath(
            "pod/live-config",
            "{.status.containerStatuses[0].restartCount}"
        )
        .as_deref(),
        Some("0"),
        "updated without a restart"
    );
    pp.kubectl_ok(&["delete", "pod/live-config", "--wait=true", "--timeout=60s"]);
}

#[test]
fn volumes_items_modes_tmpfs_and_missing_configmap() {
    let pp = Peapod::start();
    pp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=token=abc",
    ]);
    let manifest = format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: files
spec:
  terminationGracePeriodSeconds: 2
  volumes:
  - name: cfg
    configMap:
      name: settings
      defaultMode: 0600
      items:
      - {{key: mode, path: conf/mode.txt, mode: 0440}}
      - {{key: motd, path: motd}}
  - name: sec
    secret: {{secretName: creds}}
  - name: opt
    configMap: {{name: never-created, optional: true}}
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command:
    - sh
    - -c
    - |
      echo "mode=$(cat /etc/conf/mode.txt) perms=$(stat -L -c %a /etc/conf/mode.txt) motd-perms=$(stat -L -c %a /etc/motd)"
      cat /etc/passwd >/dev/null 2>&1 || echo "image /etc hidden"
      echo "token=$(cat /run/creds/token) opt=$(ls /opt/cfg | wc -l)"
      echo "write: $(touch /run/creds/x 2>&1)"
      trap 'exit 0' TERM; while true; do sleep 1; done
    volumeMounts:
    - {{name: cfg, mountPath: /etc}}
    - {{name: sec, mountPath: /run/creds}}
    - {{name: opt, mountPath: /opt/cfg}}
"#
    );
    pp.apply(&manifest);
    // The ConfigMap does not exist yet: FailedMount, nothing starts.
    wait_until("the FailedMount event", Duration::from_secs(30), || {
        let ev = pp.kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=files",
        ]);
        let text = String::from_utf8_lossy(&ev.stdout).into_owned();
        text.contains("configmap \"settings\" not found")
            .then_some(())
    });
    assert_eq!(
        pp.jsonpath("pod/files", "{.status.phase}").as_deref(),
        Some("Pending")
    );
    pp.kubectl_ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=mode=strict",
        "--from-literal=motd=welcome",
    ]);
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/files",
        "--timeout=60s",
    ]);
    wait_until("the container's report", Duration::from_secs(30), || {
        logs(&pp, "files").contains("write:").then_some(())
    });
    let text = logs(&pp, "files");
    assert!(
        text.contains("mode=strict perms=440 motd-perms=600"),
        "{text}"
    );
    assert!(text.contains("image /etc hidden"), "{text}");
    assert!(text.contains("token=abc opt=0"), "{text}");
    assert!(text.contains("Read-only file system"), "{text}");
    let uid = pp.jsonpath("pod/files", "{.metadata.uid}").expect("uid");
    let secret_dir = pp
        .state_dir
        .join("volumes")
        .join(&uid)
        .join("kubernetes.io~secret/sec");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        mountinfo
            .lines()
            .any(|l| l.contains(&*secret_dir.to_string_lossy()) && l.contains(" tmpfs ")),
        "secret volume on tmpfs"
    );
    pp.kubectl_ok(&["delete", "pod/files", "--wait=true", "--timeout=60s"]);
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mountinfo.contains(&*secret_dir.to_string_lossy()),
        "tmpfs unmounted"
    );
    assert!(!pp.state_dir.join("volumes").join(&uid).exists());
}
