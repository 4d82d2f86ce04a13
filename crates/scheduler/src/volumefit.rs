//! The scheduler's volume binding (kube-scheduler's `VolumeBinding` plugin), pure: a pod
//! whose claims are missing, being deleted or unbound in an `Immediate` class waits
//! unscheduled; a node fits when every bound claim's volume is reachable from it and every
//! `WaitForFirstConsumer` claim can get a volume there (a matching available one, or a
//! provisioner that can make one on that node). Once placed, the scheduler writes the node
//! into each waiting claim (`volume.kubernetes.io/selected-node`) and binds the pod only
//! after those claims are bound, as upstream's PreBind does.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;

use crate::misfit::Misfit;

use storage_controllers::localpath;
use storage_controllers::volumebinding::{
    claim_class, find_match, node_affinity_matches, volume_name, waits_for_consumer,
    ANN_SELECTED_NODE, NO_PROVISIONER,
};

/// One of the pod's claims, as scheduling sees it.
#[derive(Debug, Clone)]
pub enum ClaimState {
    /// Bound to this volume.
    Bound(String),
    /// Unbound, in a `WaitForFirstConsumer` class: binds once the pod has a node.
    Waiting {
        claim: Arc<PersistentVolumeClaim>,
        class: Option<Arc<StorageClass>>,
    },
}

/// The claims the pod's volumes name, or why the pod cannot be scheduled at all (upstream's
/// PreFilter messages).
pub fn pod_claims(
    pod: &Pod,
    claims: &[Arc<PersistentVolumeClaim>],
    classes: &[Arc<StorageClass>],
) -> Result<Vec<ClaimState>, String> {
    let ns = pod.namespace().unwrap_or_default();
    let mut states = Vec::new();
    let mut unbound_immediate = false;
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    for source in volumes
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
    {
        let name = &source.claim_name;
        let Some(claim) = claims
            .iter()
            .find(|c| c.namespace().as_deref() == Some(ns.as_str()) && c.name_any() == *name)
        else {
            return Err(format!("persistentvolumeclaim {name:?} not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim {name:?} is being deleted"));
        }
        let bound = volume_name(claim);
        if !bound.is_empty() {
            states.push(ClaimState::Bound(bound.to_string()));
            continue;
        }
        let class_name = claim_class(claim);
        let class = classes.iter().find(|c| c.name_any() == class_name).cloned();
        if waits_for_consumer(class.as_deref()) {
            states.push(ClaimState::Waiting {
                claim: claim.clone(),
                class,
            });
        } else {
            unbound_immediate = true;
        }
    }
    if unbound_immediate {
        return Err("pod has unbound immediate PersistentVolumeClaims".to_string());
    }
    Ok(states)
}

/// Why a node cannot serve the pod's volumes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeMisfit {
    /// A bound volume is not reachable from the node.
    AffinityConflict,
    /// A waiting claim can get no volume on the node.
    NoVolume,
}

impl From<VolumeMisfit> for Misfit {
    fn from(m: VolumeMisfit) -> Self {
        match m {
            VolumeMisfit::AffinityConflict => Misfit::VolumeAffinity,
            VolumeMisfit::NoVolume => Misfit::NoVolume,
        }
    }
}

/// Whether `node` can serve every claim in `states`.
pub fn fits(
    states: &[ClaimState],
    volumes: &[Arc<PersistentVolume>],
    node: &Node,
) -> Result<(), VolumeMisfit> {
    for state in states {
        match state {
            ClaimState::Bound(name) => {
                let reachable = volumes
                    .iter()
                    .find(|v| v.name_any() == *name)
                    .is_some_and(|v| node_affinity_matches(v, node));
                if !reachable {
                    return Err(VolumeMisfit::AffinityConflict);
                }
            }
            ClaimState::Waiting { claim, class } => {
                if find_match(claim, volumes, Some(node), true).is_some() {
                    continue;
                }
                let provisioner = class.as_ref().map(|c| c.provisioner.as_str());
                let can_provision = match provisioner {
                    None | Some(NO_PROVISIONER) => false,
                    // A local-path volume needs a node that says where its directories go.
                    Some(localpath::PROVISIONER) => {
                        node.annotations().contains_key(localpath::ANN_ROOT)
                    }
                    Some(_) => true,
                };
                if !can_provision {
                    return Err(VolumeMisfit::NoVolume);
                }
            }
        }
    }
    Ok(())
}

/// The node the pod's waiting claims already chose (an earlier attempt of this pod), to be
/// kept when it still fits.
pub fn selected_node(states: &[ClaimState]) -> Option<String> {
    states.iter().find_map(|s| match s {
        ClaimState::Waiting { claim, .. } => claim.annotations().get(ANN_SELECTED_NODE).cloned(),
        ClaimState::Bound(_) => None,
    })
}

/// The waiting claims that do not name `node` yet.
pub fn to_select<'a>(
    states: &'a [ClaimState],
    node: &'a str,
) -> impl Iterator<Item = &'a Arc<PersistentVolumeClaim>> + 'a {
    states.iter().filter_map(move |s| match s {
        ClaimState::Waiting { claim, .. }
            if claim
                .annotations()
                .get(ANN_SELECTED_NODE)
                .map(String::as_str)
                != Some(node) =>
        {
            Some(claim)
        }
        _ => None,
    })
}

