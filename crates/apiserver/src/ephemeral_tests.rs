//! The pod `ephemeralcontainers` subresource through the real router: reading it, adding a
//! container with a strategic merge patch as `kubectl debug` sends it and with a PUT, the
//! rules on what may be added, that neither the pod itself nor the subresource can
//! change or remove one that exists, and that RBAC grants the subresource on its own.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http_tests::{harness, Harness, Resp};

const POD: &str = "/api/v1/namespaces/default/pods/web";
const SUB: &str = "/api/v1/namespaces/default/pods/web/ephemeralcontainers";
const SMP: &str = "application/strategic-merge-patch+json";

async fn pod(h: &Harness) {
    let body = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
    let r = h.post("/api/v1/namespaces/default/pods", body).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
}

async fn patch(h: &Harness, uri: &str, body: Value) -> Resp {
    h.req(Method::PATCH, uri, Some(SMP), Some(body)).await
}

fn debugger(name: &str) -> Value {
    json!({"name": name, "image": "busybox", "targetContainerName": "main",
           "command": ["sleep", "1d"], "resources": {}, "stdin": true, "tty": true,
           "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"})
}

#[tokio::test]
async fn strategic_patch_adds_and_only_adds() {
    let h = harness().await;
    pod(&h).await;
    let r = h.get(SUB).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["kind"], "Pod");

    // kubectl debug's patch: the new container plus a label change the subresource drops.
    let r = patch(
        &h,
        SUB,
        json!({"metadata": {"labels": {"x": "y"}},
               "spec": {"ephemeralContainers": [debugger("debugger-1")]}}),
    )
    .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    let list = &r.body["spec"]["ephemeralContainers"];
    assert_eq!(list[0]["name"], "debugger-1");
    assert_eq!(list[0]["terminationMessagePath"], "/dev/termination-log");
    assert!(r.body["metadata"]["labels"].get("x").is_none());
    assert_eq!(r.body["metadata"]["generation"], 1);

    // A second one merges in by name.
    let r = patch(
        &h,
        SUB,
        json!({"spec": {"ephemeralContainers": [debugger("debugger-2")]}}),
    )
    .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    let names: Vec<&str> = r.body["spec"]["ephemeralContainers"]
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["debugger-1", "debugger-2"]);

    // A PUT of the subresource that changes one that exists is refused.
    let mut p = r.body.clone();
    p["spec"]["ephemeralContainers"][0]["image"] = json!("busybox:2");
    let r = h
        .req(Method::PUT, SUB, Some("application/json"), Some(p))
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "spec.ephemeralContainers"
    );
    assert!(r.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("existing ephemeral containers \"debugger-1\" may not be changed"));

    // ... and one that removes one.
    let mut p = h.get(SUB).await.body;
    p["spec"]["ephemeralContainers"] = json!([debugger("debugger-2")]);
    let r = h
        .req(Method::PUT, SUB, Some("application/json"), Some(p))
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.body["message"]
        .as_str()
        .unwrap_or("")
        .contains("existing ephemeral containers \"debugger-1\" may not be removed"));

    // The pod's own endpoint can neither add nor remove them.
    let r = patch(
        &h,
        POD,
        json!({"spec": {"ephemeralContainers": [debugger("debugger-3")]}}),
    )
    .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["details"]["causes"][0]["field"], "spec");
    let mut p = h.get(POD).await.body;
    p["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("ephemeralContainers");
    let r = h
        .req(Method::PUT, POD, Some("application/json"), Some(p))
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        h.get(POD).await.body["spec"]["ephemeralContainers"]
            .as_array()
            .map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn invalid_ephemeral_containers_name_the_field() {
    let h = harness().await;
    pod(&h).await;
    let cases = [
        (
            json!({"name": "main", "image": "busybox"}),
            "spec.ephemeralContainers[0].name",
            "FieldValueDuplicate",
        ),
        (
            json!({"name": "d", "image": "busybox", "ports": [{"containerPort": 80}]}),
            "spec.ephemeralContainers[0].ports",
            "FieldValueForbidden",
        ),
        (
            json!({"name": "d", "image": "busybox",
                   "readinessProbe": {"exec": {"command": ["true"]}}}),
            "spec.ephemeralContainers[0].readinessProbe",
            "FieldValueForbidden",
        ),
        (
            json!({"name": "d", "image": "busybox", "resources": {"limits": {"cpu": "1"}}}),
            "spec.ephemeralContainers[0].resources",
            "FieldValueForbidden",
        ),
        (
            json!({"name": "d", "image": "busybox",
                   "lifecycle": {"preStop": {"exec": {"command": ["true"]}}}}),
            "spec.ephemeralContainers[0].lifecycle",
            "FieldValueForbidden",
        ),
        (
            json!({"name": "d", "image": "busybox", "targetContainerName": "nope"}),
            "spec.ephemeralContainers[0].targetContainerName",
            "FieldValueNotFound",
        ),
    ];
    for (c, field, reason) in cases {
        let r = patch(&h, SUB, json!({"spec": {"ephemeralContainers": [c]}})).await;
        assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
        assert_eq!(r.body["details"]["causes"][0]["field"], field, "{}", r.text);
        assert_eq!(
            r.body["details"]["causes"][0]["reason"], reason,
            "{}",
            r.text
        );
        assert!(
            r.body["message"]
                .as_str()
                .unwrap_or("")
                .starts_with(&format!("Pod \"web\" is invalid: {field}")),
            "{}",
            r.text
        );
    }
    assert!(h.get(POD).await.body["spec"]
        .get("ephemeralContainers")
        .is_none());
}

#[tokio::test]
async fn static_pods_take_no_ephemeral_containers() {
    let h = harness().await;
    let body = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web",
                     "annotations": {"kubernetes.io/config.mirror": "abc"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]}});
    let r = h.post("/api/v1/namespaces/default/pods", body).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let r = patch(
        &h,
        SUB,
        json!({"spec": {"ephemeralContainers": [debugger("d")]}}),
    )
    .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r
        .text
        .contains("static pods do not support ephemeral containers"));
}

