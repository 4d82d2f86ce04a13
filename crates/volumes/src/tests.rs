//! VolumeManager against a temp dir with real tmpfs and bind mounts (the agent runs as
//! root; so do these tests).

use super::*;
use crate::atomic::DATA_DIR;
use serde_json::json;

fn pod(uid: &str, volumes: serde_json::Value, mounts: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "p", "namespace": "ns", "uid": uid, "labels": {"app": "a"}},
        "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": mounts}],
                 "volumes": volumes}
    }))
    .expect("pod")
}

/// Unmounts whatever a test mounted below its temp dir, even when the test panics.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = teardown_dir(&HostMounter, &self.0.join("volumes"));
    }
}

fn manager(dir: &Path) -> VolumeManager {
    VolumeManager::new(
        dir.join("volumes"),
        Arc::new(HostMounter),
        Duration::from_secs(60),
    )
}

fn objects() -> Objects {
    let mut o = Objects::default();
    o.config_maps.insert(
        "cm".into(),
        Some(
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}))
                .expect("cm"),
        ),
    );
    o.secrets.insert(
        "s".into(),
        Some(
            serde_json::from_value(json!({"metadata": {"name": "s"}, "data": {"pw": "eA=="}}))
                .expect("s"),
        ),
    );
    o
}

fn mounted(m: &VolumeManager, path: &Path) -> bool {
    HostMounter
        .mounts_under(m.root())
        .expect("mountinfo")
        .iter()
        .any(|p| p == path)
}

#[test]
fn sets_up_every_kind_and_tears_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let host = tmp.path().join("host");
    fs::create_dir_all(host.join("sub")).expect("host dir");
    fs::write(host.join("sub/f"), "hostfile").expect("host file");
    let m = manager(tmp.path());
    let p = pod(
        "uid-1",
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
            {"name": "cfg", "configMap": {"name": "cm"}},
            {"name": "sec", "secret": {"secretName": "s"}},
            {"name": "down", "downwardAPI": {"items": [{"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}},
            {"name": "host", "hostPath": {"path": host.to_string_lossy(), "type": "Directory"}}
        ]),
        json!([
            {"name": "scratch", "mountPath": "/data"},
            {"name": "cfg", "mountPath": "/data/cfg"},
            {"name": "host", "mountPath": "/h", "subPath": "sub", "readOnly": true,
             "recursiveReadOnly": "IfPossible"},
            {"name": "mem", "mountPath": "/m", "subPathExpr": "$(DIR)"}
        ]),
    );
    let paths = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            None,
        )
        .expect("setup");
    let pod_dir = m.pod_dir("uid-1").expect("dir");
    let mode = |p: &Path| fs::metadata(p).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode(m.root()), crate::POD_DIR_MODE);
    assert_eq!(mode(&pod_dir), crate::POD_DIR_MODE);
    assert_eq!(mode(&paths["sec"].join("pw")), 0o644, "defaultMode");
    assert!(mounted(&m, &paths["mem"]), "memory emptyDir is tmpfs");
    assert!(mounted(&m, &paths["sec"]), "secret is tmpfs");
    assert!(!mounted(&m, &paths["cfg"]));
    assert_eq!(
        fs::read_to_string(paths["cfg"].join("k")).expect("key"),
        "v"
    );
    assert_eq!(
        fs::read_to_string(paths["sec"].join("pw")).expect("pw"),
        "x"
    );
    assert_eq!(
        fs::read_to_string(paths["down"].join("labels")).expect("labels"),
        "app=\"a\""
    );
    assert_eq!(paths["host"], host);
    // Idempotent: a second setup mounts nothing new.
    let before = HostMounter.mounts_under(m.root()).expect("mounts").len();
    m.setup(
        &p,
        &PodContext::default(),
        &objects(),
        &mut Vec::new(),
        None,
    )
    .expect("again");
    assert_eq!(
        HostMounter.mounts_under(m.root()).expect("mounts").len(),
        before
    );

    let container = p.spec.as_ref().expect("spec").containers[0].clone();
    let env = vec![("DIR".to_string(), "logs".to_string())];
    let mounts = m
        .container_mounts(&p, &container, &paths, &env, true)
        .expect("mounts");
    let targets: Vec<&str> = mounts.iter().map(|x| x.container_path.as_str()).collect();
    assert_eq!(targets, vec!["/data", "/h", "/m", "/data/cfg"]);
    let h = &mounts[1];
    assert!(h.readonly);
    assert!(h.recursive_read_only, "IfPossible where the runtime can");
    assert!(
        !mounts[3].recursive_read_only,
        "a volume made read-only by its kind is not recursively so"
    );
    assert!(h.host_path.starts_with(pod_dir.join("volume-subpaths")));
    assert_eq!(
        fs::read_to_string(h.host_path.join("f")).expect("through bind"),
        "hostfile"
    );
    assert!(paths["mem"].join("logs").is_dir(), "subPathExpr created");
    assert!(mounts[3].readonly, "configMap volumes are always read-only");
    // Re-running (container restart) replaces the subPath binds instead of stacking them.
    let again = m
        .container_mounts(&p, &container, &paths, &env, false)
        .expect("mounts again");
    assert!(again[1].readonly && !again[1].recursive_read_only);
    let subs = HostMounter
        .mounts_under(&pod_dir.join("volume-subpaths"))
        .expect("mounts");
    assert_eq!(subs.len(), 2, "{subs:?}");

    m.teardown("uid-1").expect("teardown");
    assert!(HostMounter
        .mounts_under(m.root())
        .expect("mounts")
        .is_empty());
    assert!(!pod_dir.exists());
    assert_eq!(
        fs::read_to_string(host.join("sub/f")).expect("host file kept"),
        "hostfile"
    );
    m.teardown("uid-1").expect("teardown is idempotent");
}

