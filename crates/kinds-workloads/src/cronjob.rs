//! batch/v1 CronJobs: defaults as `SetDefaults_CronJob`, the schedule parsed as the
//! controller will read it, `timeZone` checked against the time zone database, the job
//! template held to the Job spec rules (its selector is always generated), and the row
//! `kubectl get cronjobs` prints.

use k8s_openapi::api::batch::v1::CronJob;
use serde_json::{json, Map, Value};

use apimachinery::checks::nonnegative;
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, at, child, set, set_str, str_at};
use apimachinery::printing::{name_and_age, since, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, Strategy, ALL_VERBS, STATUS_VERBS,
};

use crate::job::job_spec;
use crate::template::{default_template, go_selector, wide_cells};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "batch",
    version: "v1",
    plural: "cronjobs",
    singular: "cronjob",
    kind: "CronJob",
    list_kind: "CronJobList",
    namespaced: true,
    short_names: &["cj"],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[sub("status", "batch", "CronJob", STATUS_VERBS)],
    strategy: &CronJobs,
};

/// Job names append up to eleven characters (`-` and the scheduled minute) to the
/// CronJob's, and must stay DNS-1035 labels of at most 63.
const MAX_NAME: usize = 52;

#[derive(Debug)]
struct CronJobs;

impl Strategy for CronJobs {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<CronJob>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        set_str(spec, "concurrencyPolicy", "Allow");
        set(spec, "suspend", json!(false));
        set(spec, "successfulJobsHistoryLimit", json!(3));
        set(spec, "failedJobsHistoryLimit", json!(1));
        if let Some(job_spec) = child(spec, "jobTemplate").and_then(|t| child(t, "spec")) {
            default_template(job_spec);
        }
    }

    fn validate(&self, cj: &Value, e: &mut FieldErrors) {
        let name = str_at(cj, &["metadata", "name"]);
        if name.len() > MAX_NAME {
            e.invalid(
                "metadata.name",
                &json!(name),
                &format!("must be no more than {MAX_NAME} characters"),
            );
        }
        cron_job_spec(e, cj.get("spec").unwrap_or(&Value::Null), false);
    }

    /// Names past the limit stay updatable (and deletable); a `TZ=` prefix already stored
    /// may stay.
    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        let tz_before = str_at(old, &["spec", "schedule"]).contains("TZ");
        cron_job_spec(e, new.get("spec").unwrap_or(&Value::Null), tz_before);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({})));
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Schedule", "string", "", 0, "The cron schedule of the job runs."),
            ("Timezone", "string", "", 0, "The time zone the schedule is read in."),
            ("Suspend", "boolean", "", 0, "Whether new runs are held back."),
            ("Active", "integer", "", 0, "Jobs of this CronJob running now."),
            ("Last Schedule", "string", "", 0, "When a job was last scheduled."),
            AGE,
            ("Containers", "string", "", 1, "Names of the job template's containers."),
            ("Images", "string", "", 1, "Images of the job template's containers."),
            ("Selector", "string", "", 1, "The label selector of the job template."),
        ]
    }

    fn cells(&self, cj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(cj, now);
        let last = match at(cj, &["status", "lastScheduleTime"]).filter(|v| !v.is_null()) {
            Some(t) => since(Some(t), now),
            None => "<none>".into(),
        };
        let zone = at(cj, &["spec", "timeZone"])
            .and_then(Value::as_str)
            .unwrap_or("<none>");
        let suspend = match at(cj, &["spec", "suspend"]).and_then(Value::as_bool) {
            Some(true) => "True",
            Some(false) => "False",
            None => "<unset>",
        };
        let job_spec = at(cj, &["spec", "jobTemplate", "spec"]).cloned();
        let [containers, images, selector] = wide_cells(&json!({ "spec": job_spec }));
        vec![
            name,
            json!(str_at(cj, &["spec", "schedule"])),
            json!(zone),
            json!(suspend),
            json!(arr(at(cj, &["status", "active"])).len()),
            json!(last),
            age,
            containers,
            images,
            selector,
        ]
    }
}

/// `ValidateCronJobSpec`.
fn cron_job_spec(e: &mut FieldErrors, spec: &Value, allow_tz_in_schedule: bool) {
    let schedule = str_at(spec, &["schedule"]);
    let zone = spec.get("timeZone").filter(|v| !v.is_null());
    if schedule.is_empty() {
        e.required("spec.schedule", "");
    } else {
        if let Err(err) = cronspec::parse(schedule) {
            e.invalid("spec.schedule", &json!(schedule), &err.to_string());
        }
        if schedule.contains("TZ") {
            if !allow_tz_in_schedule {
                e.invalid(
                    "spec.schedule",
                    &json!(schedule),
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                );
            } else if zone.is_some() {
                e.invalid(
                    "spec.schedule",
                    &json!(schedule),
                    "cannot use both timeZone field and TZ or CRON_TZ in schedule",
                );
            }
        }
    }
    nonnegative(
        e,
        spec.get("startingDeadlineSeconds"),
        "spec.startingDeadlineSeconds",
    );
    let policies = ["Allow", "Forbid", "Replace"];
    match str_at(spec, &["concurrencyPolicy"]) {
        "" => e.required("spec.concurrencyPolicy", ""),
        p if policies.contains(&p) => {}
        p => e.not_supported("spec.concurrencyPolicy", &json!(p), &policies),
    }
    let template_spec = at(spec, &["jobTemplate", "spec"]).unwrap_or(&Value::Null);
    job_spec(e, template_spec, "spec.jobTemplate.spec");
    if let Some(sel) = template_spec.get("selector").filter(|v| !v.is_null()) {
        e.invalid_text(
            "spec.jobTemplate.spec.selector",
            &go_selector(Some(sel)),
            "`selector` will be auto-generated",
        );
    }
    if template_spec.get("manualSelector").and_then(Value::as_bool) == Some(true) {
        e.not_supported(
            "spec.jobTemplate.spec.manualSelector",
            &json!(true),
            &["nil", "false"],
        );
    }
    for key in ["successfulJobsHistoryLimit", "failedJobsHistoryLimit"] {
        nonnegative(e, spec.get(key), &format!("spec.{key}"));
    }
    if let Some(z) = zone {
        time_zone(e, z);
    }
}

