//! When a node counts as gone silent (upstream `tryUpdateNodeHealth`): the controller notes,
//! on its own clock, the last time it saw the node's Lease renewed or its Ready heartbeat
//! move, and once `--node-monitor-grace-period` has passed since then it sets the kubelet's
//! conditions to `Unknown`. Measuring on the controller's clock, not the timestamps the
//! kubelet wrote, keeps clock skew between machines out of the decision. All pure.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// The conditions a kubelet posts and the controller turns `Unknown` when it stops.
pub const KUBELET_CONDITIONS: [&str; 4] =
    ["Ready", "MemoryPressure", "DiskPressure", "PIDPressure"];
pub const REASON_UNKNOWN: &str = "NodeStatusUnknown";
pub const MESSAGE_UNKNOWN: &str = "Kubelet stopped posting node status.";
pub const REASON_NEVER_UPDATED: &str = "NodeStatusNeverUpdated";
pub const MESSAGE_NEVER_UPDATED: &str = "Kubelet never posted node status.";

/// What was last seen of a node's liveness, and when it last moved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub renew_time: Option<Timestamp>,
    pub heartbeat: Option<Timestamp>,
    /// When the controller last saw the Lease renewed or the heartbeat change.
    pub probed_at: Timestamp,
}

/// The node's condition of `type_`.
pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .find(|c| c.type_ == type_)
}

/// The Ready condition's status (`True`, `False`, `Unknown`), if the node has one.
pub fn ready_status(node: &Node) -> Option<&str> {
    condition(node, "Ready").map(|c| c.status.as_str())
}

/// The new probe after looking at the node and its Lease's `renew_time`. A node seen for
/// the first time that never posted Ready counts from its creation, as upstream does, so
/// a kubelet that never starts is noticed after the startup grace period.
pub fn observe(
    prev: Option<&Probe>,
    node: &Node,
    renew_time: Option<Timestamp>,
    now: Timestamp,
) -> Probe {
    let heartbeat = condition(node, "Ready")
        .and_then(|c| c.last_heartbeat_time.as_ref())
        .map(|t| t.0);
    let probed_at = match prev {
        None if condition(node, "Ready").is_none() => node
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(now, |t| t.0),
        None => now,
        Some(p) => {
            let renewed = renew_time.is_some_and(|r| p.renew_time.is_none_or(|old| old < r));
            if renewed || heartbeat != p.heartbeat {
                now
            } else {
                p.probed_at
            }
        }
    };
    Probe {
        renew_time: renew_time.max(prev.and_then(|p| p.renew_time)),
        heartbeat,
        probed_at,
    }
}

/// Whether the node has gone silent, or how long until it would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Silent,
    Alive { recheck_in: Duration },
}

/// Upstream waits `grace` (the node monitor grace period) after the last sign of life, or
/// `startup_grace` for a node whose kubelet has not posted Ready yet.
pub fn verdict(
    probe: &Probe,
    node: &Node,
    grace: Duration,
    startup_grace: Duration,
    now: Timestamp,
) -> Verdict {
    let wait = if condition(node, "Ready").is_some() {
        grace
    } else {
        startup_grace
    };
    let deadline = probe.probed_at.checked_add(wait).unwrap_or(Timestamp::MAX);
    match Duration::try_from(deadline.duration_since(now)) {
        Ok(left) if !left.is_zero() => Verdict::Alive { recheck_in: left },
        _ => Verdict::Silent,
    }
}

