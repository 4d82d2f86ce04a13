//! Pod behaviours checked against what a v1.33 kubelet and kube-apiserver do, with manifests
//! as Kubernetes' documentation and e2e tests write them: downward API resource fields
//! without a divisor.

mod common;

use std::time::Duration;

use common::Peapod;

/// A node's allocatable quantity (`8012345Ki`, `2`) in whole units.
fn units(q: &str) -> u64 {
    match q.strip_suffix("Ki") {
        Some(ki) => ki.parse::<u64>().expect("Ki quantity") * 1024,
        None => q.parse().expect("plain quantity"),
    }
}

const RESOURCE_FIELDS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: resfields
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c"]
    args:
    - |
      echo "cpu_limit=$CPU_LIMIT cpu_request=$CPU_REQUEST cpu_request_m=$CPU_REQUEST_M mem_limit=$MEM_LIMIT mem_request_mi=$MEM_REQUEST_MI"
      echo "files cpu_limit=$(cat /etc/podinfo/cpu_limit) mem_request=$(cat /etc/podinfo/mem_request)"
    resources:
      limits: {cpu: 1250m, memory: 64Mi}
      requests: {cpu: 250m, memory: 32Mi}
    env:
    - name: CPU_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    - name: CPU_REQUEST
      valueFrom: {resourceFieldRef: {resource: requests.cpu}}
    - name: CPU_REQUEST_M
      valueFrom: {resourceFieldRef: {resource: requests.cpu, divisor: 1m}}
    - name: MEM_LIMIT
      valueFrom: {resourceFieldRef: {resource: limits.memory}}
    - name: MEM_REQUEST_MI
      valueFrom: {resourceFieldRef: {resource: requests.memory, divisor: 1Mi}}
    volumeMounts:
    - {name: podinfo, mountPath: /etc/podinfo}
  - name: unlimited
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo cpu=$CPU mem=$MEM"]
    env:
    - name: CPU
      valueFrom: {resourceFieldRef: {resource: limits.cpu}}
    - name: MEM
      valueFrom: {resourceFieldRef: {resource: limits.memory}}
  volumes:
  - name: podinfo
    downwardAPI:
      items:
      - path: cpu_limit
        resourceFieldRef: {containerName: main, resource: limits.cpu}
      - path: mem_request
        resourceFieldRef: {containerName: main, resource: requests.memory}
"#;

/// kube-apiserver stores an unset divisor as "0", the kubelet reads it as 1 and rounds up;
/// a container without limits sees the node's allocatable.
#[test]
fn resource_fields_without_a_divisor_round_up_and_default_to_allocatable() {
    let pp = Peapod::start();
    pp.apply(RESOURCE_FIELDS);
    assert_eq!(
        pp.jsonpath(
            "pod/resfields",
            "{.spec.containers[0].env[0].valueFrom.resourceFieldRef.divisor} {.spec.volumes[0].downwardAPI.items[0].resourceFieldRef.divisor}"
        )
        .as_deref(),
        Some("0 0")
    );
    pp.wait_pod_phase("resfields", "Succeeded", Duration::from_secs(90));
    assert_eq!(
        pp.kubectl_ok(&["logs", "resfields", "-c", "main"]),
        format!(
            "cpu_limit=2 cpu_request=1 cpu_request_m=250 mem_limit={} mem_request_mi=32\nfiles cpu_limit=2 mem_request={}\n",
            64 << 20,
            32 << 20
        )
    );
    let node = format!("node/{}", pp.node_name);
    let cpu = pp
        .jsonpath(&node, "{.status.allocatable.cpu}")
        .expect("allocatable cpu");
    let memory = pp
        .jsonpath(&node, "{.status.allocatable.memory}")
        .expect("allocatable memory");
    assert_eq!(
        pp.kubectl_ok(&["logs", "resfields", "-c", "unlimited"]),
        format!("cpu={} mem={}\n", units(&cpu), units(&memory))
    );
    pp.kubectl_ok(&["delete", "pod", "resfields", "--timeout=60s"]);
}

const ENV_FROM: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: dashes
data:
  data-1: value-1
  data.2: value-2
  DATA_3: value-3
---
apiVersion: v1
kind: Secret
metadata:
  name: creds
stringData:
  user-name: admin
