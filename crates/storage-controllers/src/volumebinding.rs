//! What the PV binder, the local-path provisioner and the scheduler agree on about claims and
//! volumes, with no I/O: the annotations they exchange, a claim's class and binding mode,
//! whether a volume can serve a claim (class, volume mode, access modes, size, selector,
//! node affinity) and which one the binder picks — kube-controller-manager's
//! `findMatchingVolume`: a volume pre-bound to the claim first, else the smallest that fits.

use std::collections::BTreeMap;
use std::sync::Arc;

use apimachinery::quantity::Quantity;
use k8s_openapi::api::core::v1::{
    Node, NodeSelectorRequirement, PersistentVolume, PersistentVolumeClaim,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::ResourceExt;

/// Set by the scheduler on a `WaitForFirstConsumer` claim: the node its first pod goes to.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// Set by the binder on a claim that needs a new volume: which provisioner should make it.
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// On a bound claim: the binder finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// On a claim or volume the binder (not the user) bound.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// On a provisioned volume: who made it (and so who deletes it).
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The annotation kube-apiserver still honours in place of `storageClassName`.
const ANN_BETA_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// The provisioner of classes whose volumes are all made by hand.
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

/// A claim's class: the beta annotation, else `spec.storageClassName`; `""` for none.
pub fn claim_class(pvc: &PersistentVolumeClaim) -> &str {
    if let Some(c) = pvc.annotations().get(ANN_BETA_CLASS) {
        return c;
    }
    pvc.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Whether the claim has no class at all (nil, not `""`): the default class may be set.
pub fn class_unset(pvc: &PersistentVolumeClaim) -> bool {
    !pvc.annotations().contains_key(ANN_BETA_CLASS)
        && pvc
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_ref())
            .is_none()
}

pub fn volume_class(pv: &PersistentVolume) -> &str {
    if let Some(c) = pv.annotations().get(ANN_BETA_CLASS) {
        return c;
    }
    pv.spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .unwrap_or("")
}

/// Upstream `GetDefaultClass`: among the classes annotated as default, the newest (then the
/// first by name).
pub fn default_class(classes: &[Arc<StorageClass>]) -> Option<String> {
    const DEFAULT: [&str; 2] = [
        "storageclass.kubernetes.io/is-default-class",
        "storageclass.beta.kubernetes.io/is-default-class",
    ];
    classes
        .iter()
        .filter(|c| {
            DEFAULT
                .iter()
                .any(|a| c.annotations().get(*a).map(String::as_str) == Some("true"))
        })
        .max_by(|a, b| {
            let created = |c: &StorageClass| c.metadata.creation_timestamp.as_ref().map(|t| t.0);
            created(a)
                .cmp(&created(b))
                .then_with(|| b.name_any().cmp(&a.name_any()))
        })
        .map(|c| c.name_any())
}

/// Whether claims of this class wait for their first pod before binding.
pub fn waits_for_consumer(class: Option<&StorageClass>) -> bool {
    class.and_then(|c| c.volume_binding_mode.as_deref()) == Some("WaitForFirstConsumer")
}

/// The name of the volume the claim is bound to, `""` when unbound.
pub fn volume_name(pvc: &PersistentVolumeClaim) -> &str {
    pvc.spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("")
}

/// The claim's storage request.
pub fn requested(pvc: &PersistentVolumeClaim) -> Option<Quantity> {
    pvc.spec
        .as_ref()
        .and_then(|s| s.resources.as_ref())
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .and_then(|q| Quantity::parse(&q.0))
}

/// The volume's storage capacity.
pub fn capacity(pv: &PersistentVolume) -> Option<Quantity> {
    pv.spec
        .as_ref()
        .and_then(|s| s.capacity.as_ref())
        .and_then(|c| c.get("storage"))
        .and_then(|q| Quantity::parse(&q.0))
}

/// Whether `pv.spec.claimRef` names this claim (and, when it records a uid, this very one).
pub fn refers_to(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let Some(r) = pv.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
        return false;
    };
    let uid_ok = match (r.uid.as_deref(), pvc.metadata.uid.as_deref()) {
        (None | Some(""), _) => true,
        (Some(a), Some(b)) => a == b,
        (Some(_), None) => false,
    };
    r.namespace.as_deref() == pvc.metadata.namespace.as_deref()
        && r.name.as_deref() == pvc.metadata.name.as_deref()
        && uid_ok
}

