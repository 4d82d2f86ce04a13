//! kube-controller-manager's `clusterrole-aggregation` controller: a ClusterRole with an
//! `aggregationRule` (the default `admin`, `edit` and `view`, or a user's) holds the rules of
//! every ClusterRole its selectors match, kept current as those roles come, change and go.
//! Any ClusterRole's change wakes every aggregating role (found in the watch cache), whose
//! reconcile reads the ClusterRoles from the API: the change that woke it may not have
//! reached the cache yet.

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::ResourceExt;

use controller_base::error::{is_not_found, Error};
use controller_base::Shared;

/// The `clusterrole-aggregation` controller.
pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let api = Api::<ClusterRole>::all(client.clone());
    let controller = controller_base::cache::controller(api.clone(), watcher::Config::default());
    let aggregators = controller.store();
    let controller = controller.watches(api.clone(), watcher::Config::default(), move |changed| {
        aggregators
            .state()
            .into_iter()
            .filter(|r| r.aggregation_rule.is_some() && r.name_any() != changed.name_any())
            .map(|r| ObjectRef::from_obj(&*r))
            .collect::<Vec<_>>()
    });
    controller_base::runner::drive(
        "clusterrole-aggregation",
        controller,
        Arc::new(api),
        reconcile,
    )
    .boxed()
}

async fn reconcile(role: Arc<ClusterRole>, api: Arc<Api<ClusterRole>>) -> Result<Action, Error> {
    if role.aggregation_rule.is_none() {
        return Ok(Action::await_change());
    }
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(Error::api("listing ClusterRoles"))?;
    let refs: Vec<&ClusterRole> = all.items.iter().collect();
    let name = role.name_any();
    // The role as it is now, not as the cache last saw it.
    let Some(role) = all.items.iter().find(|r| r.name_any() == name) else {
        return Ok(Action::await_change());
    };
    let Some(want) = rbac::aggregation::aggregated_rules(role, &refs) else {
        return Ok(Action::await_change());
    };
    if role.rules.as_deref().unwrap_or_default() == want.as_slice() {
        return Ok(Action::await_change());
    }
    let patch = serde_json::json!({"rules": want});
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(Error::api(format!(
            "aggregating the rules of ClusterRole {name}"
        ))(e)),
    }
}
