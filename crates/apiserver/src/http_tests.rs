//! Handler tests without sockets: requests go through the real router (auth, routing,
//! registry, error conversion) with `tower::ServiceExt::oneshot`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tower::ServiceExt;

use crate::http::router;
use crate::objects::Registry;
use crate::state::AppState;

pub(crate) const TOKEN: &str = "test-token";

pub(crate) struct Harness {
    _dir: tempfile::TempDir,
    /// Keeps the policy watch running.
    _stop: tokio::sync::watch::Sender<bool>,
    pub(crate) app: axum::Router,
}

pub(crate) async fn harness() -> Harness {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store::RedbStore::open(&dir.path().join("store.redb"))
        .await
        .expect("store");
    let store: Arc<dyn store::Store> = Arc::new(store);
    let registry = Registry::new(store.clone());
    registry
        .ensure_system_namespaces()
        .await
        .expect("namespaces");
    let (authorizer, from) = authorizer::Authorizer::start(store.as_ref())
        .await
        .expect("policy");
    let (stop, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(authorizer.clone().run(store, from, stop_rx));
    crate::bootstrap::rbac_defaults(&registry)
        .await
        .expect("default roles");
    let key = rcgen::KeyPair::generate().expect("key");
    let tokens = serviceaccount::Authority::new(
        &key.serialize_pem(),
        &key.public_key_pem(),
        serviceaccount::DEFAULT_ISSUER,
        Vec::new(),
    )
    .expect("token authority");
    let app = router(AppState {
        registry,
        admin_token: Arc::from(TOKEN),
        tokens: Arc::new(tokens),
        nodes: crate::proxy::NodeClient::new(
            &rcgen::generate_simple_self_signed(vec!["ca".into()])
                .expect("ca")
                .cert
                .pem(),
            None,
        )
        .expect("node client"),
        server_address: "127.0.0.1:6443".into(),
        authorizer,
        metrics: Default::default(),
    });
    Harness {
        _dir: dir,
        _stop: stop,
        app,
    }
}

pub(crate) struct Resp {
    pub code: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Value,
    pub text: String,
}

impl Harness {
    pub(crate) async fn req(
        &self,
        method: Method,
        uri: &str,
        ct: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        self.raw(
            method,
            uri,
            ct,
            None,
            body.map(|b| b.to_string()).unwrap_or_default(),
        )
        .await
    }

    pub(crate) async fn raw(
        &self,
        method: Method,
        uri: &str,
        ct: Option<&str>,
        accept: Option<&str>,
        body: String,
    ) -> Resp {
        let mut b = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if let Some(ct) = ct {
            b = b.header(header::CONTENT_TYPE, ct);
        }
        if let Some(a) = accept {
            b = b.header(header::ACCEPT, a);
        }
        let resp = self
            .app
            .clone()
            .oneshot(b.body(Body::from(body)).expect("request"))
            .await
            .expect("infallible");
        let code = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.expect("body").to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            code,
            headers,
            body,
            text,
        }
    }

    pub(crate) async fn get(&self, uri: &str) -> Resp {
        self.req(Method::GET, uri, None, None).await
    }

    pub(crate) async fn post(&self, uri: &str, body: Value) -> Resp {
        self.req(Method::POST, uri, Some("application/json"), Some(body))
            .await
    }
}

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"app": name}},
           "spec": {"containers": [{"name": "main", "image": "busybox"}]}})
}

