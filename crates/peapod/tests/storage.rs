//! Persistent volumes end to end through kubectl: a claim of the default `local-path` class
//! waits for its first pod, is then provisioned on the pod's node and bound; the data a pod
//! writes is seen by the next pod and survives a restart of `peapod up`; deleting the claim
//! removes the volume and its directory. A static hostPath volume (reclaim `Retain`) binds
//! to a matching claim, a pod placed on the node while its claim is unbound waits in
//! ContainerCreating with a FailedMount event until it binds, and the volume turns
//! `Released` with its data kept once the claim is deleted. A claim in use is only removed
//! once its pod is gone, and a bound local-path claim grows when asked to, while a class
//! without expansion refuses.

mod common;

use std::fs;
use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);

fn pod(name: &str, claim: &str, script: &str, node: Option<&str>) -> String {
    let node = node
        .map(|n| format!("  nodeName: {n}\n"))
        .unwrap_or_default();
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{node}  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "{script}; trap 'exit 0' TERM; sleep 3600 & wait"]
    volumeMounts:
    - {{name: data, mountPath: /data}}
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"#
    )
}

fn events_of(pp: &Peapod, name: &str) -> String {
    let out = pp.kubectl(&[
        "get",
        "events",
        "-o",
        &format!(
            "jsonpath={{range .items[?(@.involvedObject.name==\"{name}\")]}}{{.reason}}: {{.message}}{{\"\\n\"}}{{end}}"
        ),
    ]);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn logs_contain(pp: &Peapod, pod: &str, text: &str) -> bool {
    let out = pp.kubectl(&["logs", pod]);
    String::from_utf8_lossy(&out.stdout).contains(text)
}

fn delete(pp: &Peapod, what: &str) {
    pp.kubectl_ok(&["delete", what, "--wait=true", "--timeout=60s"]);
}

#[test]
fn local_path_claim_waits_for_its_pod_and_keeps_data_across_pods_and_restarts() {
    let mut pp = Peapod::start();
    let sc = wait_until("the default StorageClass", T, || {
        let out = pp.kubectl(&["get", "sc"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("local-path (default)").then_some(text)
    });
    let header: Vec<&str> = sc.lines().next().unwrap_or("").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "PROVISIONER",
            "RECLAIMPOLICY",
            "VOLUMEBINDINGMODE",
            "ALLOWVOLUMEEXPANSION",
            "AGE"
        ]
    );
    let row: Vec<&str> = sc.lines().nth(1).unwrap_or("").split_whitespace().collect();
    assert_eq!(
        row[..6],
        [
            "local-path",
            "(default)",
            "peapod.io/local-path",
            "Delete",
            "WaitForFirstConsumer",
            "true"
        ]
    );

    pp.apply(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 64Mi}}
"#,
    );
    assert_eq!(
        pp.jsonpath("pvc/data", "{.spec.storageClassName}")
            .as_deref(),
        Some("local-path"),
        "the default class is filled in"
    );
    wait_until("the binder to wait for a consumer", T, || {
        events_of(&pp, "data")
            .contains("WaitForFirstConsumer")
            .then_some(())
    });
    assert_eq!(
        pp.jsonpath("pvc/data", "{.status.phase}").as_deref(),
        Some("Pending")
    );
    assert_eq!(pp.jsonpath_all("pv", "{.items[*].metadata.name}"), "");

    pp.apply(&pod("writer", "data", "echo hello > /data/file", None));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/writer",
        "--timeout=90s",
    ]);
    assert_eq!(
        pp.jsonpath("pvc/data", "{.status.phase}").as_deref(),
        Some("Bound")
    );
    assert_eq!(
        pp.jsonpath(
            "pvc/data",
            "{.metadata.annotations.volume\\.kubernetes\\.io/selected-node}"
        )
        .as_deref(),
        Some(pp.node_name.as_str())
    );
    let uid = pp.jsonpath("pvc/data", "{.metadata.uid}").expect("uid");
    let pv = format!("pvc-{uid}");
    assert_eq!(
        pp.jsonpath("pvc/data", "{.spec.volumeName}").as_deref(),
        Some(pv.as_str())
    );
    let dir = pp
        .state_dir
        .join("local-path")
        .join(format!("{pv}_default_data"));
    assert_eq!(
        pp.jsonpath(&format!("pv/{pv}"), "{.spec.hostPath.path}")
            .as_deref(),
        dir.to_str()
    );
    wait_until("the writer's file on the host", T, || {
        (fs::read_to_string(dir.join("file")).ok()?.trim() == "hello").then_some(())
    });
    let events = events_of(&pp, "data");
    assert!(events.contains("ProvisioningSucceeded"), "{events}");

    let listing = pp.kubectl_ok(&["get", "pv,pvc,sc"]);
    let headers: Vec<Vec<&str>> = listing
        .lines()
        .filter(|l| l.starts_with("NAME"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        headers[0],
        [
            "NAME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "RECLAIM",
            "POLICY",
            "STATUS",
            "CLAIM",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "REASON",
            "AGE"
        ],
        "{listing}"
    );
    assert_eq!(
        headers[1],
        [
            "NAME",
            "STATUS",
            "VOLUME",
            "CAPACITY",
            "ACCESS",
            "MODES",
            "STORAGECLASS",
            "VOLUMEATTRIBUTESCLASS",
            "AGE"
        ],
        "{listing}"
    );
    let pv_row = format!("persistentvolume/{pv}");
    let row: Vec<&str> = listing
        .lines()
        .find(|l| l.starts_with(&pv_row))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        row[1..8],
        [
            "64Mi",
            "RWO",
            "Delete",
            "Bound",
            "default/data",
            "local-path",
            "<unset>"
        ],
        "{listing}"
    );
    let row: Vec<&str> = listing
        .lines()
        .find(|l| l.starts_with("persistentvolumeclaim/data"))
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        row[1..7],
        ["Bound", pv.as_str(), "64Mi", "RWO", "local-path", "<unset>"],
        "{listing}"
    );

    delete(&pp, "pod/writer");
    pp.apply(&pod("reader", "data", "cat /data/file", None));
    wait_until("the next pod to read the file", T, || {
        logs_contain(&pp, "reader", "hello").then_some(())
    });

    pp.stop();
    pp.up();
    wait_until("the file after a restart", T, || {
        let out = pp.kubectl(&["exec", "reader", "--", "cat", "/data/file"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("hello")
            .then_some(())
    });

    delete(&pp, "pod/reader");
    delete(&pp, "pvc/data");
    wait_until("the volume to go", T, || {
        pp.jsonpath_all("pv", "{.items[*].metadata.name}")
            .is_empty()
            .then_some(())
    });
    assert!(!dir.exists(), "the volume's directory is removed with it");
}

#[test]
fn static_host_path_volume_binds_waits_and_is_retained() {
    let pp = Peapod::start();
    let host = tempfile::tempdir().expect("tempdir");
    let data = host.path().join("vol");

    // A pod placed on the node while its claim is unbound waits for the claim.
    pp.apply(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: claim}
spec:
  storageClassName: manual
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 500Mi}}
"#,
    );
    pp.apply(&pod(
        "user",
        "claim",
        "echo kept > /data/note",
        Some(&pp.node_name),
    ));
    wait_until("the unbound claim's FailedMount", T, || {
        events_of(&pp, "user")
            .lines()
            .any(|l| l.starts_with("FailedMount") && l.contains("non-bound phase"))
            .then_some(())
    });
    assert_eq!(
        pp.jsonpath(
            "pod/user",
            "{.status.containerStatuses[0].state.waiting.reason}"
        )
        .as_deref(),
        Some("ContainerCreating")
    );

    pp.apply(&format!(
        r#"apiVersion: v1
kind: PersistentVolume
metadata: {{name: static-pv, labels: {{kind: static}}}}
spec:
  storageClassName: manual
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  hostPath: {{path: {}, type: DirectoryOrCreate}}
"#,
        data.display()
    ));
    assert_eq!(
        pp.jsonpath("pv/static-pv", "{.spec.persistentVolumeReclaimPolicy}")
            .as_deref(),
        Some("Retain")
    );
    wait_until("the claim to bind", T, || {
        (pp.jsonpath("pvc/claim", "{.status.phase}").as_deref() == Some("Bound")).then_some(())
    });
    assert_eq!(
        pp.jsonpath("pvc/claim", "{.spec.volumeName}").as_deref(),
        Some("static-pv")
    );
    assert_eq!(
        pp.jsonpath("pv/static-pv", "{.spec.claimRef.name}")
            .as_deref(),
        Some("claim")
    );
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/user", "--timeout=90s"]);
    wait_until("the pod's file in the volume", T, || {
        (fs::read_to_string(data.join("note")).ok()?.trim() == "kept").then_some(())
    });

    delete(&pp, "pod/user");
    delete(&pp, "pvc/claim");
    wait_until("the volume to be released", T, || {
        (pp.jsonpath("pv/static-pv", "{.status.phase}").as_deref() == Some("Released"))
            .then_some(())
    });
    assert!(data.join("note").exists(), "Retain keeps the data");
    delete(&pp, "pv/static-pv");
    assert!(
        data.join("note").exists(),
        "deleting a static volume keeps the data"
    );
}

