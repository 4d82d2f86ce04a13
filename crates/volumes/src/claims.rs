//! `persistentVolumeClaim` volumes, as kubelet's volume manager resolves them: the claim
//! must exist, not be going away, and be bound; its volume must exist and name the claim
//! back; and the volume's source must be one this node mounts (`hostPath`, with its type,
//! or `local`, which must already be a directory). The result is a host path that the
//! containers bind-mount; the data lives there, outside the pod's own directory, so it
//! outlives the pod.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};

/// A bound claim's volume as this node mounts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimVolume {
    pub path: PathBuf,
    /// The hostPath `type` check to run (`Directory` for `local` volumes).
    pub check: String,
}

/// Why a claim gives the pod no volume (yet); the text follows kubelet's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("failed to fetch PVC from API server: persistentvolumeclaims {name:?} not found")]
    ClaimNotFound { name: String },
    #[error("can't start pod because PVC {namespace}/{name} is being deleted")]
    ClaimDeleting { namespace: String, name: String },
    #[error("PVC {namespace}/{name} has non-bound phase ({phase:?}) or empty pvc.Spec.VolumeName ({volume:?})")]
    NotBound {
        namespace: String,
        name: String,
        phase: String,
        volume: String,
    },
    #[error(
        "failed to fetch PV {volume:?} from API server: persistentvolumes {volume:?} not found"
    )]
    VolumeNotFound { volume: String },
    #[error("PV {volume:?} is not bound to this PVC (its claimRef names another claim)")]
    Misbound { volume: String },
    #[error("{kind} persistent volumes are not supported by this node")]
    Unsupported { kind: String },
}

/// Names of the claims the pod's volumes use.
pub fn referenced(pod: &Pod) -> Vec<String> {
    let volumes = pod.spec.as_ref().and_then(|s| s.volumes.as_ref());
    let mut names: Vec<String> = volumes
        .into_iter()
        .flatten()
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The bound volume the claim asks for, or why there is none: the claim's half of the
/// resolution, before the volume is fetched.
pub fn bound_volume(
    namespace: &str,
    name: &str,
    claim: Option<&PersistentVolumeClaim>,
) -> Result<String, ClaimError> {
    let Some(claim) = claim else {
        return Err(ClaimError::ClaimNotFound { name: name.into() });
    };
    if claim.metadata.deletion_timestamp.is_some() {
        return Err(ClaimError::ClaimDeleting {
            namespace: namespace.into(),
            name: name.into(),
        });
    }
    let phase = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    let volume = claim
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.clone())
        .unwrap_or_default();
    if phase != "Bound" || volume.is_empty() {
        return Err(ClaimError::NotBound {
            namespace: namespace.into(),
            name: name.into(),
            phase,
            volume,
        });
    }
    Ok(volume)
}