#[tokio::test]
async fn auth_version_and_health() {
    let h = harness().await;
    let resp = h
        .app
        .clone()
        .oneshot(
            Request::get("/api/v1/pods")
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let v = h.get("/version").await;
    assert_eq!(v.body["minor"], "33");
    assert_eq!(v.body["gitVersion"], "v1.33.0");
    assert_eq!(h.get("/healthz").await.text, "ok");
    assert_eq!(h.get("/openapi/v2").await.body["swagger"], "2.0");
    let nf = h.get("/api/v1/nothings").await;
    assert_eq!(nf.code, StatusCode::NOT_FOUND);
    assert_eq!(
        nf.body["message"],
        "the server could not find the requested resource"
    );
}

#[tokio::test]
async fn discovery_documents() {
    let h = harness().await;
    let accept =
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json";
    let r = h
        .raw(Method::GET, "/api", None, Some(accept), String::new())
        .await;
    assert_eq!(
        r.headers[header::CONTENT_TYPE],
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    );
    assert_eq!(r.body["apiVersion"], "apidiscovery.k8s.io/v2");
    let resources = r.body["items"][0]["versions"][0]["resources"]
        .as_array()
        .expect("resources");
    let pods = resources
        .iter()
        .find(|r| r["resource"] == "pods")
        .expect("pods");
    assert_eq!(pods["scope"], "Namespaced");
    assert_eq!(pods["shortNames"][0], "po");
    let r = h
        .raw(
            Method::GET,
            "/apis",
            None,
            Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"),
            String::new(),
        )
        .await;
    assert_eq!(r.body["apiVersion"], "apidiscovery.k8s.io/v2beta1");
    assert_eq!(h.get("/api").await.body["versions"][0], "v1");
    assert_eq!(h.get("/api/v1").await.body["kind"], "APIResourceList");
    assert_eq!(h.get("/apis").await.body["kind"], "APIGroupList");
    assert_eq!(
        h.get("/apis/coordination.k8s.io/v1").await.body["groupVersion"],
        "coordination.k8s.io/v1"
    );

    let idx = h.get("/openapi/v3").await;
    let url = idx.body["paths"]["api/v1"]["serverRelativeURL"]
        .as_str()
        .expect("url")
        .to_string();
    let doc = h.get(&url).await.body;
    let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/pods/{name}"]["patch"];
    assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Pod");
    assert!(patch["parameters"]
        .as_array()
        .expect("params")
        .iter()
        .any(|p| p["name"] == "fieldValidation"));
}

#[tokio::test]
async fn create_get_list_and_errors() {
    let h = harness().await;
    let r = h.post("/api/v1/namespaces/default/pods", pod("web")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let obj = r.body;
    assert!(obj["metadata"]["uid"].is_string());
    assert!(obj["metadata"]["creationTimestamp"].is_string());
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert_eq!(obj["spec"]["restartPolicy"], "Always");
    assert_eq!(obj["status"]["phase"], "Pending");

    let dup = h.post("/api/v1/namespaces/default/pods", pod("web")).await;
    assert_eq!(dup.code, StatusCode::CONFLICT);
    assert_eq!(dup.body["reason"], "AlreadyExists");
    assert_eq!(dup.body["message"], "pods \"web\" already exists");

    let mut gen = pod("");
    gen["metadata"] = json!({"generateName": "job-"});
    let r = h.post("/api/v1/namespaces/default/pods", gen).await;
    let name = r.body["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("job-") && name.len() == 9, "{name}");

    let mut other_ns = pod("x");
    other_ns["metadata"]["namespace"] = json!("kube-system");
    let r = h.post("/api/v1/namespaces/default/pods", other_ns).await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);

    let r = h.post("/api/v1/namespaces/nope/pods", pod("x")).await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);
    assert_eq!(r.body["message"], "namespaces \"nope\" not found");

    let mut bad = pod("bad");
    bad["spec"]["containers"][0]
        .as_object_mut()
        .expect("obj")
        .remove("image");
    let r = h.post("/api/v1/namespaces/default/pods", bad).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["reason"], "Invalid");
    assert!(r.body["message"]
        .as_str()
        .expect("msg")
        .starts_with("Pod \"bad\" is invalid: spec.containers[0].image: Required value"));
    assert_eq!(
        r.body["details"]["causes"][0]["field"],
        "spec.containers[0].image"
    );

    let mut unknown = pod("u");
    unknown["spec"]["foo"] = json!(1);
    let r = h
        .post(
            "/api/v1/namespaces/default/pods?fieldValidation=Strict",
            unknown.clone(),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST);
    assert!(r.body["message"]
        .as_str()
        .expect("msg")
        .contains("strict decoding error: unknown field \"spec.foo\""));
    let r = h
        .post(
            "/api/v1/namespaces/default/pods?fieldValidation=Warn",
            unknown,
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED);
    assert!(r.headers[header::WARNING]
        .to_str()
        .expect("ascii")
        .contains("unknown field"));
    assert!(r.body["spec"].get("foo").is_none());

    let r = h
        .post("/api/v1/namespaces/default/pods?dryRun=All", pod("dry"))
        .await;
    assert_eq!(r.code, StatusCode::CREATED);
    assert_eq!(
        h.get("/api/v1/namespaces/default/pods/dry").await.code,
        StatusCode::NOT_FOUND
    );

    let got = h.get("/api/v1/namespaces/default/pods/web").await;
    assert_eq!(got.body["metadata"]["name"], "web");
    let nf = h.get("/api/v1/namespaces/default/pods/nope").await;
    assert_eq!(nf.body["message"], "pods \"nope\" not found");
    assert_eq!(nf.body["details"]["kind"], "pods");

    let list = h
        .get("/api/v1/namespaces/default/pods?labelSelector=app%3Dweb")
        .await;
    assert_eq!(list.body["kind"], "PodList");
    assert_eq!(list.body["items"].as_array().expect("items").len(), 1);
    assert!(list.body["metadata"]["resourceVersion"].is_string());
    let all = h
        .get("/api/v1/pods?fieldSelector=metadata.name%3Dweb")
        .await;
    assert_eq!(all.body["items"].as_array().expect("items").len(), 1);

    let table = h
        .raw(
            Method::GET,
            "/api/v1/namespaces/default/pods",
            None,
            Some("application/json;as=Table;v=v1;g=meta.k8s.io,application/json"),
            String::new(),
        )
        .await;
    assert_eq!(table.body["kind"], "Table");
    assert_eq!(table.body["columnDefinitions"][0]["name"], "Name");
    assert!(table.body["rows"][0]["object"]["metadata"]["name"].is_string());
}

