use serde_json::{json, Value};

use super::usage::{check, quota_matches, usage_of, Evaluator};
use super::*;
use crate::testing::{messages, now};

fn quota(spec: Value, status: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ResourceQuota",
           "metadata": {"name": "q", "namespace": "default",
                        "creationTimestamp": "2026-01-02T14:00:00Z"},
           "spec": spec, "status": status})
}

fn pod(name: &str, resources: Value) -> Value {
    json!({"metadata": {"name": name, "namespace": "default"},
           "spec": {"containers": [{"name": "c1", "image": "x", "resources": resources}]}})
}

#[test]
fn names_amounts_and_scopes_are_validated_as_upstream() {
    let ok = quota(
        json!({"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi",
                        "count/deployments.apps": "3", "count/configmaps": "1",
                        "gold.storageclass.storage.k8s.io/requests.storage": "10Gi",
                        "requests.ephemeral-storage": "1Gi", "services.nodeports": "0"}}),
        Value::Null,
    );
    assert_eq!(
        messages(RESOURCE.validate_create(&ok)),
        Vec::<String>::new()
    );
    let bad = quota(
        json!({"hard": {"storage": "1Gi", "foo": "1", "pods": "1500m", "cpu": "-1"}}),
        Value::Null,
    );
    assert_eq!(
        messages(RESOURCE.validate_create(&bad)),
        vec![
            "spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
            "spec.hard[foo]: Invalid value: \"foo\": must be a standard resource type or fully qualified",
            "spec.hard[foo]: Invalid value: \"foo\": must be a standard resource for quota",
            "spec.hard[pods]: Invalid value: resource.Quantity{i:resource.int64Amount{value:1500, scale:-3}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"1500m\", Format:\"DecimalSI\"}: must be an integer",
            "spec.hard[storage]: Invalid value: \"storage\": must be a standard resource for quota",
        ]
    );
    let scoped = quota(
        json!({"hard": {"pods": "1", "cpu": "1"}, "scopes": ["BestEffort", "NotBestEffort"]}),
        Value::Null,
    );
    assert_eq!(
        messages(RESOURCE.validate_create(&scoped)),
        vec![
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\"}: unsupported scope applied to resource",
            "spec.scopes: Invalid value: []core.ResourceQuotaScope{\"BestEffort\", \"NotBestEffort\"}: conflicting scopes",
        ]
    );
    let selector = quota(
        json!({"hard": {"pods": "1"}, "scopeSelector": {"matchExpressions": [
            {"scopeName": "Terminating", "operator": "In", "values": ["x"]},
            {"scopeName": "PriorityClass", "operator": "In"},
            {"scopeName": "Nope", "operator": "Exists"}]}}),
        Value::Null,
    );
    assert_eq!(
        messages(RESOURCE.validate_create(&selector)),
        vec![
            "spec.scopeSelector.matchExpressions.operator: Invalid value: \"In\": must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            "spec.scopeSelector.matchExpressions.values: Required value: must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
            "spec.scopeSelector.matchExpressions.scopeName: Invalid value: \"Nope\": unsupported scope",
        ]
    );
    let old = quota(
        json!({"hard": {"pods": "1"}, "scopes": ["Terminating"]}),
        Value::Null,
    );
    let new = quota(
        json!({"hard": {"pods": "1"}, "scopes": ["NotTerminating"]}),
        Value::Null,
    );
    assert_eq!(
        messages(RESOURCE.validate_update(&old, &new)),
        vec!["spec.scopes: Invalid value: []core.ResourceQuotaScope{\"NotTerminating\"}: field is immutable"]
    );
}

#[test]
fn rows_show_used_of_hard_with_limits_apart() {
    let q = quota(
        json!({}),
        json!({"hard": {"pods": "2", "requests.cpu": "1", "limits.memory": "1Gi", "services": "3"},
               "used": {"pods": "1", "requests.cpu": "100m", "limits.memory": "536870912"}}),
    );
    let cells = RESOURCE.strategy.cells(&q, now());
    assert_eq!(
        cells,
        vec![
            json!("q"),
            json!("60m"),
            json!("pods: 1/2, requests.cpu: 100m/1, services: 0/3"),
            json!("limits.memory: 536870912/1Gi"),
        ]
    );
}

#[test]
fn pods_use_their_totals_until_finished_or_past_grace() {
    let p = pod(
        "a",
        json!({"requests": {"cpu": "250m", "memory": "64Mi"}, "limits": {"cpu": "500m"}}),
    );
    let u = Evaluator::Pods.usage(&p, now());
    let shown: Vec<String> = u
        .iter()
        .map(|(k, v)| format!("{k}={}", v.shown()))
        .collect();
    assert_eq!(
        shown,
        [
            "count/pods=1",
            "cpu=250m",
            "limits.cpu=500m",
            "memory=64Mi",
            "pods=1",
            "requests.cpu=250m",
            "requests.memory=64Mi"
        ]
    );
    let mut done = p.clone();
    done["status"] = json!({"phase": "Succeeded"});
    assert_eq!(Evaluator::Pods.usage(&done, now()).len(), 1);
    let mut deleting = p.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2026-01-02T14:59:00Z");
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(30);
    assert_eq!(Evaluator::Pods.usage(&deleting, now()).len(), 1);
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(3600);
    assert_eq!(Evaluator::Pods.usage(&deleting, now()).len(), 7);
    // Totals over two pods, the way the controller adds them.
    let names = vec![
        "pods".to_string(),
        "requests.cpu".into(),
        "limits.memory".into(),
    ];
    let total = usage_of(&Evaluator::Pods, &names, &[], [&p, &p, &done], now());
    assert_eq!(
        super::usage::to_json(&total),
        json!({"pods": "2", "requests.cpu": "500m", "limits.memory": "0"})
    );
}

