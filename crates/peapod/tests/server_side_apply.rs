//! Server-side apply through kubectl: `kubectl apply --server-side` records the applied
//! fields under its manager in `managedFields`, other writers (`kubectl scale`, `kubectl
//! edit`) take the fields they change, a re-apply that would change them fails with kube's
//! conflict message until `--force-conflicts`, fields dropped from the manifest leave the
//! object, two field managers share the fields they both apply, ports are told apart by
//! number and protocol, an object keeps at most ten update entries, and peapod's own
//! components write under their upstream names.

mod common;

use std::process::Output;
use std::time::Duration;

use common::Peapod;
use serde_json::Value;

const T: Duration = Duration::from_secs(90);

fn deployment(replicas: u32, image_tag: &str, with_tier: bool) -> String {
    let tier = if with_tier { "\n    tier: front" } else { "" };
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels:
    app: web{tier}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: web
        image: docker.io/library/busybox:{image_tag}
        command: [sleep, '3600']
        ports:
        - containerPort: 8080
"
    )
}

fn configmap(data: &[(&str, &str)]) -> String {
    let mut m = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: shared\ndata:\n");
    for (k, v) in data {
        m.push_str(&format!("  {k}: \"{v}\"\n"));
    }
    m
}

/// `kubectl ARGS -f -` with `manifest` on stdin, whatever its exit status.
fn kubectl_stdin(pp: &Peapod, args: &[&str], manifest: &str) -> Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = pp
        .kubectl_cmd()
        .args(args)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(manifest.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("kubectl output")
}

fn apply_ok(pp: &Peapod, args: &[&str], manifest: &str) -> String {
    let out = kubectl_stdin(pp, args, manifest);
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        common::tail(&pp.server_log(), 40)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn get_json(pp: &Peapod, what: &str) -> Value {
    let text = pp.kubectl_ok(&["get", what, "-o", "json", "--show-managed-fields"]);
    serde_json::from_str(&text).expect("kubectl get -o json")
}

/// The managedFields entries of `obj` that own the FieldsV1 path `path`.
fn owners(obj: &Value, path: &[&str]) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| {
                    let mut cur = &e["fieldsV1"];
                    for p in path {
                        cur = &cur[*p];
                    }
                    cur.is_object()
                })
                .map(|e| {
                    let sub = e["subresource"].as_str().unwrap_or("");
                    let op = e["operation"].as_str().unwrap_or("");
                    let m = e["manager"].as_str().unwrap_or("");
                    if sub.is_empty() {
                        format!("{m}/{op}")
                    } else {
                        format!("{m}/{op}/{sub}")
                    }
                })
                .collect()
        })
        .unwrap_or_default()
}

const REPLICAS: &[&str] = &["f:spec", "f:replicas"];
const IMAGE: &[&str] = &[
    "f:spec",
    "f:template",
    "f:spec",
    "f:containers",
    "k:{\"name\":\"web\"}",
    "f:image",
];

