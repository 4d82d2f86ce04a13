//! The seed scenarios of `examples/`, each applied as its file with the real kubectl and
//! checked for the behaviour its seed describes: single pods (a web server, command and
//! args, env, HTTP liveness restarts, readiness deciding a Service's endpoints), the
//! multi-container Deployments (a shared emptyDir mounted read-only, an init container
//! writing merged config, the `logger` adapter, the `healthz` sidecar, the ambassador), and
//! the controllers (a 3-replica Deployment rolled to a new image, a Job, a CronJob); and
//! `hello-pod.yaml`, the README's first example.
//!
//! The ambassador resolves its Service through cluster DNS, whose address is node-wide: that
//! test waits until its own server serves it (one peapod at a time holds it).

mod common;

use std::process::Output;
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

fn apply_example(pp: &Peapod, file: &str) -> String {
    let path = workspace_root().join("examples").join(file);
    pp.kubectl_ok(&["apply", "-f", path.to_str().expect("utf-8 path")])
}

fn rollout_status(pp: &Peapod, what: &str) {
    let out = pp.kubectl_ok(&["rollout", "status", what, "--timeout=120s"]);
    assert!(out.contains("successfully rolled out"), "{out}");
}

fn wait_ready(pp: &Peapod, pod: &str) {
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Ready",
        &format!("pod/{pod}"),
        "--timeout=120s",
    ]);
}

/// `kubectl exec TARGET -c CONTAINER -- CMD...`.
fn exec(pp: &Peapod, target: &str, container: &str, cmd: &[&str]) -> Output {
    let mut args = vec!["exec", target, "-c", container, "--"];
    args.extend_from_slice(cmd);
    pp.kubectl(&args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `kubectl logs ARGS` until it prints `needle`; returns the logs.
fn logs_until(pp: &Peapod, args: &[&str], needle: &str) -> String {
    let mut all = vec!["logs"];
    all.extend_from_slice(args);
    wait_until(&format!("{needle:?} in kubectl {all:?}"), T, || {
        let text = stdout(&pp.kubectl(&all));
        text.contains(needle).then_some(text)
    })
}

/// Polls `exec` until it succeeds with `needle` in its output.
fn exec_until(pp: &Peapod, target: &str, container: &str, cmd: &[&str], needle: &str) -> String {
    wait_until(&format!("{needle:?} from {cmd:?} in {target}"), T, || {
        let out = exec(pp, target, container, cmd);
        let text = stdout(&out);
        (out.status.success() && text.contains(needle)).then_some(text)
    })
}

fn ready_endpoints(pp: &Peapod, service: &str) -> String {
    pp.jsonpath(
        &format!("endpoints/{service}"),
        "{.subsets[*].addresses[*].ip}",
    )
    .unwrap_or_default()
}

fn pod_ready(pp: &Peapod, pod: &str) -> Option<String> {
    pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.conditions[?(@.type==\"Ready\")].status}",
    )
}

fn restart_count(pp: &Peapod, pod: &str) -> u32 {
    pp.jsonpath(
        &format!("pod/{pod}"),
        "{.status.containerStatuses[0].restartCount}",
    )
    .and_then(|n| n.trim().parse().ok())
    .unwrap_or(0)
}

/// Names of the pods with this label selector, as `name pod-template-hash ready` rows.
fn pods_of(pp: &Peapod, selector: &str) -> Vec<(String, String, String)> {
    let out = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        selector,
        "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.metadata.labels.pod-template-hash} {.status.conditions[?(@.type==\"Ready\")].status} {.metadata.deletionTimestamp}{\"\\n\"}{end}",
    ]);
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // Pods being deleted carry a fourth field and no longer count.
            (f.len() == 3).then(|| (f[0].to_string(), f[1].to_string(), f[2].to_string()))
        })
        .collect()
}

