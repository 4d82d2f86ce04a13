//! Test images made from the busybox fixture plus one more layer (files, links, an
//! `/etc/passwd`), imported into a node as an OCI archive with `peapod image import`.

use std::fs;
use std::path::Path;
use std::process::Command;

use super::{fixtures, Peapod};

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    assert!(out.status.success(), "sha256sum {}", path.display());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// Stores `file` as a blob of the layout; returns its descriptor fields.
fn put_blob(layout: &Path, file: &Path) -> (String, u64) {
    let digest = sha256(file);
    let size = fs::metadata(file).expect("blob").len();
    fs::copy(file, layout.join("blobs/sha256").join(&digest)).expect("copy blob");
    (format!("sha256:{digest}"), size)
}

fn read_blob(layout: &Path, digest: &str) -> serde_json::Value {
    let hex = digest.trim_start_matches("sha256:");
    serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(hex)).expect("blob"))
        .expect("json blob")
}

/// Imports `name` (`repo:tag`) into the node: the busybox fixture with the directory `tree`
/// laid over it as one more layer (owned by root, so the image's files are root's).
pub fn import_busybox_plus_layer(pp: &Peapod, name: &str, tree: &Path) {
    let work = tempfile::tempdir().expect("tempdir");
    let layout = work.path().join("layout");
    let status = Command::new("cp")
        .arg("-a")
        .arg(fixtures().join("busybox-oci"))
        .arg(&layout)
        .status()
        .expect("cp");
    assert!(status.success(), "copying the busybox layout");

    let layer = work.path().join("layer.tar");
    let status = Command::new("tar")
        .args([
            "--sort=name",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
            "-C",
        ])
        .arg(tree)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("tar");
    assert!(status.success(), "building the layer");
    let (layer_digest, layer_size) = put_blob(&layout, &layer);

    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).expect("index"))
            .expect("index json");
    let manifest_digest = index["manifests"][0]["digest"]
        .as_str()
        .expect("manifest digest")
        .to_string();
    let mut manifest = read_blob(&layout, &manifest_digest);
    let config_digest = manifest["config"]["digest"]
        .as_str()
        .expect("config digest")
        .to_string();
    let mut config = read_blob(&layout, &config_digest);
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .expect("diff_ids")
        .push(layer_digest.clone().into());
    let config_file = work.path().join("config.json");
    fs::write(&config_file, serde_json::to_vec(&config).expect("config")).expect("write");
    let (config_digest, config_size) = put_blob(&layout, &config_file);
    manifest["config"]["digest"] = config_digest.into();
    manifest["config"]["size"] = config_size.into();
    manifest["layers"]
        .as_array_mut()
        .expect("layers")
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer_size,
        }));
    let manifest_file = work.path().join("manifest.json");
    fs::write(
        &manifest_file,
        serde_json::to_vec(&manifest).expect("manifest"),
    )
    .expect("write");
    let (manifest_digest, manifest_size) = put_blob(&layout, &manifest_file);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest_size,
            "annotations": {
                "io.containerd.image.name": name,
                "org.opencontainers.image.ref.name": name.rsplit(':').next().expect("tag"),
            },
        }],
    });
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).expect("index"),
    )
    .expect("write index");
    let archive = work.path().join("image.tar");
    let status = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(&archive)
        .args(["oci-layout", "index.json", "blobs"])
        .status()
        .expect("tar");
    assert!(status.success(), "archiving the image");
    pp.peapod(&["image", "import", archive.to_str().expect("utf-8 path")]);
}
