//! Jobs and CronJobs end to end through kubectl: `kubectl create job` runs to Complete,
//! completions with parallelism, a failing job stops at its backoffLimit, an Indexed job's
//! pods see their JOB_COMPLETION_INDEX, activeDeadlineSeconds fails a job, a suspended job
//! starts when resumed, a finished job with `ttlSecondsAfterFinished` is deleted with its
//! pod; a `* * * * *` CronJob starts a job within a minute, and
//! `kubectl create job --from=cronjob/NAME` runs its template by hand. An Indexed job with
//! `backoffLimitPerIndex` retries its failing index once, marks it failed while the other
//! indexes complete, and fails with `FailedIndexes`; one with a `successPolicy` completes
//! as soon as its rule holds, stopping the pods still running.

mod common;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::Stdio;
use std::time::Duration;

use common::registry::Registry;
use common::{wait_until, Peapod};

const JOBS: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: three
spec:
  completions: 3
  parallelism: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo done"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: fails
spec:
  backoffLimit: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "exit 3"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: indexed
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "echo index=$JOB_COMPLETION_INDEX host=$(hostname)"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: deadline
spec:
  activeDeadlineSeconds: 3
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sleep", "300"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: paused
spec:
  suspend: true
  template:
    spec:
      restartPolicy: OnFailure
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["true"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: ephemeral
spec:
  ttlSecondsAfterFinished: 2
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["true"]
"#;

fn wait_condition(pp: &Peapod, job: &str, condition: &str) {
    pp.kubectl_ok(&[
        "wait",
        &format!("--for=condition={condition}"),
        &format!("job/{job}"),
        "--timeout=120s",
    ]);
}

fn condition_reason(pp: &Peapod, job: &str, condition: &str) -> String {
    pp.jsonpath(
        &format!("job/{job}"),
        &format!("{{.status.conditions[?(@.type==\"{condition}\")].reason}}"),
    )
    .unwrap_or_default()
}

/// The reasons of the events about `kind/name`.
fn event_reasons(pp: &Peapod, kind: &str, name: &str) -> String {
    pp.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.kind={kind},involvedObject.name={name}"),
        "-o",
        "jsonpath={.items[*].reason}",
    ])
}

