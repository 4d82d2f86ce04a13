//! Several nodes on this one machine: `peapod up` on the host is the control plane (and a
//! node), and each further node is a network namespace on a test bridge running `peapod
//! agent`. Each node gets its own pod CIDR from the node IPAM controller, the nodes route to
//! each other's pods (host-gw), pods reach pods on other nodes by IP without NAT, and a
//! ClusterIP Service is reached from a pod on another node than its backend. Nodes on two
//! bridges, with the host routing between them, are no neighbours: they reach each other's
//! pods over VXLAN.

mod common;

use std::time::Duration;

use common::crossnode::{client, http_get, retried, service};
use common::netns::{NetnsNode, TestBridge};
use common::{wait_until, Peapod};

/// The busybox httpd of `name` on :8080, pinned to `node`, whose CGI `/cgi-bin/peer` answers
/// with the address the request came from.
fn server(name: &str, node: &str) -> String {
    let script = format!("trap 'exit 0' TERM; mkdir -p /www/cgi-bin && echo served-by-{name} > /www/index.html \
        && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho peer=$REMOTE_ADDR\\n' > /www/cgi-bin/peer \
        && chmod +x /www/cgi-bin/peer && httpd -f -p 8080 -h /www & sleep 3600 & wait");
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: mn-web}}
spec:
  terminationGracePeriodSeconds: 1
  nodeSelector: {{kubernetes.io/hostname: {node}}}
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
    ports:
    - {{name: http, containerPort: 8080}}
"#
    )
}

/// A field of `kind/name`, once it is set.
fn field(pp: &Peapod, kind_name: &str, path: &str) -> String {
    wait_until(
        &format!("{path} of {kind_name}"),
        Duration::from_secs(90),
        || pp.jsonpath(kind_name, path).filter(|v| !v.is_empty()),
    )
}

fn node_cidr(pp: &Peapod, node: &str) -> String {
    wait_until(
        &format!("the pod CIDR of {node}"),
        Duration::from_secs(60),
        || {
            pp.jsonpath(&format!("node/{node}"), "{.spec.podCIDR}")
                .filter(|v| !v.is_empty())
        },
    )
}

fn cidr_contains(cidr: &str, ip: &str) -> bool {
    // /24s: the first three octets decide.
    let net: Vec<&str> = cidr
        .split('/')
        .next()
        .unwrap_or_default()
        .split('.')
        .collect();
    let addr: Vec<&str> = ip.split('.').collect();
    cidr.ends_with("/24") && net.len() == 4 && addr.len() == 4 && net[..3] == addr[..3]
}

