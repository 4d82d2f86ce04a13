//! The static pod settings of a node (kubelet's `--config` file and `--static-pod-path`),
//! and the other KubeletConfiguration settings peapod honours (container log rotation,
//! image GC, pod sync period, graceful node shutdown, node-pressure eviction, node status periods),
//! shared by `peapod up` and `peapod agent`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::cli::StaticPodArgs;

/// The static pod settings of `--config` and `--static-pod-path`, and the config file's
/// `allowedUnsafeSysctls`.
pub struct StaticPodSettings {
    pub path: Option<PathBuf>,
    pub file_check_frequency: Option<Duration>,
    /// `syncFrequency`: how often each pod is re-synced when nothing wakes its worker.
    pub sync_frequency: Option<Duration>,
    /// `containerLogMaxSize` / `containerLogMaxFiles`, the kubelet's defaults when unset.
    pub container_logs: crilog::Rotation,
    pub allowed_unsafe_sysctls: Vec<String>,
    /// `imageGCHighThresholdPercent`, `imageGCLowThresholdPercent`, `imageMinimumGCAge`.
    pub image_gc: node::imagegc::Policy,
    /// `serializeImagePulls`, `maxParallelImagePulls`.
    pub image_pulls: imagepull::PullerConfig,
    /// `shutdownGracePeriod`, `shutdownGracePeriodCriticalPods` or
    /// `shutdownGracePeriodByPodPriority`: stopping the agent drains the node when set.
    pub shutdown: node_shutdown::Policy,
    /// `evictionHard` (the kubelet's defaults when absent), `evictionSoft` with
    /// `evictionSoftGracePeriod`, `evictionMaxPodGracePeriod`,
    /// `evictionPressureTransitionPeriod`, `evictionMinimumReclaim`.
    pub eviction: node_pressure::Settings,
    /// `nodeStatusUpdateFrequency`, `nodeStatusReportFrequency`, `nodeLeaseDurationSeconds`.
    pub node_status: node::NodeStatusPeriods,
}

/// Reads the kubelet configuration file, if any; `--static-pod-path` wins over its
/// `staticPodPath` (kubelet's flags override the config file).
pub fn static_pod_settings(args: &StaticPodArgs) -> anyhow::Result<StaticPodSettings> {
    let config = match &args.config {
        Some(file) => staticpods::load_kubelet_config(file)
            .with_context(|| format!("loading the kubelet configuration {}", file.display()))?,
        None => Default::default(),
    };
    let path = args
        .static_pod_path
        .clone()
        .or(config.static_pod_path)
        .map(|p| std::path::absolute(&p).unwrap_or(p));
    let defaults = crilog::Rotation::default();
    Ok(StaticPodSettings {
        path,
        file_check_frequency: config.file_check_frequency,
        sync_frequency: config.sync_frequency,
        container_logs: crilog::Rotation {
            max_size: config.container_log_max_size.unwrap_or(defaults.max_size),
            max_files: config.container_log_max_files.unwrap_or(defaults.max_files),
        },
        allowed_unsafe_sysctls: config.allowed_unsafe_sysctls,
        node_status: node::NodeStatusPeriods::from_config(
            config.node_status_update_frequency,
            config.node_status_report_frequency,
            config.node_lease_duration_seconds,
        ),
        image_pulls: imagepull::PullerConfig {
            serialize: config.serialize_image_pulls.unwrap_or(true),
            max_parallel: config.max_parallel_image_pulls,
        },
        shutdown: node_shutdown::Policy {
            grace_period: config.shutdown_grace_period.unwrap_or_default(),
            critical_grace_period: config
                .shutdown_grace_period_critical_pods
                .unwrap_or_default(),
            by_priority: config.shutdown_grace_period_by_pod_priority,
        },
        eviction: {
            let d = node_pressure::Settings::default();
            node_pressure::Settings {
                hard: config.eviction_hard.unwrap_or(d.hard),
                soft: config.eviction_soft,
                max_pod_grace_period: config
                    .eviction_max_pod_grace_period
                    .unwrap_or(d.max_pod_grace_period),
                transition_period: config
                    .eviction_pressure_transition_period
                    .unwrap_or(d.transition_period),
                minimum_reclaim: config.eviction_minimum_reclaim,
            }
        },
        image_gc: {
            let d = node::imagegc::Policy::default();
            node::imagegc::Policy {
                high_threshold_percent: config
                    .image_gc_high_threshold_percent
                    .unwrap_or(d.high_threshold_percent),
                low_threshold_percent: config
                    .image_gc_low_threshold_percent
                    .unwrap_or(d.low_threshold_percent),
                minimum_age: config.image_minimum_gc_age.unwrap_or(d.minimum_age),
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_pod_path_flag_overrides_the_kubelet_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nstaticPodPath: manifests\nfileCheckFrequency: 5s\ncontainerLogMaxSize: 1Mi\n",
        )
        .expect("config");
        let from_config = static_pod_settings(&StaticPodArgs {
            config: Some(config.clone()),
            static_pod_path: None,
            image_gc_period: Duration::from_secs(300),
            registry_auth_file: None,
        })
        .expect("settings");
        assert_eq!(from_config.path, Some(dir.path().join("manifests")));
        assert_eq!(
            from_config.file_check_frequency,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            from_config.container_logs,
            crilog::Rotation {
                max_size: 1 << 20,
                max_files: 5
            }
        );
        assert_eq!(from_config.image_gc, node::imagegc::Policy::default());
        assert_eq!(from_config.eviction, node_pressure::Settings::default());
        let flag = static_pod_settings(&StaticPodArgs {
            config: Some(config),
            static_pod_path: Some(PathBuf::from("/etc/kubernetes/manifests")),
            image_gc_period: Duration::from_secs(300),
            registry_auth_file: None,
        })
        .expect("settings");
        assert_eq!(flag.path, Some(PathBuf::from("/etc/kubernetes/manifests")));
        let missing = static_pod_settings(&StaticPodArgs {
            config: Some(dir.path().join("nope.yaml")),
            static_pod_path: None,
            image_gc_period: Duration::from_secs(300),
            registry_auth_file: None,
        });
        assert!(missing.is_err());
    }
}