---
apiVersion: v1
kind: Pod
metadata:
  name: envfrom
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    # No shell: ash leaves names like data-1 out of the environment it passes on.
    command: ["env"]
    envFrom:
    - configMapRef: {name: dashes}
    - prefix: p-
      configMapRef: {name: dashes}
    - prefix: s.
      secretRef: {name: creds}
"#;

/// `envFrom` keys the shell cannot name (`data-1`, `data.2`) still reach the process's
/// environment, with and without a prefix, as v1.33's relaxed names allow.
#[test]
fn env_from_keys_with_dashes_and_dots_arrive_with_and_without_prefix() {
    let pp = Peapod::start();
    let bad = pp.kubectl(&[
        "run",
        "badprefix",
        "--image=docker.io/library/busybox:latest",
        "--overrides",
        r#"{"spec":{"containers":[{"name":"badprefix","image":"docker.io/library/busybox:latest","envFrom":[{"prefix":"A=","configMapRef":{"name":"dashes"}}]}]}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success()
            && stderr.contains("spec.containers[0].envFrom[0].prefix: Invalid value: \"A=\""),
        "{stderr}"
    );
    pp.apply(ENV_FROM);
    pp.wait_pod_phase("envfrom", "Succeeded", Duration::from_secs(90));
    let logs = pp.kubectl_ok(&["logs", "envfrom"]);
    let mut ours: Vec<&str> = logs
        .lines()
        .filter(|l| {
            ["data", "DATA", "p-", "s."]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .collect();
    ours.sort_unstable();
    assert_eq!(
        ours,
        [
            "DATA_3=value-3",
            "data-1=value-1",
            "data.2=value-2",
            "p-DATA_3=value-3",
            "p-data-1=value-1",
            "p-data.2=value-2",
            "s.user-name=admin"
        ]
    );
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=envfrom",
        "-o",
        "jsonpath={.items[*].reason}",
    ]);
    assert!(
        !events.contains("InvalidEnvironmentVariableNames"),
        "{events}"
    );
    pp.kubectl_ok(&["delete", "pod", "envfrom", "--timeout=60s"]);
}

const SERVICES: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: team
---
apiVersion: v1
kind: Service
metadata:
  name: my-db
  namespace: team
spec:
  selector: {app: db}
  ports:
  - {name: sql, port: 5432, targetPort: 5432}
  - {name: metrics, port: 9187, protocol: UDP}
---
apiVersion: v1
kind: Service
metadata:
  name: headless
  namespace: team
spec:
  clusterIP: None
  selector: {app: db}
  ports:
  - {port: 80}
---
apiVersion: v1
kind: Service
metadata:
  name: elsewhere
  namespace: default
spec:
  ports:
  - {port: 80}
"#;

const SERVICE_PODS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: linked
  namespace: team
spec:
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "env | grep -E '^(MY_DB|HEADLESS|ELSEWHERE|KUBERNETES)_' | sort"]
    env:
    - {name: MY_DB_SERVICE_PORT_SQL, value: mine}
---
apiVersion: v1
kind: Pod
metadata:
  name: unlinked
  namespace: team
spec:
  restartPolicy: Never
  enableServiceLinks: false
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "env | grep -E '^(MY_DB|KUBERNETES)_' | sort"]
"#;