#[test]
fn nodes_get_their_own_ranges_and_pods_reach_each_other_across_them() {
    // Dropped in reverse order: the nodes (agents stopped, reset, namespaces removed), then
    // the control plane, then the bridge.
    let bridge = TestBridge::create();
    let pp = Peapod::start_listening(&format!("{}:0", bridge.host_ip()), &[]);
    let mut nodes = vec![
        NetnsNode::create(&bridge, 1, "mn-one"),
        NetnsNode::create(&bridge, 2, "mn-two"),
    ];
    for n in nodes.iter_mut() {
        n.start_agent(&pp);
    }

    // Three nodes Ready, each with its own range; the first node (the host's) has the
    // range a single machine always had.
    let names = [pp.node_name.clone(), "mn-one".into(), "mn-two".into()];
    for name in &names {
        wait_until(
            &format!("node {name} Ready"),
            Duration::from_secs(90),
            || {
                for n in nodes.iter_mut() {
                    n.assert_alive();
                }
                let ready = pp.jsonpath(
                    &format!("node/{name}"),
                    "{.status.conditions[?(@.type==\"Ready\")].status}",
                );
                (ready.as_deref() == Some("True")).then_some(())
            },
        );
    }
    let cidrs: Vec<String> = names.iter().map(|n| node_cidr(&pp, n)).collect();
    assert_eq!(cidrs[0], "10.244.0.0/24");
    assert!(
        cidrs[1] != cidrs[2] && !cidrs[1..].contains(&cidrs[0]),
        "{cidrs:?}"
    );
    for c in &cidrs {
        assert!(
            c.starts_with("10.244.") && c.ends_with(".0/24"),
            "{cidrs:?}"
        );
    }

    // Each test node routes to the other's range through its address (none to the host
    // node, whose InternalIP is loopback).
    for (i, n) in nodes.iter().enumerate() {
        let other = &nodes[1 - i];
        let want = format!("{} via {}", cidrs[2 - i], other.ip);
        wait_until(
            &format!("{}'s route to {}", n.name, other.name),
            Duration::from_secs(30),
            || {
                let routes = n.ip(&["-4", "route", "show", "proto", "77"]);
                routes.contains(&want).then_some(())
            },
        );
    }

    // The control plane publishes its address in the `kubernetes` Service's endpoints, and
    // each node's proxy sends the in-cluster API address there.
    let host = bridge.host_ip();
    let api_port = wait_until("the kubernetes endpoints", Duration::from_secs(30), || {
        let ips = pp.jsonpath("endpoints/kubernetes", "{.subsets[*].addresses[*].ip}")?;
        (ips == host).then(|| pp.jsonpath("endpoints/kubernetes", "{.subsets[0].ports[0].port}"))?
    });
    assert_eq!(
        pp.jsonpath("endpointslice/kubernetes", "{.endpoints[*].addresses[*]}")
            .as_deref(),
        Some(host.as_str())
    );
    for n in &nodes {
        let want = format!("dnat to {host}:{api_port}");
        wait_until(
            &format!("{}'s proxy rule for the API", n.name),
            Duration::from_secs(30),
            || {
                let out = std::process::Command::new("ip")
                    .args([
                        "netns", "exec", &n.netns, "nft", "list", "table", "ip", "peapod",
                    ])
                    .output()
                    .ok()?;
                String::from_utf8_lossy(&out.stdout)
                    .contains(&want)
                    .then_some(())
            },
        );
    }

    // A server on one node, a client on the other: ping and HTTP by pod IP, and through the
    // Service's ClusterIP.
    pp.apply(&server("mn-server", "mn-one"));
    pp.apply(&service("mn-web"));
    let server_ip = field(&pp, "pod/mn-server", "{.status.podIP}");
    assert!(
        cidr_contains(&cidrs[1], &server_ip),
        "{server_ip} not in {}",
        cidrs[1]
    );
    assert_eq!(field(&pp, "pod/mn-server", "{.spec.nodeName}"), "mn-one");
    let cluster_ip = field(&pp, "svc/mn-web", "{.spec.clusterIP}");
    let script = [
        retried(
            "ping",
            &format!("ping -c1 -W2 {server_ip} >/dev/null && echo ok"),
        ),
        retried("direct", &http_get(&server_ip, 8080, "/cgi-bin/peer")),
        retried("service", &http_get(&cluster_ip, 80, "/")),
        // A TCP connection is the proof: this node has no route to 10.96.0.1 but the
        // proxy's; busybox's own TLS cannot check the server's ECDSA certificate.
        retried("api", "nc -w 3 10.96.0.1 443 -e true && echo open"),
        retried(
            "dns",
            &http_get(
                "$(nslookup mn-web.default.svc.cluster.local 2>/dev/null | sed -n 's/^Address: //p' | tail -1)",
                80,
                "/",
            ),
        ),
    ]
    .join("; ");
    pp.apply(&client("mn-client", "mn-two", &script));
    let client_ip = field(&pp, "pod/mn-client", "{.status.podIP}");
    assert!(
        cidr_contains(&cidrs[2], &client_ip),
        "{client_ip} not in {}",
        cidrs[2]
    );
    let logs = wait_until("the client to finish", Duration::from_secs(150), || {
        let out = pp.kubectl(&["logs", "mn-client"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("client-done").then_some(text)
    });
    assert!(logs.contains("ping=ok"), "{logs}");
    // The server saw the client's own address (httpd writes it IPv4-mapped): no NAT
    // between the nodes.
    let peer = logs
        .lines()
        .find_map(|l| l.strip_prefix("direct=peer="))
        .unwrap_or_default();
    assert!(
        peer == client_ip || peer == format!("[::ffff:{client_ip}]"),
        "the server saw {peer:?}, the client is {client_ip}:\n{logs}"
    );
    assert!(logs.contains("service=served-by-mn-server"), "{logs}");
    assert!(
        logs.contains("api=open"),
        "the API through 10.96.0.1: {logs}"
    );
    assert!(logs.contains("dns=served-by-mn-server"), "{logs}");

    pp.kubectl_ok(&[
        "delete",
        "pod",
        "mn-client",
        "mn-server",
        "--wait=true",
        "--timeout=60s",
    ]);
    pp.kubectl_ok(&["delete", "svc", "mn-web"]);
    drop(nodes);
}

/// Two nodes in different subnets (two bridges, the host routing between them): a host-gw
/// route cannot name the other node as its next hop, so each reaches the other's pods over
/// the VXLAN device, by the pods' own addresses, both ways.
#[test]
fn nodes_behind_a_router_reach_each_others_pods_over_vxlan() {
    let left = TestBridge::create();
    let right = TestBridge::create();
    let forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
    if forwarding.trim() != "1" {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1").expect("enabling forwarding");
    }
    let pp = Peapod::start_listening(&format!("{}:0", left.host_ip()), &[]);
    let mut nodes = vec![
        NetnsNode::create(&left, 1, "vx-left"),
        NetnsNode::create(&right, 1, "vx-right"),
    ];
    // Each node reaches the other subnet (and the control plane) through the host.
    nodes[0].ip(&["route", "add", "default", "via", &left.host_ip()]);
    nodes[1].ip(&["route", "add", "default", "via", &right.host_ip()]);
    for n in nodes.iter_mut() {
        n.start_agent(&pp);
    }
    for name in ["vx-left", "vx-right"] {
        wait_until(
            &format!("node {name} Ready"),
            Duration::from_secs(90),
            || {
                for n in nodes.iter_mut() {
                    n.assert_alive();
                }
                let ready = pp.jsonpath(
                    &format!("node/{name}"),
                    "{.status.conditions[?(@.type==\"Ready\")].status}",
                );
                (ready.as_deref() == Some("True")).then_some(())
            },
        );
    }
    let cidrs = [node_cidr(&pp, "vx-left"), node_cidr(&pp, "vx-right")];
    for (i, n) in nodes.iter().enumerate() {
        let other = &cidrs[1 - i];
        let vtep = other.trim_end_matches("/24");
        let want = format!("{other} via {vtep} dev peapod-vxlan");
        wait_until(
            &format!("{}'s tunnel route to {other}", n.name),
            Duration::from_secs(30),
            || {
                let routes = n.ip(&["-4", "route", "show", "proto", "77"]);
                routes.contains(&want).then_some(())
            },
        );
        let link = n.ip(&["-d", "link", "show", "peapod-vxlan"]);
        assert!(
            link.contains("vxlan id 1") && link.contains(&format!("local {}", n.ip)),
            "{link}"
        );
    }

    pp.apply(&server("vx-server", "vx-right"));
    let server_ip = field(&pp, "pod/vx-server", "{.status.podIP}");
    assert!(cidr_contains(&cidrs[1], &server_ip), "{server_ip}");
    let script = [
        retried(
            "ping",
            &format!("ping -c1 -W2 {server_ip} >/dev/null && echo ok"),
        ),
        retried("direct", &http_get(&server_ip, 8080, "/cgi-bin/peer")),
    ]
    .join("; ");
    pp.apply(&client("vx-client", "vx-left", &script));
    let client_ip = field(&pp, "pod/vx-client", "{.status.podIP}");
    let logs = wait_until("the client to finish", Duration::from_secs(150), || {
        let out = pp.kubectl(&["logs", "vx-client"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("client-done").then_some(text)
    });
    assert!(logs.contains("ping=ok"), "{logs}");
    let peer = logs
        .lines()
        .find_map(|l| l.strip_prefix("direct=peer="))
        .unwrap_or_default();
    assert!(
        peer == client_ip || peer == format!("[::ffff:{client_ip}]"),
        "the server saw {peer:?}, the client is {client_ip}:\n{logs}"
    );
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "vx-client",
        "vx-server",
        "--wait=true",
        "--timeout=60s",
    ]);
    drop(nodes);
}
