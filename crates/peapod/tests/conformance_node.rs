//! Upstream's node conformance tests (`test/e2e/common/node`) that earlier e2e tests left
//! out, adapted to busybox and checked through kubectl: termination messages from a file or
//! from the log (`Container Runtime … on terminated container`), `subPathExpr` failures in
//! kubelet's words (`Variable Expansion`), pods for another OS refused by the kubelet
//! (`PodOSRejection`), `pods/status` patches that also change annotations (`Pods should
//! patch a pod status`), httpGet hooks to another pod that answers 404 (`Container Lifecycle
//! Hook … http hook`), a Lease renewed while an unchanged node status is not reposted
//! (`NodeLease`), and as often as the KubeletConfiguration says, readiness probed as soon as the startup probe succeeded (`Probing
//! container`), the restart back-off started over by a new image (`Pods should have their
//! auto-restart back-off timer reset on image update`), and exec and logs over raw WebSockets in the protocols the
//! conformance tests speak (`Pods should support remote command execution over websockets`,
//! `… retrieving logs from the container over websockets`).

mod common;

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::process::{Child, Stdio};
use std::time::Duration;

use common::{wait_until, Peapod};

const T: Duration = Duration::from_secs(90);

fn pod(name: &str, spec_extra: &str, container: &str) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
{spec_extra}  containers:
  - name: c
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
{container}"#
    )
}

/// A pod of [`pod`] that restarts its containers whatever their exit.
fn always(manifest: String) -> String {
    manifest.replace("restartPolicy: Never", "restartPolicy: Always")
}

fn terminated_message(pp: &Peapod, pod: &str) -> Option<String> {
    pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].state.terminated.message}",
    )
}

fn waiting_message(pp: &Peapod, pod: &str) -> Option<String> {
    let reason = pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].state.waiting.reason}",
    )?;
    (reason == "CreateContainerConfigError").then(|| {
        pp.jsonpath(
            &format!("pod/{pod}"),
            "{.status.containerStatuses[0].state.waiting.message}",
        )
        .unwrap_or_default()
    })
}

/// `Container Runtime blackbox test on terminated container should report termination
/// message …`: from a file at a custom path written as a non-root user, from the log of a
/// failed container with `FallbackToLogsOnError` (an unterminated `echo -n` stays without a
/// newline, in the message and in `kubectl logs`), empty for a succeeded one, and the file
/// before the log when both exist.
#[test]
fn termination_messages_from_files_and_logs() {
    let pp = Peapod::start();
    let mut manifest = String::new();
    manifest += &pod(
        "custom-path",
        "",
        "    command: [/bin/sh, -c]\n    args: ['/bin/echo -n DONE > /dev/termination-custom-log']\n    terminationMessagePath: /dev/termination-custom-log\n    securityContext: {runAsUser: 10000}\n",
    );
    manifest += &pod(
        "log-failed",
        "",
        "    command: [/bin/sh, -c]\n    args: ['/bin/echo -n DONE; /bin/false']\n    terminationMessagePolicy: FallbackToLogsOnError\n",
    );
    manifest += &pod(
        "log-succeeded",
        "",
        "    command: [/bin/sh, -c]\n    args: ['/bin/echo -n DONE; /bin/true']\n    terminationMessagePolicy: FallbackToLogsOnError\n",
    );
    manifest += &pod(
        "file-first",
        "",
        "    command: [/bin/sh, -c]\n    args: ['/bin/echo -n OK > /dev/termination-log; /bin/echo DONE; /bin/true']\n    terminationMessagePolicy: FallbackToLogsOnError\n",
    );
    pp.apply(&manifest);
    for (name, phase) in [
        ("custom-path", "Succeeded"),
        ("log-failed", "Failed"),
        ("log-succeeded", "Succeeded"),
        ("file-first", "Succeeded"),
    ] {
        pp.wait_pod_phase(name, phase, T);
    }
    assert_eq!(
        terminated_message(&pp, "custom-path").as_deref(),
        Some("DONE")
    );
    assert_eq!(
        terminated_message(&pp, "log-failed").as_deref(),
        Some("DONE")
    );
    assert_eq!(
        terminated_message(&pp, "log-succeeded").as_deref(),
        Some("")
    );
    assert_eq!(terminated_message(&pp, "file-first").as_deref(), Some("OK"));
    assert_eq!(pp.kubectl_ok(&["logs", "log-failed"]), "DONE");
    assert_eq!(pp.kubectl_ok(&["logs", "file-first"]), "DONE\n");
    pp.kubectl_ok(&["delete", "pods", "--all", "--timeout=60s"]);
}

