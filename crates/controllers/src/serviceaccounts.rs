//! Two of kube-controller-manager's per-namespace controllers: `serviceaccount` keeps a
//! `default` ServiceAccount in every namespace (pods run as it unless they name another,
//! and the API server refuses pods whose account is missing), and `root-ca-cert-publisher`
//! keeps the `kube-root-ca.crt` ConfigMap with the cluster CA in every namespace (the
//! `ca.crt` of every pod's token volume). Each reconciles a namespace, woken by the
//! namespace's events and by those of the object it keeps, so a deleted one comes back.
//! Terminating namespaces are left alone: the namespace controller is emptying them.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;

/// The account every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// The ConfigMap with the cluster CA, and its key.
pub const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";
/// The annotation upstream's publisher puts on it.
const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

fn live(ns: &Namespace) -> bool {
    ns.metadata.deletion_timestamp.is_none()
        && ns.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Terminating")
}

/// A namespace's events, and those of the object named `name` in any namespace (mapped to
/// its namespace).
fn namespaces_and<K>(client: &Client, name: &'static str) -> Controller<Namespace>
where
    K: kube::Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    controller_base::cache::controller(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches(
        Api::<K>::all(client.clone()),
        watcher::Config::default().fields(&format!("metadata.name={name}")),
        |obj: K| obj.namespace().map(|ns| ObjectRef::<Namespace>::new(&ns)),
    )
}

/// The `serviceaccount` controller.
pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = namespaces_and::<ServiceAccount>(&client, DEFAULT_SERVICE_ACCOUNT);
    controller_base::runner::drive(
        "serviceaccount",
        controller,
        Arc::new(client),
        ensure_default_account,
    )
    .boxed()
}

async fn ensure_default_account(ns: Arc<Namespace>, client: Arc<Client>) -> Result<Action, Error> {
    if !live(&ns) {
        return Ok(Action::await_change());
    }
    let name = ns.name_any();
    let api = Api::<ServiceAccount>::namespaced((*client).clone(), &name);
    let what = || format!("creating ServiceAccount {name}/{DEFAULT_SERVICE_ACCOUNT}");
    match api.get_opt(DEFAULT_SERVICE_ACCOUNT).await {
        Ok(Some(_)) => return Ok(Action::await_change()),
        Ok(None) => {}
        Err(e) => return Err(Error::api(what())(e)),
    }
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.into()),
            namespace: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &sa).await {
        Ok(_) => Ok(Action::await_change()),
        // Someone made it meanwhile, or the namespace started terminating.
        Err(e) if is_conflict(&e) || is_forbidden(&e) || is_not_found(&e) => {
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::api(what())(e)),
    }
}

fn is_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403)
}

/// The `root-ca-cert-publisher` controller, publishing `ca_pem` (kube-controller-manager's
/// `--root-ca-file`).
pub fn run_root_ca_publisher(client: Client, ca_pem: String) -> BoxFuture<'static, ()> {
    let controller = namespaces_and::<ConfigMap>(&client, ROOT_CA_CONFIGMAP);
    controller_base::runner::drive(
        "root-ca-cert-publisher",
        controller,
        Arc::new((client, ca_pem)),
        publish_root_ca,
    )
    .boxed()
}

/// The ConfigMap as the publisher wants it in namespace `ns`.
fn desired_root_ca(ns: &str, ca_pem: &str) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROOT_CA_CONFIGMAP.into()),
            namespace: Some(ns.into()),
            annotations: Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            ROOT_CA_KEY.to_string(),
            ca_pem.to_string(),
        )])),
        ..Default::default()
    }
}

/// `current` with the CA data and annotation the publisher owns put right; `None` when it
/// already has them.
fn corrected(current: &ConfigMap, want: &ConfigMap) -> Option<ConfigMap> {
    let annotated = current
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .is_some_and(|d| d == DESCRIPTION);
    if current.data == want.data && current.binary_data.is_none() && annotated {
        return None;
    }
    let mut fixed = current.clone();
    fixed.data = want.data.clone();
    fixed.binary_data = None;
    fixed
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(DESCRIPTION_ANNOTATION.into(), DESCRIPTION.into());
    Some(fixed)
}

async fn publish_root_ca(ns: Arc<Namespace>, ctx: Arc<(Client, String)>) -> Result<Action, Error> {
    if !live(&ns) {
        return Ok(Action::await_change());
    }
    let (client, ca_pem) = (&ctx.0, &ctx.1);
    let name = ns.name_any();
    let api = Api::<ConfigMap>::namespaced(client.clone(), &name);
    let want = desired_root_ca(&name, ca_pem);
    let what = || format!("publishing ConfigMap {name}/{ROOT_CA_CONFIGMAP}");
    let result = match api.get_opt(ROOT_CA_CONFIGMAP).await {
        Err(e) => return Err(Error::api(what())(e)),
        Ok(None) => api.create(&PostParams::default(), &want).await,
        Ok(Some(current)) => match corrected(&current, &want) {
            None => return Ok(Action::await_change()),
            Some(fixed) => {
                api.replace(ROOT_CA_CONFIGMAP, &PostParams::default(), &fixed)
                    .await
            }
        },
    };
    match result {
        Ok(_) => Ok(Action::await_change()),
        // Lost a race (its event brings us back), or the namespace started terminating.
        Err(e) if is_conflict(&e) || is_forbidden(&e) || is_not_found(&e) => {
            Ok(Action::await_change())
        }
        Err(e) => Err(Error::api(what())(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_ca_configmap_is_corrected_only_when_it_differs() {
        let want = desired_root_ca("team", "CA PEM");
        assert_eq!(
            want.data
                .as_ref()
                .and_then(|d| d.get("ca.crt"))
                .map(String::as_str),
            Some("CA PEM")
        );
        assert!(corrected(&want, &want).is_none());
        let mut edited = want.clone();
        edited.data = Some(BTreeMap::from([("ca.crt".into(), "other".into())]));
        edited
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert("keep".into(), "me".into());
        let fixed = corrected(&edited, &want).expect("fixed");
        assert_eq!(fixed.data, want.data);
        assert_eq!(
            fixed.metadata.labels.and_then(|l| l.get("keep").cloned()),
            Some("me".to_string())
        );
        let mut bare = want.clone();
        bare.metadata.annotations = None;
        assert!(corrected(&bare, &want).is_some());
    }

    #[test]
    fn terminating_namespaces_are_left_alone() {
        let mut ns = Namespace::default();
        assert!(live(&ns));
        ns.status = Some(k8s_openapi::api::core::v1::NamespaceStatus {
            phase: Some("Terminating".into()),
            ..Default::default()
        });
        assert!(!live(&ns));
    }
}
