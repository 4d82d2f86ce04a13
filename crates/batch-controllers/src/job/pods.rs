//! A Job's pods as the Job controller sees them: the pod it makes from the template (the
//! tracking finalizer, the controller reference, and for Indexed jobs the completion index
//! as annotation, label, `JOB_COMPLETION_INDEX` and hostname), and how it classes the pods
//! it finds (active, terminating, succeeded, failed, with their finish times).

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, ObjectFieldSelector, Pod};
use kube::ResourceExt;

use controller_base::ownership::pod_from_template;

pub(super) use controller_base::pods::is_ready;

/// The finalizer that keeps a finished or deleted pod until the controller has counted it.
pub(super) const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Where an Indexed job's pod carries its index.
pub(super) const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";
const INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// How many of an index's pods failed before this one, with `backoffLimitPerIndex`.
pub(super) const FAILURE_COUNT_KEY: &str = "batch.kubernetes.io/job-index-failure-count";
/// ... and how many failures the pod failure policy ignored.
pub(super) const IGNORED_COUNT_KEY: &str = "batch.kubernetes.io/job-index-ignored-failure-count";

/// A new pod for `job` (upstream `GetPodFromTemplate` plus the job's additions); `counts`
/// are the index's failure and ignored-failure counts when the job limits back-off per index.
pub(super) fn new_pod(job: &Job, index: Option<i32>, counts: Option<(i32, i32)>) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let mut pod = pod_from_template(job, &template);
    let meta = &mut pod.metadata;
    meta.finalizers
        .get_or_insert_with(Vec::new)
        .push(TRACKING_FINALIZER.to_string());
    let Some(i) = index else {
        return pod;
    };
    let name = job.name_any();
    meta.generate_name = Some(format!("{name}-{i}-"));
    let annotations = meta.annotations.get_or_insert_with(Default::default);
    annotations.insert(INDEX_KEY.into(), i.to_string());
    if let Some((failed, ignored)) = counts {
        annotations.insert(FAILURE_COUNT_KEY.into(), failed.to_string());
        annotations.insert(IGNORED_COUNT_KEY.into(), ignored.to_string());
    }
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(INDEX_KEY.into(), i.to_string());
    if let Some(spec) = pod.spec.as_mut() {
        if spec.hostname.as_deref().unwrap_or("").is_empty() {
            spec.hostname = Some(format!("{name}-{i}"));
        }
        for c in spec
            .containers
            .iter_mut()
            .chain(spec.init_containers.iter_mut().flatten())
        {
            add_index_env(c);
        }
    }
    pod
}

/// `JOB_COMPLETION_INDEX` from the index annotation, unless the container sets it itself.
fn add_index_env(c: &mut Container) {
    let env = c.env.get_or_insert_with(Vec::new);
    if env.iter().any(|e| e.name == INDEX_ENV) {
        return;
    }
    env.push(EnvVar {
        name: INDEX_ENV.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: Some("v1".into()),
                field_path: format!("metadata.annotations['{INDEX_KEY}']"),
            }),
            ..Default::default()
        }),
    });
}

/// Where a pod stands, for the job's counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum State {
    /// Not finished and not being deleted.
    Active,
    /// Being deleted, not finished yet.
    Terminating,
    Succeeded,
    /// Failed, or (unless only failed pods are replaced) deleted before it succeeded.
    Failed,
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// `only_failed` is `podReplacementPolicy: Failed` with a pod failure policy: a deleted
/// pod counts only once its phase is `Failed`.
pub(super) fn state(pod: &Pod, only_failed: bool) -> State {
    let deleting = pod.metadata.deletion_timestamp.is_some();
    match phase(pod) {
        "Succeeded" => State::Succeeded,
        "Failed" => State::Failed,
        // Deleted pods that never reached a phase count as failures (upstream
        // `isPodFailed`), so an orphan that never ran is not waited for forever.
        _ if deleting && !only_failed => State::Failed,
        _ if deleting => State::Terminating,
        _ => State::Active,
    }
}

/// Whether a pod still to be waited for has left the running set (terminating pods still
/// occupy their slot until they are gone).
pub(super) fn is_terminating(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some() && !matches!(phase(pod), "Succeeded" | "Failed")
}

