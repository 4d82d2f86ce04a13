//! kube-controller-manager's `tokencleaner`: a bootstrap token Secret
//! (`kube-system/bootstrap-token-<id>`, type `bootstrap.kubernetes.io/token`) is deleted once
//! its `expiration` has passed, so the join tokens `peapod up` prints do not pile up. A Secret
//! without an expiration, or with one that cannot be read, is left alone (upstream keeps
//! those too; the authenticator refuses an unreadable one).

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;

const NAMESPACE: &str = "kube-system";
const SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";

struct Ctx {
    client: Client,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let secrets = controller_base::cache::controller(
        Api::<Secret>::namespaced(client.clone(), NAMESPACE),
        watcher::Config::default().fields(&format!("type={SECRET_TYPE}")),
    );
    controller_base::runner::drive("tokencleaner", secrets, Arc::new(Ctx { client }), reconcile)
        .map(|_| ())
        .boxed()
}

/// When the token stops being valid; `None` without a readable expiration.
fn expiration(secret: &Secret) -> Option<jiff::Timestamp> {
    let raw = secret.data.as_ref()?.get("expiration")?;
    std::str::from_utf8(&raw.0).ok()?.parse().ok()
}

/// What to do with the Secret at `now`: delete it, or look again when it expires.
fn decide(secret: &Secret, now: jiff::Timestamp) -> Option<Duration> {
    if secret.type_.as_deref() != Some(SECRET_TYPE) {
        return None;
    }
    let at = expiration(secret)?;
    let left = now.duration_until(at);
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

async fn reconcile(secret: Arc<Secret>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let Some(left) = decide(&secret, jiff::Timestamp::now()) else {
        return Ok(Action::await_change());
    };
    if !left.is_zero() {
        return Ok(Action::requeue(left));
    }
    let name = secret.name_any();
    // Only the Secret that was read (a new token of the same id is not removed).
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: secret.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match Api::<Secret>::namespaced(ctx.client.clone(), NAMESPACE)
        .delete(&name, &params)
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %name, "deleted an expired bootstrap token");
            Ok(Action::await_change())
        }
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(Action::await_change()),
        Err(e) => Err(Error::api(format!(
            "deleting the expired bootstrap token {name}"
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(ty: &str, expiration: Option<&str>) -> Secret {
        let mut data = std::collections::BTreeMap::new();
        data.insert("token-id".to_string(), ByteString(b"abcdef".to_vec()));
        if let Some(e) = expiration {
            data.insert("expiration".to_string(), ByteString(e.as_bytes().to_vec()));
        }
        Secret {
            type_: Some(ty.to_string()),
            data: Some(data),
            ..Secret::default()
        }
    }

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn expired_tokens_go_and_live_ones_are_looked_at_when_they_expire() {
        let s = secret(SECRET_TYPE, Some("2030-01-01T00:00:00Z"));
        assert_eq!(
            decide(&s, at("2029-12-31T23:59:00Z")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(decide(&s, at("2030-01-01T00:00:01Z")), Some(Duration::ZERO));
    }

    #[test]
    fn other_secrets_and_tokens_without_expiration_stay() {
        let opaque = secret("Opaque", Some("2020-01-01T00:00:00Z"));
        assert_eq!(decide(&opaque, at("2029-01-01T00:00:00Z")), None);
        let forever = secret(SECRET_TYPE, None);
        assert_eq!(decide(&forever, at("2029-01-01T00:00:00Z")), None);
        let garbage = secret(SECRET_TYPE, Some("tomorrow"));
        assert_eq!(decide(&garbage, at("2029-01-01T00:00:00Z")), None);
    }
}
