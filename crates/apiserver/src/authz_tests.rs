//! Authorization through the real router: a ServiceAccount is refused with kube's 403 until
//! a Role and RoleBinding grant it, the policy index follows binding changes, and the review
//! endpoints answer for the caller.

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::http_tests::{harness, Harness};

async fn as_token(
    h: &Harness,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    with_headers(h, method, uri, token, body, &[]).await
}

async fn with_headers(
    h: &Harness,
    method: Method,
    uri: &str,
    token: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, "application/json");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(Body::from(body.map(|b| b.to_string()).unwrap_or_default()))
        .expect("request");
    let resp = h.app.clone().oneshot(req).await.expect("infallible");
    let code = resp.status();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    (code, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn sa_token(h: &Harness) -> String {
    let r = h
        .post(
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            json!({"spec": {}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    r.body["status"]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// Polls until the request's status is `want` (the index follows the store's watch).
async fn until_status(h: &Harness, uri: &str, token: &str, want: StatusCode) -> Value {
    for _ in 0..200 {
        let (code, body) = as_token(h, Method::GET, uri, token, None).await;
        if code == want {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{uri} never answered {want}");
}

const PODS: &str = "/api/v1/namespaces/default/pods";

#[tokio::test]
async fn service_accounts_get_what_their_bindings_grant() {
    let h = harness().await;
    let token = sa_token(&h).await;
    let (code, body) = as_token(&h, Method::GET, PODS, &token, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
            "reason": "Forbidden", "details": {"kind": "pods"}, "code": 403})
    );
    // Discovery and the version are everyone's.
    for path in ["/api", "/apis", "/version", "/apis/apps/v1"] {
        let (code, _) = as_token(&h, Method::GET, path, &token, None).await;
        assert_eq!(code, StatusCode::OK, "{path}");
    }

    let r = h
        .post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                "metadata": {"name": "pod-reader"},
                "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}]}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let r = h
        .post(
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "read-pods"},
                "roleRef": {"kind": "Role", "name": "pod-reader"},
                "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["roleRef"]["apiGroup"], "rbac.authorization.k8s.io");
    until_status(&h, PODS, &token, StatusCode::OK).await;
    let (code, body) = as_token(&h, Method::DELETE, &format!("{PODS}/x"), &token, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "pods \"x\" is forbidden: User \"system:serviceaccount:default:default\" cannot delete resource \"pods\" in API group \"\" in the namespace \"default\""
    );
    let (code, _) = as_token(&h, Method::GET, "/api/v1/nodes", &token, None).await;
    assert_eq!(code, StatusCode::FORBIDDEN);

    // A binding's role never changes.
    let r = h
        .req(
            Method::PATCH,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/read-pods",
            Some("application/merge-patch+json"),
            Some(json!({"roleRef": {"kind": "ClusterRole", "name": "view"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    let r = h
        .req(
            Method::DELETE,
            "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings/read-pods",
            None,
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    until_status(&h, PODS, &token, StatusCode::FORBIDDEN).await;
}

#[tokio::test]
async fn reviews_answer_for_the_caller() {
    let h = harness().await;
    let token = sa_token(&h).await;
    let ssar = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"namespace": "default", "verb": "list", "resource": "pods"}}});
    let uri = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
    let (code, body) = as_token(&h, Method::POST, uri, &token, Some(ssar.clone())).await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(body["status"], json!({"allowed": false}));
    let r = h.post(uri, ssar).await;
    assert_eq!(r.body["status"]["allowed"], true, "{}", r.text);

    let (code, body) = as_token(
        &h,
        Method::POST,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        &token,
        Some(json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(
        body["status"]["userInfo"]["username"],
        "system:serviceaccount:default:default"
    );

    // Only admins may ask about others.
    let sar =
        json!({"spec": {"user": "jane", "nonResourceAttributes": {"verb": "get", "path": "/api"}}});
    let sar_uri = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
    let (code, _) = as_token(&h, Method::POST, sar_uri, &token, Some(sar.clone())).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    let r = h.post(sar_uri, sar).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"]["allowed"], false);
    let r = h.get(sar_uri).await;
    assert_eq!(r.code, StatusCode::METHOD_NOT_ALLOWED, "{}", r.text);

    let (code, body) = as_token(
        &h,
        Method::POST,
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        &token,
        Some(json!({"spec": {"namespace": "default"}})),
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    let rules = body["status"]["resourceRules"].as_array().expect("rules");
    assert!(rules
        .iter()
        .any(|r| r["resources"] == json!(["selfsubjectaccessreviews", "selfsubjectrulesreviews"])));
}

#[tokio::test]
async fn impersonation_needs_the_impersonate_verb() {
    let h = harness().await;
    let token = sa_token(&h).await;
    let sa = [("Impersonate-User", "system:serviceaccount:default:default")];
    let (code, body) =
        with_headers(&h, Method::GET, PODS, crate::http_tests::TOKEN, None, &sa).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert!(body["message"]
        .as_str()
        .is_some_and(|m| m.contains("User \"system:serviceaccount:default:default\" cannot list")));
    let (code, body) = with_headers(
        &h,
        Method::POST,
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        crate::http_tests::TOKEN,
        Some(json!({})),
        &[("Impersonate-User", "jane"), ("Impersonate-Group", "devs")],
    )
    .await;
    assert_eq!(code, StatusCode::CREATED);
    assert_eq!(
        body["status"]["userInfo"],
        json!({"username": "jane", "groups": ["devs", "system:authenticated"]})
    );
    let (code, body) = with_headers(
        &h,
        Method::GET,
        PODS,
        &token,
        None,
        &[("Impersonate-User", "jane")],
    )
    .await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        body["message"],
        "users \"jane\" is forbidden: User \"system:serviceaccount:default:default\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope"
    );
}
