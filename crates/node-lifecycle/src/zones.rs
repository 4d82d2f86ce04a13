//! Eviction by zone, as kube-controller-manager's node lifecycle controller paces it: nodes
//! are grouped by their `topology.kubernetes.io/region` and `zone` labels; each zone is
//! `Normal`, `PartialDisruption` (more than two nodes and at least
//! `--unhealthy-zone-threshold` of them not Ready) or `FullDisruption` (none Ready). New
//! `NoExecute` taints, the start of an eviction, are added at most `--node-eviction-rate`
//! nodes per second per zone; a partly disrupted zone slows to
//! `--secondary-node-eviction-rate`, or stops when it is no larger than
//! `--large-cluster-size-threshold` (a small cluster losing most nodes at once is more
//! likely cut off than broken). When every zone is fully disrupted nothing is evicted at all
//! (the caller's "master disruption mode"). Pure: time comes in as an argument.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;

use crate::health;
use crate::settings::Settings;

const REGION: &[&str] = &[
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/region",
];
const ZONE: &[&str] = &[
    "topology.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/zone",
];

/// The zone a node is in: (region, zone), both empty for unlabelled nodes.
pub fn zone_of(node: &Node) -> (String, String) {
    let label = |keys: &[&str]| {
        let labels = node.metadata.labels.as_ref();
        keys.iter()
            .find_map(|k| labels.and_then(|l| l.get(*k)).cloned())
            .unwrap_or_default()
    };
    (label(REGION), label(ZONE))
}

/// A zone's health, upstream's `ZoneState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    PartialDisruption,
    FullDisruption,
}

/// Ready and not-Ready node counts of one zone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneCount {
    pub ready: u32,
    pub not_ready: u32,
}

impl ZoneCount {
    pub fn size(&self) -> u32 {
        self.ready + self.not_ready
    }

    pub fn state(&self, unhealthy_threshold: f64) -> ZoneState {
        if self.ready == 0 && self.not_ready > 0 {
            ZoneState::FullDisruption
        } else if self.not_ready > 2
            && f64::from(self.not_ready) / f64::from(self.size()) >= unhealthy_threshold
        {
            ZoneState::PartialDisruption
        } else {
            ZoneState::Normal
        }
    }
}

/// Counts every zone's nodes by their Ready condition.
pub fn count<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
) -> BTreeMap<(String, String), ZoneCount> {
    let mut zones: BTreeMap<(String, String), ZoneCount> = BTreeMap::new();
    for node in nodes {
        let c = zones.entry(zone_of(node)).or_default();
        if health::ready_status(node) == Some("True") {
            c.ready += 1;
        } else {
            c.not_ready += 1;
        }
    }
    zones
}

/// Whether every zone is fully disrupted (and there is at least one): nothing is evicted.
pub fn all_fully_disrupted(zones: &BTreeMap<(String, String), ZoneCount>, threshold: f64) -> bool {
    !zones.is_empty()
        && zones
            .values()
            .all(|c| c.state(threshold) == ZoneState::FullDisruption)
}

/// The rate (nodes per second) at which a zone starts evictions.
pub fn eviction_rate(count: &ZoneCount, settings: &Settings) -> f64 {
    match count.state(settings.unhealthy_zone_threshold) {
        ZoneState::Normal | ZoneState::FullDisruption => settings.node_eviction_rate,
        ZoneState::PartialDisruption if count.size() <= settings.large_cluster_size_threshold => {
            0.0
        }
        ZoneState::PartialDisruption => settings.secondary_node_eviction_rate,
    }
}

/// A token bucket of burst one, as upstream's rate-limited eviction queue uses per zone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bucket {
    /// When the last token was taken; `None` before the first, which is free.
    last: Option<Timestamp>,
}

/// The answer of [`Bucket::take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Take {
    Granted,
    /// Try again after this long.
    Wait(Duration),
    /// The rate is zero: wait for the zone's state to change.
    Never,
}

impl Bucket {
    pub fn take(&mut self, rate: f64, now: Timestamp) -> Take {
        if !(rate > 0.0 && rate.is_finite()) {
            return Take::Never;
        }
        let every = Duration::from_secs_f64((1.0 / rate).min(1e9));
        if let Some(last) = self.last {
            let since = now.duration_since(last).unsigned_abs();
            if since < every {
                return Take::Wait(every - since);
            }
        }
        self.last = Some(now);
        Take::Granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_millisecond(1_700_000_000_000 + ms).expect("valid time")
    }

    fn node(zone: &str, ready: &str) -> Node {
        Node {
            metadata: ObjectMeta {
                labels: (!zone.is_empty()).then(|| {
                    [("topology.kubernetes.io/zone".to_string(), zone.to_string())].into()
                }),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn counts(ready: u32, not_ready: u32) -> ZoneCount {
        ZoneCount { ready, not_ready }
    }

    #[test]
    fn zone_states_follow_upstream_thresholds() {
        assert_eq!(counts(3, 0).state(0.55), ZoneState::Normal);
        assert_eq!(counts(0, 1).state(0.55), ZoneState::FullDisruption);
        // Two unready are never a partial disruption, whatever the fraction.
        assert_eq!(counts(1, 2).state(0.55), ZoneState::Normal);
        assert_eq!(counts(2, 3).state(0.55), ZoneState::PartialDisruption);
        assert_eq!(counts(3, 3).state(0.55), ZoneState::Normal);
        assert_eq!(counts(0, 0).state(0.55), ZoneState::Normal);
    }

    #[test]
    fn nodes_are_counted_per_zone_and_master_disruption_needs_every_zone_down() {
        let nodes = [
            node("a", "True"),
            node("a", "Unknown"),
            node("b", "False"),
            node("", "Unknown"),
        ];
        let zones = count(&nodes);
        assert_eq!(zones[&(String::new(), "a".into())], counts(1, 1));
        assert_eq!(zones[&(String::new(), "b".into())], counts(0, 1));
        assert_eq!(zones[&(String::new(), String::new())], counts(0, 1));
        assert!(!all_fully_disrupted(&zones, 0.55));
        let down = count(&[node("a", "Unknown"), node("b", "False")]);
        assert!(all_fully_disrupted(&down, 0.55));
        assert!(!all_fully_disrupted(&BTreeMap::new(), 0.55));
    }

    #[test]
    fn partial_disruption_slows_large_zones_and_stops_small_ones() {
        let s = Settings::default();
        assert_eq!(eviction_rate(&counts(5, 1), &s), 0.1);
        assert_eq!(eviction_rate(&counts(0, 4), &s), 0.1);
        assert_eq!(eviction_rate(&counts(1, 4), &s), 0.0);
        assert_eq!(eviction_rate(&counts(20, 40), &s), 0.01);
    }

    #[test]
    fn the_bucket_grants_one_then_paces() {
        let mut b = Bucket::default();
        assert_eq!(b.take(0.1, ts(0)), Take::Granted);
        assert_eq!(b.take(0.1, ts(4_000)), Take::Wait(Duration::from_secs(6)));
        assert_eq!(b.take(0.1, ts(10_000)), Take::Granted);
        assert_eq!(b.take(0.0, ts(60_000)), Take::Never);
        assert_eq!(b.take(f64::NAN, ts(60_000)), Take::Never);
        // A huge rate is one token every instant, never a panic.
        assert_eq!(b.take(1e12, ts(60_000)), Take::Granted);
    }
}
