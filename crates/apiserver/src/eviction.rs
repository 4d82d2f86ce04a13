//! The pod `eviction` subresource (`POST pods/NAME/eviction` with a policy/v1 Eviction), as
//! kube-apiserver's eviction storage does it: a pod that already stopped, never started or is
//! going away is simply deleted; any other pod is deleted only when the PodDisruptionBudget
//! covering it allows one more disruption, which the eviction takes by decrementing
//! `status.disruptionsAllowed` in an optimistic update of the budget that also records the pod
//! in `status.disruptedPods` (the disruption controller forgets it once the pod is gone, or
//! after two minutes). A budget that allows none answers 429, which `kubectl drain` retries;
//! a pod under several budgets is refused with a 500, as upstream does. A pod that is not
//! Ready may go without taking from the budget when the budget's
//! `unhealthyPodEvictionPolicy` says so, or when the budget is met without it.
//!
//! Before deleting, the pod gets the `DisruptionTarget` condition that tells its owners why
//! it went.

use serde_json::{json, Value};
use store::StoreError;

use api::resources::ResourceInfo;

use crate::error::ApiError;
use crate::objects::{
    check_preconditions, name_of, now, set_condition, DeleteOptions, Registry, Selectors,
};

/// Upstream's `EvictionsRetry`: how often an eviction retries after a conflict.
const ATTEMPTS: usize = 20;
/// Upstream's `MaxDisruptedPodSize`: evictions the disruption controller has not confirmed.
const MAX_DISRUPTED_PODS: usize = 2000;
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// policy/v1 `DisruptionBudgetCause`, the StatusCause type of a refused eviction.
const BUDGET_CAUSE: &str = "DisruptionBudget";
const MULTIPLE_BUDGETS: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";
const CONDITION_TYPE: &str = "DisruptionAllowed";

fn phase(pod: &Value) -> &str {
    pod.pointer("/status/phase")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn deleting(pod: &Value) -> bool {
    pod.pointer("/metadata/deletionTimestamp")
        .is_some_and(|t| !t.is_null())
}

/// `IsPodReady`: the Ready condition is True.
fn is_ready(pod: &Value) -> bool {
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
fn guard_resource_version(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !deleting(pod)
}

/// The budgets of `pdbs` that cover `pod`: their selector matches its labels. Unlike the
/// disruption controller, eviction lets a missing or empty selector match nothing.
pub fn budgets_for<'a>(pod: &Value, pdbs: &'a [Value]) -> Vec<&'a Value> {
    let labels = pod.pointer("/metadata/labels");
    pdbs.iter()
        .filter(|pdb| {
            pdb.pointer("/spec/selector")
                .filter(|s| s.is_object() && !api::labelselector::is_empty(s))
                .is_some_and(|s| valid_selector(s) && api::labelselector::matches(s, labels))
        })
        .collect()
}

