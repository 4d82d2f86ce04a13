//! User namespaces (`hostUsers: false`): the pod's root is root inside — it owns the image's
//! files, its own writes and its emptyDir — but on the host it is an unprivileged ID of the
//! pod's own 65536-ID range. The same script run by a pod with the node's users shows what
//! host root could do (so the test would notice a namespace that confines nothing): append
//! to a host file owned by root through a hostPath volume and make a device node in /dev;
//! in the namespace both are refused. The range holds across an agent restart, differs from
//! the next pod's (which runs as another user with an fsGroup, both mapped), and is freed
//! with the pod; a pod combining `hostUsers: false` with a host namespace, or asking for an
//! unmasked `/proc` (`procMount: Unmasked`) without it, is refused by the API. Inside a user
//! namespace an unmasked `/proc` is granted.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use crate::common::{wait_until, Peapod};

const IMAGE: &str = "docker.io/library/busybox:latest";

/// Prints `key=value` lines on what the container's root is and can do, then sleeps.
const SCRIPT: &str = "echo uid=$(id -u); echo gid=$(id -g); \
    echo uid_map=$(cat /proc/self/uid_map); echo gid_map=$(cat /proc/self/gid_map); \
    echo root_owner=$(stat -c %u:%g /); echo bin_owner=$(stat -c %u:%g /bin/sh); \
    echo mine > /mine && echo mine_owner=$(stat -c %u:%g /mine); \
    touch /vol/made && echo vol_owner=$(stat -c %u:%g /vol/made); \
    if echo escaped >> /host/owned-by-root 2>/dev/null; then echo host_write=WROTE; else echo host_write=DENIED; fi; \
    if mknod /dev/zero2 c 1 5 2>/dev/null; then echo mknod=MADE; else echo mknod=DENIED; fi; \
    echo done=1; exec sleep 3600";

fn pod(name: &str, spec_extra: &str, host_dir: &Path) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  terminationGracePeriodSeconds: 1\n\
         {spec_extra}  volumes:\n  - name: vol\n    emptyDir: {{}}\n  - name: host\n    hostPath:\n      \
         path: {dir}\n      type: Directory\n  containers:\n  - name: c\n    image: {IMAGE}\n    \
         imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {SCRIPT:?}]\n    volumeMounts:\n    \
         - name: vol\n      mountPath: /vol\n    - name: host\n      mountPath: /host\n",
        dir = host_dir.display()
    )
}

/// The script's report once it has run to its end.
fn report(pp: &Peapod, name: &str) -> BTreeMap<String, String> {
    let log = wait_until(&format!("{name}'s report"), Duration::from_secs(90), || {
        let out = pp.kubectl(&["logs", name]);
        let log = String::from_utf8_lossy(&out.stdout).into_owned();
        log.contains("done=1").then_some(log)
    });
    log.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.split_whitespace().collect::<Vec<_>>().join(" "),
            )
        })
        .collect()
}

/// The host ID the namespace's root maps to, from a `uid_map` line `0 <host> 65536`.
fn host_root(map: &str) -> u32 {
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields.len(), 3, "one mapping line: {map:?}");
    assert_eq!((fields[0], fields[2]), ("0", "65536"), "{map:?}");
    fields[1].parse().expect("host id")
}

