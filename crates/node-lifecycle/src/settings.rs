//! The node lifecycle controller's settings, kube-controller-manager's flags of the same
//! names.

use std::time::Duration;

/// The controllers' flags (kube-controller-manager's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// `--node-monitor-grace-period`: silence after which a node is `Unknown`.
    pub node_monitor_grace_period: Duration,
    /// `--node-startup-grace-period`: the same for a node that never posted Ready.
    pub node_startup_grace_period: Duration,
}

impl Default for Settings {
    /// kube-controller-manager v1.33's defaults.
    fn default() -> Self {
        Settings {
            node_monitor_grace_period: Duration::from_secs(40),
            node_startup_grace_period: Duration::from_secs(60),
        }
    }
}