/// The node's conditions with the kubelet's four set to `Unknown` (added when missing), or
/// `None` when they already are.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Option<Vec<NodeCondition>> {
    let mut conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    let created = node.metadata.creation_timestamp.clone();
    let mut changed = false;
    for type_ in KUBELET_CONDITIONS {
        match conditions.iter_mut().find(|c| c.type_ == type_) {
            Some(c) if c.status == "Unknown" => {}
            Some(c) => {
                c.status = "Unknown".into();
                c.reason = Some(REASON_UNKNOWN.into());
                c.message = Some(MESSAGE_UNKNOWN.into());
                c.last_transition_time = Some(Time(now));
                changed = true;
            }
            None => {
                conditions.push(NodeCondition {
                    type_: type_.into(),
                    status: "Unknown".into(),
                    reason: Some(REASON_NEVER_UPDATED.into()),
                    message: Some(MESSAGE_NEVER_UPDATED.into()),
                    last_heartbeat_time: created.clone(),
                    last_transition_time: Some(Time(now)),
                });
                changed = true;
            }
        }
    }
    changed.then_some(conditions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("valid time")
    }

    fn node(ready: Option<(&str, i64)>) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                creation_timestamp: Some(Time(ts(0))),
                ..Default::default()
            },
            status: Some(NodeStatus {
                conditions: ready.map(|(status, beat)| {
                    vec![
                        NodeCondition {
                            type_: "MemoryPressure".into(),
                            status: "False".into(),
                            last_heartbeat_time: Some(Time(ts(beat))),
                            ..Default::default()
                        },
                        NodeCondition {
                            type_: "Ready".into(),
                            status: status.into(),
                            reason: Some("KubeletReady".into()),
                            last_heartbeat_time: Some(Time(ts(beat))),
                            last_transition_time: Some(Time(ts(0))),
                            ..Default::default()
                        },
                    ]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    const GRACE: Duration = Duration::from_secs(40);
    const STARTUP: Duration = Duration::from_secs(60);

    #[test]
    fn a_renewed_lease_or_a_new_heartbeat_restarts_the_grace_period() {
        let n = node(Some(("True", 5)));
        let first = observe(None, &n, Some(ts(5)), ts(100));
        assert_eq!(first.probed_at, ts(100), "first sight counts from now");
        let same = observe(Some(&first), &n, Some(ts(5)), ts(120));
        assert_eq!(same.probed_at, ts(100), "nothing moved");
        let renewed = observe(Some(&same), &n, Some(ts(15)), ts(125));
        assert_eq!(renewed.probed_at, ts(125));
        // An older renew time (a stale cache) is no sign of life.
        let older = observe(Some(&renewed), &n, Some(ts(10)), ts(130));
        assert_eq!(older.probed_at, ts(125));
        assert_eq!(older.renew_time, Some(ts(15)));
        let beat = observe(
            Some(&older),
            &node(Some(("True", 20))),
            Some(ts(15)),
            ts(140),
        );
        assert_eq!(beat.probed_at, ts(140));
    }

    #[test]
    fn silent_only_after_the_grace_period() {
        let n = node(Some(("True", 5)));
        let p = observe(None, &n, Some(ts(5)), ts(100));
        assert_eq!(
            verdict(&p, &n, GRACE, STARTUP, ts(110)),
            Verdict::Alive {
                recheck_in: Duration::from_secs(30)
            }
        );
        assert_eq!(verdict(&p, &n, GRACE, STARTUP, ts(140)), Verdict::Silent);
        assert_eq!(verdict(&p, &n, GRACE, STARTUP, ts(500)), Verdict::Silent);
    }

    #[test]
    fn a_node_that_never_posted_status_gets_the_startup_grace_from_its_creation() {
        let n = node(None);
        let p = observe(None, &n, None, ts(30));
        assert_eq!(p.probed_at, ts(0));
        assert_eq!(
            verdict(&p, &n, GRACE, STARTUP, ts(50)),
            Verdict::Alive {
                recheck_in: Duration::from_secs(10)
            }
        );
        assert_eq!(verdict(&p, &n, GRACE, STARTUP, ts(60)), Verdict::Silent);
    }

    #[test]
    fn unknown_conditions_keep_heartbeats_and_add_the_missing_ones() {
        let n = node(Some(("True", 5)));
        let set = unknown_conditions(&n, ts(100)).expect("changed");
        let ready = set.iter().find(|c| c.type_ == "Ready").expect("ready");
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some(REASON_UNKNOWN));
        assert_eq!(ready.message.as_deref(), Some(MESSAGE_UNKNOWN));
        assert_eq!(ready.last_heartbeat_time, Some(Time(ts(5))));
        assert_eq!(ready.last_transition_time, Some(Time(ts(100))));
        let disk = set
            .iter()
            .find(|c| c.type_ == "DiskPressure")
            .expect("added");
        assert_eq!(disk.reason.as_deref(), Some(REASON_NEVER_UPDATED));
        assert_eq!(disk.last_heartbeat_time, Some(Time(ts(0))));
        assert_eq!(set.len(), 4);
        let mut again = n.clone();
        again.status.get_or_insert_with(Default::default).conditions = Some(set);
        assert_eq!(unknown_conditions(&again, ts(200)), None, "already Unknown");
    }
}
