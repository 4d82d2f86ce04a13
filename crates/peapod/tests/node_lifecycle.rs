//! Node lifecycle through kubectl: a Node whose Lease stops being renewed turns `Unknown`
//! after the (shortened) node monitor grace period, is tainted unreachable, its pods are
//! marked not Ready and evicted when their `tolerationSeconds` run out (a ReplicaSet's pod
//! comes back on the real node), pods tolerating forever stay, renewing again lifts the
//! taints and cancels pending evictions, and deleting the node gets its pods removed. The
//! node is a Node object this test plays the kubelet for; `cordon`, `uncordon` and `drain`
//! run against the real node.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";
/// Above the agent's 10 s heartbeat, so the real node stays Ready.
const GRACE: &str = "15s";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Microsecond)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

/// kubectl as the test's stand-in kubelet runs it (from its own thread).
fn kubectl_at(kubeconfig: &PathBuf, home: &PathBuf, args: &[&str]) -> bool {
    Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home)
        .args(args)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Plays the kubelet of a Node object: registers it, posts Ready, and renews its Lease
/// every second while `renewing`. Deletes the Node, its Lease and whatever is left bound
/// to it when dropped.
struct FakeKubelet {
    name: String,
    kubeconfig: PathBuf,
    home: PathBuf,
    renewing: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeKubelet {
    fn register(pp: &Peapod, name: &str) -> Self {
        pp.apply(&format!(
            r#"apiVersion: v1
kind: Node
metadata:
  name: {name}
  labels: {{kubernetes.io/hostname: {name}}}
---
apiVersion: coordination.k8s.io/v1
kind: Lease
metadata:
  name: {name}
  namespace: kube-node-lease
spec:
  holderIdentity: {name}
  leaseDurationSeconds: 40
  renewTime: "{}"
"#,
            now()
        ));
        let mut kubelet = FakeKubelet {
            name: name.to_string(),
            kubeconfig: pp.kubeconfig.clone(),
            home: pp.home.path().to_path_buf(),
            renewing: Arc::new(AtomicBool::new(true)),
            stop: Arc::new(AtomicBool::new(false)),
            thread: None,
        };
        kubelet.post_ready(pp);
        let (renewing, stop) = (kubelet.renewing.clone(), kubelet.stop.clone());
        let (kubeconfig, home, lease) = (
            kubelet.kubeconfig.clone(),
            kubelet.home.clone(),
            name.to_string(),
        );
        let thread = std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if renewing.load(Ordering::SeqCst) {
                    let patch = format!(r#"{{"spec":{{"renewTime":"{}"}}}}"#, now());
                    kubectl_at(
                        &kubeconfig,
                        &home,
                        &[
                            "patch",
                            "lease",
                            "-n",
                            "kube-node-lease",
                            &lease,
                            "--type=merge",
                            "-p",
                            &patch,
                        ],
                    );
                }
                // A kubelet's heartbeat period, shortened.
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        kubelet.thread = Some(thread);
        kubelet
    }

    /// Posts capacity and a fresh Ready=True heartbeat through the status subresource.
    fn post_ready(&self, pp: &Peapod) {
        let t = now();
        let resources = r#"{"cpu":"4","memory":"8Gi","pods":"110"}"#;
        let patch = format!(
            r#"{{"status":{{"capacity":{resources},"allocatable":{resources},"conditions":[{{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status","lastHeartbeatTime":"{t}","lastTransitionTime":"{t}"}}]}}}}"#
        );
        pp.kubectl_ok(&[
            "patch",
            "node",
            &self.name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch,
        ]);
    }

    fn set_renewing(&self, on: bool) {
        self.renewing.store(on, Ordering::SeqCst);
    }
}

impl Drop for FakeKubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let at = |args: &[&str]| kubectl_at(&self.kubeconfig, &self.home, args);
        // No kubelet confirms the deletion of pods bound here: remove them outright.
        let out = Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .env("HOME", &self.home)
            .args([
                "get",
                "pods",
                "-A",
                "--field-selector",
                &format!("spec.nodeName={}", self.name),
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
            ])
            .output();
        if let Ok(out) = out {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                if let Some((ns, name)) = line.split_once('/') {
                    at(&[
                        "delete",
                        "pod",
                        "-n",
                        ns,
                        name,
                        "--force",
                        "--grace-period=0",
                        "--wait=false",
                    ]);
                }
            }
        }
        at(&[
            "delete",
            "lease",
            "-n",
            "kube-node-lease",
            &self.name,
            "--ignore-not-found",
        ]);
        at(&["delete", "node", &self.name, "--ignore-not-found"]);
    }
}

