//! PodDisruptionBudgets through kubectl: `kubectl create pdb`, `kubectl get pdb` with kube's
//! columns, ALLOWED DISRUPTIONS following the readiness of a Deployment's pods, the pod
//! `eviction` subresource giving what the budget allows and answering 429 beyond it, and
//! `kubectl drain` (cordon, then evictions it retries while the budget refuses) followed by
//! `kubectl uncordon`.

mod common;

use std::io::Write;
use std::process::{Output, Stdio};
use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);
const IMAGE: &str = "docker.io/library/busybox:latest";
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

/// A Deployment `name` of `replicas` pods; with `gated`, a pod is Ready only once
/// `/tmp/ready` exists in it.
fn deployment(name: &str, replicas: u32, gated: bool) -> String {
    let probe = if gated {
        "        readinessProbe:\n          exec: {command: [cat, /tmp/ready]}\n          periodSeconds: 1\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
{probe}"#
    )
}

/// Names of the pods labelled `app=APP` that are not being deleted, sorted.
fn live_pods(pp: &Peapod, app: &str) -> Vec<String> {
    let out = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        &format!("app={app}"),
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    let mut names: Vec<String> = out
        .lines()
        .filter(|l| l.split_whitespace().count() == 1)
        .map(|l| l.trim().to_string())
        .collect();
    names.sort();
    names
}

/// The `kubectl get pdb NAME` row, split into its cells, after checking the header.
fn pdb_row(pp: &Peapod, name: &str) -> Vec<String> {
    let out = pp.kubectl_ok(&["get", "pdb", name]);
    let mut lines = out.lines();
    let split = |l: &str| -> Vec<String> {
        l.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    let header = split(lines.next().unwrap_or_default());
    assert_eq!(
        header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ],
        "{out}"
    );
    split(lines.next().unwrap_or_default())
}

fn wait_allowed(pp: &Peapod, name: &str, allowed: &str) {
    wait_until(
        &format!("pdb {name} to allow {allowed} disruptions"),
        T,
        || (pdb_row(pp, name).get(3).map(String::as_str) == Some(allowed)).then_some(()),
    );
}

