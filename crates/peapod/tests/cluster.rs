//! A cluster as a user runs one over several machines: the control plane (`peapod up`, also
//! a node) on a three-member etcd, and two more nodes, each a network namespace on a test
//! bridge, joined with the command `peapod up` prints; a second API server (`peapod server`)
//! on the same etcd serves the same cluster. A six-replica Deployment spreads two pods to
//! each node; pods reach pods on other nodes by IP and the Service's ClusterIP from another
//! node than their backends, and the Service (by ClusterIP and by its DNS name) answers on
//! every node. Then one etcd member and the second API server die, and one node's agent is
//! SIGKILLed and its link cut, as when its machine dies: the node turns NotReady after the
//! (shortened) grace period, its pods are evicted when their (short) tolerations run out,
//! and the Deployment is whole again on the two nodes left.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::crossnode::{client, http_get, retried, service};
use common::etcd::{EtcdCluster, Server};
use common::netns::{NetnsNode, TestBridge};
use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(120);
/// Above the agents' 10 s heartbeat with room for a loaded machine.
const GRACE: &str = "20s";

/// Six busybox httpd pods answering with their own name, at most one apart per node (tainted
/// nodes not counted), leaving an unreachable node 5 s after it is tainted.
const DEPLOYMENT: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: ha-web
spec:
  replicas: 6
  selector:
    matchLabels: {app: ha-web}
  template:
    metadata:
      labels: {app: ha-web}
    spec:
      terminationGracePeriodSeconds: 1
      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        nodeTaintsPolicy: Honor
        labelSelector:
          matchLabels: {app: ha-web}
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 5}
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        env:
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www && echo \"served-by-$POD_NAME\" > /www/index.html && httpd -f -p 8080 -h /www & sleep 3600 & wait"]
        ports:
        - {name: http, containerPort: 8080}
"#;

/// The ha-web pods not being deleted: name → (node, phase, IP).
fn web_pods(pp: &Peapod) -> BTreeMap<String, (String, String, String)> {
    let out = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=ha-web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}|{.spec.nodeName}|{.status.phase}|{.status.podIP}|{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let [name, node, phase, ip, deleted] = f[..] else {
                return None;
            };
            deleted.trim().is_empty().then(|| {
                (
                    name.to_string(),
                    (node.to_string(), phase.to_string(), ip.to_string()),
                )
            })
        })
        .collect()
}

/// Waits until six ha-web pods run, on `nodes` only, two on each; returns them.
fn six_running_on(pp: &Peapod, nodes: &[&str]) -> BTreeMap<String, (String, String, String)> {
    wait_until(&format!("6 ha-web pods Running on {nodes:?}"), T, || {
        let pods = web_pods(pp);
        let running: BTreeMap<_, _> = pods
            .into_iter()
            .filter(|(_, (node, phase, ip))| {
                phase == "Running" && !ip.is_empty() && nodes.contains(&node.as_str())
            })
            .collect();
        (running.len() == 6).then_some(running)
    })
}

fn node_status(pp: &Peapod, node: &str) -> Option<String> {
    pp.jsonpath(
        &format!("node/{node}"),
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    )
}

