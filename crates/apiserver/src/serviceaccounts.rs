//! ServiceAccounts in the API server, the parts that read the store around the pure
//! `serviceaccount` crate: the TokenRequest subresource (`serviceaccounts/NAME/token`), the
//! authentication of ServiceAccount bearer tokens (the account, and the pod a token is
//! bound to, must still exist with the uids the token names), and the ServiceAccount
//! admission of new pods.

use serde_json::Value;
use serviceaccount::request::{self, RequestError};
use serviceaccount::{admission, token, Authority, Grant, ObjectRef, TokenError};
use store::{ObjectKey, Store, StoreError};

use crate::error::ApiError;

fn str_at<'a>(v: &'a Value, p: &str) -> Option<&'a str> {
    v.pointer(p).and_then(Value::as_str)
}

/// Reads `plural/name` (core group); `None` when absent.
pub(crate) async fn get(
    store: &dyn Store,
    plural: &str,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>, ApiError> {
    let info = api::resources::lookup("", plural).ok_or(ApiError::PathNotFound)?;
    match store
        .get(&ObjectKey::new("", plural, namespace, name))
        .await
    {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(ApiError::from_store(e, info, name)),
    }
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError::NotFound {
        resource: resource.to_string(),
        group: String::new(),
        name: name.to_string(),
    }
}

fn uid_of(obj: &Value) -> String {
    str_at(obj, "/metadata/uid").unwrap_or_default().to_string()
}

/// `POST serviceaccounts/NAME/token`: a signed token for the account (bound to a pod when
/// `spec.boundObjectRef` names one), as kube-apiserver's TokenREST answers.
pub async fn request_token(
    store: &dyn Store,
    authority: &Authority,
    namespace: &str,
    name: &str,
    body: &Value,
) -> Result<Value, ApiError> {
    let spec = request::parse(body).map_err(|e| match e {
        RequestError::Decode(message) => ApiError::BadRequest { message },
        RequestError::Invalid(causes) => ApiError::Invalid {
            kind: "TokenRequest".into(),
            group: "authentication.k8s.io".into(),
            name: name.to_string(),
            causes,
        },
    })?;
    let sa = get(store, "serviceaccounts", namespace, name)
        .await?
        .ok_or_else(|| not_found("serviceaccounts", name))?;
    let mut grant = Grant {
        namespace: namespace.to_string(),
        service_account: ObjectRef {
            name: name.to_string(),
            uid: uid_of(&sa),
        },
        pod: None,
        node: None,
        audiences: spec.audiences.clone(),
        expiration_seconds: spec.expiration_seconds,
    };
    if let Some(bound) = &spec.bound {
        if bound.kind != "Pod" {
            return Err(ApiError::bad_request(format!(
                "cannot bind token to object of type {}",
                bound.kind
            )));
        }
        let pod = get(store, "pods", namespace, &bound.name)
            .await?
            .ok_or_else(|| not_found("pods", &bound.name))?;
        let pod_uid = uid_of(&pod);
        if let Some(want) = bound.uid.as_deref().filter(|u| *u != pod_uid) {
            return Err(ApiError::Conflict {
                resource: "pods".into(),
                group: String::new(),
                name: bound.name.clone(),
                detail: format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"),
            });
        }
        if str_at(&pod, "/spec/serviceAccountName") != Some(name) {
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount {name:?} to pod running with different serviceaccount name."
            )));
        }
        if let Some(node_name) = str_at(&pod, "/spec/nodeName").filter(|n| !n.is_empty()) {
            let node = get(store, "nodes", "", node_name).await?.ok_or_else(|| {
                ApiError::bad_request(format!(
                    "failed to get node {node_name:?} the pod is scheduled to: node not found"
                ))
            })?;
            grant.node = Some(ObjectRef {
                name: node_name.to_string(),
                uid: uid_of(&node),
            });
        }
        grant.pod = Some(ObjectRef {
            name: bound.name.clone(),
            uid: pod_uid,
        });
    }
    let issued = authority
        .issue(&grant, jiff::Timestamp::now())
        .map_err(|e| ApiError::bad_request(crate::error::error_chain(&e)))?;
    Ok(request::response(
        namespace,
        name,
        &spec,
        &issued.audiences,
        &issued.token,
        &issued.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    ))
}

pub use rbac::User;

/// Why a ServiceAccount token was refused (logged; the client only sees 401).
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("service account {namespace}/{name} is gone or was recreated")]
    ServiceAccount { namespace: String, name: String },
    #[error("pod {namespace}/{name} the token is bound to is gone or was recreated")]
    Pod { namespace: String, name: String },
    #[error("looking up the token's objects")]
    Lookup(#[source] ApiError),
}

/// Authenticates a ServiceAccount token at `now`: a valid signature, issuer, audience and
/// window, and an account (and bound pod) that still exists with the token's uid.
pub async fn authenticate(
    store: &dyn Store,
    authority: &Authority,
    bearer: &str,
    now: jiff::Timestamp,
) -> Result<User, AuthError> {
    let audiences = authority.audiences().to_vec();
    authenticate_for(store, authority, bearer, now, &audiences)
        .await
        .map(|(user, _)| user)
}