/// A pod bound to `node` with extra spec lines.
fn pinned_pod(name: &str, node: &str, tolerations: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
{tolerations}"#
    )
}

/// A pod spec's `tolerations` of the unreachable taint, indented by `pad`.
fn unreachable_toleration(seconds: Option<u32>, pad: &str) -> String {
    let limit = seconds
        .map(|s| format!("\n{pad}  tolerationSeconds: {s}"))
        .unwrap_or_default();
    format!(
        "{pad}tolerations:\n{pad}- key: {UNREACHABLE}\n{pad}  operator: Exists\n{pad}  effect: NoExecute{limit}\n"
    )
}

/// `key:effect` of the node's taints, one string.
fn taints(pp: &Peapod, node: &str) -> String {
    pp.jsonpath(
        &format!("node/{node}"),
        "{range .spec.taints[*]}{.key}:{.effect} {end}",
    )
    .unwrap_or_default()
}

fn condition(pp: &Peapod, kind_name: &str, type_: &str, field: &str) -> String {
    pp.jsonpath(
        kind_name,
        &format!("{{.status.conditions[?(@.type==\"{type_}\")].{field}}}"),
    )
    .unwrap_or_default()
}

/// Whether the pod is being deleted (or gone).
fn evicted(pp: &Peapod, pod: &str) -> bool {
    pp.jsonpath(&format!("pod/{pod}"), "{.metadata.deletionTimestamp}")
        .is_none_or(|t| !t.is_empty())
}

/// (reason, message, firstTimestamp) of the events about `name` in the default namespace.
fn events_about(pp: &Peapod, name: &str) -> Vec<(String, String, String)> {
    pp.kubectl_ok(&[
        "get",
        "events",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.name}|{.reason}|{.message}|{.firstTimestamp}{\"\\n\"}{end}",
    ])
    .lines()
    .filter_map(|l| {
        let mut parts = l.splitn(4, '|');
        let who = parts.next()?;
        (who == name).then(|| {
            (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            )
        })
    })
    .collect()
}

fn seconds(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_second())
        .unwrap_or_else(|e| panic!("time {rfc3339:?}: {e}"))
}

/// Uncordons the real node when dropped, so a failing test leaves it schedulable.
struct Uncordon<'a>(&'a Peapod);

impl Drop for Uncordon<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&["uncordon", &self.0.node_name]);
    }
}

