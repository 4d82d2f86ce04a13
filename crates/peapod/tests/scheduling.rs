//! Scheduling over several nodes through kubectl. Besides the real node of `peapod up`, the
//! tests add Node objects with no agent behind them: Ready through the status subresource
//! (heartbeats and a Lease renewed while the test waits), with labels and allocatable of
//! their own. Pods bound to them never run; the tests look at `spec.nodeName`, the
//! `PodScheduled` condition and `FailedScheduling` events. Shown: requests against
//! allocatable (`Insufficient cpu`, `Too many pods`) and a deleted pod making room; a pod
//! that fits nowhere stays Pending until a node is added; required pod anti-affinity
//! spreading a Deployment's pods one per node; topology spread over zones waiting for a
//! cordoned zone to open. Fake nodes and the pods bound to them are removed at the end.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(60);
/// Fake nodes are heartbeated at least this often while a test waits, well inside the node
/// monitor grace period (40 s).
const HEARTBEAT: Duration = Duration::from_secs(10);
const POOL: &str = "scheduling-e2e";

fn now(fmt: &str) -> String {
    jiff::Timestamp::now().strftime(fmt).to_string()
}

/// The fake nodes of one test.
struct FakeNodes<'a> {
    pp: &'a Peapod,
    names: Vec<String>,
    last_beat: std::cell::Cell<Instant>,
}

impl<'a> FakeNodes<'a> {
    fn new(pp: &'a Peapod) -> Self {
        FakeNodes {
            pp,
            names: Vec::new(),
            last_beat: std::cell::Cell::new(Instant::now()),
        }
    }

    /// A Ready node `name` with `labels` (plus the pool and hostname labels), `cpu` cores,
    /// 8Gi of memory and room for `pods` pods; `unschedulable` cordons it.
    fn add(&mut self, name: &str, labels: &[(&str, &str)], cpu: &str, pods: &str, cordoned: bool) {
        let mut label_lines = format!("    pool: {POOL}\n    kubernetes.io/hostname: {name}\n");
        for (k, v) in labels {
            label_lines.push_str(&format!("    {k}: {v}\n"));
        }
        let manifest = format!(
            "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n{label_lines}spec:\n  unschedulable: {cordoned}\n"
        );
        self.pp.kubectl_stdin(&["create", "-f", "-"], &manifest);
        let resources = format!(r#"{{"cpu": "{cpu}", "memory": "8Gi", "pods": "{pods}"}}"#);
        let status =
            format!(r#"{{"status": {{"capacity": {resources}, "allocatable": {resources}}}}}"#);
        self.pp.kubectl_ok(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
        self.names.push(name.to_string());
        self.beat_one(name);
    }

    /// Ready=True with a fresh heartbeat, and the node's Lease renewed.
    fn beat_one(&self, name: &str) {
        let t = now("%Y-%m-%dT%H:%M:%SZ");
        let status = format!(
            r#"{{"status": {{"conditions": [{{"type": "Ready", "status": "True", "reason": "KubeletReady",
               "message": "fake node", "lastHeartbeatTime": "{t}", "lastTransitionTime": "{t}"}}]}}}}"#
        );
        self.pp.kubectl_ok(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
        let lease = format!(
            "apiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata:\n  name: {name}\n  namespace: kube-node-lease\nspec:\n  holderIdentity: {name}\n  leaseDurationSeconds: 40\n  renewTime: \"{}\"\n",
            now("%Y-%m-%dT%H:%M:%S%.6fZ")
        );
        self.pp.apply(&lease);
    }

    fn beat_if_due(&self) {
        if self.last_beat.get().elapsed() >= HEARTBEAT {
            for n in &self.names {
                self.beat_one(n);
            }
            self.last_beat.set(Instant::now());
        }
    }

    /// Polls `f` like `wait_until`, keeping the fake nodes alive meanwhile.
    fn wait<R>(&self, what: &str, mut f: impl FnMut() -> Option<R>) -> R {
        wait_until(what, T, || {
            self.beat_if_due();
            f()
        })
    }

    /// Force-deletes the pods bound to the nodes (no kubelet finishes them) until none is
    /// left, then removes the nodes and their Leases.
    fn remove_all(&mut self) {
        for name in std::mem::take(&mut self.names) {
            let selector = format!("spec.nodeName={name}");
            wait_until(&format!("pods of {name} gone"), T, || {
                self.pp.kubectl_ok(&[
                    "delete",
                    "pods",
                    "-A",
                    "--field-selector",
                    &selector,
                    "--force",
                    "--grace-period=0",
                ]);
                let left = self.pp.kubectl_ok(&[
                    "get",
                    "pods",
                    "-A",
                    "--field-selector",
                    &selector,
                    "-o",
                    "name",
                ]);
                left.trim().is_empty().then_some(())
            });
            self.pp
                .kubectl_ok(&["delete", "node", &name, "--wait=false"]);
            self.pp.kubectl_ok(&[
                "delete",
                "lease",
                "-n",
                "kube-node-lease",
                &name,
                "--ignore-not-found",
            ]);
            wait_until(&format!("node {name} gone"), T, || {
                self.pp
                    .jsonpath(&format!("node/{name}"), "{.metadata.name}")
                    .is_none()
                    .then_some(())
            });
        }
    }
}