#[test]
fn jobs_complete_fail_index_and_resume() {
    let registry = Registry::start();
    let pp = Peapod::start();
    let image = format!("--image={}", registry.busybox());
    pp.kubectl_ok(&[
        "create",
        "job",
        "hello",
        &image,
        "--",
        "sh",
        "-c",
        "echo hello from a job",
    ]);
    pp.apply(JOBS);

    // kubectl create job: one pod, Complete, with its log and events.
    wait_condition(&pp, "hello", "complete");
    let row = pp.kubectl_ok(&["get", "job", "hello", "--no-headers"]);
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], ["hello", "Complete", "1/1"], "{row}");
    assert!(pp
        .kubectl_ok(&["logs", "job/hello"])
        .contains("hello from a job"));
    assert_eq!(
        pp.jsonpath("job/hello", "{.status.conditions[*].type}")
            .as_deref(),
        Some("SuccessCriteriaMet Complete")
    );
    let reasons = event_reasons(&pp, "Job", "hello");
    assert!(
        reasons.contains("SuccessfulCreate") && reasons.contains("Completed"),
        "{reasons}"
    );
    // Counted pods keep no tracking finalizer.
    let finalizers = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "job-name=hello",
        "-o",
        "jsonpath={.items[*].metadata.finalizers}",
    ]);
    assert!(!finalizers.contains("job-tracking"), "{finalizers}");

    // Three completions, two at a time.
    wait_condition(&pp, "three", "complete");
    assert_eq!(
        pp.jsonpath("job/three", "{.status.succeeded}").as_deref(),
        Some("3")
    );
    let phases = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=three",
        "-o",
        "jsonpath={.items[*].status.phase}",
    ]);
    assert_eq!(
        phases.split_whitespace().collect::<Vec<_>>(),
        ["Succeeded"; 3]
    );

    // backoffLimit 1: the second failure (after the 10 s back-off) fails the job.
    wait_condition(&pp, "fails", "failed");
    assert_eq!(
        condition_reason(&pp, "fails", "Failed"),
        "BackoffLimitExceeded"
    );
    assert_eq!(
        pp.jsonpath("job/fails", "{.status.failed}").as_deref(),
        Some("2")
    );
    assert!(event_reasons(&pp, "Job", "fails").contains("BackoffLimitExceeded"));
    let row = pp.kubectl_ok(&["get", "job", "fails", "--no-headers"]);
    assert!(row.contains("Failed") && row.contains("0/1"), "{row}");

    // Each index once, seen by its pod, with the NAME-INDEX hostname.
    wait_condition(&pp, "indexed", "complete");
    assert_eq!(
        pp.jsonpath("job/indexed", "{.status.completedIndexes}")
            .as_deref(),
        Some("0-2")
    );
    let logs = pp.kubectl_ok(&["logs", "-l", "job-name=indexed"]);
    let seen: BTreeSet<String> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("index="))
        .map(str::to_string)
        .collect();
    let want: BTreeSet<String> = (0..3).map(|i| format!("{i} host=indexed-{i}")).collect();
    assert_eq!(seen, want, "{logs}");

    // activeDeadlineSeconds: the running pod is stopped and the job fails.
    wait_condition(&pp, "deadline", "failed");
    assert_eq!(
        condition_reason(&pp, "deadline", "Failed"),
        "DeadlineExceeded"
    );

    // A suspended job makes no pods until it is resumed.
    assert_eq!(condition_reason(&pp, "paused", "Suspended"), "JobSuspended");
    let pods = pp.kubectl_ok(&["get", "pods", "-l", "job-name=paused", "-o", "name"]);
    assert!(pods.trim().is_empty(), "{pods}");
    assert!(pp
        .kubectl_ok(&["get", "job", "paused", "--no-headers"])
        .contains("Suspended"));
    pp.kubectl_ok(&[
        "patch",
        "job",
        "paused",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":false}}"#,
    ]);
    wait_condition(&pp, "paused", "complete");
    assert_eq!(condition_reason(&pp, "paused", "Suspended"), "JobResumed");

    // The job template is immutable, as upstream keeps it.
    let out = pp.kubectl(&[
        "patch",
        "job",
        "three",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"other"}]"#,
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("spec.template: Invalid value"),
        "{err}"
    );
    // ttlSecondsAfterFinished: the job goes, and the garbage collector takes its pod.
    wait_until(
        "the finished job ephemeral deleted with its pod",
        Duration::from_secs(60),
        || {
            let job = pp.kubectl(&["get", "job", "ephemeral"]);
            let pods = pp.kubectl_ok(&["get", "pods", "-l", "job-name=ephemeral", "-o", "name"]);
            (!job.status.success() && pods.trim().is_empty()).then_some(())
        },
    );
    let all = pp.kubectl_ok(&["get", "all", "-o", "name"]);
    assert!(all.contains("job.batch/three"), "{all}");
}

#[test]
fn cronjobs_start_jobs_on_schedule_and_by_hand() {
    let registry = Registry::start();
    let pp = Peapod::start();
    let image = format!("--image={}", registry.busybox());
    pp.kubectl_ok(&[
        "create",
        "cronjob",
        "tick",
        &image,
        "--schedule=* * * * *",
        "--",
        "sh",
        "-c",
        "echo tick",
    ]);
    let row = pp.kubectl_ok(&["get", "cj", "tick", "--no-headers"]);
    assert!(
        row.starts_with("tick") && row.contains("* * * * *") && row.contains("<none>"),
        "{row}"
    );
    assert_eq!(
        pp.jsonpath(
            "cronjob/tick",
            "{.spec.successfulJobsHistoryLimit} {.spec.concurrencyPolicy}"
        )
        .as_deref(),
        Some("3 Allow")
    );

    // By hand, from the template.
    pp.kubectl_ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    wait_condition(&pp, "by-hand", "complete");
    assert_eq!(
        pp.jsonpath(
            "job/by-hand",
            "{.metadata.annotations.cronjob\\.kubernetes\\.io/instantiate}"
        )
        .as_deref(),
        Some("manual")
    );

    // On schedule: a job named after the scheduled minute, within a minute or so.
    let name = wait_until("a scheduled job of tick", Duration::from_secs(90), || {
        let active = pp.jsonpath("cronjob/tick", "{.status.active[*].name}")?;
        let names = pp.kubectl_ok(&["get", "jobs", "-o", "jsonpath={.items[*].metadata.name}"]);
        names
            .split_whitespace()
            .chain(active.split_whitespace())
            .find(|n| {
                n.strip_prefix("tick-")
                    .is_some_and(|m| m.parse::<u64>().is_ok())
            })
            .map(str::to_string)
    });
    wait_condition(&pp, &name, "complete");
    let last = pp
        .jsonpath("cronjob/tick", "{.status.lastScheduleTime}")
        .unwrap_or_default();
    let minutes: u64 = name.trim_start_matches("tick-").parse().expect("minutes");
    let scheduled: jiff::Timestamp = last.parse().expect("lastScheduleTime");
    assert_eq!(
        scheduled.as_second(),
        i64::try_from(minutes * 60).expect("i64"),
        "{last}"
    );
    assert!(pp
        .kubectl_ok(&["logs", &format!("job/{name}")])
        .contains("tick"));
    wait_until(
        "SawCompletedJob and lastSuccessfulTime",
        Duration::from_secs(30),
        || {
            let reasons = event_reasons(&pp, "CronJob", "tick");
            let success = pp.jsonpath("cronjob/tick", "{.status.lastSuccessfulTime}")?;
            (reasons.contains("SuccessfulCreate")
                && reasons.contains("SawCompletedJob")
                && !success.is_empty())
            .then_some(())
        },
    );

    // A schedule the controller could not read is refused with the parser's reason.
    let bad = "apiVersion: batch/v1\nkind: CronJob\nmetadata:\n  name: bad\nspec:\n  schedule: \"61 * * * *\"\n  jobTemplate:\n    spec:\n      template:\n        spec:\n          restartPolicy: Never\n          containers:\n          - {name: c, image: busybox}\n";
    let mut child = pp
        .kubectl_cmd()
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(bad.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("kubectl");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains("spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"),
        "{err}"
    );
    pp.kubectl_ok(&[
        "patch",
        "cronjob",
        "tick",
        "--type=merge",
        "-p",
        r#"{"spec":{"suspend":true}}"#,
    ]);
    assert!(pp
        .kubectl_ok(&["get", "cj", "tick", "--no-headers"])
        .contains("True"));
}

