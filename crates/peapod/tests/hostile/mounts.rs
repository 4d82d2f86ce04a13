//! Mount destinations and subPaths that try to reach the host: an image whose volume mount
//! points, `/etc/hosts` and `/var` (the service account token's way) are symlinks out of its
//! root (absolute through the pivot's `/.oldroot`, relative through `../..`, through
//! `/proc/1/root`), and a subPath through symlinks an earlier container planted in an
//! emptyDir. Each is confined to the container's root or refused with
//! `CreateContainerConfigError`; nothing appears on the host, and the node runs the next pod.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{images, wait_until, Peapod};

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// An empty host directory the hostile paths aim at: anything appearing in it means the
/// runtime wrote outside a container. Removed by [`assert_untouched`].
fn host_dir(what: &str) -> PathBuf {
    let dir = host_marker(what);
    fs::create_dir(&dir).expect("host dir");
    dir
}

/// A host path nothing creates.
fn host_marker(what: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    PathBuf::from(format!(
        "/tmp/peapod-hostile-{}-{nanos}-{what}",
        std::process::id()
    ))
}

/// Imports `name` into the node: the busybox fixture plus one layer holding `links`
/// (path in the image → symlink target).
fn import_image_with_links(pp: &Peapod, name: &str, links: &[(&str, String)]) {
    let work = tempfile::tempdir().expect("tempdir");
    let tree = work.path().join("layer");
    for (path, target) in links {
        let at = tree.join(path.trim_start_matches('/'));
        fs::create_dir_all(at.parent().expect("parent")).expect("layer dirs");
        std::os::unix::fs::symlink(target, &at).expect("symlink");
    }
    images::import_busybox_plus_layer(pp, name, &tree);
}

/// The node still runs an ordinary pod to Ready, then it is removed.
fn node_still_serves(pp: &Peapod, name: &str) {
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        &format!("pod/{name}"),
        "--timeout=60s",
    ]);
    pp.kubectl_ok(&[
        "delete",
        &format!("pod/{name}"),
        "--wait=true",
        "--timeout=60s",
    ]);
}

/// Each host directory is still empty (then removed, also before failing).
fn assert_untouched(dirs: &[PathBuf]) {
    let mut written = Vec::new();
    for d in dirs {
        let entries: Vec<String> = fs::read_dir(d)
            .map(|it| {
                it.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        if !entries.is_empty() {
            written.push(format!("{}: {entries:?}", d.display()));
        }
        let _ = fs::remove_dir_all(d);
    }
    assert!(
        written.is_empty(),
        "the runtime wrote on the host: {written:?}"
    );
}

/// No such host path appeared (removed if one did, before failing).
fn assert_absent(paths: &[PathBuf]) {
    for p in paths {
        let there = fs::symlink_metadata(p).is_ok();
        let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
        assert!(!there, "the runtime created {} on the host", p.display());
    }
}

#[test]
fn image_symlinks_cannot_move_mounts_onto_the_host() {
    let pp = Peapod::start();
    // Existing host directories: the target a mount point through a symlink would be made in.
    let abs = host_dir("abs");
    let rel = host_dir("rel");
    let hosts = host_dir("hosts");
    let var = host_dir("var");
    let proc1 = host_dir("proc1");
    // A file there too, so that a runtime following /etc/hosts out of the root would get on
    // to the next mounts instead of failing at this one.
    fs::write(hosts.join("hosts"), "").expect("host file");
    let ups = "../".repeat(40);
    let image = "docker.io/library/hostile-mounts:v1";
    import_image_with_links(
        &pp,
        image,
        &[
            ("/data", format!("/.oldroot{}", abs.display())),
            ("/rel", format!("{ups}{}", rel.display())),
            ("/etc/hosts", format!("/.oldroot{}/hosts", hosts.display())),
            ("/var", format!("/.oldroot{}", var.display())),
            ("/p1", format!("/proc/1/root{}", proc1.display())),
        ],
    );
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: links
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: a, emptyDir: {{}}}}
  - {{name: b, emptyDir: {{}}}}
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo inside > /data/in/f && echo inside > /rel/in/f && sleep 3600"]
    volumeMounts:
    - {{name: a, mountPath: /data/in}}
    - {{name: b, mountPath: /rel/in}}
"#
    ));
    // Confined: the container runs, its volumes are where its own symlinks lead inside its
    // root, and what it writes there lands in the pod's emptyDirs. The host is looked at
    // first: a runtime that followed the links may also have failed the pod.
    let ready = pp.kubectl(&[
        "wait",
        "--for=condition=Ready",
        "pod/links",
        "--timeout=60s",
    ]);
    assert_eq!(fs::read(hosts.join("hosts")).expect("host file"), b"");
    fs::remove_file(hosts.join("hosts")).expect("remove host file");
    assert_untouched(&[abs, rel, hosts, var]);
    assert!(
        ready.status.success(),
        "pod/links not Ready: {}",
        String::from_utf8_lossy(&ready.stderr)
    );
    let uid = pp.jsonpath("pod/links", "{.metadata.uid}").expect("uid");
    let empty_dirs = pp
        .state_dir
        .join("volumes")
        .join(&uid)
        .join("kubernetes.io~empty-dir");
    wait_until(
        "the writes in both emptyDirs",
        Duration::from_secs(30),
        || (empty_dirs.join("a/f").exists() && empty_dirs.join("b/f").exists()).then_some(()),
    );
    let out = pp.kubectl_ok(&["exec", "links", "--", "cat", "/etc/hosts"]);
    assert!(
        out.contains("links"),
        "the pod's hosts file is mounted: {out}"
    );
    // The service account token's directory went through /var inside the root too.
    let token = pp.kubectl_ok(&[
        "exec",
        "links",
        "--",
        "ls",
        "/var/run/secrets/kubernetes.io/serviceaccount",
    ]);
    assert!(token.contains("token"), "{token}");

    // A mount point behind /proc/1/root (a magic link) is refused, not followed.
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: magic
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: a, emptyDir: {{}}}}
  containers:
  - name: main
    image: {image}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts:
    - {{name: a, mountPath: /p1/x}}