#[test]
fn seed_pods_command_env_and_probes() {
    let pp = Peapod::start();
    for f in [
        "hello-pod.yaml",
        "nginx-pod.yaml",
        "nginx-probes.yaml",
        "liveness-http.yaml",
        "command-args.yaml",
        "fortune-env.yaml",
    ] {
        apply_example(&pp, f);
    }

    // The smallest pod of the README says hi.
    logs_until(&pp, &["hello"], "hi from hello");

    // The web server pod answers on port 80.
    wait_ready(&pp, "my-nginx-pod");
    exec_until(
        &pp,
        "my-nginx-pod",
        "my-nginx-container",
        &["wget", "-q", "-O", "-", "http://localhost/"],
        "Welcome to nginx!",
    );

    // command replaces ENTRYPOINT, args CMD: `bin/echo arg1 arg2 arg3`.
    logs_until(&pp, &["nys"], "arg1 arg2 arg3");

    // The env var set on the container drives the loop.
    wait_ready(&pp, "fortune-env");
    logs_until(
        &pp,
        &["fortune-env"],
        "Configured to generate new fortune every 30 seconds",
    );
    let env = exec(
        &pp,
        "fortune-env",
        "html-generator",
        &["sh", "-c", "echo $INTERVAL"],
    );
    assert_eq!(stdout(&env).trim(), "30");
    let page = exec_until(
        &pp,
        "fortune-env",
        "html-generator",
        &["cat", "/var/htdocs/index.html"],
        ".",
    );
    assert!(!page.trim().is_empty());

    // Readiness decides the Service's endpoints, without restarts.
    wait_ready(&pp, "my-nginx-probes");
    let ip = pp
        .jsonpath("pod/my-nginx-probes", "{.status.podIP}")
        .expect("pod IP");
    wait_until("the ready pod in the endpoints", T, || {
        (ready_endpoints(&pp, "my-nginx") == ip).then_some(())
    });
    let rm = exec(
        &pp,
        "my-nginx-probes",
        "my-nginx-container",
        &["rm", "/usr/share/nginx/html/ready"],
    );
    assert!(rm.status.success(), "{rm:?}");
    wait_until("the pod to turn not ready", T, || {
        (pod_ready(&pp, "my-nginx-probes").as_deref() == Some("False")).then_some(())
    });
    wait_until("the endpoints to drop the pod", T, || {
        ready_endpoints(&pp, "my-nginx").is_empty().then_some(())
    });
    assert_eq!(
        pp.jsonpath(
            "endpoints/my-nginx",
            "{.subsets[*].notReadyAddresses[*].ip}"
        )
        .as_deref(),
        Some(ip.as_str())
    );
    let touch = exec(
        &pp,
        "my-nginx-probes",
        "my-nginx-container",
        &["touch", "/usr/share/nginx/html/ready"],
    );
    assert!(touch.status.success(), "{touch:?}");
    wait_ready(&pp, "my-nginx-probes");
    wait_until("the pod back in the endpoints", T, || {
        (ready_endpoints(&pp, "my-nginx") == ip).then_some(())
    });
    assert_eq!(
        restart_count(&pp, "my-nginx-probes"),
        0,
        "readiness restarted"
    );

    // The liveness probe fails once /healthz is gone: the kubelet restarts the container.
    wait_until("liveness-http to be restarted", T, || {
        (restart_count(&pp, "liveness-http") >= 1).then_some(())
    });
    let events = pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=liveness-http",
        "-o",
        "jsonpath={range .items[*]}{.reason}: {.message}{\"\\n\"}{end}",
    ]);
    assert!(
        events.contains("Unhealthy: Liveness probe failed: HTTP probe failed with statuscode: 404"),
        "{events}"
    );
    assert!(events.contains("Killing: "), "{events}");
}