/// The volume's half: it must exist, name the claim back, and have a source this node
/// mounts.
pub fn mountable(
    claim: &PersistentVolumeClaim,
    volume: &str,
    pv: Option<&PersistentVolume>,
) -> Result<ClaimVolume, ClaimError> {
    let Some(spec) = pv.and_then(|p| p.spec.as_ref()) else {
        return Err(ClaimError::VolumeNotFound {
            volume: volume.into(),
        });
    };
    let names_claim = spec
        .claim_ref
        .as_ref()
        .is_some_and(|r| r.uid.is_none() || r.uid == claim.metadata.uid)
        && spec.claim_ref.as_ref().and_then(|r| r.name.as_deref())
            == claim.metadata.name.as_deref();
    if !names_claim {
        return Err(ClaimError::Misbound {
            volume: volume.into(),
        });
    }
    if let Some(h) = &spec.host_path {
        return Ok(ClaimVolume {
            path: PathBuf::from(&h.path),
            check: h.type_.clone().unwrap_or_default(),
        });
    }
    if let Some(l) = &spec.local {
        return Ok(ClaimVolume {
            path: PathBuf::from(&l.path),
            check: "Directory".into(),
        });
    }
    // The source is whichever field is not one of the spec's common ones.
    const COMMON: &[&str] = &[
        "accessModes",
        "capacity",
        "claimRef",
        "mountOptions",
        "nodeAffinity",
        "persistentVolumeReclaimPolicy",
        "storageClassName",
        "volumeAttributesClassName",
        "volumeMode",
    ];
    let kind = serde_json::to_value(spec)
        .ok()
        .and_then(|v| {
            v.as_object()
                .and_then(|o| o.keys().find(|k| !COMMON.contains(&k.as_str())).cloned())
        })
        .unwrap_or_else(|| "unknown".into());
    Err(ClaimError::Unsupported { kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(status: serde_json::Value, volume: Option<&str>) -> PersistentVolumeClaim {
        serde_json::from_value(
            json!({"metadata": {"name": "data", "namespace": "ns", "uid": "u1"},
            "spec": {"volumeName": volume}, "status": status}),
        )
        .expect("pvc")
    }

    fn pv(source: serde_json::Value, uid: &str) -> PersistentVolume {
        let mut spec = json!({"capacity": {"storage": "1Gi"},
            "claimRef": {"namespace": "ns", "name": "data", "uid": uid}});
        if let (Some(s), Some(src)) = (spec.as_object_mut(), source.as_object()) {
            s.extend(src.clone());
        }
        serde_json::from_value(json!({"metadata": {"name": "pv1"}, "spec": spec})).expect("pv")
    }

    #[test]
    fn claim_must_exist_live_and_bound() {
        assert_eq!(
            bound_volume("ns", "data", None).map_err(|e| e.to_string()),
            Err(
                "failed to fetch PVC from API server: persistentvolumeclaims \"data\" not found"
                    .into()
            )
        );
        let pending = claim(json!({"phase": "Pending"}), None);
        assert_eq!(
            bound_volume("ns", "data", Some(&pending)).map_err(|e| e.to_string()),
            Err(
                "PVC ns/data has non-bound phase (\"Pending\") or empty pvc.Spec.VolumeName (\"\")"
                    .into()
            )
        );
        let mut going = claim(json!({"phase": "Bound"}), Some("pv1"));
        assert_eq!(bound_volume("ns", "data", Some(&going)), Ok("pv1".into()));
        going.metadata.deletion_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).ok();
        assert!(matches!(
            bound_volume("ns", "data", Some(&going)),
            Err(ClaimError::ClaimDeleting { .. })
        ));
    }

    #[test]
    fn volume_sources() {
        let c = claim(json!({"phase": "Bound"}), Some("pv1"));
        let host = pv(
            json!({"hostPath": {"path": "/srv/data", "type": "DirectoryOrCreate"}}),
            "u1",
        );
        assert_eq!(
            mountable(&c, "pv1", Some(&host)),
            Ok(ClaimVolume {
                path: "/srv/data".into(),
                check: "DirectoryOrCreate".into()
            })
        );
        let local = pv(json!({"local": {"path": "/mnt/disk"}}), "u1");
        assert_eq!(
            mountable(&c, "pv1", Some(&local)).map(|v| v.check),
            Ok("Directory".into())
        );
        let nfs = pv(json!({"nfs": {"server": "s", "path": "/"}}), "u1");
        assert_eq!(
            mountable(&c, "pv1", Some(&nfs)).map_err(|e| e.to_string()),
            Err("nfs persistent volumes are not supported by this node".into())
        );
        let other = pv(json!({"hostPath": {"path": "/srv"}}), "u2");
        assert!(matches!(
            mountable(&c, "pv1", Some(&other)),
            Err(ClaimError::Misbound { .. })
        ));
        assert!(matches!(
            mountable(&c, "pv1", None),
            Err(ClaimError::VolumeNotFound { .. })
        ));
    }
}
