//! The taints the node lifecycle controller keeps on each Node from its conditions, as
//! upstream's `doNoScheduleTaintingPass` and `processTaintBaseEviction` do: `NoSchedule`
//! taints for each bad condition and for `spec.unschedulable` (what `kubectl cordon` sets),
//! and the `NoExecute` `not-ready` / `unreachable` taints that make the taint eviction
//! controller move pods away. Taints the controller does not own are left alone. Pure.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::health::condition;

pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const NO_SCHEDULE: &str = "NoSchedule";
pub const NO_EXECUTE: &str = "NoExecute";

/// (condition, status, taint key) of upstream's condition-to-taint map.
const CONDITION_TAINTS: &[(&str, &str, &str)] = &[
    ("Ready", "False", NOT_READY),
    ("Ready", "Unknown", UNREACHABLE),
    (
        "MemoryPressure",
        "True",
        "node.kubernetes.io/memory-pressure",
    ),
    ("DiskPressure", "True", "node.kubernetes.io/disk-pressure"),
    (
        "NetworkUnavailable",
        "True",
        "node.kubernetes.io/network-unavailable",
    ),
    ("PIDPressure", "True", "node.kubernetes.io/pid-pressure"),
];

/// Whether the controller owns this (key, effect).
fn managed(key: &str, effect: &str) -> bool {
    match effect {
        NO_SCHEDULE => key == UNSCHEDULABLE || CONDITION_TAINTS.iter().any(|(_, _, k)| *k == key),
        NO_EXECUTE => key == NOT_READY || key == UNREACHABLE,
        _ => false,
    }
}

/// The (key, effect) pairs the node should carry. `evict` is false while every node is
/// unready (upstream's "master disruption mode": the control plane, not the nodes, is
/// likely cut off, so nothing is evicted and the `NoExecute` taints come off).
fn wanted(node: &Node, evict: bool) -> BTreeSet<(&'static str, &'static str)> {
    let mut set = BTreeSet::new();
    for (type_, status, key) in CONDITION_TAINTS {
        if condition(node, type_).is_some_and(|c| c.status == *status) {
            set.insert((*key, NO_SCHEDULE));
        }
    }
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        set.insert((UNSCHEDULABLE, NO_SCHEDULE));
    }
    if evict {
        match condition(node, "Ready").map(|c| c.status.as_str()) {
            Some("False") => {
                set.insert((NOT_READY, NO_EXECUTE));
            }
            Some("Unknown") => {
                set.insert((UNREACHABLE, NO_EXECUTE));
            }
            _ => {}
        }
    }
    set
}

/// Whether a pass allowed to evict would start an eviction on this node: it wants a
/// `NoExecute` taint and carries none of the controller's yet (swapping `not-ready` for
/// `unreachable` is not a new eviction). New evictions are rate limited per zone.
pub fn starts_eviction(node: &Node) -> bool {
    let has = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| {
            ts.iter()
                .any(|t| t.effect == NO_EXECUTE && managed(&t.key, &t.effect))
        });
    !has && wanted(node, true).iter().any(|(_, e)| *e == NO_EXECUTE)
}