#[test]
fn a_silent_node_is_tainted_and_its_pods_evicted_after_their_tolerations() {
    let pp = Peapod::start_with(&["--node-monitor-grace-period", GRACE]);
    let real = pp.node_name.clone();
    let fake = format!("fake-{real}");
    let kubelet = FakeKubelet::register(&pp, &fake);
    wait_until("the fake node Ready", T, || {
        (condition(&pp, &format!("node/{fake}"), "Ready", "status") == "True").then_some(())
    });

    // Cordoned, the real node takes nothing: the ReplicaSet's pod lands on the fake node.
    let uncordon = Uncordon(&pp);
    pp.kubectl_ok(&["cordon", &real]);
    wait_until("the unschedulable taint on the cordoned node", T, || {
        taints(&pp, &real)
            .contains("node.kubernetes.io/unschedulable:NoSchedule")
            .then_some(())
    });
    pp.apply(&pinned_pod(
        "short",
        &fake,
        &unreachable_toleration(Some(6), "  "),
    ));
    pp.apply(&pinned_pod(
        "forever",
        &fake,
        &unreachable_toleration(None, "  "),
    ));
    pp.apply(&pinned_pod("default", &fake, ""));
    pp.apply(&format!(
        r#"apiVersion: apps/v1
kind: ReplicaSet
metadata:
  name: web
spec:
  replicas: 1
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sleep", "3600"]
{}"#,
        unreachable_toleration(Some(1), "      ")
    ));
    let web_pods = || {
        pp.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
        ])
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .collect::<Vec<_>>()
    };
    let first_web = wait_until("the ReplicaSet's pod on the fake node", T, || {
        let pods = web_pods();
        (pods.len() == 1 && pods[0].get(1) == Some(&fake)).then(|| pods[0][0].clone())
    });
    pp.kubectl_ok(&["uncordon", &real]);
    drop(uncordon);
    wait_until("the unschedulable taint to go", T, || {
        (!taints(&pp, &real).contains("unschedulable")).then_some(())
    });

    // DefaultTolerationSeconds: the pod without tolerations got both for 300 s; the others
    // kept theirs and got only the missing one.
    let tol = |pod: &str| {
        pp.jsonpath(
            &format!("pod/{pod}"),
            "{range .spec.tolerations[*]}{.key}:{.effect}:{.tolerationSeconds} {end}",
        )
        .unwrap_or_default()
    };
    assert_eq!(
        tol("default").trim(),
        format!("node.kubernetes.io/not-ready:NoExecute:300 {UNREACHABLE}:NoExecute:300"),
    );
    assert_eq!(
        tol("forever").trim(),
        format!("{UNREACHABLE}:NoExecute: node.kubernetes.io/not-ready:NoExecute:300"),
    );

    // The kubelet's word for the pod: running and Ready (what MarkPodsNotReady undoes).
    let t = now();
    pp.kubectl_ok(&[
        "patch",
        "pod",
        "forever",
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!(r#"{{"status":{{"phase":"Running","conditions":[{{"type":"Ready","status":"True","lastTransitionTime":"{t}"}}]}}}}"#),
    ]);
    assert!(taints(&pp, &fake).is_empty(), "{}", taints(&pp, &fake));

    // The kubelet goes silent.
    kubelet.set_renewing(false);
    let node_ref = format!("node/{fake}");
    wait_until("the fake node Unknown", T, || {
        (condition(&pp, &node_ref, "Ready", "status") == "Unknown").then_some(())
    });
    assert_eq!(
        condition(&pp, &node_ref, "Ready", "reason"),
        "NodeStatusUnknown"
    );
    assert_eq!(
        condition(&pp, &node_ref, "Ready", "message"),
        "Kubelet stopped posting node status."
    );
    assert_eq!(
        condition(&pp, &node_ref, "DiskPressure", "status"),
        "Unknown"
    );
    let tainted = wait_until("the unreachable taints", T, || {
        let t = taints(&pp, &fake);
        (t.contains(&format!("{UNREACHABLE}:NoSchedule"))
            && t.contains(&format!("{UNREACHABLE}:NoExecute")))
        .then_some(t)
    });
    assert!(!tainted.contains("not-ready"), "{tainted}");
    let taint_added = pp
        .jsonpath(
            &node_ref,
            "{.spec.taints[?(@.effect==\"NoExecute\")].timeAdded}",
        )
        .unwrap_or_default();
    wait_until("the pod marked not Ready", T, || {
        (condition(&pp, "pod/forever", "Ready", "status") == "False").then_some(())
    });

    // The ReplicaSet's pod (1 s) goes first and comes back on the real node; then `short`.
    wait_until("the ReplicaSet's pod evicted", T, || {
        evicted(&pp, &first_web).then_some(())
    });
    wait_until("a replacement running on the real node", T, || {
        web_pods()
            .iter()
            .find(|p| p.len() == 2 && p[1] == real)
            .and_then(|p| {
                (pp.jsonpath(&format!("pod/{}", p[0]), "{.status.phase}")
                    .as_deref()
                    == Some("Running"))
                .then_some(())
            })
    });
    wait_until("`short` evicted", T, || evicted(&pp, "short").then_some(()));
    if let Some(still) = pp.jsonpath(
        "pod/short",
        "{.status.conditions[?(@.type==\"DisruptionTarget\")].reason}",
    ) {
        assert_eq!(still, "DeletionByTaintManager");
    }
    let marked = events_about(&pp, "short")
        .into_iter()
        .find(|(reason, message, _)| {
            reason == "TaintManagerEviction" && message == "Marking for deletion Pod default/short"
        })
        .unwrap_or_else(|| panic!("no eviction event: {:?}", events_about(&pp, "short")));
    // Not before its 6 s (event times have whole seconds).
    assert!(
        seconds(&marked.2) >= seconds(&taint_added) + 6 - 1,
        "evicted at {} for a taint added at {taint_added}",
        marked.2
    );
    assert!(
        events_about(&pp, &fake)
            .iter()
            .any(|(reason, message, _)| reason == "NodeNotReady"
                && *message == format!("Node {fake} status is now: NodeNotReady")),
        "{:?}",
        events_about(&pp, &fake)
    );
    // Tolerated forever, or for 300 s: still there.
    assert!(!evicted(&pp, "forever"));
    assert!(!evicted(&pp, "default"));

    // Back: the taints come off and the pending eviction of `default` is cancelled.
    kubelet.set_renewing(true);
    kubelet.post_ready(&pp);
    wait_until("the taints lifted", T, || {
        taints(&pp, &fake).is_empty().then_some(())
    });
    wait_until("the cancelled eviction's event", T, || {
        events_about(&pp, "default")
            .iter()
            .any(|(reason, message, _)| {
                reason == "TaintManagerEviction"
                    && message == "Cancelling deletion of Pod default/default"
            })
            .then_some(())
    });
    assert!(!evicted(&pp, "default"));

    // A NoExecute taint nobody tolerates empties the node at once.
    pp.kubectl_ok(&["taint", "node", &fake, "dedicated=other:NoExecute"]);
    wait_until("every pod evicted", T, || {
        (evicted(&pp, "forever") && evicted(&pp, "default")).then_some(())
    });

    // The node goes for good: after a quarantine the pod garbage collector removes the pods
    // no kubelet will ever confirm terminated.
    pp.kubectl_ok(&["delete", "replicaset", "web"]);
    pp.kubectl_ok(&["delete", "node", &fake]);
    wait_until("the fake node's pods collected", T, || {
        ["short", "forever", "default", first_web.as_str()]
            .iter()
            .all(|p| {
                pp.jsonpath(&format!("pod/{p}"), "{.metadata.name}")
                    .is_none()
            })
            .then_some(())
    });
    drop(kubelet);
    wait_until("the ReplicaSet's pods gone", T, || {
        web_pods().is_empty().then_some(())
    });
}

