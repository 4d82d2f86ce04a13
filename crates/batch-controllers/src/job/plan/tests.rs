//! The Job controller's decisions on hand-made jobs and pods, with a fixed clock.

use serde_json::{json, Value};

use super::*;
use crate::job::pods::TRACKING_FINALIZER;

fn now() -> Timestamp {
    "2026-01-02T15:00:00Z".parse().expect("time")
}

fn job(spec: Value, status: Value) -> Job {
    let mut s = json!({
        "completions": 1, "parallelism": 1, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": false, "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "j1"}},
        "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}},
    });
    if let (Some(base), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        for (k, v) in extra {
            base.insert(k.clone(), v.clone());
        }
    }
    serde_json::from_value(json!({
        "metadata": {"name": "work", "namespace": "ns", "uid": "j1"},
        "spec": s, "status": status,
    }))
    .expect("job")
}

/// A pod of the job: `phase` and, for finished ones, the exit code and finish time.
fn pod(name: &str, phase: &str, exit: Option<(i32, &str)>) -> Pod {
    let mut statuses = json!([]);
    if let Some((code, at)) = exit {
        statuses = json!([{"name": "main", "image": "busybox", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"terminated": {"exitCode": code, "finishedAt": at}}}]);
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"),
            "creationTimestamp": "2026-01-02T14:00:00Z",
            "finalizers": [TRACKING_FINALIZER],
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "work", "uid": "j1", "controller": true}]},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": phase, "containerStatuses": statuses},
    }))
    .expect("pod")
}

fn indexed_pod(name: &str, i: i32, phase: &str) -> Pod {
    let mut p = pod(name, phase, None);
    p.metadata.annotations =
        Some([(super::super::pods::INDEX_KEY.to_string(), i.to_string())].into());
    p
}

/// The three steps as the reconcile runs them, every finalizer removal succeeding.
fn run(job: &Job, pods: &[Pod]) -> (Tracking, Decision) {
    let t = track(job, pods, now());
    let mut j = job.clone();
    let mut status = t.status.clone();
    settle(job, &mut status);
    j.status = Some(status);
    let d = decide(&j, pods, now());
    (t, d)
}

fn types(d: &Decision) -> Vec<(String, String)> {
    d.status
        .conditions
        .iter()
        .flatten()
        .map(|c| (c.type_.clone(), c.reason.clone().unwrap_or_default()))
        .collect()
}

#[test]
fn a_new_job_gets_its_pods_and_a_start_time() {
    let (_, d) = run(
        &job(json!({"completions": 3, "parallelism": 2}), json!({})),
        &[],
    );
    assert_eq!(d.create, vec![None, None]);
    assert_eq!(d.status.active, Some(2));
    assert!(d.status.start_time.is_some());
    assert_eq!(d.status.uncounted_terminated_pods, Some(Default::default()));
    assert!(d.requeue.is_none());
}

#[test]
fn success_is_recorded_then_counted_then_complete() {
    let j = job(json!({}), json!({"startTime": "2026-01-02T14:59:00Z"}));
    let done = pod("a", "Succeeded", Some((0, "2026-01-02T14:59:30Z")));
    let t = track(&j, std::slice::from_ref(&done), now());
    assert!(t.changed);
    assert_eq!(t.release, vec!["a".to_string()]);
    let uncounted = t
        .status
        .uncounted_terminated_pods
        .clone()
        .unwrap_or_default();
    assert_eq!(uncounted.succeeded, Some(vec!["uid-a".to_string()]));
    // The pod has lost its finalizer by the time the job is judged.
    let mut released = done.clone();
    released.metadata.finalizers = None;
    let mut status = t.status;
    settle(&j, &mut status);
    assert_eq!(status.succeeded, Some(1));
    let mut counted = j.clone();
    counted.status = Some(status);
    let d = decide(&counted, &[released], now());
    assert_eq!(
        types(&d),
        vec![
            ("SuccessCriteriaMet".into(), "CompletionsReached".into()),
            ("Complete".into(), "CompletionsReached".into())
        ]
    );
    assert!(d.status.completion_time.is_some());
    assert_eq!(
        d.notes,
        vec![note(EventType::Normal, "Completed", "Job completed")]
    );
    assert!(d.create.is_empty());
}

