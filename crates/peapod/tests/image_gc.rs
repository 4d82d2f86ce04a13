//! Image garbage collection as the kubelet does it: above `imageGCHighThresholdPercent` of
//! the image filesystem, images no container uses and older than `imageMinimumGCAge` are
//! removed; the image a pod runs is kept, and layers it shares with a removed image stay.
//! When it cannot free enough, the node gets a `FreeDiskSpaceFailed` Warning event.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{fixtures, wait_until, Peapod};

/// busybox with one more env var in its config: another image id over the same layers,
/// named `gc-victim:latest`.
fn victim_image(dir: &Path) -> PathBuf {
    let out = dir.join("victim.docker.tar");
    let script = r#"
set -eu
W=$1 OUT=$2 BASE=$3
mkdir -p "$W/img"
tar -xf "$BASE" -C "$W/img"
old=$(jq -r '.[0].Config' "$W/img/manifest.json")
jq -c '.config.Env += ["GC_VICTIM=1"]' "$W/img/$old" > "$W/config.json"
cfg=$(sha256sum "$W/config.json" | cut -d' ' -f1).json
rm "$W/img/$old"
mv "$W/config.json" "$W/img/$cfg"
jq -c --arg c "$cfg" '.[0].Config = $c | .[0].RepoTags = ["gc-victim:latest"]' \
    "$W/img/manifest.json" > "$W/manifest.json"
mv "$W/manifest.json" "$W/img/manifest.json"
tar -C "$W/img" -cf "$OUT" .
"#;
    let status = Command::new("bash")
        .args(["-c", script, "build"])
        .arg(dir.join("work"))
        .arg(&out)
        .arg(fixtures().join("busybox.docker.tar"))
        .status()
        .expect("bash");
    assert!(status.success(), "building the victim image failed");
    out
}

const POD: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: NAME
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: Never
    command: ["sleep", "3600"]
"#;

#[test]
fn unused_images_are_collected_above_the_threshold_and_used_ones_kept() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = tmp.path().join("kubelet.yaml");
    // Any real disk is above 1 %: collection runs on every check.
    common::write_kubelet_config(
        &config,
        "imageGCHighThresholdPercent: 1\nimageGCLowThresholdPercent: 0\nimageMinimumGCAge: 30s\n",
    );
    let pp = Peapod::start_with(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--image-gc-period",
        "1s",
    ]);
    pp.apply(&POD.replace("NAME", "user"));
    pp.wait_pod_phase("user", "Running", Duration::from_secs(60));
    let victim = victim_image(tmp.path());
    pp.peapod(&["image", "import", victim.to_str().expect("utf-8 path")]);
    assert!(pp.peapod(&["image", "ls"]).contains("gc-victim"));

    let listing = wait_until(
        "the unused image collected",
        Duration::from_secs(120),
        || {
            let ls = pp.peapod(&["image", "ls"]);
            (!ls.contains("gc-victim")).then_some(ls)
        },
    );
    assert!(
        listing.contains("busybox"),
        "the image in use is kept: {listing}"
    );
    // The removal is logged just after the store forgets the image.
    wait_until("the collection logged", Duration::from_secs(10), || {
        pp.server_log()
            .contains("image garbage collected")
            .then_some(())
    });
    // Nothing can bring a real disk down to 0 %: kubelet's Warning on the node says so.
    let events = wait_until(
        "the node's FreeDiskSpaceFailed event",
        Duration::from_secs(60),
        || {
            let out = pp.jsonpath_all(
                "events",
                "{range .items[?(@.reason==\"FreeDiskSpaceFailed\")]}{.type} {.involvedObject.kind}/{.involvedObject.name}: {.message}{\"\\n\"}{end}",
            );
            (!out.is_empty()).then_some(out)
        },
    );
    assert!(
        events.contains(&format!(
            "Warning Node/{}: Failed to garbage collect required amount of images. Attempted to free ",
            pp.node_name
        )),
        "{events}"
    );
    // The layers the victim shared with busybox are still there: a new pod starts.
    pp.apply(&POD.replace("NAME", "after"));
    pp.wait_pod_phase("after", "Running", Duration::from_secs(60));
    pp.kubectl_ok(&["delete", "pod", "user", "after", "--timeout=60s"]);
}
