//! The CronJob controller's decisions, pure and unit-tested (kube-controller-manager
//! v1.33's `syncCronJob` and `cleanupFinishedJobs`): which of its jobs finished or went
//! missing, which old finished jobs go under the history limits, whether the latest due
//! run starts (suspension, `startingDeadlineSeconds`, `concurrencyPolicy`), the Job it
//! starts, and when the next run is due.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job, JobStatus};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::{Resource, ResourceExt};

use controller_base::events::EventType;

use controller_base::ownership::controller_ref;

/// The annotation with the run's scheduled time, in the CronJob's time zone.
pub(super) const SCHEDULED_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Upstream wakes a little after the scheduled time, so the clock has surely passed it.
const WAKE_SLACK: Duration = Duration::from_millis(100);

/// One event about the CronJob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Note {
    pub type_: EventType,
    pub reason: &'static str,
    pub message: String,
}

/// What to do.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// The status after the changes below (the new job is added once it exists).
    pub status: CronJobStatus,
    /// Jobs to delete with background propagation: past the history limits, or replaced.
    pub delete: Vec<String>,
    /// The job of a run to start now, and its scheduled time.
    pub create: Option<(Job, Timestamp)>,
    pub notes: Vec<Note>,
    /// When the next run is due.
    pub requeue: Option<Duration>,
}

fn note(type_: EventType, reason: &'static str, message: String) -> Note {
    Note {
        type_,
        reason,
        message,
    }
}

/// The finished condition of a job (`Complete` or `Failed`, true), if any.
fn finished(job: &Job) -> Option<&'static str> {
    let conds = job.status.as_ref().and_then(|s| s.conditions.as_ref())?;
    ["Complete", "Failed"]
        .into_iter()
        .find(|t| conds.iter().any(|c| c.type_ == *t && c.status == "True"))
}

/// A reference to `job` for `status.active`.
pub(super) fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some(Job::api_version(&()).into_owned()),
        kind: Some(Job::kind(&()).into_owned()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// The job name of the run scheduled at `t`: the CronJob's and the minutes since the epoch.
pub(super) fn job_name(cj: &CronJob, t: Timestamp) -> String {
    format!("{}-{}", cj.name_any(), t.as_second().div_euclid(60))
}

/// The CronJob's time zone: `spec.timeZone`, else `local`.
pub(super) fn zone(cj: &CronJob, local: &TimeZone) -> Result<TimeZone, cronspec::UnknownZone> {
    match cj.spec.as_ref().and_then(|s| s.time_zone.as_deref()) {
        Some(name) => cronspec::time_zone(name),
        None => Ok(local.clone()),
    }
}

/// Judges the CronJob `cj` with its `jobs` (those it controls) at `now`.
pub(super) fn plan(cj: &CronJob, jobs: &[Job], now: Timestamp, local: &TimeZone) -> Plan {
    let spec = cj.spec.clone().unwrap_or_default();
    let mut p = Plan {
        status: cj.status.clone().unwrap_or_default(),
        ..Plan::default()
    };
    reconcile_active(jobs, &mut p);
    cleanup(&spec, jobs, &mut p);
    if cj.metadata.deletion_timestamp.is_some() || spec.suspend == Some(true) {
        return p;
    }
    let schedule = match cronspec::parse(&spec.schedule) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("unparseable schedule: {:?} : {e}", spec.schedule);
            p.notes
                .push(note(EventType::Warning, "UnparseableSchedule", msg));
            return p;
        }
    };
    let tz = match zone(cj, local) {
        Ok(tz) => tz,
        Err(e) => {
            let name = spec.time_zone.clone().unwrap_or_default();
            let msg = format!("invalid timeZone: {name:?}: {e}");
            p.notes
                .push(note(EventType::Warning, "UnknownTimeZone", msg));
            return p;
        }
    };
    p.requeue = schedule
        .next_after(now, &tz)
        .map(|next| Duration::try_from(next.duration_since(now)).unwrap_or_default() + WAKE_SLACK);

    let created = cj.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0);
    let mut earliest = p
        .status
        .last_schedule_time
        .as_ref()
        .map_or(created, |t| t.0);
    if let Some(deadline) = spec.starting_deadline_seconds {
        earliest = earliest.max(now - SignedDuration::from_secs(deadline));
    }
    let Some(unmet) = schedule.unmet(earliest, now, &tz) else {
        return p;
    };
    if unmet.missed > cronspec::TOO_MANY_MISSED {
        let msg = format!(
            "too many missed start times: {}. Set or decrease .spec.startingDeadlineSeconds or check clock skew",
            unmet.missed
        );
        p.notes
            .push(note(EventType::Warning, "TooManyMissedTimes", msg));
    }
    let scheduled = unmet.time;
    if let Some(deadline) = spec.starting_deadline_seconds {
        if scheduled + SignedDuration::from_secs(deadline) < now {
            let msg = format!(
                "Missed scheduled time to start a job: {}",
                scheduled.strftime("%a, %d %b %Y %H:%M:%S %z")
            );
            p.notes.push(note(EventType::Warning, "MissSchedule", msg));
            return p;
        }
    }
    let name = job_name(cj, scheduled);
    if let Some(existing) = jobs.iter().find(|j| j.name_any() == name) {
        // Started already (a crash before the status write): take it up.
        let listed = p
            .status
            .active
            .iter()
            .flatten()
            .any(|r| r.uid == existing.metadata.uid);
        if finished(existing).is_none() && !listed {
            p.status
                .active
                .get_or_insert_with(Vec::new)
                .push(job_ref(existing));
        }
        p.status.last_schedule_time = Some(Time(scheduled));
        return p;
    }
    let active = p.status.active.clone().unwrap_or_default();
    match spec.concurrency_policy.as_deref() {
        Some("Forbid") if !active.is_empty() => {
            let msg = "Not starting job because prior execution is running and concurrency policy is Forbid";
            p.notes
                .push(note(EventType::Normal, "JobAlreadyActive", msg.into()));
            return p;
        }
        Some("Replace") => {
            p.delete
                .extend(active.iter().filter_map(|r| r.name.clone()));
            p.status.active = None;
        }
        _ => {}
    }
    p.create = Some((new_job(cj, &name, scheduled, &tz), scheduled));
    p
}