/// As [`authenticate`] for a token that must be valid for one of `audiences`; also returns
/// those of its audiences that were asked for (a TokenReview's answer).
pub async fn authenticate_for(
    store: &dyn Store,
    authority: &Authority,
    bearer: &str,
    now: jiff::Timestamp,
    audiences: &[String],
) -> Result<(User, Vec<String>), AuthError> {
    let claims = authority.verify_for(bearer, now, audiences)?;
    let common: Vec<String> = claims
        .aud
        .iter()
        .filter(|a| audiences.contains(a))
        .cloned()
        .collect();
    let k = &claims.kubernetes;
    let sa = get(
        store,
        "serviceaccounts",
        &k.namespace,
        &k.serviceaccount.name,
    )
    .await
    .map_err(AuthError::Lookup)?;
    let alive = |obj: &Option<Value>, uid: &str| {
        obj.as_ref()
            .is_some_and(|o| uid_of(o) == uid && o.pointer("/metadata/deletionTimestamp").is_none())
    };
    if !alive(&sa, &k.serviceaccount.uid) {
        return Err(AuthError::ServiceAccount {
            namespace: k.namespace.clone(),
            name: k.serviceaccount.name.clone(),
        });
    }
    if let Some(pod_ref) = &k.pod {
        let pod = get(store, "pods", &k.namespace, &pod_ref.name)
            .await
            .map_err(AuthError::Lookup)?;
        if pod.as_ref().is_none_or(|p| uid_of(p) != pod_ref.uid) {
            return Err(AuthError::Pod {
                namespace: k.namespace.clone(),
                name: pod_ref.name.clone(),
            });
        }
    }
    let mut groups = token::groups(&k.namespace);
    groups.push("system:authenticated".into());
    let user = User {
        name: claims.username(),
        uid: k.serviceaccount.uid.clone(),
        groups,
        extra: Default::default(),
    };
    Ok((user, common))
}