/// A strategic merge patch of `uri` with a ServiceAccount's token.
async fn patch_as(h: &Harness, uri: &str, token: &str, body: Value) -> StatusCode {
    use axum::body::Body;
    use axum::http::{header, Request};
    use tower::ServiceExt;
    let req = Request::builder()
        .method(Method::PATCH)
        .uri(uri)
        .header(header::AUTHORIZATION, format!("Bearer {token}"))
        .header(header::CONTENT_TYPE, SMP)
        .body(Body::from(body.to_string()))
        .expect("request");
    h.app
        .clone()
        .oneshot(req)
        .await
        .expect("infallible")
        .status()
}

/// Polls until the patch answers `want` (the policy index follows the store's watch).
async fn until(h: &Harness, uri: &str, token: &str, body: &Value, want: StatusCode) {
    for _ in 0..200 {
        if patch_as(h, uri, token, body.clone()).await == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("PATCH {uri} never answered {want}");
}

#[tokio::test]
async fn rbac_checks_the_subresource() {
    let h = harness().await;
    pod(&h).await;
    let r = h
        .post(
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            json!({"spec": {}}),
        )
        .await;
    let token = r.body["status"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1/namespaces/default";
    for (name, resource) in [("pods", "pods"), ("debug", "pods/ephemeralcontainers")] {
        let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["patch"]}]});
        let r = h.post(&format!("{RBAC}/roles"), role).await;
        assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    }
    let bind = |name: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
               "metadata": {"name": name}, "roleRef": {"kind": "Role", "name": name},
               "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": "default"}]})
    };
    // Patching pods does not cover their ephemeral containers.
    let r = h.post(&format!("{RBAC}/rolebindings"), bind("pods")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let label = json!({"metadata": {"labels": {"x": "y"}}});
    until(&h, POD, &token, &label, StatusCode::OK).await;
    let add = json!({"spec": {"ephemeralContainers": [debugger("d")]}});
    assert_eq!(
        patch_as(&h, SUB, &token, add.clone()).await,
        StatusCode::FORBIDDEN
    );
    let r = h.post(&format!("{RBAC}/rolebindings"), bind("debug")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    until(&h, SUB, &token, &add, StatusCode::OK).await;
}