#[test]
fn a_recorded_pod_is_not_recorded_twice() {
    let j = job(
        json!({}),
        json!({"uncountedTerminatedPods": {"succeeded": ["uid-a"]}}),
    );
    let t = track(
        &j,
        &[pod("a", "Succeeded", Some((0, "2026-01-02T14:59:30Z")))],
        now(),
    );
    assert!(!t.changed);
    assert_eq!(t.release, vec!["a".to_string()]);
}

#[test]
fn failures_back_off_then_hit_the_limit() {
    let j = job(
        json!({"backoffLimit": 1}),
        json!({"startTime": "2026-01-02T14:58:00Z"}),
    );
    let first = pod("a", "Failed", Some((1, "2026-01-02T14:59:55Z")));
    let (t, d) = run(&j, std::slice::from_ref(&first));
    assert_eq!(
        t.status
            .uncounted_terminated_pods
            .and_then(|u| u.failed)
            .map(|f| f.len()),
        Some(1)
    );
    // One failure 5 s ago: 5 s of the 10 s back-off are left before a replacement.
    assert!(d.create.is_empty());
    assert_eq!(d.requeue, Some(Duration::from_secs(5)));
    assert_eq!(d.status.failed, Some(1));

    let counted = job(
        json!({"backoffLimit": 1}),
        json!({"startTime": "2026-01-02T14:58:00Z", "failed": 1}),
    );
    let mut a = first.clone();
    a.metadata.finalizers = None;
    let second = pod("b", "Failed", Some((1, "2026-01-02T14:59:58Z")));
    let (_, d) = run(&counted, &[a, second]);
    assert_eq!(d.status.failed, Some(2));
    assert_eq!(
        types(&d),
        vec![
            ("FailureTarget".into(), "BackoffLimitExceeded".into()),
            ("Failed".into(), "BackoffLimitExceeded".into())
        ]
    );
    assert_eq!(d.notes[0].reason, "BackoffLimitExceeded");
    assert_eq!(
        d.notes[0].message,
        "Job has reached the specified backoff limit"
    );
}

#[test]
fn the_deadline_fails_the_job_after_its_pods_stop() {
    let j = job(
        json!({"activeDeadlineSeconds": 30}),
        json!({"startTime": "2026-01-02T14:59:00Z"}),
    );
    let running = pod("a", "Running", None);
    let (_, d) = run(&j, std::slice::from_ref(&running));
    assert_eq!(
        types(&d),
        vec![("FailureTarget".into(), "DeadlineExceeded".into())]
    );
    assert_eq!(d.delete, vec!["a".to_string()]);
    // Once the pod is gone the job is Failed.
    let mut later = j.clone();
    later.status = Some(d.status);
    let (_, d) = run(&later, &[]);
    assert_eq!(types(&d)[1], ("Failed".into(), "DeadlineExceeded".into()));
    // Before the deadline the job is looked at again when it falls due.
    let fresh = job(
        json!({"activeDeadlineSeconds": 90}),
        json!({"startTime": "2026-01-02T14:59:00Z"}),
    );
    let (_, d) = run(&fresh, &[running]);
    assert_eq!(d.requeue, Some(Duration::from_secs(30)));
}

#[test]
fn pod_failure_policy_rules() {
    let spec = json!({"podReplacementPolicy": "Failed", "podFailurePolicy": {"rules": [
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
    ]}});
    let j = job(spec, json!({"startTime": "2026-01-02T14:59:00Z"}));
    let fatal = pod("a", "Failed", Some((42, "2026-01-02T14:59:30Z")));
    assert_eq!(
        verdict(j.spec.as_ref().expect("spec"), &fatal),
        Verdict::FailJob(
            "Container main for pod ns/a failed with exit code 42 matching FailJob rule at index 0"
                .into()
        )
    );
    let t = track(&j, std::slice::from_ref(&fatal), now());
    let conds = t.status.conditions.clone().unwrap_or_default();
    assert_eq!(conds[0].type_, "FailureTarget");
    assert_eq!(conds[0].reason.as_deref(), Some("PodFailurePolicy"));

    let mut evicted = pod("b", "Failed", Some((137, "2026-01-02T14:59:30Z")));
    if let Some(s) = evicted.status.as_mut() {
        s.conditions = Some(vec![serde_json::from_value(
            json!({"type": "DisruptionTarget", "status": "True"}),
        )
        .expect("cond")]);
    }
    assert_eq!(
        verdict(j.spec.as_ref().expect("spec"), &evicted),
        Verdict::Ignore
    );
    let (t, d) = run(&j, &[evicted]);
    // Ignored: released, not counted, replaced at once.
    assert_eq!(t.release, vec!["b".to_string()]);
    assert!(!t.changed);
    assert_eq!(d.status.failed, None);
    assert_eq!(d.create, vec![None]);
}

