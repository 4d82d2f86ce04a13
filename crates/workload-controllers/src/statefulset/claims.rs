//! A StatefulSet's PersistentVolumeClaims: one per claim template and ordinal, named
//! `TEMPLATE-NAME-i`, made before the pod that mounts it, and kept or removed as the set's
//! `persistentVolumeClaimRetentionPolicy` says (v1.33, the StatefulSetAutoDeletePVC rules):
//! - `whenDeleted: Delete`: the set is an owner of every claim, so the garbage collector
//!   removes them with the set;
//! - `whenScaled: Delete`: the pod being scaled away (its ordinal outside the set's range)
//!   becomes an owner of its claims, so they go with that pod;
//! - `Retain` (the default for both): no such owner; a reference one of the rules put there
//!   earlier is taken away again when the policy changes.
//!
//! [`owners`] is that decision, pure; [`sync_owners`] applies it to the claims that exist.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::ownership::controller_ref;

/// What the retention policy asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    delete_with_set: bool,
    delete_when_scaled: bool,
}

fn policy(set: &StatefulSet) -> Policy {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    Policy {
        delete_with_set: delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete_when_scaled: delete(p.and_then(|p| p.when_scaled.as_ref())),
    }
}

/// The set's reference on a claim it owns (never its controller).
fn set_reference(set: &StatefulSet) -> OwnerReference {
    OwnerReference {
        controller: None,
        ..controller_ref(set)
    }
}

/// Whether `ordinal` is outside the set's range `[start, start + replicas)`: its pod is being
/// scaled away.
fn condemned(set: &StatefulSet, ordinal: i32) -> bool {
    let spec = set.spec.as_ref();
    let start = spec
        .and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0);
    let replicas = spec.and_then(|s| s.replicas).unwrap_or(1).max(0);
    ordinal < start || ordinal >= start.saturating_add(replicas)
}

/// The claims of pod `NAME-i`: one per claim template, `TEMPLATE-NAME-i`, labelled with
/// the set's selector labels, owned by the set when it is deleted with it.
pub fn claims_for(set: &StatefulSet, ordinal: i32) -> Vec<PersistentVolumeClaim> {
    let Some(spec) = set.spec.as_ref() else {
        return Vec::new();
    };
    let name = set.name_any();
    let with_set = policy(set).delete_with_set;
    spec.volume_claim_templates
        .iter()
        .flatten()
        .map(|t| {
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(spec.selector.match_labels.clone().unwrap_or_default());
            PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!(
                        "{}-{name}-{ordinal}",
                        t.metadata.name.as_deref().unwrap_or("")
                    )),
                    namespace: set.namespace(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    owner_references: with_set.then(|| vec![set_reference(set)]),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            }
        })
        .collect()
}

/// The owner references claim `claim` of `pod` (ordinal `ordinal`) should carry: its other
/// owners as they are, the set's reference when `whenDeleted: Delete`, the pod's when
/// `whenScaled: Delete` and the pod is being scaled away.
pub fn owners(
    set: &StatefulSet,
    pod: &Pod,
    ordinal: i32,
    claim: &PersistentVolumeClaim,
) -> Vec<OwnerReference> {
    let p = policy(set);
    let set_uid = set.metadata.uid.as_deref().unwrap_or("");
    let pod_name = pod.name_any();
    let mut refs: Vec<OwnerReference> = claim
        .metadata
        .owner_references
        .iter()
        .flatten()
        .filter(|r| r.uid != set_uid && !(r.kind == "Pod" && r.name == pod_name))
        .cloned()
        .collect();
    if p.delete_with_set {
        refs.push(set_reference(set));
    }
    if p.delete_when_scaled && condemned(set, ordinal) {
        refs.push(OwnerReference {
            api_version: "v1".into(),
            kind: "Pod".into(),
            name: pod_name,
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            controller: None,
            block_owner_deletion: None,
        });
    }
    refs
}

/// Gives the claims of the set's pods (with their ordinals) the owners the retention policy
/// asks for.
pub async fn sync_owners(
    client: &Client,
    set: &StatefulSet,
    pods: &[(i32, &Pod)],
) -> Result<(), Error> {
    let has_templates = set
        .spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_ref())
        .is_some_and(|t| !t.is_empty());
    if !has_templates {
        return Ok(());
    }
    let ns = set.namespace().unwrap_or_default();
    let name = set.name_any();
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    let existing = api
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!("listing the claims of {ns}/{name}")))?
        .items;
    for &(ordinal, pod) in pods {
        for wanted in claims_for(set, ordinal) {
            let claim_name = wanted.name_any();
            let Some(claim) = existing.iter().find(|c| c.name_any() == claim_name) else {
                continue;
            };
            let refs = owners(set, pod, ordinal, claim);
            let current = claim.metadata.owner_references.clone().unwrap_or_default();
            if refs == current {
                continue;
            }
            let mut updated = claim.clone();
            updated.metadata.owner_references = (!refs.is_empty()).then_some(refs);
            match api
                .replace(&claim_name, &PostParams::default(), &updated)
                .await
            {
                Ok(_) => {}
                // Changed or gone meanwhile: its watch event brings the set back.
                Err(e) if is_conflict(&e) || is_not_found(&e) => {}
                Err(e) => return Err(Error::api(format!("updating claim {ns}/{claim_name}"))(e)),
            }
        }
    }
    Ok(())
}

