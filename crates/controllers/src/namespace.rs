//! The namespace lifecycle controller (kube-controller-manager's `namespace` controller):
//! a namespace being deleted is emptied — every object of every namespaced kind the API
//! lists is deleted — and once nothing is left, its `kubernetes` finalizer is removed through
//! `namespaces/<name>/finalize`, which lets the API server remove it.
//!
//! Graceful pod deletions take their time: as upstream, the controller does not watch what
//! it deletes but looks at the namespace again shortly while objects remain. Meanwhile the
//! namespace's status conditions say what is left and which finalizers hold it, with
//! upstream's condition types, reasons and messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{Namespace, NamespaceCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;

/// How soon a namespace that still holds objects is looked at again.
const STILL_EMPTYING: Duration = Duration::from_secs(1);
/// The finalizer the namespace controller owns.
const FINALIZER: &str = "kubernetes";

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
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
    update_conditions(&client, &ns, &remaining).await?;
    if !remaining.resources.is_empty() {
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

/// What is left in a namespace being emptied: objects per resource (`configmaps.`,
/// `replicasets.apps`) and the finalizers holding them, with how many objects each holds.
#[derive(Debug, Default, PartialEq)]
struct Remaining {
    resources: BTreeMap<String, usize>,
    finalizers: BTreeMap<String, usize>,
}

/// Deletes what is left in namespace `ns` (objects already being deleted are left to
/// finish); answers what remains.
async fn empty_namespace(client: &Client, ns: &str) -> Result<Remaining, Error> {
    // The kinds come from discovery, as upstream's controller does, so kinds the API server
    // gains later are emptied too.
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .map_err(Error::api("discovering the API's resources"))?;
    let mut remaining = Remaining::default();
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
            if items.items.is_empty() {
                continue;
            }
            // Upstream prints `<resource>.<group>`, so core kinds read `pods.`.
            let what = format!("{}.{}", resource.plural, resource.group);
            remaining.resources.insert(what, items.items.len());
            for obj in &items.items {
                for f in obj.metadata.finalizers.iter().flatten() {
                    *remaining.finalizers.entry(f.clone()).or_default() += 1;
                }
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

/// The namespace deleter's conditions: (type, true when something is wrong or left,
/// reason, message). Discovery and deletion failures end the reconcile with an error
/// instead, so theirs always read as fine.
fn conditions(remaining: &Remaining) -> Vec<(&'static str, bool, &'static str, String)> {
    let listed = |m: &BTreeMap<String, usize>, join: &str| {
        m.iter()
            .map(|(k, n)| format!("{k}{join}{n} resource instances"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let content = if remaining.resources.is_empty() {
        (
            false,
            "ContentRemoved",
            "All content successfully removed".to_string(),
        )
    } else {
        let left = listed(&remaining.resources, " has ");
        (
            true,
            "SomeResourcesRemain",
            format!("Some resources are remaining: {left}"),
        )
    };
    let finalizers = if remaining.finalizers.is_empty() {
        (
            false,
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished".to_string(),
        )
    } else {
        let left = listed(&remaining.finalizers, " in ");
        (
            true,
            "SomeFinalizersRemain",
            format!("Some content in the namespace has finalizers remaining: {left}"),
        )
    };
    vec![
        (
            "NamespaceDeletionDiscoveryFailure",
            false,
            "ResourcesDiscovered",
            "All resources successfully discovered".to_string(),
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            false,
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed".to_string(),
        ),
        (
            "NamespaceDeletionContentFailure",
            false,
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization".to_string(),
        ),
        ("NamespaceContentRemaining", content.0, content.1, content.2),
        (
            "NamespaceFinalizersRemaining",
            finalizers.0,
            finalizers.1,
            finalizers.2,
        ),
    ]
}

/// Writes the conditions when they changed; an unchanged condition keeps its transition
/// time.
async fn update_conditions(
    client: &Client,
    ns: &Namespace,
    remaining: &Remaining,
) -> Result<(), Error> {
    let current = ns
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let now = Time(Timestamp::now());
    let wanted: Vec<NamespaceCondition> = conditions(remaining)
        .into_iter()
        .map(|(type_, bad, reason, message)| {
            let status = if bad { "True" } else { "False" };
            let same = current
                .iter()
                .find(|c| c.type_ == type_)
                .filter(|c| c.status == status && c.reason.as_deref() == Some(reason));
            NamespaceCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message),
                last_transition_time: same
                    .and_then(|c| c.last_transition_time.clone())
                    .or_else(|| Some(now.clone())),
            }
        })
        .collect();
    let unchanged = wanted.len() == current.len()
        && wanted.iter().all(|w| {
            current.iter().any(|c| {
                c.type_ == w.type_
                    && c.status == w.status
                    && c.reason == w.reason
                    && c.message == w.message
            })
        });
    if unchanged {
        return Ok(());
    }
    let name = ns.name_any();
    let patch = serde_json::json!({"status": {"conditions": wanted}});
    match Api::<Namespace>::all(client.clone())
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::api(format!(
            "updating the conditions of namespace {name}"
        ))(e)),
    }
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

    #[test]
    fn conditions_say_what_is_left() {
        let mut left = Remaining::default();
        left.resources.insert("configmaps.".into(), 2);
        left.resources.insert("replicasets.apps".into(), 1);
        left.finalizers.insert("example.com/hold".into(), 1);
        let c = conditions(&left);
        assert_eq!(c.len(), 5);
        assert_eq!(
            c[3],
            (
                "NamespaceContentRemaining",
                true,
                "SomeResourcesRemain",
                "Some resources are remaining: configmaps. has 2 resource instances, replicasets.apps has 1 resource instances".to_string()
            )
        );
        assert_eq!(
            c[4].3,
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        let done = conditions(&Remaining::default());
        assert!(done.iter().all(|(_, bad, _, _)| !bad));
        assert_eq!(done[3].2, "ContentRemoved");
    }
}