#[test]
fn indexed_jobs_run_each_missing_index_once() {
    let j = job(
        json!({"completionMode": "Indexed", "completions": 4, "parallelism": 2}),
        json!({"startTime": "2026-01-02T14:59:00Z", "completedIndexes": "0"}),
    );
    let pods = [
        indexed_pod("w1", 1, "Running"),
        indexed_pod("w1b", 1, "Pending"),
    ];
    let (_, d) = run(&j, &pods);
    // Index 1 runs twice: one goes; index 2 starts in the free slot.
    assert_eq!(d.delete, vec!["w1b".to_string()]);
    assert_eq!(d.create, vec![Some(2)]);

    let finished = [indexed_pod("w3", 3, "Succeeded")];
    let t = track(&j, &finished, now());
    assert_eq!(t.status.completed_indexes.as_deref(), Some("0,3"));
    let (_, d) = run(&j, &finished);
    assert_eq!(d.status.succeeded, Some(2));
    assert_eq!(d.create, vec![Some(1), Some(2)]);
}

#[test]
fn suspend_and_resume() {
    let j = job(
        json!({"suspend": true}),
        json!({"startTime": "2026-01-02T14:00:00Z"}),
    );
    let (_, d) = run(&j, &[pod("a", "Running", None)]);
    assert_eq!(d.delete, vec!["a".to_string()]);
    assert_eq!(types(&d), vec![("Suspended".into(), "JobSuspended".into())]);
    assert_eq!(d.notes[0].reason, "Suspended");
    let mut resumed = job(json!({}), json!({}));
    resumed.status = Some(d.status);
    let (_, d) = run(&resumed, &[]);
    let c = d.status.conditions.clone().unwrap_or_default();
    assert_eq!(
        (c[0].status.as_str(), c[0].reason.as_deref()),
        ("False", Some("JobResumed"))
    );
    assert_eq!(d.status.start_time, Some(Time(now())));
    assert_eq!(d.create, vec![None]);
}

