//! The pod `eviction` subresource (`POST pods/NAME/eviction` with a policy/v1 Eviction), as
//! kube-apiserver's eviction storage does it: a pod that already stopped, never started or is
//! going away is simply deleted; any other pod is deleted only when the PodDisruptionBudget
//! covering it allows one more disruption, which the eviction takes by decrementing
//! `status.disruptionsAllowed` in an optimistic update of the budget that also records the pod
//! in `status.disruptedPods` (the disruption controller forgets it once the pod is gone, or
//! after two minutes). A budget that allows none answers 429, which `kubectl drain` retries;
//! a pod under several budgets is refused with a 500, as upstream does. A pod that is not
//! Ready may go without taking from the budget when the budget's
//! `unhealthyPodEvictionPolicy` says so, or when the budget is met without it. The decisions
//! are the kind's (`kinds_workloads::poddisruptionbudget::eviction`); this file reads and
//! writes around them.
//!
//! Before deleting, the pod gets the `DisruptionTarget` condition that tells its owners why
//! it went.

use kinds_workloads::poddisruptionbudget::eviction::{
    budgets_for, can_ignore_budget, decrement, guard_resource_version, is_ready, still_processing,
    unhealthy_may_go, with_disruption_target, Refusal,
};
use store::StoreError;

use api::resources::ResourceInfo;

use crate::error::ApiError;
use crate::objects::{check_preconditions, name_of, now, DeleteOptions, Part, Registry, Selectors};

/// Upstream's `EvictionsRetry`: how often an eviction retries after a conflict.
const ATTEMPTS: usize = 20;
const VIOLATION: &str = "Cannot evict pod as it would violate the pod's disruption budget.";
/// policy/v1 `DisruptionBudgetCause`, the StatusCause type of a refused eviction.
const BUDGET_CAUSE: &str = "DisruptionBudget";
const MULTIPLE_BUDGETS: &str =
    "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.";

/// The answer to an eviction the budget `pdb` refused.
fn refused(pdb: &str, why: Refusal) -> ApiError {
    match why {
        Refusal::NotNow(cause) => ApiError::TooManyRequests {
            message: VIOLATION.into(),
            cause: Some((BUDGET_CAUSE, cause)),
        },
        Refusal::Forbidden(detail) => ApiError::Forbidden {
            resource: "poddisruptionbudget.policy".into(),
            group: "policy".into(),
            name: pdb.to_string(),
            detail: detail.into(),
        },
    }
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
                        |old| decrement(old, name, &at).map_err(|why| refused(&pdb_name, why)),
                        Part::Status,
                        opts.dry_run,
                        None,
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
                Err(refused(pdb_name, still_processing(pdb_name)))
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
                    Part::Status,
                    false,
                    None,
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

    #[test]
    fn refusals_answer_as_upstream() {
        let status = refused("web", Refusal::NotNow("needs more".into())).to_status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["message"], VIOLATION);
        assert_eq!(
            status["details"]["causes"][0],
            serde_json::json!({"reason": "DisruptionBudget", "message": "needs more"})
        );
        let status = refused(
            "web",
            Refusal::Forbidden("pdb disruptions allowed is negative"),
        )
        .to_status();
        assert_eq!(
            status["message"],
            "poddisruptionbudget.policy \"web\" is forbidden: pdb disruptions allowed is negative"
        );
    }
}
