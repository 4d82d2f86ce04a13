//! kube-controller-manager's `csrsigning` for the node client signer
//! (`kubernetes.io/kube-apiserver-client-kubelet`): an approved request that is not failed
//! and has no certificate yet gets one from the cluster CA in `status.certificate`, valid
//! for its `expirationSeconds` (default a year, as `--cluster-signing-duration`). A request
//! that is not a node client request gets the `Failed` condition instead, as upstream's
//! signer validation does.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use nodetrust::csr::{is_node_client, subject, DEFAULT_DURATION, KUBELET_CLIENT_SIGNER};

/// The CA that signs (kube-controller-manager's `--cluster-signing-cert-file` and
/// `--cluster-signing-key-file`), PEM.
#[derive(Clone)]
pub struct ClusterSigning {
    pub cert_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for ClusterSigning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterSigning(<CA>)")
    }
}

struct Ctx {
    client: Client,
    signing: ClusterSigning,
}

pub fn run(client: Client, signing: ClusterSigning) -> BoxFuture<'static, ()> {
    let controller = controller_base::cache::controller(
        Api::<CertificateSigningRequest>::all(client.clone()),
        watcher::Config::default(),
    );
    controller_base::runner::drive(
        "csrsigning",
        controller,
        Arc::new(Ctx { client, signing }),
        reconcile,
    )
    .map(|_| ())
    .boxed()
}

fn has_condition(csr: &CertificateSigningRequest, kind: &str) -> bool {
    csr.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// What the signer does with a request.
enum Step {
    Leave,
    Sign,
    Fail(&'static str),
}

fn step(csr: &CertificateSigningRequest, request: &str) -> Step {
    let issued = csr
        .status
        .as_ref()
        .and_then(|s| s.certificate.as_ref())
        .is_some_and(|c| !c.0.is_empty());
    if csr.spec.signer_name != KUBELET_CLIENT_SIGNER
        || !has_condition(csr, "Approved")
        || has_condition(csr, "Failed")
        || issued
    {
        return Step::Leave;
    }
    let usages: Vec<&str> = csr
        .spec
        .usages
        .iter()
        .flatten()
        .map(String::as_str)
        .collect();
    match subject(request) {
        Ok(s) if is_node_client(&s, &usages) => Step::Sign,
        _ => Step::Fail("invalid kubelet client certificate request"),
    }
}

async fn reconcile(csr: Arc<CertificateSigningRequest>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let name = csr.name_any();
    let request = String::from_utf8_lossy(&csr.spec.request.0).into_owned();
    let mut updated = (*csr).clone();
    let status = updated.status.get_or_insert_with(Default::default);
    match step(&csr, &request) {
        Step::Leave => return Ok(Action::await_change()),
        Step::Sign => {
            let duration = csr
                .spec
                .expiration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_DURATION)
                .min(DEFAULT_DURATION);
            let usages: Vec<&str> = csr
                .spec
                .usages
                .iter()
                .flatten()
                .map(String::as_str)
                .collect();
            match nodetrust::csr::issue(
                &ctx.signing.cert_pem,
                &ctx.signing.key_pem,
                &request,
                &usages,
                duration,
                SystemTime::now(),
            ) {
                Ok(pem) => status.certificate = Some(ByteString(pem.into_bytes())),
                Err(e) => {
                    tracing::warn!(csr = %name, error = %e, "signing failed");
                    failed(
                        status,
                        "SignerValidationFailure",
                        "the request could not be signed",
                    );
                }
            }
        }
        Step::Fail(why) => failed(status, "SignerValidationFailure", why),
    }
    match Api::<CertificateSigningRequest>::all(ctx.client.clone())
        .replace_subresource("status", &name, &PostParams::default(), &updated)
        .await
    {
        Ok(_) => {
            tracing::info!(csr = %name, "signed a node client certificate");
            Ok(Action::await_change())
        }
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Action::await_change()),
        Err(e) => Err(Error::api(format!("updating the status of CSR {name}"))(e)),
    }
}

fn failed(
    status: &mut k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus,
    reason: &str,
    message: &str,
) {
    let now = Time(k8s_openapi::jiff::Timestamp::now());
    status
        .conditions
        .get_or_insert_with(Vec::new)
        .push(CertificateSigningRequestCondition {
            type_: "Failed".into(),
            status: "True".into(),
            reason: Some(reason.into()),
            message: Some(message.into()),
            last_update_time: Some(now.clone()),
            last_transition_time: Some(now),
        });
}

/// The base64 a certificate takes in JSON (for tests and logs).
#[cfg(test)]
fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csr(request: &str, approved: bool) -> CertificateSigningRequest {
        let mut c: CertificateSigningRequest = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "c"},
            "spec": {"request": b64(request.as_bytes()), "signerName": KUBELET_CLIENT_SIGNER,
                "usages": ["digital signature", "client auth"]}
        }))
        .expect("csr");
        if approved {
            c.status = Some(
                serde_json::from_value(serde_json::json!({
                "conditions": [{"type": "Approved", "status": "True"}]}))
                .expect("status"),
            );
        }
        c
    }

    #[test]
    fn only_approved_unsigned_node_client_requests_are_signed() {
        let (_, request) = nodetrust::csr::node_request("n1").expect("request");
        assert!(matches!(step(&csr(&request, false), &request), Step::Leave));
        assert!(matches!(step(&csr(&request, true), &request), Step::Sign));
        let mut issued = csr(&request, true);
        if let Some(s) = issued.status.as_mut() {
            s.certificate = Some(ByteString(b"pem".to_vec()));
        }
        assert!(matches!(step(&issued, &request), Step::Leave));
        let mut server = csr(&request, true);
        server.spec.usages = Some(vec!["server auth".into()]);
        assert!(matches!(step(&server, &request), Step::Fail(_)));
    }
}
