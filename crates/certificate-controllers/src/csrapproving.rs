//! kube-controller-manager's `csrapproving`: node client certificate requests that a
//! bootstrap token made, or that a node made for itself, get the `Approved` condition
//! (through the `approval` subresource); anything else waits for `kubectl certificate
//! approve|deny`. The rules are [`nodetrust::csr::decide`].

use std::sync::Arc;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;
use nodetrust::csr::{decide, Decision, APPROVED_REASON};

struct Ctx {
    client: Client,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<CertificateSigningRequest>::all(client.clone()),
        watcher::Config::default(),
    );
    controller_base::runner::drive(
        "csrapproving",
        controller,
        Arc::new(Ctx { client }),
        reconcile,
    )
    .map(|_| ())
    .boxed()
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Ok(value) = serde_json::to_value(&*csr) else {
        return Ok(Action::await_change());
    };
    let Decision::Approve(message) = decide(&value) else {
        return Ok(Action::await_change());
    };
    let name = csr.name_any();
    let mut approved = (*csr).clone();
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    let status = approved.status.get_or_insert_with(Default::default);
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Approved".into(),
            status: "True".into(),
            reason: Some(APPROVED_REASON.into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
    match Api::<CertificateSigningRequest>::all(ctx.client.clone())
        .replace_subresource("approval", &name, &PostParams::default(), &approved)
        .await
    {
        Ok(_) => {
            tracing::info!(csr = %name, "approved a node client certificate request");
            Ok(Action::await_change())
        }
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(Error::api(format!("approving CSR {name}"))(e)),
    }
}