/// Whether the selector converts to a label selector (an unknown operator does not, and
/// such a budget covers nothing).
fn valid_selector(sel: &Value) -> bool {
    let mut e = api::field_errors::FieldErrors::default();
    api::labelselector::validate(&mut e, sel, "selector");
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

/// The 429 of an eviction the budget does not allow (yet).
fn too_many_requests(cause: String) -> ApiError {
    ApiError::TooManyRequests {
        message: VIOLATION.into(),
        cause: Some((BUDGET_CAUSE, cause)),
    }
}

fn forbidden(pdb: &str, detail: &str) -> ApiError {
    ApiError::Forbidden {
        resource: "poddisruptionbudget.policy".into(),
        group: "policy".into(),
        name: pdb.to_string(),
        detail: detail.into(),
    }
}

/// `checkAndDecrement`: the budget `pdb` after it gave one disruption to `pod` at `now`, or
/// why it cannot.
pub fn decrement(pdb: &Value, pod: &str, now: &str) -> Result<Value, ApiError> {
    let name = name_of(pdb);
    let generation = pdb
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    if status_int(pdb, "observedGeneration") < generation {
        return Err(too_many_requests(format!(
            "The disruption budget {name} is still being processed by the server."
        )));
    }
    let allowed = status_int(pdb, "disruptionsAllowed");
    if allowed < 0 {
        return Err(forbidden(name, "pdb disruptions allowed is negative"));
    }
    let disrupted = pdb
        .pointer("/status/disruptedPods")
        .and_then(Value::as_object)
        .map_or(0, |m| m.len());
    if disrupted > MAX_DISRUPTED_PODS {
        return Err(forbidden(
            name,
            "DisruptedPods map too big - too many evictions not confirmed by PDB controller",
        ));
    }
    if allowed == 0 {
        return Err(too_many_requests(format!(
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

/// `UpdateDisruptionAllowedCondition` for a budget that just ran out: `DisruptionAllowed`
/// False with `InsufficientPods`, its transition time moving only with its status.
fn insufficient_pods(pdb: &mut Value, now: &str) {
    let observed = pdb
        .pointer("/status/observedGeneration")
        .cloned()
        .unwrap_or(json!(0));
    let previous = pdb
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| cs.iter().find(|c| c["type"] == CONDITION_TYPE));
    let since = match previous {
        Some(c) if c["status"] == "False" => c["lastTransitionTime"].clone(),
        _ => json!(now),
    };
    set_condition(
        pdb,
        json!({"type": CONDITION_TYPE, "status": "False", "reason": "InsufficientPods",
               "message": "", "observedGeneration": observed, "lastTransitionTime": since}),
    );
}

/// The pod with the `DisruptionTarget` condition an eviction sets.
fn with_disruption_target(pod: &Value, now: &str) -> Value {
    let mut new = pod.clone();
    let since = pod
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c["type"] == "DisruptionTarget" && c["status"] == "True")
        })
        .map_or_else(|| json!(now), |c| c["lastTransitionTime"].clone());
    set_condition(
        &mut new,
        json!({"type": "DisruptionTarget", "status": "True", "lastProbeTime": null,
               "lastTransitionTime": since, "reason": "EvictionByEvictionAPI",
               "message": "Eviction API: evicting"}),
    );
    new
}

impl Registry {
    /// Evicts the pod `name` (see the module doc); `opts` are the Eviction's deleteOptions.
    pub async fn evict(
        &self,
        pods: &ResourceInfo,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(), ApiError> {
        let client_pinned = opts.preconditions.resource_version.is_some();
        let mut attempts = 0;
        let pod = loop {
            attempts += 1;
            let pod = self.get(pods, Some(namespace), name).await?;
            if !can_ignore_budget(&pod) {
                break pod;
            }
            let mut o = opts.clone();
            if guard_resource_version(&pod) && !client_pinned {
                o.preconditions.resource_version = store::resource_version_of(&pod);
            }
            match self.mark_and_delete(pods, namespace, name, &o).await {
                Err(ApiError::Conflict { .. }) if !client_pinned && attempts < ATTEMPTS => {}
                other => return other,
            }
        };
        let pdb_info = api::resources::lookup("policy", "poddisruptionbudgets")
            .ok_or(ApiError::PathNotFound)?;
        let (all, _) = self
            .list(pdb_info, Some(namespace), &Selectors::default())
            .await?;
        let covering = budgets_for(&pod, &all);
        let pdb = match covering.as_slice() {
            [] => None,
            [one] => Some(*one),
            _ => {
                return Err(ApiError::Unsupported {
                    message: MULTIPLE_BUDGETS.into(),
                })
            }
        };
        let mut guard = false;
        if let Some(pdb) = pdb {
            let pdb_name = name_of(pdb).to_string();
            if !is_ready(&pod) && unhealthy_may_go(pdb) {
                guard = true;
            } else {
                let key = Self::key(pdb_info, Some(namespace), &pdb_name);
                let at = now();
                let taken = self
                    .retry_update(
                        pdb_info,
                        &key,
                        None,
                        |old| decrement(old, name, &at),
                        true,
                        opts.dry_run,
                    )
                    .await;
                match taken {
                    Ok(_) => {}
                    Err(ApiError::Store(StoreError::TooManyRetries { .. })) => {
                        return Err(ApiError::Timeout {
                            message: format!(
                                "couldn't update PodDisruptionBudget {pdb_name:?} due to conflicts"
                            ),
                            retry_after_seconds: 10,
                        })
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut o = opts.clone();
        if guard {
            // The pod must not have become Ready since the budget was read.
            o.preconditions.resource_version = store::resource_version_of(&pod);
        }
        match self.mark_and_delete(pods, namespace, name, &o).await {
            Err(ApiError::Conflict { .. }) if guard && !client_pinned => {
                let pdb_name = pdb.map(name_of).unwrap_or_default();
                Err(too_many_requests(format!(
                    "The disruption budget {pdb_name} is still being processed by the server."
                )))
            }
            other => other,
        }
    }

    /// `addConditionAndDeletePod`: the `DisruptionTarget` condition (checked against the
    /// preconditions), then the delete with the preconditions moved to that write.
    async fn mark_and_delete(
        &self,
        pods: &ResourceInfo,
        namespace: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(), ApiError> {
        let mut opts = opts.clone();
        if !opts.dry_run {
            let key = Self::key(pods, Some(namespace), name);
            let pre = opts.preconditions.clone();
            let at = now();
            let marked = self
                .retry_update(
                    pods,
                    &key,
                    None,
                    |old| {
                        check_preconditions(pods, name, old, &pre)?;
                        Ok(with_disruption_target(old, &at))
                    },
                    true,
                    false,
                )
                .await?;
            if opts.preconditions.resource_version.is_some() {
                opts.preconditions.resource_version = store::resource_version_of(&marked);
            }
        }
        self.delete(pods, Some(namespace), name, &opts)
            .await
            .map(|_| ())
    }
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
        let refused = decrement(&twice, "web-3", at).expect_err("exhausted");
        let status = refused.to_status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["message"], VIOLATION);
        assert_eq!(
            status["details"]["causes"][0],
            json!({"reason": "DisruptionBudget",
                   "message": "The disruption budget web needs 1 healthy pods and has 3 currently"})
        );
    }

    #[test]
    fn a_budget_not_yet_observed_refuses() {
        let stale = pdb(json!({"disruptionsAllowed": 1, "observedGeneration": 0}));
        let e = decrement(&stale, "web-1", "2026-01-02T15:00:00Z").expect_err("stale");
        assert_eq!(
            e.to_status()["details"]["causes"][0]["message"],
            "The disruption budget web is still being processed by the server."
        );
        let negative = pdb(json!({"disruptionsAllowed": -1, "observedGeneration": 1}));
        let e = decrement(&negative, "web-1", "2026-01-02T15:00:00Z").expect_err("negative");
        assert_eq!(e.code(), axum::http::StatusCode::FORBIDDEN);
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
        let cond = again["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(cond["lastTransitionTime"], "2026-01-02T15:00:00Z");
        assert_eq!(cond["reason"], "EvictionByEvictionAPI");
    }
}