#[test]
fn failures_are_reported_and_orphans_cleaned() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let m = manager(tmp.path());
    let p = pod(
        "uid-2",
        json!([{"name": "cfg", "configMap": {"name": "missing"}}]),
        json!([]),
    );
    let err = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            None,
        )
        .expect_err("missing configmap");
    assert_eq!(
        err.to_string(),
        "MountVolume.SetUp failed for volume \"cfg\" : configmap \"missing\" not found"
    );
    let p = pod(
        "uid-3",
        json!([{"name": "x", "hostPath": {"path": "/nonexistent-peapod", "type": "Directory"}}]),
        json!([]),
    );
    let err = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            None,
        )
        .expect_err("hostPath");
    assert!(err.to_string().contains("is not a directory"), "{err}");
    let p = pod(
        "uid-4",
        json!([{"name": "remote", "nfs": {"server": "s", "path": "/"}}]),
        json!([]),
    );
    let err = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            None,
        )
        .expect_err("nfs");
    assert!(
        err.to_string().contains("nfs volumes are not supported"),
        "{err}"
    );

    // A subPath escaping through a symlink is refused.
    let p = pod(
        "uid-5",
        json!([{"name": "d", "emptyDir": {"medium": "Memory"}}]),
        json!([{"name": "d", "mountPath": "/x", "subPath": "evil"}]),
    );
    let paths = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            None,
        )
        .expect("setup");
    std::os::unix::fs::symlink("/etc", paths["d"].join("evil")).expect("symlink");
    let container = p.spec.as_ref().expect("spec").containers[0].clone();
    let err = m
        .container_mounts(&p, &container, &paths, &[], true)
        .expect_err("escape");
    // kubelet's message leaves the cause out; the error keeps it for the log.
    assert_eq!(
        err.to_string(),
        "failed to prepare subPath for volumeMount \"d\" of container \"c\""
    );
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.is_some_and(|c| c.contains("not within volume path")),
        "{err:?}"
    );

    // uid-5 is not kept: its tmpfs is unmounted and its files removed.
    m.cleanup_orphans(&HashSet::new());
    assert!(HostMounter
        .mounts_under(m.root())
        .expect("mounts")
        .is_empty());
    assert_eq!(fs::read_dir(m.root()).expect("root").count(), 0);
}

