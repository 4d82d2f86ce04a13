//! Puts the tiers' settings in force on cgroupfs, at start, whenever the active pods change
//! and once a minute (kubelet's `periodicQOSCgroupUpdateInterval`), and removes the tree
//! when nothing is left in it.

use std::path::Path;
use std::time::Duration;

use cgroups::{CgroupError, Hierarchy};
use tokio::sync::watch;

use crate::layout::Layout;
use crate::settings::TierSettings;

/// kubelet re-applies the QoS tiers this often, repairing what anything else changed.
const PERIOD: Duration = Duration::from_secs(60);

/// The node's tree on this host's hierarchies.
#[derive(Debug, Clone)]
pub struct QosCgroups {
    hierarchy: Hierarchy,
    layout: Layout,
}

impl QosCgroups {
    pub fn new(hierarchy: Hierarchy, layout: Layout) -> Self {
        Self { hierarchy, layout }
    }

    /// The tree below `parent` on the hierarchies mounted under `root`.
    pub fn detect(root: &Path, parent: &Path) -> Result<Self, CgroupError> {
        Ok(Self::new(Hierarchy::detect(root)?, Layout::new(parent)))
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Creates `kubepods` and the two tiers (existing ones are kept) and writes `settings`,
    /// parents first so that a tier never asks for more than its parent allows.
    pub fn apply(&self, settings: &TierSettings) -> Result<(), CgroupError> {
        let kubepods = self.layout.kubepods();
        for (path, resources) in [
            (kubepods.clone(), &settings.kubepods),
            (kubepods.join(crate::layout::BURSTABLE), &settings.burstable),
            (
                kubepods.join(crate::layout::BESTEFFORT),
                &settings.besteffort,
            ),
        ] {
            let cgroup = self.hierarchy.cgroup(&path);
            cgroup.create()?;
            cgroup.apply(resources)?;
        }
        Ok(())
    }

    /// Removes the tiers and `kubepods` if no pod cgroup is left in them (another node agent
    /// of this machine may still have pods there); `peapod reset` calls it after removing its
    /// pods.
    pub fn remove_unused(&self) -> Result<(), CgroupError> {
        let kubepods = self.layout.kubepods();
        for path in [
            kubepods.join(crate::layout::BURSTABLE),
            kubepods.join(crate::layout::BESTEFFORT),
            kubepods,
        ] {
            self.hierarchy.cgroup(&path).remove_if_empty()?;
        }
        Ok(())
    }
}

/// Keeps the latest `settings` in force until `shutdown`: applies them at once, on every
/// change and every minute.
pub async fn run(
    cgroups: QosCgroups,
    mut settings: watch::Receiver<TierSettings>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let current = settings.borrow_and_update().clone();
        let cg = cgroups.clone();
        match tokio::task::spawn_blocking(move || cg.apply(&current)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "updating the QoS cgroups failed"),
            Err(error) => tracing::warn!(%error, "updating the QoS cgroups failed"),
        }
        tokio::select! {
            changed = settings.changed() => if changed.is_err() { return },
            _ = tokio::time::sleep(PERIOD) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests;
