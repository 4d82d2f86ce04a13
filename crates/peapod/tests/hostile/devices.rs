//! Devices: a root container with CAP_MKNOD makes a node for the host's disk, or its image
//! ships one, and tries to read the disk through it. The device cgroup refuses the open in
//! /dev, `nodev` refuses any node on the root filesystem and volumes, and layer device nodes
//! are never created; a privileged container doing the same reads the disk (so the test can
//! fail), and the node still runs an ordinary pod afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{fixtures, wait_until, Peapod};

const IMAGE: &str = "docker.io/library/busybox:latest";
const NODE_IMAGE: &str = "docker.io/library/hostile-devnode:latest";

/// The block device the containers aim at: a whole disk of this machine from /sys/block
/// (not a loop, RAM or zram device) that root can read here, so reading it from a container
/// is a real escape. Where none is readable (a host that itself confines its disk), a loop
/// device over a temp file stands in, detached when dropped.
struct Disk {
    path: String,
    major: u32,
    minor: u32,
    _loop: Option<LoopDevice>,
}

struct LoopDevice {
    dev: String,
    _file: tempfile::NamedTempFile,
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn readable(path: &str) -> bool {
    let mut buf = [0u8; 1];
    fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut buf))
        .is_ok()
}

fn numbers(name: &str) -> Option<(u32, u32)> {
    let dev = fs::read_to_string(format!("/sys/block/{name}/dev")).ok()?;
    let (major, minor) = dev.trim().split_once(':')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

fn host_disk() -> Disk {
    let mut names: Vec<String> = fs::read_dir("/sys/block")
        .expect("/sys/block")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !["loop", "ram", "zram", "nbd", "sr"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    for name in names {
        let path = format!("/dev/{name}");
        if let (Some((major, minor)), true) = (numbers(&name), readable(&path)) {
            return Disk {
                path,
                major,
                minor,
                _loop: None,
            };
        }
    }
    let mut file = tempfile::Builder::new()
        .prefix("peapod-hostile-disk-")
        .tempfile()
        .expect("loop backing file");
    std::io::Write::write_all(&mut file, &[b'D'; 65536]).expect("writing the backing file");
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(file.path())
        .output()
        .expect("losetup");
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let lo = LoopDevice { dev, _file: file };
    let name = lo.dev.trim_start_matches("/dev/").to_string();
    let (major, minor) = numbers(&name).expect("loop device numbers");
    assert!(readable(&lo.dev), "{} is not readable", lo.dev);
    Disk {
        path: lo.dev.clone(),
        major,
        minor,
        _loop: Some(lo),
    }
}

/// Prints `<label>=READ` or `<label>=DENIED` for each node the script makes and tries.
fn probe_script(major: u32, minor: u32) -> String {
    format!(
        "try() {{ if [ \"$(head -c1 \"$2\" 2>/dev/null | wc -c)\" = 1 ]; then echo \"$1=READ\"; else echo \"$1=DENIED\"; fi; }}; \
         mknod /disk b {major} {minor} && try rootfs-disk /disk; \
         mknod /zero c 1 5 && try rootfs-zero /zero; \
         mknod /vol/zero c 1 5 && try volume-zero /vol/zero; \
         mknod /dev/disk b {major} {minor} && try dev-disk /dev/disk; \
         mknod /dev/zero2 c 1 5 && try dev-zero /dev/zero2; \
         echo probed"
    )
}

fn pod(name: &str, image: &str, script: &str, security: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: Never\n  terminationGracePeriodSeconds: 1\n  volumes:\n  - name: vol\n    emptyDir: {{}}\n  containers:\n  - name: c\n    image: {image}\n    imagePullPolicy: Never\n    command: [\"sh\", \"-c\", {script:?}]\n    volumeMounts:\n    - name: vol\n      mountPath: /vol\n{security}"
    )
}

/// The pod's log once it has succeeded.
fn finished_log(pp: &Peapod, name: &str) -> String {
    pp.wait_pod_phase(name, "Succeeded", Duration::from_secs(90));
    pp.kubectl_ok(&["logs", name])
}

/// The value the log gives `label` (`READ`/`DENIED`), or a panic showing the whole log.
fn outcome<'a>(log: &'a str, label: &str) -> &'a str {
    log.lines()
        .find_map(|l| l.strip_prefix(&format!("{label}=")))
        .unwrap_or_else(|| panic!("no {label} line in the log:\n{log}"))
}