#[test]
fn unmount_all_releases_the_state_dir() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let m = manager(tmp.path());
    let p = pod(
        "uid-6",
        json!([{"name": "sec", "secret": {"secretName": "s"}}]),
        json!([]),
    );
    m.setup(
        &p,
        &PodContext::default(),
        &objects(),
        &mut Vec::new(),
        None,
    )
    .expect("setup");
    unmount_all(tmp.path()).expect("unmount_all");
    assert!(HostMounter
        .mounts_under(m.root())
        .expect("mounts")
        .is_empty());
    assert!(!m.root().exists());
}

#[test]
fn fs_group_owns_every_volume_but_host_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let host = tmp.path().join("host");
    fs::create_dir_all(&host).expect("host dir");
    let m = manager(tmp.path());
    let mut p = pod(
        "uid-fsg",
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
            {"name": "cfg", "configMap": {"name": "cm"}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
            {"name": "host", "hostPath": {"path": host.to_string_lossy()}}
        ]),
        json!([]),
    );
    p.spec.as_mut().expect("spec").security_context =
        Some(serde_json::from_value(json!({"fsGroup": 2345})).expect("sc"));
    let ctx = PodContext::default();
    let paths = m
        .setup(&p, &ctx, &objects(), &mut Vec::new(), None)
        .expect("setup");
    let stat = |p: &Path| fs::metadata(p).expect("stat");
    for name in ["scratch", "mem", "cfg", "sec"] {
        let root = stat(&paths[name]);
        assert_eq!(root.gid(), 2345, "{name}");
        assert_eq!(root.mode() & 0o2000, 0o2000, "{name} setgid");
    }
    assert_eq!(stat(&paths["scratch"]).mode() & 0o7777, 0o2777);
    assert_ne!(stat(&host).gid(), 2345, "hostPath is left alone");
    // Keys: group fsGroup; a 0400 secret reads back 0440, a 0644 key keeps its mode.
    let key = stat(&paths["sec"].join("pw"));
    assert_eq!((key.gid(), key.mode() & 0o7777), (2345, 0o440));
    let key = stat(&paths["cfg"].join("k"));
    assert_eq!((key.gid(), key.mode() & 0o7777), (2345, 0o644));

    // A refresh with the same data writes no new version and does not walk the emptyDir
    // again (a file the pod made with another group keeps it).
    let version = fs::read_link(paths["cfg"].join(DATA_DIR)).expect("..data");
    let own = paths["scratch"].join("own");
    fs::write(&own, "x").expect("write");
    std::os::unix::fs::chown(&own, None, Some(7)).expect("chgrp");
    m.setup(&p, &ctx, &objects(), &mut Vec::new(), None)
        .expect("refresh");
    assert_eq!(
        fs::read_link(paths["cfg"].join(DATA_DIR)).expect("..data"),
        version
    );
    assert_eq!(stat(&own).gid(), 7);
    assert_eq!(stat(&paths["scratch"]).mode() & 0o2000, 0o2000);

    // New data: the new version gets the group before it becomes visible.
    let mut changed = objects();
    changed.config_maps.insert(
        "cm".into(),
        Some(
            serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k2": "v2"}}))
                .expect("cm"),
        ),
    );
    m.setup(&p, &ctx, &changed, &mut Vec::new(), None)
        .expect("update");
    assert_eq!(stat(&paths["cfg"].join("k2")).gid(), 2345);
    m.teardown("uid-fsg").expect("teardown");
}