/// The ServiceAccount admission plugin on pod create: the pod runs as `default` unless it
/// names an account, the account must exist (`default` gets a moment to appear, as upstream
/// retries it while the controller creates it in a new namespace), and the projected
/// token volume is mounted unless the pod or account opts out; a pod without
/// `imagePullSecrets` takes the account's. Mirror pods pass unchanged.
pub async fn admit_pod(store: &dyn Store, pod: &mut Value) -> Result<(), ApiError> {
    if admission::is_mirror(pod) {
        return Ok(());
    }
    let namespace = str_at(pod, "/metadata/namespace")
        .unwrap_or_default()
        .to_string();
    let pod_name = str_at(pod, "/metadata/name")
        .unwrap_or_default()
        .to_string();
    let account = admission::default_service_account(pod);
    let attempts = if account == admission::DEFAULT_SERVICE_ACCOUNT {
        10
    } else {
        1
    };
    let mut found = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            let ms = 100 + rand::random_range(0..100u64);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        found = get(store, "serviceaccounts", &namespace, &account).await?;
        if found.is_some() {
            break;
        }
    }
    let Some(sa) = found else {
        return Err(ApiError::Forbidden {
            resource: "pods".into(),
            group: String::new(),
            name: pod_name,
            detail: format!(
                "error looking up service account {namespace}/{account}: serviceaccount {account:?} not found"
            ),
        });
    };
    if admission::should_automount(&sa, pod) {
        admission::mount_token(pod, &crate::names::random_suffix());
    }
    admission::add_image_pull_secrets(&sa, pod);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    const ISSUER: &str = serviceaccount::DEFAULT_ISSUER;

    async fn fixture() -> (tempfile::TempDir, Arc<dyn Store>, Authority) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn Store> = Arc::new(
            store::RedbStore::open(&dir.path().join("store.redb"))
                .await
                .expect("store"),
        );
        for (plural, ns, obj) in [
            (
                "serviceaccounts",
                "ns1",
                json!({"metadata": {"name": "default", "namespace": "ns1", "uid": "sa-1"}}),
            ),
            (
                "serviceaccounts",
                "ns1",
                json!({"metadata": {"name": "quiet", "namespace": "ns1", "uid": "sa-2"},
                       "automountServiceAccountToken": false}),
            ),
            (
                "pods",
                "ns1",
                json!({"metadata": {"name": "web", "namespace": "ns1", "uid": "pod-1"},
                       "spec": {"serviceAccountName": "default", "nodeName": "n1"}}),
            ),
            (
                "nodes",
                "",
                json!({"metadata": {"name": "n1", "uid": "node-1"}}),
            ),
        ] {
            let name = obj["metadata"]["name"].as_str().expect("name").to_string();
            store
                .create(&ObjectKey::new("", plural, ns, &name), obj)
                .await
                .expect("create");
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let authority = Authority::new(&key.serialize_pem(), &key.public_key_pem(), ISSUER, vec![])
            .expect("authority");
        (dir, store, authority)
    }

    fn token_of(resp: &Value) -> String {
        resp["status"]["token"].as_str().expect("token").to_string()
    }

    #[tokio::test]
    async fn bound_token_authenticates_until_its_pod_or_account_goes() {
        let (_dir, store, authority) = fixture().await;
        let body = json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
            "name": "web", "uid": "pod-1"}}});
        let resp = request_token(store.as_ref(), &authority, "ns1", "default", &body)
            .await
            .expect("token");
        assert_eq!(resp["spec"]["audiences"], json!([ISSUER]));
        assert_eq!(resp["spec"]["expirationSeconds"], 3600);
        let t = token_of(&resp);
        let now = jiff::Timestamp::now();
        let user = authenticate(store.as_ref(), &authority, &t, now)
            .await
            .expect("authenticated");
        assert_eq!(user.name, "system:serviceaccount:ns1:default");
        assert_eq!(
            user.groups,
            vec![
                "system:serviceaccounts",
                "system:serviceaccounts:ns1",
                "system:authenticated"
            ]
        );
        let pre = store::Preconditions::default();
        store
            .delete(&ObjectKey::new("", "pods", "ns1", "web"), &pre)
            .await
            .expect("delete pod");
        assert!(matches!(
            authenticate(store.as_ref(), &authority, &t, now).await,
            Err(AuthError::Pod { .. })
        ));

        let plain = request_token(store.as_ref(), &authority, "ns1", "default", &json!({}))
            .await
            .expect("token");
        let t = token_of(&plain);
        assert!(authenticate(store.as_ref(), &authority, &t, now)
            .await
            .is_ok());
        store
            .delete(
                &ObjectKey::new("", "serviceaccounts", "ns1", "default"),
                &pre,
            )
            .await
            .expect("delete sa");
        store
            .create(
                &ObjectKey::new("", "serviceaccounts", "ns1", "default"),
                json!({"metadata": {"name": "default", "namespace": "ns1", "uid": "sa-new"}}),
            )
            .await
            .expect("recreate");
        assert!(matches!(
            authenticate(store.as_ref(), &authority, &t, now).await,
            Err(AuthError::ServiceAccount { .. })
        ));
    }

    #[tokio::test]
    async fn token_requests_refused_as_upstream() {
        let (_dir, store, authority) = fixture().await;
        let s = store.as_ref();
        let err = request_token(s, &authority, "ns1", "ghost", &json!({}))
            .await
            .expect_err("no account");
        assert_eq!(err.to_string(), "serviceaccounts \"ghost\" not found");
        let err = request_token(
            s,
            &authority,
            "ns1",
            "default",
            &json!({"spec": {"expirationSeconds": 10}}),
        )
        .await
        .expect_err("short");
        assert!(matches!(err, ApiError::Invalid { .. }), "{err}");
        let err = request_token(
            s,
            &authority,
            "ns1",
            "default",
            &json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": "web", "uid": "other"}}}),
        )
        .await
        .expect_err("uid");
        assert!(matches!(err, ApiError::Conflict { .. }), "{err}");
        let err = request_token(
            s,
            &authority,
            "ns1",
            "quiet",
            &json!({"spec": {"boundObjectRef": {"kind": "Pod", "name": "web"}}}),
        )
        .await
        .expect_err("other account's pod");
        assert!(
            err.to_string().contains("different serviceaccount"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn admission_mounts_defaults_and_refuses() {
        let (_dir, store, _) = fixture().await;
        let s = store.as_ref();
        let mut pod = json!({"metadata": {"name": "p", "namespace": "ns1"},
            "spec": {"containers": [{"name": "c", "image": "i"}]}});
        admit_pod(s, &mut pod).await.expect("admitted");
        assert_eq!(pod["spec"]["serviceAccountName"], "default");
        let vol = &pod["spec"]["volumes"][0];
        assert!(vol["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-")));
        assert_eq!(
            pod["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            admission::MOUNT_PATH
        );

        let mut quiet = json!({"metadata": {"name": "q", "namespace": "ns1"},
            "spec": {"serviceAccountName": "quiet", "containers": [{"name": "c"}]}});
        admit_pod(s, &mut quiet).await.expect("admitted");
        assert!(quiet["spec"].get("volumes").is_none());

        let mut missing = json!({"metadata": {"name": "m", "namespace": "ns1"},
            "spec": {"serviceAccountName": "ghost", "containers": [{"name": "c"}]}});
        let err = admit_pod(s, &mut missing).await.expect_err("refused");
        assert_eq!(
            err.to_string(),
            "pods \"m\" is forbidden: error looking up service account ns1/ghost: serviceaccount \"ghost\" not found"
        );

        let mut mirror = json!({"metadata": {"name": "s", "namespace": "other",
            "annotations": {admission::MIRROR_ANNOTATION: "x"}},
            "spec": {"containers": [{"name": "c"}]}});
        admit_pod(s, &mut mirror).await.expect("mirror pods pass");
        assert!(mirror["spec"].get("volumes").is_none());
        assert!(mirror["spec"].get("serviceAccountName").is_none());
    }
}