/// Docker-link style Service variables for every Service with a ClusterIP in the pod's
/// namespace (when `enableServiceLinks`, the default), the `kubernetes` Service's always;
/// the container's own env wins.
#[test]
fn service_environment_variables_as_the_kubelet_writes_them() {
    let pp = Peapod::start();
    pp.apply(SERVICES);
    let ip = |ns: &str, name: &str| {
        pp.kubectl_ok(&[
            "get",
            "service",
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
    };
    let db = ip("team", "my-db");
    let api = ip("default", "kubernetes");
    let api_port = pp.kubectl_ok(&[
        "get",
        "service",
        "kubernetes",
        "-o",
        "jsonpath={.spec.ports[0].port}",
    ]);
    pp.apply(SERVICE_PODS);
    for pod in ["linked", "unlinked"] {
        common::wait_until(&format!("{pod} Succeeded"), Duration::from_secs(90), || {
            (pp.kubectl_ok(&[
                "get",
                "pod",
                "-n",
                "team",
                pod,
                "-o",
                "jsonpath={.status.phase}",
            ]) == "Succeeded")
                .then_some(())
        });
    }
    let kubernetes = [
        format!("KUBERNETES_PORT=tcp://{api}:{api_port}"),
        format!("KUBERNETES_PORT_{api_port}_TCP=tcp://{api}:{api_port}"),
        format!("KUBERNETES_PORT_{api_port}_TCP_ADDR={api}"),
        format!("KUBERNETES_PORT_{api_port}_TCP_PORT={api_port}"),
        format!("KUBERNETES_PORT_{api_port}_TCP_PROTO=tcp"),
        format!("KUBERNETES_SERVICE_HOST={api}"),
        format!("KUBERNETES_SERVICE_PORT={api_port}"),
        format!("KUBERNETES_SERVICE_PORT_HTTPS={api_port}"),
    ];
    let mut linked: Vec<String> = [
        format!("MY_DB_PORT=tcp://{db}:5432"),
        format!("MY_DB_PORT_5432_TCP=tcp://{db}:5432"),
        format!("MY_DB_PORT_5432_TCP_ADDR={db}"),
        "MY_DB_PORT_5432_TCP_PORT=5432".to_string(),
        "MY_DB_PORT_5432_TCP_PROTO=tcp".to_string(),
        format!("MY_DB_PORT_9187_UDP=udp://{db}:9187"),
        format!("MY_DB_PORT_9187_UDP_ADDR={db}"),
        "MY_DB_PORT_9187_UDP_PORT=9187".to_string(),
        "MY_DB_PORT_9187_UDP_PROTO=udp".to_string(),
        format!("MY_DB_SERVICE_HOST={db}"),
        "MY_DB_SERVICE_PORT=5432".to_string(),
        "MY_DB_SERVICE_PORT_METRICS=9187".to_string(),
        "MY_DB_SERVICE_PORT_SQL=mine".to_string(),
    ]
    .into_iter()
    .chain(kubernetes.iter().cloned())
    .collect();
    linked.sort();
    let lines = |pod: &str| -> Vec<String> {
        pp.kubectl_ok(&["logs", "-n", "team", pod])
            .lines()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(lines("linked"), linked);
    assert_eq!(lines("unlinked"), kubernetes.to_vec());
    pp.kubectl_ok(&["delete", "namespace", "team", "--timeout=90s"]);
}

const HOST_ALIASES: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: aliases
spec:
  restartPolicy: Never
  hostAliases:
  - ip: "127.0.0.1"
    hostnames: ["foo.local", "bar.local"]
  - ip: "10.1.2.3"
    hostnames: ["foo.remote", "bar.remote"]
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["cat", "/etc/hosts"]
---
apiVersion: v1
kind: Pod
metadata:
  name: aliases-hostnet
spec:
  restartPolicy: Never
  hostNetwork: true
  hostAliases:
  - ip: "10.1.2.3"
    hostnames: ["foo.remote"]
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["cat", "/etc/hosts"]
"#;

const ALIAS_LINES: &str = "\n# Entries added by HostAliases.\n";

/// `hostAliases` end the pod's managed `/etc/hosts` under the kubelet's header; a
/// hostNetwork pod's file is the node's own plus the aliases; bad entries are refused.
#[test]
fn host_aliases_in_etc_hosts_as_the_kubelet_writes_them() {
    let pp = Peapod::start();
    let bad = pp.kubectl_stdin(
        &["apply", "--dry-run=server", "-f", "-", "-o", "name"],
        "apiVersion: v1\nkind: Pod\nmetadata: {name: ok}\nspec:\n  hostAliases: [{ip: \"127.0.0.1\", hostnames: [a.local]}]\n  containers: [{name: c, image: busybox}]\n",
    );
    assert_eq!(bad, "pod/ok\n");
    let refused = pp
        .kubectl_cmd()
        .args([
            "run",
            "badalias",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"hostAliases":[{"ip":"10.1.2","hostnames":["x"]}]}}"#,
        ])
        .output()
        .expect("kubectl");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success()
            && stderr.contains(
                "spec.hostAliases[0].ip: Invalid value: \"10.1.2\": must be a valid IP address"
            ),
        "{stderr}"
    );
    pp.apply(HOST_ALIASES);
    pp.wait_pod_phase("aliases", "Succeeded", Duration::from_secs(90));
    pp.wait_pod_phase("aliases-hostnet", "Succeeded", Duration::from_secs(90));
    let ip = pp
        .jsonpath("pod/aliases", "{.status.podIP}")
        .expect("pod IP");
    assert_eq!(
        pp.kubectl_ok(&["logs", "aliases"]),
        format!(
            "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n\
             fe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n\
             {ip}\taliases\n{ALIAS_LINES}127.0.0.1\tfoo.local\tbar.local\n10.1.2.3\tfoo.remote\tbar.remote\n"
        )
    );
    let node_hosts = std::fs::read_to_string("/etc/hosts").expect("node /etc/hosts");
    let mut want = format!("# Kubernetes-managed hosts file (host network).\n{node_hosts}");
    if !want.ends_with('\n') {
        want.push('\n');
    }
    want.push_str(&format!("{ALIAS_LINES}10.1.2.3\tfoo.remote\n"));
    assert_eq!(pp.kubectl_ok(&["logs", "aliases-hostnet"]), want);
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "aliases",
        "aliases-hostnet",
        "--timeout=60s",
    ]);
}

