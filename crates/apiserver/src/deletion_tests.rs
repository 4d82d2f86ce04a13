//! DELETE and its garbage-collection side through the real router: propagation policies
//! (query and body, the deprecated `orphanDependents`), their validation, preconditions,
//! finalizers that hold an object, and `ownerReferences` validation.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http_tests::{harness, Harness, Resp};

const CMS: &str = "/api/v1/namespaces/default/configmaps";

fn cm(name: &str, meta: Value) -> Value {
    let mut m = json!({"name": name});
    if let (Some(m), Some(extra)) = (m.as_object_mut(), meta.as_object()) {
        m.extend(extra.clone());
    }
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": m})
}

async fn delete(h: &Harness, uri: &str, body: Option<Value>) -> Resp {
    let ct = body.as_ref().map(|_| "application/json");
    h.req(Method::DELETE, uri, ct, body).await
}

fn finalizers(obj: &Value) -> Vec<&str> {
    obj["metadata"]["finalizers"]
        .as_array()
        .map(|f| f.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn propagation_policies_set_the_finalizers() {
    let h = harness().await;
    for name in ["orphaned", "foreground", "background", "legacy"] {
        let r = h.post(CMS, cm(name, json!({}))).await;
        assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    }
    // Orphan from the query: kept, marked, with the `orphan` finalizer.
    let r = delete(
        &h,
        &format!("{CMS}/orphaned?propagationPolicy=Orphan"),
        None,
    )
    .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(finalizers(&r.body), ["orphan"]);
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(h.get(&format!("{CMS}/orphaned")).await.code, StatusCode::OK);

    // Foreground from the body, as kubectl sends it.
    let r = delete(
        &h,
        &format!("{CMS}/foreground"),
        Some(
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"}),
        ),
    )
    .await;
    assert_eq!(finalizers(&r.body), ["foregroundDeletion"]);
    // A second DELETE may change its mind while only finalizers hold the object.
    let r = delete(
        &h,
        &format!("{CMS}/foreground"),
        Some(json!({"propagationPolicy": "Orphan"})),
    )
    .await;
    assert_eq!(finalizers(&r.body), ["orphan"]);
    // Adding a finalizer to an object being deleted is refused; removing one is not.
    let r = h
        .req(
            Method::PATCH,
            &format!("{CMS}/foreground"),
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"finalizers": ["orphan", "example.com/late"]}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "ConfigMap \"foreground\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"example.com/late\"}"
    );
    let r = h
        .req(
            Method::PATCH,
            &format!("{CMS}/foreground"),
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"finalizers": []}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(
        h.get(&format!("{CMS}/foreground")).await.code,
        StatusCode::NOT_FOUND
    );

    // Background (and no choice at all) removes it at once.
    let r = delete(
        &h,
        &format!("{CMS}/background"),
        Some(json!({"propagationPolicy": "Background"})),
    )
    .await;
    assert_eq!(r.body["status"], "Success", "{}", r.text);
    assert_eq!(
        h.get(&format!("{CMS}/background")).await.code,
        StatusCode::NOT_FOUND
    );
    // The deprecated orphanDependents still works.
    let r = delete(&h, &format!("{CMS}/legacy?orphanDependents=true"), None).await;
    assert_eq!(finalizers(&r.body), ["orphan"]);
}

#[tokio::test]
async fn delete_options_are_validated() {
    let h = harness().await;
    h.post(CMS, cm("x", json!({}))).await;
    let r = delete(&h, &format!("{CMS}/x?propagationPolicy=Sideways"), None).await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"Sideways\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
    );
    let r = delete(
        &h,
        &format!("{CMS}/x"),
        Some(json!({"propagationPolicy": "Orphan", "orphanDependents": false})),
    )
    .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    assert_eq!(r.body["details"]["causes"][0]["field"], "propagationPolicy");
    // Nothing happened to the object.
    let obj = h.get(&format!("{CMS}/x")).await.body;
    assert!(obj["metadata"]["deletionTimestamp"].is_null());

    // Preconditions: a wrong uid or resourceVersion is a conflict naming the kind.
    let uid = obj["metadata"]["uid"].as_str().expect("uid").to_string();
    let rv = obj["metadata"]["resourceVersion"]
        .as_str()
        .expect("rv")
        .to_string();
    let r = delete(
        &h,
        &format!("{CMS}/x"),
        Some(json!({"preconditions": {"uid": "not-the-uid"}})),
    )
    .await;
    assert_eq!(r.code, StatusCode::CONFLICT, "{}", r.text);
    assert_eq!(
        r.body["message"],
        format!("Operation cannot be fulfilled on ConfigMap \"x\": the UID in the precondition (not-the-uid) does not match the UID in record ({uid}). The object might have been deleted and then recreated")
    );
    let r = delete(
        &h,
        &format!("{CMS}/x"),
        Some(json!({"preconditions": {"resourceVersion": "1"}})),
    )
    .await;
    assert_eq!(r.code, StatusCode::CONFLICT, "{}", r.text);
    let r = delete(
        &h,
        &format!("{CMS}/x"),
        Some(json!({"preconditions": {"uid": uid, "resourceVersion": rv}})),
    )
    .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(h.get(&format!("{CMS}/x")).await.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn finalizers_hold_pods_after_their_grace_period() {
    let h = harness().await;
    let pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "held", "finalizers": ["example.com/hold"]},
        "spec": {"nodeName": "n1", "containers": [{"name": "main", "image": "busybox"}]}});
    let r = h.post("/api/v1/namespaces/default/pods", pod).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let uri = "/api/v1/namespaces/default/pods/held";
    // Graceful first; foreground adds its finalizer beside the user's.
    let r = delete(&h, &format!("{uri}?propagationPolicy=Foreground"), None).await;
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 30);
    assert_eq!(
        finalizers(&r.body),
        ["example.com/hold", "foregroundDeletion"]
    );
    // While the grace period runs, another policy changes nothing.
    let r = delete(&h, &format!("{uri}?propagationPolicy=Orphan"), None).await;
    assert_eq!(
        finalizers(&r.body),
        ["example.com/hold", "foregroundDeletion"]
    );
    // The node's final delete (grace 0) leaves it to the finalizers.
    let r = delete(&h, &format!("{uri}?gracePeriodSeconds=0"), None).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 0);
    assert_eq!(h.get(uri).await.code, StatusCode::OK);
    let r = h
        .req(
            Method::PATCH,
            uri,
            Some("application/merge-patch+json"),
            Some(json!({"metadata": {"finalizers": null}})),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    assert_eq!(h.get(uri).await.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn owner_references_are_validated() {
    let h = harness().await;
    let owner = |name: &str, controller: bool| json!({"apiVersion": "v1", "kind": "ConfigMap", "name": name, "uid": format!("uid-{name}"), "controller": controller});
    let r = h
        .post(
            CMS,
            cm(
                "two",
                json!({"ownerReferences": [owner("a", true), owner("b", true)]}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let cause = &r.body["details"]["causes"][0];
    assert_eq!(cause["field"], "metadata.ownerReferences");
    assert!(cause["message"]
        .as_str()
        .expect("message")
        .ends_with("Only one reference can have Controller set to true. Found \"true\" in references for ConfigMap/a and ConfigMap/b"));

    let r = h
        .post(
            CMS,
            cm(
                "empty",
                json!({"ownerReferences": [{"apiVersion": "", "kind": "", "name": "", "uid": ""}]}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let fields: Vec<&str> = r.body["details"]["causes"]
        .as_array()
        .expect("causes")
        .iter()
        .filter_map(|c| c["field"].as_str())
        .collect();
    assert_eq!(
        fields,
        [
            "metadata.ownerReferences.apiVersion",
            "metadata.ownerReferences.kind",
            "metadata.ownerReferences.name",
            "metadata.ownerReferences.uid"
        ]
    );
    let event_owner = json!({"apiVersion": "v1", "kind": "Event", "name": "e", "uid": "u"});
    let r = h
        .post(CMS, cm("ev", json!({"ownerReferences": [event_owner]})))
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = h
        .post(
            CMS,
            cm(
                "both",
                json!({"finalizers": ["orphan", "foregroundDeletion"]}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.text);
    let r = h
        .post(
            CMS,
            cm(
                "ok",
                json!({"ownerReferences": [owner("a", true), owner("b", false)]}),
            ),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
}
