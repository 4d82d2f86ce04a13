//! End-to-end tests of the image store through its public API: pulling from a real
//! docker-registry on loopback (pushed to with skopeo), importing OCI and docker archives built
//! by the fixture script, unpacking, removal, and the errors users see.

use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use images::{normalize_reference, Image, ImageError, ImageStore, PullError, PullProgress};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// Builds the busybox fixture into `dir` (about a second).
fn build_busybox(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let status = Command::new(fixtures().join("build-busybox-image.sh"))
        .arg(dir)
        .status()?;
    if !status.success() {
        return Err(format!("build-busybox-image.sh failed: {status}").into());
    }
    Ok(())
}

/// A registry started by registry.sh, stopped on drop.
struct Registry {
    dir: PathBuf,
    port: u16,
}

impl Registry {
    fn start(dir: &Path) -> Result<Self, Box<dyn std::error::Error>> {
        let port = free_port()?;
        let out = Command::new(fixtures().join("registry.sh"))
            .arg("start")
            .arg(dir)
            .arg(port.to_string())
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "registry.sh start failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(Self {
            dir: dir.to_owned(),
            port,
        })
    }

    fn push(&self, layout: &Path, name: &str) -> Result<(), Box<dyn std::error::Error>> {
        let out = Command::new(fixtures().join("registry.sh"))
            .arg("push")
            .arg(&self.dir)
            .arg(self.port.to_string())
            .arg(layout)
            .arg(name)
            .output()?;
        if !out.status.success() {
            return Err(format!(
                "registry.sh push failed: {}",
                String::from_utf8_lossy(&out.stderr)
            )
            .into());
        }
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = Command::new(fixtures().join("registry.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn have_registry_tools() -> bool {
    let ok = Path::new("/usr/bin/docker-registry").exists()
        && Command::new("skopeo")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!("SKIPPED: registry test needs /usr/bin/docker-registry and skopeo (apt-get install docker-registry skopeo)");
    }
    ok
}

/// Checks an unpacked busybox layer.
fn check_busybox_rootfs(store: &ImageStore, image: &Image) -> TestResult {
    let dirs = store.layer_dirs(image)?;
    assert_eq!(dirs.len(), 1);
    let root = &dirs[0];
    let bb = std::fs::metadata(root.join("bin/busybox"))?;
    assert!(bb.is_file() && bb.mode() & 0o111 != 0);
    assert_eq!(bb.len(), std::fs::metadata("/bin/busybox")?.len());
    assert_eq!(
        std::fs::read_link(root.join("bin/sh"))?,
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::read_link(root.join("bin/ls"))?,
        Path::new("busybox")
    );
    let passwd = std::fs::read_to_string(root.join("etc/passwd"))?;
    assert!(passwd.contains("root:x:0:0") && passwd.contains("nobody:x:65534"));
    assert_eq!(
        std::fs::metadata(root.join("tmp"))?.permissions().mode() & 0o7777,
        0o1777
    );
    // Unpacked once: asking again returns the same directory without redoing work.
    let ino = std::fs::metadata(root.join("bin/busybox"))?.ino();
    assert_eq!(store.layer_dirs(image)?, dirs);
    assert_eq!(std::fs::metadata(root.join("bin/busybox"))?.ino(), ino);
    Ok(())
}

#[tokio::test]
async fn pull_from_loopback_registry() -> TestResult {
    if !have_registry_tools() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    build_busybox(&tmp.path().join("fixture"))?;
    let registry = Registry::start(&tmp.path().join("registry"))?;
    registry.push(&tmp.path().join("fixture/busybox-oci"), "busybox:latest")?;
    registry.push(&tmp.path().join("fixture/busybox-oci"), "team/tool:v1")?;

    let store = ImageStore::open(&tmp.path().join("images"))?.with_auth_file(None);
    let reference = format!("127.0.0.1:{}/busybox", registry.port);
    let events = Mutex::new(Vec::new());
    let record = |p: PullProgress| events.lock().map(|mut e| e.push(p)).unwrap_or(());
    let image = store.pull(&reference, Some(&record)).await?;

    assert!(image.id.starts_with("sha256:"));
    assert_eq!(image.repo_tags, vec![format!("{reference}:latest")]);
    assert_eq!(image.repo_digests.len(), 1);
    assert!(image.repo_digests[0].starts_with(&format!("{reference}@sha256:")));
    assert_eq!(image.config.cmd, vec!["sh"]);
    assert!(image.config.env.iter().any(|e| e.starts_with("PATH=")));
    assert!(image.config.entrypoint.is_empty() && image.config.user.is_none());
    assert_eq!(image.layers.len(), 1);
    assert!(image.size_bytes > 500_000);
    let events = events.into_inner().unwrap_or_default();
    assert_eq!(events.first(), Some(&PullProgress::Resolving));
    assert_eq!(events.last(), Some(&PullProgress::Done));
    assert!(events.iter().any(
        |e| matches!(e, PullProgress::Layer { downloaded, total, .. } if downloaded == total)
    ));

    // Found by short reference, by digest reference and by id.
    assert_eq!(store.get(&reference)?.as_ref(), Some(&image));
    assert_eq!(store.get(&image.repo_digests[0])?.as_ref(), Some(&image));
    assert_eq!(store.get(&image.id)?.as_ref(), Some(&image));
    assert_eq!(store.get("busybox")?, None);
    check_busybox_rootfs(&store, &image)?;

    // Same image under another name and by digest: one image, both names.
    let other = format!("127.0.0.1:{}/team/tool:v1", registry.port);
    let again = store.pull(&other, None).await?;
    assert_eq!(again.id, image.id);
    assert_eq!(store.list()?.len(), 1);
    let by_digest = image.repo_digests[0].clone();
    assert_eq!(store.pull(&by_digest, None).await?.id, image.id);

    // Errors users must be able to tell apart.
    let missing = format!("127.0.0.1:{}/nope:latest", registry.port);
    let err = store.pull(&missing, None).await;
    assert!(
        matches!(err, Err(ImageError::Pull(PullError::NotFound { .. }))),
        "{err:?}"
    );
    assert!(err
        .map(|_| ())
        .expect_err("pull must fail")
        .to_string()
        .contains("not found"));
    let missing_tag = format!("{reference}:nope");
    let err = store.pull(&missing_tag, None).await;
    assert!(
        matches!(err, Err(ImageError::Pull(PullError::NotFound { .. }))),
        "{err:?}"
    );
    let closed = format!("127.0.0.1:{}/busybox", free_port()?);
    let err = store.pull(&closed, None).await;
    assert!(
        matches!(err, Err(ImageError::Pull(PullError::Connect { .. }))),
        "{err:?}"
    );

    // A registry serving corrupt content: the digest check refuses it.
    let layer_hex = image.layers[0].trim_start_matches("sha256:");
    let data = registry
        .dir
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&layer_hex[..2])
        .join(layer_hex)
        .join("data");
    let mut bytes = std::fs::read(&data)?;
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&data, bytes)?;
    let fresh = ImageStore::open(&tmp.path().join("images2"))?.with_auth_file(None);
    let err = fresh.pull(&reference, None).await;
    assert!(
        matches!(
            &err,
            Err(ImageError::Pull(PullError::BlobDigestMismatch { .. }))
        ),
        "{err:?}"
    );
    assert!(err
        .map(|_| ())
        .expect_err("pull must fail")
        .to_string()
        .contains("digest mismatch"));
    assert!(fresh.list()?.is_empty());
    Ok(())
}