#[test]
fn services_claims_and_counts() {
    let svc = json!({"metadata": {"name": "s"}, "spec": {"type": "NodePort",
        "ports": [{"port": 80}, {"port": 81}]}});
    let u = super::usage::to_json(&Evaluator::Services.usage(&svc, now()));
    assert_eq!(
        u,
        json!({"count/services": "1", "services": "1", "services.loadbalancers": "0",
               "services.nodeports": "2"})
    );
    let pvc = json!({"metadata": {"name": "c"}, "spec": {"storageClassName": "gold",
        "resources": {"requests": {"storage": "1Gi"}}}});
    let u = super::usage::to_json(&Evaluator::Claims.usage(&pvc, now()));
    assert_eq!(
        u,
        json!({"count/persistentvolumeclaims": "1", "persistentvolumeclaims": "1",
               "requests.storage": "1Gi",
               "gold.storageclass.storage.k8s.io/persistentvolumeclaims": "1",
               "gold.storageclass.storage.k8s.io/requests.storage": "1Gi"})
    );
    let cm = Evaluator::of("", "configmaps");
    assert_eq!(
        super::usage::to_json(&cm.usage(&json!({}), now())),
        json!({"count/configmaps": "1", "configmaps": "1"})
    );
    let deploy = Evaluator::of("apps", "deployments");
    assert_eq!(
        deploy.matching_resources(["count/deployments.apps", "pods"]),
        vec!["count/deployments.apps"]
    );
}

#[test]
fn admission_refuses_past_hard_and_charges_within_it() {
    let q = quota(
        json!({"hard": {"pods": "2", "requests.cpu": "1"}}),
        json!({"hard": {"pods": "2", "requests.cpu": "1"},
               "used": {"pods": "1", "requests.cpu": "500m"}}),
    );
    let fits = pod("x", json!({"requests": {"cpu": "500m"}}));
    let charges = check(
        &Evaluator::Pods,
        std::slice::from_ref(&q),
        &fits,
        None,
        now(),
    )
    .expect("fits");
    assert_eq!(
        super::usage::to_json(&charges[0].used),
        json!({"pods": "2", "requests.cpu": "1"})
    );
    let too_big = pod("x", json!({"requests": {"cpu": "600m"}}));
    assert_eq!(
        check(&Evaluator::Pods, std::slice::from_ref(&q), &too_big, None, now())
            .expect_err("exceeds")
            .to_string(),
        "exceeded quota: q, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
    );
    let bare = pod("x", json!({}));
    let limits = quota(
        json!({}),
        json!({"hard": {"limits.cpu": "1", "requests.cpu": "1", "pods": "3"},
               "used": {"limits.cpu": "0", "requests.cpu": "0", "pods": "0"}}),
    );
    assert_eq!(
        check(&Evaluator::Pods, &[limits], &bare, None, now())
            .expect_err("must specify")
            .to_string(),
        "failed quota: q: must specify limits.cpu for: c1; requests.cpu for: c1"
    );
    let unknown = quota(json!({}), json!({"hard": {"pods": "3"}}));
    assert_eq!(
        check(&Evaluator::Pods, &[unknown], &bare, None, now())
            .expect_err("no usage yet")
            .to_string(),
        "status unknown for quota: q, resources: pods"
    );
}

#[test]
fn scopes_pick_pods() {
    let best_effort = quota(
        json!({"scopes": ["BestEffort"]}),
        json!({"hard": {"pods": "1"}, "used": {"pods": "1"}}),
    );
    let burstable = pod("b", json!({"requests": {"cpu": "100m"}}));
    let bare = pod("e", json!({}));
    assert!(!quota_matches(&Evaluator::Pods, &best_effort, &burstable));
    assert!(quota_matches(&Evaluator::Pods, &best_effort, &bare));
    let mut terminating = bare.clone();
    terminating["spec"]["activeDeadlineSeconds"] = json!(30);
    let t = quota(
        json!({"scopes": ["Terminating"]}),
        json!({"hard": {"pods": "1"}, "used": {"pods": "0"}}),
    );
    assert!(quota_matches(&Evaluator::Pods, &t, &terminating));
    assert!(!quota_matches(&Evaluator::Pods, &t, &bare));
    let high = quota(
        json!({"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]}}),
        json!({"hard": {"pods": "1"}, "used": {"pods": "0"}}),
    );
    let mut important = bare.clone();
    important["spec"]["priorityClassName"] = json!("high");
    assert!(quota_matches(&Evaluator::Pods, &high, &important));
    assert!(!quota_matches(&Evaluator::Pods, &high, &bare));
    // Services answer to no scope.
    let svc = json!({"spec": {}});
    let scoped_count = quota(
        json!({"scopes": ["Terminating"]}),
        json!({"hard": {"count/services": "1"}, "used": {"count/services": "0"}}),
    );
    assert!(!quota_matches(&Evaluator::Services, &scoped_count, &svc));
}