pub(super) fn has_finalizer(pod: &Pod) -> bool {
    pod.finalizers().iter().any(|f| f == TRACKING_FINALIZER)
}

/// The pod's completion index when it is valid for `completions`.
pub(super) fn index(pod: &Pod, completions: i32) -> Option<i32> {
    let text = pod
        .annotations()
        .get(INDEX_KEY)
        .or_else(|| pod.labels().get(INDEX_KEY))?;
    text.parse::<i32>()
        .ok()
        .filter(|i| (0..completions).contains(i))
}

/// The pod's index failure and ignored-failure counts (0 when absent or unreadable).
pub(super) fn failure_counts(pod: &Pod) -> (i32, i32) {
    let read = |k: &str| {
        pod.annotations()
            .get(k)
            .and_then(|v| v.parse::<i32>().ok())
            .filter(|n| *n >= 0)
            .unwrap_or(0)
    };
    (read(FAILURE_COUNT_KEY), read(IGNORED_COUNT_KEY))
}

/// When the pod finished: its containers' last exit, else its deletion, else its creation.
pub(super) fn finished_at(pod: &Pod) -> Option<Timestamp> {
    let status = pod.status.as_ref();
    let exits = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .filter_map(|cs| cs.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
        .map(|t| t.0)
        .max();
    exits
        .or_else(|| pod.metadata.deletion_timestamp.as_ref().map(|t| t.0))
        .or_else(|| pod.metadata.creation_timestamp.as_ref().map(|t| t.0))
}

/// Container restarts of a pod (for `restartPolicy: OnFailure`, where failures show as
/// restarts, not as failed pods).
pub(super) fn restarts(pod: &Pod) -> i64 {
    pod.status
        .as_ref()
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
        })
        .map(|cs| i64::from(cs.restart_count))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> Job {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "work", "namespace": "ns", "uid": "j1"},
            "spec": {"selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "j1"}},
                "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "j1"}},
                    "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox",
                        "env": [{"name": "A", "value": "1"}]}]}}}
        }))
        .expect("job")
    }

    #[test]
    fn indexed_pods_carry_their_index() {
        let pod = new_pod(&job(), Some(2), Some((1, 0)));
        let meta = &pod.metadata;
        assert_eq!(meta.generate_name.as_deref(), Some("work-2-"));
        assert_eq!(
            meta.annotations
                .as_ref()
                .and_then(|a| a.get(INDEX_KEY))
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(
            meta.labels
                .as_ref()
                .and_then(|a| a.get(INDEX_KEY))
                .map(String::as_str),
            Some("2")
        );
        assert_eq!(
            meta.finalizers.as_deref(),
            Some(&[TRACKING_FINALIZER.to_string()][..])
        );
        let spec = pod.spec.as_ref().expect("spec");
        assert_eq!(spec.hostname.as_deref(), Some("work-2"));
        let env = spec.containers[0].env.as_ref().expect("env");
        assert_eq!(env[1].name, INDEX_ENV);
        let r = &meta.owner_references.as_ref().expect("owner")[0];
        assert_eq!(
            (r.kind.as_str(), r.uid.as_str(), r.controller),
            ("Job", "j1", Some(true))
        );
        assert_eq!(index(&pod, 3), Some(2));
        assert_eq!(index(&pod, 2), None);
        let plain = new_pod(&job(), None, None);
        assert_eq!(plain.metadata.generate_name.as_deref(), Some("work-"));
        assert_eq!(
            plain
                .spec
                .and_then(|s| s.containers[0].env.clone())
                .map(|e| e.len()),
            Some(1)
        );
    }

    #[test]
    fn states() {
        let mut pod = new_pod(&job(), None, None);
        assert_eq!(state(&pod, false), State::Active);
        pod.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        );
        assert_eq!(state(&pod, false), State::Failed);
        assert_eq!(state(&pod, true), State::Terminating);
        assert!(is_terminating(&pod));
        pod.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert_eq!(state(&pod, false), State::Succeeded);
        assert!(!is_terminating(&pod));
    }
}
