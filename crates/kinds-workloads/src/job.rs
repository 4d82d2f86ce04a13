//! batch/v1 Jobs: kube-apiserver's job strategy. Defaults as `SetDefaults_Job`; a create
//! generates the selector and the `controller-uid` / `job-name` template labels unless
//! `manualSelector` is set; the spec rules of `ValidateJob` (restart policy, Indexed
//! completions, pod failure policy) and of updates (selector, completions and template are
//! immutable, save the scheduling fields of a suspended job that never started); the row
//! `kubectl get jobs` prints. The CronJob kind reuses the spec rules for its job template.

use k8s_openapi::api::batch::v1::Job;
use serde_json::{json, Map, Value};

use apimachinery::checks::nonnegative;
use apimachinery::field_errors::{go_quote, CauseReason, FieldErrors};
use apimachinery::json::{arr, at, child, each_item, set, set_str, str_at};
use apimachinery::names::qualified_name;
use apimachinery::printing::{human_duration, name_and_age, parse_ts, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ResourceInfo, SelectableField, Strategy, ALL_VERBS, STATUS_VERBS,
};

use apimachinery::labelselector;

use crate::template::{default_template, go_selector, go_string_map, wide_cells};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "batch",
    version: "v1",
    plural: "jobs",
    singular: "job",
    kind: "Job",
    list_kind: "JobList",
    namespaced: true,
    short_names: &[],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[sub("status", "batch", "Job", STATUS_VERBS)],
    strategy: &Jobs,
};

/// The labels a generated selector puts on the template: the job's uid (which the selector
/// matches) and its name, each under the legacy and the `batch.kubernetes.io/` key.
pub const CONTROLLER_UID_LABEL: &str = "batch.kubernetes.io/controller-uid";
pub const LEGACY_CONTROLLER_UID_LABEL: &str = "controller-uid";
pub const JOB_NAME_LABEL: &str = "batch.kubernetes.io/job-name";
pub const LEGACY_JOB_NAME_LABEL: &str = "job-name";

/// Upstream's cap on `parallelism` of an Indexed job.
const MAX_PARALLELISM_INDEXED: i64 = 100_000;
const MAX_FAILURE_RULES: usize = 20;
const MAX_EXIT_CODE_VALUES: usize = 255;

/// `status.successful` selects on the succeeded count (upstream's field label).
const SELECTABLE: &[SelectableField] = &[SelectableField {
    name: "status.successful",
    path: &["status", "succeeded"],
    absent: "0",
}];

#[derive(Debug)]
struct Jobs;

impl Strategy for Jobs {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Job>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
            default_job_spec(spec);
        }
        // A job without labels of its own takes its template's.
        let template_labels = at(
            &Value::Object(obj.clone()),
            &["spec", "template", "metadata", "labels"],
        )
        .filter(|l| obj_len(l) > 0)
        .cloned();
        if let (Some(labels), Some(meta)) = (template_labels, child(obj, "metadata")) {
            if meta.get("labels").is_none_or(|l| obj_len(l) == 0) {
                meta.insert("labels".into(), labels);
            }
        }
    }

    fn validate(&self, job: &Value, e: &mut FieldErrors) {
        generated_selector(e, job);
        job_selector(e, job);
        job_spec(e, job.get("spec").unwrap_or(&Value::Null), "spec");
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        job_selector(e, new);
        let empty = json!({});
        let o = old.get("spec").unwrap_or(&empty);
        let n = new.get("spec").unwrap_or(&empty);
        job_spec(e, n, "spec");
        job_spec_update(e, old, o, n);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        reset_status(obj, Some(json!({})));
        generate_selector(obj);
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Status", "string", "", 0, "The job's state: Running, Complete, Failed, Suspended …"),
            ("Completions", "string", "", 0, "Succeeded pods out of the completions wanted."),
            ("Duration", "string", "", 0, "How long the job ran, or has been running."),
            AGE,
            ("Containers", "string", "", 1, "Names of the template's containers."),
            ("Images", "string", "", 1, "Images of the template's containers."),
            ("Selector", "string", "", 1, "The label selector of the job's pods."),
        ]
    }

    fn cells(&self, job: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(job, now);
        let [containers, images, selector] = wide_cells(job);
        vec![
            name,
            json!(job_status_word(job)),
            json!(completions_cell(job)),
            json!(duration_cell(job, now)),
            age,
            containers,
            images,
            selector,
        ]
    }

    fn selectable_fields(&self) -> &'static [SelectableField] {
        SELECTABLE
    }
}