/// Drops finished and vanished jobs from `status.active` and notes the latest success.
fn reconcile_active(jobs: &[Job], p: &mut Plan) {
    let mut active = p.status.active.take().unwrap_or_default();
    for job in jobs {
        let uid = job.metadata.uid.clone();
        let listed = active.iter().any(|r| r.uid == uid);
        match finished(job) {
            None if !listed => p.notes.push(note(
                EventType::Warning,
                "UnexpectedJob",
                format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    job.name_any()
                ),
            )),
            None => {}
            Some(condition) => {
                if listed {
                    active.retain(|r| r.uid != uid);
                    p.notes.push(note(
                        EventType::Normal,
                        "SawCompletedJob",
                        format!(
                            "Saw completed job: {}, condition: {condition}",
                            job.name_any()
                        ),
                    ));
                }
                let completed = job.status.as_ref().and_then(|s| s.completion_time.clone());
                if condition == "Complete" {
                    if let Some(t) = completed {
                        let later = p
                            .status
                            .last_successful_time
                            .as_ref()
                            .is_none_or(|l| l.0 < t.0);
                        if later {
                            p.status.last_successful_time = Some(t);
                        }
                    }
                }
            }
        }
    }
    active.retain(|r| {
        let exists = jobs.iter().any(|j| j.metadata.uid == r.uid);
        if !exists {
            let name = r.name.clone().unwrap_or_default();
            p.notes.push(note(
                EventType::Normal,
                "MissingJob",
                format!("Active job went missing: {name}"),
            ));
        }
        exists
    });
    p.status.active = (!active.is_empty()).then_some(active);
}

/// Finished jobs past `successfulJobsHistoryLimit` / `failedJobsHistoryLimit`, oldest
/// start first (jobs that never started count as the newest).
fn cleanup(spec: &k8s_openapi::api::batch::v1::CronJobSpec, jobs: &[Job], p: &mut Plan) {
    for (condition, limit) in [
        ("Complete", spec.successful_jobs_history_limit),
        ("Failed", spec.failed_jobs_history_limit),
    ] {
        let Some(limit) = limit else { continue };
        let mut done: Vec<&Job> = jobs
            .iter()
            .filter(|j| finished(j) == Some(condition))
            .collect();
        let keep = usize::try_from(limit).unwrap_or(0);
        if done.len() <= keep {
            continue;
        }
        done.sort_by(|a, b| {
            let start = |j: &Job| {
                j.status
                    .as_ref()
                    .and_then(|s: &JobStatus| s.start_time.as_ref())
                    .map(|t| t.0)
            };
            match (start(a), start(b)) {
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (Some(_), None) => std::cmp::Ordering::Less,
                (x, y) if x == y => a.name_any().cmp(&b.name_any()),
                (x, y) => x.cmp(&y),
            }
        });
        let surplus = done.len() - keep;
        p.delete
            .extend(done.iter().take(surplus).map(|j| j.name_any()));
    }
}