/// `kubernetes.io/pvc-protection` and `pv-protection`: deleting a claim a running pod uses
/// leaves it `Terminating` (the pod keeps writing) until the pod is deleted; then claim,
/// volume and directory go. Before that the claim grows from 1Mi to 2Mi (the local-path
/// class allows expansion), while a claim of a class without it is refused.
#[test]
fn claims_in_use_are_protected_and_expandable_ones_grow() {
    let pp = Peapod::start();
    wait_until("the default StorageClass", T, || {
        pp.jsonpath("sc/local-path", "{.allowVolumeExpansion}")
    });
    pp.apply(
        r#"apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
"#,
    );
    assert_eq!(
        pp.jsonpath("pvc/data", "{.metadata.finalizers}").as_deref(),
        Some(r#"["kubernetes.io/pvc-protection"]"#)
    );
    pp.apply(&pod("user", "data", "echo one > /data/file", None));
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/user", "--timeout=90s"]);
    let pv = pp
        .jsonpath("pvc/data", "{.spec.volumeName}")
        .unwrap_or_default();
    let pv_finalizers = pp
        .jsonpath(&format!("pv/{pv}"), "{.metadata.finalizers}")
        .unwrap_or_default();
    assert!(
        pv_finalizers.contains("kubernetes.io/pv-protection"),
        "{pv_finalizers}"
    );

    // Growing: the volume and then the claim's capacity follow the request.
    pp.kubectl_ok(&[
        "patch",
        "pvc",
        "data",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Mi"}}}}"#,
    ]);
    wait_until("the claim's capacity to grow", T, || {
        let c = pp.jsonpath("pvc/data", "{.status.capacity.storage}")?;
        (c == "2Mi").then_some(())
    });
    assert_eq!(
        pp.jsonpath(&format!("pv/{pv}"), "{.spec.capacity.storage}")
            .as_deref(),
        Some("2Mi")
    );
    assert_eq!(
        pp.jsonpath("pvc/data", "{.status.allocatedResources.storage}")
            .as_deref(),
        Some("2Mi")
    );
    let events = wait_until("the resize events", T, || {
        let e = events_of(&pp, "data");
        e.contains("VolumeResizeSuccessful: Resize volume succeeded")
            .then_some(e)
    });
    assert!(
        events.contains("Resizing: External resizer is resizing volume"),
        "{events}"
    );

    // A class without expansion: the request may not grow.
    pp.apply(
        r#"apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: fixed}
provisioner: peapod.io/local-path
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: fixed}
spec:
  storageClassName: fixed
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Mi}}
"#,
    );
    let out = pp.kubectl(&[
        "patch",
        "pvc",
        "fixed",
        "-p",
        r#"{"spec":{"resources":{"requests":{"storage":"2Mi"}}}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "persistentvolumeclaims \"fixed\" is forbidden: only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize"
        ),
        "{stderr}"
    );
    delete(&pp, "pvc/fixed");

    // In use: the claim stays, Terminating, and the pod keeps its volume.
    pp.kubectl_ok(&["delete", "pvc", "data", "--wait=false"]);
    wait_until("the claim marked for deletion", T, || {
        pp.jsonpath("pvc/data", "{.metadata.deletionTimestamp}")
            .filter(|t| !t.is_empty())
    });
    let listing = pp.kubectl_ok(&["get", "pvc", "data", "--no-headers"]);
    assert!(listing.contains("Terminating"), "{listing}");
    pp.kubectl_ok(&["exec", "user", "--", "sh", "-c", "echo two >> /data/file"]);
    let file = pp.kubectl_ok(&["exec", "user", "--", "cat", "/data/file"]);
    assert_eq!(file.split_whitespace().collect::<Vec<_>>(), ["one", "two"]);

    // The pod goes: then the claim, and with reclaim Delete the volume.
    delete(&pp, "pod/user");
    wait_until("the claim and its volume to go", T, || {
        let claim = pp.kubectl(&["get", "pvc", "data"]);
        let volumes = pp.jsonpath_all("pv", "{.items[*].metadata.name}");
        (!claim.status.success() && volumes.is_empty()).then_some(())
    });
}