#[test]
fn three_nodes_on_three_etcd_members_lose_a_node_and_keep_the_deployment() {
    // Dropped in reverse order: nodes, control plane, etcd, bridge.
    let bridge = TestBridge::create();
    let mut etcd = EtcdCluster::start(3);
    let flag = etcd.store_flag();
    // The control plane's node API on the bridge too: that address is its node's
    // InternalIP, which the other nodes route its pods' range through.
    let node_api = format!("{}:0", bridge.host_ip());
    let pp = Peapod::start_listening(
        &format!("{}:0", bridge.host_ip()),
        &[
            "--store",
            &flag,
            "--node-monitor-grace-period",
            GRACE,
            "--node-api-listen",
            &node_api,
        ],
    );
    let (server, token, hash) = pp.join_command();
    let mut nodes = vec![
        NetnsNode::create(&bridge, 1, "ha-one"),
        NetnsNode::create(&bridge, 2, "ha-two"),
    ];
    for n in nodes.iter_mut() {
        n.start_join(
            &pp,
            &[
                "--server",
                &server,
                "--token",
                &token,
                "--discovery-token-ca-cert-hash",
                &hash,
            ],
        );
    }
    let names = [pp.node_name.clone(), "ha-one".into(), "ha-two".into()];
    for name in &names {
        wait_until(&format!("node {name} Ready"), T, || {
            for n in nodes.iter_mut() {
                n.assert_alive();
            }
            (node_status(&pp, name).as_deref() == Some("True")).then_some(())
        });
    }

    // A second API server on the same etcd serves the same cluster.
    let mut second = Server::start(&pp.state_dir, &["--store", &flag]);
    let seen = second.kubectl_ok(&["get", "nodes", "-o", "name"]);
    for name in &names {
        assert!(seen.contains(&format!("node/{name}")), "{seen}");
    }

    // Two pods on each node.
    pp.apply(DEPLOYMENT);
    pp.apply(&service("ha-web"));
    let all: Vec<&str> = names.iter().map(String::as_str).collect();
    let pods = six_running_on(&pp, &all);
    for name in &names {
        let here = pods.values().filter(|(n, _, _)| n == name).count();
        assert_eq!(here, 2, "not two ha-web pods on {name}: {pods:?}");
    }

    // From ha-two: each pod on the other nodes by IP, and the Service until a pod on another
    // node answers (the proxy picks backends at random).
    let remote: Vec<(&String, &String)> = pods
        .iter()
        .filter(|(_, (node, _, _))| node != "ha-two")
        .map(|(name, (_, _, ip))| (name, ip))
        .collect();
    let cluster_ip = wait_until("the Service's ClusterIP", T, || {
        pp.jsonpath("svc/ha-web", "{.spec.clusterIP}")
            .filter(|ip| !ip.is_empty())
    });
    let mut script: Vec<String> = remote
        .iter()
        .map(|(name, ip)| retried(&format!("direct-{name}"), &http_get(ip, 8080, "/")))
        .collect();
    script.push(format!(
        "for i in $(seq 20); do {}; done",
        retried("service", &http_get(&cluster_ip, 80, "/"))
    ));
    // On every node, the Service by its ClusterIP and by its DNS name (cluster DNS answered
    // on each node).
    let by_dns = http_get(
        "$(nslookup ha-web.default.svc.cluster.local 2>/dev/null | sed -n 's/^Address: //p' | tail -1)",
        80,
        "/",
    );
    let everywhere = [
        retried("service", &http_get(&cluster_ip, 80, "/")),
        retried("dns", &by_dns),
    ];
    script.extend(everywhere.iter().cloned());
    pp.apply(&client("ha-client", "ha-two", &script.join("; ")));
    let finished = |pod: &str| {
        wait_until(&format!("{pod} to finish"), T, || {
            let out = pp.kubectl(&["logs", pod]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            text.contains("client-done").then_some(text)
        })
    };
    let probes: Vec<String> = ["ha-probe-host", "ha-probe-one"]
        .iter()
        .zip([pp.node_name.as_str(), "ha-one"])
        .map(|(pod, node)| {
            pp.apply(&client(pod, node, &everywhere.join("; ")));
            pod.to_string()
        })
        .collect();
    let logs = finished("ha-client");
    for pod in probes.iter().map(String::as_str).chain(["ha-client"]) {
        let text = finished(pod);
        for what in ["service", "dns"] {
            assert!(
                text.contains(&format!("{what}=served-by-ha-web-")),
                "{pod}: no answer through the Service's {what}:\n{text}"
            );
        }
        pp.kubectl_ok(&["delete", "pod", pod, "--wait=false"]);
    }
    for (name, _) in &remote {
        assert!(
            logs.contains(&format!("direct-{name}=served-by-{name}")),
            "{name} not reached by IP from ha-two:\n{logs}"
        );
    }
    let served_remotely = logs.lines().any(|l| {
        l.strip_prefix("service=served-by-")
            .is_some_and(|p| remote.iter().any(|(name, _)| name.as_str() == p))
    });
    assert!(
        served_remotely,
        "the Service never answered from another node than ha-two:\n{logs}"
    );
    wait_until("the client pods gone", T, || {
        pp.kubectl_ok(&["get", "pods", "-o", "name"])
            .lines()
            .all(|l| !l.contains("ha-client") && !l.contains("ha-probe"))
            .then_some(())
    });

    // One etcd member and the second API server go; then ha-one's machine "dies": its agent is killed and its link
    // cut (its pods keep running, unreachable, until the node is reset at the end).
    etcd.kill(1);
    second.kill9();
    let dead = &mut nodes[0];
    dead.kill_agent();
    dead.ip(&["link", "set", "eth0", "down"]);
    wait_until("ha-one not Ready", T, || {
        matches!(
            node_status(&pp, "ha-one").as_deref(),
            Some("Unknown" | "False")
        )
        .then_some(())
    });
    assert_eq!(node_status(&pp, &pp.node_name).as_deref(), Some("True"));
    assert_eq!(node_status(&pp, "ha-two").as_deref(), Some("True"));
    let survivors = [pp.node_name.as_str(), "ha-two"];
    let after = six_running_on(&pp, &survivors);
    for name in survivors {
        let here = after.values().filter(|(n, _, _)| n == name).count();
        assert_eq!(here, 3, "not three ha-web pods on {name}: {after:?}");
    }
    // The pods of ha-one were evicted (deleted; terminating until the node comes back).
    let on_dead = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=ha-web",
        "--field-selector",
        "spec.nodeName=ha-one",
        "-o",
        "jsonpath={range .items[*]}{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    assert!(
        on_dead.lines().all(|l| !l.trim().is_empty()),
        "pods on ha-one not being deleted: {on_dead:?}"
    );

    pp.kubectl_ok(&["delete", "deployment", "ha-web"]);
    pp.kubectl_ok(&["delete", "svc", "ha-web"]);
    wait_until("the ha-web pods of the live nodes gone", T, || {
        web_pods(&pp)
            .values()
            .all(|(node, _, _)| node == "ha-one")
            .then_some(())
    });
    // Deleting the dead node removes its pods.
    pp.kubectl_ok(&["delete", "node", "ha-one"]);
    wait_until("the ha-web pods gone", T, || {
        pp.kubectl_ok(&["get", "pods", "-l", "app=ha-web", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    drop(nodes);
    drop(pp);
    drop(etcd);
}
