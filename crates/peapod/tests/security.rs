//! Resources and security contexts through kubectl: a memory limit kills with OOMKilled, a
//! cpu limit lands in the cgroup, the default confinement (capabilities, masked /proc,
//! read-only /sys, seccomp) and its knobs (drop ALL, readOnlyRootFilesystem, runAsUser,
//! runAsNonRoot, sysctls), shareProcessNamespace, and the pod's qosClass.

mod common;

use std::time::Duration;

use common::{wait_until, Peapod};

const IMAGE: &str = "docker.io/library/busybox:latest";

/// One container spec (YAML list item, indented for `spec.containers`).
fn container(name: &str, script: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    image: {IMAGE}\n    imagePullPolicy: IfNotPresent\n    command: [\"sh\", \"-c\", {script:?}]\n{extra}"
    )
}

fn pod(name: &str, restart: &str, spec_extra: &str, containers: &[String]) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  restartPolicy: {restart}\n  terminationGracePeriodSeconds: 2\n{spec_extra}  containers:\n{}",
        containers.concat()
    )
}

fn logs(pp: &Peapod, pod: &str, container: &str) -> String {
    pp.kubectl_ok(&["logs", pod, "-c", container])
}

/// Waits until `container` of `pod` has terminated and returns its reason.
fn terminated_reason(pp: &Peapod, pod: &str, container: &str) -> String {
    let path = format!(
        "{{.status.containerStatuses[?(@.name==\"{container}\")].state.terminated.reason}}"
    );
    wait_until(
        &format!("{pod}/{container} to terminate"),
        Duration::from_secs(60),
        || {
            pp.jsonpath(&format!("pod/{pod}"), &path)
                .filter(|r| !r.is_empty())
        },
    )
}

