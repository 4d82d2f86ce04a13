//! Recursive read-only mounts (KEP-3857, on by default in v1.33) end to end through kubectl:
//! a hostPath volume whose directory holds a tmpfs submount, mounted read-only. With
//! `recursiveReadOnly: Enabled` (or `IfPossible`, on this kernel) the submount is read-only
//! in the container too; with a plain `readOnly` (`Disabled`) it stays writable. The
//! container statuses and the Node's `runtimeHandlers` say so, and the API server refuses
//! the modes it must, in its words.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::Peapod;

const BUSYBOX: &str = "docker.io/library/busybox:latest";

/// A host directory with a tmpfs mounted on its `sub` directory: what a hostPath volume of
/// the directory brings into a container as a submount. Unmounted and removed when
/// dropped, also when the test fails.
struct DirWithSubmount {
    dir: PathBuf,
}

impl DirWithSubmount {
    fn new() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or_default();
        let guard = DirWithSubmount {
            dir: PathBuf::from(format!("/tmp/peapod-rro-{}-{nanos}", std::process::id())),
        };
        fs::create_dir_all(guard.sub()).expect("host dirs");
        nix::mount::mount(
            Some("tmpfs"),
            &guard.sub(),
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mounting the submount");
        guard
    }

    fn sub(&self) -> PathBuf {
        self.dir.join("sub")
    }
}

impl Drop for DirWithSubmount {
    fn drop(&mut self) {
        if let Err(e) = nix::mount::umount2(&self.sub(), nix::mount::MntFlags::MNT_DETACH) {
            eprintln!("unmounting {}: {e}", self.sub().display());
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// A pod whose containers mount `host` at /host read-only, each with its
/// `recursiveReadOnly` mode (`None`: unset).
fn pod(name: &str, host: &Path, modes: &[(&str, Option<&str>)]) -> String {
    let mut containers = String::new();
    for (container, mode) in modes {
        let rro = mode
            .map(|m| format!(", recursiveReadOnly: {m}"))
            .unwrap_or_default();
        containers.push_str(&format!(
            r#"  - name: {container}
    image: {BUSYBOX}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
    volumeMounts: [{{name: host, mountPath: /host, readOnly: true{rro}}}]
"#
        ));
    }
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
{containers}  volumes:
  - name: host
    hostPath: {{path: {}, type: Directory}}
"#,
        host.display()
    )
}

/// Tries to create `file` in the container; the shell's status and touch's complaint.
fn touch(pp: &Peapod, pod: &str, container: &str, file: &str) -> String {
    pp.kubectl_ok(&[
        "exec",
        pod,
        "-c",
        container,
        "--",
        "sh",
        "-c",
        &format!("touch {file} 2>&1; echo status=$?"),
    ])
    .trim()
    .to_string()
}

#[test]
fn submounts_of_recursively_read_only_volumes_are_read_only() {
    // Declared first, dropped last: after the node has removed its pods.
    let host = DirWithSubmount::new();
    let pp = Peapod::start();

    // The runtime's default handler (and its `runc` alias) can do it, and say so.
    let handlers = pp.kubectl_ok(&[
        "get",
        "node",
        &pp.node_name,
        "-o",
        "jsonpath={range .status.runtimeHandlers[*]}[{.name}] {.features.recursiveReadOnlyMounts} {.features.userNamespaces}; {end}",
    ]);
    assert_eq!(handlers, "[] true true; [runc] true true; ");

    pp.apply(&pod(
        "rro",
        &host.dir,
        &[
            ("enabled", Some("Enabled")),
            ("ifpossible", Some("IfPossible")),
        ],
    ));
    pp.apply(&pod(
        "plain",
        &host.dir,
        &[("disabled", Some("Disabled")), ("unset", None)],
    ));
    for p in ["rro", "plain"] {
        pp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=60s",
        ]);
    }

    let erofs = |file: &str| format!("touch: {file}: Read-only file system\nstatus=1");
    for container in ["enabled", "ifpossible"] {
        assert_eq!(
            touch(&pp, "rro", container, "/host/sub/from-rro"),
            erofs("/host/sub/from-rro"),
            "{container}: the submount"
        );
        assert_eq!(
            touch(&pp, "rro", container, "/host/top"),
            erofs("/host/top"),
            "{container}: the volume itself"
        );
    }
    assert!(!host.sub().join("from-rro").exists());
    for container in ["disabled", "unset"] {
        let file = format!("/host/sub/from-{container}");
        assert_eq!(touch(&pp, "plain", container, &file), "status=0");
        assert!(host.sub().join(format!("from-{container}")).exists());
        assert_eq!(
            touch(&pp, "plain", container, "/host/top"),
            erofs("/host/top"),
            "{container}: the volume itself"
        );
    }

    // The statuses tell which mounts are recursively read-only.
    let modes = |pod: &str| {
        pp.jsonpath(
            &format!("pod/{pod}"),
            "{range .status.containerStatuses[*]}{.name}={.volumeMounts[0].readOnly}/{.volumeMounts[0].recursiveReadOnly} {end}",
        )
        .unwrap_or_default()
    };
    assert_eq!(
        modes("rro"),
        "enabled=true/Enabled ifpossible=true/Enabled "
    );
    assert_eq!(
        modes("plain"),
        "disabled=true/Disabled unset=true/Disabled "
    );

    pp.kubectl_ok(&[
        "delete",
        "pod",
        "rro",
        "plain",
        "--wait=true",
        "--timeout=60s",
    ]);
}

#[test]
fn invalid_recursive_read_only_modes_are_refused() {
    let pp = Peapod::start();
    let manifest = |mount: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: bad
spec:
  containers:
  - name: main
    image: {BUSYBOX}
    volumeMounts: [{mount}]
  volumes: [{{name: data, emptyDir: {{}}}}]
"#
        )
    };
    let refused = |mount: &str| pp.kubectl_stdin_refused(&["create", "-f", "-"], &manifest(mount));
    let prefix = "The Pod \"bad\" is invalid: spec.containers[0].volumeMounts.recursiveReadOnly: ";
    let cases = [
        (
            "{name: data, mountPath: /data, recursiveReadOnly: Enabled}",
            "Forbidden: may only be specified when readOnly is true",
        ),
        (
            "{name: data, mountPath: /data, readOnly: true, recursiveReadOnly: IfPossible, mountPropagation: HostToContainer}",
            "Forbidden: may only be specified when mountPropagation is None or not specified",
        ),
        (
            "{name: data, mountPath: /data, readOnly: true, recursiveReadOnly: Always}",
            "Unsupported value: \"Always\": supported values: \"Disabled\", \"Enabled\", \"IfPossible\"",
        ),
    ];
    for (mount, message) in cases {
        let err = refused(mount);
        assert!(
            err.contains(&format!("{prefix}{message}")),
            "{mount}: {err}"
        );
    }
    // Nothing was created.
    assert_eq!(pp.jsonpath("pod/bad", "{.metadata.name}"), None);
    // Disabled is allowed on a writable mount, and None propagation with Enabled.
    pp.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &manifest("{name: data, mountPath: /data, recursiveReadOnly: Disabled}"),
    );
    pp.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &manifest(
            "{name: data, mountPath: /data, readOnly: true, recursiveReadOnly: Enabled, mountPropagation: None}",
        ),
    );
}