fn modes(v: Option<&Vec<String>>) -> &[String] {
    v.map(Vec::as_slice).unwrap_or(&[])
}

fn mode_of(v: Option<&String>) -> &str {
    v.map(String::as_str).unwrap_or("Filesystem")
}

/// `checkVolumeSatisfyClaim`: same class and volume mode, every requested access mode
/// offered, enough capacity, and the claim's selector matching the volume's labels.
pub fn satisfies(pv: &PersistentVolume, pvc: &PersistentVolumeClaim) -> bool {
    let (Some(vs), Some(cs)) = (pv.spec.as_ref(), pvc.spec.as_ref()) else {
        return false;
    };
    let offered = modes(vs.access_modes.as_ref());
    let modes_ok = modes(cs.access_modes.as_ref())
        .iter()
        .all(|m| offered.contains(m));
    let size_ok = match (capacity(pv), requested(pvc)) {
        (Some(have), Some(want)) => have >= want,
        _ => false,
    };
    let selector_ok = cs
        .selector
        .as_ref()
        .is_none_or(|s| label_selector_matches(s, pv.labels()));
    volume_class(pv) == claim_class(pvc)
        && mode_of(vs.volume_mode.as_ref()) == mode_of(cs.volume_mode.as_ref())
        && modes_ok
        && size_ok
        && selector_ok
}

/// The volume for an unbound claim, as the binder picks it: a volume pre-bound to the claim
/// when it fits, else the smallest available, unclaimed volume that fits. With `node`, only
/// volumes reachable from that node count; with `delay` and no node (a
/// `WaitForFirstConsumer` claim no pod has chosen a node for), only pre-bound ones.
pub fn find_match(
    pvc: &PersistentVolumeClaim,
    volumes: &[Arc<PersistentVolume>],
    node: Option<&Node>,
    delay: bool,
) -> Option<Arc<PersistentVolume>> {
    let usable = |pv: &PersistentVolume| {
        pv.metadata.deletion_timestamp.is_none()
            && satisfies(pv, pvc)
            && node.is_none_or(|n| node_affinity_matches(pv, n))
    };
    if let Some(pre) = volumes.iter().find(|pv| refers_to(pv, pvc)) {
        return usable(pre).then(|| pre.clone());
    }
    if delay && node.is_none() {
        return None;
    }
    volumes
        .iter()
        .filter(|pv| pv.spec.as_ref().is_some_and(|s| s.claim_ref.is_none()))
        .filter(|pv| phase(pv) == "Available")
        .filter(|pv| usable(pv))
        .min_by_key(|pv| capacity(pv))
        .cloned()
}

