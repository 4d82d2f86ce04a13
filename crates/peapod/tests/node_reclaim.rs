//! Node-level reclaim before eviction, as the kubelet's eviction manager does it: the image
//! store is on a tmpfs of its own (a dedicated image filesystem, whose free space only the
//! node and this test change, so the figures are the same on any machine), with
//! `evictionHard: {imagefs.available: "<32Mi"}` and `evictionMinimumReclaim:
//! {imagefs.available: 32Mi}`. The test fills the image filesystem to just below the
//! threshold:
//! - with a large unused image in the store, the node deletes it (its Warning
//!   `EvictionThresholdMet` event first), observes again, is back above threshold + minimum
//!   reclaim, and evicts no pod;
//! - with a small unused image, deleting it brings the node above the threshold but not above
//!   threshold + minimum reclaim: the image is gone by the time the running pod is evicted
//!   (`Failed`/`Evicted`, the kubelet's message), and the node keeps reporting
//!   `DiskPressure` while it stays below threshold + minimum reclaim, until the test frees
//!   the space.
//!
//! A minimum reclaim of a signal the kubelet does not know is refused at startup.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{fixtures, wait_until, Peapod, PEAPOD};

const T: Duration = Duration::from_secs(90);
const MIB: u64 = 1 << 20;
/// `imagefs.available`'s threshold and minimum reclaim, in MiB.
const THRESHOLD: u64 = 32;
const MINIMUM_RECLAIM: u64 = 32;

/// busybox plus a layer holding `mib` MiB of random data, named `name`: an image that
/// frees at least that much when deleted.
fn image_with_layer(dir: &Path, name: &str, mib: u64) -> PathBuf {
    let out = dir.join(format!("{}.docker.tar", name.replace([':', '/'], "_")));
    let script = r#"
set -eu
W=$1 OUT=$2 BASE=$3 NAME=$4 MIB=$5
mkdir -p "$W/img" "$W/layer"
tar -xf "$BASE" -C "$W/img"
head -c $((MIB * 1024 * 1024)) /dev/urandom > "$W/layer/filler"
tar --owner=0 --group=0 --numeric-owner -C "$W/layer" -cf "$W/layer.tar" filler
diff=$(sha256sum "$W/layer.tar" | cut -d' ' -f1)
mkdir -p "$W/img/$diff"
mv "$W/layer.tar" "$W/img/$diff/layer.tar"
old=$(jq -r '.[0].Config' "$W/img/manifest.json")
jq -c --arg d "sha256:$diff" '.rootfs.diff_ids += [$d]' "$W/img/$old" > "$W/config.json"
cfg=$(sha256sum "$W/config.json" | cut -d' ' -f1).json
rm "$W/img/$old"
mv "$W/config.json" "$W/img/$cfg"
jq -c --arg c "$cfg" --arg n "$NAME" --arg l "$diff/layer.tar" \
    '.[0].Config = $c | .[0].RepoTags = [$n] | .[0].Layers += [$l]' \
    "$W/img/manifest.json" > "$W/manifest.json"
mv "$W/manifest.json" "$W/img/manifest.json"
tar -C "$W/img" -cf "$OUT" .
"#;
    let status = Command::new("bash")
        .args(["-c", script, "build"])
        .arg(dir.join(format!("work-{mib}")))
        .arg(&out)
        .arg(fixtures().join("busybox.docker.tar"))
        .arg(name)
        .arg(mib.to_string())
        .status()
        .expect("bash");
    assert!(status.success(), "building {name} failed");
    out
}

/// Bytes available on the filesystem of `dir`.
fn available(dir: &Path) -> u64 {
    let v = nix::sys::statvfs::statvfs(dir).expect("statvfs");
    v.blocks_available() * v.fragment_size()
}