fn obj_len(v: &Value) -> usize {
    v.as_object().map_or(0, Map::len)
}

/// `SetDefaults_Job` on a Job's spec, and the template's pod spec defaults.
fn default_job_spec(spec: &mut Map<String, Value>) {
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
    }
    set(spec, "parallelism", json!(1));
    let per_index = spec
        .get("backoffLimitPerIndex")
        .is_some_and(|v| !v.is_null());
    set(
        spec,
        "backoffLimit",
        json!(if per_index { i64::from(i32::MAX) } else { 6 }),
    );
    set_str(spec, "completionMode", "NonIndexed");
    set(spec, "suspend", json!(false));
    let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
    if let Some(policy) = spec
        .get_mut("podFailurePolicy")
        .and_then(Value::as_object_mut)
    {
        each_item(policy, "rules", |rule| {
            each_item(rule, "onPodConditions", |c| set_str(c, "status", "True"));
        });
    }
    let replacement = if has_failure_policy {
        "Failed"
    } else {
        "TerminatingOrFailed"
    };
    set_str(spec, "podReplacementPolicy", replacement);
    default_template(spec);
}

/// `generateSelector`: unless `manualSelector` is true, the template gets the job's name and
/// uid labels (those the user set stay, and validation judges them) and the selector
/// matches the uid.
fn generate_selector(job: &mut Value) {
    if at(job, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true) {
        return;
    }
    let name = str_at(job, &["metadata", "name"]).to_string();
    let uid = str_at(job, &["metadata", "uid"]).to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(labels) = child(spec, "template")
        .and_then(|t| child(t, "metadata"))
        .and_then(|m| child(m, "labels"))
    {
        for (key, value) in [
            (LEGACY_JOB_NAME_LABEL, &name),
            (JOB_NAME_LABEL, &name),
            (LEGACY_CONTROLLER_UID_LABEL, &uid),
            (CONTROLLER_UID_LABEL, &uid),
        ] {
            labels.entry(key).or_insert_with(|| json!(value));
        }
    }
    if let Some(match_labels) = child(spec, "selector").and_then(|s| child(s, "matchLabels")) {
        match_labels
            .entry(CONTROLLER_UID_LABEL)
            .or_insert_with(|| json!(uid));
    }
}

/// `validateGeneratedSelector`: a generated selector must be exactly the uid's, and the
/// template must carry the uid and name labels with the job's values.
fn generated_selector(e: &mut FieldErrors, job: &Value) {
    if at(job, &["spec", "manualSelector"]).and_then(Value::as_bool) == Some(true) {
        return;
    }
    let Some(selector) = at(job, &["spec", "selector"]).filter(|s| !s.is_null()) else {
        return;
    };
    let uid = str_at(job, &["metadata", "uid"]);
    let name = str_at(job, &["metadata", "name"]);
    let labels = at(job, &["spec", "template", "metadata", "labels"]);
    for (key, want) in [
        (LEGACY_CONTROLLER_UID_LABEL, uid),
        (LEGACY_JOB_NAME_LABEL, name),
        (CONTROLLER_UID_LABEL, uid),
        (JOB_NAME_LABEL, name),
    ] {
        let path = format!("spec.template.metadata.labels[{key}]");
        match labels.and_then(|l| l.get(key)).and_then(Value::as_str) {
            None => e.required(&path, want),
            Some(v) if v != want => {
                e.invalid_text(&path, &go_string_map(labels), &format!("must be '{want}'"))
            }
            Some(_) => {}
        }
    }
    let expected = json!({"matchLabels": {CONTROLLER_UID_LABEL: uid}});
    let expressions = arr(selector.get("matchExpressions"));
    if selector.get("matchLabels") != expected.get("matchLabels") || !expressions.is_empty() {
        e.invalid_text(
            "spec.selector",
            &go_selector(Some(selector)),
            "`selector` not auto-generated",
        );
    }
}

/// A Job's selector: required, valid, and selecting the template's labels.
fn job_selector(e: &mut FieldErrors, job: &Value) {
    let Some(selector) = at(job, &["spec", "selector"]).filter(|s| !s.is_null()) else {
        e.required("spec.selector", "");
        return;
    };
    labelselector::validate(e, selector, "spec.selector");
    let labels = at(job, &["spec", "template", "metadata", "labels"]);
    if !labelselector::matches(selector, labels) {
        e.invalid_text(
            "spec.template.metadata.labels",
            &go_string_map(labels),
            "`selector` does not match template `labels`",
        );
    }
}