/// `Variable Expansion should fail substituting values in a volume subpath with backticks`,
/// `… with absolute path`, and `should verify that a failing subpath expansion can be
/// modified during the lifecycle of a container`: the container waits in
/// `CreateContainerConfigError` with kubelet's message, and starts once the annotation its
/// `subPathExpr` needs exists; the subpath then shows what is written through the volume.
#[test]
fn subpath_expansion_failures_read_as_the_kubelets() {
    let pp = Peapod::start();
    let volume = "  volumes:\n  - {name: workdir1, emptyDir: {}}\n";
    let mount = |value: &str| {
        format!(
            "    command: [sh, -c, 'true']\n    env:\n    - {{name: POD_NAME, value: '{value}'}}\n    volumeMounts:\n    - {{name: workdir1, mountPath: /logscontainer, subPathExpr: '$(POD_NAME)'}}\n"
        )
    };
    let mut manifest = pod("backsteps", volume, &mount(".."));
    manifest += &pod("absolute", volume, &mount("/tmp"));
    manifest += &pod(
        "annotated",
        volume,
        r#"    command: [sh, -c, 'tail -f /dev/null']
    env:
    - {name: POD_NAME, value: foo}
    - name: ANNOTATION
      valueFrom: {fieldRef: {apiVersion: v1, fieldPath: "metadata.annotations['mysubpath']"}}
    volumeMounts:
    - {name: workdir1, mountPath: /subpath_mount, subPathExpr: '$(ANNOTATION)/$(POD_NAME)'}
    - {name: workdir1, mountPath: /volume_mount}
"#,
    );
    pp.apply(&manifest);
    for (name, message) in [
        (
            "backsteps",
            "unable to provision SubPath `..`: must not contain '..'",
        ),
        (
            "absolute",
            "error SubPath `/tmp` must not be an absolute path",
        ),
        ("annotated", "missing value for ANNOTATION"),
    ] {
        let got = wait_until(&format!("{name}'s config error"), T, || {
            waiting_message(&pp, name)
        });
        assert_eq!(got, message, "{name}");
    }
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector=involvedObject.name=absolute,reason=Failed",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("Error: error SubPath `/tmp` must not be an absolute path"),
        "{events}"
    );

    pp.kubectl_ok(&["annotate", "pod", "annotated", "mysubpath=mypath"]);
    pp.wait_pod_phase("annotated", "Running", T);
    pp.kubectl_ok(&[
        "exec",
        "annotated",
        "--",
        "sh",
        "-c",
        "touch /volume_mount/mypath/foo/test.log && test -f /subpath_mount/test.log",
    ]);
    pp.kubectl_ok(&["delete", "pods", "--all", "--timeout=60s"]);
}

/// `PodOSRejection [NodeConformance] Kubelet should reject pod when the node OS doesn't
/// match pod's OS`: a pod bound to this Linux node with `os.name: windows` ends `Failed`
/// with `PodOSNotSupported`; one labelled `kubernetes.io/os: windows` with
/// `PodOSSelectorNodeLabelDoesNotMatch` (the kubelet reads the pod's label).
#[test]
fn pods_for_another_os_are_rejected_by_the_kubelet() {
    let pp = Peapod::start();
    let node = &pp.node_name;
    let mut manifest = pod(
        "wrong-pod-os",
        &format!("  os: {{name: windows}}\n  nodeName: {node}\n"),
        "    command: [sleep, '3600']\n",
    );
    manifest += &pod(
        "wrong-os-label",
        &format!("  nodeName: {node}\n"),
        "    command: [sleep, '3600']\n",
    )
    .replace(
        "  name: wrong-os-label\n",
        "  name: wrong-os-label\n  labels: {kubernetes.io/os: windows}\n",
    );
    manifest += &pod(
        "linux",
        &format!("  os: {{name: linux}}\n  nodeName: {node}\n"),
        "    command: [sleep, '3600']\n",
    );
    pp.apply(&manifest);
    pp.wait_pod_phase("wrong-pod-os", "Failed", T);
    pp.wait_pod_phase("wrong-os-label", "Failed", T);
    let status = |p: &str| pp.jsonpath(&format!("pod/{p}"), "{.status.reason}|{.status.message}");
    assert_eq!(
        status("wrong-pod-os").as_deref(),
        Some("PodOSNotSupported|Pod was rejected: Failed to admit pod as the OS field doesn't match node OS")
    );
    assert_eq!(
        status("wrong-os-label").as_deref(),
        Some("PodOSSelectorNodeLabelDoesNotMatch|Pod was rejected: Failed to admit pod as the `kubernetes.io/os` label doesn't match node label")
    );
    // Nothing of theirs ran.
    assert_eq!(
        pp.jsonpath("pod/wrong-pod-os", "{.status.containerStatuses}")
            .as_deref(),
        Some("")
    );
    wait_until("the rejection event", T, || {
        pp.kubectl_ok(&[
            "get",
            "events",
            "--field-selector=involvedObject.name=wrong-pod-os,type=Warning",
            "-o",
            "jsonpath={.items[*].reason}",
        ])
        .contains("PodOSNotSupported")
        .then_some(())
    });
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/linux",
        "--timeout=90s",
    ]);
    pp.kubectl_ok(&["delete", "pods", "--all", "--timeout=60s"]);
}