/// `validateTimeZone`: an explicit IANA name the database knows.
fn time_zone(e: &mut FieldErrors, zone: &Value) {
    const PATH: &str = "spec.timeZone";
    let name = zone.as_str().unwrap_or("");
    if name.is_empty() {
        e.invalid(PATH, zone, "timeZone must be nil or non-empty string");
        return;
    }
    let part_ok = |p: &str| {
        p != "."
            && p != ".."
            && !p.starts_with('-')
            && (1..=14).contains(&p.len())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
    };
    if !name.split('/').all(part_ok) {
        e.invalid(PATH, zone, &format!("unknown time zone {name}"));
        return;
    }
    if name.eq_ignore_ascii_case("local") {
        e.invalid(
            PATH,
            zone,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
        return;
    }
    if let Err(err) = cronspec::time_zone(name) {
        e.invalid(PATH, zone, &err.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn cron_job(schedule: &str) -> Value {
        json!({"apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "tick", "namespace": "default", "uid": "c-1"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "t", "image": "busybox"}]}}}}}})
    }

    fn create(mut cj: Value) -> (Value, Vec<String>) {
        RESOURCE.strategy.prepare_for_create(&mut cj);
        RESOURCE.apply_defaults(&mut cj);
        let m = messages(RESOURCE.validate_create(&cj));
        (cj, m)
    }

    #[test]
    fn defaults() {
        let (cj, errs) = create(cron_job("*/5 * * * *"));
        assert!(errs.is_empty(), "{errs:?}");
        let spec = &cj["spec"];
        assert_eq!(spec["concurrencyPolicy"], "Allow");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["successfulJobsHistoryLimit"], 3);
        assert_eq!(spec["failedJobsHistoryLimit"], 1);
        // The template's pod spec is defaulted, the job spec is not.
        let job_spec = &spec["jobTemplate"]["spec"];
        assert_eq!(job_spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(job_spec.get("backoffLimit").is_none());
        assert_eq!(cj["status"], json!({}));
    }

    #[test]
    fn schedules_zones_and_policies() {
        assert_eq!(
            create(cron_job("61 * * * *")).1,
            vec!["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]
        );
        assert!(create(cron_job("@hourly")).1.is_empty());
        assert_eq!(
            create(cron_job("TZ=UTC * * * * *")).1,
            vec!["spec.schedule: Invalid value: \"TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        let mut zoned = cron_job("0 9 * * *");
        zoned["spec"]["timeZone"] = json!("Europe/Berlin");
        assert!(create(zoned.clone()).1.is_empty());
        zoned["spec"]["timeZone"] = json!("Mars/Olympus");
        assert_eq!(
            create(zoned.clone()).1,
            vec!["spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus"]
        );
        zoned["spec"]["timeZone"] = json!("Local");
        assert_eq!(create(zoned).1.len(), 1);
        let mut bad = cron_job("* * * * *");
        bad["spec"]["concurrencyPolicy"] = json!("Sometimes");
        bad["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        bad["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        bad["metadata"]["name"] = json!("a".repeat(53));
        assert_eq!(create(bad).1, vec![
            format!("metadata.name: Invalid value: \"{}\": must be no more than 52 characters", "a".repeat(53)),
            "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"".to_string(),
            "spec.jobTemplate.spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\"".to_string(),
            "spec.jobTemplate.spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"a\":\"b\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` will be auto-generated".to_string(),
        ]);
    }

    #[test]
    fn rows() {
        let (mut cj, _) = create(cron_job("*/5 * * * *"));
        cj["metadata"]["creationTimestamp"] = json!("2026-01-02T14:00:00Z");
        let cells = RESOURCE.strategy.cells(&cj, now());
        assert_eq!(
            cells[..7],
            [
                json!("tick"),
                json!("*/5 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(0),
                json!("<none>"),
                json!("60m")
            ]
        );
        cj["status"] =
            json!({"lastScheduleTime": "2026-01-02T14:55:00Z", "active": [{"name": "tick-1"}]});
        let cells = RESOURCE.strategy.cells(&cj, now());
        assert_eq!(cells[4..6], [json!(1), json!("5m")]);
        assert_eq!(cells[7..], [json!("t"), json!("busybox"), json!("<none>")]);
        assert_eq!(RESOURCE.strategy.columns().len(), cells.len());
    }
}