#[test]
fn server_side_apply_owns_conflicts_forces_and_removes() {
    let pp = Peapod::start_with(&["--no-controllers"]);
    let ssa = ["apply", "--server-side"];

    let out = apply_ok(&pp, &ssa, &deployment(2, "latest", true));
    assert!(
        out.contains("deployment.apps/web serverside-applied"),
        "{out}"
    );
    let d = get_json(&pp, "deployment/web");
    assert_eq!(owners(&d, REPLICAS), ["kubectl/Apply"], "{d:#}");
    assert_eq!(owners(&d, IMAGE), ["kubectl/Apply"]);
    let port = [
        "f:spec",
        "f:template",
        "f:spec",
        "f:containers",
        "k:{\"name\":\"web\"}",
        "f:ports",
        "k:{\"containerPort\":8080,\"protocol\":\"TCP\"}",
        "f:containerPort",
    ];
    assert_eq!(owners(&d, &port), ["kubectl/Apply"]);
    assert_eq!(
        owners(&d, &["f:metadata", "f:labels", "f:tier"]),
        ["kubectl/Apply"]
    );
    // `kubectl get -o yaml` leaves managedFields out by itself; they are stored.
    let plain = pp.kubectl_ok(&["get", "deployment/web", "-o", "yaml"]);
    assert!(!plain.contains("managedFields"), "{plain}");

    // Other managers take what they change: replicas through the scale subresource, the
    // image through an edit.
    pp.kubectl_ok(&["scale", "deployment/web", "--replicas=3"]);
    let out = pp
        .kubectl_cmd()
        .env(
            "KUBE_EDITOR",
            "sed -i s#docker.io/library/busybox:latest#docker.io/library/busybox:edited#",
        )
        .args(["edit", "deployment/web"])
        .output()
        .expect("kubectl edit");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let d = get_json(&pp, "deployment/web");
    let scalers = owners(&d, REPLICAS);
    assert_eq!(scalers.len(), 1, "{scalers:?}");
    assert!(scalers[0].ends_with("/Update/scale"), "{scalers:?}");
    assert_eq!(owners(&d, IMAGE), ["kubectl-edit/Update"]);

    // Re-applying other values conflicts, names both fields and changes nothing.
    let out = kubectl_stdin(&pp, &ssa, &deployment(4, "latest", true));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Apply failed with 2 conflicts: conflicts with \""),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "conflicts with \"kubectl-edit\" using apps/v1:\n- .spec.template.spec.containers[name=\"web\"].image"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("with subresource \"scale\" using apps/v1:\n- .spec.replicas"),
        "{stderr}"
    );
    assert_eq!(
        pp.jsonpath("deployment/web", "{.spec.replicas}").as_deref(),
        Some("3")
    );
    // One conflict reads as upstream's singular message.
    let out = kubectl_stdin(&pp, &ssa, &deployment(4, "edited", true));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \""),
        "{stderr}"
    );
    assert!(stderr.contains(": .spec.replicas"), "{stderr}");

    // --force-conflicts takes the fields; the scale entry, left with nothing, goes.
    let forced: Vec<&str> = ssa.iter().copied().chain(["--force-conflicts"]).collect();
    apply_ok(&pp, &forced, &deployment(4, "latest", true));
    let d = get_json(&pp, "deployment/web");
    assert_eq!(d["spec"]["replicas"], 4);
    assert_eq!(owners(&d, REPLICAS), ["kubectl/Apply"]);
    assert_eq!(owners(&d, IMAGE), ["kubectl/Apply"]);
    let entries = d["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        entries.iter().all(|e| e["subresource"] != "scale"),
        "{entries:#?}"
    );

    // A label dropped from the manifest leaves the object.
    apply_ok(&pp, &ssa, &deployment(4, "latest", false));
    let d = get_json(&pp, "deployment/web");
    assert_eq!(d["metadata"]["labels"], serde_json::json!({"app": "web"}));
    assert!(owners(&d, &["f:metadata", "f:labels", "f:tier"]).is_empty());
}

#[test]
fn two_field_managers_share_what_they_both_apply() {
    let pp = Peapod::start_with(&["--no-controllers"]);
    let as_manager = |m: &'static str| ["apply", "--server-side", "--field-manager", m];

    apply_ok(
        &pp,
        &as_manager("alice"),
        &configmap(&[("a", "1"), ("shared", "x")]),
    );
    apply_ok(
        &pp,
        &as_manager("bob"),
        &configmap(&[("shared", "x"), ("b", "2")]),
    );
    let cm = get_json(&pp, "configmap/shared");
    assert_eq!(
        owners(&cm, &["f:data", "f:shared"]),
        ["alice/Apply", "bob/Apply"]
    );
    assert_eq!(owners(&cm, &["f:data", "f:a"]), ["alice/Apply"]);

    // A value the other manager also owns cannot change without force.
    let out = kubectl_stdin(
        &pp,
        &as_manager("alice"),
        &configmap(&[("a", "1"), ("shared", "y")]),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Apply failed with 1 conflict: conflict with \"bob\": .data.shared"),
        "{stderr}"
    );

    // Alice stops applying the shared key: bob still owns it, so it stays.
    apply_ok(&pp, &as_manager("alice"), &configmap(&[("a", "1")]));
    let cm = get_json(&pp, "configmap/shared");
    assert_eq!(cm["data"]["shared"], "x");
    assert_eq!(owners(&cm, &["f:data", "f:shared"]), ["bob/Apply"]);
    // Bob drops it too: now it goes.
    apply_ok(&pp, &as_manager("bob"), &configmap(&[("b", "2")]));
    let cm = get_json(&pp, "configmap/shared");
    assert_eq!(cm["data"], serde_json::json!({"a": "1", "b": "2"}));
}

fn dns_service(protocol: &str) -> String {
    format!(
        "apiVersion: v1
kind: Service
metadata:
  name: dns
spec:
  selector:
    app: dns
  ports:
  - name: dns-{p}
    port: 53
    protocol: {protocol}
",
        p = protocol.to_lowercase()
    )
}