#[test]
fn import_both_archive_kinds_and_remove() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let fixture = tmp.path().join("fixture");
    build_busybox(&fixture)?;

    let oci_store = ImageStore::open(&tmp.path().join("oci"))?;
    let imported = oci_store.import(&fixture.join("busybox.oci.tar"))?;
    assert_eq!(imported.len(), 1);
    let oci = &imported[0];
    assert_eq!(oci.repo_tags, vec!["docker.io/library/busybox:latest"]);
    assert_eq!(oci.config.cmd, vec!["sh"]);
    check_busybox_rootfs(&oci_store, oci)?;
    assert_eq!(
        oci_store.get("busybox")?.map(|i| i.id),
        Some(oci.id.clone())
    );

    let docker_store = ImageStore::open(&tmp.path().join("docker"))?;
    let imported = docker_store.import(&fixture.join("busybox.docker.tar"))?;
    assert_eq!(imported.len(), 1);
    let docker = &imported[0];
    assert_eq!(docker.repo_tags, vec!["docker.io/library/busybox:latest"]);
    // Same config blob, hence the same image id, whatever the packaging.
    assert_eq!(docker.id, oci.id);
    check_busybox_rootfs(&docker_store, docker)?;
    // Only referenced blobs stay: manifest, config, layer.
    let blob_count = std::fs::read_dir(tmp.path().join("docker/blobs/sha256"))?.count();
    assert_eq!(blob_count, 3);

    // Importing again is harmless; removing by name frees blobs and layers.
    docker_store.import(&fixture.join("busybox.docker.tar"))?;
    assert_eq!(docker_store.list()?.len(), 1);
    docker_store.remove("busybox:latest")?;
    assert!(docker_store.list()?.is_empty());
    assert_eq!(
        std::fs::read_dir(tmp.path().join("docker/blobs/sha256"))?.count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("docker/layers"))?.count(),
        0
    );
    assert!(matches!(
        docker_store.remove("busybox:latest"),
        Err(ImageError::NotFound { .. })
    ));

    // Not an image archive.
    let junk = tmp.path().join("junk.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("hello.txt")?;
    h.set_size(2);
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"hi"[..])?;
    std::fs::write(&junk, b.into_inner()?)?;
    let err = oci_store.import(&junk);
    assert!(
        matches!(
            err,
            Err(ImageError::Import(images::ImportError::NotAnArchive { .. }))
        ),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn concurrent_imports_share_one_store() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let fixture = tmp.path().join("fixture");
    build_busybox(&fixture)?;
    let root = tmp.path().join("images");
    // Two handles opened separately stand for two processes; the file lock orders them.
    let handles: Vec<_> = ["busybox.oci.tar", "busybox.docker.tar", "busybox.oci.tar"]
        .into_iter()
        .map(|name| {
            let root = root.clone();
            let tarball = fixture.join(name);
            std::thread::spawn(move || -> Result<Vec<PathBuf>, ImageError> {
                let store = ImageStore::open(&root)?;
                let images = store.import(&tarball)?;
                let mut dirs = Vec::new();
                for image in &images {
                    dirs.extend(store.layer_dirs(image)?);
                }
                Ok(dirs)
            })
        })
        .collect();
    for h in handles {
        let dirs = h.join().map_err(|_| "import thread panicked")??;
        assert!(dirs.iter().all(|d| d.join("bin/busybox").is_file()));
    }
    let store = ImageStore::open(&root)?;
    let list = store.list()?;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].repo_tags, vec!["docker.io/library/busybox:latest"]);
    Ok(())
}