const SUBDOMAIN: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: named
spec:
  hostname: web-0
  subdomain: web
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "hostname; grep web-0 /etc/hosts"]
---
apiVersion: v1
kind: Pod
metadata:
  name: named-fqdn
spec:
  hostname: web-1
  subdomain: web
  setHostnameAsFQDN: true
  restartPolicy: Never
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "hostname; grep web-1 /etc/hosts"]
"#;

/// A pod with a `subdomain` is named by its FQDN first in `/etc/hosts`, then by its short
/// name; `setHostnameAsFQDN` makes the kernel hostname the FQDN as well.
#[test]
fn subdomain_pods_have_their_fqdn_in_etc_hosts() {
    let pp = Peapod::start();
    pp.apply(SUBDOMAIN);
    pp.wait_pod_phase("named", "Succeeded", Duration::from_secs(90));
    pp.wait_pod_phase("named-fqdn", "Succeeded", Duration::from_secs(90));
    for (pod, host) in [("named", "web-0"), ("named-fqdn", "web-1")] {
        let ip = pp
            .jsonpath(&format!("pod/{pod}"), "{.status.podIP}")
            .expect("pod IP");
        let fqdn = format!("{host}.web.default.svc.cluster.local");
        let kernel = if pod == "named" { host } else { fqdn.as_str() };
        assert_eq!(
            pp.kubectl_ok(&["logs", pod]),
            format!("{kernel}\n{ip}\t{fqdn}\t{host}\n")
        );
    }
    pp.kubectl_ok(&["delete", "pod", "named", "named-fqdn", "--timeout=60s"]);
}

const RESTARTS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: restarts
  labels: {app: restarts}
spec:
  containers:
  - name: exits
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo exits $(cat /proc/uptime); sleep 1; exit 3"]
  - name: probed
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo probed $(cat /proc/uptime); sleep 3600"]
    livenessProbe:
      exec: {command: ["false"]}
      periodSeconds: 1
      failureThreshold: 1
  - name: oom
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo oom $(cat /proc/uptime); sleep 1; tail /dev/zero"]
    resources:
      limits: {memory: 24Mi}
---
apiVersion: v1
kind: Pod
metadata:
  name: restarts-peer
  labels: {app: restarts}
spec:
  restartPolicy: Never
  containers:
  - name: one
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo peer one"]
"#;