/// Creates the pod's claims that do not exist yet (upstream `createPersistentVolumeClaims`).
pub async fn ensure(
    client: &Client,
    recorder: &Recorder,
    set: &StatefulSet,
    pod: &str,
    ordinal: i32,
) -> Result<(), Error> {
    let claims = claims_for(set, ordinal);
    if claims.is_empty() {
        return Ok(());
    }
    let ns = set.namespace().unwrap_or_default();
    let set_name = set.name_any();
    let api = Api::<PersistentVolumeClaim>::namespaced(client.clone(), &ns);
    for claim in claims {
        let claim_name = claim.name_any();
        match api.get_opt(&claim_name).await {
            Ok(Some(_)) => continue,
            Ok(None) => {}
            Err(e) => return Err(Error::api(format!("reading claim {ns}/{claim_name}"))(e)),
        }
        match api.create(&PostParams::default(), &claim).await {
            Ok(_) => {
                let msg = format!(
                    "create Claim {claim_name} Pod {pod} in StatefulSet {set_name} success"
                );
                recorder
                    .record(set, EventType::Normal, "SuccessfulCreate", &msg)
                    .await?;
            }
            Err(e) if is_conflict(&e) => {}
            Err(e) => {
                let msg = format!(
                    "create Claim {claim_name} for Pod {pod} in StatefulSet {set_name} failed error: {e}"
                );
                recorder
                    .record(set, EventType::Warning, "FailedCreate", &msg)
                    .await?;
                return Err(Error::api(format!("creating claim {ns}/{claim_name}"))(e));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(replicas: i32, when_deleted: &str, when_scaled: &str) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "d", "uid": "sts-uid"},
            "spec": {"replicas": replicas, "serviceName": "nginx",
                     "selector": {"matchLabels": {"app": "web"}},
                     "persistentVolumeClaimRetentionPolicy":
                         {"whenDeleted": when_deleted, "whenScaled": when_scaled},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}},
                     "volumeClaimTemplates": [{"metadata": {"name": "data"},
                         "spec": {"accessModes": ["ReadWriteOnce"],
                                  "resources": {"requests": {"storage": "1Gi"}}}}]}}))
        .expect("statefulset")
    }

    fn pod(name: &str, uid: &str) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "d", "uid": uid}}))
            .expect("pod")
    }

    fn claim(refs: serde_json::Value) -> PersistentVolumeClaim {
        serde_json::from_value(json!({"metadata": {"name": "data-web-1", "namespace": "d",
            "ownerReferences": refs}}))
        .expect("claim")
    }

    fn kinds(refs: &[OwnerReference]) -> Vec<String> {
        refs.iter()
            .map(|r| format!("{}/{}", r.kind, r.name))
            .collect()
    }

    #[test]
    fn the_policy_decides_the_owners() {
        let p1 = pod("web-1", "pod-uid");
        let none = claim(json!([]));
        // Retain/Retain: nobody.
        assert!(owners(&set(2, "Retain", "Retain"), &p1, 1, &none).is_empty());
        // whenDeleted: the set, in range or not.
        let s = set(2, "Delete", "Retain");
        assert_eq!(kinds(&owners(&s, &p1, 1, &none)), ["StatefulSet/web"]);
        assert_eq!(owners(&s, &p1, 1, &none)[0].controller, None);
        // whenScaled: the pod only once its ordinal is outside the range.
        let s = set(2, "Retain", "Delete");
        assert!(owners(&s, &p1, 1, &none).is_empty());
        let s = set(1, "Retain", "Delete");
        let refs = owners(&s, &p1, 1, &none);
        assert_eq!(kinds(&refs), ["Pod/web-1"]);
        assert_eq!(refs[0].uid, "pod-uid");
        // Both.
        let s = set(1, "Delete", "Delete");
        assert_eq!(
            kinds(&owners(&s, &p1, 1, &none)),
            ["StatefulSet/web", "Pod/web-1"]
        );
    }

    #[test]
    fn a_changed_policy_takes_its_references_away_and_keeps_others() {
        let p1 = pod("web-1", "new-uid");
        let c = claim(json!([
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "sts-uid"},
            {"apiVersion": "v1", "kind": "Pod", "name": "web-1", "uid": "old-uid"},
            {"apiVersion": "v1", "kind": "ConfigMap", "name": "keep", "uid": "cm-uid"}
        ]));
        let refs = owners(&set(3, "Retain", "Retain"), &p1, 1, &c);
        assert_eq!(kinds(&refs), ["ConfigMap/keep"]);
    }

    #[test]
    fn claims_are_named_labelled_and_owned_by_the_policy() {
        let s = set(3, "Retain", "Retain");
        let claims = claims_for(&s, 2);
        assert_eq!(claims.len(), 1);
        assert_eq!(claims[0].name_any(), "data-web-2");
        assert_eq!(
            claims[0].labels().get("app").map(String::as_str),
            Some("web")
        );
        assert!(claims[0].metadata.owner_references.is_none());
        let owned = claims_for(&set(3, "Delete", "Retain"), 0);
        assert_eq!(
            kinds(
                owned[0]
                    .metadata
                    .owner_references
                    .as_deref()
                    .unwrap_or_default()
            ),
            ["StatefulSet/web"]
        );
    }
}