#[test]
fn finished_jobs_expire_after_their_ttl() {
    let status = json!({"startTime": "2026-01-02T14:58:00Z", "completionTime": "2026-01-02T14:59:00Z",
        "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
    let (_, d) = run(
        &job(json!({"ttlSecondsAfterFinished": 100}), status.clone()),
        &[],
    );
    assert_eq!(d.requeue, Some(Duration::from_secs(40)));
    assert!(!d.delete_job);
    let (_, d) = run(&job(json!({"ttlSecondsAfterFinished": 30}), status), &[]);
    assert!(d.delete_job);
}

#[test]
fn without_completions_the_first_success_ends_the_job() {
    let j = job(
        json!({"completions": null, "parallelism": 2}),
        json!({"startTime": "2026-01-02T14:58:00Z", "succeeded": 1}),
    );
    let (_, d) = run(&j, &[pod("b", "Running", None)]);
    // No new pods after a success; the job waits for the running one.
    assert!(d.create.is_empty() && d.delete.is_empty());
    let (_, d) = run(&j, &[]);
    assert_eq!(types(&d)[1].0, "Complete");
}

/// A failed pod of index `i` that carried `failures` earlier failures, finished at `at`.
fn failed_index_pod(name: &str, i: i32, failures: i32, at: &str) -> Pod {
    let mut p = pod(name, "Failed", Some((1, at)));
    p.metadata.annotations = Some(
        [
            (super::super::pods::INDEX_KEY.to_string(), i.to_string()),
            (
                super::super::pods::FAILURE_COUNT_KEY.to_string(),
                failures.to_string(),
            ),
        ]
        .into(),
    );
    p
}

#[test]
fn backoff_limit_per_index_fails_an_index_and_lets_the_others_finish() {
    let spec = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3,
        "backoffLimit": i32::MAX, "backoffLimitPerIndex": 1});
    // Index 0 failed once (count 0): replaced after the back-off, carrying count 1.
    let j = job(spec.clone(), json!({"startTime": "2026-01-02T14:00:00Z"}));
    let first = failed_index_pod("a", 0, 0, "2026-01-02T14:59:30Z");
    let (t, d) = run(&j, &[first.clone(), indexed_pod("b", 1, "Running")]);
    assert_eq!(t.status.failed_indexes.as_deref(), Some(""));
    assert_eq!(d.create, vec![Some(0), Some(2)]);
    assert_eq!(d.index_failures.get(&0), Some(&(1, 0)));
    assert_eq!(d.index_failures.get(&2), Some(&(0, 0)));
    // Within the back-off (10 s after the failure) index 0 waits; index 2 does not.
    let early = job(spec.clone(), json!({"startTime": "2026-01-02T14:00:00Z"}));
    let recent = failed_index_pod("a", 0, 0, "2026-01-02T14:59:55Z");
    let (_, d) = run(&early, &[recent, indexed_pod("b", 1, "Running")]);
    assert_eq!(d.create, vec![Some(2)]);
    assert_eq!(d.requeue, Some(Duration::from_secs(5)));

    // Its replacement fails too (count 1 = the limit): index 0 is failed, not run again;
    // the job goes on with the others, then fails with FailedIndexes.
    let again = failed_index_pod("c", 0, 1, "2026-01-02T14:59:40Z");
    let (t, d) = run(
        &j,
        &[
            first,
            again,
            indexed_pod("b", 1, "Running"),
            indexed_pod("e", 2, "Running"),
        ],
    );
    assert_eq!(t.status.failed_indexes.as_deref(), Some("0"));
    assert!(d.create.is_empty(), "{:?}", d.create);
    assert!(types(&d).is_empty(), "{:?}", types(&d));
    let finished = job(
        spec,
        json!({"startTime": "2026-01-02T14:00:00Z", "failed": 2, "succeeded": 2,
            "completedIndexes": "1-2", "failedIndexes": "0",
            "uncountedTerminatedPods": {}}),
    );
    let d = decide(&finished, &[], now());
    assert_eq!(
        types(&d),
        [
            ("FailureTarget".to_string(), "FailedIndexes".to_string()),
            ("Failed".to_string(), "FailedIndexes".to_string())
        ]
    );
}

#[test]
fn max_failed_indexes_and_fail_index_rules() {
    let spec = json!({"completionMode": "Indexed", "completions": 4, "parallelism": 4,
        "backoffLimit": i32::MAX, "backoffLimitPerIndex": 3, "maxFailedIndexes": 0,
        "podFailurePolicy": {"rules": [{"action": "FailIndex",
            "onExitCodes": {"operator": "In", "values": [1]}}]}});
    let j = job(spec, json!({"startTime": "2026-01-02T14:00:00Z"}));
    let (t, d) = run(
        &j,
        &[
            failed_index_pod("a", 2, 0, "2026-01-02T14:59:30Z"),
            indexed_pod("b", 0, "Running"),
        ],
    );
    assert_eq!(t.status.failed_indexes.as_deref(), Some("2"));
    assert_eq!(
        types(&d),
        [(
            "FailureTarget".to_string(),
            "MaxFailedIndexesExceeded".to_string()
        )]
    );
    assert_eq!(d.delete, ["b"]);
}

#[test]
fn a_success_policy_ends_the_job_early() {
    let spec = json!({"completionMode": "Indexed", "completions": 3, "parallelism": 3,
        "successPolicy": {"rules": [{"succeededIndexes": "0"}]}});
    let j = job(spec, json!({"startTime": "2026-01-02T14:00:00Z"}));
    let done = {
        let mut p = pod("a", "Succeeded", Some((0, "2026-01-02T14:59:30Z")));
        p.metadata.annotations =
            Some([(super::super::pods::INDEX_KEY.to_string(), "0".to_string())].into());
        p
    };
    let (_, d) = run(&j, &[done, indexed_pod("b", 1, "Running")]);
    let conds: Vec<_> = d.status.conditions.iter().flatten().collect();
    assert_eq!(conds[0].type_, "SuccessCriteriaMet");
    assert_eq!(conds[0].reason.as_deref(), Some("SuccessPolicy"));
    assert_eq!(
        conds[0].message.as_deref(),
        Some("Matched rules at index 0")
    );
    assert_eq!(d.delete, ["b"]);
    assert!(d.create.is_empty());
}
