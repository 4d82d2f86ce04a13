//! What the pod `eviction` subresource decides about a pod and its budget, as kube-apiserver's
//! eviction storage does (the API server does the reads and writes around it): which pods
//! skip the budget, which budgets cover a pod, when a pod that is not Ready may go without
//! taking from its budget, and the budget after it gave one disruption (`checkAndDecrement`).

use serde_json::{json, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::labelselector;

/// Upstream's `MaxDisruptedPodSize`: evictions the disruption controller has not confirmed.
const MAX_DISRUPTED_PODS: usize = 2000;
const CONDITION_TYPE: &str = "DisruptionAllowed";

/// Why a budget gives no disruption to an eviction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not now (a 429 the client retries); the text is the `DisruptionBudget` cause.
    NotNow(String),
    /// The budget is broken (a 403); the text says how.
    Forbidden(&'static str),
}

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

fn name_of(obj: &Value) -> &str {
    obj.pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `IsPodReady`: the Ready condition is True.
pub fn is_ready(pod: &Value) -> bool {
    pod.pointer("/status/conditions")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// `canIgnorePDB`: a finished, not yet started or terminating pod disrupts nothing more.
pub fn can_ignore_budget(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed" | "Pending") || deleting(pod)
}

/// `shouldEnforceResourceVersion`: deleting such a pod without a budget check must not race
/// with it becoming Ready; finished and terminating pods cannot.
pub fn guard_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !deleting(pod)
}

/// The budgets of `pdbs` that cover `pod`: their selector matches its labels. Unlike the
/// disruption controller, eviction lets a missing or empty selector match nothing.
pub fn budgets_for<'a>(pod: &Value, pdbs: &'a [Value]) -> Vec<&'a Value> {
    let labels = pod.pointer("/metadata/labels");
    pdbs.iter()
        .filter(|pdb| {
            pdb.pointer("/spec/selector")
                .filter(|s| s.is_object() && !labelselector::is_empty(s))
                .is_some_and(|s| valid_selector(s) && labelselector::matches(s, labels))
        })
        .collect()
}

/// Whether the selector converts to a label selector (an unknown operator does not, and
/// such a budget covers nothing).
fn valid_selector(sel: &Value) -> bool {
    let mut e = FieldErrors::default();
    labelselector::validate(&mut e, sel, "selector");
    e.is_empty()
}