/// Port 53/TCP and 53/UDP are different items to server-side apply (the ports' key is number
/// and protocol, as the Service type declares it), so two managers each own their own; and
/// the eleventh updater's write folds the oldest update into `ancient-changes`.
#[test]
fn ports_are_keyed_by_protocol_and_update_entries_are_capped() {
    let pp = Peapod::start_with(&["--no-controllers"]);
    let as_manager = |m: &'static str| ["apply", "--server-side", "--field-manager", m];
    apply_ok(&pp, &as_manager("tcp"), &dns_service("TCP"));
    apply_ok(&pp, &as_manager("udp"), &dns_service("UDP"));
    let svc = get_json(&pp, "service/dns");
    let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
    assert_eq!(ports.len(), 2, "{ports:#?}");
    let key = |proto: &str| format!("k:{{\"port\":53,\"protocol\":\"{proto}\"}}");
    let tcp = key("TCP");
    let udp = key("UDP");
    assert_eq!(
        owners(&svc, &["f:spec", "f:ports", &tcp, "f:name"]),
        ["tcp/Apply"]
    );
    assert_eq!(
        owners(&svc, &["f:spec", "f:ports", &udp, "f:name"]),
        ["udp/Apply"]
    );

    for i in 0..11 {
        let manager = format!("labeller-{i:02}");
        pp.kubectl_ok(&[
            "label",
            "service/dns",
            &format!("l{i}=v"),
            "--field-manager",
            &manager,
        ]);
    }
    let svc = get_json(&pp, "service/dns");
    let entries = svc["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let updates: Vec<&str> = entries
        .iter()
        .filter(|e| e["operation"] == "Update")
        .filter_map(|e| e["manager"].as_str())
        .collect();
    assert_eq!(updates.len(), 10, "{updates:?}");
    assert!(updates.contains(&"ancient-changes"), "{updates:?}");
    assert!(!updates.contains(&"labeller-00"), "{updates:?}");
    assert_eq!(
        owners(&svc, &["f:metadata", "f:labels", "f:l0"]),
        ["ancient-changes/Update"]
    );
    assert_eq!(
        owners(&svc, &["f:metadata", "f:labels", "f:l10"]),
        ["labeller-10/Update"]
    );
}

/// Every `manager/operation[/subresource]` entry of `obj`'s managedFields.
fn managers(obj: &Value) -> Vec<String> {
    let mut all: Vec<String> = obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let m = e["manager"].as_str().unwrap_or("");
            let op = e["operation"].as_str().unwrap_or("");
            match e["subresource"].as_str().unwrap_or("") {
                "" => format!("{m}/{op}"),
                sub => format!("{m}/{op}/{sub}"),
            }
        })
        .collect();
    all.sort();
    all
}

/// Each component writes under its own name, as on any cluster (the API server takes the
/// manager from the User-Agent): a ReplicaSet's pod is created by `kube-controller-manager`
/// and its status written by `kubelet`, a Deployment's status by `kube-controller-manager`,
/// and an unschedulable pod's condition by `kube-scheduler`.
#[test]
fn components_write_under_their_own_names() {
    let pp = Peapod::start();
    // The image is loaded on the node, not served by a registry.
    let manifest = deployment(1, "latest", false).replace(
        "        command:",
        "        imagePullPolicy: IfNotPresent\n        command:",
    );
    apply_ok(&pp, &["apply"], &manifest);
    let pod = common::wait_until("the Deployment's pod Running", T, || {
        let name = pp.jsonpath_all("pods", "{.items[*].metadata.name}");
        let name = name.split_whitespace().next()?.to_string();
        (pp.jsonpath(&format!("pod/{name}"), "{.status.phase}")
            .as_deref()
            == Some("Running"))
        .then_some(name)
    });
    let p = get_json(&pp, &format!("pod/{pod}"));
    assert_eq!(
        managers(&p),
        ["kube-controller-manager/Update", "kubelet/Update/status"],
        "{p:#}"
    );
    assert_eq!(
        owners(&p, &["f:status", "f:phase"]),
        ["kubelet/Update/status"]
    );
    common::wait_until("the Deployment's status written", T, || {
        let d = get_json(&pp, "deployment/web");
        owners(&d, &["f:status", "f:availableReplicas"])
            .contains(&"kube-controller-manager/Update/status".to_string())
            .then_some(())
    });

    pp.apply(
        "apiVersion: v1
kind: Pod
metadata:
  name: nowhere
spec:
  nodeSelector:
    no-such: node
  containers:
  - name: c
    image: docker.io/library/busybox:latest
",
    );
    common::wait_until("the scheduler's condition on the pod", T, || {
        managers(&get_json(&pp, "pod/nowhere"))
            .contains(&"kube-scheduler/Update/status".to_string())
            .then_some(())
    });
}