/// `validateJobSpec` at `path`: counts, completion mode, pod failure policy, replacement
/// policy, and the pod template with the restart policies a job allows.
pub(crate) fn job_spec(e: &mut FieldErrors, spec: &Value, path: &str) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
    ] {
        nonnegative(e, spec.get(key), &format!("{path}.{key}"));
    }
    let mode = spec.get("completionMode").and_then(Value::as_str);
    match mode {
        None | Some("NonIndexed") => {}
        Some("Indexed") => {
            if spec.get("completions").is_none_or(Value::is_null) {
                e.required(
                    &format!("{path}.completions"),
                    "when completion mode is Indexed",
                );
            }
            if let Some(p) = spec.get("parallelism").and_then(Value::as_i64) {
                if p > MAX_PARALLELISM_INDEXED {
                    e.invalid(
                        &format!("{path}.parallelism"),
                        &json!(p),
                        &format!("must be less than or equal to {MAX_PARALLELISM_INDEXED} when completion mode is Indexed"),
                    );
                }
            }
        }
        Some(other) => e.not_supported(
            &format!("{path}.completionMode"),
            &json!(other),
            &["NonIndexed", "Indexed"],
        ),
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    let failure_policy = spec.get("podFailurePolicy").filter(|v| !v.is_null());
    if let Some(policy) = failure_policy {
        pod_failure_policy(e, policy, spec, &format!("{path}.podFailurePolicy"));
    }
    if let Some(r) = spec.get("podReplacementPolicy").and_then(Value::as_str) {
        let allowed: &[&str] = if failure_policy.is_some() {
            &["Failed"]
        } else {
            &["TerminatingOrFailed", "Failed"]
        };
        if !allowed.contains(&r) {
            e.not_supported(&format!("{path}.podReplacementPolicy"), &json!(r), allowed);
        }
    }
    let tpath = format!("{path}.template");
    kinds_core::pod::validate_pod_template(e, template, &tpath);
    let restart_path = format!("{tpath}.spec.restartPolicy");
    match str_at(template, &["spec", "restartPolicy"]) {
        "" | "Always" => e.required(&restart_path, "valid values: \"OnFailure\", \"Never\""),
        "OnFailure" if failure_policy.is_some() => e.invalid(
            &restart_path,
            &json!("OnFailure"),
            "only \"Never\" is supported when podFailurePolicy is specified",
        ),
        "OnFailure" | "Never" => {}
        other => e.not_supported(&restart_path, &json!(other), &["OnFailure", "Never"]),
    }
}

const FAILURE_ACTIONS: &[&str] = &["Count", "FailIndex", "FailJob", "Ignore"];

/// Go's `%q` of a string list: `["A" "B"]`.
fn quoted_list(items: &[&str]) -> String {
    let inner: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", inner.join(" "))
}

/// An Invalid error whose value upstream omits from the message.
fn invalid_no_value(e: &mut FieldErrors, path: &str, detail: &str) {
    e.push(
        path,
        CauseReason::FieldValueInvalid,
        format!("Invalid value: {detail}"),
    );
}