/// `(name, phase)` of the live (not terminating) pods with label `app`.
fn live(pp: &Peapod, app: &str) -> Vec<(String, String)> {
    pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ])
    .lines()
    .filter_map(|l| {
        let cells: Vec<&str> = l.split_whitespace().collect();
        (cells.len() == 2).then(|| (cells[0].to_string(), cells[1].to_string()))
    })
    .collect()
}

fn all_running(pods: &[(String, String)], count: usize) -> bool {
    pods.len() == count && pods.iter().all(|(_, phase)| phase == "Running")
}

#[test]
fn drain_refuses_what_needs_a_flag_then_evicts_the_rest() {
    let pp = Peapod::start();
    let node = pp.node_name.clone();
    let spec = |pad: &str| {
        format!(
            r#"{pad}terminationGracePeriodSeconds: 1
{pad}containers:
{pad}- name: main
{pad}  image: {IMAGE}
{pad}  imagePullPolicy: IfNotPresent
{pad}  command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]"#
        )
    };
    let container = spec("      ");
    pp.apply(&format!(
        r#"apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: agent
spec:
  selector:
    matchLabels: {{app: agent}}
  template:
    metadata:
      labels: {{app: agent}}
    spec:
{container}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  replicas: 2
  selector:
    matchLabels: {{app: api}}
  template:
    metadata:
      labels: {{app: api}}
    spec:
      volumes:
      - name: scratch
        emptyDir: {{}}
{container}
        volumeMounts:
        - {{name: scratch, mountPath: /scratch}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: api
spec:
  maxUnavailable: 2
  selector:
    matchLabels: {{app: api}}
---
apiVersion: v1
kind: Pod
metadata:
  name: lonely
  labels: {{app: lonely}}
spec:
{}
"#,
        spec("  ")
    ));
    let uncordon = Uncordon(&pp);
    let api = wait_until("everything running", T, || {
        let api = live(&pp, "api");
        (all_running(&api, 2)
            && all_running(&live(&pp, "agent"), 1)
            && all_running(&live(&pp, "lonely"), 1))
        .then_some(api)
    });
    wait_until("the budget to allow two", T, || {
        (pp.jsonpath("pdb/api", "{.status.disruptionsAllowed}")
            .as_deref()
            == Some("2"))
        .then_some(())
    });

    // Without the flags, drain cordons and names what it will not touch.
    let out = pp.kubectl(&["drain", &node, "--timeout=20s"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("node/{node} cordoned")), "{text}");
    for refusal in [
        "cannot delete DaemonSet-managed Pods (use --ignore-daemonsets to ignore)",
        "cannot delete Pods with local storage (use --delete-emptydir-data to override)",
        "cannot delete Pods that declare no controller (use --force to override)",
    ] {
        assert!(text.contains(refusal), "{refusal}: {text}");
    }
    wait_until("the unschedulable taint", T, || {
        taints(&pp, &node)
            .contains("node.kubernetes.io/unschedulable:NoSchedule")
            .then_some(())
    });
    assert_eq!(live(&pp, "api"), api, "nothing evicted yet");

    let out = pp.kubectl_ok(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--timeout=60s",
    ]);
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    let evicted: Vec<&str> = api
        .iter()
        .map(|(name, _)| name.as_str())
        .chain(["lonely"])
        .collect();
    for pod in evicted {
        assert!(out.contains(&format!("pod/{pod} evicted")), "{out}");
    }
    assert!(pp.jsonpath("pod/lonely", "{.metadata.name}").is_none());
    assert!(all_running(&live(&pp, "agent"), 1), "the daemon pod stays");

    pp.kubectl_ok(&["uncordon", &node]);
    drop(uncordon);
    wait_until("the taint lifted", T, || {
        (!taints(&pp, &node).contains("unschedulable")).then_some(())
    });
    wait_until("the Deployment back on the node", T, || {
        all_running(&live(&pp, "api"), 2).then_some(())
    });

    pp.kubectl_ok(&["delete", "daemonset", "agent"]);
    pp.kubectl_ok(&["delete", "deployment", "api"]);
    pp.kubectl_ok(&["delete", "pdb", "api"]);
    wait_until("the pods to go", T, || {
        (live(&pp, "api").is_empty() && live(&pp, "agent").is_empty()).then_some(())
    });
}