/// The job of the run at `scheduled` (upstream `getJobFromTemplate2`).
fn new_job(cj: &CronJob, name: &str, scheduled: Timestamp, tz: &TimeZone) -> Job {
    let template = cj
        .spec
        .as_ref()
        .map(|s| s.job_template.clone())
        .unwrap_or_default();
    let tmeta = template.metadata.unwrap_or_default();
    let mut annotations = tmeta.annotations.unwrap_or_default();
    let local = scheduled.to_zoned(tz.clone());
    annotations.insert(
        SCHEDULED_ANNOTATION.into(),
        local
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string()
            .replace("+00:00", "Z"),
    );
    Job {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: cj.namespace(),
            labels: tmeta.labels,
            annotations: Some(annotations),
            owner_references: Some(vec![controller_ref(cj)]),
            ..ObjectMeta::default()
        },
        spec: template.spec,
        status: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("time")
    }

    fn utc() -> TimeZone {
        TimeZone::UTC
    }

    fn cron_job(spec: Value, status: Value) -> CronJob {
        let mut s = json!({"schedule": "*/5 * * * *", "concurrencyPolicy": "Allow", "suspend": false,
            "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 1,
            "jobTemplate": {"metadata": {"labels": {"app": "tick"}}, "spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "t", "image": "busybox"}]}}}}});
        if let (Some(base), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        serde_json::from_value(json!({
            "metadata": {"name": "tick", "namespace": "ns", "uid": "c1", "creationTimestamp": "2026-01-02T09:00:00Z"},
            "spec": s, "status": status}))
        .expect("cronjob")
    }

    fn job(name: &str, condition: Option<&str>, start: &str) -> Job {
        let conds = condition.map_or(json!([]), |c| json!([{"type": c, "status": "True"}]));
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}")},
            "status": {"startTime": start, "completionTime": start, "conditions": conds}}))
        .expect("job")
    }

    #[test]
    fn starts_the_latest_due_run_and_wakes_at_the_next() {
        let cj = cron_job(
            json!({}),
            json!({"lastScheduleTime": "2026-01-02T10:00:00Z"}),
        );
        let p = plan(&cj, &[], ts("2026-01-02T10:11:30Z"), &utc());
        let (job, at) = p.create.expect("a run");
        assert_eq!(at, ts("2026-01-02T10:10:00Z"));
        assert_eq!(job.metadata.name.as_deref(), Some("tick-29455810"));
        assert_eq!(job_name(&cj, at), "tick-29455810");
        let ann = job.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get(SCHEDULED_ANNOTATION).map(String::as_str),
            Some("2026-01-02T10:10:00Z")
        );
        assert_eq!(
            job.metadata
                .labels
                .unwrap_or_default()
                .get("app")
                .map(String::as_str),
            Some("tick")
        );
        let owner = &job.metadata.owner_references.unwrap_or_default()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.controller),
            ("CronJob", Some(true))
        );
        assert_eq!(p.requeue, Some(Duration::from_secs(210) + WAKE_SLACK));
        // Nothing due: only the wake-up.
        let p = plan(&cj, &[], ts("2026-01-02T10:04:00Z"), &utc());
        assert!(p.create.is_none());
        assert_eq!(p.requeue, Some(Duration::from_secs(60) + WAKE_SLACK));
    }

    #[test]
    fn time_zones_shape_runs_and_annotations() {
        let cj = cron_job(
            json!({"schedule": "0 9 * * *", "timeZone": "Asia/Tokyo"}),
            json!({}),
        );
        let p = plan(&cj, &[], ts("2026-01-03T00:00:30Z"), &utc());
        let (job, at) = p.create.expect("nine in Tokyo");
        assert_eq!(at, ts("2026-01-03T00:00:00Z"));
        let ann = job.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get(SCHEDULED_ANNOTATION).map(String::as_str),
            Some("2026-01-03T09:00:00+09:00")
        );
        let bad = cron_job(json!({"timeZone": "Mars/Base"}), json!({}));
        let p = plan(&bad, &[], ts("2026-01-03T00:00:30Z"), &utc());
        assert_eq!(p.notes[0].reason, "UnknownTimeZone");
        assert!(p.create.is_none() && p.requeue.is_none());
    }

    #[test]
    fn deadlines_suspension_and_concurrency() {
        let late = cron_job(
            json!({"startingDeadlineSeconds": 60}),
            json!({"lastScheduleTime": "2026-01-02T10:00:00Z"}),
        );
        // The 10:05 run is more than a minute late: skipped, the 10:10 one waits.
        assert!(plan(&late, &[], ts("2026-01-02T10:07:00Z"), &utc())
            .create
            .is_none());
        let suspended = cron_job(json!({"suspend": true}), json!({}));
        let p = plan(&suspended, &[], ts("2026-01-02T10:11:00Z"), &utc());
        assert!(p.create.is_none() && p.requeue.is_none());

        let running = job("tick-1", None, "2026-01-02T10:05:00Z");
        let active = json!({"lastScheduleTime": "2026-01-02T10:05:00Z",
            "active": [{"kind": "Job", "name": "tick-1", "namespace": "ns", "uid": "u-tick-1"}]});
        let forbid = cron_job(json!({"concurrencyPolicy": "Forbid"}), active.clone());
        let p = plan(
            &forbid,
            std::slice::from_ref(&running),
            ts("2026-01-02T10:10:01Z"),
            &utc(),
        );
        assert!(p.create.is_none());
        assert_eq!(p.notes[0].reason, "JobAlreadyActive");
        let replace = cron_job(json!({"concurrencyPolicy": "Replace"}), active.clone());
        let p = plan(
            &replace,
            std::slice::from_ref(&running),
            ts("2026-01-02T10:10:01Z"),
            &utc(),
        );
        assert_eq!(p.delete, vec!["tick-1".to_string()]);
        assert!(p.create.is_some() && p.status.active.is_none());
        let allow = cron_job(json!({}), active);
        let p = plan(&allow, &[running], ts("2026-01-02T10:10:01Z"), &utc());
        assert!(p.delete.is_empty() && p.create.is_some());
    }

    #[test]
    fn finished_jobs_leave_active_and_history_is_trimmed() {
        let status = json!({"active": [{"name": "tick-4", "uid": "u-tick-4"}, {"name": "gone", "uid": "u-gone"}]});
        let cj = cron_job(json!({"successfulJobsHistoryLimit": 2}), status);
        let jobs = [
            job("tick-1", Some("Complete"), "2026-01-02T10:01:00Z"),
            job("tick-2", Some("Complete"), "2026-01-02T10:02:00Z"),
            job("tick-3", Some("Failed"), "2026-01-02T10:03:00Z"),
            job("tick-4", Some("Complete"), "2026-01-02T10:04:00Z"),
        ];
        let p = plan(&cj, &jobs, ts("2026-01-02T10:04:30Z"), &utc());
        assert!(p.status.active.is_none());
        let reasons: Vec<&str> = p.notes.iter().map(|n| n.reason).collect();
        assert_eq!(reasons, vec!["SawCompletedJob", "MissingJob"]);
        assert_eq!(
            p.notes[0].message,
            "Saw completed job: tick-4, condition: Complete"
        );
        assert_eq!(
            p.status.last_successful_time,
            Some(Time(ts("2026-01-02T10:04:00Z")))
        );
        assert_eq!(p.delete, vec!["tick-1".to_string()]);
    }

    #[test]
    fn a_run_already_started_is_taken_up() {
        let cj = cron_job(
            json!({}),
            json!({"lastScheduleTime": "2026-01-02T10:00:00Z"}),
        );
        let existing = job("tick-29455810", None, "2026-01-02T10:10:00Z");
        let p = plan(&cj, &[existing], ts("2026-01-02T10:11:00Z"), &utc());
        assert!(p.create.is_none());
        assert_eq!(p.status.active.map(|a| a.len()), Some(1));
        assert_eq!(
            p.status.last_schedule_time,
            Some(Time(ts("2026-01-02T10:10:00Z")))
        );
    }
}