/// `Pods should patch a pod status` and `should run through the lifecycle of Pods and
/// PodStatus` (and the container status's `volumeMounts`): a merge patch of `pods/status` sets the status's message and reason and, as
/// upstream's pod status strategy allows, the annotation sent with it; a status replaced
/// with Ready and ContainersReady False comes back so; the spec never changes there.
#[test]
fn pod_status_patches_and_replacements() {
    let pp = Peapod::start();
    pp.apply(
        &pod("status", "", "    command: [sleep, '3600']\n")
            .replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/status",
        "--timeout=90s",
    ]);
    // The container's status lists its mounts, as v1.33 kubelets do (RecursiveReadOnlyMounts).
    assert_eq!(
        pp.jsonpath(
            "pod/status",
            "{.status.containerStatuses[0].volumeMounts[0].mountPath} {.status.containerStatuses[0].volumeMounts[0].readOnly} {.status.containerStatuses[0].volumeMounts[0].recursiveReadOnly}"
        )
        .as_deref(),
        Some("/var/run/secrets/kubernetes.io/serviceaccount true Disabled")
    );
    let patched = pp.kubectl_ok(&[
        "patch",
        "pod",
        "status",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"patchedstatus":"true"}},"spec":{"activeDeadlineSeconds":5},"status":{"message":"Patched by e2e test","reason":"E2E"}}"#,
        "-o",
        "jsonpath={.status.message}|{.status.reason}|{.metadata.annotations.patchedstatus}|{.spec.activeDeadlineSeconds}",
    ]);
    assert_eq!(patched, "Patched by e2e test|E2E|true|");

    let current = pp.kubectl_ok(&["get", "pod", "status", "--subresource=status", "-o", "json"]);
    let mut obj: serde_json::Value = serde_json::from_str(&current).expect("pod json");
    let mut flipped = 0;
    for c in obj["status"]["conditions"]
        .as_array_mut()
        .expect("conditions")
    {
        if (c["type"] == "Ready" || c["type"] == "ContainersReady") && c["status"] == "True" {
            c["status"] = "False".into();
            flipped += 1;
        }
    }
    assert_eq!(flipped, 2, "{current}");
    let replaced = pp.kubectl_stdin(
        &[
            "replace",
            "--subresource=status",
            "-f",
            "-",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}{.status.conditions[?(@.type==\"ContainersReady\")].status}",
        ],
        &obj.to_string(),
    );
    assert_eq!(replaced, "FalseFalse");
    pp.kubectl_ok(&["delete", "pod", "status", "--timeout=60s"]);
}

/// `Container Lifecycle Hook when create a pod with lifecycle hook should execute poststart
/// http hook properly` and `… prestop http hook properly`: the hooks GET the handler pod's
/// address (`httpGet.host`); busybox's httpd answers 404 where agnhost answered 200, and the
/// hooks still ran, as kubelet fails an HTTP hook only when the request cannot be made.
#[test]
fn http_hooks_reach_another_pod_whatever_it_answers() {
    let pp = Peapod::start();
    pp.apply(&pod(
        "handler",
        "",
        "    command: [sh, -c, 'mkdir -p /www && httpd -f -vv -p 8080 -h /www']
",
    ));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/handler",
        "--timeout=90s",
    ]);
    let target = pp
        .jsonpath("pod/handler", "{.status.podIP}")
        .unwrap_or_default();
    pp.apply(
        &pod(
            "hooked",
            "",
            &format!(
                "    command: [sleep, '3600']
    lifecycle:
      postStart: {{httpGet: {{path: '/echo?msg=poststart', host: '{target}', port: 8080}}}}
      preStop: {{httpGet: {{path: '/echo?msg=prestop', host: '{target}', port: 8080}}}}
"
            ),
        )
        .replace(
            "terminationGracePeriodSeconds: 1",
            "terminationGracePeriodSeconds: 15",
        )
        .replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/hooked",
        "--timeout=90s",
    ]);
    let hooked_ip = pp
        .jsonpath("pod/hooked", "{.status.podIP}")
        .unwrap_or_default();
    // httpd logs each request's client and path, and what it answered.
    let requests = |pp: &Peapod| {
        pp.kubectl_ok(&["logs", "handler"])
            .lines()
            .filter(|l| l.contains(&format!("{hooked_ip}]:")) && l.ends_with("url:/echo"))
            .count()
    };
    wait_until("the postStart hook's GET", T, || {
        (requests(&pp) == 1).then_some(())
    });
    pp.kubectl_ok(&["delete", "pod", "hooked", "--timeout=60s"]);
    wait_until("the preStop hook's GET", T, || {
        (requests(&pp) == 2).then_some(())
    });
    let events = pp.kubectl_ok(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    assert!(!events.contains("FailedPostStartHook"), "{events}");
    assert!(!events.contains("FailedPreStopHook"), "{events}");
    pp.kubectl_ok(&["delete", "pod", "handler", "--timeout=60s"]);
}

