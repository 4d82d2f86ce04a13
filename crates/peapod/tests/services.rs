//! Services end to end with the real kubectl, pod networking and nftables: `kubectl expose`
//! allocates a ClusterIP, endpoints list only Ready pods, a pod reaches the Service by name
//! through cluster DNS (and a pod reaches a Service that backs onto itself), a NodePort and
//! the ClusterIP answer from the node, a pod failing its readiness probe stops receiving
//! traffic, and nothing of the proxy is left in nftables after `peapod reset`.
//!
//! One test function: the proxy's table and the DNS address are node-wide, so two peapods of
//! this binary must not run at once.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);

/// A busybox httpd answering `name` on :8080 (port name `http`), Ready while
/// /www/ready exists; a connection to :9000 removes it (the test's switch).
fn backend(name: &str, extra: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels: {{app: web}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "trap 'exit 0' TERM; mkdir -p /www && echo {name} > /www/index.html && touch /www/ready && httpd -f -p 8080 -h /www & (nc -l -p 9000 </dev/null >/dev/null; rm -f /www/ready) & {extra} sleep 3600 & wait"]
    ports:
    - {{name: http, containerPort: 8080}}
    readinessProbe:
      exec: {{command: ["test", "-f", "/www/ready"]}}
      periodSeconds: 1
      failureThreshold: 1
"#
    )
}

fn client(name: &str, script: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", {script:?}]
"#
    )
}

