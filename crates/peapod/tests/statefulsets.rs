//! StatefulSets through kubectl: `OrderedReady` starts web-0, web-1, web-2 one after the
//! other, each once the one before is Ready; pods keep their names (a deleted web-1 comes
//! back as web-1) and get stable DNS names through the headless Service
//! (`web-0.nginx.default.svc.cluster.local`, and `nginx` itself answers every ready pod);
//! a rolling update with a partition replaces only the ordinals at or above it; scaling down
//! removes the highest ordinal first, one at a time; the web example runs as its comments
//! say; claim templates give each ordinal its own volume, kept across the pod's restarts and
//! removed or retained as the claim retention policy says.

mod common;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use common::{wait_until, workspace_root, Peapod};

const T: Duration = Duration::from_secs(120);

/// Tests that need the cluster DNS address run one at a time in this binary.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `peapod up` once this server serves cluster DNS (another peapod on the host may hold the
/// address until it stops).
fn start_with_dns() -> Peapod {
    let pp = Peapod::start();
    wait_until("our cluster DNS serving", Duration::from_secs(300), || {
        pp.server_log()
            .contains("cluster DNS serving")
            .then_some(())
    });
    pp
}

const SERVICE: &str = r#"apiVersion: v1
kind: Service
metadata:
  name: nginx
spec:
  clusterIP: None
  selector: {app: web}
  ports:
  - {port: 80, name: web}
"#;

fn statefulset(replicas: u32, annotation: &str) -> String {
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx
  replicas: {replicas}
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
      annotations: {{rev: "{annotation}"}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"]
"#
    )
}

/// One pod as the tests look at it.
#[derive(Debug, Clone, PartialEq)]
struct PodView {
    uid: String,
    revision: String,
    ip: String,
    created: String,
    ready_since: String,
    terminating: bool,
}

/// The pods labelled `app=web`, by name.
fn pods(pp: &Peapod) -> BTreeMap<String, PodView> {
    let out = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "app=web",
        "-o",
        "jsonpath={range .items[*]}{.metadata.name}|{.metadata.uid}|{.metadata.labels.controller-revision-hash}|{.status.podIP}|{.metadata.creationTimestamp}|{.status.conditions[?(@.type==\"Ready\")].status}{.status.conditions[?(@.type==\"Ready\")].lastTransitionTime}|{.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            let [name, uid, revision, ip, created, ready, deleting] = f.as_slice() else {
                return None;
            };
            Some((
                name.to_string(),
                PodView {
                    uid: uid.to_string(),
                    revision: revision.to_string(),
                    ip: ip.to_string(),
                    created: created.to_string(),
                    ready_since: ready.strip_prefix("True").unwrap_or("").to_string(),
                    terminating: !deleting.is_empty(),
                },
            ))
        })
        .collect()
}

fn rollout_status(pp: &Peapod) -> String {
    pp.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=120s"])
}

fn names(map: &BTreeMap<String, PodView>) -> Vec<&str> {
    map.keys().map(String::as_str).collect()
}