fn status_int(pdb: &Value, field: &str) -> i64 {
    pdb.pointer(&format!("/status/{field}"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

/// A pod that is not Ready may go without taking from the budget: the budget says so
/// (`AlwaysAllow`), or the budget is met without the pod (`IfHealthyBudget`, the default).
pub fn unhealthy_may_go(pdb: &Value) -> bool {
    let policy = pdb
        .pointer("/spec/unhealthyPodEvictionPolicy")
        .and_then(Value::as_str);
    let (current, desired) = (
        status_int(pdb, "currentHealthy"),
        status_int(pdb, "desiredHealthy"),
    );
    policy == Some("AlwaysAllow") || (current >= desired && desired > 0)
}

/// The cause of a refusal while the disruption controller has not caught up.
pub fn still_processing(pdb: &str) -> Refusal {
    Refusal::NotNow(format!(
        "The disruption budget {pdb} is still being processed by the server."
    ))
}

/// `checkAndDecrement`: the budget `pdb` after it gave one disruption to `pod` at `now`, or
/// why it cannot.
pub fn decrement(pdb: &Value, pod: &str, now: &str) -> Result<Value, Refusal> {
    let name = name_of(pdb);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_int(pdb, "observedGeneration") < generation {
        return Err(still_processing(name));
    }
    let allowed = status_int(pdb, "disruptionsAllowed");
    if allowed < 0 {
        return Err(Refusal::Forbidden("pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(Refusal::Forbidden(
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(Refusal::NotNow(format!(
            "The disruption budget {name} needs {} healthy pods and has {} currently",
            status_int(pdb, "desiredHealthy"),
            status_int(pdb, "currentHealthy")
        )));
    }
    let mut new = pdb.clone();
    new["status"]["disruptionsAllowed"] = json!(allowed - 1);
    if allowed == 1 {
        insufficient_pods(&mut new, now);
    }
    if !new["status"]["disruptedPods"].is_object() {
        new["status"]["disruptedPods"] = json!({});
    }
    new["status"]["disruptedPods"][pod] = json!(now);
    Ok(new)
}

/// Replaces or appends the condition of `cond`'s type in `obj`'s status; the transition
/// time stays when the status does not change.
fn set_condition(obj: &mut Value, mut cond: Value) {
    let conds = &mut obj["status"]["conditions"];
    if !conds.is_array() {
        *conds = json!([]);
    }
    let Some(list) = conds.as_array_mut() else {
        return;
    };
    match list.iter_mut().find(|c| c["type"] == cond["type"]) {
        Some(c) => {
            if c["status"] == cond["status"] {
                cond["lastTransitionTime"] = c["lastTransitionTime"].clone();
            }
            *c = cond;
        }
        None => list.push(cond),
    }
}

/// `UpdateDisruptionAllowedCondition` for a budget that just ran out: `DisruptionAllowed`
/// False with `InsufficientPods`.
fn insufficient_pods(pdb: &mut Value, now: &str) {
    let observed = pdb
        .pointer("/status/observedGeneration")
        .cloned()
        .unwrap_or(json!(0));
    set_condition(
        pdb,
        json!({"type": CONDITION_TYPE, "status": "False", "reason": "InsufficientPods",
               "message": "", "observedGeneration": observed, "lastTransitionTime": now}),
    );
}

/// The pod with the `DisruptionTarget` condition an eviction sets before deleting it.
pub fn with_disruption_target(pod: &Value, now: &str) -> Value {
    let mut new = pod.clone();
    set_condition(
        &mut new,
        json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
               "lastTransitionTime": now, "reason": "EvictionByEvictionAPI",
               "message": "Eviction API: evicting"}),
    );
    new
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(phase: &str, ready: bool) -> Value {
        json!({"metadata": {"name": "web-1", "labels": {"app": "web"}},
               "status": {"phase": phase, "conditions": [
                   {"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    fn pdb(status: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 1},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
               "status": status})
    }

    #[test]
    fn finished_pending_and_terminating_pods_skip_the_budget() {
        assert!(can_ignore_budget(&pod("Succeeded", false)));
        assert!(can_ignore_budget(&pod("Pending", false)));
        assert!(!can_ignore_budget(&pod("Running", true)));
        let mut going = pod("Running", true);
        going["metadata"]["deletionTimestamp"] = json!("2026-01-02T15:00:00Z");
        assert!(can_ignore_budget(&going));
        assert!(!guard_resource_version(&going));
        assert!(guard_resource_version(&pod("Pending", false)));
        assert!(!guard_resource_version(&pod("Failed", false)));
        assert!(is_ready(&pod("Running", true)));
    }

    #[test]
    fn empty_and_missing_selectors_cover_nothing() {
        let p = pod("Running", true);
        let all = vec![
            pdb(json!({})),
            json!({"metadata": {"name": "empty"}, "spec": {"selector": {}}}),
            json!({"metadata": {"name": "none"}, "spec": {}}),
            json!({"metadata": {"name": "other"}, "spec": {"selector": {"matchLabels": {"app": "db"}}}}),
            json!({"metadata": {"name": "bad"}, "spec": {"selector": {"matchExpressions": [
                {"key": "app", "operator": "Near", "values": ["web"]}]}}}),
        ];
        let names: Vec<&str> = budgets_for(&p, &all).into_iter().map(name_of).collect();
        assert_eq!(names, ["web"]);
    }

    #[test]
    fn decrement_takes_one_and_records_the_pod() {
        let at = "2026-01-02T15:00:00Z";
        let full = pdb(
            json!({"disruptionsAllowed": 2, "currentHealthy": 3, "desiredHealthy": 1,
                              "observedGeneration": 1}),
        );
        let once = decrement(&full, "web-1", at).expect("allowed");
        assert_eq!(once["status"]["disruptionsAllowed"], 1);
        assert_eq!(once["status"]["disruptedPods"], json!({"web-1": at}));
        assert!(once["status"].get("conditions").is_none());
        let twice = decrement(&once, "web-2", at).expect("allowed");
        assert_eq!(twice["status"]["disruptionsAllowed"], 0);
        assert_eq!(
            twice["status"]["disruptedPods"]
                .as_object()
                .map(|m| m.len()),
            Some(2)
        );
        let cond = &twice["status"]["conditions"][0];
        assert_eq!(
            (&cond["type"], &cond["status"], &cond["reason"]),
            (
                &json!("DisruptionAllowed"),
                &json!("False"),
                &json!("InsufficientPods")
            )
        );
        assert_eq!(
            decrement(&twice, "web-3", at),
            Err(Refusal::NotNow(
                "The disruption budget web needs 1 healthy pods and has 3 currently".into()
            ))
        );
    }

    #[test]
    fn a_budget_not_yet_observed_or_negative_refuses() {
        let at = "2026-01-02T15:00:00Z";
        let stale = pdb(json!({"disruptionsAllowed": 1, "observedGeneration": 0}));
        assert_eq!(decrement(&stale, "web-1", at), Err(still_processing("web")));
        let negative = pdb(json!({"disruptionsAllowed": -1, "observedGeneration": 1}));
        assert!(matches!(
            decrement(&negative, "web-1", at),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn unhealthy_pods_go_when_the_policy_or_the_budget_allows() {
        let met = pdb(json!({"currentHealthy": 2, "desiredHealthy": 2}));
        assert!(unhealthy_may_go(&met));
        let short = pdb(json!({"currentHealthy": 1, "desiredHealthy": 2}));
        assert!(!unhealthy_may_go(&short));
        let nothing_wanted = pdb(json!({"currentHealthy": 0, "desiredHealthy": 0}));
        assert!(!unhealthy_may_go(&nothing_wanted));
        let mut always = short.clone();
        always["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
        assert!(unhealthy_may_go(&always));
    }

    #[test]
    fn the_disruption_target_condition_keeps_its_first_time() {
        let p = with_disruption_target(&pod("Running", true), "2026-01-02T15:00:00Z");
        let again = with_disruption_target(&p, "2026-01-02T15:05:00Z");
        let conds = again["status"]["conditions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(conds.len(), 2);
        assert_eq!(conds[0]["type"], "Ready");
        assert_eq!(conds[1]["lastTransitionTime"], "2026-01-02T15:00:00Z");
        assert_eq!(conds[1]["reason"], "EvictionByEvictionAPI");
    }
}