fn logs_containing(pp: &Peapod, name: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + T;
    loop {
        let out = pp.kubectl(&["logs", name]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        if text.contains(needle) {
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{name}'s logs never contained {needle:?}:\n{}",
            common::tail(&text, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn http_get(addr: &str) -> Option<String> {
    let mut s =
        std::net::TcpStream::connect_timeout(&addr.parse().ok()?, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").ok()?;
    let mut body = String::new();
    s.read_to_string(&mut body).ok()?;
    Some(body)
}

/// The node's first global IPv4 address.
fn node_ip() -> String {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .expect("ip addr");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .expect("a global IPv4 address")
        .to_string()
}

fn nft_has_table() -> bool {
    Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("table ip peapod"))
        .unwrap_or(false)
}

fn lo_has_dns_address() -> bool {
    Command::new("ip")
        .args(["-4", "-o", "addr", "show", "dev", "lo"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("10.96.0.10/32"))
        .unwrap_or(false)
}

#[test]
fn services_dns_endpoints_and_node_ports() {
    let pp = Peapod::start();

    // The well-known Services hold their addresses.
    let svcs = pp.kubectl_ok(&["get", "svc", "-A"]);
    assert!(
        svcs.contains("10.96.0.1 ") && svcs.contains("10.96.0.10 "),
        "{svcs}"
    );

    // web-a also reaches its own Service through the proxy (hairpin).
    pp.apply(&backend(
        "web-a",
        "(until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $(nslookup web.default.svc.cluster.local 2>/dev/null | sed -n 's/^Address: //p' | tail -1) 80 | grep -q web; do sleep 0.5; done; echo hairpin-ok) &",
    ));
    pp.apply(&backend("web-b", ""));
    for p in ["web-a", "web-b"] {
        pp.kubectl_ok(&[
            "wait",
            "--for=condition=Ready",
            &format!("pod/{p}"),
            "--timeout=90s",
        ]);
    }
    pp.kubectl_ok(&[
        "expose",
        "pod",
        "web-a",
        "--name",
        "web",
        "--port",
        "80",
        "--target-port",
        "http",
        "--selector",
        "app=web",
    ]);
    let cluster_ip = pp
        .jsonpath("svc/web", "{.spec.clusterIP}")
        .unwrap_or_default();
    assert!(
        cluster_ip.starts_with("10.") && cluster_ip != "10.96.0.1",
        "{cluster_ip}"
    );
    let ip_a = pp
        .jsonpath("pod/web-a", "{.status.podIP}")
        .unwrap_or_default();
    let ip_b = pp
        .jsonpath("pod/web-b", "{.status.podIP}")
        .unwrap_or_default();
    wait_until("both pods in the endpoints", T, || {
        let eps = pp.kubectl_ok(&["get", "endpoints", "web"]);
        (eps.contains(&format!("{ip_a}:8080")) && eps.contains(&format!("{ip_b}:8080")))
            .then_some(())
    });
    let slices = pp.kubectl_ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    assert!(
        slices.contains("IPv4") && slices.contains("8080"),
        "{slices}"
    );

    // Cluster DNS is node-wide: wait until this peapod serves it (another peapod on the
    // host may hold the address until it stops).
    wait_until("our cluster DNS serving", T, || {
        pp.server_log()
            .contains("cluster DNS serving")
            .then_some(())
    });
    // A pod finds the Service by name (search path) and by FQDN, and gets an answer.
    pp.apply(&client(
        "client",
        // busybox's static wget cannot resolve names (no NSS), and segfaults on a connect
        // timeout (Debian's busybox-static, also on the host): nslookup and nc it is.
        "cat /etc/resolv.conf; \
         until ns=$(nslookup web.default.svc.cluster.local 2>&1); do sleep 0.5; done; echo \"$ns\"; \
         nslookup web 2>&1 | grep -q 'Name:.*web.default.svc.cluster.local' && echo short-name-ok; \
         ip=$(echo \"$ns\" | sed -n 's/^Address: //p' | tail -1); \
         until printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 $ip 80 | grep web-; do sleep 0.5; done; echo client-done; sleep 3600",
    ));
    let logs = logs_containing(&pp, "client", "client-done");
    assert!(logs.contains("nameserver 10.96.0.10"), "{logs}");
    assert!(
        logs.contains("search default.svc.cluster.local svc.cluster.local cluster.local"),
        "{logs}"
    );
    assert!(logs.contains("web-a") || logs.contains("web-b"), "{logs}");
    assert!(logs.contains(&cluster_ip), "{logs}");
    assert!(logs.contains("short-name-ok"), "{logs}");
    logs_containing(&pp, "web-a", "hairpin-ok");

    // The node reaches the ClusterIP, and a NodePort on its own address.
    let from_node = wait_until("ClusterIP from the node", T, || {
        http_get(&format!("{cluster_ip}:80")).filter(|b| b.contains("web-"))
    });
    assert!(from_node.contains("200"), "{from_node}");
    pp.kubectl_ok(&[
        "patch",
        "svc",
        "web",
        "-p",
        r#"{"spec":{"type":"NodePort"}}"#,
    ]);
    let node_port = pp
        .jsonpath("svc/web", "{.spec.ports[0].nodePort}")
        .unwrap_or_default();
    let np: u16 = node_port.parse().expect("a node port");
    assert!((30000..=32767).contains(&np), "{np}");
    let addr = format!("{}:{np}", node_ip());
    wait_until("the NodePort to answer", T, || {
        http_get(&addr).filter(|b| b.contains("web-"))
    });

    // web-b fails its readiness probe: it leaves the endpoints and gets no more traffic.
    let _ = std::net::TcpStream::connect_timeout(
        &format!("{ip_b}:9000").parse().expect("addr"),
        Duration::from_secs(2),
    );
    wait_until("web-b not ready in the endpoints", T, || {
        let ready = pp
            .jsonpath("endpoints/web", "{.subsets[*].addresses[*].ip}")
            .unwrap_or_default();
        let not_ready = pp
            .jsonpath("endpoints/web", "{.subsets[*].notReadyAddresses[*].ip}")
            .unwrap_or_default();
        (!ready.contains(&ip_b) && not_ready.contains(&ip_b)).then_some(())
    });
    let slice_ready = pp.jsonpath_all(
        "endpointslices",
        "{.items[*].endpoints[*].conditions.ready}",
    );
    assert!(slice_ready.contains("false"), "{slice_ready}");
    // Rules follow within a moment; then every request lands on web-a.
    wait_until("traffic only to web-a", T, || {
        let bodies: Vec<String> = (0..12)
            .filter_map(|_| http_get(&format!("{cluster_ip}:80")))
            .collect();
        (bodies.len() == 12
            && bodies
                .iter()
                .all(|b| b.contains("web-a") && !b.contains("web-b")))
        .then_some(())
    });

    // Deleting the Service releases its endpoints and its rules.
    pp.kubectl_ok(&["delete", "svc", "web"]);
    wait_until("endpoints removed", T, || {
        let out = pp.kubectl(&["get", "endpoints", "web"]);
        (!out.status.success()).then_some(())
    });
    assert!(nft_has_table(), "the proxy's table while running");
    drop(pp);
    assert!(!nft_has_table(), "the proxy's table is left after reset");
    assert!(
        !lo_has_dns_address(),
        "the DNS address is left on lo after reset"
    );
}
