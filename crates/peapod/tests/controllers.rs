//! `peapod controllers` as kube-controller-manager: against `peapod up --no-controllers`
//! nothing schedules pods; two `peapod controllers --kubeconfig` copies elect one leader on
//! the Lease, which schedules pods and fills a Service's Endpoints; when the leader is
//! killed (SIGKILL) the other copy takes the Lease once it expires and keeps scheduling; a
//! leader stopped cleanly (SIGTERM) releases the Lease for the next copy.

mod common;

use std::time::Duration;

use common::{wait_until, ControllerManager, Peapod};

const T: Duration = Duration::from_secs(90);
/// The Lease's duration (the default of `peapod controllers`) plus a retry period and slack
/// for a loaded machine.
const HANDOVER: Duration = Duration::from_secs(15 + 2 + 13);

fn pod(name: &str) -> String {
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
    command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
    ports:
    - {{name: http, containerPort: 8080}}
"#
    )
}

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - {port: 80, targetPort: http}
"#;

fn lease_holder(pp: &Peapod) -> Option<String> {
    let out = pp.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "peapod-controllers",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    let holder = String::from_utf8_lossy(&out.stdout).into_owned();
    (out.status.success() && !holder.is_empty()).then_some(holder)
}

fn node_of(pp: &Peapod, pod: &str) -> String {
    pp.jsonpath(&format!("pod/{pod}"), "{.spec.nodeName}")
        .unwrap_or_default()
}

#[test]
fn two_controller_managers_one_leader_and_handover() {
    let pp = Peapod::start_with(&["--no-controllers"]);

    // No controllers run in `peapod up`: no leader Lease exists, and a new pod has no node.
    pp.apply(&pod("web-1"));
    pp.apply(SERVICE);
    assert_eq!(lease_holder(&pp), None);
    let out = pp.kubectl(&["get", "lease", "-n", "kube-system", "peapod-controllers"]);
    assert!(
        !out.status.success(),
        "a leader Lease exists without controllers"
    );
    assert_eq!(node_of(&pp, "web-1"), "");
    assert_eq!(
        pp.jsonpath("pod/web-1", "{.status.phase}").as_deref(),
        Some("Pending")
    );

    let mut a = ControllerManager::start(&pp, &[]);
    let mut b = ControllerManager::start(&pp, &[]);
    let (id_a, id_b) = (a.identity(), b.identity());
    assert_ne!(id_a, id_b);
    let holder = wait_until("one copy to hold the Lease", T, || lease_holder(&pp));
    assert!(
        holder == id_a || holder == id_b,
        "the Lease is held by {holder}, neither {id_a} nor {id_b}"
    );

    // The leader schedules the pod, the node runs it, its IP fills the Service's Endpoints.
    pp.wait_pod_phase("web-1", "Running", T);
    assert_eq!(node_of(&pp, "web-1"), pp.node_name);
    let ip = wait_until("the pod's IP", T, || {
        pp.jsonpath("pod/web-1", "{.status.podIP}")
            .filter(|ip| !ip.is_empty())
    });
    wait_until("the pod in the Service's endpoints", T, || {
        (pp.jsonpath("endpoints/web", "{.subsets[*].addresses[*].ip}")
            .as_deref()
            == Some(ip.as_str()))
        .then_some(())
    });
    // Only the holder acted: the other copy is still waiting for the Lease.
    let (leader, follower) = if holder == id_a {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    assert!(
        !follower.log().contains("acquired the leader lease"),
        "both copies acted:\n{}",
        follower.log()
    );
    assert_eq!(lease_holder(&pp).as_deref(), Some(holder.as_str()));

    // The leader crashes: the other copy takes over when the Lease expires, and schedules.
    leader.kill9();
    let next = if holder == id_a { &id_b } else { &id_a };
    wait_until("the other copy to take the Lease", HANDOVER, || {
        (lease_holder(&pp).as_deref() == Some(next.as_str())).then_some(())
    });
    assert!(follower.is_running());
    pp.apply(&pod("web-2"));
    pp.wait_pod_phase("web-2", "Running", T);
    assert_eq!(node_of(&pp, "web-2"), pp.node_name);

    // A clean stop releases the Lease: a third copy takes it and schedules.
    let mut c = ControllerManager::start(&pp, &[]);
    let id_c = c.identity();
    follower.terminate();
    assert!(
        follower.log().contains("released the leader lease"),
        "{}",
        follower.log()
    );
    wait_until(
        "the third copy to take the released Lease",
        HANDOVER,
        || (lease_holder(&pp).as_deref() == Some(id_c.as_str())).then_some(()),
    );
    pp.apply(&pod("web-3"));
    pp.wait_pod_phase("web-3", "Running", T);
    assert!(c.is_running());

    pp.kubectl_ok(&["delete", "pod", "web-1", "web-2", "web-3", "--wait=true"]);
    wait_until("the Endpoints emptied", T, || {
        pp.jsonpath("endpoints/web", "{.subsets[*].addresses[*].ip}")
            .filter(String::is_empty)
    });
}