/// A docker-archive of busybox plus a layer holding `disk`, a block device node for the
/// host's disk, named `hostile-devnode:latest`.
fn device_node_image(dir: &Path, major: u32, minor: u32) -> PathBuf {
    let out = dir.join("devnode.docker.tar");
    let script = r#"
set -eu
W=$1 MAJOR=$2 MINOR=$3 OUT=$4 BASE=$5
mkdir -p "$W/base" "$W/img" "$W/layer"
tar -xf "$BASE" -C "$W/base"
mknod "$W/layer/disk" b "$MAJOR" "$MINOR"
tar --numeric-owner --owner=0 --group=0 -C "$W/layer" -cf "$W/img/devlayer.tar" disk
cp "$W/base/$(jq -r '.[0].Layers[0]' "$W/base/manifest.json")" "$W/img/base.tar"
d1=sha256:$(sha256sum "$W/img/base.tar" | cut -d' ' -f1)
d2=sha256:$(sha256sum "$W/img/devlayer.tar" | cut -d' ' -f1)
jq -c --arg d1 "$d1" --arg d2 "$d2" '.rootfs.diff_ids = [$d1, $d2]' \
    "$W/base/$(jq -r '.[0].Config' "$W/base/manifest.json")" > "$W/config.json"
cfg=$(sha256sum "$W/config.json" | cut -d' ' -f1).json
mv "$W/config.json" "$W/img/$cfg"
jq -cn --arg c "$cfg" '[{Config: $c, RepoTags: ["hostile-devnode:latest"], Layers: ["base.tar", "devlayer.tar"]}]' \
    > "$W/img/manifest.json"
tar -C "$W/img" -cf "$OUT" manifest.json "$cfg" base.tar devlayer.tar
"#;
    let status = Command::new("bash")
        .args(["-c", script, "build"])
        .arg(dir.join("work"))
        .arg(major.to_string())
        .arg(minor.to_string())
        .arg(&out)
        .arg(fixtures().join("busybox.docker.tar"))
        .status()
        .expect("bash");
    assert!(status.success(), "building the device-node image failed");
    out
}

#[test]
fn containers_cannot_read_host_disk_through_device_nodes() {
    let disk = host_disk();
    let (major, minor) = (disk.major, disk.minor);
    eprintln!("aiming at {} ({major}:{minor})", disk.path);
    let pp = Peapod::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let archive = device_node_image(tmp.path(), major, minor);
    pp.peapod(&["image", "import", archive.to_str().expect("utf-8 path")]);

    let probe = probe_script(major, minor);
    pp.apply(&pod("mknod", IMAGE, &probe, ""));
    pp.apply(&pod(
        "privileged",
        IMAGE,
        &probe,
        "    securityContext:\n      privileged: true\n",
    ));
    let shipped = "if [ -b /disk ]; then echo shipped=BLOCK; else echo shipped=ABSENT; fi; \
                   if [ \"$(head -c1 /disk 2>/dev/null | wc -c)\" = 1 ]; then echo image-disk=READ; else echo image-disk=DENIED; fi";
    pp.apply(&pod("shipped", NODE_IMAGE, shipped, ""));

    // Unprivileged root with CAP_MKNOD: nodes may be made, none reaches the disk. The zero
    // device (allowed by the device cgroup) shows nodev at work on the root filesystem and
    // the volume, and its success in /dev shows the script itself works.
    let log = finished_log(&pp, "mknod");
    assert_eq!(outcome(&log, "rootfs-disk"), "DENIED", "{log}");
    assert_eq!(
        outcome(&log, "rootfs-zero"),
        "DENIED",
        "nodev rootfs: {log}"
    );
    assert_eq!(
        outcome(&log, "volume-zero"),
        "DENIED",
        "nodev volume: {log}"
    );
    assert_eq!(outcome(&log, "dev-disk"), "DENIED", "device cgroup: {log}");
    assert_eq!(outcome(&log, "dev-zero"), "READ", "{log}");

    // An image layer's block device node is not created at all.
    let log = finished_log(&pp, "shipped");
    assert_eq!(outcome(&log, "shipped"), "ABSENT", "{log}");
    assert_eq!(outcome(&log, "image-disk"), "DENIED", "{log}");

    // Privileged: the same script reads the disk, from the root filesystem and from /dev.
    let log = finished_log(&pp, "privileged");
    assert_eq!(outcome(&log, "rootfs-disk"), "READ", "{log}");
    assert_eq!(outcome(&log, "dev-disk"), "READ", "{log}");

    // The node still runs ordinary pods.
    pp.apply(&pod("after", IMAGE, "echo still-serving", ""));
    let log = finished_log(&pp, "after");
    assert!(log.contains("still-serving"), "{log}");
    let ready = wait_until("node Ready", Duration::from_secs(30), || {
        pp.jsonpath(
            &format!("node/{}", pp.node_name),
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )
        .filter(|s| s == "True")
    });
    assert_eq!(ready, "True");
}