/// The node's taints after the controller's pass, or `None` when they stay as they are.
/// Taints added get `timeAdded = now`; the order of the others is kept.
pub fn desired_taints(node: &Node, evict: bool, now: Timestamp) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let want = wanted(node, evict);
    let mut next: Vec<Taint> = current
        .iter()
        .filter(|t| {
            !managed(&t.key, &t.effect) || want.contains(&(t.key.as_str(), t.effect.as_str()))
        })
        .cloned()
        .collect();
    for (key, effect) in &want {
        if !next.iter().any(|t| t.key == *key && t.effect == *effect) {
            next.push(Taint {
                key: (*key).into(),
                effect: (*effect).into(),
                time_added: Some(Time(now)),
                value: None,
            });
        }
    }
    (next != current).then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{NodeCondition, NodeSpec, NodeStatus};

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid time")
    }

    fn node(ready: &str, memory: &str, taints: &[(&str, &str)], unschedulable: bool) -> Node {
        let cond = |t: &str, s: &str| NodeCondition {
            type_: t.into(),
            status: s.into(),
            ..Default::default()
        };
        Node {
            spec: Some(NodeSpec {
                unschedulable: unschedulable.then_some(true),
                taints: Some(
                    taints
                        .iter()
                        .map(|(k, e)| Taint {
                            key: (*k).into(),
                            effect: (*e).into(),
                            ..Default::default()
                        })
                        .collect(),
                ),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                conditions: Some(vec![cond("Ready", ready), cond("MemoryPressure", memory)]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn keys(taints: &[Taint]) -> Vec<(String, String)> {
        taints
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect()
    }

    fn pair(k: &str, e: &str) -> (String, String) {
        (k.into(), e.into())
    }

    #[test]
    fn an_unknown_node_gets_both_unreachable_taints() {
        let got =
            desired_taints(&node("Unknown", "Unknown", &[], false), true, ts(1)).expect("changed");
        assert_eq!(
            keys(&got),
            vec![
                pair(UNREACHABLE, NO_EXECUTE),
                pair(UNREACHABLE, NO_SCHEDULE)
            ]
        );
        assert!(got.iter().all(|t| t.time_added == Some(Time(ts(1)))));
    }

    #[test]
    fn a_not_ready_node_swaps_unreachable_for_not_ready_and_keeps_foreign_taints() {
        let n = node(
            "False",
            "True",
            &[
                ("dedicated", NO_SCHEDULE),
                (UNREACHABLE, NO_EXECUTE),
                (UNREACHABLE, NO_SCHEDULE),
            ],
            false,
        );
        let got = desired_taints(&n, true, ts(1)).expect("changed");
        assert_eq!(
            keys(&got),
            vec![
                pair("dedicated", NO_SCHEDULE),
                pair("node.kubernetes.io/memory-pressure", NO_SCHEDULE),
                pair(NOT_READY, NO_EXECUTE),
                pair(NOT_READY, NO_SCHEDULE),
            ]
        );
    }

    #[test]
    fn a_ready_node_loses_the_controllers_taints_and_unchanged_is_none() {
        let n = node(
            "True",
            "False",
            &[
                ("dedicated", NO_EXECUTE),
                (UNREACHABLE, NO_EXECUTE),
                (UNREACHABLE, NO_SCHEDULE),
            ],
            false,
        );
        let got = desired_taints(&n, true, ts(1)).expect("changed");
        assert_eq!(keys(&got), vec![pair("dedicated", NO_EXECUTE)]);
        let clean = node("True", "False", &[("dedicated", NO_EXECUTE)], false);
        assert_eq!(desired_taints(&clean, true, ts(1)), None);
    }

    #[test]
    fn cordon_adds_the_unschedulable_taint() {
        let got = desired_taints(&node("True", "False", &[], true), true, ts(1)).expect("changed");
        assert_eq!(keys(&got), vec![pair(UNSCHEDULABLE, NO_SCHEDULE)]);
        let uncordoned = node("True", "False", &[(UNSCHEDULABLE, NO_SCHEDULE)], false);
        assert_eq!(desired_taints(&uncordoned, true, ts(1)), Some(vec![]));
    }

    #[test]
    fn without_eviction_no_execute_taints_come_off_but_no_schedule_stays() {
        let n = node("Unknown", "Unknown", &[(UNREACHABLE, NO_EXECUTE)], false);
        let got = desired_taints(&n, false, ts(1)).expect("changed");
        assert_eq!(keys(&got), vec![pair(UNREACHABLE, NO_SCHEDULE)]);
    }

    #[test]
    fn only_a_first_no_execute_taint_starts_an_eviction() {
        assert!(starts_eviction(&node("Unknown", "Unknown", &[], false)));
        assert!(starts_eviction(&node(
            "False",
            "False",
            &[("dedicated", NO_EXECUTE)],
            false
        )));
        // Swapping unreachable for not-ready goes on with an eviction already started.
        assert!(!starts_eviction(&node(
            "False",
            "False",
            &[(UNREACHABLE, NO_EXECUTE)],
            false
        )));
        assert!(!starts_eviction(&node("True", "False", &[], false)));
    }
}
