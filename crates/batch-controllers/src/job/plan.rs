//! The Job controller's decisions, pure and unit-tested: given the job, its pods and the
//! time, what to record and what to do.
//!
//! Counting follows kube-controller-manager v1.33's finalizer tracking: a finished pod that
//! still holds the tracking finalizer is first recorded by uid in
//! `status.uncountedTerminatedPods` ([`track`]), then loses its finalizer, then moves into
//! `succeeded`/`failed` ([`settle`]); a crash between any two steps neither loses nor
//! double-counts a pod. [`decide`] then judges the job — failure (pod failure policy,
//! `backoffLimit`, `activeDeadlineSeconds`) before success, each first as the interim
//! `FailureTarget`/`SuccessCriteriaMet` condition and as `Failed`/`Complete` once no pod
//! runs any more — and, while it runs, which pods to create or delete (suspension,
//! parallelism, completions, Indexed indexes, the failure back-off) and when to look again
//! (back-off, deadline, `ttlSecondsAfterFinished`). Indexed jobs may also fail index by
//! index (`backoffLimitPerIndex`, [`per_index`](super::per_index)) and succeed early by a
//! `successPolicy` ([`success`](super::success)).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, JobStatus, PodFailurePolicyRule, UncountedTerminatedPods,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use controller_base::events::EventType;

use super::backoff;
use super::indexes;
use super::per_index::{self, Next};
use super::pods::{
    finished_at, has_finalizer, index, is_ready, is_terminating, restarts, state, State,
};
use super::success;

/// What [`track`] found: the status to store before any finalizer goes, and the pods whose
/// finalizer may go once it is stored.
#[derive(Debug)]
pub(super) struct Tracking {
    pub status: JobStatus,
    pub changed: bool,
    pub release: Vec<String>,
}

/// One event about the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What [`decide`] wants done.
#[derive(Debug, Default)]
pub(super) struct Decision {
    pub status: JobStatus,
    /// One entry per pod to create: its completion index for Indexed jobs.
    pub create: Vec<Option<i32>>,
    /// With `backoffLimitPerIndex`: the failure and ignored-failure counts each index's new
    /// pod carries.
    pub index_failures: BTreeMap<i32, (i32, i32)>,
    /// Pods to delete (their finalizer goes first, so they are not counted as failures).
    pub delete: Vec<String>,
    pub notes: Vec<Note>,
    /// Look again after this long even without events.
    pub requeue: Option<Duration>,
    /// `ttlSecondsAfterFinished` has passed: delete the job.
    pub delete_job: bool,
}

const BACKOFF_REASON: &str = "BackoffLimitExceeded";
const BACKOFF_MESSAGE: &str = "Job has reached the specified backoff limit";
const DEADLINE_REASON: &str = "DeadlineExceeded";
const DEADLINE_MESSAGE: &str = "Job was active longer than specified deadline";
const POLICY_REASON: &str = "PodFailurePolicy";
const COMPLETIONS_REASON: &str = "CompletionsReached";
const COMPLETIONS_MESSAGE: &str = "Reached expected number of succeeded pods";
const MAX_FAILED_INDEXES_REASON: &str = "MaxFailedIndexesExceeded";
const MAX_FAILED_INDEXES_MESSAGE: &str =
    "Job has exceeded the specified maximal number of failed indexes";
const FAILED_INDEXES_REASON: &str = "FailedIndexes";
const FAILED_INDEXES_MESSAGE: &str = "Job has failed indexes";
const SUCCESS_POLICY_REASON: &str = "SuccessPolicy";

fn spec(job: &Job) -> JobSpec {
    job.spec.clone().unwrap_or_default()
}

fn indexed(spec: &JobSpec) -> bool {
    spec.completion_mode.as_deref() == Some("Indexed")
}

/// `backoffLimitPerIndex`, for the Indexed jobs it applies to.
fn per_index_limit(spec: &JobSpec) -> Option<i32> {
    spec.backoff_limit_per_index.filter(|_| indexed(spec))
}

fn completed_indexes(spec: &JobSpec, status: &JobStatus) -> BTreeSet<i32> {
    indexes::parse(
        status.completed_indexes.as_deref().unwrap_or(""),
        spec.completions.unwrap_or(0),
    )
}