fn pod_failure_policy(e: &mut FieldErrors, policy: &Value, spec: &Value, path: &str) {
    let template = spec.get("template").unwrap_or(&Value::Null);
    let rules = arr(policy.get("rules"));
    let rules_path = format!("{path}.rules");
    if rules.len() > MAX_FAILURE_RULES {
        e.push(
            &rules_path,
            CauseReason::FieldValueTooMany,
            format!(
                "Too many: {}: must have at most {MAX_FAILURE_RULES} items",
                rules.len()
            ),
        );
    }
    let names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| arr(at(template, &["spec", k])))
        .map(|c| str_at(c, &["name"]))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{rules_path}[{i}]");
        let action_path = format!("{rp}.action");
        match rule.get("action").and_then(Value::as_str).unwrap_or("") {
            "" => e.required(
                &action_path,
                &format!("valid values: {}", quoted_list(FAILURE_ACTIONS)),
            ),
            "FailIndex" => {
                if spec.get("backoffLimitPerIndex").is_none_or(Value::is_null) {
                    e.invalid(
                        &action_path,
                        &json!("FailIndex"),
                        "requires the backoffLimitPerIndex to be set",
                    );
                }
            }
            a if FAILURE_ACTIONS.contains(&a) => {}
            a => e.not_supported(&action_path, &json!(a), FAILURE_ACTIONS),
        }
        let exit_codes = rule.get("onExitCodes").filter(|v| !v.is_null());
        let conditions = arr(rule.get("onPodConditions"));
        if let Some(codes) = exit_codes {
            on_exit_codes(e, codes, &format!("{rp}.onExitCodes"), &names);
        }
        for (j, c) in conditions.iter().enumerate() {
            let cp = format!("{rp}.onPodConditions[{j}]");
            let t = str_at(c, &["type"]);
            for m in qualified_name(t) {
                e.invalid(&format!("{cp}.type"), &json!(t), &m);
            }
            let statuses = ["True", "False", "Unknown"];
            match str_at(c, &["status"]) {
                "" => e.required(
                    &format!("{cp}.status"),
                    &format!("valid values: {}", quoted_list(&statuses)),
                ),
                st if statuses.contains(&st) => {}
                st => e.not_supported(&format!("{cp}.status"), &json!(st), &statuses),
            }
        }
        match (exit_codes.is_some(), conditions.is_empty()) {
            (true, false) => invalid_no_value(
                e,
                &rp,
                "specifying both OnExitCodes and OnPodConditions is not supported",
            ),
            (false, true) => invalid_no_value(
                e,
                &rp,
                "specifying one of OnExitCodes and OnPodConditions is required",
            ),
            _ => {}
        }
    }
}

fn on_exit_codes(e: &mut FieldErrors, req: &Value, path: &str, names: &[&str]) {
    if let Some(name) = req.get("containerName").and_then(Value::as_str) {
        if !names.contains(&name) {
            e.invalid(
                &format!("{path}.containerName"),
                &json!(name),
                "must be one of the container or initContainer names in the pod template",
            );
        }
    }
    let op = str_at(req, &["operator"]);
    let ops = ["In", "NotIn"];
    match op {
        "" => e.required(
            &format!("{path}.operator"),
            &format!("valid values: {}", quoted_list(&ops)),
        ),
        o if ops.contains(&o) => {}
        o => e.not_supported(&format!("{path}.operator"), &json!(o), &ops),
    }
    let values = arr(req.get("values"));
    let vpath = format!("{path}.values");
    if values.is_empty() || values.len() > MAX_EXIT_CODE_VALUES {
        e.invalid(
            &vpath,
            req.get("values").unwrap_or(&json!([])),
            &format!(
                "at least one value is required, and at most {MAX_EXIT_CODE_VALUES} are allowed"
            ),
        );
        return;
    }
    let mut seen = Vec::new();
    let mut ordered = true;
    for (j, v) in values.iter().enumerate() {
        let n = v.as_i64().unwrap_or(0);
        if op == "In" && n == 0 {
            e.invalid(
                &format!("{vpath}[{j}]"),
                v,
                "must not be 0 for the In operator",
            );
        }
        if seen.contains(&n) {
            e.duplicate(&format!("{vpath}[{j}]"), v);
        } else {
            seen.push(n);
        }
        if j > 0 && values[j - 1].as_i64().unwrap_or(0) > n {
            ordered = false;
        }
    }
    if !ordered {
        e.invalid(
            &vpath,
            req.get("values").unwrap_or(&json!([])),
            "must be ordered",
        );
    }
}

/// `ValidateJobSpecUpdate`: what a running job may not change.
fn job_spec_update(e: &mut FieldErrors, old_job: &Value, old: &Value, new: &Value) {
    let indexed = str_at(new, &["completionMode"]) == "Indexed";
    // Elastic Indexed jobs scale completions together with parallelism.
    let elastic = indexed && new.get("completions") == new.get("parallelism");
    if !elastic {
        immutable(e, old, new, "completions", "spec.completions");
    }
    immutable(e, old, new, "selector", "spec.selector");
    for key in [
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(e, old, new, key, &format!("spec.{key}"));
    }
    let mut old_template = old.get("template").cloned().unwrap_or(Value::Null);
    let new_template = new.get("template").cloned().unwrap_or(Value::Null);
    // A suspended job that never started may still change where its pods will run.
    let never_started = at(old_job, &["status", "startTime"]).is_none_or(Value::is_null);
    if new.get("suspend").and_then(Value::as_bool) == Some(true) && never_started {
        for keys in [
            &["metadata", "labels"][..],
            &["metadata", "annotations"],
            &["spec", "nodeSelector"],
            &["spec", "tolerations"],
            &["spec", "schedulingGates"],
            &["spec", "affinity"],
        ] {
            copy_field(&mut old_template, &new_template, keys);
        }
    }
    if old_template != new_template {
        e.invalid("spec.template", &new_template, "field is immutable");
    }
}