#[test]
fn resources_security_contexts_and_shared_pid_namespace() {
    let pp = Peapod::start();

    // Memory limit: the allocating pipeline is OOM-killed and reported so.
    pp.apply(&pod(
        "oom",
        "Never",
        "",
        &[container(
            "hog",
            "head -c 64m /dev/zero | tail",
            "    resources:\n      limits:\n        memory: 20Mi\n",
        )],
    ));
    // CPU limit (Burstable: no memory limit) and a Guaranteed and a BestEffort pod.
    pp.apply(&pod(
        "cpu",
        "Always",
        "",
        &[container(
            "main",
            "sleep 3600",
            "    resources:\n      limits:\n        cpu: 250m\n",
        )],
    ));
    pp.apply(&pod(
        "guaranteed",
        "Always",
        "",
        &[container(
            "main",
            "sleep 3600",
            "    resources:\n      limits:\n        cpu: 100m\n        memory: 32Mi\n",
        )],
    ));
    pp.apply(&pod(
        "besteffort",
        "Always",
        "",
        &[container("main", "sleep 3600", "")],
    ));
    // Default confinement and the securityContext knobs, one container each.
    pp.apply(&pod(
        "sec",
        "Never",
        "  securityContext:\n    sysctls:\n    - name: kernel.shm_rmid_forced\n      value: \"1\"\n",
        &[
            container(
                "defaults",
                "grep CapEff /proc/self/status; echo timers=$(wc -c < /proc/timer_list); \
                 echo firmware=$(ls /sys/firmware | wc -l); mkdir /sys/x 2>&1; grep NoNewPrivs /proc/self/status; \
                 grep Seccomp: /proc/self/status; cat /proc/sys/kernel/shm_rmid_forced; \
                 echo sysctl > /proc/sys/kernel/shm_rmid_forced 2>&1; \
                 unshare -n true 2>&1; echo unshare=$?",
                "",
            ),
            container(
                "dropall",
                "grep CapEff /proc/self/status; ping -c 1 -W 1 127.0.0.1 >/dev/null 2>&1; echo ping=$?",
                "    securityContext:\n      capabilities:\n        drop: [\"ALL\"]\n",
            ),
            container(
                "readonly",
                "touch /newfile 2>&1; echo touch=$?; touch /tmp/x 2>&1; echo tmp=$?",
                "    securityContext:\n      readOnlyRootFilesystem: true\n",
            ),
            container(
                "user",
                "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); grep CapEff /proc/self/status",
                "    securityContext:\n      runAsUser: 1000\n      runAsGroup: 3000\n",
            ),
            container(
                "privileged",
                "grep CapEff /proc/self/status; echo timers=$(wc -c < /proc/timer_list); \
                 echo devices=$(ls /dev | wc -l)",
                "    securityContext:\n      privileged: true\n",
            ),
        ],
    ));
    pp.apply(&pod(
        "nonroot",
        "Always",
        "  securityContext:\n    runAsNonRoot: true\n",
        &[container("main", "sleep 3600", "")],
    ));
    pp.apply(&pod(
        "shared",
        "Always",
        "  shareProcessNamespace: true\n",
        &[
            container("sleeper", "exec sleep 4242", ""),
            container(
                "watcher",
                "while true; do ps; ls /proc/$(pidof sleep)/root/bin/sleep 2>&1; echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); sleep 1; done",
                "",
            ),
        ],
    ));

    // --- memory: OOMKilled.
    assert_eq!(terminated_reason(&pp, "oom", "hog"), "OOMKilled");
    assert_eq!(
        pp.jsonpath(
            "pod/oom",
            "{.status.containerStatuses[0].state.terminated.exitCode}"
        )
        .as_deref(),
        Some("137")
    );

    // --- cpu limit visible in the container's cgroup; QoS classes.
    pp.kubectl_ok(&["wait", "--for=condition=Ready", "pod/cpu", "--timeout=60s"]);
    let id = pp
        .jsonpath("pod/cpu", "{.status.containerStatuses[0].containerID}")
        .unwrap_or_default();
    let id = id.trim_start_matches("peapod://").to_string();
    let uid = pp
        .jsonpath("pod/cpu", "{.metadata.uid}")
        .unwrap_or_default();
    let quota = common::pod_cgroup_dirs(&uid)
        .iter()
        .find_map(|pod| {
            std::fs::read_to_string(pod.join(&id).join("cpu.cfs_quota_us"))
                .or_else(|_| std::fs::read_to_string(pod.join(&id).join("cpu.max")))
                .ok()
        })
        .unwrap_or_else(|| panic!("no cpu cgroup for container {id} of pod {uid}"));
    assert!(quota.starts_with("25000"), "cpu quota {quota:?}");
    let qos = |p: &str| pp.jsonpath(&format!("pod/{p}"), "{.status.qosClass}");
    assert_eq!(qos("cpu").as_deref(), Some("Burstable"));
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/guaranteed",
        "--timeout=60s",
    ]);
    assert_eq!(qos("guaranteed").as_deref(), Some("Guaranteed"));
    assert_eq!(qos("besteffort").as_deref(), Some("BestEffort"));

    // --- securityContext.
    pp.wait_pod_phase("sec", "Succeeded", Duration::from_secs(60));
    let defaults = logs(&pp, "sec", "defaults");
    assert!(defaults.contains("CapEff:\t00000000a80425fb"), "{defaults}");
    assert!(defaults.contains("timers=0\n"), "{defaults}");
    assert!(defaults.contains("firmware=0\n"), "{defaults}");
    assert!(defaults.contains("Read-only file system"), "{defaults}");
    assert!(defaults.contains("NoNewPrivs:\t1"), "{defaults}");
    assert!(defaults.contains("Seccomp:\t2"), "{defaults}");
    assert!(defaults.lines().any(|l| l == "1"), "sysctl: {defaults}");
    assert!(defaults.contains("unshare=1"), "{defaults}");
    let dropall = logs(&pp, "sec", "dropall");
    assert!(dropall.contains("CapEff:\t0000000000000000"), "{dropall}");
    assert!(dropall.contains("ping=1"), "{dropall}");
    let readonly = logs(&pp, "sec", "readonly");
    assert!(
        readonly.contains("Read-only file system") && readonly.contains("touch=1"),
        "{readonly}"
    );
    let user = logs(&pp, "sec", "user");
    assert!(user.contains("uid=1000 gid=3000"), "{user}");
    assert!(user.contains("CapEff:\t0000000000000000"), "{user}");
    let privileged = logs(&pp, "sec", "privileged");
    // Every capability the host grants, the real /proc/timer_list, the host's devices.
    assert!(
        !privileged.contains("CapEff:\t00000000a80425fb"),
        "{privileged}"
    );
    assert!(!privileged.contains("timers=0\n"), "{privileged}");
    let devices: usize = privileged
        .lines()
        .find_map(|l| l.strip_prefix("devices="))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(devices > 12, "{privileged}");

    // --- runAsNonRoot with an image that runs as root.
    let waiting = wait_until(
        "CreateContainerConfigError",
        Duration::from_secs(60),
        || {
            pp.jsonpath(
            "pod/nonroot",
            "{.status.containerStatuses[0].state.waiting.reason}:{.status.containerStatuses[0].state.waiting.message}",
        )
        .filter(|s| s.starts_with("CreateContainerConfigError:"))
        },
    );
    assert!(
        waiting.contains("container has runAsNonRoot and image will run as root"),
        "{waiting}"
    );

    // --- shareProcessNamespace: the watcher sees the sleeper; PID 1 is the shim.
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        "pod/shared",
        "--timeout=60s",
    ]);
    let seen = wait_until(
        "the watcher to see the sleeper",
        Duration::from_secs(30),
        || {
            let l = logs(&pp, "shared", "watcher");
            (l.contains("sleep 4242") && l.contains("/bin/sleep")).then_some(l)
        },
    );
    assert!(seen.contains("pid1=") && seen.contains("shim"), "{seen}");

    for p in [
        "oom",
        "cpu",
        "guaranteed",
        "besteffort",
        "sec",
        "nonroot",
        "shared",
    ] {
        pp.kubectl_ok(&["delete", "pod", p, "--wait=false"]);
    }
    wait_until("every pod to be gone", Duration::from_secs(60), || {
        pp.kubectl_ok(&["get", "pods", "-o", "name"])
            .trim()
            .is_empty()
            .then_some(())
    });
    wait_until("the shims to be gone", Duration::from_secs(30), || {
        pp.leftover_processes()
            .iter()
            .all(|p| !p.contains(" shim "))
            .then_some(())
    });
    assert!(pp.cgroups_of(&uid).is_empty(), "{:?}", pp.cgroups_of(&uid));
}