#[test]
fn normalises_references() -> TestResult {
    assert_eq!(
        normalize_reference("busybox")?,
        "docker.io/library/busybox:latest"
    );
    assert_eq!(
        normalize_reference("127.0.0.1:5000/busybox")?,
        "127.0.0.1:5000/busybox:latest"
    );
    assert!(matches!(
        normalize_reference("UPPER/case"),
        Err(ImageError::InvalidReference(_))
    ));
    Ok(())
}

/// Writes `data` as a blob of an OCI layout and returns its descriptor fields.
fn put_blob(layout: &Path, data: &[u8]) -> Result<(String, usize), std::io::Error> {
    use sha2::Digest as _;
    let hex = hex::encode(sha2::Sha256::digest(data));
    std::fs::write(layout.join("blobs/sha256").join(&hex), data)?;
    Ok((format!("sha256:{hex}"), data.len()))
}

/// Copies a directory tree of plain files.
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

#[tokio::test]
async fn pull_multi_arch_index_picks_host_platform() -> TestResult {
    if !have_registry_tools() {
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let fixture = tmp.path().join("fixture");
    build_busybox(&fixture)?;
    // A layout whose tag names an index: a decoy for another architecture listed first, then
    // the real busybox manifest for this host.
    let layout = tmp.path().join("multi");
    copy_tree(&fixture.join("busybox-oci"), &layout)?;
    let top: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json"))?)?;
    let host_desc = top["manifests"][0].clone();
    let host_manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(
        layout.join("blobs/sha256").join(
            host_desc["digest"]
                .as_str()
                .ok_or("no digest")?
                .trim_start_matches("sha256:"),
        ),
    )?)?;
    let decoy_arch = if std::env::consts::ARCH == "s390x" {
        "amd64"
    } else {
        "s390x"
    };
    let decoy_config = serde_json::json!({
        "architecture": decoy_arch, "os": "linux",
        "config": {"Cmd": ["decoy"]},
        "rootfs": {"type": "layers", "diff_ids": []}
    });
    let (cfg_digest, cfg_size) = put_blob(&layout, &serde_json::to_vec(&decoy_config)?)?;
    let mut decoy_manifest = host_manifest.clone();
    decoy_manifest["config"]["digest"] = cfg_digest.into();
    decoy_manifest["config"]["size"] = cfg_size.into();
    let (decoy_digest, decoy_size) = put_blob(&layout, &serde_json::to_vec(&decoy_manifest)?)?;
    let mut host_entry = host_desc.clone();
    if let Some(obj) = host_entry.as_object_mut() {
        obj.remove("annotations");
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": decoy_digest,
             "size": decoy_size, "platform": {"architecture": decoy_arch, "os": "linux"}},
            host_entry,
        ]
    });
    let (index_digest, index_size) = put_blob(&layout, &serde_json::to_vec(&index)?)?;
    let new_top = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json",
                       "digest": index_digest, "size": index_size,
                       "annotations": {"org.opencontainers.image.ref.name": "latest"}}]
    });
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&new_top)?)?;

    let registry = Registry::start(&tmp.path().join("registry"))?;
    registry.push(&layout, "multi:latest")?;
    let store = ImageStore::open(&tmp.path().join("images"))?.with_auth_file(None);
    let reference = format!("127.0.0.1:{}/multi:latest", registry.port);
    let image = store.pull(&reference, None).await?;
    assert_eq!(
        image.config.cmd,
        vec!["sh"],
        "picked the host platform's manifest"
    );
    assert_eq!(
        image.repo_digests,
        vec![format!("127.0.0.1:{}/multi@{index_digest}", registry.port)],
        "repo digest names the index, as Docker and containerd report it"
    );
    check_busybox_rootfs(&store, &image)?;
    // Removing by id frees everything, the index blob included.
    store.remove(&image.id)?;
    assert_eq!(
        std::fs::read_dir(tmp.path().join("images/blobs/sha256"))?.count(),
        0
    );
    Ok(())
}