fn failed_indexes(spec: &JobSpec, status: &JobStatus) -> BTreeSet<i32> {
    indexes::parse(
        status.failed_indexes.as_deref().unwrap_or(""),
        spec.completions.unwrap_or(0),
    )
}

/// `podReplacementPolicy: Failed`: a deleted pod is a failure only once its phase says so.
fn only_failed(spec: &JobSpec) -> bool {
    spec.pod_replacement_policy.as_deref() == Some("Failed")
}

fn condition_true<'a>(conds: &'a [JobCondition], type_: &str) -> Option<&'a JobCondition> {
    conds
        .iter()
        .find(|c| c.type_ == type_ && c.status == "True")
}

fn new_condition(type_: &str, reason: &str, message: &str, now: Timestamp) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// Sets condition `type_` to `status`; only an existing condition is set to `False`.
/// Returns whether anything changed.
fn ensure_condition(
    conds: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) if c.status == status => false,
        Some(c) => {
            *c = JobCondition {
                status: status.into(),
                ..new_condition(type_, reason, message, now)
            };
            true
        }
        None if status == "True" => {
            conds.push(new_condition(type_, reason, message, now));
            true
        }
        None => false,
    }
}

/// What the pod failure policy says about a failed pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Counts towards `backoffLimit` (no rule matched, or a `Count` rule).
    Count,
    /// Not counted; the pod is replaced.
    Ignore,
    /// Counted, and the pod's index is failed at once (`backoffLimitPerIndex` jobs).
    FailIndex,
    /// The job fails at once, for this reason.
    FailJob(String),
}

/// The first matching rule of the job's `podFailurePolicy` for a failed `pod`.
pub(super) fn verdict(spec: &JobSpec, pod: &Pod) -> Verdict {
    let Some(policy) = spec.pod_failure_policy.as_ref() else {
        return Verdict::Count;
    };
    let who = format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any());
    for (i, rule) in policy.rules.iter().enumerate() {
        let Some(what) = rule_match(rule, pod, &who) else {
            continue;
        };
        return match rule.action.as_str() {
            "Ignore" => Verdict::Ignore,
            "FailJob" => Verdict::FailJob(format!("{what} matching FailJob rule at index {i}")),
            "FailIndex" if per_index_limit(spec).is_some() => Verdict::FailIndex,
            _ => Verdict::Count,
        };
    }
    Verdict::Count
}

/// The text of a rule that matches `pod` (`Container main for pod ns/p failed with exit
/// code 42`), `None` when it does not.
fn rule_match(rule: &PodFailurePolicyRule, pod: &Pod, who: &str) -> Option<String> {
    let status = pod.status.as_ref()?;
    if let Some(req) = rule.on_exit_codes.as_ref() {
        let statuses = status
            .container_statuses
            .iter()
            .flatten()
            .chain(status.init_container_statuses.iter().flatten());
        for cs in statuses {
            let Some(code) = cs
                .state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(|t| t.exit_code)
            else {
                continue;
            };
            if code == 0 || req.container_name.as_ref().is_some_and(|n| *n != cs.name) {
                continue;
            }
            let listed = req.values.contains(&code);
            let hit = match req.operator.as_str() {
                "In" => listed,
                "NotIn" => !listed,
                _ => false,
            };
            if hit {
                return Some(format!(
                    "Container {} for pod {who} failed with exit code {code}",
                    cs.name
                ));
            }
        }
    }
    for pattern in rule.on_pod_conditions.iter().flatten() {
        let want = if pattern.status.is_empty() {
            "True"
        } else {
            pattern.status.as_str()
        };
        let found = status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == pattern.type_ && c.status == want);
        if found {
            return Some(format!("Pod {who} has condition {}", pattern.type_));
        }
    }
    None
}