const INDEX_RULES: &str = r#"apiVersion: batch/v1
kind: Job
metadata:
  name: per-index
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  backoffLimitPerIndex: 1
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "[ $JOB_COMPLETION_INDEX != 1 ]"]
---
apiVersion: batch/v1
kind: Job
metadata:
  name: leader
spec:
  completionMode: Indexed
  completions: 3
  parallelism: 3
  successPolicy:
    rules:
    - succeededIndexes: "0"
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: docker.io/library/busybox:latest
        imagePullPolicy: IfNotPresent
        command: ["sh", "-c", "[ $JOB_COMPLETION_INDEX = 0 ] || exec sleep 3600"]
"#;

#[test]
fn indexes_fail_on_their_own_and_a_success_policy_ends_a_job_early() {
    let pp = Peapod::start();
    pp.apply(INDEX_RULES);

    // Index 1 fails twice (the first try and one retry after the back-off), then is
    // failed; 0 and 2 complete; the job fails with FailedIndexes.
    wait_condition(&pp, "per-index", "failed");
    assert_eq!(
        condition_reason(&pp, "per-index", "Failed"),
        "FailedIndexes"
    );
    let status = pp
        .jsonpath(
            "job/per-index",
            "{.status.failedIndexes} {.status.completedIndexes} {.status.failed} {.status.succeeded}",
        )
        .unwrap_or_default();
    assert_eq!(status, "1 0,2 2 2");
    let counts = pp.kubectl_ok(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-completion-index=1,job-name=per-index",
        "-o",
        "jsonpath={range .items[*]}{.metadata.annotations.batch\\.kubernetes\\.io/job-index-failure-count}{\"\\n\"}{end}",
    ]);
    let mut counts: Vec<&str> = counts.lines().collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        ["0", "1"],
        "each retry carries the failures before it"
    );

    // Index 0 completing is enough: the job completes and its other pods are stopped.
    wait_condition(&pp, "leader", "complete");
    assert_eq!(condition_reason(&pp, "leader", "Complete"), "SuccessPolicy");
    assert_eq!(
        pp.jsonpath(
            "job/leader",
            "{.status.conditions[?(@.type==\"SuccessCriteriaMet\")].message}"
        )
        .as_deref(),
        Some("Matched rules at index 0")
    );
    wait_until(
        "the leader job's other pods stopped",
        Duration::from_secs(60),
        || {
            let running = pp.kubectl_ok(&[
                "get",
                "pods",
                "-l",
                "job-name=leader",
                "--field-selector=status.phase=Running",
                "-o",
                "name",
            ]);
            running.trim().is_empty().then_some(())
        },
    );
}