/// A volume's phase, `""` when it has none yet.
pub fn phase(pv: &PersistentVolume) -> &str {
    pv.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether `node` may use `pv`: a volume without node affinity is reachable everywhere;
/// otherwise one of its node selector terms must match the node's labels (or name).
pub fn node_affinity_matches(pv: &PersistentVolume, node: &Node) -> bool {
    let Some(required) = pv
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
    else {
        return true;
    };
    let name = node.name_any();
    let labels = node.labels();
    required.node_selector_terms.iter().any(|term| {
        let exprs = term.match_expressions.iter().flatten();
        let fields = term.match_fields.iter().flatten();
        let has_any = term
            .match_expressions
            .as_ref()
            .is_some_and(|e| !e.is_empty())
            || term.match_fields.as_ref().is_some_and(|f| !f.is_empty());
        has_any
            && exprs
                .into_iter()
                .all(|r| node_requirement(r, labels.get(&r.key)))
            && fields.into_iter().all(|r| {
                let value = (r.key == "metadata.name").then_some(&name);
                node_requirement(r, value)
            })
    })
}

fn node_requirement(r: &NodeSelectorRequirement, value: Option<&String>) -> bool {
    let values = r.values.as_deref().unwrap_or(&[]);
    let number = |v: &str| v.parse::<i64>().ok();
    match r.operator.as_str() {
        "In" => value.is_some_and(|v| values.contains(v)),
        "NotIn" => value.is_none_or(|v| !values.contains(v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(have), Some(bound)) = (
                value.and_then(|v| number(v)),
                values.first().and_then(|v| number(v)),
            ) else {
                return false;
            };
            if r.operator == "Gt" {
                have > bound
            } else {
                have < bound
            }
        }
        _ => false,
    }
}

/// A `metav1.LabelSelector` against labels (an empty selector matches everything).
pub fn label_selector_matches(sel: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_ok = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let expr_ok = |r: &LabelSelectorRequirement| {
        let values = r.values.as_deref().unwrap_or(&[]);
        let value = labels.get(&r.key);
        match r.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            _ => false,
        }
    };
    labels_ok && sel.match_expressions.iter().flatten().all(expr_ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pv(name: &str, size: &str, extra: Value) -> Arc<PersistentVolume> {
        let mut v = json!({"metadata": {"name": name, "labels": {"disk": "ssd"}},
            "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany"],
                     "hostPath": {"path": "/data"}, "volumeMode": "Filesystem"},
            "status": {"phase": "Available"}});
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        Arc::new(serde_json::from_value(v).expect("pv"))
    }

    fn claim(size: &str, extra: Value) -> PersistentVolumeClaim {
        let mut v = json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": size}},
                     "storageClassName": ""}});
        if let (Some(spec), Some(extra)) = (v["spec"].as_object_mut(), extra.as_object()) {
            spec.extend(extra.clone());
        }
        serde_json::from_value(v).expect("pvc")
    }

    fn node(name: &str) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
        )
        .expect("node")
    }

    fn names(found: Option<Arc<PersistentVolume>>) -> Option<String> {
        found.map(|p| p.name_any())
    }

    #[test]
    fn smallest_volume_that_fits() {
        let vols = vec![
            pv("big", "10Gi", json!({})),
            pv("small", "2Gi", json!({})),
            pv("tiny", "500Mi", json!({})),
        ];
        assert_eq!(
            names(find_match(&claim("1Gi", json!({})), &vols, None, false)),
            Some("small".into())
        );
        assert_eq!(
            names(find_match(&claim("20Gi", json!({})), &vols, None, false)),
            None
        );
        assert_eq!(
            names(find_match(&claim("1000Mi", json!({})), &vols, None, false)),
            Some("small".into())
        );
    }

    #[test]
    fn class_modes_and_selector_must_match() {
        let vols = vec![pv("a", "1Gi", json!({"storageClassName": "fast"}))];
        assert_eq!(
            names(find_match(&claim("1Gi", json!({})), &vols, None, false)),
            None
        );
        let fast = claim("1Gi", json!({"storageClassName": "fast"}));
        assert_eq!(
            names(find_match(&fast, &vols, None, false)),
            Some("a".into())
        );
        let rwx = claim(
            "1Gi",
            json!({"storageClassName": "fast", "accessModes": ["ReadWriteMany"]}),
        );
        assert_eq!(names(find_match(&rwx, &vols, None, false)), None);
        let block = claim(
            "1Gi",
            json!({"storageClassName": "fast", "volumeMode": "Block"}),
        );
        assert_eq!(names(find_match(&block, &vols, None, false)), None);
        let hdd = claim(
            "1Gi",
            json!({"storageClassName": "fast", "selector": {"matchLabels": {"disk": "hdd"}}}),
        );
        assert_eq!(names(find_match(&hdd, &vols, None, false)), None);
        let ssd = claim(
            "1Gi",
            json!({"storageClassName": "fast",
            "selector": {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}}),
        );
        assert_eq!(
            names(find_match(&ssd, &vols, None, false)),
            Some("a".into())
        );
    }

    #[test]
    fn claimed_released_and_deleting_volumes_are_skipped() {
        let taken = pv(
            "taken",
            "1Gi",
            json!({"claimRef": {"namespace": "ns", "name": "other", "uid": "u9"}}),
        );
        let mut released = (*pv("released", "1Gi", json!({}))).clone();
        released.status = serde_json::from_value(json!({"phase": "Released"})).ok();
        let mut going = (*pv("going", "1Gi", json!({}))).clone();
        going.metadata.deletion_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).ok();
        let vols = vec![taken, Arc::new(released), Arc::new(going)];
        assert_eq!(
            names(find_match(&claim("1Gi", json!({})), &vols, None, false)),
            None
        );
    }

    #[test]
    fn pre_bound_volume_wins_and_delay_waits_for_a_node() {
        let vols = vec![
            pv("small", "1Gi", json!({})),
            pv(
                "mine",
                "5Gi",
                json!({"claimRef": {"namespace": "ns", "name": "data"}}),
            ),
        ];
        let c = claim("1Gi", json!({}));
        assert_eq!(
            names(find_match(&c, &vols, None, false)),
            Some("mine".into())
        );
        assert_eq!(
            names(find_match(&c, &vols, None, true)),
            Some("mine".into()),
            "pre-bound even when delayed"
        );
        let unbound = vec![pv("small", "1Gi", json!({}))];
        assert_eq!(names(find_match(&c, &unbound, None, true)), None);
        assert_eq!(
            names(find_match(&c, &unbound, Some(&node("n1")), true)),
            Some("small".into())
        );
        let other_uid = vec![pv(
            "mine",
            "5Gi",
            json!({"claimRef": {"namespace": "ns", "name": "data", "uid": "old"}}),
        )];
        assert_eq!(names(find_match(&c, &other_uid, None, false)), None);
    }

    #[test]
    fn node_affinity() {
        let pinned = pv(
            "local",
            "1Gi",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}]}}}),
        );
        assert!(node_affinity_matches(&pinned, &node("n1")));
        assert!(!node_affinity_matches(&pinned, &node("n2")));
        let by_field = pv(
            "f",
            "1Gi",
            json!({"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["n1"]}]}]}}}),
        );
        assert!(!node_affinity_matches(&by_field, &node("n1")));
        assert!(node_affinity_matches(&by_field, &node("n2")));
        assert!(node_affinity_matches(
            &pv("any", "1Gi", json!({})),
            &node("n2")
        ));
        let c = claim("1Gi", json!({}));
        assert_eq!(
            names(find_match(
                &c,
                std::slice::from_ref(&pinned),
                Some(&node("n2")),
                true
            )),
            None
        );
        assert_eq!(
            names(find_match(&c, &[pinned], Some(&node("n1")), true)),
            Some("local".into())
        );
    }

    #[test]
    fn classes() {
        let c = claim("1Gi", json!({"storageClassName": null}));
        assert!(class_unset(&c));
        assert_eq!(claim_class(&c), "");
        assert!(!class_unset(&claim("1Gi", json!({}))));
        let wffc: StorageClass = serde_json::from_value(json!({"metadata": {"name": "lp"},
            "provisioner": "p", "volumeBindingMode": "WaitForFirstConsumer"}))
        .expect("sc");
        assert!(waits_for_consumer(Some(&wffc)));
        assert!(!waits_for_consumer(None));
        assert_eq!(default_class(&[Arc::new(wffc.clone())]), None);
        let mut default = wffc;
        default.metadata.annotations = Some(BTreeMap::from([(
            "storageclass.kubernetes.io/is-default-class".to_string(),
            "true".to_string(),
        )]));
        assert_eq!(default_class(&[Arc::new(default)]), Some("lp".to_string()));
    }
}