/// `kubectl logs --previous` reads the attempt before the current one whatever ended it
/// (exit, liveness kill, OOM kill); `--all-containers`, `--prefix` and `-l` read across
/// containers and pods.
#[test]
fn logs_previous_all_containers_prefix_and_selectors() {
    let pp = Peapod::start();
    pp.apply(RESTARTS);
    pp.wait_pod_phase("restarts-peer", "Succeeded", Duration::from_secs(90));
    let reasons = common::wait_until("three restart kinds", Duration::from_secs(120), || {
        let out = pp.jsonpath(
            "pod/restarts",
            "{range .status.containerStatuses[*]}{.name}={.restartCount}/{.lastState.terminated.reason};{end}",
        )?;
        let all_restarted = out
            .split(';')
            .filter(|s| !s.is_empty())
            .all(|s| !s.contains("=0/") && !s.ends_with('/'));
        (all_restarted && out.matches('=').count() == 3).then_some(out)
    });
    assert!(reasons.contains("exits="), "{reasons}");
    assert!(
        reasons.contains("oom=") && reasons.contains("/OOMKilled"),
        "{reasons}"
    );
    assert!(reasons.contains("/Error"), "{reasons}");
    for container in ["exits", "probed", "oom"] {
        let previous = pp.kubectl_ok(&["logs", "restarts", "-c", container, "--previous"]);
        assert!(
            previous.starts_with(&format!("{container} ")) && previous.lines().count() == 1,
            "{container}: {previous:?}"
        );
    }
    let all = pp.kubectl_ok(&["logs", "restarts", "--all-containers", "--prefix"]);
    for container in ["exits", "probed", "oom"] {
        let prefix = format!("[pod/restarts/{container}] {container} ");
        assert!(all.lines().any(|l| l.starts_with(&prefix)), "{all}");
    }
    let selected = pp.kubectl_ok(&[
        "logs",
        "-l",
        "app=restarts",
        "--all-containers",
        "--prefix",
        "--tail=-1",
    ]);
    assert!(
        selected
            .lines()
            .any(|l| l == "[pod/restarts-peer/one] peer one")
            && selected
                .lines()
                .any(|l| l.starts_with("[pod/restarts/probed] probed ")),
        "{selected}"
    );
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "restarts",
        "restarts-peer",
        "--timeout=60s",
    ]);
}

const DEADLINE: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: deadline
spec:
  terminationGracePeriodSeconds: 2
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

/// `activeDeadlineSeconds` set on a running pod (it may be set when unset, or lowered, as
/// kube-apiserver allows) kills it and ends it `Failed` with `DeadlineExceeded`.
#[test]
fn active_deadline_set_on_a_running_pod_fails_it() {
    let pp = Peapod::start();
    pp.apply(DEADLINE);
    pp.wait_pod_phase("deadline", "Running", Duration::from_secs(90));
    pp.kubectl_ok(&[
        "patch",
        "pod",
        "deadline",
        "-p",
        r#"{"spec":{"activeDeadlineSeconds":3600}}"#,
    ]);
    for (patch, message) in [
        (
            r#"{"spec":{"activeDeadlineSeconds":7200}}"#,
            "spec.activeDeadlineSeconds: Invalid value: 7200: must be less than or equal to previous value",
        ),
        (
            r#"{"spec":{"activeDeadlineSeconds":null}}"#,
            "spec.activeDeadlineSeconds: Invalid value: \"null\": must not update from a positive integer to nil value",
        ),
    ] {
        let out = pp.kubectl(&["patch", "pod", "deadline", "-p", patch]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(message), "{stderr}");
    }
    pp.kubectl_ok(&[
        "patch",
        "pod",
        "deadline",
        "-p",
        r#"{"spec":{"activeDeadlineSeconds":1}}"#,
    ]);
    pp.wait_pod_phase("deadline", "Failed", Duration::from_secs(60));
    assert_eq!(
        pp.jsonpath(
            "pod/deadline",
            "{.status.reason}|{.status.message}|{.status.containerStatuses[0].state.terminated.reason}"
        )
        .as_deref(),
        Some("DeadlineExceeded|Pod was active on the node longer than the specified deadline|Error")
    );
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=deadline,reason=DeadlineExceeded",
        "-o",
        "jsonpath={.items[*].type}",
    ]);
    assert_eq!(events, "Normal");
    pp.kubectl_ok(&["delete", "pod", "deadline", "--timeout=60s"]);
}

const READINESS_GATE: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: gated
spec:
  terminationGracePeriodSeconds: 2
  readinessGates:
  - conditionType: www.example.com/feature-1
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#;