#[test]
fn ordered_start_stable_names_and_dns() {
    let _serial = serial();
    let pp = start_with_dns();
    pp.apply(SERVICE);
    pp.apply(&statefulset(3, "1"));
    let out = rollout_status(&pp);
    assert!(out.contains("partitioned roll out complete"), "{out}");
    let first = pods(&pp);
    assert_eq!(names(&first), ["web-0", "web-1", "web-2"]);
    // Each pod was made only once the one before it was Ready (times have one-second
    // resolution, hence "not before").
    for (prev, next) in [("web-0", "web-1"), ("web-1", "web-2")] {
        let ready = &first[prev].ready_since;
        let created = &first[next].created;
        assert!(!ready.is_empty(), "{prev} not ready: {first:?}");
        assert!(
            created >= ready,
            "{next} created {created} before {prev} was ready at {ready}"
        );
    }
    assert_eq!(
        pp.jsonpath(
            "pod/web-1",
            "{.metadata.labels.statefulset\\.kubernetes\\.io/pod-name} {.metadata.labels.apps\\.kubernetes\\.io/pod-index} {.spec.hostname} {.spec.subdomain}"
        )
        .as_deref(),
        Some("web-1 1 web-1 nginx")
    );
    let row = pp.kubectl_ok(&["get", "sts", "web", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(1), Some("3/3"), "{row}");

    // Stable DNS: web-0's own name answers its IP; the Service name answers all of them.
    let ip0 = first["web-0"].ip.clone();
    pp.apply(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "until timeout 5 nslookup web-0.nginx.default.svc.cluster.local 10.96.0.10 > /tmp/one 2>&1; do sleep 0.5; done; cat /tmp/one; echo one-done; until timeout 5 nslookup nginx.default.svc.cluster.local 10.96.0.10; do sleep 0.5; done; echo all-done; trap 'exit 0' TERM; sleep 3600 & wait"]
"#,
    );
    let logs = wait_until("the client's lookups", T, || {
        let out = pp.kubectl(&["logs", "client"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("all-done").then_some(text)
    });
    let (one, all) = logs.split_once("one-done").unwrap_or_default();
    // Whole lines: 10.244.0.2 is a prefix of 10.244.0.253.
    let answers = |text: &str, ip: &str| text.lines().any(|l| l.trim() == format!("Address: {ip}"));
    assert!(answers(one, &ip0), "{logs}");
    for other in ["web-1", "web-2"] {
        assert!(!answers(one, &first[other].ip), "{logs}");
    }
    for pod in first.values() {
        assert!(answers(all, &pod.ip), "{logs}");
    }

    // A deleted pod comes back under its name; the others are not touched.
    pp.kubectl_ok(&["delete", "pod", "web-1", "--wait=false"]);
    let again = wait_until("web-1 to come back Ready", T, || {
        let now = pods(&pp);
        let back = now.get("web-1")?;
        (back.uid != first["web-1"].uid && !back.ready_since.is_empty() && !back.terminating)
            .then_some(now)
    });
    assert_eq!(again["web-0"].uid, first["web-0"].uid);
    assert_eq!(again["web-2"].uid, first["web-2"].uid);
    let events = pp.kubectl_ok(&["describe", "sts", "web"]);
    assert!(
        events.contains("create Pod web-1 in StatefulSet web successful"),
        "{events}"
    );
}

#[test]
fn partitioned_rolling_update_and_ordered_scale_down() {
    let _serial = serial();
    let pp = Peapod::start();
    pp.apply(&statefulset(3, "1"));
    rollout_status(&pp);
    let before = pods(&pp);
    let old_revision = pp
        .jsonpath("sts/web", "{.status.currentRevision}")
        .unwrap_or_default();
    assert!(old_revision.starts_with("web-"), "{old_revision}");
    assert!(
        before.values().all(|p| p.revision == old_revision),
        "{before:?}"
    );

    // A template change with partition 1: web-2 then web-1 are replaced, web-0 stays.
    pp.kubectl_ok(&[
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":1}},"template":{"metadata":{"annotations":{"rev":"2"}}}}}"#,
    ]);
    let new_revision = wait_until("the update revision", T, || {
        let r = pp.jsonpath("sts/web", "{.status.updateRevision}")?;
        (!r.is_empty() && r != old_revision).then_some(r)
    });
    let out = rollout_status(&pp);
    assert!(
        out.contains("partitioned roll out complete: 2 new pods have been updated"),
        "{out}"
    );
    let after = wait_until("web-1 and web-2 at the new revision, Ready", T, || {
        let now = pods(&pp);
        let done = ["web-1", "web-2"].iter().all(|n| {
            now.get(*n)
                .is_some_and(|p| p.revision == new_revision && !p.ready_since.is_empty())
        });
        done.then_some(now)
    });
    assert_eq!(after["web-0"].uid, before["web-0"].uid);
    assert_eq!(after["web-0"].revision, old_revision);
    assert_ne!(after["web-1"].uid, before["web-1"].uid);
    assert_ne!(after["web-2"].uid, before["web-2"].uid);
    assert_eq!(
        pp.jsonpath(
            "sts/web",
            "{.status.currentRevision} {.status.updatedReplicas} {.status.currentReplicas}"
        ),
        Some(format!("{old_revision} 2 1"))
    );
    let revisions = pp.kubectl_ok(&[
        "get",
        "controllerrevisions",
        "-l",
        "app=web",
        "--no-headers",
    ]);
    assert_eq!(revisions.lines().count(), 2, "{revisions}");
    assert!(revisions.contains("statefulset.apps/web"), "{revisions}");

    // Scale down to one: web-2 goes first, and web-1 only once web-2 is gone.
    pp.kubectl_ok(&["scale", "sts/web", "--replicas=1"]);
    wait_until("only web-0 left", T, || {
        let now = pods(&pp);
        if let Some(web1) = now.get("web-1") {
            if web1.terminating {
                assert!(
                    !now.contains_key("web-2"),
                    "web-1 terminating while web-2 exists: {now:?}"
                );
            }
        } else {
            assert!(
                !now.contains_key("web-2"),
                "web-1 gone before web-2: {now:?}"
            );
        }
        (names(&now) == ["web-0"]).then_some(())
    });
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=SuccessfulDelete",
        "-o",
        "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("delete Pod web-2 in StatefulSet web successful")
            && events.contains("delete Pod web-1 in StatefulSet web successful"),
        "{events}"
    );
}

#[test]
fn the_web_example() {
    let _serial = serial();
    let pp = start_with_dns();
    let path = workspace_root().join("examples/statefulset-web.yaml");
    pp.kubectl_ok(&["apply", "-f", path.to_str().expect("utf-8 path")]);
    rollout_status(&pp);
    let all = pods(&pp);
    assert_eq!(names(&all), ["web-0", "web-1", "web-2"]);
    let ip1 = all["web-1"].ip.clone();
    let answer = wait_until("web-0 to resolve web-1", T, || {
        let out = pp.kubectl(&[
            "exec",
            "web-0",
            "--",
            "timeout",
            "5",
            "nslookup",
            "web-1.nginx.default.svc.cluster.local",
        ]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains(&format!("Address: {ip1}")).then_some(text)
    });
    assert!(
        answer.contains("web-1.nginx.default.svc.cluster.local"),
        "{answer}"
    );
}

const CLAIMED_SET: &str = r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
spec:
  serviceName: db
  replicas: 2
  persistentVolumeClaimRetentionPolicy: {whenDeleted: Retain, whenScaled: Delete}
  selector:
    matchLabels: {app: db}
  template:
    metadata:
      labels: {app: db}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "[ -f /data/who ] || hostname > /data/who; trap 'exit 0' TERM; sleep 3600 & wait"]
        volumeMounts:
        - {name: data, mountPath: /data}
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests: {storage: 1Mi}
"#;

fn claim_owners(pp: &Peapod, claim: &str) -> Option<String> {
    pp.jsonpath(
        &format!("pvc/{claim}"),
        "{range .metadata.ownerReferences[*]}{.kind}/{.name} {end}",
    )
}

/// Each ordinal gets its claim `data-db-i`, bound through the default class; a deleted pod
/// comes back to the same data; scaling down removes the scaled-away pod's claim
/// (`whenScaled: Delete`), deleting the set keeps the rest (`whenDeleted: Retain`).
#[test]
fn claim_templates_keep_data_per_ordinal_and_follow_the_retention_policy() {
    let pp = Peapod::start();
    pp.apply(CLAIMED_SET);
    pp.kubectl_ok(&["rollout", "status", "sts/db", "--timeout=120s"]);
    for claim in ["data-db-0", "data-db-1"] {
        let phase = wait_until(&format!("{claim} bound"), T, || {
            let p = pp.jsonpath(&format!("pvc/{claim}"), "{.status.phase}")?;
            (p == "Bound").then_some(p)
        });
        assert_eq!(phase, "Bound");
        // In range: no pod owns the claim, nor the set (Retain).
        assert_eq!(claim_owners(&pp, claim).unwrap_or_default().trim(), "");
    }
    let who = pp.kubectl_ok(&["exec", "db-1", "--", "cat", "/data/who"]);
    assert_eq!(who.trim(), "db-1");
    pp.kubectl_ok(&["exec", "db-1", "--", "sh", "-c", "echo kept > /data/marker"]);

    // The pod comes back under its name, to its own claim and data.
    let uid = pp
        .jsonpath("pod/db-1", "{.metadata.uid}")
        .unwrap_or_default();
    // The new uid is the deletion seen: the controller makes db-1 again at once, and kubectl
    // 1.33's own wait can end up waiting on the new pod (see static_pods.rs).
    pp.kubectl_ok(&["delete", "pod", "db-1", "--wait=false"]);
    wait_until("db-1 made again and Ready", T, || {
        let new_uid = pp.jsonpath("pod/db-1", "{.metadata.uid}")?;
        let ready = pp.jsonpath(
            "pod/db-1",
            "{.status.conditions[?(@.type==\"Ready\")].status}",
        )?;
        (new_uid != uid && ready == "True").then_some(())
    });
    let marker = pp.kubectl_ok(&["exec", "db-1", "--", "cat", "/data/marker", "/data/who"]);
    assert_eq!(
        marker.split_whitespace().collect::<Vec<_>>(),
        ["kept", "db-1"]
    );
    let other = pp.kubectl_ok(&["exec", "db-0", "--", "ls", "/data"]);
    assert_eq!(other.trim(), "who", "db-0 has its own volume");

    // Scaled away: the pod and, with it, its claim go; db-0's stays.
    pp.kubectl_ok(&["scale", "sts/db", "--replicas=1"]);
    wait_until("db-1 and its claim gone", T, || {
        let pod = pp.kubectl(&["get", "pod", "db-1"]);
        let claim = pp.kubectl(&["get", "pvc", "data-db-1"]);
        (!pod.status.success() && !claim.status.success()).then_some(())
    });
    assert!(pp.kubectl(&["get", "pvc", "data-db-0"]).status.success());

    // Deleted: the set and its pod go, the claim is retained.
    pp.kubectl_ok(&["delete", "sts", "db", "--wait=true", "--timeout=60s"]);
    wait_until("db-0 gone", T, || {
        (!pp.kubectl(&["get", "pod", "db-0"]).status.success()).then_some(())
    });
    assert_eq!(
        pp.jsonpath("pvc/data-db-0", "{.status.phase}").as_deref(),
        Some("Bound")
    );
    pp.kubectl_ok(&["delete", "pvc", "data-db-0", "--wait=true", "--timeout=60s"]);
}