"#
    ));
    let why = wait_until(
        "the magic-link mount refused",
        Duration::from_secs(60),
        || {
            let status = pp.jsonpath("pod/magic", "{.status.containerStatuses[0]}")?;
            assert!(
                !status.contains("\"running\""),
                "the container started through a magic link: {status}"
            );
            status.contains("symbolic links").then_some(status)
        },
    );
    assert!(why.contains("/p1/x"), "{why}");
    assert_untouched(&[proc1]);

    node_still_serves(&pp, "after-links");
    for p in ["pod/links", "pod/magic"] {
        pp.kubectl_ok(&["delete", p, "--wait=true", "--timeout=60s"]);
    }
}

#[test]
fn sub_path_through_planted_symlinks_is_refused() {
    let pp = Peapod::start();
    let abs = host_marker("sub-abs");
    let rel = host_marker("sub-rel");
    let ups = "../".repeat(40);
    // The init container plants the links in the shared emptyDir; each later container asks
    // for a subPath through one of them.
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: planted
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: shared, emptyDir: {{}}}}
  initContainers:
  - name: plant
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "ln -s / /shared/root && ln -s {ups}tmp /shared/up && mkdir /shared/ok"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: abs
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{{name: shared, mountPath: /x, subPath: "root{abs}/deeper"}}]
  - name: rel
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{{name: shared, mountPath: /x, subPath: "up/{rel_name}/deeper"}}]
  - name: fine
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    volumeMounts: [{{name: shared, mountPath: /x, subPath: "ok/made"}}]
"#,
        abs = abs.display(),
        rel_name = rel.file_name().expect("name").to_string_lossy(),
    ));
    // kubelet lists container statuses by name.
    let of = |name: &str, path: &str| {
        pp.jsonpath(
            "pod/planted",
            &format!("{{.status.containerStatuses[?(@.name==\"{name}\")]{path}}}"),
        )
    };
    for name in ["abs", "rel"] {
        let msg = wait_until(
            &format!("{name}: CreateContainerConfigError"),
            Duration::from_secs(60),
            || {
                let reason = of(name, ".state.waiting.reason")?;
                (reason == "CreateContainerConfigError")
                    .then(|| of(name, ".state.waiting.message").unwrap_or_default())
            },
        );
        // The kubelet's words; the cause (a host path) goes to the node's log only.
        assert_eq!(
            msg,
            format!("failed to prepare subPath for volumeMount \"shared\" of container \"{name}\""),
            "{name}"
        );
    }
    // The container whose subPath stays inside the volume runs beside the refused ones.
    wait_until(
        "the fine container running",
        Duration::from_secs(60),
        || of("fine", ".state.running.startedAt").filter(|s| !s.is_empty()),
    );
    let uid = pp.jsonpath("pod/planted", "{.metadata.uid}").expect("uid");
    let shared = pp
        .state_dir
        .join("volumes")
        .join(&uid)
        .join("kubernetes.io~empty-dir/shared");
    assert!(
        shared.join("ok/made").is_dir(),
        "the good subPath was created"
    );
    assert_absent(&[abs, rel]);

    node_still_serves(&pp, "after-planted");
    pp.kubectl_ok(&["delete", "pod/planted", "--wait=true", "--timeout=60s"]);
}

fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Files under `dir` (recursively, not following links) whose name satisfies `pick`.
fn files_named(dir: &Path, pick: &dyn Fn(&str) -> bool, depth: usize) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let Ok(kind) = e.file_type() else { continue };
        let name = e.file_name().to_string_lossy().into_owned();
        if kind.is_dir() && depth > 0 && name != "rootfs" && name != "upper" && name != "work" {
            out.extend(files_named(&e.path(), pick, depth - 1));
        } else if kind.is_file() && pick(&name) {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn state_files_are_private_and_fixed_on_start() {
    let mut pp = Peapod::start();
    pp.kubectl_ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hostile-secret-value",
    ]);
    pp.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: private
spec:
  terminationGracePeriodSeconds: 1
  volumes:
  - {{name: creds, secret: {{secretName: creds}}}}
  containers:
  - name: main
    image: {BUSYBOX}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo started && sleep 3600"]
    env:
    - name: PASSWORD
      valueFrom: {{secretKeyRef: {{name: creds, key: password}}}}
    volumeMounts: [{{name: creds, mountPath: /creds}}]
"#
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/private",
        "--timeout=60s",
    ]);
    let uid = pp.jsonpath("pod/private", "{.metadata.uid}").expect("uid");
    let state = pp.state_dir.clone();
    let configs = files_named(&state.join("pods"), &|n| n.ends_with(".json"), 3);
    assert!(
        configs.iter().any(|c| fs::read_to_string(c)
            .unwrap_or_default()
            .contains("hostile-secret-value")),
        "a runtime record holds the Secret value: {configs:?}"
    );
    let logs = wait_until("the container's log", Duration::from_secs(30), || {
        let logs = files_named(&state.join("logs"), &|n| n.ends_with(".log"), 2);
        (!logs.is_empty()).then_some(logs)
    });
    let volumes = state.join("volumes");
    let pod_volumes = volumes.join(&uid);
    let owner_only: Vec<PathBuf> = [
        state.join("store.redb"),
        state.join("kubeconfig"),
        state.join("pki/ca.key"),
    ]
    .into_iter()
    .chain(configs.iter().cloned())
    .collect();
    let expect = |when: &str| {
        assert_eq!(mode(&state), 0o700, "{when}: state dir");
        assert_eq!(mode(&state.join("pki")), 0o700, "{when}: pki");
        for f in &owner_only {
            assert_eq!(mode(f), 0o600, "{when}: {}", f.display());
        }
        for f in &logs {
            assert_eq!(mode(f), 0o640, "{when}: {}", f.display());
        }
    };
    expect("fresh");
    assert_eq!(mode(&volumes), 0o750);
    assert_eq!(mode(&pod_volumes), 0o750);
    // Inside, the Secret's files have the defaultMode.
    let out = pp.kubectl_ok(&[
        "exec",
        "private",
        "--",
        "stat",
        "-L",
        "-c",
        "%a",
        "/creds/password",
    ]);
    assert_eq!(out.trim(), "644");

    // As an older version left them: open to everyone. A restart closes them again, and
    // the pod keeps running through it.
    pp.kill9();
    let chmod = |p: &Path, m: u32| {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(m)).expect("chmod");
    };
    chmod(&state, 0o755);
    chmod(&state.join("pki"), 0o755);
    chmod(&volumes, 0o755);
    chmod(&pod_volumes, 0o755);
    for f in owner_only.iter().chain(logs.iter()) {
        chmod(f, 0o644);
    }
    pp.up();
    expect("after a restart");
    wait_until(
        "the pod's volume dirs closed again",
        Duration::from_secs(60),
        || (mode(&volumes) == 0o750 && mode(&pod_volumes) == 0o750).then_some(()),
    );
    assert_eq!(
        pp.jsonpath("pod/private", "{.status.containerStatuses[0].restartCount}")
            .as_deref(),
        Some("0")
    );
    pp.kubectl_ok(&["delete", "pod/private", "--wait=true", "--timeout=60s"]);
}