/// Whether some claim of the pod still waits for its volume (the pod is bound only after).
pub fn any_waiting(states: &[ClaimState]) -> bool {
    states
        .iter()
        .any(|s| matches!(s, ClaimState::Waiting { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({"metadata": {"name": "p", "namespace": "ns"},
            "spec": {"containers": [], "volumes": volumes}}))
        .expect("pod")
    }

    fn claim(name: &str, class: &str, extra: Value) -> Arc<PersistentVolumeClaim> {
        let mut v = json!({"metadata": {"name": name, "namespace": "ns", "uid": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}},
                     "storageClassName": class}});
        if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            for (k, x) in e {
                if let (Some(Value::Object(dst)), Value::Object(src)) = (m.get_mut(k), x) {
                    dst.extend(src.clone());
                }
            }
        }
        Arc::new(serde_json::from_value(v).expect("pvc"))
    }

    fn class(name: &str, provisioner: &str, mode: &str) -> Arc<StorageClass> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name}, "provisioner": provisioner,
                "volumeBindingMode": mode}),
            )
            .expect("sc"),
        )
    }

    fn node(name: &str, root: bool) -> Node {
        let mut n = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}});
        if root {
            n["metadata"]["annotations"] =
                json!({localpath::ANN_ROOT: "/var/lib/peapod/local-path"});
        }
        serde_json::from_value(n).expect("node")
    }

    fn pinned_volume(
        name: &str,
        node: &str,
        class: &str,
        claim: Option<&str>,
    ) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "local": {"path": "/mnt"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
                        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}});
        if let Some(c) = claim {
            v["spec"]["claimRef"] = json!({"namespace": "ns", "name": c});
        }
        Arc::new(serde_json::from_value(v).expect("pv"))
    }

    #[test]
    fn prefilter_messages() {
        let classes = vec![
            class("local-path", localpath::PROVISIONER, "WaitForFirstConsumer"),
            class("fast", "x.io/fast", "Immediate"),
        ];
        assert_eq!(
            pod_claims(&pod(&["data"]), &[], &classes).err(),
            Some("persistentvolumeclaim \"data\" not found".to_string())
        );
        let immediate = claim("data", "fast", json!({}));
        assert_eq!(
            pod_claims(&pod(&["data"]), &[immediate], &classes).err(),
            Some("pod has unbound immediate PersistentVolumeClaims".to_string())
        );
        let going = claim(
            "data",
            "local-path",
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        );
        assert_eq!(
            pod_claims(&pod(&["data"]), &[going], &classes).err(),
            Some("persistentvolumeclaim \"data\" is being deleted".to_string())
        );
        let waiting = claim("data", "local-path", json!({}));
        let bound = claim("logs", "fast", json!({"spec": {"volumeName": "pv-logs"}}));
        let states =
            pod_claims(&pod(&["data", "logs"]), &[waiting, bound], &classes).expect("schedulable");
        assert!(any_waiting(&states));
        assert!(matches!(&states[1], ClaimState::Bound(v) if v == "pv-logs"));
    }

    #[test]
    fn node_fit_for_bound_and_waiting_claims() {
        let classes = vec![
            class("local-path", localpath::PROVISIONER, "WaitForFirstConsumer"),
            class("manual", NO_PROVISIONER, "WaitForFirstConsumer"),
        ];
        let vols = vec![
            pinned_volume("pv-a", "a", "manual", None),
            pinned_volume("pv-b", "b", "manual", Some("data")),
        ];
        let bound = claim("data", "manual", json!({"spec": {"volumeName": "pv-b"}}));
        let states = pod_claims(&pod(&["data"]), &[bound], &classes).expect("ok");
        assert_eq!(
            fits(&states, &vols, &node("a", true)),
            Err(VolumeMisfit::AffinityConflict)
        );
        assert_eq!(fits(&states, &vols, &node("b", true)), Ok(()));

        let manual = claim("data", "manual", json!({}));
        let states = pod_claims(&pod(&["data"]), &[manual], &classes).expect("ok");
        let unclaimed = vec![pinned_volume("pv-a", "a", "manual", None)];
        assert_eq!(fits(&states, &unclaimed, &node("a", true)), Ok(()));
        assert_eq!(
            fits(&states, &unclaimed, &node("b", true)),
            Err(VolumeMisfit::NoVolume)
        );

        let dynamic = claim("data", "local-path", json!({}));
        let states = pod_claims(&pod(&["data"]), &[dynamic], &classes).expect("ok");
        assert_eq!(fits(&states, &[], &node("a", true)), Ok(()));
        assert_eq!(
            fits(&states, &[], &node("a", false)),
            Err(VolumeMisfit::NoVolume)
        );
    }

    #[test]
    fn selection() {
        let classes = vec![class(
            "local-path",
            localpath::PROVISIONER,
            "WaitForFirstConsumer",
        )];
        let chosen = claim(
            "a",
            "local-path",
            json!({"metadata": {"annotations": {ANN_SELECTED_NODE: "n1"}}}),
        );
        let fresh = claim("b", "local-path", json!({}));
        let states = pod_claims(&pod(&["a", "b"]), &[chosen, fresh], &classes).expect("ok");
        assert_eq!(selected_node(&states), Some("n1".to_string()));
        let names: Vec<String> = to_select(&states, "n1").map(|c| c.name_any()).collect();
        assert_eq!(names, vec!["b".to_string()]);
        assert_eq!(to_select(&states, "n2").count(), 2);
    }
}