/// Step one: record newly finished pods that hold the finalizer as uncounted (and, for
/// Indexed jobs, their index as completed); a failure the pod failure policy makes fatal
/// becomes the `FailureTarget` condition in the same write.
pub(super) fn track(job: &Job, pods: &[Pod], now: Timestamp) -> Tracking {
    let spec = spec(job);
    let mut status = job.status.clone().unwrap_or_default();
    let mut uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let mut conds = status.conditions.take().unwrap_or_default();
    let completions = spec.completions.unwrap_or(0);
    let mut done = completed_indexes(&spec, &status);
    let mut failed_idx = failed_indexes(&spec, &status);
    let mut release = Vec::new();
    let mut changed = false;
    for pod in pods.iter().filter(|p| has_finalizer(p)) {
        let uid = pod.uid().unwrap_or_default();
        let known = |l: &Option<Vec<String>>| l.iter().flatten().any(|u| *u == uid);
        if known(&uncounted.succeeded) || known(&uncounted.failed) {
            release.push(pod.name_any());
            continue;
        }
        match state(pod, only_failed(&spec)) {
            State::Active | State::Terminating => continue,
            State::Succeeded => {
                changed = true;
                uncounted.succeeded.get_or_insert_with(Vec::new).push(uid);
                if let Some(i) = index(pod, completions).filter(|_| indexed(&spec)) {
                    done.insert(i);
                }
            }
            State::Failed => match verdict(&spec, pod) {
                // Not counted at all: the finalizer just goes.
                Verdict::Ignore => {}
                Verdict::Count => {
                    changed = true;
                    uncounted.failed.get_or_insert_with(Vec::new).push(uid);
                    let i = index(pod, completions);
                    if let (Some(limit), Some(i)) = (per_index_limit(&spec), i) {
                        if per_index::exhausted(pod, limit) {
                            failed_idx.insert(i);
                        }
                    }
                }
                Verdict::FailIndex => {
                    changed = true;
                    uncounted.failed.get_or_insert_with(Vec::new).push(uid);
                    if let Some(i) = index(pod, completions) {
                        failed_idx.insert(i);
                    }
                }
                Verdict::FailJob(message) => {
                    changed = true;
                    uncounted.failed.get_or_insert_with(Vec::new).push(uid);
                    let decided = ["FailureTarget", "SuccessCriteriaMet", "Failed", "Complete"]
                        .iter()
                        .any(|t| condition_true(&conds, t).is_some());
                    if !decided {
                        conds.push(new_condition("FailureTarget", POLICY_REASON, &message, now));
                    }
                }
            },
        }
        release.push(pod.name_any());
    }
    if indexed(&spec) {
        status.completed_indexes = Some(indexes::format(&done));
    }
    if per_index_limit(&spec).is_some() {
        status.failed_indexes = Some(indexes::format(&failed_idx));
    }
    status.uncounted_terminated_pods = Some(uncounted);
    status.conditions = (!conds.is_empty()).then_some(conds);
    Tracking {
        status,
        changed,
        release,
    }
}

/// Step two, once every recorded pod has lost its finalizer: the uncounted pods move into
/// the counters (an Indexed job counts its completed indexes as succeeded).
pub(super) fn settle(job: &Job, status: &mut JobStatus) {
    let spec = spec(job);
    let uncounted = status.uncounted_terminated_pods.take().unwrap_or_default();
    let n = |l: Option<Vec<String>>| i32::try_from(l.unwrap_or_default().len()).unwrap_or(0);
    let (ok, failed) = (n(uncounted.succeeded), n(uncounted.failed));
    if indexed(&spec) {
        let done = indexes::parse(
            status.completed_indexes.as_deref().unwrap_or(""),
            spec.completions.unwrap_or(0),
        );
        status.succeeded = Some(i32::try_from(done.len()).unwrap_or(i32::MAX));
    } else {
        status.succeeded = Some(status.succeeded.unwrap_or(0) + ok);
    }
    status.failed = Some(status.failed.unwrap_or(0) + failed);
    status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
}