/// A pod on the fake nodes' pool requesting `cpu` (none when empty), with extra spec lines.
fn pod(name: &str, labels: &str, cpu: &str, extra: &str) -> String {
    let resources = if cpu.is_empty() {
        String::new()
    } else {
        format!("    resources:\n      requests:\n        cpu: {cpu}\n")
    };
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{{labels}}}\nspec:\n  nodeSelector:\n    pool: {POOL}\n{extra}  containers:\n  - name: main\n    image: docker.io/library/busybox:latest\n{resources}"
    )
}

fn node_of(pp: &Peapod, pod: &str) -> String {
    pp.jsonpath(&format!("pod/{pod}"), "{.spec.nodeName}")
        .unwrap_or_default()
}

/// Waits until `pod` is bound and returns its node.
fn wait_bound(nodes: &FakeNodes, pod: &str) -> String {
    nodes.wait(&format!("pod {pod} bound"), || {
        Some(node_of(nodes.pp, pod)).filter(|n| !n.is_empty())
    })
}

/// Waits until `pod` is unschedulable with `message`, and checks it stays unbound and has
/// the FailedScheduling event saying so.
fn wait_unschedulable(nodes: &FakeNodes, pod: &str, message: &str) {
    let path = "{.status.conditions[?(@.type==\"PodScheduled\")].status}|{.status.conditions[?(@.type==\"PodScheduled\")].reason}|{.status.conditions[?(@.type==\"PodScheduled\")].message}";
    let want = format!("False|Unschedulable|{message}");
    nodes.wait(&format!("pod {pod} unschedulable: {message}"), || {
        let seen = nodes.pp.jsonpath(&format!("pod/{pod}"), path);
        (seen.as_deref() == Some(want.as_str())).then_some(())
    });
    assert_eq!(node_of(nodes.pp, pod), "", "{pod} must stay unbound");
    nodes.wait(&format!("FailedScheduling event of {pod}"), || {
        let events = nodes.pp.kubectl_ok(&[
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.name={pod}"),
            "-o",
            "jsonpath={range .items[*]}{.reason}|{.type}|{.message}{\"\\n\"}{end}",
        ]);
        events
            .lines()
            .any(|l| l == format!("FailedScheduling|Warning|{message}"))
            .then_some(())
    });
}

#[test]
fn requests_must_fit_allocatable_and_pending_pods_wait_for_room() {
    let pp = Peapod::start();
    let mut nodes = FakeNodes::new(&pp);
    nodes.add("fake-big", &[], "2", "10", false);
    nodes.add("fake-small", &[], "1", "1", false);

    pp.apply(&pod("first", "app: fit", "1500m", ""));
    assert_eq!(wait_bound(&nodes, "first"), "fake-big");
    pp.apply(&pod("second", "app: fit", "1500m", ""));
    wait_unschedulable(
        &nodes,
        "second",
        "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu. \
         preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod.",
    );

    // A new node with room takes the waiting pod.
    nodes.add("fake-new", &[], "2", "10", false);
    assert_eq!(wait_bound(&nodes, "second"), "fake-new");

    // fake-small is now full by pod count as well as by cpu; deleting the first pod frees
    // the cpu the fourth waits for.
    pp.apply(&pod("third", "app: fit", "1", ""));
    assert_eq!(wait_bound(&nodes, "third"), "fake-small");
    pp.apply(&pod("fourth", "app: fit", "1", ""));
    wait_unschedulable(
        &nodes,
        "fourth",
        "0/4 nodes are available: 1 Too many pods, 1 node(s) didn't match Pod's node affinity/selector, 3 Insufficient cpu. \
         preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.",
    );
    pp.kubectl_ok(&["delete", "pod", "first", "--force", "--grace-period=0"]);
    assert_eq!(wait_bound(&nodes, "fourth"), "fake-big");

    nodes.remove_all();
}