#[test]
fn claims_mount_their_volume_directory_which_outlives_the_pod() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let m = manager(tmp.path());
    let data = tmp.path().join("local-path/pvc-1_ns_data");
    let mut objs = objects();
    objs.claims.insert(
        "data".into(),
        Ok(ClaimVolume {
            path: data.clone(),
            check: "DirectoryOrCreate".into(),
        }),
    );
    objs.claims.insert(
        "waiting".into(),
        Err(ClaimError::NotBound {
            namespace: "ns".into(),
            name: "waiting".into(),
            phase: "Pending".into(),
            volume: String::new(),
        }),
    );
    let p = pod(
        "uid-claim",
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "data"}},
               {"name": "ro", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}}]),
        json!([{"name": "d", "mountPath": "/data"}, {"name": "ro", "mountPath": "/ro"}]),
    );
    let paths = m
        .setup(&p, &PodContext::default(), &objs, &mut Vec::new(), None)
        .expect("setup");
    assert_eq!(paths["d"], data);
    assert!(data.is_dir(), "DirectoryOrCreate made the directory");
    let container = p.spec.as_ref().expect("spec").containers[0].clone();
    let mounts = m
        .container_mounts(&p, &container, &paths, &[], true)
        .expect("mounts");
    let ro: Vec<(String, bool)> = mounts
        .iter()
        .map(|m| (m.container_path.clone(), m.readonly))
        .collect();
    assert_eq!(
        ro,
        vec![("/data".to_string(), false), ("/ro".to_string(), true)]
    );
    fs::write(data.join("kept"), "x").expect("write");
    m.teardown("uid-claim").expect("teardown");
    assert!(
        data.join("kept").exists(),
        "the pod's teardown leaves the claim's data"
    );

    let waiting = pod(
        "uid-wait",
        json!([{"name": "w", "persistentVolumeClaim": {"claimName": "waiting"}}]),
        json!([]),
    );
    let err = m
        .setup(
            &waiting,
            &PodContext::default(),
            &objs,
            &mut Vec::new(),
            None,
        )
        .expect_err("unbound");
    assert_eq!(
        err.to_string(),
        "Unable to attach or mount volumes: unmounted volumes=[w], failed to process volumes=[w]: \
         error processing PVC ns/waiting: PVC ns/waiting has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"
    );
}

#[test]
fn user_namespace_pods_get_their_volumes_owned_by_their_root() {
    use std::os::unix::fs::MetadataExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let m = manager(tmp.path());
    let mut p = pod(
        "uid-userns",
        json!([
            {"name": "scratch", "emptyDir": {}},
            {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}}
        ]),
        json!([]),
    );
    let ids = IdMapping {
        container_id: 0,
        host_id: 3 << 16,
        length: 1 << 16,
    };
    let paths = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            Some(ids),
        )
        .expect("setup");
    let owner = |p: &Path| {
        let meta = fs::symlink_metadata(p).expect("stat");
        (meta.uid(), meta.gid())
    };
    let root = (3 << 16, 3 << 16);
    assert_eq!(owner(&paths["scratch"]), root);
    assert_eq!(owner(&paths["sec"]), root);
    // The key's file (its visible name is a symlink, whose owner grants nothing).
    let key = fs::metadata(paths["sec"].join("pw")).expect("key");
    assert_eq!((key.uid(), key.gid()), root);
    assert_eq!(key.mode() & 0o777, 0o400);

    // An fsGroup is the group as the namespace maps it.
    p.spec.as_mut().expect("spec").security_context =
        Some(serde_json::from_value(json!({"fsGroup": 2345})).expect("sc"));
    let paths = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            Some(ids),
        )
        .expect("setup");
    assert_eq!(owner(&paths["scratch"]), (3 << 16, (3 << 16) + 2345));
    m.teardown("uid-userns").expect("teardown");
}

/// `recursiveReadOnly: Enabled` on a node whose runtime handler cannot do it fails the
/// container's mounts with kubelet's message (its `CreateContainerConfigError`).
#[test]
fn enabled_recursive_read_only_needs_the_runtime() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let _cleanup = Cleanup(tmp.path().to_path_buf());
    let m = manager(tmp.path());
    let p = pod(
        "uid-rro",
        json!([{"name": "d", "emptyDir": {}}]),
        json!([{"name": "d", "mountPath": "/d", "readOnly": true, "recursiveReadOnly": "Enabled"}]),
    );
    let paths = m
        .setup(
            &p,
            &PodContext::default(),
            &objects(),
            &mut Vec::new(),
            None,
        )
        .expect("setup");
    let container = p.spec.as_ref().expect("spec").containers[0].clone();
    let err = m
        .container_mounts(&p, &container, &paths, &[], false)
        .expect_err("unsupported");
    assert_eq!(
        err.to_string(),
        "failed to resolve recursive read-only mode: volume \"d\" requested recursive read-only mode, but it is not supported by the runtime"
    );
    let mounts = m
        .container_mounts(&p, &container, &paths, &[], true)
        .expect("supported");
    assert!(mounts[0].readonly && mounts[0].recursive_read_only);
    m.teardown("uid-rro").expect("teardown");
}