#[tokio::test]
async fn update_conflict_status_and_patches() {
    let h = harness().await;
    let created = h
        .post("/api/v1/namespaces/default/pods", pod("web"))
        .await
        .body;
    let uri = "/api/v1/namespaces/default/pods/web";

    // PUT with the current RV works; the stale one conflicts.
    let mut upd = created.clone();
    upd["metadata"]["labels"]["tier"] = json!("front");
    upd["status"] = json!({"phase": "Running"});
    let r = h
        .req(
            Method::PUT,
            uri,
            Some("application/json"),
            Some(upd.clone()),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["metadata"]["labels"]["tier"], "front");
    // Status changes through the main endpoint are ignored.
    assert_eq!(r.body["status"]["phase"], "Pending");
    let r = h
        .req(Method::PUT, uri, Some("application/json"), Some(upd))
        .await;
    assert_eq!(r.code, StatusCode::CONFLICT);
    assert_eq!(r.body["message"], "Operation cannot be fulfilled on pods \"web\": the object has been modified; please apply your changes to the latest version and try again");

    // The status subresource changes the status, and of a pod its labels and annotations
    // too (upstream's podStatusStrategy), never its spec.
    let r = h
        .req(
            Method::PATCH,
            &format!("{uri}/status"),
            Some("application/merge-patch+json"),
            Some(
                json!({"metadata": {"labels": {"x": "y"}}, "spec": {"nodeName": "elsewhere"},
                        "status": {"phase": "Running"}}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"]["phase"], "Running");
    assert_eq!(r.body["metadata"]["labels"]["x"], "y");
    assert!(
        r.body["spec"].get("nodeName").is_none(),
        "{}",
        r.body["spec"]
    );

    let r = h
        .req(
            Method::PATCH,
            uri,
            Some("application/strategic-merge-patch+json"),
            Some(json!({"spec": {"containers": [{"name": "main", "image": "busybox:2"}]}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["spec"]["containers"][0]["image"], "busybox:2");
    assert_eq!(r.body["metadata"]["generation"], 2);

    let r = h
        .req(
            Method::PATCH,
            uri,
            Some("application/json-patch+json"),
            Some(json!([{"op": "add", "path": "/metadata/annotations", "value": {"a": "b"}}])),
        )
        .await;
    assert_eq!(r.body["metadata"]["annotations"]["a"], "b");

    // Immutable pod spec fields are rejected.
    let r = h
        .req(
            Method::PATCH,
            uri,
            Some("application/merge-patch+json"),
            Some(json!({"spec": {"restartPolicy": "Never"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);

    // Server-side apply creates, then updates.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}});
    let r = h
        .req(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/c?fieldManager=kubectl&force=false",
            Some("application/apply-patch+yaml"),
            Some(cm),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["metadata"]["managedFields"][0]["manager"], "kubectl");
    let r = h
        .req(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/c?fieldManager=kubectl",
            Some("application/apply-patch+yaml"),
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "w"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["k"], "w");
    assert_eq!(
        r.body["metadata"]["managedFields"][0]["fieldsV1"],
        json!({"f:data": {"f:k": {}}})
    );
    // An apply names its manager; only an apply may force.
    let r = h
        .req(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/c",
            Some("application/apply-patch+yaml"),
            Some(json!({"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "z"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
    );
    let r = h
        .req(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/c?force=true",
            Some("application/merge-patch+json"),
            Some(json!({"data": {"k": "z"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    // Another manager's update takes the field; a different applied value then conflicts.
    let r = h
        .req(
            Method::PATCH,
            "/api/v1/namespaces/default/configmaps/c?fieldManager=editor",
            Some("application/merge-patch+json"),
            Some(json!({"data": {"k": "x"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["metadata"]["managedFields"][0]["manager"], "editor");
    assert_eq!(
        r.body["metadata"]["managedFields"][0]["operation"],
        "Update"
    );
    let apply = |force: &str| {
        (
            format!("/api/v1/namespaces/default/configmaps/c?fieldManager=kubectl&force={force}"),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "y"}}),
        )
    };
    let (uri, body) = apply("false");
    let r = h
        .req(
            Method::PATCH,
            &uri,
            Some("application/apply-patch+yaml"),
            Some(body),
        )
        .await;
    assert_eq!(r.code, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(r.body["reason"], "Conflict");
    assert_eq!(
        r.body["message"],
        "Apply failed with 1 conflict: conflict with \"editor\" using v1: .data.k"
    );
    assert_eq!(
        r.body["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"editor\" using v1", "field": ".data.k"}])
    );
    let (uri, body) = apply("true");
    let r = h
        .req(
            Method::PATCH,
            &uri,
            Some("application/apply-patch+yaml"),
            Some(body),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["data"]["k"], "y");
    let mf = r.body["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(mf.len(), 1, "{mf:?}");
    assert_eq!(mf[0]["manager"], "kubectl");
}

#[tokio::test]
async fn graceful_pod_deletion_binding_and_finalizers() {
    let h = harness().await;
    h.post("/api/v1/namespaces/default/pods", pod("web")).await;
    let uri = "/api/v1/namespaces/default/pods/web";
    let r = h
        .post(
            &format!("{uri}/binding"),
            json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"}, "target": {"kind": "Node", "name": "n1"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let bound = h.get(uri).await.body;
    assert_eq!(bound["spec"]["nodeName"], "n1");
    assert_eq!(bound["status"]["conditions"][0]["type"], "PodScheduled");
    let again = h
        .post(&format!("{uri}/binding"), json!({"target": {"name": "n2"}}))
        .await;
    assert_eq!(again.code, StatusCode::CONFLICT);

    // Scheduled and running: graceful, with the pod's 30 s.
    let r = h.req(Method::DELETE, uri, None, None).await;
    assert_eq!(r.code, StatusCode::OK);
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 30);
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    // A shorter grace shortens; a longer one does not extend.
    let r = h
        .req(
            Method::DELETE,
            uri,
            Some("application/json"),
            Some(json!({"gracePeriodSeconds": 5})),
        )
        .await;
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 5);
    let r = h
        .req(
            Method::DELETE,
            &format!("{uri}?gracePeriodSeconds=20"),
            None,
            None,
        )
        .await;
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 5);
    // Grace 0 removes it.
    let r = h
        .req(
            Method::DELETE,
            &format!("{uri}?gracePeriodSeconds=0"),
            None,
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK);
    assert_eq!(h.get(uri).await.code, StatusCode::NOT_FOUND);

    // Unscheduled pods go at once.
    h.post("/api/v1/namespaces/default/pods", pod("p2")).await;
    h.req(
        Method::DELETE,
        "/api/v1/namespaces/default/pods/p2",
        None,
        None,
    )
    .await;
    assert_eq!(
        h.get("/api/v1/namespaces/default/pods/p2").await.code,
        StatusCode::NOT_FOUND
    );

    // Finalizers keep an object until cleared; non-pods answer a Status.
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "finalizers": ["x/y"]}});
    h.post("/api/v1/namespaces/default/configmaps", cm).await;
    let cm_uri = "/api/v1/namespaces/default/configmaps/f";
    let r = h.req(Method::DELETE, cm_uri, None, None).await;
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    let r = h
        .req(
            Method::PATCH,
            cm_uri,
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(h.get(cm_uri).await.code, StatusCode::NOT_FOUND);
    h.post(
        "/api/v1/namespaces/default/configmaps",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "g"}}),
    )
    .await;
    let r = h
        .req(
            Method::DELETE,
            "/api/v1/namespaces/default/configmaps/g",
            None,
            None,
        )
        .await;
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["status"], "Success");
    assert_eq!(r.body["details"]["kind"], "configmaps");
}

#[tokio::test]
async fn namespace_lifecycle_and_deletecollection() {
    let h = harness().await;
    let r = h
        .post(
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"]["phase"], "Active");
    // What the serviceaccounts controller does in a new namespace: pods need the account.
    let r = h
        .post(
            "/api/v1/namespaces/team/serviceaccounts",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    h.post("/api/v1/namespaces/team/pods", pod("a")).await;
    h.post("/api/v1/namespaces/team/pods", pod("b")).await;
    let r = h
        .req(
            Method::DELETE,
            "/api/v1/namespaces/team/pods?labelSelector=app%3Da",
            None,
            None,
        )
        .await;
    assert_eq!(r.body["items"].as_array().expect("items").len(), 1);

    let r = h
        .req(Method::DELETE, "/api/v1/namespaces/team", None, None)
        .await;
    assert_eq!(r.body["status"]["phase"], "Terminating");
    let r = h.post("/api/v1/namespaces/team/pods", pod("c")).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN);
    assert_eq!(r.body["message"], "pods \"c\" is forbidden: unable to create new content in namespace team because it is being terminated");

    let r = h
        .req(Method::DELETE, "/api/v1/namespaces/team/pods/b", None, None)
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    // What the namespace controller does once the namespace is empty: `finalize` without
    // the `kubernetes` finalizer removes it (the controller itself is tested end to end).
    let r = h
        .req(
            Method::PUT,
            "/api/v1/namespaces/team/finalize",
            None,
            Some(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"},
                        "spec": {"finalizers": ["kubernetes"]}}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["status"]["phase"], "Terminating");
    let r = h
        .req(
            Method::PUT,
            "/api/v1/namespaces/team/finalize",
            None,
            Some(
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"},
                        "spec": {"finalizers": []}}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(
        h.get("/api/v1/namespaces/team").await.code,
        StatusCode::NOT_FOUND
    );

    let r = h
        .req(Method::DELETE, "/api/v1/namespaces/default", None, None)
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn watch_stream_over_router() {
    let h = harness().await;
    h.post("/api/v1/namespaces/default/pods", pod("web")).await;
    let resp = h
        .app
        .clone()
        .oneshot(
            Request::get(
                "/api/v1/namespaces/default/pods?watch=true&resourceVersion=0&timeoutSeconds=1",
            )
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    let first: Value =
        serde_json::from_slice(bytes.split(|b| *b == b'\n').next().expect("line")).expect("json");
    assert_eq!(first["type"], "ADDED");
    assert_eq!(first["object"]["metadata"]["name"], "web");
}

#[tokio::test]
async fn pod_status_carries_the_qos_class() {
    let h = harness().await;
    let mut p = pod("guaranteed");
    p["spec"]["containers"][0]["resources"] = json!({
        "limits": {"cpu": "1", "memory": "1Gi"},
        "requests": {"cpu": "1000m", "memory": "1024Mi"}
    });
    let r = h.post("/api/v1/namespaces/default/pods", p).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"]["qosClass"], "Guaranteed");
    assert_eq!(r.body["status"]["phase"], "Pending");
    let mut b = pod("burstable");
    b["spec"]["containers"][0]["resources"] = json!({"requests": {"memory": "1Mi"}});
    let r = h.post("/api/v1/namespaces/default/pods", b).await;
    assert_eq!(r.body["status"]["qosClass"], "Burstable");
    let r = h
        .post("/api/v1/namespaces/default/pods", pod("besteffort"))
        .await;
    assert_eq!(r.body["status"]["qosClass"], "BestEffort");
}

/// The LimitRanger plugin's two halves sit where kube-apiserver runs them: the defaults
/// before validation, the bounds after it, so a pod that is both invalid and out of bounds
/// is answered 422, and one that is only out of bounds 403.
#[tokio::test]
async fn limit_ranger_defaults_before_and_bounds_after_validation() {
    let h = harness().await;
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "500m"},
                             "defaultRequest": {"cpu": "100m"}}]}});
    let r = h.post("/api/v1/namespaces/default/limitranges", lr).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["spec"]["limits"][0]["default"],
        json!({"cpu": "500m"})
    );
    let pods = "/api/v1/namespaces/default/pods";
    let r = h.post(pods, pod("fits")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["spec"]["containers"][0]["resources"],
        json!({"limits": {"cpu": "500m"}, "requests": {"cpu": "100m"}})
    );
    let mut big = pod("big");
    big["spec"]["containers"][0]["resources"] = json!({"limits": {"cpu": "2"}});
    let r = h.post(pods, big.clone()).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "pods \"big\" is forbidden: maximum cpu usage per Container is 500m, but limit is 2"
    );
    big["spec"]["restartPolicy"] = json!("Sometimes");
    let r = h.post(pods, big).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
}

#[tokio::test]
async fn limit_ranges_take_a_generated_name() {
    let h = harness().await;
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"generateName": "bounds-"},
        "spec": {"limits": [{"type": "Container", "max": {"cpu": "500m"}}]}});
    // As kubectl sends it.
    let r = h
        .post(
            "/api/v1/namespaces/default/limitranges?fieldManager=kubectl-create&fieldValidation=Strict",
            lr,
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let name = r.body["metadata"]["name"].as_str().expect("name");
    assert!(name.starts_with("bounds-") && name.len() == 12, "{name}");
}

#[tokio::test]
async fn limit_ranger_checks_claim_updates_and_pod_resizes() {
    let h = harness().await;
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
        "spec": {"limits": [
            {"type": "Container", "max": {"cpu": "500m"}},
            {"type": "PersistentVolumeClaim", "max": {"storage": "1Gi"}}]}});
    let r = h.post("/api/v1/namespaces/default/limitranges", lr).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "grows"}, "provisioner": "peapod.io/local-path",
        "allowVolumeExpansion": true});
    let r = h
        .post("/apis/storage.k8s.io/v1/storageclasses", class)
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let claim = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "grows",
                 "resources": {"requests": {"storage": "512Mi"}}}});
    let claims = "/api/v1/namespaces/default/persistentvolumeclaims";
    let r = h.post(claims, claim).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let merge = "application/merge-patch+json";
    let r = h
        .req(
            Method::PATCH,
            &format!("{claims}/data/status"),
            Some(merge),
            Some(json!({"status": {"phase": "Bound"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    let grow = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
    let r = h
        .req(
            Method::PATCH,
            &format!("{claims}/data"),
            Some(merge),
            Some(grow("2Gi")),
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "persistentvolumeclaims \"data\" is forbidden: maximum storage usage per PersistentVolumeClaim is 1Gi, but request is 2Gi"
    );
    let r = h
        .req(
            Method::PATCH,
            &format!("{claims}/data"),
            Some(merge),
            Some(grow("1Gi")),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);

    // A pod is checked when created and when resized, not on other updates.
    let pods = "/api/v1/namespaces/default/pods";
    let mut small = pod("small");
    small["spec"]["containers"][0]["resources"] =
        json!({"requests": {"cpu": "100m"}, "limits": {"cpu": "200m"}});
    let r = h.post(pods, small).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let resize = |cpu: &str| {
        json!({"spec": {"containers": [{"name": "main",
            "resources": {"requests": {"cpu": "100m"}, "limits": {"cpu": cpu}}}]}})
    };
    let strategic = "application/strategic-merge-patch+json";
    let r = h
        .req(
            Method::PATCH,
            &format!("{pods}/small/resize"),
            Some(strategic),
            Some(resize("1")),
        )
        .await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "pods \"small\" is forbidden: maximum cpu usage per Container is 500m, but limit is 1"
    );
    let r = h
        .req(
            Method::PATCH,
            &format!("{pods}/small/resize"),
            Some(strategic),
            Some(resize("400m")),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    // Tighter bounds do not hold back a label change on an existing pod.
    let lr = json!({"spec": {"limits": [{"type": "Container", "max": {"cpu": "300m"}}]}});
    let r = h
        .req(
            Method::PATCH,
            "/api/v1/namespaces/default/limitranges/lr",
            Some(merge),
            Some(lr),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    let r = h
        .req(
            Method::PATCH,
            &format!("{pods}/small"),
            Some(merge),
            Some(json!({"metadata": {"labels": {"tier": "x"}}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn claims_without_a_class_get_the_default_class() {
    let h = harness().await;
    let claim = |name: &str, class: Option<&str>| {
        let mut spec = json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
        if let Some(c) = class {
            spec["storageClassName"] = json!(c);
        }
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name}, "spec": spec})
    };
    let claims = "/api/v1/namespaces/default/persistentvolumeclaims";
    let r = h.post(claims, claim("early", None)).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert!(
        r.body["spec"].get("storageClassName").is_none(),
        "no default class yet"
    );
    assert_eq!(r.body["status"]["phase"], "Pending");
    let class = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "peapod.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
    let r = h
        .post("/apis/storage.k8s.io/v1/storageclasses", class)
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["reclaimPolicy"], "Delete");
    let r = h.post(claims, claim("data", None)).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["spec"]["storageClassName"], "local-path");
    let r = h.post(claims, claim("static", Some(""))).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["spec"]["storageClassName"], "",
        "an explicit empty class stays"
    );
}

#[tokio::test]
async fn owner_reference_patches_are_conditional_on_the_uid() {
    let h = harness().await;
    let created = h
        .post("/api/v1/namespaces/default/pods", pod("web"))
        .await
        .body;
    let uid = created["metadata"]["uid"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let uri = "/api/v1/namespaces/default/pods/web";
    let smp = Some("application/strategic-merge-patch+json");
    let owner = |name: &str, uid: &str| {
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": name, "uid": uid,
               "controller": true, "blockOwnerDeletion": true})
    };
    // Adoption names the uid it expects: another uid is refused.
    let r = h
        .req(
            Method::PATCH,
            uri,
            smp,
            Some(json!({"metadata": {"ownerReferences": [owner("a", "ua")], "uid": "other"}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = h
        .req(
            Method::PATCH,
            uri,
            smp,
            Some(json!({"metadata": {"ownerReferences": [owner("a", "ua")], "uid": uid}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["metadata"]["ownerReferences"][0]["uid"], "ua");
    // A second controller may not adopt it too.
    let r = h
        .req(
            Method::PATCH,
            uri,
            smp,
            Some(json!({"metadata": {"ownerReferences": [owner("b", "ub")], "uid": uid}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert!(r.body["message"]
        .as_str()
        .is_some_and(|m| m.contains("Only one reference can have Controller set to true")));
    // Release removes the reference by uid.
    let r = h
        .req(
            Method::PATCH,
            uri,
            smp,
            Some(json!({"metadata": {"ownerReferences": [{"$patch": "delete", "uid": "ua"}], "uid": uid}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert!(r.body["metadata"]["ownerReferences"]
        .as_array()
        .is_none_or(Vec::is_empty));
}

#[tokio::test]
async fn scale_subresource_reads_and_writes_replicas() {
    let h = harness().await;
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let r = h
        .post("/apis/apps/v1/namespaces/default/replicasets", rs)
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let uri = "/apis/apps/v1/namespaces/default/replicasets/web/scale";
    let r = h.req(Method::GET, uri, None, None).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["kind"], "Scale");
    assert_eq!(r.body["apiVersion"], "autoscaling/v1");
    assert_eq!(r.body["spec"]["replicas"], 2);
    assert_eq!(
        r.body["status"],
        json!({"replicas": 0, "selector": "app=web"})
    );
    // kubectl scale sends a merge patch.
    let r = h
        .req(
            Method::PATCH,
            uri,
            Some("application/merge-patch+json"),
            Some(json!({"spec": {"replicas": 5}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["spec"]["replicas"], 5);
    let stored = h
        .req(
            Method::GET,
            "/apis/apps/v1/namespaces/default/replicasets/web",
            None,
            None,
        )
        .await
        .body;
    assert_eq!(stored["spec"]["replicas"], 5);
    assert_eq!(stored["metadata"]["generation"], 2);
    // PUT with a stale resourceVersion conflicts; with none it applies.
    let mut scale = r.body.clone();
    scale["spec"]["replicas"] = json!(1);
    scale["metadata"]["resourceVersion"] = json!("1");
    let r = h
        .req(
            Method::PUT,
            uri,
            Some("application/json"),
            Some(scale.clone()),
        )
        .await;
    assert_eq!(r.code, StatusCode::CONFLICT, "{}", r.text);
    scale["metadata"]["resourceVersion"] = stored["metadata"]["resourceVersion"].clone();
    let r = h
        .req(Method::PUT, uri, Some("application/json"), Some(scale))
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["spec"]["replicas"], 1);
    let r = h
        .req(
            Method::PATCH,
            uri,
            Some("application/merge-patch+json"),
            Some(json!({"spec": {"replicas": -1}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "Scale.autoscaling \"web\" is invalid: spec.replicas: Invalid value: -1: must be greater than or equal to 0"
    );
    // Kinds without the subresource answer 404.
    let r = h
        .req(
            Method::GET,
            "/api/v1/namespaces/default/pods/web/scale",
            None,
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND, "{}", r.text);
}

/// A request with `token` as its bearer token.
async fn with_token(h: &Harness, uri: &str, token: &str) -> StatusCode {
    h.app
        .clone()
        .oneshot(
            Request::get(uri)
                .header(header::AUTHORIZATION, format!("Bearer {token}"))
                .body(Body::empty())
                .expect("req"),
        )
        .await
        .expect("infallible")
        .status()
}

#[tokio::test]
async fn token_request_and_service_account_authentication() {
    let h = harness().await;
    let core = h.get("/api/v1").await;
    let token_sub = core.body["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("serviceaccounts/token in discovery")
        .clone();
    assert_eq!(token_sub["kind"], "TokenRequest");
    assert_eq!(token_sub["group"], "authentication.k8s.io");
    assert_eq!(token_sub["verbs"], json!(["create"]));

    // The system namespaces hold their `default` account from the start.
    let r = h
        .post(
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["kind"], "TokenRequest");
    let token = r.body["status"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert!(r.body["status"]["expirationTimestamp"].is_string());
    // Authenticated, and refused by RBAC: the account was granted nothing.
    assert_eq!(
        with_token(&h, "/api/v1/namespaces/default/pods", &token).await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        with_token(&h, "/api/v1/namespaces/default/pods", "x.y.z").await,
        StatusCode::UNAUTHORIZED
    );
    let r = h
        .req(
            Method::DELETE,
            "/api/v1/namespaces/default/serviceaccounts/default",
            None,
            None,
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(
        with_token(&h, "/api/v1/namespaces/default/pods", &token).await,
        StatusCode::UNAUTHORIZED
    );
    let r = h
        .post(
            "/api/v1/namespaces/default/serviceaccounts/default/token",
            json!({"spec": {}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND, "{}", r.text);
}

#[tokio::test]
async fn pods_get_the_token_volume_at_admission() {
    let h = harness().await;
    let r = h.post("/api/v1/namespaces/default/pods", pod("web")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["spec"]["serviceAccountName"], "default");
    assert_eq!(r.body["spec"]["serviceAccount"], "default");
    let vol = &r.body["spec"]["volumes"][0];
    assert!(
        vol["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("kube-api-access-") && n.len() == 21),
        "{vol}"
    );
    assert_eq!(
        r.body["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    let mut opted_out = pod("quiet");
    opted_out["spec"]["automountServiceAccountToken"] = json!(false);
    let r = h.post("/api/v1/namespaces/default/pods", opted_out).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert!(r.body["spec"].get("volumes").is_none(), "{}", r.text);
    let mut other = pod("other");
    other["spec"]["serviceAccountName"] = json!("builder");
    let r = h.post("/api/v1/namespaces/default/pods", other).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "pods \"other\" is forbidden: error looking up service account default/builder: serviceaccount \"builder\" not found"
    );
}

/// Bodies over kube-apiserver's 3 MiB are refused with its 413 Status, and the server keeps
/// serving.
#[tokio::test]
async fn bodies_over_three_mebibytes_get_413() {
    let h = harness().await;
    let big = "x".repeat(3 * 1024 * 1024 + 1);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "big"}, "data": {"k": big}});
    let r = h.post("/api/v1/namespaces/default/configmaps", cm).await;
    assert_eq!(r.code, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text);
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(r.body["reason"], "RequestEntityTooLarge");
    assert_eq!(r.body["code"], 413);
    assert_eq!(
        r.body["message"],
        "Request entity too large: limit is 3145728"
    );
    let small = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "small"}, "data": {"k": "v"}});
    let r = h.post("/api/v1/namespaces/default/configmaps", small).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
}

/// `timeoutSeconds` at the top of the `i64` range starts a watch instead of panicking.
#[tokio::test]
async fn watch_with_the_largest_timeout_is_served() {
    let h = harness().await;
    let resp = h
        .app
        .clone()
        .oneshot(
            Request::get(format!(
                "/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds={}",
                i64::MAX
            ))
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .expect("req"),
        )
        .await
        .expect("infallible");
    assert_eq!(resp.status(), StatusCode::OK);
}

/// The resource metrics API is discoverable and answers lists, gets and selector errors
/// itself; a node whose API cannot be reached leaves its objects out.
#[tokio::test]
async fn resource_metrics_api_without_reachable_nodes() {
    let h = harness().await;
    let gv = h.get("/apis/metrics.k8s.io/v1beta1").await;
    assert_eq!(gv.code, StatusCode::OK, "{}", gv.text);
    assert_eq!(gv.body["resources"][1]["name"], "pods");
    assert_eq!(h.get("/apis/metrics.k8s.io").await.body["kind"], "APIGroup");

    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}}}});
    assert_eq!(
        h.post("/api/v1/nodes", node).await.code,
        StatusCode::CREATED
    );
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
    let created = h.post("/api/v1/namespaces/default/pods", pod).await;
    assert_eq!(created.code, StatusCode::CREATED, "{}", created.text);

    let nodes = h.get("/apis/metrics.k8s.io/v1beta1/nodes").await;
    assert_eq!(nodes.code, StatusCode::OK, "{}", nodes.text);
    assert_eq!(nodes.body["kind"], "NodeMetricsList");
    assert_eq!(nodes.body["items"], json!([]));
    let pods = h
        .get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dweb")
        .await;
    assert_eq!(pods.body["kind"], "PodMetricsList");
    assert_eq!(pods.body["items"], json!([]));
    let all = h.get("/apis/metrics.k8s.io/v1beta1/pods").await;
    assert_eq!(all.code, StatusCode::OK);

    let missing = h
        .get("/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/web")
        .await;
    assert_eq!(missing.code, StatusCode::NOT_FOUND);
    assert_eq!(
        missing.body["message"],
        "pods.metrics.k8s.io \"default/web\" not found"
    );
    let node = h.get("/apis/metrics.k8s.io/v1beta1/nodes/n1").await;
    assert_eq!(node.code, StatusCode::NOT_FOUND);
    assert_eq!(node.body["details"]["group"], "metrics.k8s.io");
    let bad = h
        .get("/apis/metrics.k8s.io/v1beta1/pods?labelSelector=a%20in%20(")
        .await;
    assert_eq!(bad.code, StatusCode::BAD_REQUEST, "{}", bad.text);
}

/// `/metrics` counts resource requests by verb, resource and code, times them, and gives
/// the stored objects per resource; it needs a credential.
#[tokio::test]
async fn prometheus_metrics_count_requests_and_stored_objects() {
    let h = harness().await;
    assert_eq!(
        h.get("/api/v1/namespaces/default/pods").await.code,
        StatusCode::OK
    );
    assert_eq!(
        h.get("/api/v1/namespaces/default/pods/nope").await.code,
        StatusCode::NOT_FOUND
    );
    let m = h.get("/metrics").await;
    assert_eq!(m.code, StatusCode::OK, "{}", m.text);
    assert!(
        m.headers[header::CONTENT_TYPE]
            .to_str()
            .is_ok_and(|ct| ct.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        m.headers
    );
    for line in [
        "apiserver_request_total{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"namespace\",component=\"apiserver\",code=\"200\"} 1",
        "apiserver_request_total{verb=\"GET\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"resource\",component=\"apiserver\",code=\"404\"} 1",
        "apiserver_request_duration_seconds_count{verb=\"LIST\",group=\"\",version=\"v1\",resource=\"pods\",subresource=\"\",scope=\"namespace\",component=\"apiserver\"} 1",
        "apiserver_storage_objects{resource=\"pods\"} 0",
    ] {
        assert!(m.text.lines().any(|l| l == line), "no {line} in:\n{}", m.text);
    }
    let namespaces = m
        .text
        .lines()
        .find_map(|l| l.strip_prefix("apiserver_storage_objects{resource=\"namespaces\"} "))
        .and_then(|n| n.parse::<u64>().ok());
    assert!(namespaces >= Some(4), "{}", m.text);
    let anonymous = h
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/metrics")
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn runtime_class_admission_sets_overhead_and_scheduling() {
    let h = harness().await;
    let class = json!({"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass",
        "metadata": {"name": "sandboxed"}, "handler": "runc",
        "overhead": {"podFixed": {"cpu": "250m", "memory": "120Mi"}},
        "scheduling": {"nodeSelector": {"sandbox": "yes"},
                       "tolerations": [{"key": "sandbox", "operator": "Exists"}]}});
    let r = h.post("/apis/node.k8s.io/v1/runtimeclasses", class).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);

    let mut p = pod("with-class");
    p["spec"]["runtimeClassName"] = json!("sandboxed");
    let r = h.post("/api/v1/namespaces/default/pods", p).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        r.body["spec"]["overhead"],
        json!({"cpu": "250m", "memory": "120Mi"})
    );
    assert_eq!(r.body["spec"]["nodeSelector"], json!({"sandbox": "yes"}));
    let tolerations = r.body["spec"]["tolerations"].as_array().expect("list");
    assert!(tolerations.contains(&json!({"key": "sandbox", "operator": "Exists"})));

    let mut p = pod("missing-class");
    p["spec"]["runtimeClassName"] = json!("nope");
    let r = h.post("/api/v1/namespaces/default/pods", p).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "pods \"missing-class\" is forbidden: pod rejected: RuntimeClass \"nope\" not found"
    );

    let mut p = pod("own-overhead");
    p["spec"]["overhead"] = json!({"cpu": "1"});
    let r = h.post("/api/v1/namespaces/default/pods", p).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "pods \"own-overhead\" is forbidden: pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
    );

    let mut p = pod("conflict");
    p["spec"]["runtimeClassName"] = json!("sandboxed");
    p["spec"]["nodeSelector"] = json!({"sandbox": "no"});
    let r = h.post("/api/v1/namespaces/default/pods", p).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "pods \"conflict\" is forbidden: conflict: runtimeClass.scheduling.nodeSelector[sandbox] = yes; pod.spec.nodeSelector[sandbox] = no"
    );

    // The handler never changes.
    let r = h
        .req(
            Method::PATCH,
            "/apis/node.k8s.io/v1/runtimeclasses/sandboxed",
            Some("application/merge-patch+json"),
            Some(json!({"handler": "kata"})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "RuntimeClass.node.k8s.io \"sandboxed\" is invalid: handler: Invalid value: \"kata\": field is immutable"
    );
}

/// A quota as the controller would have filled it: `hard` in spec and status, `used` given.
async fn quota_with_usage(h: &Harness, name: &str, hard: Value, used: Value) {
    let quotas = "/api/v1/namespaces/default/resourcequotas";
    let q = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name},
                   "spec": {"hard": hard.clone()}});
    let r = h.post(quotas, q).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert!(r.body.get("status").is_none(), "{}", r.text);
    let mut with_status = r.body.clone();
    with_status["status"] = json!({"hard": hard, "used": used});
    let r = h
        .req(
            Method::PUT,
            &format!("{quotas}/{name}/status"),
            Some("application/json"),
            Some(with_status),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
}

/// The ResourceQuota plugin charges what it admits before answering: of creates racing
/// for the last of a quota exactly as many pass as fit, and `status.used` says so.
#[tokio::test]
async fn racing_creates_cannot_overrun_a_quota() {
    let h = harness().await;
    quota_with_usage(&h, "q", json!({"pods": "2"}), json!({"pods": "0"})).await;
    let pods = "/api/v1/namespaces/default/pods";
    let answers =
        futures::future::join_all((0..6).map(|i| h.post(pods, pod(&format!("p{i}"))))).await;
    let created = answers
        .iter()
        .filter(|r| r.code == StatusCode::CREATED)
        .count();
    assert_eq!(created, 2);
    for r in answers.iter().filter(|r| r.code != StatusCode::CREATED) {
        assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
        let message = r.body["message"].as_str().unwrap_or_default();
        assert!(
            message.ends_with(
                "is forbidden: exceeded quota: q, requested: pods=1, used: pods=2, limited: pods=2"
            ),
            "{message}"
        );
    }
    let r = h.get("/api/v1/namespaces/default/resourcequotas/q").await;
    assert_eq!(r.body["status"]["used"], json!({"pods": "2"}));
    // A dry run is checked but charges nothing.
    let r = h.post(&format!("{pods}?dryRun=All"), pod("dry")).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
}

/// LimitRanger's defaults come before the quota: they satisfy its must-specify rule, and
/// what they set is what is charged.
#[tokio::test]
async fn limit_range_defaults_satisfy_a_quota() {
    let h = harness().await;
    quota_with_usage(
        &h,
        "compute",
        json!({"requests.cpu": "1", "limits.cpu": "2"}),
        json!({"requests.cpu": "0", "limits.cpu": "0"}),
    )
    .await;
    let pods = "/api/v1/namespaces/default/pods";
    let r = h.post(pods, pod("bare")).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "pods \"bare\" is forbidden: failed quota: compute: must specify limits.cpu for: main; requests.cpu for: main"
    );
    let lr = json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "lr"},
        "spec": {"limits": [{"type": "Container", "default": {"cpu": "500m"},
                             "defaultRequest": {"cpu": "250m"}}]}});
    let r = h.post("/api/v1/namespaces/default/limitranges", lr).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let r = h.post(pods, pod("bare")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let r = h
        .get("/api/v1/namespaces/default/resourcequotas/compute")
        .await;
    assert_eq!(
        r.body["status"]["used"],
        json!({"requests.cpu": "250m", "limits.cpu": "500m"})
    );
}

/// A claim growing is charged the difference, and refused past the quota.
#[tokio::test]
async fn claim_resize_is_held_to_the_quota() {
    let h = harness().await;
    let sc = json!({"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "grow"}, "provisioner": "example.com/x", "allowVolumeExpansion": true});
    let r = h.post("/apis/storage.k8s.io/v1/storageclasses", sc).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    quota_with_usage(
        &h,
        "storage",
        json!({"requests.storage": "1Gi", "grow.storageclass.storage.k8s.io/persistentvolumeclaims": "1"}),
        json!({"requests.storage": "0", "grow.storageclass.storage.k8s.io/persistentvolumeclaims": "0"}),
    )
    .await;
    let claims = "/api/v1/namespaces/default/persistentvolumeclaims";
    let claim = |name: &str, size: &str| {
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
               "spec": {"storageClassName": "grow", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": size}}}})
    };
    let r = h.post(claims, claim("data", "512Mi")).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let r = h.post(claims, claim("more", "1Mi")).await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "persistentvolumeclaims \"more\" is forbidden: exceeded quota: storage, requested: grow.storageclass.storage.k8s.io/persistentvolumeclaims=1, used: grow.storageclass.storage.k8s.io/persistentvolumeclaims=1, limited: grow.storageclass.storage.k8s.io/persistentvolumeclaims=1"
    );
    // Bound, the claim may grow: within the quota it is charged the difference.
    let mut bound = h.get(&format!("{claims}/data")).await.body;
    bound["status"] = json!({"phase": "Bound"});
    let r = h
        .req(
            Method::PUT,
            &format!("{claims}/data/status"),
            Some("application/json"),
            Some(bound),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    let data = format!("{claims}/data");
    let patch = |size: &str| {
        let body = json!({"spec": {"resources": {"requests": {"storage": size}}}});
        h.req(
            Method::PATCH,
            &data,
            Some("application/merge-patch+json"),
            Some(body),
        )
    };
    let r = patch("2Gi").await;
    assert_eq!(r.code, StatusCode::FORBIDDEN, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "persistentvolumeclaims \"data\" is forbidden: exceeded quota: storage, requested: requests.storage=1536Mi, used: requests.storage=512Mi, limited: requests.storage=1Gi"
    );
    let r = patch("1Gi").await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    let r = h
        .get("/api/v1/namespaces/default/resourcequotas/storage")
        .await;
    assert_eq!(r.body["status"]["used"]["requests.storage"], "1Gi");
}
