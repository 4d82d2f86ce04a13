//! The workload kinds and what they need (apps, batch, storage, policy, scheduling, node
//! runtime classes and the core persistent-volume and pod-template kinds): one file per kind
//! holds its discovery entry and its strategy, and one line in [`KINDS`] serves it. Discovery lists them after the core kinds, in this
//! order. What the kinds with a pod template share is in [`template`].

pub mod certificatesigningrequest;
pub mod controllerrevision;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod job;
pub mod persistentvolume;
pub mod persistentvolumeclaim;
pub mod poddisruptionbudget;
pub mod podtemplate;
pub mod priorityclass;
pub mod replicaset;
pub mod runtimeclass;
pub mod statefulset;
pub mod storageclass;
pub mod template;
mod volumecommon;

use apimachinery::strategy::ResourceInfo;

/// The workload resources, in discovery order.
pub static KINDS: &[ResourceInfo] = &[
    controllerrevision::RESOURCE,
    daemonset::RESOURCE,
    deployment::RESOURCE,
    replicaset::RESOURCE,
    statefulset::RESOURCE,
    job::RESOURCE,
    cronjob::RESOURCE,
    podtemplate::RESOURCE,
    persistentvolume::RESOURCE,
    persistentvolumeclaim::RESOURCE,
    poddisruptionbudget::RESOURCE,
    priorityclass::RESOURCE,
    runtimeclass::RESOURCE,
    storageclass::RESOURCE,
    certificatesigningrequest::RESOURCE,
];

#[cfg(test)]
pub(crate) mod testing {
    //! Helpers the kinds' tests share.

    use apimachinery::field_errors::FieldError;

    pub fn now() -> jiff::Timestamp {
        "2026-01-02T15:00:00Z".parse().expect("timestamp")
    }

    pub fn messages(r: Result<(), Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
    }
}