/// `NodeLease the kubelet should create and update a lease in the kube-node-lease
/// namespace`, `… should have OwnerReferences set` and `the kubelet should report node
/// status infrequently`: the Lease names the node as holder and owner and is renewed, while
/// an unchanged node status is not posted again (its Ready heartbeat stays) across renewals.
#[test]
fn the_lease_is_renewed_and_an_unchanged_node_status_not_reposted() {
    let pp = Peapod::start();
    let node = pp.node_name.clone();
    let lease = format!("lease/{node}");
    let lease_fields = |path: &str| {
        pp.kubectl_ok(&[
            "get",
            "-n",
            "kube-node-lease",
            &lease,
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(
        lease_fields("{.spec.holderIdentity} {.spec.leaseDurationSeconds} {.metadata.ownerReferences[*].kind} {.metadata.ownerReferences[*].apiVersion} {.metadata.ownerReferences[*].name}"),
        format!("{node} 40 Node v1 {node}")
    );
    let heartbeat = || {
        pp.jsonpath(
            &format!("node/{node}"),
            "{.status.conditions[?(@.type==\"Ready\")].lastHeartbeatTime}",
        )
        .unwrap_or_default()
    };
    let before = heartbeat();
    let mut renewals = vec![lease_fields("{.spec.renewTime}")];
    wait_until("three lease renewals", T, || {
        let now = lease_fields("{.spec.renewTime}");
        if renewals.last() != Some(&now) {
            renewals.push(now);
        }
        (renewals.len() > 3).then_some(())
    });
    assert_eq!(heartbeat(), before, "renewals: {renewals:?}");
    assert_eq!(
        pp.jsonpath(
            &format!("node/{node}"),
            "{.status.conditions[?(@.type==\"Ready\")].status}"
        )
        .as_deref(),
        Some("True")
    );
}

/// The KubeletConfiguration's `nodeLeaseDurationSeconds`, `nodeStatusUpdateFrequency` and
/// `nodeStatusReportFrequency`: the Lease carries the configured duration and is renewed every
/// quarter of it, and an unchanged node status is posted again once per report period (its
/// Ready heartbeat moves), where the defaults above keep it for five minutes.
#[test]
fn node_status_and_lease_periods_follow_the_kubelet_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubelet.yaml");
    common::write_kubelet_config(
        &config,
        "nodeStatusUpdateFrequency: 1s\nnodeStatusReportFrequency: 3s\nnodeLeaseDurationSeconds: 8\n",
    );
    let pp = Peapod::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    let node = pp.node_name.clone();
    let lease = |path: &str| {
        pp.kubectl_ok(&[
            "get",
            "-n",
            "kube-node-lease",
            &format!("lease/{node}"),
            "-o",
            &format!("jsonpath={path}"),
        ])
    };
    assert_eq!(lease("{.spec.leaseDurationSeconds}"), "8");
    let heartbeat = || {
        pp.jsonpath(
            &format!("node/{node}"),
            "{.status.conditions[?(@.type==\"Ready\")].lastHeartbeatTime}",
        )
        .unwrap_or_default()
    };
    let mut renewals = vec![lease("{.spec.renewTime}")];
    let mut heartbeats = vec![heartbeat()];
    wait_until("two lease renewals and two status reports", T, || {
        let (r, h) = (lease("{.spec.renewTime}"), heartbeat());
        if renewals.last() != Some(&r) {
            renewals.push(r);
        }
        if heartbeats.last() != Some(&h) {
            heartbeats.push(h);
        }
        (renewals.len() > 2 && heartbeats.len() > 2).then_some(())
    });
}

/// `Probing container should be ready immediately after startupProbe succeeds`: the
/// readiness probe runs as soon as the startup probe succeeded, not at its next period (here
/// five minutes away, so only that trigger can make the pod Ready in time).
#[test]
fn readiness_is_probed_as_soon_as_the_startup_probe_succeeds() {
    let pp = Peapod::start();
    pp.apply(
        &pod(
            "startup",
            "",
            r#"    command: [/bin/sh, -c, 'echo ok >/tmp/health; sleep 5; echo ok >/tmp/startup; sleep 600']
    readinessProbe: {exec: {command: [/bin/cat, /tmp/health]}, periodSeconds: 300}
    startupProbe: {exec: {command: [/bin/cat, /tmp/startup]}, periodSeconds: 2, failureThreshold: 120}
"#,
        )
        .replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/startup",
        "--timeout=90s",
    ]);
    assert_eq!(
        pp.jsonpath(
            "pod/startup",
            "{.status.containerStatuses[0].started} {.status.containerStatuses[0].restartCount}"
        )
        .as_deref(),
        Some("true 0")
    );
    pp.kubectl_ok(&["delete", "pod", "startup", "--timeout=60s"]);
}

/// `Pods should have their auto-restart back-off timer reset on image update` (shortened):
/// a container crash-looping into a 40 s back-off gets a new image reference (the same
/// busybox by its short name) and is restarted at once; its next crash backs off 10 s, not
/// 80 s, as kubelet keys the back-off by the container's hash.
#[test]
fn a_new_image_starts_the_restart_back_off_over() {
    let pp = Peapod::start();
    pp.apply(
        &pod(
            "crash",
            "",
            "    command: [sh, -c, 'sleep 1; exit 1']
",
        )
        .replace("restartPolicy: Never", "restartPolicy: Always"),
    );
    let waiting = || {
        pp.jsonpath(
            "pod/crash",
            "{.status.containerStatuses[0].state.waiting.message}",
        )
        .unwrap_or_default()
    };
    wait_until("a 40 s back-off", Duration::from_secs(180), || {
        waiting().starts_with("back-off 40s").then_some(())
    });
    pp.kubectl_ok(&["set", "image", "pod/crash", "c=busybox:latest"]);
    let message = wait_until("the next back-off", Duration::from_secs(120), || {
        let m = waiting();
        (m.starts_with("back-off") && !m.starts_with("back-off 40s")).then_some(m)
    });
    assert!(
        message.starts_with("back-off 10s restarting failed container=c pod=crash_default("),
        "{message}"
    );
    assert_eq!(
        pp.jsonpath("pod/crash", "{.status.containerStatuses[0].image}")
            .as_deref(),
        Some("busybox:latest")
    );
    pp.kubectl_ok(&["delete", "pod", "crash", "--timeout=60s"]);
}

/// The node conformance tests peapod already passed when this sweep ran them, kept as one
/// regression test (one pod each, all at once): `Variable Expansion` (env composition,
/// command and args substitution, a subPathExpr), `Downward API` (name, namespace, IPs, uid,
/// limits and requests, defaults from allocatable, host network), `Container Runtime … should
/// run with the expected status` (restart policies), `Containers` (args over the image's
/// command), `Kubelet` (read-only root, terminated reason, `--since-time`), `Security Context`
/// (uid 65534, unprivileged, no privilege escalation, runAsNonRoot), `KubeletManagedEtcHosts`
/// and `InitContainer`.
#[test]
fn conformance_behaviours_peapod_already_had() {
    let pp = Peapod::start();
    let field = |n: &str, p: &str| {
        format!("    - name: {n}\n      valueFrom: {{fieldRef: {{fieldPath: {p}}}}}\n")
    };
    let resource = |n: &str, r: &str| {
        format!("    - name: {n}\n      valueFrom: {{resourceFieldRef: {{resource: {r}}}}}\n")
    };
    let counter = "  volumes:\n  - {name: rc, emptyDir: {medium: Memory}}\n";
    let crash_then_run = "    command: [sh, -c, 'f=/rc/count; echo x >> $f; n=$(wc -l < $f); if [ $n -eq 1 ]; then exit 1; fi; if [ $n -eq 2 ]; then exit 0; fi; while true; do sleep 1; done']\n    volumeMounts: [{name: rc, mountPath: /rc}]\n";
    let init = |first: &str, second: &str| {
        format!("  initContainers:\n  - {{name: init1, image: docker.io/library/busybox:latest, imagePullPolicy: IfNotPresent, command: [{first}]}}\n  - {{name: init2, image: docker.io/library/busybox:latest, imagePullPolicy: IfNotPresent, command: [{second}]}}\n")
    };
    let mut m = String::new();
    m += &pod(
        "compose",
        "",
        "    command: [sh, -c, 'echo $FOOBAR; TEST_VAR=wrong echo \"$(FOO)\"']\n    env:\n    - {name: FOO, value: foo-value}\n    - {name: BAR, value: bar-value}\n    - {name: FOOBAR, value: '$(FOO);;$(BAR)'}\n",
    );
    m += &pod(
        "args-subst",
        "",
        "    command: [sh, -c]\n    args: ['TEST_VAR=wrong echo \"$(TEST_VAR)\"']\n    env:\n    - {name: TEST_VAR, value: test-value}\n",
    );
    m += &pod(
        "subpath",
        "  volumes:\n  - {name: w, emptyDir: {}}\n",
        "    command: [sh, -c, 'test -d /all/subpath; echo $?']\n    env:\n    - {name: POD_NAME, value: subpath}\n    volumeMounts:\n    - {name: w, mountPath: /sub, subPathExpr: '$(POD_NAME)'}\n    - {name: w, mountPath: /all}\n",
    );
    m += &pod(
        "dapi",
        "",
        &format!(
            "    command: [sh, -c, 'echo $POD_NAME $POD_NAMESPACE $POD_IP $HOST_IP $POD_UID $CPU_LIMIT $MEMORY_LIMIT $CPU_REQUEST $MEMORY_REQUEST']\n    resources:\n      requests: {{cpu: 250m, memory: 32Mi}}\n      limits: {{cpu: 1250m, memory: 64Mi}}\n    env:\n{}{}{}{}{}{}{}{}{}",
            field("POD_NAME", "metadata.name"),
            field("POD_NAMESPACE", "metadata.namespace"),
            field("POD_IP", "status.podIP"),
            field("HOST_IP", "status.hostIP"),
            field("POD_UID", "metadata.uid"),
            resource("CPU_LIMIT", "limits.cpu"),
            resource("MEMORY_LIMIT", "limits.memory"),
            resource("CPU_REQUEST", "requests.cpu"),
            resource("MEMORY_REQUEST", "requests.memory"),
        ),
    );
    m += &pod(
        "dapi-default",
        "",
        &format!(
            "    command: [sh, -c, 'echo $CPU_LIMIT $MEMORY_LIMIT']\n    env:\n{}{}",
            resource("CPU_LIMIT", "limits.cpu"),
            resource("MEMORY_LIMIT", "limits.memory"),
        ),
    );
    m += &pod(
        "dapi-hostnet",
        "  hostNetwork: true\n",
        &format!(
            "    command: [sh, -c, '[ \"$HOST_IP\" = \"$POD_IP\" ] && echo OK']\n    env:\n{}{}",
            field("HOST_IP", "status.hostIP"),
            field("POD_IP", "status.podIP"),
        ),
    );
    m += &always(pod("rp-always", counter, crash_then_run));
    m += &pod("rp-onfailure", counter, crash_then_run)
        .replace("restartPolicy: Never", "restartPolicy: OnFailure");
    m += &pod("rp-never", counter, crash_then_run);
    m += &pod("args", "", "    args: [echo, override, arguments]\n");
    m += &always(pod(
        "read-only",
        "",
        "    command: [/bin/sh, -c, 'echo test > /file; sleep 240']\n    securityContext: {readOnlyRootFilesystem: true}\n",
    ));
    m += &pod("bin-false", "", "    command: [/bin/false]\n");
    m += &pod(
        "uid-65534",
        "",
        "    command: [sh, -c, 'test $(id -u) -eq 65534']\n    securityContext: {runAsUser: 65534}\n",
    );
    m += &pod(
        "unprivileged",
        "",
        "    command: [sh, -c, 'ip link add dummy0 type dummy || true']\n    securityContext: {privileged: false}\n",
    );
    m += &pod(
        "no-new-privs",
        "",
        "    command: [sh, -c, 'grep NoNewPrivs /proc/self/status; id -u']\n    securityContext: {allowPrivilegeEscalation: false, runAsUser: 1000}\n",
    );
    m += &pod(
        "non-root",
        "",
        "    command: [id, -u]\n    securityContext: {runAsNonRoot: true}\n",
    );
    m += &pod(
        "etc-hosts",
        "  volumes:\n  - {name: h, hostPath: {path: /etc/hosts, type: FileOrCreate}}\n",
        "    command: [sh, -c, 'head -1 /etc/hosts; cmp -s /etc/hosts /etc/hosts-original && echo host; true']\n    volumeMounts: [{name: h, mountPath: /etc/hosts-original}]\n  - name: own\n    image: docker.io/library/busybox:latest\n    imagePullPolicy: IfNotPresent\n    command: [sh, -c, 'cmp -s /etc/hosts /etc/hosts-original && echo host']\n    volumeMounts: [{name: h, mountPath: /etc/hosts-original}, {name: h, mountPath: /etc/hosts}]\n",
    );
    m += &pod(
        "init-ok",
        &init("/bin/true", "/bin/true"),
        "    command: [/bin/true]\n",
    );
    m += &always(pod(
        "init-fail-always",
        &init("/bin/false", "/bin/true"),
        "    command: [sleep, '3600']\n",
    ));
    m += &pod(
        "init-fail-never",
        &init("/bin/true", "/bin/false"),
        "    command: [/bin/true]\n",
    );
    pp.apply(&m);

    let get = |pod: &str, path: &str| pp.jsonpath(&format!("pod/{pod}"), path).unwrap_or_default();
    let logs = |pod: &str| pp.kubectl_ok(&["logs", pod, "--all-containers"]);
    for (name, phase) in [
        ("compose", "Succeeded"),
        ("args-subst", "Succeeded"),
        ("subpath", "Succeeded"),
        ("dapi", "Succeeded"),
        ("dapi-default", "Succeeded"),
        ("dapi-hostnet", "Succeeded"),
        ("rp-onfailure", "Succeeded"),
        ("rp-never", "Failed"),
        ("args", "Succeeded"),
        ("bin-false", "Failed"),
        ("uid-65534", "Succeeded"),
        ("unprivileged", "Succeeded"),
        ("no-new-privs", "Succeeded"),
        ("etc-hosts", "Succeeded"),
        ("init-ok", "Succeeded"),
        ("init-fail-never", "Failed"),
    ] {
        pp.wait_pod_phase(name, phase, T);
    }
    assert_eq!(logs("compose"), "foo-value;;bar-value\nfoo-value\n");
    assert_eq!(logs("args-subst"), "test-value\n");
    assert_eq!(logs("subpath"), "0\n");
    let ip = get("dapi", "{.status.podIP}");
    let host = get("dapi", "{.status.hostIP}");
    let uid = get("dapi", "{.metadata.uid}");
    assert_eq!(
        logs("dapi"),
        format!("dapi default {ip} {host} {uid} 2 67108864 1 33554432\n")
    );
    let node = format!("node/{}", pp.node_name);
    let alloc_cpu = pp
        .jsonpath(&node, "{.status.allocatable.cpu}")
        .unwrap_or_default();
    let alloc_memory_ki = pp
        .jsonpath(&node, "{.status.allocatable.memory}")
        .unwrap_or_default();
    let alloc_memory: u64 = alloc_memory_ki
        .trim_end_matches("Ki")
        .parse::<u64>()
        .map(|k| k * 1024)
        .unwrap_or_else(|_| panic!("allocatable memory {alloc_memory_ki}"));
    assert_eq!(
        logs("dapi-default"),
        format!("{alloc_cpu} {alloc_memory}\n")
    );
    assert_eq!(logs("dapi-hostnet"), "OK\n");
    for (name, restarts) in [("rp-onfailure", "1"), ("rp-never", "0")] {
        assert_eq!(
            get(name, "{.status.containerStatuses[0].restartCount}"),
            restarts,
            "{name}"
        );
    }
    wait_until("rp-always running after 2 restarts", T, || {
        (get("rp-always", "{.status.phase} {.status.containerStatuses[0].restartCount} {.status.containerStatuses[0].ready}")
            == "Running 2 true")
            .then_some(())
    });
    assert_eq!(logs("args"), "override arguments\n");
    wait_until("the read-only write failing", T, || {
        (logs("read-only") == "/bin/sh: can't create /file: Read-only file system\n").then_some(())
    });
    assert_eq!(
        get("bin-false", "{.status.containerStatuses[0].state.terminated.reason} {.status.containerStatuses[0].state.terminated.exitCode}"),
        "Error 1"
    );
    assert!(logs("unprivileged").contains("Operation not permitted"));
    assert_eq!(logs("no-new-privs"), "NoNewPrivs:\t1\n1000\n");
    let non_root = wait_until("runAsNonRoot refused", T, || {
        let m = get(
            "non-root",
            "{.status.containerStatuses[0].state.waiting.message}",
        );
        (!m.is_empty()).then_some(m)
    });
    assert!(
        non_root.starts_with(
            "container has runAsNonRoot and image will run as root (pod: \"non-root_default("
        ),
        "{non_root}"
    );
    assert_eq!(
        pp.kubectl_ok(&["logs", "etc-hosts", "-c", "c"]),
        "# Kubernetes-managed hosts file.\n"
    );
    assert_eq!(pp.kubectl_ok(&["logs", "etc-hosts", "-c", "own"]), "host\n");
    assert_eq!(
        get("init-ok", "{.status.initContainerStatuses[*].ready} {.status.conditions[?(@.type==\"Initialized\")].status}"),
        "true true True"
    );
    wait_until("init1 restarted", T, || {
        (get(
            "init-fail-always",
            "{.status.initContainerStatuses[0].restartCount}",
        )
        .parse::<u32>()
        .unwrap_or(0)
            >= 2)
            .then_some(())
    });
    let initialized = "{.status.phase} {.status.conditions[?(@.type==\"Initialized\")].reason}: {.status.conditions[?(@.type==\"Initialized\")].message} {.status.containerStatuses[0].state.waiting.reason}";
    assert_eq!(
        get("init-fail-always", initialized),
        "Pending ContainersNotInitialized: containers with incomplete status: [init1 init2] PodInitializing"
    );
    assert_eq!(
        get("init-fail-never", initialized),
        "Failed ContainersNotInitialized: containers with incomplete status: [init2] PodInitializing"
    );
    assert_eq!(
        pp.kubectl_ok(&["logs", "read-only", "--since-time=2020-01-01T00:00:00Z"]),
        "/bin/sh: can't create /file: Read-only file system\n"
    );
    pp.kubectl_ok(&["delete", "pods", "--all", "--timeout=90s"]);
}

/// The API parts of the suite, through kubectl: `ConfigMap`/`Secrets should fail to create
/// … with empty key`, `ConfigMap should run through a ConfigMap lifecycle`, `Secrets should
/// patch a secret`, `Pods should delete a collection of pods`, `PodTemplates should delete a
/// collection of pod templates`, `RuntimeClass should support RuntimeClasses API
/// operations` and `Lease lease API should be available` (a spec kept to the microsecond,
/// a delete by collection taking only the labelled one).
#[test]
fn api_operations_of_the_suite() {
    let pp = Peapod::start();
    let refused = |manifest: &str| {
        let out = pp
            .kubectl_cmd()
            .args(["create", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin
                    .take()
                    .expect("stdin")
                    .write_all(manifest.as_bytes())?;
                c.wait_with_output()
            })
            .expect("kubectl create");
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let key_rule = "data[]: Invalid value: \"\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')";
    for kind in ["ConfigMap", "Secret"] {
        let err = refused(&format!(
            "apiVersion: v1\nkind: {kind}\nmetadata: {{name: empty-key}}\ndata: {{'': dmFsdWUtMQo=}}\n"
        ));
        assert!(
            err.contains(&format!("The {kind} \"empty-key\" is invalid: {key_rule}")),
            "{err}"
        );
    }
    let delete_collection = |path: &str| {
        pp.kubectl_ok(&["delete", "--raw", path]);
    };

    pp.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, labels: {test-configmap-static: 'true'}}\ndata: {valueName: value}\n");
    pp.kubectl_ok(&[
        "patch",
        "configmap",
        "cm",
        "-p",
        r#"{"metadata":{"labels":{"test-configmap":"patched"}},"data":{"valueName":"value1"}}"#,
    ]);
    assert_eq!(
        pp.kubectl_ok(&[
            "get",
            "configmaps",
            "-A",
            "-l",
            "test-configmap=patched",
            "-o",
            "jsonpath={.items[*].data.valueName}"
        ]),
        "value1"
    );
    delete_collection(
        "/api/v1/namespaces/default/configmaps?labelSelector=test-configmap-static%3Dtrue",
    );
    assert_eq!(
        pp.kubectl_ok(&[
            "get",
            "configmaps",
            "-l",
            "test-configmap-static=true",
            "-o",
            "name"
        ]),
        ""
    );

    pp.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: s, labels: {testsecret-constant: 'true'}}\ntype: Opaque\ndata: {key: dmFsdWU=}\n");
    pp.kubectl_ok(&[
        "patch",
        "secret",
        "s",
        "-p",
        r#"{"metadata":{"labels":{"testsecret":"true"}},"data":{"key":"dmFsdWUx"}}"#,
    ]);
    assert_eq!(
        pp.jsonpath("secret/s", "{.data.key}").as_deref(),
        Some("dmFsdWUx")
    );
    delete_collection("/api/v1/namespaces/default/secrets?labelSelector=testsecret%3Dtrue");
    assert_eq!(
        pp.kubectl_ok(&[
            "get",
            "secrets",
            "-A",
            "-l",
            "testsecret-constant=true",
            "-o",
            "name"
        ]),
        ""
    );

    let mut pods = String::new();
    for n in ["test-pod-1", "test-pod-2", "test-pod-3"] {
        pods += &always(pod(n, "", "    command: [sleep, '3600']\n")).replace(
            &format!("  name: {n}\n"),
            &format!("  name: {n}\n  labels: {{type: Testing}}\n"),
        );
    }
    pp.apply(&pods);
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pods",
        "-l",
        "type=Testing",
        "--timeout=90s",
    ]);
    delete_collection(
        "/api/v1/namespaces/default/pods?labelSelector=type%3DTesting&gracePeriodSeconds=1",
    );
    wait_until("the pods gone", T, || {
        pp.kubectl_ok(&["get", "pods", "-l", "type=Testing", "-o", "name"])
            .is_empty()
            .then_some(())
    });

    let mut templates = String::new();
    for n in [
        "test-podtemplate-1",
        "test-podtemplate-2",
        "test-podtemplate-3",
    ] {
        templates += &format!("---\napiVersion: v1\nkind: PodTemplate\nmetadata: {{name: {n}, labels: {{podtemplate-set: 'true'}}}}\ntemplate:\n  spec:\n    containers: [{{name: token-test, image: docker.io/library/busybox:latest}}]\n");
    }
    pp.apply(&templates);
    pp.kubectl_ok(&[
        "annotate",
        "podtemplate",
        "test-podtemplate-1",
        "updated=true",
    ]);
    assert_eq!(
        pp.jsonpath(
            "podtemplate/test-podtemplate-1",
            "{.metadata.annotations.updated}"
        )
        .as_deref(),
        Some("true")
    );
    delete_collection(
        "/api/v1/namespaces/default/podtemplates?labelSelector=podtemplate-set%3Dtrue",
    );
    assert_eq!(pp.kubectl_ok(&["get", "podtemplates", "-o", "name"]), "");

    let class = |n: &str| {
        format!("---\napiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {{name: {n}, labels: {{test: conformance}}}}\nhandler: {n}-handler\n")
    };
    pp.apply(&(class("rc1") + &class("rc2") + &class("rc3")));
    let err = refused(&class("rc1"));
    assert!(
        err.contains("runtimeclasses.node.k8s.io \"rc1\" already exists"),
        "{err}"
    );
    pp.kubectl_ok(&[
        "patch",
        "runtimeclass",
        "rc1",
        "--type=merge",
        "-p",
        r#"{"metadata":{"annotations":{"patched":"true"}}}"#,
    ]);
    pp.kubectl_ok(&["delete", "runtimeclass", "rc1"]);
    assert_eq!(
        pp.kubectl_ok(&[
            "get",
            "runtimeclasses",
            "-l",
            "test=conformance",
            "-o",
            "name"
        ])
        .lines()
        .count(),
        2
    );
    delete_collection("/apis/node.k8s.io/v1/runtimeclasses?labelSelector=test%3Dconformance");
    assert_eq!(
        pp.kubectl_ok(&[
            "get",
            "runtimeclasses",
            "-l",
            "test=conformance",
            "-o",
            "name"
        ]),
        ""
    );

    let lease = |name: &str, labels: &str| {
        format!("---\napiVersion: coordination.k8s.io/v1\nkind: Lease\nmetadata: {{name: {name}, labels: {{{labels}}}}}\nspec: {{holderIdentity: holder, leaseDurationSeconds: 30, acquireTime: '0001-01-01T00:00:02.000000Z', renewTime: '0001-01-01T00:00:05.000000Z', leaseTransitions: 0}}\n")
    };
    pp.apply(&(lease("lease", "") + &lease("lease2", "deletecollection: 'true'")));
    assert_eq!(
        pp.jsonpath("lease/lease", "{.spec}").as_deref(),
        Some(
            r#"{"acquireTime":"0001-01-01T00:00:02.000000Z","holderIdentity":"holder","leaseDurationSeconds":30,"leaseTransitions":0,"renewTime":"0001-01-01T00:00:05.000000Z"}"#
        )
    );
    pp.kubectl_ok(&[
        "patch",
        "lease",
        "lease",
        "-p",
        r#"{"spec":{"holderIdentity":"holder3","leaseDurationSeconds":60,"leaseTransitions":2}}"#,
    ]);
    assert_eq!(
        pp.jsonpath(
            "lease/lease",
            "{.spec.holderIdentity} {.spec.leaseDurationSeconds} {.spec.leaseTransitions}"
        )
        .as_deref(),
        Some("holder3 60 2")
    );
    delete_collection("/apis/coordination.k8s.io/v1/namespaces/default/leases?labelSelector=deletecollection%3Dtrue");
    assert_eq!(
        pp.kubectl_ok(&["get", "leases", "-o", "name"]),
        "lease.coordination.k8s.io/lease\n"
    );
}

