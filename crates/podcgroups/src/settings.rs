//! What the node allocatable cgroup and the QoS tiers hold, computed from the node's
//! allocatable and its active pods (kubelet's `enforceNodeAllocatableCgroups` and
//! `qosContainerManager.UpdateCgroups`).

use api::qos::QosClass;
use cgroups::Resources;
use containerspec::{milli_cpu_to_shares, pod_requests};
use k8s_openapi::api::core::v1::PodSpec;

/// The node's resources as enforced on `kubepods`.
///
/// kubelet v1.33 enforces capacity less `kubeReserved` and `systemReserved`
/// (`getNodeAllocatableInternalAbsolute`): the hard eviction threshold that the Node's
/// `status.allocatable` also subtracts is not taken off the cgroup, since the eviction
/// manager, not the kernel, keeps that margin. peapod reserves nothing, so this is capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeAllocatable {
    pub cpu_millis: u64,
    pub memory_bytes: u64,
}

/// The settings of the three cgroups above the pods.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TierSettings {
    pub kubepods: Resources,
    pub burstable: Resources,
    pub besteffort: Resources,
}

/// The tiers' settings for `active` pods (admitted and not yet terminated): `kubepods` gets
/// the shares of the allocatable cpu and the allocatable memory as its limit; `burstable` the
/// shares of the Burstable pods' summed cpu requests (2, the minimum, when there are none);
/// `besteffort` always 2 shares. The tiers get no memory limit (that is the alpha
/// `QOSReserved` gate, off by default).
pub fn tier_settings<'a>(
    allocatable: NodeAllocatable,
    active: impl IntoIterator<Item = &'a PodSpec>,
) -> TierSettings {
    let burstable_millis = active
        .into_iter()
        .filter(|spec| api::qos::of_typed_spec(spec) == QosClass::Burstable)
        .fold(0u64, |sum, spec| sum.saturating_add(pod_requests(spec).0));
    TierSettings {
        kubepods: Resources {
            cpu_shares: Some(milli_cpu_to_shares(allocatable.cpu_millis)),
            memory_limit_bytes: (allocatable.memory_bytes > 0)
                .then(|| i64::try_from(allocatable.memory_bytes).unwrap_or(i64::MAX)),
            ..Default::default()
        },
        burstable: Resources {
            cpu_shares: Some(milli_cpu_to_shares(burstable_millis)),
            ..Default::default()
        },
        besteffort: Resources {
            cpu_shares: Some(milli_cpu_to_shares(0)),
            ..Default::default()
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(resources: serde_json::Value) -> PodSpec {
        serde_json::from_value(serde_json::json!({
            "containers": [{"name": "a", "image": "x", "resources": resources}]
        }))
        .expect("spec")
    }

    const NODE: NodeAllocatable = NodeAllocatable {
        cpu_millis: 4000,
        memory_bytes: 8 << 30,
    };

    #[test]
    fn kubepods_carries_allocatable() {
        let s = tier_settings(NODE, []);
        assert_eq!(s.kubepods.cpu_shares, Some(4096));
        assert_eq!(s.kubepods.memory_limit_bytes, Some(8 << 30));
        assert_eq!(s.kubepods.cpu_quota_us, None);
        assert_eq!(s.burstable.cpu_shares, Some(2));
        assert_eq!(s.besteffort.cpu_shares, Some(2));
        assert_eq!(s.burstable.memory_limit_bytes, None);
        let unknown = tier_settings(
            NodeAllocatable {
                cpu_millis: 1000,
                memory_bytes: 0,
            },
            [],
        );
        assert_eq!(unknown.kubepods.memory_limit_bytes, None);
    }

    #[test]
    fn burstable_shares_sum_burstable_requests_only() {
        let pods = [
            spec(serde_json::json!({"requests": {"cpu": "100m"}})),
            spec(serde_json::json!({"requests": {"cpu": "250m", "memory": "10Mi"}})),
            // Guaranteed and BestEffort pods do not count.
            spec(serde_json::json!({"limits": {"cpu": "1", "memory": "64Mi"}})),
            spec(serde_json::json!({})),
            // Burstable by a memory request alone: no cpu to add.
            spec(serde_json::json!({"requests": {"memory": "1Mi"}})),
        ];
        let s = tier_settings(NODE, pods.iter());
        // 350m: 350 * 1024 / 1000.
        assert_eq!(s.burstable.cpu_shares, Some(358));
        assert_eq!(s.besteffort.cpu_shares, Some(2));
    }
}