/// `kubectl apply` of a manifest the API must refuse; its error output.
fn apply_refused(pp: &Peapod, manifest: &str) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = pp
        .kubectl_cmd()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("writing stdin");
    let out = child.wait_with_output().expect("kubectl output");
    assert!(!out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn record(pp: &Peapod, uid: &str) -> std::path::PathBuf {
    pp.state_dir.join("userns").join(format!("{uid}.json"))
}

#[test]
fn user_namespace_root_is_unprivileged_on_the_host() {
    let mut pp = Peapod::start();
    let host = tempfile::tempdir().expect("host dir");
    fs::set_permissions(host.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
    let target = host.path().join("owned-by-root");
    fs::write(&target, "host\n").expect("host file");
    fs::set_permissions(&target, fs::Permissions::from_mode(0o644)).expect("chmod");

    // --- The API refuses a user namespace together with a host namespace.
    let refused = apply_refused(
        &pp,
        &pod(
            "hostnet",
            "  hostUsers: false\n  hostNetwork: true\n",
            host.path(),
        ),
    );
    assert!(
        refused.contains("spec.hostNetwork: Forbidden: when `hostUsers` is false"),
        "{refused}"
    );

    // ... and an unmasked /proc outside one.
    let unmasked = |name: &str, spec_extra: &str| {
        pod(name, spec_extra, host.path()).replace(
            "    volumeMounts:\n",
            "    securityContext:\n      procMount: Unmasked\n    volumeMounts:\n",
        )
    };
    let refused = apply_refused(&pp, &unmasked("unmasked", ""));
    assert!(
        refused.contains(
            "spec.containers[0].securityContext.procMount: Invalid value: \"Unmasked\": \
             `hostUsers` must be false to use `Unmasked`"
        ),
        "{refused}"
    );

    pp.apply(&pod("userns", "  hostUsers: false\n", host.path()));
    pp.apply(&pod("hostroot", "", host.path()));

    // --- Host root's reach, as the control: the host file takes the line, mknod works.
    let control = report(&pp, "hostroot");
    assert_eq!(control["uid_map"], "0 0 4294967295", "{control:?}");
    assert_eq!(control["host_write"], "WROTE", "{control:?}");
    assert_eq!(control["mknod"], "MADE", "{control:?}");

    // --- Inside: root, owning the image's files, its own and its emptyDir's.
    let r = report(&pp, "userns");
    let h = host_root(&r["uid_map"]);
    assert_eq!(r["gid_map"], r["uid_map"], "{r:?}");
    assert!(h >= 65536 && h.is_multiple_of(65536), "{r:?}");
    for (key, want) in [
        ("uid", "0"),
        ("gid", "0"),
        ("root_owner", "0:0"),
        ("bin_owner", "0:0"),
        ("mine_owner", "0:0"),
        ("vol_owner", "0:0"),
    ] {
        assert_eq!(r[key], want, "{key}: {r:?}");
    }
    // --- What host root could do, it cannot.
    assert_eq!(r["host_write"], "DENIED", "{r:?}");
    assert_eq!(r["mknod"], "DENIED", "{r:?}");
    let content = fs::read_to_string(&target).expect("host file");
    assert_eq!(content.matches("escaped").count(), 1, "{content:?}");

    // --- On the host, its files belong to the mapped IDs.
    let uid = pp.jsonpath("pod/userns", "{.metadata.uid}").expect("uid");
    let made = pp
        .state_dir
        .join("volumes")
        .join(&uid)
        .join("kubernetes.io~empty-dir/vol/made");
    let meta = fs::metadata(&made).expect("the emptyDir file on the host");
    assert_eq!((meta.uid(), meta.gid()), (h, h));
    let exec_map = pp.kubectl_ok(&["exec", "userns", "--", "cat", "/proc/self/uid_map"]);
    assert_eq!(host_root(&exec_map), h, "kubectl exec joins the namespace");
    assert_eq!(
        pp.kubectl_ok(&["exec", "userns", "--", "id", "-u"]).trim(),
        "0"
    );
    assert!(record(&pp, &uid).exists());

    // --- An agent restart keeps the pod's range and its container; a new pod gets another.
    let started = pp.jsonpath("pod/userns", "{.status.containerStatuses[0].containerID}");
    pp.kill9();
    pp.up();
    let exec_map = pp.kubectl_ok(&["exec", "userns", "--", "cat", "/proc/self/uid_map"]);
    assert_eq!(host_root(&exec_map), h);
    assert_eq!(
        pp.jsonpath("pod/userns", "{.status.containerStatuses[0].containerID}"),
        started
    );
    // It runs as a user other than root, with an fsGroup, in a shared PID namespace: the
    // IDs are the namespace's, the files on the host its mapped ones.
    // Its /proc is unmasked (`procMount: Unmasked`), where the first pod's /proc/sys is a
    // read-only bind mount of its own (and its kernel-detail files are masked).
    pp.apply(&unmasked(
        "second",
        "  hostUsers: false\n  shareProcessNamespace: true\n  securityContext:\n    \
         runAsUser: 1000\n    fsGroup: 2000\n",
    ));
    let second = report(&pp, "second");
    let proc_sys_mounts = |name: &str| {
        pp.kubectl_ok(&[
            "exec",
            name,
            "--",
            "sh",
            "-c",
            "grep -c ' /proc/sys ' /proc/self/mountinfo || true",
        ])
        .trim()
        .to_string()
    };
    assert_eq!(
        proc_sys_mounts("userns"),
        "1",
        "the default /proc is masked"
    );
    assert_eq!(proc_sys_mounts("second"), "0", "an unmasked /proc");
    let h2 = host_root(&second["uid_map"]);
    assert_ne!(h2, h, "{second:?}");
    assert_eq!(second["uid"], "1000", "{second:?}");
    assert_eq!(second["vol_owner"], "1000:2000", "{second:?}");
    assert_eq!(second["host_write"], "DENIED", "{second:?}");
    let uid2 = pp.jsonpath("pod/second", "{.metadata.uid}").expect("uid");
    let made = pp
        .state_dir
        .join("volumes")
        .join(&uid2)
        .join("kubernetes.io~empty-dir/vol/made");
    let meta = fs::metadata(&made).expect("the emptyDir file on the host");
    assert_eq!((meta.uid(), meta.gid()), (h2 + 1000, h2 + 2000));

    // --- Deleting the pods frees their ranges.
    pp.kubectl_ok(&["delete", "pod", "--all", "--wait=true", "--timeout=60s"]);
    wait_until("the ranges to be freed", Duration::from_secs(30), || {
        (!record(&pp, &uid).exists()).then_some(())
    });
}
