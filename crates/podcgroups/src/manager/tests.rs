//! The tree on fake v1 and v2 hierarchies in a tempdir: the directories a real cgroupfs
//! would have are made beforehand with their control files, and what was written is read
//! back.

use std::fs;
use std::path::Path;

use cgroups::{Hierarchy, Mounted, Resources};

use super::*;

fn settings() -> TierSettings {
    TierSettings {
        kubepods: Resources {
            cpu_shares: Some(2048),
            memory_limit_bytes: Some(1 << 30),
            ..Default::default()
        },
        burstable: Resources {
            cpu_shares: Some(358),
            ..Default::default()
        },
        besteffort: Resources {
            cpu_shares: Some(2),
            ..Default::default()
        },
    }
}

const TIERS: [&str; 3] = [
    "peapod/kubepods",
    "peapod/kubepods/burstable",
    "peapod/kubepods/besteffort",
];

fn touch(dir: &Path, files: &[&str]) {
    fs::create_dir_all(dir).expect("mkdir");
    for f in files {
        fs::write(dir.join(f), "").expect("control file");
    }
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).expect("read")
}

#[test]
fn v1_tiers_get_shares_and_kubepods_the_memory_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let mounts: Vec<Mounted> = ["cpu,cpuacct", "memory"]
        .iter()
        .map(|n| Mounted {
            name: n.to_string(),
            path: root.join(n),
        })
        .collect();
    for t in TIERS {
        touch(&root.join("cpu,cpuacct").join(t), &["cpu.shares"]);
        touch(&root.join("memory").join(t), &["memory.limit_in_bytes"]);
    }
    let qos = QosCgroups::new(Hierarchy::v1(mounts), Layout::new("peapod"));
    qos.apply(&settings()).expect("apply");
    let cpu = root.join("cpu,cpuacct/peapod/kubepods");
    assert_eq!(read(&cpu.join("cpu.shares")), "2048");
    assert_eq!(read(&cpu.join("burstable/cpu.shares")), "358");
    assert_eq!(read(&cpu.join("besteffort/cpu.shares")), "2");
    let mem = root.join("memory/peapod/kubepods");
    assert_eq!(read(&mem.join("memory.limit_in_bytes")), "1073741824");
    // The tiers keep the kernel's unlimited default.
    assert_eq!(read(&mem.join("burstable/memory.limit_in_bytes")), "");
}

#[test]
fn v2_tiers_get_weights_and_kubepods_memory_max() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    for t in TIERS {
        touch(&root.join(t), &["cpu.weight", "memory.max"]);
    }
    let qos = QosCgroups::new(Hierarchy::v2(root), Layout::new("peapod"));
    qos.apply(&settings()).expect("apply");
    let k = root.join("peapod/kubepods");
    assert_eq!(read(&k.join("cpu.weight")), "79");
    assert_eq!(read(&k.join("memory.max")), "1073741824");
    assert_eq!(read(&k.join("burstable/cpu.weight")), "14");
    assert_eq!(read(&k.join("besteffort/cpu.weight")), "1");
    assert_eq!(read(&k.join("besteffort/memory.max")), "");
}

#[test]
fn the_tree_is_created_and_removed_only_when_unused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path();
    let qos = QosCgroups::new(Hierarchy::v2(root), Layout::new("peapod"));
    qos.apply(&settings()).expect("apply");
    for t in TIERS {
        assert!(root.join(t).is_dir(), "{t}");
    }
    // A pod of another agent is still in the Burstable tier.
    fs::create_dir(root.join("peapod/kubepods/burstable/podx")).expect("pod");
    qos.remove_unused().expect("remove");
    assert!(root.join("peapod/kubepods/burstable/podx").is_dir());
    assert!(!root.join("peapod/kubepods/besteffort").exists());
    fs::remove_dir(root.join("peapod/kubepods/burstable/podx")).expect("rmdir");
    qos.remove_unused().expect("remove");
    assert!(!root.join("peapod/kubepods").exists());
    assert!(root.join("peapod").is_dir(), "the parent stays");
    qos.remove_unused().expect("removing twice is fine");
}

#[tokio::test]
async fn run_applies_at_start_and_on_change() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().to_path_buf();
    for t in TIERS {
        touch(&root.join(t), &["cpu.weight"]);
    }
    let qos = QosCgroups::new(Hierarchy::v2(&root), Layout::new("peapod"));
    let (tx, rx) = watch::channel(settings());
    let (stop_tx, stop_rx) = watch::channel(false);
    let task = tokio::spawn(run(qos, rx, stop_rx));
    let burstable = root.join("peapod/kubepods/burstable/cpu.weight");
    wait_for(&burstable, "14").await;
    tx.send_modify(|s| s.burstable.cpu_shares = Some(1024));
    wait_for(&burstable, "39").await;
    stop_tx.send_replace(true);
    task.await.expect("run ends on shutdown");
}

async fn wait_for(path: &Path, want: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while read(path) != want {
        assert!(
            std::time::Instant::now() < deadline,
            "{} never became {want}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