#[test]
fn seed_multi_container_deployments() {
    let _serial = serial();
    let pp = start_with_dns();
    apply_example(&pp, "sleep-shared-volume.yaml");
    apply_example(&pp, "timecheck-init-config.yaml");
    apply_example(&pp, "numbers-web-ambassador.yaml");

    // Two containers, one emptyDir: written by `sleep`, read (only) by `file-reader`.
    rollout_status(&pp, "deploy/sleep");
    let write = exec(
        &pp,
        "deploy/sleep",
        "sleep",
        &["sh", "-c", "echo shared hello > /data-rw/file.txt"],
    );
    assert!(write.status.success(), "{write:?}");
    let read = exec(
        &pp,
        "deploy/sleep",
        "file-reader",
        &["cat", "/data-ro/file.txt"],
    );
    assert_eq!(stdout(&read).trim(), "shared hello");
    let refused = exec(
        &pp,
        "deploy/sleep",
        "file-reader",
        &["touch", "/data-ro/mine"],
    );
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("Read-only file system"), "{err}");
    pp.kubectl_ok(&["logs", "-l", "app=sleep", "-c", "file-reader"]);

    // The init container merged the environment into the config the app reads read-only.
    rollout_status(&pp, "deploy/timecheck");
    let config = exec(
        &pp,
        "deploy/timecheck",
        "timecheck",
        &["cat", "/config/appsettings.json"],
    );
    assert!(
        stdout(&config).contains("\"Environment\": \"TEST\""),
        "{config:?}"
    );
    exec_until(
        &pp,
        "deploy/timecheck",
        "timecheck",
        &["cat", "/logs/timecheck.log"],
        "Environment: TEST; version: 1.0; time check",
    );
    let refused = exec(
        &pp,
        "deploy/timecheck",
        "timecheck",
        &["touch", "/config/mine"],
    );
    assert!(!refused.status.success());

    // v3: the logger adapter makes the app's log file the pod's logs.
    apply_example(&pp, "timecheck-logger.yaml");
    rollout_status(&pp, "deploy/timecheck");
    logs_until(
        &pp,
        &["-l", "app=timecheck,version=v3", "-c", "logger"],
        "Environment: TEST; version: 1.0; time check",
    );

    // v4: the healthz sidecar answers the app's readiness probe and anyone on :8080.
    apply_example(&pp, "timecheck-healthz.yaml");
    rollout_status(&pp, "deploy/timecheck");
    exec_until(
        &pp,
        "deploy/timecheck",
        "logger",
        &["wget", "-q", "-O", "-", "http://localhost:8080/healthz"],
        "{\"status\": \"OK\"}",
    );
    let v4 = pods_of(&pp, "app=timecheck,version=v4");
    assert_eq!(v4.len(), 1, "{v4:?}");
    assert_eq!(v4[0].2, "True", "{v4:?}");

    // v5's init container fails: its pod never gets Ready, the v4 pod keeps serving and the
    // rollout does not complete; undoing it brings back v4 alone.
    apply_example(&pp, "timecheck-bad-init.yaml");
    let v5 = wait_until("the v5 pod's init container to fail", T, || {
        let out = pp.kubectl_ok(&[
            "get",
            "pods",
            "-l",
            "app=timecheck,version=v5",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.initContainerStatuses[0].lastState.terminated.exitCode}{.status.initContainerStatuses[0].state.terminated.exitCode}{\"\\n\"}{end}",
        ]);
        out.lines().find_map(|l| {
            let (name, code) = l.split_once(' ')?;
            code.starts_with('1').then(|| name.to_string())
        })
    });
    logs_until(
        &pp,
        &[&v5, "-c", "init-config"],
        "cannot read /config-in/appsettings.yaml",
    );
    assert_eq!(pod_ready(&pp, &v5).as_deref(), Some("False"));
    assert_eq!(
        pp.jsonpath(
            &format!("pod/{v5}"),
            "{.status.containerStatuses[0].state.waiting.reason}"
        )
        .as_deref(),
        Some("PodInitializing")
    );
    assert_eq!(pod_ready(&pp, &v4[0].0).as_deref(), Some("True"));
    assert_eq!(
        pp.jsonpath("deploy/timecheck", "{.status.availableReplicas}")
            .as_deref(),
        Some("1")
    );
    let stalled = pp.kubectl(&["rollout", "status", "deploy/timecheck", "--timeout=2s"]);
    assert!(!stalled.status.success(), "{stalled:?}");
    pp.kubectl_ok(&["rollout", "undo", "deploy/timecheck"]);
    rollout_status(&pp, "deploy/timecheck");
    wait_until("the failing v5 pod to go", T, || {
        pods_of(&pp, "app=timecheck,version=v5")
            .is_empty()
            .then_some(())
    });
    assert_eq!(pods_of(&pp, "app=timecheck,version=v4"), v4);

    // The ambassador: the web app asks localhost/api through its proxy, which maps it to
    // the numbers-api Service.
    rollout_status(&pp, "deploy/numbers-api");
    rollout_status(&pp, "deploy/numbers-web");
    logs_until(
        &pp,
        &["-l", "app=numbers-web", "-c", "web"],
        "from http://localhost/api",
    );
    let proxied = logs_until(
        &pp,
        // The whole log: with `-l`, kubectl shows only the last 10 lines by default.
        &["-l", "app=numbers-web", "-c", "proxy", "--tail=-1"],
        "GET http://localhost/api -> http://numbers-api/sixeyed/kiamol/master/ch03/numbers/rng",
    );
    assert!(proxied.contains("proxy listening on :1080"), "{proxied}");
    exec_until(
        &pp,
        "deploy/numbers-web",
        "proxy",
        &["wget", "-q", "-O", "-", "http://localhost:80/"],
        "<h1>Random number: ",
    );
}

