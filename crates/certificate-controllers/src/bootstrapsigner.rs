//! kube-controller-manager's `bootstrapsigner`: the `kube-public/cluster-info` ConfigMap
//! carries, besides its `kubeconfig`, one `jws-kubeconfig-<token-id>` detached JWS per
//! bootstrap token that is valid for signing (`usage-bootstrap-signing: "true"`, not
//! expired), so a joining node holding a token can check that the kubeconfig (and the CA in
//! it) came from someone who knows the token. Signatures of tokens that went away are removed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::Client;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;

pub const NAMESPACE: &str = "kube-public";
pub const NAME: &str = "cluster-info";
pub const JWS_PREFIX: &str = "jws-kubeconfig-";
const TOKEN_NAMESPACE: &str = "kube-system";
const TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";

struct Ctx {
    client: Client,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<ConfigMap>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default().fields(&format!("metadata.name={NAME}")),
    )
    .watches(
        Api::<Secret>::namespaced(client.clone(), TOKEN_NAMESPACE),
        watcher::Config::default().fields(&format!("type={TOKEN_TYPE}")),
        |_| Some(ObjectRef::new(NAME).within(NAMESPACE)),
    );
    controller_base::runner::drive(
        "bootstrapsigner",
        controller,
        Arc::new(Ctx { client }),
        reconcile,
    )
    .map(|_| ())
    .boxed()
}

fn field(secret: &Secret, key: &str) -> Option<String> {
    let raw = secret.data.as_ref()?.get(key)?;
    String::from_utf8(raw.0.clone()).ok()
}

/// (id, secret, expiration) of a token that may sign at `now`.
fn signing_token(
    secret: &Secret,
    now: jiff::Timestamp,
) -> Option<(String, String, Option<jiff::Timestamp>)> {
    if secret.type_.as_deref() != Some(TOKEN_TYPE)
        || secret.metadata.deletion_timestamp.is_some()
        || field(secret, "usage-bootstrap-signing").as_deref() != Some("true")
    {
        return None;
    }
    let id = field(secret, "token-id")?;
    if secret.metadata.name.as_deref() != Some(&format!("bootstrap-token-{id}")) {
        return None;
    }
    let token = field(secret, "token-secret")?;
    let expiration = match field(secret, "expiration") {
        None => None,
        Some(text) => match text.parse::<jiff::Timestamp>() {
            Ok(at) if at > now => Some(at),
            _ => return None,
        },
    };
    Some((id, token, expiration))
}

/// The ConfigMap's data as it should be: `data` without old signatures, plus one per
/// signing token; and when the first of those tokens expires.
fn signed_data(
    data: &BTreeMap<String, String>,
    secrets: &[Secret],
    now: jiff::Timestamp,
) -> (BTreeMap<String, String>, Option<jiff::Timestamp>) {
    let mut out: BTreeMap<String, String> = data
        .iter()
        .filter(|(k, _)| !k.starts_with(JWS_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let Some(kubeconfig) = data.get("kubeconfig") else {
        return (out, None);
    };
    let mut first_expiry: Option<jiff::Timestamp> = None;
    for s in secrets {
        if let Some((id, token, expiration)) = signing_token(s, now) {
            let jws = nodetrust::jws::sign_detached(kubeconfig.as_bytes(), &id, &token);
            out.insert(format!("{JWS_PREFIX}{id}"), jws);
            if let Some(at) = expiration {
                first_expiry = Some(first_expiry.map_or(at, |f| f.min(at)));
            }
        }
    }
    (out, first_expiry)
}

async fn reconcile(cm: Arc<ConfigMap>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let secrets = Api::<Secret>::namespaced(ctx.client.clone(), TOKEN_NAMESPACE)
        .list(&ListParams::default().fields(&format!("type={TOKEN_TYPE}")))
        .await
        .map_err(Error::api("listing bootstrap tokens"))?;
    let now = jiff::Timestamp::now();
    let data = cm.data.clone().unwrap_or_default();
    let (want, first_expiry) = signed_data(&data, &secrets.items, now);
    if want != data {
        let mut updated = (*cm).clone();
        updated.data = Some(want);
        match Api::<ConfigMap>::namespaced(ctx.client.clone(), NAMESPACE)
            .replace(NAME, &PostParams::default(), &updated)
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict(&e) || is_not_found(&e) => return Ok(Action::await_change()),
            Err(e) => return Err(Error::api("signing cluster-info")(e)),
        }
    }
    Ok(match first_expiry {
        Some(at) => Action::requeue(
            Duration::try_from(now.duration_until(at)).unwrap_or(Duration::ZERO)
                + Duration::from_secs(1),
        ),
        None => Action::await_change(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn token(id: &str, signing: bool, expiration: Option<&str>) -> Secret {
        let mut data = BTreeMap::new();
        let mut put = |k: &str, v: &str| {
            data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
        };
        put("token-id", id);
        put("token-secret", "0123456789abcdef");
        put(
            "usage-bootstrap-signing",
            if signing { "true" } else { "false" },
        );
        if let Some(e) = expiration {
            put("expiration", e);
        }
        let mut s = Secret {
            type_: Some(TOKEN_TYPE.into()),
            data: Some(data),
            ..Secret::default()
        };
        s.metadata.name = Some(format!("bootstrap-token-{id}"));
        s
    }

    #[test]
    fn each_valid_signing_token_signs_and_stale_signatures_go() {
        let now: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().expect("ts");
        let mut data = BTreeMap::new();
        data.insert("kubeconfig".to_string(), "apiVersion: v1\n".to_string());
        data.insert(format!("{JWS_PREFIX}gone00"), "x..y".to_string());
        let secrets = [
            token("aaaaaa", true, Some("2026-01-02T00:00:00Z")),
            token("bbbbbb", true, None),
            token("cccccc", false, None),
            token("dddddd", true, Some("2025-12-31T00:00:00Z")),
        ];
        let (out, first) = signed_data(&data, &secrets, now);
        let keys: Vec<&str> = out.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "jws-kubeconfig-aaaaaa",
                "jws-kubeconfig-bbbbbb",
                "kubeconfig"
            ]
        );
        assert_eq!(first, Some("2026-01-02T00:00:00Z".parse().expect("ts")));
        let jws = &out["jws-kubeconfig-aaaaaa"];
        assert_eq!(
            nodetrust::jws::verify_detached(jws, b"apiVersion: v1\n", "aaaaaa", "0123456789abcdef"),
            Ok(())
        );
        // Signing again changes nothing.
        assert_eq!(signed_data(&out, &secrets, now).0, out);
    }
}