/// A pod with `readinessGates` is Ready only once another client sets every gate's
/// condition True through the status subresource; the node keeps that condition when it
/// writes status, and `kubectl get -o wide` counts the gates.
#[test]
fn readiness_gates_hold_ready_until_their_condition_is_true() {
    let pp = Peapod::start();
    pp.apply(READINESS_GATE);
    pp.wait_pod_phase("gated", "Running", Duration::from_secs(90));
    let ready = |want: &str| {
        common::wait_until(&format!("Ready {want}"), Duration::from_secs(30), || {
            let got = pp.jsonpath(
                "pod/gated",
                "{.status.conditions[?(@.type==\"Ready\")].status}|{.status.conditions[?(@.type==\"Ready\")].reason}",
            )?;
            got.starts_with(&format!("{want}|")).then_some(got)
        })
    };
    assert_eq!(
        pp.jsonpath(
            "pod/gated",
            "{.status.conditions[?(@.type==\"ContainersReady\")].status}"
        )
        .as_deref(),
        Some("True")
    );
    assert_eq!(ready("False"), "False|ReadinessGatesNotReady");
    let gates_column = || {
        pp.kubectl_ok(&["get", "pod", "gated", "-o", "wide", "--no-headers"])
            .split_whitespace()
            .last()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(gates_column(), "0/1");
    let set_gate = |status: &str| {
        pp.kubectl_ok(&[
            "patch",
            "pod",
            "gated",
            "--subresource=status",
            "-p",
            &format!(
                r#"{{"status":{{"conditions":[{{"type":"www.example.com/feature-1","status":"{status}"}}]}}}}"#
            ),
        ])
    };
    set_gate("True");
    assert_eq!(ready("True"), "True|");
    assert_eq!(gates_column(), "1/1");
    set_gate("False");
    assert_eq!(ready("False"), "False|ReadinessGatesNotReady");
    assert_eq!(
        pp.jsonpath(
            "pod/gated",
            "{.status.conditions[?(@.type==\"www.example.com/feature-1\")].status}"
        )
        .as_deref(),
        Some("False")
    );
    assert_eq!(gates_column(), "0/1");
    pp.kubectl_ok(&["delete", "pod", "gated", "--timeout=60s"]);
}

const SYSCTLS: &str = r#"apiVersion: v1
kind: Pod
metadata:
  name: sysctl-allowed
spec:
  restartPolicy: Never
  securityContext:
    sysctls:
    - {name: net.ipv4.ip_unprivileged_port_start, value: "1000"}
    - {name: kernel.msgmax, value: "65536"}
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/msgmax"]
---
apiVersion: v1
kind: Pod
metadata:
  name: sysctl-forbidden
spec:
  restartPolicy: Never
  securityContext:
    sysctls:
    - {name: net.core.somaxconn, value: "1024"}
  containers:
  - name: main
    image: docker.io/library/busybox:latest
    imagePullPolicy: IfNotPresent
    command: ["true"]
"#;

/// Sysctl names are checked as kube-apiserver does; the node admits the safe set and the
/// KubeletConfiguration's `allowedUnsafeSysctls`, and fails any other pod with
/// `SysctlForbidden`.
#[test]
fn sysctls_are_validated_allowlisted_and_forbidden_as_the_kubelet_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("kubelet.yaml");
    common::write_kubelet_config(&config, "allowedUnsafeSysctls: [\"kernel.msg*\"]\n");
    let pp = Peapod::start_with(&["--config", config.to_str().expect("utf-8 path")]);
    let bad = pp
        .kubectl_cmd()
        .args([
            "run",
            "badsysctl",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"securityContext":{"sysctls":[{"name":"foo-","value":"1"},{"name":"bar..","value":"1"}]}}}"#,
        ])
        .output()
        .expect("kubectl");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{stderr}");
    for name in ["foo-", "bar.."] {
        assert!(
            stderr.contains(&format!(
                "Invalid value: \"{name}\": must have at most 253 characters and match regex"
            )),
            "{stderr}"
        );
    }
    pp.apply(SYSCTLS);
    pp.wait_pod_phase("sysctl-allowed", "Succeeded", Duration::from_secs(90));
    assert_eq!(pp.kubectl_ok(&["logs", "sysctl-allowed"]), "1000\n65536\n");
    pp.wait_pod_phase("sysctl-forbidden", "Failed", Duration::from_secs(60));
    assert_eq!(
        pp.jsonpath("pod/sysctl-forbidden", "{.status.reason}|{.status.message}")
            .as_deref(),
        Some("SysctlForbidden|Pod was rejected: forbidden sysctl: \"net.core.somaxconn\" not allowlisted")
    );
    pp.kubectl_ok(&[
        "delete",
        "pod",
        "sysctl-allowed",
        "sysctl-forbidden",
        "--timeout=60s",
    ]);
}