/// Step three: judge the job and plan its pods. `job.status` is the settled status.
pub(super) fn decide(job: &Job, pods: &[Pod], now: Timestamp) -> Decision {
    let spec = spec(job);
    let mut status = job.status.clone().unwrap_or_default();
    let mut conds = status.conditions.take().unwrap_or_default();
    let mut d = Decision::default();
    let active: Vec<&Pod> = pods
        .iter()
        .filter(|p| state(p, only_failed(&spec)) == State::Active)
        .collect();
    let terminating = pods.iter().filter(|p| is_terminating(p)).count();
    let succeeded = status.succeeded.unwrap_or(0);

    let finished = ["Complete", "Failed"]
        .iter()
        .find_map(|t| condition_true(&conds, t).cloned());
    if let Some(done) = finished {
        d.delete = active.iter().map(|p| p.name_any()).collect();
        ttl(&spec, &status, &done, now, &mut d);
        finish_status(&mut status, conds, 0, 0, terminating);
        d.status = status;
        return d;
    }

    if status.start_time.is_none() && spec.suspend != Some(true) {
        status.start_time = Some(Time(now));
    }
    let interim = ["FailureTarget", "SuccessCriteriaMet"]
        .iter()
        .find_map(|t| condition_true(&conds, t).cloned());
    let interim = interim.or_else(|| {
        let new = judge(&spec, &status, &active, now)?;
        conds.push(new.clone());
        Some(new)
    });
    if let Some(target) = interim {
        d.delete = active.iter().map(|p| p.name_any()).collect();
        let settled = status.uncounted_terminated_pods.as_ref().is_none_or(|u| {
            u.succeeded.as_ref().is_none_or(Vec::is_empty)
                && u.failed.as_ref().is_none_or(Vec::is_empty)
        });
        if active.is_empty() && terminating == 0 && settled {
            conclude(&target, &mut conds, &mut status, now, &mut d);
            let final_cond = conds.last().cloned().unwrap_or(target);
            ttl(&spec, &status, &final_cond, now, &mut d);
        }
        finish_status(&mut status, conds, 0, 0, terminating);
        d.status = status;
        return d;
    }

    // Running: suspension first.
    let suspended = spec.suspend == Some(true);
    if suspended {
        if ensure_condition(
            &mut conds,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            d.notes
                .push(note(EventType::Normal, "Suspended", "Job suspended"));
        }
        d.delete = active.iter().map(|p| p.name_any()).collect();
        finish_status(&mut status, conds, 0, 0, terminating);
        d.status = status;
        return d;
    }
    if ensure_condition(
        &mut conds,
        "Suspended",
        "False",
        "JobResumed",
        "Job resumed",
        now,
    ) {
        d.notes
            .push(note(EventType::Normal, "Resumed", "Job resumed"));
        // The deadline counts time spent running, from the resume on.
        status.start_time = Some(Time(now));
    }
    if let (Some(limit), Some(start)) = (spec.active_deadline_seconds, status.start_time.as_ref()) {
        let end = start.0 + jiff::SignedDuration::from_secs(limit);
        d.requeue = Some(Duration::try_from(end.duration_since(now)).unwrap_or(Duration::ZERO));
    }

    let (create, delete) = if indexed(&spec) {
        plan_indexed(&spec, &status, &active)
    } else {
        plan_non_indexed(&spec, succeeded, &active, terminating)
    };
    if per_index_limit(&spec).is_some() {
        // Each index waits out its own back-off.
        let completions = spec.completions.unwrap_or(0);
        let ignored = |p: &Pod| verdict(&spec, p) == Verdict::Ignore;
        for i in create.into_iter().flatten() {
            let next = Next::of(pods, i, completions, only_failed(&spec), &ignored);
            let wait = next.wait(now);
            if wait.is_zero() {
                d.create.push(Some(i));
                d.index_failures.insert(i, (next.failures, next.ignored));
            } else {
                d.requeue = Some(d.requeue.map_or(wait, |r| r.min(wait)));
            }
        }
    } else {
        let wait = backoff_record(&spec, pods).remaining(now);
        if !create.is_empty() && !wait.is_zero() {
            d.requeue = Some(d.requeue.map_or(wait, |r| r.min(wait)));
        } else {
            d.create = create;
        }
    }
    d.delete = delete;
    let ready = active
        .iter()
        .filter(|p| is_ready(p) && !d.delete.contains(&p.name_any()))
        .count();
    let active_after = active.len() - d.delete.len().min(active.len()) + d.create.len();
    finish_status(&mut status, conds, active_after, ready, terminating);
    d.status = status;
    d
}

fn note(type_: EventType, reason: &'static str, message: &str) -> Note {
    Note {
        type_,
        reason,
        message: message.into(),
    }
}

fn finish_status(
    status: &mut JobStatus,
    conds: Vec<JobCondition>,
    active: usize,
    ready: usize,
    terminating: usize,
) {
    let n = |v: usize| i32::try_from(v).unwrap_or(i32::MAX);
    status.active = (active > 0).then(|| n(active));
    status.ready = Some(n(ready));
    status.terminating = Some(n(terminating));
    status.conditions = (!conds.is_empty()).then_some(conds);
    if status.uncounted_terminated_pods.is_none() {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    }
    for counter in [&mut status.succeeded, &mut status.failed] {
        if *counter == Some(0) {
            *counter = None;
        }
    }
}