/// Sets `keys` in `into` to its value in `from` (removing it when `from` has none).
fn copy_field(into: &mut Value, from: &Value, keys: &[&str]) {
    let Some((last, parents)) = keys.split_last() else {
        return;
    };
    let mut cur = into;
    for k in parents {
        let Some(m) = cur.as_object_mut() else { return };
        cur = m.entry(*k).or_insert_with(|| json!({}));
    }
    let Some(m) = cur.as_object_mut() else { return };
    match at(from, keys) {
        Some(v) => {
            m.insert((*last).to_string(), v.clone());
        }
        None => {
            m.remove(*last);
        }
    }
}

fn immutable(e: &mut FieldErrors, old: &Value, new: &Value, key: &str, path: &str) {
    let o = old.get(key).filter(|v| !v.is_null());
    let n = new.get(key).filter(|v| !v.is_null());
    if o != n {
        e.invalid(path, n.unwrap_or(&Value::Null), "field is immutable");
    }
}

fn has_condition(job: &Value, kind: &str) -> bool {
    arr(at(job, &["status", "conditions"]))
        .iter()
        .any(|c| str_at(c, &["type"]) == kind && str_at(c, &["status"]) == "True")
}

/// The STATUS cell, in upstream's order of precedence.
fn job_status_word(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if at(job, &["metadata", "deletionTimestamp"]).is_some_and(|v| !v.is_null()) {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

/// COMPLETIONS: `succeeded/completions`, or for a job without completions `n/1` (`n/1 of
/// P` with parallelism P above one).
fn completions_cell(job: &Value) -> String {
    let succeeded = at(job, &["status", "succeeded"])
        .and_then(Value::as_i64)
        .unwrap_or(0);
    match at(job, &["spec", "completions"]).and_then(Value::as_i64) {
        Some(c) => format!("{succeeded}/{c}"),
        None => match at(job, &["spec", "parallelism"]).and_then(Value::as_i64) {
            Some(p) if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    }
}

/// DURATION: from start to completion, or to now while running; empty before the start.
fn duration_cell(job: &Value, now: jiff::Timestamp) -> String {
    let Some(start) = parse_ts(at(job, &["status", "startTime"])) else {
        return String::new();
    };
    let end = parse_ts(at(job, &["status", "completionTime"])).unwrap_or(now);
    let nanos = end.as_nanosecond() - start.as_nanosecond();
    human_duration(std::time::Duration::from_nanos(
        u64::try_from(nanos.max(0)).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn job() -> Value {
        json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"},
            "spec": {"template": {"spec": {"restartPolicy": "Never",
                "containers": [{"name": "pi", "image": "busybox"}]}}}})
    }

    /// The API server's create path: prepare, default, validate.
    fn create(mut j: Value) -> (Value, Vec<String>) {
        RESOURCE.strategy.prepare_for_create(&mut j);
        RESOURCE.apply_defaults(&mut j);
        let m = messages(RESOURCE.validate_create(&j));
        (j, m)
    }

    #[test]
    fn defaults_and_generated_selector() {
        let (j, errs) = create(job());
        assert!(errs.is_empty(), "{errs:?}");
        let spec = &j["spec"];
        assert_eq!(
            (
                &spec["completions"],
                &spec["parallelism"],
                &spec["backoffLimit"]
            ),
            (&json!(1), &json!(1), &json!(6))
        );
        assert_eq!(spec["completionMode"], "NonIndexed");
        assert_eq!(spec["suspend"], false);
        assert_eq!(spec["podReplacementPolicy"], "TerminatingOrFailed");
        assert_eq!(
            spec["selector"],
            json!({"matchLabels": {CONTROLLER_UID_LABEL: "u-1"}})
        );
        let labels = &spec["template"]["metadata"]["labels"];
        assert_eq!(labels[JOB_NAME_LABEL], "pi");
        assert_eq!(labels[LEGACY_CONTROLLER_UID_LABEL], "u-1");
        assert_eq!(j["metadata"]["labels"], *labels);
        assert_eq!(spec["template"]["spec"]["dnsPolicy"], "ClusterFirst");
        assert!(spec["template"]["spec"].get("serviceAccountName").is_none());
        assert_eq!(j["status"], json!({}));
        // Parallelism alone leaves completions unset.
        let mut p = job();
        p["spec"]["parallelism"] = json!(3);
        let (p, _) = create(p);
        assert!(p["spec"].get("completions").is_none());
    }

    #[test]
    fn restart_policy_and_selectors() {
        let mut always = job();
        always["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_eq!(
            create(always).1,
            vec!["spec.template.spec.restartPolicy: Required value: valid values: \"OnFailure\", \"Never\""]
        );
        let mut own = job();
        own["spec"]["selector"] = json!({"matchLabels": {"app": "x"}});
        own["spec"]["template"]["metadata"] = json!({"labels": {"app": "x"}});
        assert_eq!(
            create(own.clone()).1,
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"x\", \"batch.kubernetes.io/controller-uid\":\"u-1\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: `selector` not auto-generated"]
        );
        own["spec"]["manualSelector"] = json!(true);
        assert!(create(own.clone()).1.is_empty());
        own["spec"]["template"]["metadata"]["labels"]["app"] = json!("y");
        assert_eq!(
            create(own).1,
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"y\"}: `selector` does not match template `labels`"]
        );
    }

    #[test]
    fn indexed_and_failure_policy_rules() {
        let mut j = job();
        j["spec"]["completionMode"] = json!("Indexed");
        j["spec"]["parallelism"] = json!(2);
        j["spec"]["podFailurePolicy"] = json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "nope", "operator": "In", "values": [0, 3, 2]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Retry"},
        ]});
        let (j, errs) = create(j);
        assert_eq!(
            j["spec"]["podFailurePolicy"]["rules"][1]["onPodConditions"][0]["status"],
            "True"
        );
        assert_eq!(j["spec"]["podReplacementPolicy"], "Failed");
        assert_eq!(errs, vec![
            "spec.completions: Required value: when completion mode is Indexed",
            "spec.podFailurePolicy.rules[0].onExitCodes.containerName: Invalid value: \"nope\": must be one of the container or initContainer names in the pod template",
            "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator",
            "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,3,2]: must be ordered",
            "spec.podFailurePolicy.rules[2].action: Unsupported value: \"Retry\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"",
            "spec.podFailurePolicy.rules[2]: Invalid value: specifying one of OnExitCodes and OnPodConditions is required",
        ]);
    }

    #[test]
    fn immutable_fields() {
        let (old, _) = create(job());
        let mut new = old.clone();
        new["spec"]["completions"] = json!(3);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        new["spec"]["parallelism"] = json!(4);
        let m = messages(RESOURCE.validate_update(&old, &new));
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            m[0],
            "spec.completions: Invalid value: 3: field is immutable"
        );
        assert!(m[1].starts_with("spec.template: Invalid value: "), "{m:?}");
        assert!(m[1].ends_with(": field is immutable"));
        // A suspended job that never ran may move its pods elsewhere.
        let mut suspended = old.clone();
        suspended["spec"]["suspend"] = json!(true);
        let mut moved = suspended.clone();
        moved["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert!(messages(RESOURCE.validate_update(&suspended, &moved)).is_empty());
    }

    #[test]
    fn rows() {
        let (mut j, _) = create(job());
        j["metadata"]["creationTimestamp"] = json!("2026-01-02T14:59:00Z");
        j["status"] = json!({"startTime": "2026-01-02T14:59:10Z"});
        let cells = RESOURCE.strategy.cells(&j, now());
        assert_eq!(
            cells[..5],
            [
                json!("pi"),
                json!("Running"),
                json!("0/1"),
                json!("50s"),
                json!("60s")
            ]
        );
        assert_eq!(cells[5..7], [json!("pi"), json!("busybox")]);
        assert_eq!(cells[7], json!("batch.kubernetes.io/controller-uid=u-1"));
        j["status"] = json!({"startTime": "2026-01-02T14:59:10Z", "completionTime": "2026-01-02T14:59:20Z",
            "succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]});
        let cells = RESOURCE.strategy.cells(&j, now());
        assert_eq!(cells[1..4], [json!("Complete"), json!("1/1"), json!("10s")]);
        assert_eq!(RESOURCE.strategy.columns().len(), cells.len());
        let mut wide = job();
        wide["spec"] = json!({"parallelism": 3});
        assert_eq!(completions_cell(&wide), "0/1 of 3");
    }
}
