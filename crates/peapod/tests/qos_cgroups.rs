//! The kubelet's cgroup tree: `kubepods` carries the node's allocatable cpu and memory, a
//! Guaranteed pod's cgroup sits directly in it, Burstable and BestEffort pods in the
//! `burstable` and `besteffort` tiers, each pod cgroup with the kubelet's pod-level shares,
//! quota and memory limit; the Burstable tier's shares follow its pods' cpu requests, also
//! across an agent restart.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{wait_until, Peapod};

const PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: guaranteed
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources:
      limits: {cpu: 500m, memory: 64Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: burstable
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources:
      requests: {cpu: 200m, memory: 16Mi}
      limits: {cpu: 400m, memory: 32Mi}
  - name: side
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources:
      requests: {cpu: 100m}
      limits: {cpu: 200m, memory: 16Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: besteffort
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

const MORE: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: burstable-two
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources:
      requests: {cpu: 100m}
"#;

/// One cgroup control of `rel` (below the hierarchy roots): the v1 file in the controller's
/// hierarchy, or the v2 file in the unified one.
struct Cgroups {
    v2: bool,
}

impl Cgroups {
    fn detect() -> Self {
        Self {
            v2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
        }
    }

    fn dir(&self, controller: &str, rel: &str) -> PathBuf {
        if self.v2 {
            Path::new("/sys/fs/cgroup").join(rel)
        } else {
            let root = ["cpu", "cpu,cpuacct"]
                .iter()
                .map(|c| Path::new("/sys/fs/cgroup").join(c))
                .find(|p| controller == "cpu" && p.is_dir())
                .unwrap_or_else(|| Path::new("/sys/fs/cgroup").join(controller));
            root.join(rel)
        }
    }

    fn read(&self, controller: &str, rel: &str, v1: &str, v2: &str) -> String {
        let path = self
            .dir(controller, rel)
            .join(if self.v2 { v2 } else { v1 });
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// cpu.shares (v1) or cpu.weight (v2), as the v1 shares the kubelet computed.
    fn shares(&self, rel: &str) -> String {
        self.read("cpu", rel, "cpu.shares", "cpu.weight")
    }

    /// What `shares` reads for `shares` v1 shares.
    fn expect_shares(&self, shares: u64) -> String {
        if self.v2 {
            (1 + ((shares.clamp(2, 262_144) - 2) * 9999) / 262_142).to_string()
        } else {
            shares.to_string()
        }
    }

    fn quota(&self, rel: &str) -> String {
        self.read("cpu", rel, "cpu.cfs_quota_us", "cpu.max")
    }

    fn expect_quota(&self, quota: Option<u64>) -> String {
        match (self.v2, quota) {
            (true, Some(q)) => format!("{q} 100000"),
            (true, None) => "max 100000".into(),
            (false, Some(q)) => q.to_string(),
            (false, None) => "-1".into(),
        }
    }

    /// The memory limit in bytes; `None` when unlimited.
    fn memory_limit(&self, rel: &str) -> Option<u64> {
        let text = self.read("memory", rel, "memory.limit_in_bytes", "memory.max");
        // v1 shows "unlimited" as the largest page-aligned counter value.
        text.parse::<u64>().ok().filter(|v| *v < 1 << 62)
    }
}

fn uid(pp: &Peapod, pod: &str) -> String {
    pp.jsonpath(&format!("pod/{pod}"), "{.metadata.uid}")
        .unwrap_or_default()
}

fn wait_for_shares(cg: &Cgroups, rel: &str, shares: u64) {
    let want = cg.expect_shares(shares);
    wait_until(
        &format!("{rel} to have {shares} shares"),
        Duration::from_secs(30),
        || (cg.shares(rel) == want).then_some(()),
    );
}

#[test]
fn pods_land_in_their_qos_tier_with_the_kubelets_values() {
    let mut pp = Peapod::start();
    let cg = Cgroups::detect();
    pp.apply(PODS);
    for pod in ["guaranteed", "burstable", "besteffort"] {
        pp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{pod}"),
            "--timeout=90s",
        ]);
    }

    // kubepods: shares of the allocatable cpu, the allocatable memory as its limit
    // (capacity: peapod reserves nothing for the system, and the eviction threshold is not
    // taken off the cgroup).
    let cpus: u64 = pp
        .jsonpath(&format!("node/{}", pp.node_name), "{.status.capacity.cpu}")
        .and_then(|c| c.parse().ok())
        .expect("node cpu capacity");
    assert_eq!(
        cg.shares("peapod/kubepods"),
        cg.expect_shares((cpus * 1024).min(262_144))
    );
    let memory = pp
        .jsonpath(
            &format!("node/{}", pp.node_name),
            "{.status.capacity.memory}",
        )
        .and_then(|m| m.strip_suffix("Ki").and_then(|k| k.parse::<u64>().ok()))
        .expect("node memory capacity in Ki")
        * 1024;
    let limit = cg
        .memory_limit("peapod/kubepods")
        .expect("kubepods has a memory limit");
    // The kernel keeps whole pages.
    assert!(
        limit <= memory && memory - limit < 4096,
        "kubepods memory limit {limit}, capacity {memory}"
    );

    // The tiers.
    assert_eq!(cg.shares("peapod/kubepods/besteffort"), cg.expect_shares(2));
    // Burstable: 200m + 100m requested.
    wait_for_shares(&cg, "peapod/kubepods/burstable", 307);
    assert_eq!(cg.memory_limit("peapod/kubepods/burstable"), None);

    // Guaranteed directly under kubepods: 500m, 64Mi.
    let g = format!("peapod/kubepods/pod{}", uid(&pp, "guaranteed"));
    assert_eq!(cg.shares(&g), cg.expect_shares(512));
    assert_eq!(cg.quota(&g), cg.expect_quota(Some(50_000)));
    assert_eq!(cg.memory_limit(&g), Some(64 << 20));
    // Burstable with every limit set: requests summed into shares, limits into quota and
    // memory.
    let b = format!("peapod/kubepods/burstable/pod{}", uid(&pp, "burstable"));
    assert_eq!(cg.shares(&b), cg.expect_shares(307));
    assert_eq!(cg.quota(&b), cg.expect_quota(Some(60_000)));
    assert_eq!(cg.memory_limit(&b), Some(48 << 20));
    // BestEffort: the minimum shares, no quota, no memory limit.
    let e = format!("peapod/kubepods/besteffort/pod{}", uid(&pp, "besteffort"));
    assert_eq!(cg.shares(&e), cg.expect_shares(2));
    assert_eq!(cg.quota(&e), cg.expect_quota(None));
    assert_eq!(cg.memory_limit(&e), None);
    // The containers' cgroups nest in their pod's.
    let id = pp
        .jsonpath(
            "pod/guaranteed",
            "{.status.containerStatuses[0].containerID}",
        )
        .unwrap_or_default();
    let id = id.trim_start_matches("peapod://");
    assert!(
        cg.dir("memory", &format!("{g}/{id}")).is_dir(),
        "container {id} not in {g}"
    );

    // The Burstable tier follows its pods: one more adds its 100m, its deletion takes it off.
    pp.apply(MORE);
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/burstable-two",
        "--timeout=90s",
    ]);
    wait_for_shares(&cg, "peapod/kubepods/burstable", 409);
    pp.kubectl_ok(&["delete", "pod", "burstable-two", "--wait=true"]);
    wait_for_shares(&cg, "peapod/kubepods/burstable", 307);

    // An agent restart finds the pods where they are and keeps the tiers.
    pp.kill9();
    pp.up();
    let e2 = format!("peapod/kubepods/besteffort/pod{}", uid(&pp, "besteffort"));
    assert_eq!(e, e2);
    assert!(cg.dir("memory", &e).is_dir());
    wait_for_shares(&cg, "peapod/kubepods/burstable", 307);
    assert_eq!(
        pp.jsonpath(
            "pod/burstable",
            "{.status.containerStatuses[0].restartCount}"
        )
        .as_deref(),
        Some("0")
    );
}
