//! The namespace lifecycle controller (kube-controller-manager's `namespace` controller):
//! a namespace being deleted is emptied — every object of every namespaced kind the API
//! lists is deleted — and once nothing is left, its `kubernetes` finalizer is removed through
//! `namespaces/<name>/finalize`, which lets the API server remove it.
//!
//! Graceful pod deletions take their time: as upstream, the controller does not watch what
//! it deletes but looks at the namespace again shortly while objects remain.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};

/// How soon a namespace that still holds objects is looked at again.
const STILL_EMPTYING: Duration = Duration::from_secs(1);
/// The finalizer the namespace controller owns.
const FINALIZER: &str = "kubernetes";

pub fn run(client: Client) -> BoxFuture<'static, ()> {
    let controller = Controller::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    );
    controller_base::runner::drive("namespace", controller, Arc::new(client), reconcile).boxed()
}

async fn reconcile(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, Error> {
    if ns.metadata.deletion_timestamp.is_none() {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let remaining = empty_namespace(&client, &name).await?;
    if remaining > 0 {
        return Ok(Action::requeue(STILL_EMPTYING));
    }
    let mut body = (*ns).clone();
    if let Some(spec) = body.spec.as_mut() {
        spec.finalizers = Some(without_finalizer(spec.finalizers.take()));
    }
    match Api::<Namespace>::all((*client).clone())
        .replace_subresource("finalize", &name, &PostParams::default(), &body)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(e) if is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(Error::api(format!("finalizing namespace {name}"))(e)),
    }
}

fn without_finalizer(finalizers: Option<Vec<String>>) -> Vec<String> {
    finalizers
        .unwrap_or_default()
        .into_iter()
        .filter(|f| f != FINALIZER)
        .collect()
}

/// Deletes what is left in namespace `ns` (objects already being deleted are left to
/// finish); returns how many objects remain.
async fn empty_namespace(client: &Client, ns: &str) -> Result<usize, Error> {
    // The kinds come from discovery, as upstream's controller does, so kinds the API server
    // gains later are emptied too.
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::api("discovering the API's resources"))?;
    let mut remaining = 0usize;
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            let deletable =
                caps.supports_operation(verbs::LIST) && caps.supports_operation(verbs::DELETE);
            if caps.scope != Scope::Namespaced || !deletable || resource.plural.contains('/') {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
            let items = api
                .list(&ListParams::default())
                .await
                .map_err(Error::api(format!("listing {} in {ns}", resource.plural)))?;
            for obj in &items.items {
                remaining += 1;
                if obj.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                // Background, as upstream's deleter asks: a kind that orphans by default
                // (batch/v1 Jobs) must not leave its dependents behind either.
                match api
                    .delete(&obj.name_any(), &DeleteParams::background())
                    .await
                {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) || is_conflict(&e) => {}
                    Err(e) => {
                        return Err(Error::api(format!(
                            "deleting {} {ns}/{}",
                            resource.plural,
                            obj.name_any()
                        ))(e))
                    }
                }
            }
        }
    }
    Ok(remaining)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_finalizer_is_removed() {
        assert_eq!(
            without_finalizer(Some(vec!["kubernetes".into(), "example.com/keep".into()])),
            vec!["example.com/keep".to_string()]
        );
        assert!(without_finalizer(None).is_empty());
    }
}