#[test]
fn seed_controllers_deployment_job_cronjob() {
    let pp = Peapod::start();
    apply_example(&pp, "nginx-deployment.yaml");
    apply_example(&pp, "job-pi.yaml");
    apply_example(&pp, "cronjob-hello.yaml");

    // Three replicas of the template.
    rollout_status(&pp, "deployment/nginx-deployment");
    let first = wait_until("three ready nginx pods", T, || {
        let pods = pods_of(&pp, "app=nginx");
        (pods.len() == 3 && pods.iter().all(|p| p.2 == "True")).then_some(pods)
    });

    // The Job runs its pod to completion.
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Complete",
        "job/pi",
        "--timeout=120s",
    ]);
    let pi = pp.kubectl_ok(&["logs", "job/pi"]);
    assert!(pi.starts_with("3.14159265358979323846"), "{pi}");

    // A Job from the CronJob's template, by hand.
    pp.kubectl_ok(&["create", "job", "hello-now", "--from=cronjob/hello"]);

    // A new image rolls all three pods over to a new ReplicaSet.
    pp.kubectl_ok(&[
        "set",
        "image",
        "deployment/nginx-deployment",
        "nginx=busybox:latest",
    ]);
    rollout_status(&pp, "deployment/nginx-deployment");
    let second = wait_until("three new ready nginx pods", T, || {
        let pods = pods_of(&pp, "app=nginx");
        (pods.len() == 3 && pods.iter().all(|p| p.2 == "True" && p.1 != first[0].1)).then_some(pods)
    });
    for old in &first {
        assert!(second.iter().all(|new| new.0 != old.0), "{second:?}");
    }
    assert_eq!(
        pp.jsonpath(
            "deployment/nginx-deployment",
            "{.status.updatedReplicas}/{.status.readyReplicas}"
        )
        .as_deref(),
        Some("3/3")
    );
    let history = pp.kubectl_ok(&["rollout", "history", "deployment/nginx-deployment"]);
    assert_eq!(
        history
            .lines()
            .filter(|l| l.starts_with(['1', '2']))
            .count(),
        2,
        "{history}"
    );

    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Complete",
        "job/hello-now",
        "--timeout=120s",
    ]);
    let hello = pp.kubectl_ok(&["logs", "job/hello-now"]);
    assert!(
        hello.contains("Hello from the Kubernetes cluster"),
        "{hello}"
    );

    // The schedule (every minute) starts a Job of its own, owned by the CronJob (as
    // `kubectl create job --from` makes hello-now).
    let scheduled = wait_until("a scheduled hello job", T, || {
        let out = pp.kubectl_ok(&[
            "get",
            "jobs",
            "-o",
            "jsonpath={range .items[?(@.metadata.ownerReferences[0].name==\"hello\")]}{.metadata.name}{\"\\n\"}{end}",
        ]);
        out.lines()
            .find(|name| *name != "hello-now")
            .map(str::to_string)
    });
    pp.kubectl_ok(&[
        "wait",
        "--for=condition=Complete",
        &format!("job/{scheduled}"),
        "--timeout=120s",
    ]);
    wait_until("the CronJob's last schedule time", T, || {
        pp.jsonpath("cronjob/hello", "{.status.lastScheduleTime}")
            .filter(|t| !t.is_empty())
    });
}