#[test]
fn required_anti_affinity_spreads_a_deployment_one_pod_per_node() {
    let pp = Peapod::start();
    let mut nodes = FakeNodes::new(&pp);
    for n in ["fake-1", "fake-2", "fake-3"] {
        nodes.add(n, &[], "4", "10", false);
    }
    let deployment = |replicas: u32| {
        format!(
            r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      nodeSelector:
        pool: {POOL}
      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {{app: web}}
            topologyKey: kubernetes.io/hostname
      containers:
      - name: main
        image: docker.io/library/busybox:latest
"#
        )
    };
    // name|node per live pod of the Deployment.
    let placed = || -> Vec<(String, String)> {
        pp.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name}|{.spec.nodeName}|{.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
        .lines()
        .filter_map(|l| match l.split('|').collect::<Vec<_>>().as_slice() {
            [name, node, ""] => Some((name.to_string(), node.to_string())),
            _ => None,
        })
        .collect()
    };
    pp.apply(&deployment(3));
    let mut on: Vec<String> = nodes.wait("3 web pods bound", || {
        let pods = placed();
        (pods.len() == 3 && pods.iter().all(|(_, n)| !n.is_empty()))
            .then(|| pods.into_iter().map(|(_, n)| n).collect())
    });
    on.sort();
    assert_eq!(on, vec!["fake-1", "fake-2", "fake-3"]);

    pp.apply(&deployment(4));
    let extra = nodes.wait("a fourth web pod", || {
        placed()
            .into_iter()
            .find(|(_, n)| n.is_empty())
            .map(|(name, _)| name)
    });
    wait_unschedulable(
        &nodes,
        &extra,
        "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 3 node(s) didn't match pod anti-affinity rules. \
         preemption: 0/4 nodes are available: 1 Preemption is not helpful for scheduling, 3 No preemption victims found for incoming pod.",
    );
    nodes.add("fake-4", &[], "4", "10", false);
    assert_eq!(wait_bound(&nodes, &extra), "fake-4");

    // Once the ReplicaSet is gone nothing recreates the pods the cleanup deletes.
    pp.kubectl_ok(&["delete", "deployment", "web"]);
    nodes.wait("the web ReplicaSet gone", || {
        let left = pp.kubectl_ok(&["get", "rs", "-l", "app=web", "-o", "name"]);
        left.trim().is_empty().then_some(())
    });
    nodes.remove_all();
    assert!(placed().is_empty(), "{:?}", placed());
}

#[test]
fn topology_spread_keeps_zones_within_max_skew() {
    let pp = Peapod::start();
    let mut nodes = FakeNodes::new(&pp);
    nodes.add(
        "zone-a",
        &[("topology.kubernetes.io/zone", "z1")],
        "4",
        "10",
        false,
    );
    nodes.add(
        "zone-b",
        &[("topology.kubernetes.io/zone", "z2")],
        "4",
        "10",
        false,
    );
    nodes.add(
        "zone-c",
        &[("topology.kubernetes.io/zone", "z3")],
        "4",
        "10",
        true,
    );
    let spread = "  topologySpreadConstraints:\n  - maxSkew: 1\n    topologyKey: topology.kubernetes.io/zone\n    whenUnsatisfiable: DoNotSchedule\n    labelSelector:\n      matchLabels: {app: spread}\n";
    pp.apply(&pod("s1", "app: spread", "", spread));
    let first = wait_bound(&nodes, "s1");
    pp.apply(&pod("s2", "app: spread", "", spread));
    let second = wait_bound(&nodes, "s2");
    let mut both = vec![first, second];
    both.sort();
    assert_eq!(both, vec!["zone-a", "zone-b"]);

    // z3 is empty but cordoned: a third pod in z1 or z2 would make the skew 2.
    pp.apply(&pod("s3", "app: spread", "", spread));
    wait_unschedulable(
        &nodes,
        "s3",
        "0/4 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) were unschedulable, 2 node(s) didn't match pod topology spread constraints. \
         preemption: 0/4 nodes are available: 2 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.",
    );
    pp.kubectl_ok(&["uncordon", "zone-c"]);
    assert_eq!(wait_bound(&nodes, "s3"), "zone-c");

    nodes.remove_all();
}