/// `kubectl proxy` on a free local port, killed when dropped: a plain-HTTP way to the API
/// server for the raw WebSocket clients below.
struct KubectlProxy {
    child: Child,
    addr: String,
}

impl KubectlProxy {
    fn start(pp: &Peapod) -> Self {
        let mut child = pp
            .kubectl_cmd()
            // The default refuses exec; the conformance test calls it directly.
            .args(["proxy", "--port=0", "--reject-paths=^/nothing$"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl proxy");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("proxy stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("proxy banner");
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .unwrap_or_default()
            .to_string();
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        KubectlProxy { child, addr }
    }

    /// The messages of a WebSocket GET of `path` with `protocol`, until the server closes.
    fn websocket(&self, path: &str, protocol: &str) -> Vec<Vec<u8>> {
        use tungstenite::client::IntoClientRequest;
        use tungstenite::Message;
        let mut req = format!("ws://{}{path}", self.addr)
            .into_client_request()
            .expect("request");
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            protocol.parse().expect("protocol header"),
        );
        let stream = TcpStream::connect(&self.addr).expect("connect to kubectl proxy");
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        let (mut socket, resp) = tungstenite::client::client(req, stream).expect("handshake");
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
        let mut messages = Vec::new();
        loop {
            match socket.read() {
                Ok(Message::Binary(b)) => messages.push(b.to_vec()),
                Ok(Message::Text(t)) => messages.push(t.as_bytes().to_vec()),
                Ok(Message::Close(_)) => {}
                Ok(_) => {}
                Err(tungstenite::Error::ConnectionClosed) => break,
                Err(e) => panic!("reading {path}: {e}"),
            }
        }
        messages
    }
}

impl Drop for KubectlProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `Pods should support remote command execution over websockets` (the first
/// `channel.k8s.io` protocol: stdout on channel 1, nothing on the error channel for a command
/// that succeeded) and `should support retrieving logs from the container over websockets`
/// (`binary.k8s.io`: the log's bytes, then a close).
#[test]
fn exec_and_logs_over_raw_websockets() {
    let pp = Peapod::start();
    pp.apply(&pod(
        "ws",
        "",
        "    command: [/bin/sh, -c, 'echo container is alive; sleep 10000']\n",
    ));
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/ws", "--timeout=90s"]);
    let proxy = KubectlProxy::start(&pp);

    let exec = proxy.websocket(
        "/api/v1/namespaces/default/pods/ws/exec?stderr=1&stdout=1&container=c&command=echo&command=remote+execution+test",
        "channel.k8s.io",
    );
    let mut stdout = Vec::new();
    for msg in &exec {
        match msg.split_first() {
            Some((1, data)) => stdout.extend_from_slice(data),
            Some((_, [])) | None => {}
            Some((ch, data)) => panic!("channel {ch} said {:?}", String::from_utf8_lossy(data)),
        }
    }
    assert_eq!(String::from_utf8_lossy(&stdout), "remote execution test\n");

    // A failure is told as text on the error channel.
    let failed = proxy.websocket(
        "/api/v1/namespaces/default/pods/ws/exec?stdout=1&container=c&command=false",
        "channel.k8s.io",
    );
    let errors: Vec<String> = failed
        .iter()
        .filter_map(|m| m.split_first())
        .filter(|(ch, data)| **ch == 3 && !data.is_empty())
        .map(|(_, data)| String::from_utf8_lossy(data).into_owned())
        .collect();
    assert_eq!(
        errors,
        ["command terminated with non-zero exit code: error executing command, exit code 1"]
    );

    let logs = proxy.websocket(
        "/api/v1/namespaces/default/pods/ws/log?container=c",
        "binary.k8s.io",
    );
    let text: Vec<u8> = logs.concat();
    assert_eq!(String::from_utf8_lossy(&text), "container is alive\n");
    drop(proxy);
    pp.kubectl_ok(&["delete", "pod", "ws", "--timeout=60s"]);
}