/// A new interim condition: failure (back-off limit, deadline) before success.
fn judge(
    spec: &JobSpec,
    status: &JobStatus,
    active: &[&Pod],
    now: Timestamp,
) -> Option<JobCondition> {
    let limit = i64::from(spec.backoff_limit.unwrap_or(6));
    let failed = i64::from(status.failed.unwrap_or(0));
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    // With OnFailure, failures are container restarts inside running pods.
    let restarted: i64 = if on_failure {
        active.iter().map(|p| restarts(p)).sum()
    } else {
        0
    };
    let past_restarts = on_failure
        && if limit == 0 {
            restarted > 0
        } else {
            restarted >= limit
        };
    if failed > limit || past_restarts {
        return Some(new_condition(
            "FailureTarget",
            BACKOFF_REASON,
            BACKOFF_MESSAGE,
            now,
        ));
    }
    let done = completed_indexes(spec, status);
    if per_index_limit(spec).is_some() {
        let lost = failed_indexes(spec, status);
        let too_many = spec
            .max_failed_indexes
            .is_some_and(|max| i64::try_from(lost.len()).unwrap_or(i64::MAX) > i64::from(max));
        if too_many {
            return Some(new_condition(
                "FailureTarget",
                MAX_FAILED_INDEXES_REASON,
                MAX_FAILED_INDEXES_MESSAGE,
                now,
            ));
        }
        let all = usize::try_from(spec.completions.unwrap_or(0)).unwrap_or(0);
        if !lost.is_empty() && done.union(&lost).count() >= all {
            return Some(new_condition(
                "FailureTarget",
                FAILED_INDEXES_REASON,
                FAILED_INDEXES_MESSAGE,
                now,
            ));
        }
    }
    if let (Some(secs), Some(start)) = (spec.active_deadline_seconds, status.start_time.as_ref()) {
        if spec.suspend != Some(true) && now >= start.0 + jiff::SignedDuration::from_secs(secs) {
            return Some(new_condition(
                "FailureTarget",
                DEADLINE_REASON,
                DEADLINE_MESSAGE,
                now,
            ));
        }
    }
    if indexed(spec) {
        if let Some(rule) = success::matched_rule(spec, &done) {
            return Some(new_condition(
                "SuccessCriteriaMet",
                SUCCESS_POLICY_REASON,
                &format!("Matched rules at index {rule}"),
                now,
            ));
        }
    }
    let succeeded = status.succeeded.unwrap_or(0);
    let complete = match spec.completions {
        Some(c) => succeeded >= c,
        None => succeeded > 0 && active.is_empty(),
    };
    complete.then(|| {
        new_condition(
            "SuccessCriteriaMet",
            COMPLETIONS_REASON,
            COMPLETIONS_MESSAGE,
            now,
        )
    })
}

/// Turns the interim condition into the terminal one, once no pod runs.
fn conclude(
    target: &JobCondition,
    conds: &mut Vec<JobCondition>,
    status: &mut JobStatus,
    now: Timestamp,
    d: &mut Decision,
) {
    let reason = target.reason.clone().unwrap_or_default();
    let message = target.message.clone().unwrap_or_default();
    if target.type_ == "SuccessCriteriaMet" {
        conds.push(new_condition("Complete", &reason, &message, now));
        status.completion_time = Some(Time(now));
        d.notes
            .push(note(EventType::Normal, "Completed", "Job completed"));
    } else {
        conds.push(new_condition("Failed", &reason, &message, now));
        let reason: &'static str = match reason.as_str() {
            BACKOFF_REASON => BACKOFF_REASON,
            DEADLINE_REASON => DEADLINE_REASON,
            MAX_FAILED_INDEXES_REASON => MAX_FAILED_INDEXES_REASON,
            FAILED_INDEXES_REASON => FAILED_INDEXES_REASON,
            _ => POLICY_REASON,
        };
        d.notes.push(note(EventType::Warning, reason, &message));
    }
}