/// New evictions are paced per zone (`--node-eviction-rate`): of two nodes going silent
/// together, the first gets the `NoExecute` taint at once and the second only the
/// `NoSchedule` one until the zone's next token, here far away.
#[test]
fn evictions_start_at_the_zone_rate() {
    let pp = Peapod::start_with(&[
        "--node-monitor-grace-period",
        GRACE,
        "--node-eviction-rate",
        "0.001",
    ]);
    let names = ["paced-a", "paced-b"];
    let kubelets: Vec<FakeKubelet> = names
        .iter()
        .map(|n| FakeKubelet::register(&pp, n))
        .collect();
    for n in names {
        wait_until("the fake node Ready", T, || {
            (condition(&pp, &format!("node/{n}"), "Ready", "status") == "True").then_some(())
        });
    }
    for k in &kubelets {
        k.set_renewing(false);
    }
    let noschedule = format!("{UNREACHABLE}:NoSchedule");
    let noexecute = format!("{UNREACHABLE}:NoExecute");
    let all = wait_until("both nodes tainted unreachable:NoSchedule", T, || {
        let all: Vec<String> = names.iter().map(|n| taints(&pp, n)).collect();
        all.iter().all(|t| t.contains(&noschedule)).then_some(all)
    });
    let evicting = wait_until("one node's eviction started", T, || {
        let all: Vec<String> = names.iter().map(|n| taints(&pp, n)).collect();
        let n = all.iter().filter(|t| t.contains(&noexecute)).count();
        (n > 0).then_some(n)
    });
    assert_eq!(evicting, 1, "only one token in the zone: {all:?}");
    // The real node is untouched.
    assert!(!taints(&pp, &pp.node_name).contains(UNREACHABLE));
    drop(kubelets);
}
