//! The pod `eviction` subresource through the real router: with no budget, with a budget
//! that allows a disruption (taken and recorded), one that allows none (429), several
//! budgets (500), pods that skip the budget, unready pods and dry runs.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use crate::http_tests::{harness, Harness, Resp};

const PODS: &str = "/api/v1/namespaces/default/pods";
const PDBS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

/// A pod bound to a node, in `phase`, Ready or not.
async fn pod(h: &Harness, name: &str, phase: &str, ready: bool) {
    let body = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "main", "image": "busybox"}]}});
    let r = h.post(PODS, body).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let r = h
        .post(
            &format!("{PODS}/{name}/binding"),
            json!({"target": {"kind": "Node", "name": "n1"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let mut p = h.get(&format!("{PODS}/{name}")).await.body;
    p["status"]["phase"] = json!(phase);
    p["status"]["conditions"] = json!([{"type": "Ready", "status": if ready { "True" } else { "False" },
        "lastTransitionTime": "2026-01-02T15:00:00Z"}]);
    let r = h
        .req(
            Method::PUT,
            &format!("{PODS}/{name}/status"),
            Some("application/json"),
            Some(p),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
}

/// A budget over `app=web` with `spec` merged in and the controller's `status`.
async fn budget(h: &Harness, name: &str, spec: Value, status: Value) {
    let mut s = json!({"selector": {"matchLabels": {"app": "web"}}});
    if let (Some(s), Some(extra)) = (s.as_object_mut(), spec.as_object()) {
        s.extend(extra.clone());
    }
    let r = h
        .post(
            PDBS,
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                   "metadata": {"name": name}, "spec": s}),
        )
        .await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let mut p = r.body;
    p["status"] = status;
    p["status"]["observedGeneration"] = json!(1);
    let r = h
        .req(
            Method::PUT,
            &format!("{PDBS}/{name}/status"),
            Some("application/json"),
            Some(p),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
}

async fn evict(h: &Harness, name: &str, delete_options: Option<Value>) -> Resp {
    let mut body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                          "metadata": {"name": name, "namespace": "default"}});
    if let Some(o) = delete_options {
        body["deleteOptions"] = o;
    }
    h.post(&format!("{PODS}/{name}/eviction"), body).await
}

fn condition<'a>(obj: &'a Value, ty: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == ty))
}

#[tokio::test]
async fn without_a_budget_the_pod_is_deleted_gracefully() {
    let h = harness().await;
    pod(&h, "web-1", "Running", true).await;
    let r = evict(&h, "web-1", None).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(r.body["status"], "Success");
    let p = h.get(&format!("{PODS}/web-1")).await.body;
    assert!(p["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
    let target = condition(&p, "DisruptionTarget")
        .cloned()
        .unwrap_or_default();
    assert_eq!(target["reason"], "EvictionByEvictionAPI");

    // The Eviction's deleteOptions apply: grace 0 removes the next one at once.
    pod(&h, "web-2", "Running", true).await;
    let r = evict(&h, "web-2", Some(json!({"gracePeriodSeconds": 0}))).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        h.get(&format!("{PODS}/web-2")).await.code,
        StatusCode::NOT_FOUND
    );
    assert_eq!(evict(&h, "nope", None).await.code, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_budget_gives_what_it_allows_then_refuses_with_429() {
    let h = harness().await;
    pod(&h, "web-1", "Running", true).await;
    pod(&h, "web-2", "Running", true).await;
    budget(
        &h,
        "web",
        json!({"minAvailable": 1}),
        json!({"disruptionsAllowed": 1, "currentHealthy": 2, "desiredHealthy": 1, "expectedPods": 2}),
    )
    .await;
    let r = evict(&h, "web-1", None).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let pdb = h.get(&format!("{PDBS}/web")).await.body;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 0);
    assert!(pdb["status"]["disruptedPods"]["web-1"].is_string());
    assert_eq!(
        condition(&pdb, "DisruptionAllowed").map(|c| c["reason"].clone()),
        Some(json!("InsufficientPods"))
    );

    let r = evict(&h, "web-2", None).await;
    assert_eq!(r.code, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    assert_eq!(r.body["reason"], "TooManyRequests");
    assert_eq!(
        r.body["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(r.body["details"]["causes"][0]["reason"], "DisruptionBudget");
    let p = h.get(&format!("{PODS}/web-2")).await.body;
    assert!(p["metadata"].get("deletionTimestamp").is_none());
    assert!(condition(&p, "DisruptionTarget").is_none());
}

#[tokio::test]
async fn pods_that_disrupt_nothing_skip_the_budget() {
    let h = harness().await;
    budget(
        &h,
        "web",
        json!({"minAvailable": 2}),
        json!({"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 2}),
    )
    .await;
    for (name, phase) in [("done", "Succeeded"), ("waiting", "Pending")] {
        pod(&h, name, phase, false).await;
        let r = evict(&h, name, None).await;
        assert_eq!(r.code, StatusCode::CREATED, "{name}: {}", r.text);
        let p = h.get(&format!("{PODS}/{name}")).await;
        assert!(
            p.code == StatusCode::NOT_FOUND || p.body["metadata"]["deletionTimestamp"].is_string(),
            "{name}: {}",
            p.text
        );
    }
    // An unready running pod under a budget short of healthy pods waits ...
    pod(&h, "sick", "Running", false).await;
    let r = evict(&h, "sick", None).await;
    assert_eq!(r.code, StatusCode::TOO_MANY_REQUESTS, "{}", r.text);
    // ... unless the budget says unhealthy pods may always go, which takes nothing from it.
    let mut pdb = h.get(&format!("{PDBS}/web")).await.body;
    pdb["spec"]["unhealthyPodEvictionPolicy"] = json!("AlwaysAllow");
    let r = h
        .req(
            Method::PUT,
            &format!("{PDBS}/web"),
            Some("application/json"),
            Some(pdb),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.text);
    let r = evict(&h, "sick", None).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let pdb = h.get(&format!("{PDBS}/web")).await.body;
    assert!(pdb["status"].get("disruptedPods").is_none());
}

#[tokio::test]
async fn several_budgets_dry_runs_and_bad_bodies() {
    let h = harness().await;
    pod(&h, "web-1", "Running", true).await;
    let status = json!({"disruptionsAllowed": 1, "currentHealthy": 1, "desiredHealthy": 0});
    budget(&h, "one", json!({"maxUnavailable": 1}), status.clone()).await;

    let r = evict(&h, "web-1", Some(json!({"dryRun": ["All"]}))).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.text);
    let p = h.get(&format!("{PODS}/web-1")).await.body;
    assert!(p["metadata"].get("deletionTimestamp").is_none());
    let pdb = h.get(&format!("{PDBS}/one")).await.body;
    assert_eq!(pdb["status"]["disruptionsAllowed"], 1);

    let r = h
        .post(
            &format!("{PODS}/web-1/eviction"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "other"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::BAD_REQUEST, "{}", r.text);
    assert_eq!(
        r.body["message"],
        "name in URL does not match name in Eviction object"
    );

    budget(&h, "two", json!({"maxUnavailable": 1}), status).await;
    let r = evict(&h, "web-1", None).await;
    assert_eq!(r.code, StatusCode::INTERNAL_SERVER_ERROR, "{}", r.text);
    assert_eq!(
        r.body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
               "code": 500})
    );
    // Other kinds have no eviction subresource.
    let r = h
        .post(
            "/api/v1/namespaces/default/configmaps/x/eviction",
            json!({}),
        )
        .await;
    assert_eq!(r.code, StatusCode::NOT_FOUND);
}