/// `ttlSecondsAfterFinished`: delete the job once that long has passed since it finished.
fn ttl(spec: &JobSpec, status: &JobStatus, done: &JobCondition, now: Timestamp, d: &mut Decision) {
    let Some(secs) = spec.ttl_seconds_after_finished else {
        return;
    };
    let finished = status
        .completion_time
        .as_ref()
        .filter(|_| done.type_ == "Complete")
        .or(done.last_transition_time.as_ref())
        .map_or(now, |t| t.0);
    let expires = finished + jiff::SignedDuration::from_secs(i64::from(secs));
    if now >= expires {
        d.delete_job = true;
    } else {
        let left = Duration::try_from(expires.duration_since(now)).unwrap_or(Duration::ZERO);
        d.requeue = Some(d.requeue.map_or(left, |r| r.min(left)));
    }
}

/// Order in which surplus pods go (upstream `ActivePods`): unscheduled, then pending,
/// then not ready, then the newest.
fn removal_order(pods: &mut [&Pod]) {
    pods.sort_by_key(|p| {
        let scheduled = p.spec.as_ref().and_then(|s| s.node_name.as_ref()).is_some();
        let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
        let created = p
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(i128::MAX, |t| t.0.as_nanosecond());
        (scheduled, running, is_ready(p), std::cmp::Reverse(created))
    });
}

fn plan_non_indexed(
    spec: &JobSpec,
    succeeded: i32,
    active: &[&Pod],
    terminating: usize,
) -> (Vec<Option<i32>>, Vec<String>) {
    let parallelism = i64::from(spec.parallelism.unwrap_or(1));
    let running = i64::try_from(active.len()).unwrap_or(i64::MAX);
    let want = match spec.completions {
        None if succeeded > 0 => running,
        None => parallelism,
        Some(c) => (i64::from(c) - i64::from(succeeded)).clamp(0, parallelism),
    };
    // With `podReplacementPolicy: Failed`, a terminating pod still holds its slot.
    let held = if only_failed(spec) {
        i64::try_from(terminating).unwrap_or(0)
    } else {
        0
    };
    let have = running + held;
    if have > want {
        let mut order = active.to_vec();
        removal_order(&mut order);
        let surplus = usize::try_from(have - want).unwrap_or(0);
        (
            Vec::new(),
            order.iter().take(surplus).map(|p| p.name_any()).collect(),
        )
    } else {
        let n = usize::try_from(want - have).unwrap_or(0);
        (vec![None; n], Vec::new())
    }
}

fn plan_indexed(
    spec: &JobSpec,
    status: &JobStatus,
    active: &[&Pod],
) -> (Vec<Option<i32>>, Vec<String>) {
    let completions = spec.completions.unwrap_or(0);
    let parallelism = usize::try_from(spec.parallelism.unwrap_or(1)).unwrap_or(0);
    // A failed index is as finished as a completed one: it runs no more.
    let mut done = completed_indexes(spec, status);
    done.extend(failed_indexes(spec, status));
    let mut by_index: BTreeMap<i32, Vec<&Pod>> = BTreeMap::new();
    let mut delete = Vec::new();
    for pod in active {
        match index(pod, completions) {
            Some(i) if !done.contains(&i) => by_index.entry(i).or_default().push(pod),
            // No valid index, or one already completed.
            _ => delete.push(pod.name_any()),
        }
    }
    let mut keep: Vec<&Pod> = Vec::new();
    for pods in by_index.values_mut() {
        // One pod per index: the one upstream would keep is the last in removal order.
        removal_order(pods);
        let (extra, last) = pods.split_at(pods.len().saturating_sub(1));
        delete.extend(extra.iter().map(|p| p.name_any()));
        keep.extend(last);
    }
    if keep.len() > parallelism {
        removal_order(&mut keep);
        let surplus = keep.len() - parallelism;
        delete.extend(keep.drain(..surplus).map(|p| p.name_any()));
    }
    let running: BTreeSet<i32> = keep.iter().filter_map(|p| index(p, completions)).collect();
    let slots = parallelism.saturating_sub(keep.len());
    let create = indexes::pending(completions, &done, &running, slots)
        .into_iter()
        .map(Some)
        .collect();
    (create, delete)
}

/// Failures since the last success among the pods that still exist (ignored ones aside).
fn backoff_record(spec: &JobSpec, pods: &[Pod]) -> backoff::Record {
    backoff::Record::of(pods.iter().filter_map(|p| {
        let at = finished_at(p)?;
        match state(p, only_failed(spec)) {
            State::Succeeded => Some((at, false)),
            State::Failed if verdict(spec, p) != Verdict::Ignore => Some((at, true)),
            _ => None,
        }
    }))
}

#[cfg(test)]
mod tests;