/// POSTs a policy/v1 Eviction for `pod` through `kubectl create --raw`.
fn evict(pp: &Peapod, pod: &str) -> Output {
    let body = format!(
        r#"{{"apiVersion":"policy/v1","kind":"Eviction","metadata":{{"name":"{pod}","namespace":"default"}}}}"#
    );
    let mut child = pp
        .kubectl_cmd()
        .args([
            "create",
            "--raw",
            &format!("/api/v1/namespaces/default/pods/{pod}/eviction"),
            "-f",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("writing the eviction");
    child.wait_with_output().expect("kubectl output")
}

fn make_ready(pp: &Peapod, pod: &str) {
    pp.kubectl_ok(&["exec", pod, "--", "touch", "/tmp/ready"]);
}

#[test]
fn budget_follows_readiness_and_guards_evictions() {
    let pp = Peapod::start();
    pp.apply(&deployment("web", 2, true));
    let out = pp.kubectl_ok(&[
        "create",
        "pdb",
        "web",
        "--selector=app=web",
        "--min-available=1",
    ]);
    assert_eq!(out.trim(), "poddisruptionbudget.policy/web created");
    let row = pdb_row(&pp, "web");
    assert_eq!(row[..4], ["web", "1", "N/A", "0"], "{row:?}");

    // Two running pods, none Ready: expected, but nothing may go.
    wait_until("two pods running", T, || {
        let pods = live_pods(&pp, "web");
        let running = pods.iter().all(|p| {
            pp.jsonpath(&format!("pod/{p}"), "{.status.phase}")
                .as_deref()
                == Some("Running")
        });
        (pods.len() == 2 && running).then_some(pods)
    });
    wait_until("the budget to expect two pods", T, || {
        (pp.jsonpath("pdb/web", "{.status.expectedPods}/{.status.currentHealthy}")
            .as_deref()
            == Some("2/0"))
        .then_some(())
    });
    assert_eq!(pdb_row(&pp, "web")[3], "0");
    assert_eq!(
        pp.jsonpath(
            "pdb/web",
            "{.status.conditions[?(@.type==\"DisruptionAllowed\")].reason}"
        )
        .as_deref(),
        Some("InsufficientPods")
    );

    // Both Ready: one of two may go.
    let pods = live_pods(&pp, "web");
    for p in &pods {
        make_ready(&pp, p);
    }
    wait_allowed(&pp, "web", "1");
    let described = pp.kubectl_ok(&["describe", "pdb", "web"]);
    for line in [
        "Min available:  1",
        "Allowed disruptions:  1",
        "Current:              2",
    ] {
        assert!(described.contains(line), "{line:?} in:\n{described}");
    }
    assert_eq!(
        pp.jsonpath(
            "pdb/web",
            "{.status.conditions[?(@.type==\"DisruptionAllowed\")].reason}"
        )
        .as_deref(),
        Some("SufficientPods")
    );

    // The first eviction takes the one disruption; the second is refused with a 429.
    let first = evict(&pp, &pods[0]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(String::from_utf8_lossy(&first.stdout).contains("\"Success\""));
    let second = evict(&pp, &pods[1]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        stderr.contains(&format!("Error from server (TooManyRequests): {VIOLATION}")),
        "{stderr}"
    );
    assert_eq!(pdb_row(&pp, "web")[3], "0");
    assert!(live_pods(&pp, "web").contains(&pods[1]));

    // The evicted pod goes; its replacement counts once Ready.
    wait_until("the evicted pod to go", T, || {
        pp.jsonpath(&format!("pod/{}", pods[0]), "{.metadata.name}")
            .is_none()
            .then_some(())
    });
    let replacement = wait_until("a replacement pod", T, || {
        live_pods(&pp, "web").into_iter().find(|p| {
            !pods.contains(p)
                && pp
                    .jsonpath(&format!("pod/{p}"), "{.status.phase}")
                    .as_deref()
                    == Some("Running")
        })
    });
    assert_eq!(pdb_row(&pp, "web")[3], "0");
    make_ready(&pp, &replacement);
    wait_allowed(&pp, "web", "1");

    pp.kubectl_ok(&["delete", "pdb", "web"]);
    pp.kubectl_ok(&["delete", "deployment", "web"]);
    wait_until("the pods to go", T, || {
        live_pods(&pp, "web").is_empty().then_some(())
    });
}

/// Uncordons the node when dropped, so a failing test leaves it schedulable.
struct Uncordon<'a>(&'a Peapod);

impl Drop for Uncordon<'_> {
    fn drop(&mut self) {
        let _ = self.0.kubectl(&["uncordon", &self.0.node_name]);
    }
}

#[test]
fn drain_waits_for_the_budget_then_evicts() {
    let pp = Peapod::start();
    let node = pp.node_name.clone();
    pp.apply(&deployment("api", 2, false));
    pp.kubectl_ok(&[
        "create",
        "pdb",
        "api",
        "--selector=app=api",
        "--min-available=2",
    ]);
    let before = wait_until("two ready pods", T, || {
        let pods = live_pods(&pp, "api");
        let ready = pods.iter().all(|p| {
            pp.jsonpath(
                &format!("pod/{p}"),
                "{.status.conditions[?(@.type==\"Ready\")].status}",
            )
            .as_deref()
                == Some("True")
        });
        (pods.len() == 2 && ready).then_some(pods)
    });
    wait_until("the budget to count both pods", T, || {
        (pp.jsonpath("pdb/api", "{.status.currentHealthy}")
            .as_deref()
            == Some("2"))
        .then_some(())
    });
    assert_eq!(pdb_row(&pp, "api")[..4], ["api", "2", "N/A", "0"]);

    let _uncordon = Uncordon(&pp);
    // The budget allows nothing: drain cordons, is refused with 429s, retries, gives up.
    let out = pp.kubectl(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=8s",
    ]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(text.contains(&format!("node/{node} cordoned")), "{text}");
    assert!(text.contains(VIOLATION), "{text}");
    assert_eq!(
        pp.jsonpath(&format!("node/{node}"), "{.spec.unschedulable}")
            .as_deref(),
        Some("true")
    );
    assert_eq!(live_pods(&pp, "api"), before);

    // A budget that allows both: the drain evicts them and finishes.
    pp.kubectl_ok(&[
        "patch",
        "pdb",
        "api",
        "--type=merge",
        "-p",
        r#"{"spec":{"minAvailable":null,"maxUnavailable":2}}"#,
    ]);
    wait_allowed(&pp, "api", "2");
    assert_eq!(pdb_row(&pp, "api")[..3], ["api", "N/A", "2"]);
    let out = pp.kubectl_ok(&[
        "drain",
        &node,
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=60s",
    ]);
    assert!(out.contains(&format!("node/{node} drained")), "{out}");
    for p in &before {
        assert!(out.contains(&format!("pod/{p} evicted")), "{out}");
        assert!(pp
            .jsonpath(&format!("pod/{p}"), "{.metadata.name}")
            .is_none());
    }
    // The replacements wait: the only node is cordoned.
    let waiting = wait_until("two replacement pods", T, || {
        let pods = live_pods(&pp, "api");
        (pods.len() == 2).then_some(pods)
    });
    for p in &waiting {
        assert_eq!(
            pp.jsonpath(&format!("pod/{p}"), "{.spec.nodeName}")
                .as_deref(),
            Some("")
        );
    }

    pp.kubectl_ok(&["uncordon", &node]);
    assert_eq!(
        pp.jsonpath(&format!("node/{node}"), "{.spec.unschedulable}")
            .as_deref(),
        Some("")
    );
    wait_until("the replacements to run on the node again", T, || {
        waiting
            .iter()
            .all(|p| {
                pp.jsonpath(&format!("pod/{p}"), "{.status.phase}")
                    .as_deref()
                    == Some("Running")
            })
            .then_some(())
    });
    wait_allowed(&pp, "api", "2");

    pp.kubectl_ok(&["delete", "pdb", "api"]);
    pp.kubectl_ok(&["delete", "deployment", "api"]);
    wait_until("the pods to go", T, || {
        live_pods(&pp, "api").is_empty().then_some(())
    });
}
