//! fsGroup end to end through kubectl: a pod running as uid 1000 with `fsGroup: 2000` gets
//! the group among its supplemental groups, its emptyDir, configMap and secret volumes are
//! group 2000 with the setgid bit (so what it writes is group 2000 too), a 0400 secret key is
//! readable through the group, and a configMap update arrives with the group as well.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

fn manifest() -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: fsg
spec:
  terminationGracePeriodSeconds: 2
  securityContext:
    runAsUser: 1000
    fsGroup: 2000
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: scratch, mountPath: /data}}
    - {{name: cfg, mountPath: /cfg}}
    - {{name: sec, mountPath: /sec}}
  volumes:
  - name: scratch
    emptyDir: {{}}
  - name: cfg
    configMap:
      name: fsg-cfg
  - name: sec
    secret:
      secretName: fsg-sec
      defaultMode: 0400
"#
    )
}

fn sh(pp: &Peapod, script: &str) -> String {
    pp.kubectl_ok(&["exec", "fsg", "--", "sh", "-c", script])
        .trim()
        .to_string()
}

#[test]
fn fs_group_owns_volumes_and_joins_the_groups() {
    let pp = Peapod::start();
    pp.kubectl_ok(&["create", "configmap", "fsg-cfg", "--from-literal=key=value"]);
    pp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "fsg-sec",
        "--from-literal=pw=s3cret",
    ]);
    pp.apply(&manifest());
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/fsg", "--timeout=60s"]);

    // The process: uid 1000, fsGroup among its groups.
    let id = sh(&pp, "id -u; id -G");
    let mut lines = id.lines();
    assert_eq!(lines.next(), Some("1000"), "{id}");
    let groups: Vec<&str> = lines.next().unwrap_or_default().split(' ').collect();
    assert!(groups.contains(&"2000"), "{id}");

    // The volumes' roots: group 2000, setgid.
    for dir in ["/data", "/cfg", "/sec"] {
        let out = sh(&pp, &format!("stat -c '%g %A' {dir}"));
        let (gid, mode) = out.split_once(' ').unwrap_or_default();
        assert_eq!(gid, "2000", "{dir}: {out}");
        assert_eq!(mode.chars().nth(6), Some('s'), "{dir} setgid: {out}");
    }
    // Keys: group 2000; the 0400 secret reads back 0440 and the user reads it via the group.
    assert_eq!(sh(&pp, "stat -L -c '%g %a' /cfg/key"), "2000 644");
    assert_eq!(sh(&pp, "stat -L -c '%g %a' /sec/pw"), "2000 440");
    assert_eq!(sh(&pp, "cat /sec/pw /cfg/key"), "s3cretvalue");

    // The user writes into the emptyDir; new files and directories inherit group 2000.
    assert_eq!(
        sh(
            &pp,
            "echo hi > /data/f && mkdir /data/d && touch /data/d/g && stat -c %g /data/f /data/d /data/d/g"
        )
        .split_whitespace()
        .collect::<Vec<_>>(),
        vec!["2000"; 3]
    );

    // An update of the ConfigMap reaches the pod with the group too.
    pp.kubectl_ok(&[
        "patch",
        "configmap",
        "fsg-cfg",
        "-p",
        r#"{"data":{"key2":"v2"}}"#,
    ]);
    let seen = wait_until(
        "the configMap update in the volume",
        Duration::from_secs(60),
        || {
            let out = pp.kubectl(&["exec", "fsg", "--", "stat", "-L", "-c", "%g", "/cfg/key2"]);
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        },
    );
    assert_eq!(seen, "2000");

    pp.kubectl_ok(&["delete", "pod", "fsg", "--wait=true", "--timeout=60s"]);
    pp.kubectl_ok(&["delete", "configmap", "fsg-cfg"]);
    pp.kubectl_ok(&["delete", "secret", "fsg-sec"]);
    let vols = pp.state_dir.join("volumes");
    wait_until(
        "the pod's volumes to be gone",
        Duration::from_secs(30),
        || {
            std::fs::read_dir(&vols)
                .map_or(true, |mut d| d.next().is_none())
                .then_some(())
        },
    );
}
