//! peapod on etcd: `peapod up --store etcd:...` on a one-member etcd serves kubectl (create,
//! get, list pages, watch, conflicts, delete, `410 Gone` after compaction, a pod Running
//! through the node agent, Events expiring with their lease); on a three-member etcd, a second API server (`peapod server`)
//! serves the same cluster, services get distinct ClusterIPs whichever server allocates
//! them, and after one etcd member and one server are killed the other server keeps
//! serving and its controllers keep working.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::etcd::{EtcdCluster, Server};
use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";

fn pod(name: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

fn deployment(replicas: u32) -> String {
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

fn rv_of(pp: &Peapod, what: &str) -> u64 {
    pp.jsonpath(what, "{.metadata.resourceVersion}")
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{what} has no numeric resourceVersion"))
}

/// Runs `cmd` with `input` on its stdin.
fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("kubectl output")
}

fn raw(pp: &Peapod, path: &str) -> String {
    pp.kubectl_ok(&["get", "--raw", path])
}

#[test]
fn one_member_etcd_serves_kubectl() {
    let etcd = EtcdCluster::start(1);
    let flag = etcd.store_flag();
    // Compaction by hand below, so that no watch here races the periodic one.
    let pp = Peapod::start_with(&[
        "--store",
        &flag,
        "--etcd-compaction-interval",
        "0",
        "--event-ttl",
        "3s",
    ]);

    // Create, get, conflicts on a stale resourceVersion.
    pp.kubectl_ok(&["create", "configmap", "a", "--from-literal=k=1"]);
    let rv1 = rv_of(&pp, "cm/a");
    let stale = pp.kubectl_ok(&["get", "cm", "a", "-o", "json"]);
    pp.kubectl_ok(&["patch", "cm", "a", "-p", r#"{"data":{"k":"2"}}"#]);
    let rv2 = rv_of(&pp, "cm/a");
    assert!(rv2 > rv1, "{rv2} after {rv1}");
    let mut replace = pp.kubectl_cmd();
    replace.args(["replace", "-f", "-"]);
    let out = with_stdin(replace, &stale);
    assert!(!out.status.success(), "a stale replace succeeded");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the object has been modified"),
        "unexpected error: {err}"
    );
    assert!(!pp
        .kubectl(&["create", "configmap", "a", "--from-literal=k=1"])
        .status
        .success());

    // Lists: the header revision, pages with remainingItemCount and continue.
    for n in ["b", "c"] {
        pp.kubectl_ok(&["create", "configmap", n, "--from-literal=k=x"]);
    }
    let names = pp.kubectl_ok(&["get", "cm", "-o", "name"]);
    for n in ["configmap/a", "configmap/b", "configmap/c"] {
        assert!(names.contains(n), "{names}");
    }
    let page: serde_json::Value =
        serde_json::from_str(&raw(&pp, "/api/v1/namespaces/default/configmaps?limit=1"))
            .expect("page json");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    let remaining = page["metadata"]["remainingItemCount"].as_u64();
    assert!(remaining.is_some_and(|r| r >= 2), "{page}");
    let token = page["metadata"]["continue"].as_str().expect("continue");
    let rest: serde_json::Value = serde_json::from_str(&raw(
        &pp,
        &format!("/api/v1/namespaces/default/configmaps?limit=100&continue={token}"),
    ))
    .expect("page 2 json");
    assert_eq!(
        rest["items"].as_array().map(Vec::len).map(|n| n as u64),
        remaining
    );

    // Watch from rv1: the patch and the creates, at their revisions.
    let events = raw(
        &pp,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv1}&timeoutSeconds=2"
        ),
    );
    assert!(
        events.contains(r#""type":"MODIFIED""#)
            && events.contains(&format!(r#""resourceVersion":"{rv2}""#)),
        "{events}"
    );
    assert!(events.contains(r#""type":"ADDED""#), "{events}");

    // Delete; the watch carries the last state.
    let before_delete = rv_of(&pp, "cm/b");
    pp.kubectl_ok(&["delete", "cm", "b"]);
    assert!(!pp.kubectl(&["get", "cm", "b"]).status.success());
    let events = raw(
        &pp,
        &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={before_delete}&timeoutSeconds=2"),
    );
    assert!(events.contains(r#""type":"DELETED""#), "{events}");

    // A pod runs through the node agent.
    pp.apply(&pod("p1"));
    pp.wait_pod_phase("p1", "Running", T);

    // After a compaction, a watch from before it answers 410 Gone.
    let list: serde_json::Value =
        serde_json::from_str(&raw(&pp, "/api/v1/namespaces/default/configmaps")).expect("list");
    let now = list["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("list resourceVersion");
    etcd.compact(now);
    let events = raw(
        &pp,
        &format!(
            "/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={rv1}&timeoutSeconds=1"
        ),
    );
    assert!(
        events.contains(r#""type":"ERROR""#) && events.contains(r#""code":410"#),
        "{events}"
    );
    pp.kubectl_ok(&["delete", "pod", "p1", "--wait=true"]);

    // Events go with their etcd lease, --event-ttl after their last write.
    pp.apply(
        r#"apiVersion: v1
kind: Event
metadata: {name: short-lived}
involvedObject: {kind: ConfigMap, name: a, namespace: default}
reason: Testing
message: expires with its lease
type: Normal
"#,
    );
    pp.kubectl_ok(&["get", "event", "short-lived"]);
    wait_until("the event to expire with its lease", T, || {
        (!pp.kubectl(&["get", "event", "short-lived"])
            .status
            .success())
        .then_some(())
    });
    pp.kubectl_ok(&["get", "cm", "a"]);
    drop(pp);
    drop(etcd);
}

#[test]
fn two_servers_on_a_three_member_etcd_survive_losing_one_of_each() {
    let mut etcd = EtcdCluster::start(3);
    let flag = etcd.store_flag();
    let pp = Peapod::start_with(&["--store", &flag]);
    // The second server compacts every 2 s (the compactors share the work through etcd).
    let mut second = Server::start(
        &pp.state_dir,
        &["--store", &flag, "--etcd-compaction-interval", "2s"],
    );

    // One cluster: the node the first server's agent registered, seen through the second.
    let nodes = second.kubectl_ok(&["get", "nodes", "-o", "name"]);
    assert!(nodes.contains(&pp.node_name), "{nodes}");
    second.kubectl_ok(&["create", "configmap", "from-second"]);
    pp.kubectl_ok(&["get", "configmap", "from-second"]);
    let early = pp
        .jsonpath("cm/from-second", "{.metadata.resourceVersion}")
        .expect("resourceVersion");

    // ClusterIPs stay distinct whichever server allocates them.
    for i in 0..4 {
        let name = format!("svc-{i}");
        let args = ["create", "service", "clusterip", &name, "--tcp=80:80"];
        if i % 2 == 0 {
            pp.kubectl_ok(&args);
        } else {
            second.kubectl_ok(&args);
        }
    }
    let ips = pp.kubectl_ok(&[
        "get",
        "svc",
        "-A",
        "-o",
        "jsonpath={.items[*].spec.clusterIP}",
    ]);
    let mut ips: Vec<&str> = ips.split_whitespace().collect();
    let all = ips.len();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), all, "a ClusterIP was handed out twice: {ips:?}");

    // A Deployment created through the second server runs on the first server's node.
    let mut apply = second.kubectl_cmd();
    apply.args(["apply", "-f", "-"]);
    let out = with_stdin(apply, &deployment(2));
    assert!(
        out.status.success(),
        "apply through the second server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_until("2 web pods Running", T, || {
        let phases = pp.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        (phases
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
            == 2)
            .then_some(())
    });

    // The periodic compaction has dropped the early history by now, or soon will.
    wait_until("a watch from before the compaction to get 410", T, || {
        let events = raw(
            &pp,
            &format!("/api/v1/namespaces/default/configmaps?watch=1&resourceVersion={early}&timeoutSeconds=1"),
        );
        (events.contains(r#""type":"ERROR""#) && events.contains(r#""code":410"#)).then_some(())
    });

    // Lose one etcd member and the second server: the first keeps serving.
    etcd.kill(0);
    second.kill9();
    wait_until(
        "kubectl through the first server after the losses",
        T,
        || {
            pp.kubectl(&["create", "configmap", "after-loss"])
                .status
                .success()
                .then_some(())
        },
    );
    pp.kubectl_ok(&["get", "configmap", "from-second", "after-loss"]);
    // Its controllers act (taking over the leader Lease if the second server held it).
    pp.kubectl_ok(&["scale", "deployment", "web", "--replicas=3"]);
    let deadline = std::time::Instant::now() + T;
    loop {
        let phases = pp.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[*].status.phase}",
        ]);
        if phases
            .split_whitespace()
            .filter(|p| *p == "Running")
            .count()
            == 3
        {
            break;
        }
        if std::time::Instant::now() > deadline {
            let show = |args: &[&str]| {
                let out = pp.kubectl(args);
                format!(
                    "{}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                )
            };
            panic!(
                "3 web pods not Running after the losses:\n{}\n{}\n{}\n{}",
                show(&["get", "deploy,rs,pods", "-o", "wide"]),
                show(&["get", "lease", "-n", "kube-system", "-o", "yaml"]),
                show(&["get", "events", "--sort-by=.lastTimestamp"]),
                common::tail(
                    &pp.server_log()
                        .lines()
                        .filter(|l| l.contains("\"scheduler\"") || l.contains("/registry/pods/"))
                        .collect::<Vec<_>>()
                        .join("\n"),
                    40
                )
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    pp.kubectl_ok(&["delete", "deployment", "web"]);
    wait_until("the web pods gone", T, || {
        pp.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    drop(second);
    drop(pp);
    if std::thread::panicking() {
        eprintln!("etcd m1 log tail:\n{}", common::tail(&etcd.log(1), 30));
    }
}