/// Writes a file at `path` that leaves `target` bytes available on its filesystem (a
/// tmpfs: the written pages are what it takes).
fn fill_to(path: &Path, target: u64) {
    use std::io::Write;
    let dir = path.parent().expect("parent");
    let free = available(dir);
    assert!(free > target, "{free} bytes available, wanted {target}");
    let mut left = free - target;
    let mut file = std::fs::File::create(path).expect("filler");
    let chunk = vec![0xa5u8; MIB as usize];
    while left > 0 {
        let n = left.min(MIB) as usize;
        file.write_all(&chunk[..n]).expect("writing filler");
        left -= n as u64;
    }
    file.sync_all().expect("sync");
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: user
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#;

#[test]
fn unused_images_are_deleted_before_a_pod_is_evicted_until_the_minimum_reclaim() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("kubelet.yaml");
    common::write_kubelet_config(
        &config,
        &format!(
            "evictionHard:\n  imagefs.available: \"<{THRESHOLD}Mi\"\nevictionMinimumReclaim:\n  imagefs.available: {MINIMUM_RECLAIM}Mi\nevictionPressureTransitionPeriod: 1s\nimageMinimumGCAge: 0s\n"
        ),
    );
    let big = image_with_layer(tmp.path(), "reclaim-big:latest", 48);
    let small = image_with_layer(tmp.path(), "reclaim-small:latest", 2);
    // Room for the image store's own reserve (it unpacks a layer only while 512 MiB stay
    // free) when the pod's image is unpacked; the test fills the rest later.
    let pp =
        Peapod::start_with_image_fs("640m", &["--config", config.to_str().expect("utf-8 path")]);
    let node = format!("node/{}", pp.node_name);
    let images = pp.image_dir();
    let filler = images.join("e2e-filler");
    let pressure = |status: &str| {
        let got = pp.jsonpath(
            &node,
            "{.status.conditions[?(@.type==\"DiskPressure\")].status}/{.status.conditions[?(@.type==\"DiskPressure\")].reason}",
        );
        got.as_deref() == Some(status)
    };
    let reclaim_events = || -> u64 {
        let out = pp.jsonpath_all(
            "events",
            "{range .items[?(@.reason==\"EvictionThresholdMet\")]}{.type} {.involvedObject.kind}/{.involvedObject.name} {.count}: {.message}{\"\\n\"}{end}",
        );
        let prefix = format!("Warning Node/{} ", pp.node_name);
        out.lines()
            .filter_map(|l| l.strip_prefix(&prefix))
            .filter_map(|l| l.strip_suffix(": Attempting to reclaim ephemeral-storage"))
            .map(|count| count.parse::<u64>().expect("event count"))
            .sum()
    };
    wait_until("no DiskPressure", T, || {
        pressure("False/KubeletHasNoDiskPressure").then_some(())
    });
    pp.apply(POD);
    pp.wait_pod_phase("user", "Running", T);

    // A large unused image: deleting it is enough.
    pp.peapod(&["image", "import", big.to_str().expect("utf-8 path")]);
    fill_to(&filler, (THRESHOLD - 1) * MIB);
    let listing = wait_until("the large unused image deleted", T, || {
        let ls = pp.peapod(&["image", "ls"]);
        (!ls.contains("reclaim-big")).then_some(ls)
    });
    assert!(
        listing.contains("busybox"),
        "the image in use is kept: {listing}"
    );
    wait_until("the reclaim relieving the node", T, || {
        pp.server_log()
            .contains("able to reduce resource pressure without evicting pods")
            .then_some(())
    });
    let after = available(&images);
    assert!(
        after >= (THRESHOLD + MINIMUM_RECLAIM) * MIB,
        "{after} bytes available after deleting the large image"
    );
    assert_eq!(reclaim_events(), 1, "one round met the threshold");
    assert_eq!(
        pp.jsonpath("pod/user", "{.status.phase}").as_deref(),
        Some("Running"),
        "no pod is evicted when deleting images relieved the node"
    );
    wait_until("DiskPressure gone after the transition period", T, || {
        pressure("False/KubeletHasNoDiskPressure").then_some(())
    });

    // A small unused image: deleting it is not enough for the minimum reclaim.
    pp.peapod(&["image", "import", small.to_str().expect("utf-8 path")]);
    assert!(pp.peapod(&["image", "ls"]).contains("reclaim-small"));
    fill_to(&images.join("e2e-filler-2"), (THRESHOLD - 1) * MIB);
    wait_until("the pod evicted", T, || {
        let got = pp.jsonpath("pod/user", "{.status.phase}/{.status.reason}")?;
        (got == "Failed/Evicted").then_some(())
    });
    let listing = pp.peapod(&["image", "ls"]);
    assert!(
        !listing.contains("reclaim-small"),
        "the unused image is deleted before a pod is evicted: {listing}"
    );
    let message = pp
        .jsonpath("pod/user", "{.status.message}")
        .expect("message");
    assert!(
        message.starts_with(&format!(
            "The node was low on resource: ephemeral-storage. Threshold quantity: {THRESHOLD}Mi, available: "
        )),
        "{message}"
    );
    let after = available(&images);
    assert!(
        (THRESHOLD * MIB..(THRESHOLD + MINIMUM_RECLAIM) * MIB).contains(&after),
        "{after} bytes available: above the threshold, below its minimum reclaim"
    );
    // Above the threshold but short of the minimum reclaim, the node keeps reclaiming and
    // reporting the pressure, round after round.
    let evicting_round = reclaim_events();
    assert!(evicting_round >= 2, "{evicting_round}");
    wait_until(
        "a later round still reclaiming, with DiskPressure reported",
        T,
        || {
            (reclaim_events() > evicting_round && pressure("True/KubeletHasDiskPressure"))
                .then_some(())
        },
    );
    std::fs::remove_file(&filler).expect("removing the filler");
    std::fs::remove_file(images.join("e2e-filler-2")).expect("removing the filler");
    wait_until(
        "DiskPressure gone above threshold + minimum reclaim",
        T,
        || pressure("False/KubeletHasNoDiskPressure").then_some(()),
    );
    pp.kubectl_ok(&["delete", "pod", "user", "--timeout=60s"]);
}

#[test]
fn a_minimum_reclaim_of_an_unknown_signal_is_refused_at_startup() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("kubelet.yaml");
    common::write_kubelet_config(&config, "evictionMinimumReclaim:\n  memory.free: 1Gi\n");
    let out = Command::new(PEAPOD)
        .args(["up", "--listen", "127.0.0.1:0", "--state-dir"])
        .arg(tmp.path().join("state"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("running peapod up");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "invalid evictionMinimumReclaim: unsupported eviction signal \"memory.free\""
        ),
        "{stderr}"
    );
}
