//! The node lifecycle controller's settings, kube-controller-manager's flags of the same
//! names.

use std::time::Duration;

/// The controllers' flags (kube-controller-manager's names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// `--node-monitor-grace-period`: silence after which a node is `Unknown`.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted Ready.
    pub node_startup_grace_period: Duration,
    /// `--node-eviction-rate`: nodes per second per zone whose pods start being evicted.
    pub node_eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same in a partly disrupted large zone.
    pub secondary_node_eviction_rate: f64,
    /// `--unhealthy-zone-threshold`: the fraction of unready nodes (more than two) that
    /// makes a zone partly disrupted.
    pub unhealthy_zone_threshold: f64,
    /// `--large-cluster-size-threshold`: zones up to this size stop evicting when partly
    /// disrupted.
    pub large_cluster_size_threshold: u32,
}

impl Default for Settings {
    /// kube-controller-manager v1.33's defaults.
    fn default() -> Self {
        Settings {
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
        }
    }
}
