//! The pod worker driven through fakes: a runtime, an API and a clock.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use k8s_openapi::api::core::v1::PodStatus;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde_json::json;

use super::*;
use crate::testsupport::{FakeApi, FakeClock, FakeRuntime};
use podapi::Clock;
use podapi::EventRecorder;
use probes::ProbeKind;

struct Harness {
    env: WorkerDeps,
    rt: Arc<FakeRuntime>,
    api: Arc<FakeApi>,
    clock: FakeClock,
    _dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let clock = FakeClock::new();
    let rt = FakeRuntime::new(clock.clone());
    rt.with_registry_image("busybox:1.36");
    let api = Arc::new(FakeApi::default());
    let dir = tempfile::tempdir().expect("tempdir");
    let env = WorkerDeps {
        runtime: rt.clone(),
        api: api.clone(),
        events: Arc::new(EventRecorder::new(api.clone(), "node-a")),
        clock: Arc::new(clock.clone()),
        node: NodeFacts {
            name: "node-a".into(),
            host_ip: "10.1.2.3".into(),
            cpu: 2.0,
            memory: 1e9,
            ephemeral_storage: 1e10,
        },
        log_root: dir.path().join("logs"),
        sandboxes: Default::default(),
        volumes: Arc::new(::volumes::VolumeManager::new(
            dir.path().join("volumes"),
            Arc::new(::volumes::HostMounter),
            crate::config::DEFAULT_SYNC_FREQUENCY,
        )),
        sync_frequency: crate::config::DEFAULT_SYNC_FREQUENCY,
        metrics: crate::NodeMetrics::new(),
        pods: Default::default(),
        userns: Arc::new(
            userns::Allocator::for_state_dir(dir.path(), Default::default()).expect("userns"),
        ),
        pod_cgroups: Some(podcgroups::Layout::new("peapod")),
        pulls: Arc::new(ImagePulls::new(
            rt.clone(),
            imagepull::PullerConfig::default(),
            imagepull::NodeCredentials::search(
                Some(dir.path().join("config.json")),
                dir.path(),
                None,
                None,
            ),
        )),
    };
    Harness {
        env,
        rt,
        api,
        clock,
        _dir: dir,
    }
}

fn pod(policy: &str, image: &str, pull: &str) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
        "spec": {"restartPolicy": policy, "nodeName": "node-a", "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "app", "image": image, "imagePullPolicy": pull}]}
    }))
    .expect("pod")
}

fn state_of(status: &PodStatus) -> (String, Option<String>) {
    let cs = &status.container_statuses.as_ref().expect("statuses")[0];
    let st = cs.state.as_ref().expect("state");
    let kind = if st.running.is_some() {
        "running"
    } else if st.terminated.is_some() {
        "terminated"
    } else {
        "waiting"
    };
    (
        kind.to_string(),
        st.waiting.as_ref().and_then(|w| w.reason.clone()),
    )
}

/// Feeds the latest written status back into the pod, as the watch would.
fn with_status(mut pod: Pod, api: &FakeApi) -> Pod {
    pod.status = api.last_status();
    pod
}

#[tokio::test]
async fn starts_pod_and_reports_running() {
    let h = harness();
    let p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    assert_eq!(
        w.sync(&h.env, &p).await,
        Some(crate::config::DEFAULT_SYNC_FREQUENCY)
    );
    assert_eq!(
        h.api.reasons(),
        vec!["Pulling", "Pulled", "Created", "Started"]
    );
    let msgs = h.api.messages();
    assert!(
        msgs[1].starts_with("Successfully pulled image \"busybox:1.36\" in "),
        "{}",
        msgs[1]
    );
    assert!(msgs[1].ends_with("Image size: 1234 bytes."), "{}", msgs[1]);
    assert_eq!(msgs[2], "Created container: app");
    assert_eq!(msgs[3], "Started container app");
    let status = h.api.last_status().expect("status");
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(state_of(&status).0, "running");
    let cs = &status.container_statuses.as_ref().expect("cs")[0];
    assert!(cs.ready);
    assert!(cs.image_id.starts_with("busybox@sha256:"));
    let created = h.rt.containers_named("app");
    assert_eq!(created[0].config.args, vec!["/bin/sh"]);
    assert_eq!(created[0].config.log_path, PathBuf::from("app/0.log"));

    // Nothing changed: no new status write, no runtime calls beyond listing.
    let writes = h.api.lock().statuses.len();
    let calls = h.rt.calls().len();
    let p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(h.api.lock().statuses.len(), writes);
    assert_eq!(h.rt.calls().len(), calls);

    // Second pull of a present image with IfNotPresent: no pull.
    let mut w2 = PodWorker::new(&p, Default::default());
    h.rt.exit("app", 0);
    h.rt.state.lock().expect("lock").containers.clear();
    w2.sync(&h.env, &p).await;
    assert!(h
        .api
        .messages()
        .contains(&"Container image \"busybox:1.36\" already present on machine".to_string()));
}

#[tokio::test]
async fn the_status_is_written_only_after_the_start_events_were_sent() {
    let h = harness();
    // Events take a while to reach the API: the starts go on without them, the status waits.
    h.api.lock().event_delay = Some(Duration::from_millis(20));
    let p = lifecycle_pod("Always", json!({"containers": [c("a"), c("b")]}));
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    assert_eq!(
        h.api.lock().writes,
        vec![
            "event Pulling",
            "event Pulled",
            "event Created",
            "event Started",
            "event Pulled",
            "event Created",
            "event Started",
            "status Running",
        ]
    );
    assert_eq!(
        h.api.lock().field_paths[2..4],
        ["spec.containers{a}", "spec.containers{a}"]
    );

    // A crashed `a` restarts while `b`, whose definition changed, is killed and replaced:
    // each container's events in turn, the status last.
    h.api.lock().writes.clear();
    h.clock.advance(Duration::from_secs(5));
    h.rt.exit("a", 1);
    let mut p = with_status(p, &h.api);
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[1].args = Some(vec!["changed".into()]);
    }
    w.sync(&h.env, &p).await;
    assert_eq!(
        h.api.lock().writes,
        vec![
            "event Pulled",
            "event Created",
            "event Started",
            "event Killing",
            "event Pulled",
            "event Created",
            "event Started",
            "status Running",
        ]
    );
}

fn count(family: &metrics::Family, label: &str) -> u64 {
    family.series(label).snapshot().count
}

#[tokio::test]
async fn a_pod_start_is_measured_once_by_phase() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    // Created 5 s before the (fake, frozen) clock's now: the start SLI counts from there.
    let created = h.clock.now() - jiff::SignedDuration::from_secs(5);
    p.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        created,
    ));
    let mut w = PodWorker::new(&p, Default::default());
    w.state.track_start(&p, Instant::now());
    w.sync(&h.env, &p).await;
    let m = &h.env.metrics;
    assert_eq!(count(&m.pod_start, ""), 1);
    let sli = m.pod_start_sli.series("").snapshot();
    assert_eq!(sli.count, 1);
    // Five seconds, less the (real, short) time the image lookup took.
    assert!(sli.sum <= 5.0 && sli.sum > 4.0, "{}", sli.sum);
    for phase in ["observe", "volumes", "image", "spec", "status_patch"] {
        assert!(count(&m.phases, phase) >= 1, "phase {phase} not observed");
    }
    assert!(w.state.starting.is_none());

    // Later syncs of the running pod measure no start.
    let p = with_status(p, &h.api);
    let observed = count(&m.phases, "observe");
    w.sync(&h.env, &p).await;
    assert_eq!(count(&m.pod_start, ""), 1);
    assert_eq!(count(&m.phases, "observe"), observed);

    // A pod already running when the agent (re)starts is not a start.
    let mut again = PodWorker::new(&p, Default::default());
    again.state.track_start(&p, Instant::now());
    assert!(again.state.starting.is_none());
}

#[tokio::test]
async fn crash_restarts_with_backoff() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    // First crash: restarted at once.
    h.clock.advance(Duration::from_secs(5));
    h.rt.exit("app", 1);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let attempts: Vec<u32> =
        h.rt.containers_named("app")
            .iter()
            .map(|c| c.config.attempt)
            .collect();
    assert_eq!(attempts, vec![0, 1]);
    let status = h.api.last_status().expect("status");
    assert_eq!(state_of(&status).0, "running");
    assert_eq!(
        status.container_statuses.as_ref().expect("cs")[0].restart_count,
        1
    );

    // Second crash: CrashLoopBackOff for 10 s.
    h.clock.advance(Duration::from_secs(2));
    h.rt.exit("app", 1);
    p = with_status(p, &h.api);
    let requeue = w.sync(&h.env, &p).await;
    // The worker comes back when the back-off ends.
    assert_eq!(requeue, Some(Duration::from_secs(10)));
    let status = h.api.last_status().expect("status");
    assert_eq!(
        state_of(&status),
        ("waiting".to_string(), Some("CrashLoopBackOff".to_string()))
    );
    let cs = &status.container_statuses.as_ref().expect("cs")[0];
    assert_eq!(
        cs.state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.message.as_deref()),
        Some("back-off 10s restarting failed container=app pod=web_default(uid-1)")
    );
    assert_eq!(
        cs.last_state
            .as_ref()
            .and_then(|s| s.terminated.as_ref())
            .map(|t| t.exit_code),
        Some(1)
    );
    assert_eq!(status.phase.as_deref(), Some("Running"));
    assert_eq!(h.rt.containers_named("app").len(), 2);

    // Still inside the window: nothing new.
    h.clock.advance(Duration::from_secs(9));
    w.sync(&h.env, &p).await;
    assert_eq!(h.rt.containers_named("app").len(), 2);
    // Window over: attempt 2 starts, attempt 0 is cleaned up, attempt 1 kept for --previous.
    h.clock.advance(Duration::from_secs(2));
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let attempts: Vec<u32> =
        h.rt.containers_named("app")
            .iter()
            .map(|c| c.config.attempt)
            .collect();
    assert_eq!(attempts, vec![1, 2]);
    assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");

    // Next crash doubles the back-off.
    h.rt.exit("app", 2);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let status = h.api.last_status().expect("status");
    let cs = &status.container_statuses.as_ref().expect("cs")[0];
    let msg = cs
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.message.clone());
    assert_eq!(
        msg.as_deref(),
        Some("back-off 20s restarting failed container=app pod=web_default(uid-1)")
    );
}

/// kubelet keys the restart back-off by the container's hash: a crash-looping container whose
/// image changes starts at once with the new image, and its next crash backs off 10 s again.
#[tokio::test]
async fn a_new_image_starts_the_back_off_over() {
    let h = harness();
    h.rt.with_registry_image("busybox:1.37");
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let waiting_message = |api: &FakeApi| {
        let status = api.last_status().expect("status");
        status.container_statuses.as_ref().expect("cs")[0]
            .state
            .as_ref()
            .and_then(|s| s.waiting.as_ref())
            .and_then(|w| w.message.clone())
    };
    // Crash, restart, crash: 10 s back-off; past it, restart and crash: 20 s.
    for (attempt, wait) in [(0, 0), (1, 0), (2, 11)] {
        h.clock.advance(Duration::from_secs(wait));
        if wait > 0 {
            p = with_status(p, &h.api);
            w.sync(&h.env, &p).await;
        }
        h.clock.advance(Duration::from_secs(2));
        h.rt.exit("app", attempt);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
    }
    assert_eq!(
        waiting_message(&h.api).as_deref(),
        Some("back-off 20s restarting failed container=app pod=web_default(uid-1)")
    );

    // A new image: no back-off to wait out.
    h.clock.advance(Duration::from_secs(2));
    let spec = p.spec.as_mut().expect("spec");
    spec.containers[0].image = Some("busybox:1.37".into());
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let latest =
        h.rt.containers_named("app")
            .into_iter()
            .max_by_key(|c| c.config.attempt)
            .expect("a container");
    assert_eq!(latest.config.attempt, 3);
    assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
    h.clock.advance(Duration::from_secs(2));
    h.rt.exit("app", 3);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(
        waiting_message(&h.api).as_deref(),
        Some("back-off 10s restarting failed container=app pod=web_default(uid-1)")
    );
}

/// The aggregated count of the pod's `BackOff` events (0 when none).
fn backoff_count(api: &FakeApi) -> i32 {
    api.lock()
        .events
        .iter()
        .filter(|e| e.1 == "BackOff")
        .map(|e| e.3)
        .sum()
}

#[tokio::test]
async fn crash_loop_back_off_event_counts_retries_not_syncs() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    // First crash restarts at once; the second enters a 10 s back-off.
    for _ in 0..2 {
        h.clock.advance(Duration::from_secs(1));
        h.rt.exit("app", 1);
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
    }
    assert_eq!(backoff_count(&h.api), 1);
    // One sync a second through the window: no more events.
    for _ in 0..9 {
        h.clock.advance(Duration::from_secs(1));
        w.sync(&h.env, &p).await;
    }
    assert_eq!(backoff_count(&h.api), 1);
    assert_eq!(h.rt.containers_named("app").len(), 2);
    // Window over: restarted; it crashes again into a 20 s back-off, a new BackOff.
    h.clock.advance(Duration::from_secs(2));
    w.sync(&h.env, &p).await;
    assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
    h.rt.exit("app", 1);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(backoff_count(&h.api), 2);
    // Twenty one-second syncs: one retry event at 10 s (kubelet's backOffPeriod), then
    // the restart.
    for _ in 0..19 {
        h.clock.advance(Duration::from_secs(1));
        w.sync(&h.env, &p).await;
    }
    assert_eq!(backoff_count(&h.api), 3);
    h.clock.advance(Duration::from_secs(2));
    w.sync(&h.env, &p).await;
    assert_eq!(backoff_count(&h.api), 3);
    assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
}

#[tokio::test]
async fn never_policy_ends_failed_or_succeeded() {
    for (code, phase) in [(3, "Failed"), (0, "Succeeded")] {
        let h = harness();
        let mut p = pod("Never", "busybox:1.36", "IfNotPresent");
        let mut w = PodWorker::new(&p, Default::default());
        w.sync(&h.env, &p).await;
        h.rt.exit("app", code);
        p = with_status(p, &h.api);
        assert_eq!(w.sync(&h.env, &p).await, None);
        let status = h.api.last_status().expect("status");
        assert_eq!(status.phase.as_deref(), Some(phase));
        let term = status.container_statuses.as_ref().expect("cs")[0]
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .expect("terminated");
        assert_eq!(term.exit_code, code);
        assert_eq!(w.state.lifecycle, Lifecycle::Finished);
        assert!(
            h.rt.state.lock().expect("lock").sandboxes.is_empty(),
            "sandbox removed"
        );
        // Later syncs write nothing and start nothing.
        let writes = h.api.lock().statuses.len();
        p = with_status(p, &h.api);
        assert_eq!(w.sync(&h.env, &p).await, None);
        assert_eq!(h.api.lock().statuses.len(), writes);
        // A fresh worker (agent restart) leaves the finished pod alone.
        let mut again = PodWorker::new(&p, Default::default());
        assert_eq!(again.sync(&h.env, &p).await, None);
        assert!(h.rt.containers_named("app").is_empty());
    }
}

/// A new image in a bare Pod restarts that container alone, whatever the restart policy,
/// with the kubelet's `Killing` message; an unchanged pod is left alone.
#[tokio::test]
async fn changed_definition_restarts_the_container() {
    let h = harness();
    h.rt.with_registry_image("busybox:1.37");
    let mut p = pod("Never", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(h.rt.containers_named("app").len(), 1);
    p.spec.as_mut().expect("spec").containers[0].image = Some("busybox:1.37".into());
    w.sync(&h.env, &p).await;
    assert!(h
        .api
        .messages()
        .contains(&"Container app definition changed, will be restarted".to_string()));
    let attempts = h.rt.containers_named("app");
    assert_eq!(attempts.len(), 2, "the old attempt is kept for --previous");
    let newest = attempts
        .iter()
        .max_by_key(|c| c.config.attempt)
        .expect("newest");
    assert_eq!(newest.config.attempt, 1);
    assert_eq!(newest.config.image, "busybox:1.37");
    assert_eq!(newest.state, runtime::ContainerState::Running);
    let status = h.api.last_status().expect("status");
    let cs = &status.container_statuses.as_ref().expect("cs")[0];
    assert_eq!(cs.restart_count, 1);
    assert_eq!(cs.image, "busybox:1.37");
    // In step again: nothing more happens.
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(h.rt.containers_named("app").len(), 2);
}

fn set_resources(p: &mut Pod, resources: serde_json::Value) {
    p.spec.as_mut().expect("spec").containers[0].resources =
        Some(serde_json::from_value(resources).expect("resources"));
}

#[tokio::test]
async fn a_resize_is_applied_in_place_or_left_pending() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    set_resources(
        &mut p,
        json!({"requests": {"cpu": "500m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "64Mi"}}),
    );
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    let before = h.rt.containers_named("app");
    assert_eq!(before.len(), 1);
    let status = h.api.last_status().expect("status");
    let cs = &status.container_statuses.as_ref().expect("cs")[0];
    assert_eq!(
        cs.allocated_resources.as_ref().and_then(|r| r.get("cpu")),
        Some(&Quantity("500m".into()))
    );

    set_resources(
        &mut p,
        json!({"requests": {"cpu": "1", "memory": "64Mi"}, "limits": {"cpu": "1", "memory": "64Mi"}}),
    );
    w.sync(&h.env, &p).await;
    let after = h.rt.containers_named("app");
    assert_eq!(after.len(), 1, "resized in place, not restarted");
    assert_eq!(after[0].id, before[0].id);
    assert_eq!(after[0].config.resources.cpu_quota_us, Some(100_000));
    assert!(h
        .rt
        .calls()
        .iter()
        .any(|c| c.starts_with("update_pod_sandbox_resources")));
    let status = h.api.last_status().expect("status");
    let cs = &status.container_statuses.as_ref().expect("cs")[0];
    assert_eq!(cs.restart_count, 0);
    assert_eq!(
        cs.resources
            .as_ref()
            .and_then(|r| r.limits.as_ref())
            .and_then(|l| l.get("cpu")),
        Some(&Quantity("1".into()))
    );
    assert_eq!(cond_status(&status, "PodResizePending"), "");

    // More cpu than the node's two: pending, Infeasible, the container left as it is.
    p = with_status(p, &h.api);
    set_resources(
        &mut p,
        json!({"requests": {"cpu": "3", "memory": "64Mi"}, "limits": {"cpu": "3", "memory": "64Mi"}}),
    );
    w.sync(&h.env, &p).await;
    let status = h.api.last_status().expect("status");
    let pending = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodResizePending")
        .expect("PodResizePending");
    assert_eq!(pending.reason.as_deref(), Some("Infeasible"));
    assert_eq!(
        pending.message.as_deref(),
        Some("Node didn't have enough capacity: cpu, requested: 3000, capacity: 2000")
    );
    let now = h.rt.containers_named("app");
    assert_eq!(now[0].config.resources.cpu_quota_us, Some(100_000));
}

#[tokio::test]
async fn a_resize_with_restart_container_policy_restarts() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    set_resources(
        &mut p,
        json!({"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}}),
    );
    p.spec.as_mut().expect("spec").containers[0].resize_policy = Some(
        serde_json::from_value(
            json!([{"resourceName": "memory", "restartPolicy": "RestartContainer"}]),
        )
        .expect("policy"),
    );
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    // cpu alone changes in place.
    set_resources(
        &mut p,
        json!({"requests": {"cpu": "200m"}, "limits": {"memory": "64Mi"}}),
    );
    w.sync(&h.env, &p).await;
    assert_eq!(h.rt.containers_named("app").len(), 1);
    // memory restarts it, with the new limit.
    p = with_status(p, &h.api);
    set_resources(
        &mut p,
        json!({"requests": {"cpu": "200m"}, "limits": {"memory": "96Mi"}}),
    );
    w.sync(&h.env, &p).await;
    assert!(h
        .api
        .messages()
        .contains(&"Container app resize requires restart".to_string()));
    let attempts = h.rt.containers_named("app");
    assert_eq!(attempts.len(), 2);
    let newest = attempts
        .iter()
        .max_by_key(|c| c.config.attempt)
        .expect("newest");
    assert_eq!(newest.config.resources.memory_limit_bytes, Some(96 << 20));
    assert_eq!(newest.state, runtime::ContainerState::Running);
}

#[tokio::test]
async fn delete_kills_with_grace_then_deletes() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    p.metadata.deletion_timestamp = Some(podapi::api_time(h.clock.now()));
    p.metadata.deletion_grace_period_seconds = Some(17);
    assert_eq!(w.sync(&h.env, &p).await, None);
    let calls = h.rt.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("stop_container ") && c.ends_with(" 17")),
        "{calls:?}"
    );
    assert!(
        calls.iter().any(|c| c.starts_with("remove_pod_sandbox")),
        "{calls:?}"
    );
    assert_eq!(h.api.reasons().last().map(String::as_str), Some("Killing"));
    assert_eq!(
        h.api.messages().last().map(String::as_str),
        Some("Stopping container app")
    );
    let status = h.api.last_status().expect("status");
    assert_eq!(status.phase.as_deref(), Some("Failed"));
    assert_eq!(
        h.api.lock().deleted,
        vec![("default".into(), "web".into(), "uid-1".into())]
    );
    assert_eq!(w.state.lifecycle, Lifecycle::Terminated);
}

#[tokio::test]
async fn an_evicted_pod_is_killed_with_the_eviction_grace_period_and_fails() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    let message = "The node was low on resource: memory. ";
    w.evict(&h.env, &p, message, Duration::from_secs(7)).await;
    let calls = h.rt.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("stop_container ") && c.ends_with(" 7")),
        "{calls:?}"
    );
    let reasons = h.api.reasons();
    assert!(
        reasons.ends_with(&["Evicted".to_string(), "Killing".to_string()]),
        "{reasons:?}"
    );
    let status = h.api.last_status().expect("status");
    assert_eq!(
        (
            status.phase.as_deref(),
            status.reason.as_deref(),
            status.message.as_deref()
        ),
        (Some("Failed"), Some("Evicted"), Some(message))
    );
    let disruption = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "DisruptionTarget")
        .expect("DisruptionTarget");
    assert_eq!(
        (disruption.reason.as_deref(), disruption.message.as_deref()),
        (Some("TerminationByKubelet"), Some(message))
    );
    assert_eq!(w.state.lifecycle, Lifecycle::Finished);
    // A pod already ended is not ended again.
    let stops = h.rt.calls().len();
    w.evict(&h.env, &p, message, Duration::from_secs(7)).await;
    assert_eq!(h.rt.calls().len(), stops);
}

#[tokio::test]
async fn a_deadline_set_on_a_running_pod_kills_it_and_fails_it() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    h.clock.advance(Duration::from_secs(20));
    assert_eq!(
        w.sync(&h.env, &p).await,
        Some(crate::config::DEFAULT_SYNC_FREQUENCY)
    );
    // A deadline 24 s from the start brings the worker back when it ends.
    if let Some(spec) = p.spec.as_mut() {
        spec.active_deadline_seconds = Some(24);
    }
    assert_eq!(w.sync(&h.env, &p).await, Some(Duration::from_secs(4)));
    // `kubectl patch` sets a deadline already passed.
    if let Some(spec) = p.spec.as_mut() {
        spec.active_deadline_seconds = Some(10);
    }
    assert_eq!(w.sync(&h.env, &p).await, None);
    let calls = h.rt.calls();
    assert!(
        calls
            .iter()
            .any(|c| c.starts_with("stop_container ") && c.ends_with(" 30")),
        "{calls:?}"
    );
    let reasons = h.api.reasons();
    assert!(
        reasons.ends_with(&["DeadlineExceeded".to_string(), "Killing".to_string()]),
        "{reasons:?}"
    );
    let status = h.api.last_status().expect("status");
    assert_eq!(
        (
            status.phase.as_deref(),
            status.reason.as_deref(),
            status.message.as_deref()
        ),
        (
            Some("Failed"),
            Some("DeadlineExceeded"),
            Some("Pod was active on the node longer than the specified deadline")
        )
    );
    assert_eq!(state_of(&status).0, "terminated");
    assert_eq!(w.state.lifecycle, Lifecycle::Finished);
}

#[tokio::test]
async fn image_pull_failure_backs_off() {
    let h = harness();
    let p = pod("Always", "missing:1", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    assert_eq!(
        state_of(&h.api.last_status().expect("status")).1.as_deref(),
        Some("ErrImagePull")
    );
    assert_eq!(h.api.reasons(), vec!["Pulling", "Failed", "Failed"]);
    assert_eq!(
        h.api.messages()[1],
        "Failed to pull image \"missing:1\": image \"missing:1\" not found"
    );
    assert_eq!(h.api.messages()[2], "Error: ErrImagePull");
    h.clock.advance(Duration::from_secs(3));
    let p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let status = h.api.last_status().expect("status");
    assert_eq!(state_of(&status).1.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    assert!(h.api.reasons().contains(&"BackOff".to_string()));
    let pulls =
        h.rt.calls()
            .iter()
            .filter(|c| c.starts_with("pull"))
            .count();
    assert_eq!(pulls, 1);
    // Repeated back-off events are aggregated into one with a count.
    w.sync(&h.env, &p).await;
    let backoffs: Vec<i32> = h
        .api
        .lock()
        .events
        .iter()
        .filter(|e| e.1 == "BackOff")
        .map(|e| e.3)
        .collect();
    assert_eq!(backoffs, vec![2]);
    // After the window, it pulls again.
    h.clock.advance(Duration::from_secs(10));
    w.sync(&h.env, &p).await;
    assert_eq!(
        h.rt.calls()
            .iter()
            .filter(|c| c.starts_with("pull"))
            .count(),
        2
    );
}

#[tokio::test]
async fn pulls_try_the_pod_secrets_then_the_node_credentials() {
    let h = harness();
    let node_config = json!({"auths": {"reg.io": {"username": "node-user", "password": "p"}}});
    std::fs::write(
        h._dir.path().join("config.json"),
        serde_json::to_vec(&node_config).expect("json"),
    )
    .expect("write node config");
    let pod_config = json!({"auths": {"reg.io/app": {"username": "pod-user", "password": "p"}}});
    h.api.lock().secrets.insert(
        "regcred".into(),
        serde_json::from_value(json!({
            "metadata": {"name": "regcred"},
            "type": "kubernetes.io/dockerconfigjson",
            "data": {".dockerconfigjson": k8s_openapi::ByteString(
                serde_json::to_vec(&pod_config).expect("json"))}
        }))
        .expect("secret"),
    );
    let mut p = pod("Always", "reg.io/app:1", "IfNotPresent");
    if let Some(spec) = p.spec.as_mut() {
        spec.image_pull_secrets = Some(
            serde_json::from_value(json!([{"name": "gone"}, {"name": "regcred"}])).expect("refs"),
        );
    }
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let pulls: Vec<String> =
        h.rt.calls()
            .into_iter()
            .filter(|c| c.starts_with("pull"))
            .collect();
    assert_eq!(
        pulls,
        [
            "pull reg.io/app:1 as pod-user",
            "pull reg.io/app:1 as node-user"
        ]
    );
    assert!(h.api.messages().contains(
        &"Unable to retrieve some image pull secrets (gone); attempting to pull the image may not succeed."
            .to_string()
    ));
    assert!(h
        .api
        .reasons()
        .contains(&"FailedToRetrieveImagePullSecret".to_string()));
    // The back-off message carries the last pull error, as kubelet v1.33 shows it.
    h.clock.advance(Duration::from_secs(3));
    let p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let status = h.api.last_status().expect("status");
    let waiting = status.container_statuses.as_ref().expect("statuses")[0]
        .state
        .as_ref()
        .and_then(|s| s.waiting.clone())
        .expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("ImagePullBackOff"));
    assert_eq!(
        waiting.message.as_deref(),
        Some("Back-off pulling image \"reg.io/app:1\": image \"reg.io/app:1\" not found")
    );
    // Once the image can be had, it is pulled with the pod's credentials.
    h.rt.with_registry_image("reg.io/app:1");
    h.clock.advance(Duration::from_secs(20));
    let p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
    let pulled = h
        .api
        .messages()
        .into_iter()
        .find(|m| m.starts_with("Successfully pulled image \"reg.io/app:1\" in "))
        .expect("Pulled event");
    assert!(
        pulled.contains(" including waiting). Image size: "),
        "{pulled}"
    );
}

#[tokio::test]
async fn never_pull_policy_and_config_errors() {
    let h = harness();
    let p = pod("Always", "absent:2", "Never");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let status = h.api.last_status().expect("status");
    assert_eq!(state_of(&status).1.as_deref(), Some("ErrImageNeverPull"));
    assert_eq!(h.api.reasons(), vec!["ErrImageNeverPull", "Failed"]);

    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    if let Some(spec) = p.spec.as_mut() {
        spec.containers[0].env = Some(vec![serde_json::from_value(json!(
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}
        ))
        .expect("env")]);
    }
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let status = h.api.last_status().expect("status");
    assert_eq!(
        state_of(&status).1.as_deref(),
        Some("CreateContainerConfigError")
    );
    assert!(h
        .api
        .messages()
        .contains(&"Error: configmap \"cm\" not found".to_string()));
    // Once the config map exists, the container starts.
    h.api.lock().config_maps.insert(
        "cm".into(),
        serde_json::from_value(json!({"metadata": {"name": "cm"}, "data": {"k": "v"}}))
            .expect("cm"),
    );
    let p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(state_of(&h.api.last_status().expect("status")).0, "running");
    let c = &h.rt.containers_named("app")[0];
    assert!(c.config.env.contains(&("X".to_string(), "v".to_string())));
}

#[tokio::test]
async fn restarted_agent_adopts_running_containers() {
    let h = harness();
    let p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    h.rt.exit("app", 1);
    let p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let p = with_status(p, &h.api);
    let before = h.rt.calls().len();
    let writes = h.api.lock().statuses.len();
    // A new worker, as after an agent restart.
    let mut fresh = PodWorker::new(&p, Default::default());
    fresh.sync(&h.env, &p).await;
    assert_eq!(
        h.rt.calls().len(),
        before,
        "no container created or started"
    );
    assert_eq!(h.api.lock().statuses.len(), writes, "status unchanged");
    assert_eq!(
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .expect("cs")[0]
            .restart_count,
        1
    );
}

#[tokio::test]
async fn gone_pod_is_torn_down_and_logs_removed() {
    let h = harness();
    let p = pod("Always", "busybox:1.36", "IfNotPresent");
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let dir = crilog::pod_log_dir(&h.env.log_root, "default", "web", "uid-1");
    std::fs::create_dir_all(dir.join("app")).expect("mkdir");
    w.cleanup_gone(&h.env, &p).await;
    assert!(h.rt.state.lock().expect("lock").sandboxes.is_empty());
    assert!(!dir.exists());
}

// ---- init containers, sidecars, probes, hooks ----

fn lifecycle_pod(policy: &str, spec: serde_json::Value) -> Pod {
    let mut spec = spec;
    spec["restartPolicy"] = json!(policy);
    spec["nodeName"] = json!("node-a");
    spec["terminationGracePeriodSeconds"] = json!(30);
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "default", "uid": "uid-1"},
        "spec": spec
    }))
    .expect("pod")
}

fn c(name: &str) -> serde_json::Value {
    json!({"name": name, "image": "busybox:1.36", "imagePullPolicy": "IfNotPresent"})
}

fn started_names(h: &Harness) -> Vec<String> {
    let st = h.rt.state.lock().expect("lock");
    let mut v: Vec<_> = st
        .containers
        .values()
        .map(|c| (c.created_at, c.config.name.clone(), c.config.attempt))
        .collect();
    v.sort();
    v.into_iter().map(|(_, n, a)| format!("{n}#{a}")).collect()
}

fn init_reason(status: &PodStatus, i: usize) -> Option<String> {
    status.init_container_statuses.as_ref().expect("init")[i]
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.clone())
}

fn cond_status(status: &PodStatus, kind: &str) -> String {
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn init_containers_run_one_at_a_time_then_apps() {
    let h = harness();
    let mut p = lifecycle_pod(
        "Always",
        json!({"initContainers": [c("i1"), c("i2")], "containers": [c("app")]}),
    );
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["i1#0"]);
    let s = h.api.last_status().expect("status");
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(init_reason(&s, 1).as_deref(), Some("PodInitializing"));
    assert_eq!(state_of(&s).1.as_deref(), Some("PodInitializing"));
    assert_eq!(cond_status(&s, "Initialized"), "False");
    // Still running: nothing else starts.
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["i1#0"]);
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("i1", 0);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["i1#0", "i2#0"]);
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("i2", 0);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["i1#0", "i2#0", "app#0"]);
    let s = h.api.last_status().expect("status");
    assert_eq!(s.phase.as_deref(), Some("Running"));
    assert_eq!(cond_status(&s, "Initialized"), "True");
    let inits = s.init_container_statuses.as_ref().expect("init");
    assert!(inits.iter().all(|i| i.ready), "completed inits are ready");
    let fields = h.api.lock().field_paths.clone();
    assert!(
        fields.iter().any(|f| f == "spec.initContainers{i1}"),
        "{fields:?}"
    );
}

#[tokio::test]
async fn failing_init_backs_off_or_fails_the_pod() {
    let h = harness();
    let mut p = lifecycle_pod(
        "Always",
        json!({"initContainers": [c("i1")], "containers": [c("app")]}),
    );
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("i1", 1);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["i1#0", "i1#1"]);
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("i1", 1);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let s = h.api.last_status().expect("status");
    assert_eq!(init_reason(&s, 0).as_deref(), Some("CrashLoopBackOff"));
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert!(h.api.reasons().contains(&"BackOff".to_string()));
    assert!(h.api.messages().contains(
        &"Back-off restarting failed container i1 in pod web_default(uid-1)".to_string()
    ));

    let h = harness();
    let mut p = lifecycle_pod(
        "Never",
        json!({"initContainers": [c("i1"), c("i2")], "containers": [c("app")]}),
    );
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    h.rt.exit("i1", 2);
    p = with_status(p, &h.api);
    assert_eq!(w.sync(&h.env, &p).await, None);
    let s = h.api.last_status().expect("status");
    assert_eq!(s.phase.as_deref(), Some("Failed"));
    assert_eq!(w.state.lifecycle, Lifecycle::Finished);
    assert!(h.rt.containers_named("app").is_empty());
}

#[tokio::test]
async fn sidecars_start_first_and_stop_last_in_reverse() {
    let h = harness();
    let mut sc1 = c("sc1");
    sc1["restartPolicy"] = json!("Always");
    let mut sc2 = c("sc2");
    sc2["restartPolicy"] = json!("Always");
    let mut p = lifecycle_pod(
        "Never",
        json!({"initContainers": [sc1, c("i1"), sc2], "containers": [c("app")]}),
    );
    let mut w = PodWorker::new(&p, Default::default());
    for _ in 0..3 {
        w.sync(&h.env, &p).await;
        p = with_status(p, &h.api);
        h.clock.advance(Duration::from_secs(1));
    }
    assert_eq!(started_names(&h), vec!["sc1#0", "i1#0"]);
    h.rt.exit("i1", 0);
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    h.clock.advance(Duration::from_secs(1));
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["sc1#0", "i1#0", "sc2#0", "app#0"]);
    // A sidecar that exits is restarted even under Never.
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("sc1", 1);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(h.rt.containers_named("sc1").len(), 2);
    let s = h.api.last_status().expect("status");
    assert_eq!(s.phase.as_deref(), Some("Running"));
    // The app finishes: sidecars are stopped, sc2 before sc1, and the pod succeeds.
    let sc2_id = h.rt.containers_named("sc2")[0].id.clone();
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("app", 0);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let stops: Vec<String> =
        h.rt.calls()
            .iter()
            .filter(|c| c.starts_with("stop_container"))
            .cloned()
            .collect();
    assert!(stops[0].contains(&sc2_id), "{stops:?}");
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let s = h.api.last_status().expect("status");
    assert_eq!(s.phase.as_deref(), Some("Succeeded"));
}

#[tokio::test]
async fn liveness_failure_kills_with_probe_grace_and_restarts() {
    let h = harness();
    let mut app = c("app");
    app["livenessProbe"] = json!({"exec": {"command": ["check"]}, "initialDelaySeconds": 1000,
        "terminationGracePeriodSeconds": 7});
    let mut p = lifecycle_pod("Always", json!({"containers": [app]}));
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let id = h.rt.containers_named("app")[0].id.clone();
    w.prober.set(&id, ProbeKind::Liveness, false);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert!(h.rt.calls().contains(&format!("stop_container {id} 7")));
    assert!(h
        .api
        .messages()
        .contains(&"Container app failed liveness probe, will be restarted".to_string()));
    h.clock.advance(Duration::from_secs(1));
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["app#0", "app#1"]);
}

#[tokio::test]
async fn readiness_and_startup_gate_ready() {
    let h = harness();
    let mut app = c("app");
    app["readinessProbe"] = json!({"exec": {"command": ["r"]}, "initialDelaySeconds": 1000});
    app["startupProbe"] = json!({"exec": {"command": ["s"]}, "initialDelaySeconds": 1000});
    let mut p = lifecycle_pod("Always", json!({"containers": [app]}));
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let s = h.api.last_status().expect("status");
    let cs = &s.container_statuses.as_ref().expect("cs")[0];
    assert_eq!((cs.ready, cs.started), (false, Some(false)));
    assert_eq!(cond_status(&s, "Ready"), "False");
    let id = h.rt.containers_named("app")[0].id.clone();
    w.prober.set(&id, ProbeKind::Startup, true);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let s = h.api.last_status().expect("status");
    let cs = &s.container_statuses.as_ref().expect("cs")[0];
    assert_eq!((cs.ready, cs.started), (false, Some(true)));
    w.prober.set(&id, ProbeKind::Readiness, true);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let s = h.api.last_status().expect("status");
    assert_eq!(cond_status(&s, "Ready"), "True");
    // Deleting: not ready first, then killed.
    p = with_status(p, &h.api);
    p.metadata.deletion_timestamp = Some(podapi::api_time(h.clock.now()));
    w.sync(&h.env, &p).await;
    let statuses = h.api.lock().statuses.clone();
    let before_last = &statuses[statuses.len() - 2];
    assert_eq!(cond_status(before_last, "Ready"), "False");
    assert_eq!(before_last.phase.as_deref(), Some("Running"));
}

#[tokio::test]
async fn post_start_failure_kills_and_pre_stop_runs_before_stop() {
    let h = harness();
    let mut app = c("app");
    app["lifecycle"] = json!({"postStart": {"exec": {"command": ["sh", "-c", "exit 3"]}},
                              "preStop": {"exec": {"command": ["bye"]}}});
    h.rt.state.lock().expect("lock").exec_results.insert(
        "app".into(),
        runtime::ExecSyncResult {
            stdout: b"nope".to_vec(),
            stderr: Vec::new(),
            exit_code: 3,
        },
    );
    let p = lifecycle_pod("Always", json!({"containers": [app]}));
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    assert!(h.api.reasons().contains(&"FailedPostStartHook".to_string()));
    let msg = h
        .api
        .lock()
        .events
        .iter()
        .find(|e| e.1 == "FailedPostStartHook")
        .map(|e| e.2.clone())
        .expect("event");
    assert!(msg.starts_with("Exec lifecycle hook ([\"sh\", \"-c\", \"exit 3\"]) for Container \"app\" in Pod \"web_default(uid-1)\" failed"), "{msg}");
    assert!(msg.ends_with("message: \"nope\""), "{msg}");
    let s = h.api.last_status().expect("status");
    assert_eq!(state_of(&s).1.as_deref(), Some("PostStartHookError"));

    // preStop: exec'd before the stop, on deletion.
    h.rt.state.lock().expect("lock").exec_results.clear();
    h.clock.advance(Duration::from_secs(1));
    let mut p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    p = with_status(p, &h.api);
    p.metadata.deletion_timestamp = Some(podapi::api_time(h.clock.now()));
    w.sync(&h.env, &p).await;
    let calls = h.rt.calls();
    let bye = calls
        .iter()
        .position(|c| c == "exec app bye")
        .expect("preStop ran");
    let last_stop = calls
        .iter()
        .rposition(|c| c.starts_with("stop_container"))
        .expect("stop");
    assert!(bye < last_stop, "{calls:?}");
}

#[tokio::test]
async fn containers_get_the_kubernetes_service_variables() {
    let h = harness();
    let svc = |ns: &str, name: &str, ip: &str, port: i32| {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}}))
        .expect("service")
    };
    h.api.lock().services.insert(
        "default".into(),
        vec![
            svc("default", "kubernetes", "10.96.0.1", 443),
            svc("default", "web-svc", "10.96.0.7", 80),
        ],
    );
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    if let Some(spec) = p.spec.as_mut() {
        spec.enable_service_links = Some(false);
    }
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let env = h.rt.containers_named("app")[0].config.env.clone();
    let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    assert_eq!(get("KUBERNETES_SERVICE_HOST").as_deref(), Some("10.96.0.1"));
    assert_eq!(get("KUBERNETES_SERVICE_PORT").as_deref(), Some("443"));
    assert_eq!(
        get("KUBERNETES_PORT_443_TCP").as_deref(),
        Some("tcp://10.96.0.1:443")
    );
    assert_eq!(get("WEB_SVC_SERVICE_HOST"), None, "service links are off");
}

#[tokio::test]
async fn projected_tokens_are_bound_kept_and_refreshed_at_eighty_percent() {
    let h = harness();
    h.api.lock().token_clock = Some(h.clock.clone());
    let p: Pod = serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "team", "uid": "uid-1"},
        "spec": {"serviceAccountName": "builder", "containers": [{"name": "app", "image": "i"}],
                 "volumes": [{"name": "kube-api-access-abcde", "projected": {"sources": [
                     {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                     {"serviceAccountToken": {"path": "vault", "audience": "vault", "expirationSeconds": 600}}
                 ]}}]}
    }))
    .expect("pod");
    let vm = &h.env.volumes;
    let fetch = || vm.fetch_objects(h.api.as_ref(), &p, h.clock.now());
    let first = fetch().await.expect("tokens");
    assert_eq!(first.tokens.len(), 2);
    {
        let st = h.api.lock();
        assert_eq!(st.token_requests.len(), 2);
        let (ns, sa, req) = &st.token_requests[0];
        assert_eq!((ns.as_str(), sa.as_str()), ("team", "builder"));
        let bound = req.spec.bound_object_ref.as_ref().expect("bound");
        assert_eq!(bound.uid.as_deref(), Some("uid-1"));
        assert_eq!(req.spec.expiration_seconds, Some(3607));
        assert!(req.spec.audiences.is_empty());
        assert_eq!(st.token_requests[1].2.spec.audiences, vec!["vault"]);
    }
    // Within 80% of their lives the tokens are kept.
    h.clock.advance(Duration::from_secs(479));
    assert_eq!(fetch().await.expect("tokens").tokens, first.tokens);
    assert_eq!(h.api.lock().token_requests.len(), 2);
    // The 600 s token is refreshed at 480 s; the 3607 s one is kept.
    h.clock.advance(Duration::from_secs(1));
    let second = fetch().await.expect("tokens");
    assert_eq!(h.api.lock().token_requests.len(), 3);
    assert_ne!(
        second.tokens[&("vault".to_string(), 600)],
        first.tokens[&("vault".to_string(), 600)]
    );
    assert_eq!(
        second.tokens[&(String::new(), 3607)],
        first.tokens[&(String::new(), 3607)]
    );
    vm.tokens().forget_pod("uid-1");
    assert!(vm.tokens().is_empty());
}

// ---- ephemeral containers ----

fn ephemeral_status(status: &PodStatus, name: &str) -> k8s_openapi::api::core::v1::ContainerStatus {
    status
        .ephemeral_container_statuses
        .iter()
        .flatten()
        .find(|s| s.name == name)
        .cloned()
        .expect("ephemeral status")
}

#[tokio::test]
async fn ephemeral_containers_start_once_in_the_target_pid_namespace() {
    let h = harness();
    let mut p = lifecycle_pod("Always", json!({"containers": [c("app")]}));
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["app#0"]);
    let app_id = h.rt.containers_named("app")[0].id.clone();

    // kubectl debug adds one through the subresource; the next sync starts it.
    p = with_status(p, &h.api);
    let mut spec = serde_json::to_value(&p.spec).expect("spec");
    spec["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox:1.36",
        "imagePullPolicy": "IfNotPresent", "targetContainerName": "app"}]);
    p.spec = serde_json::from_value(spec).expect("spec");
    w.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["app#0", "debugger#0"]);
    let debugger = &h.rt.containers_named("debugger")[0];
    assert_eq!(debugger.config.pid_target.as_deref(), Some(app_id.as_str()));
    let s = h.api.last_status().expect("status");
    let e = ephemeral_status(&s, "debugger");
    assert!(e.state.as_ref().and_then(|s| s.running.as_ref()).is_some());
    assert_eq!(e.image, "busybox:1.36");
    assert!(!e.ready);
    assert_eq!(
        e.container_id,
        Some(format!("peapod://{}", debugger.id)),
        "{e:?}"
    );
    let fields = h.api.lock().field_paths.clone();
    assert!(
        fields
            .iter()
            .any(|f| f == "spec.ephemeralContainers{debugger}"),
        "{fields:?}"
    );
    // Ephemeral containers count neither for readiness nor for the phase.
    assert_eq!(cond_status(&s, "Ready"), "True");

    // It exits: never restarted, whatever the pod's restart policy.
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("debugger", 3);
    for _ in 0..3 {
        h.clock.advance(Duration::from_secs(30));
        p = with_status(p, &h.api);
        w.sync(&h.env, &p).await;
    }
    assert_eq!(started_names(&h), vec!["app#0", "debugger#0"]);
    let s = h.api.last_status().expect("status");
    let e = ephemeral_status(&s, "debugger");
    let term = e.state.as_ref().and_then(|s| s.terminated.as_ref());
    assert_eq!(term.map(|t| t.exit_code), Some(3));
    assert_eq!(s.phase.as_deref(), Some("Running"));

    // A restarted agent (a new worker) does not start it again either.
    let mut w2 = PodWorker::new(&p, Default::default());
    w2.sync(&h.env, &p).await;
    assert_eq!(started_names(&h), vec!["app#0", "debugger#0"]);
}

#[tokio::test]
async fn an_ephemeral_container_waits_for_its_target_to_run() {
    let h = harness();
    let mut p = lifecycle_pod("Never", json!({"containers": [c("app"), c("other")]}));
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    h.clock.advance(Duration::from_secs(1));
    h.rt.exit("app", 0);
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let mut spec = serde_json::to_value(&p.spec).expect("spec");
    spec["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox:1.36",
        "imagePullPolicy": "IfNotPresent", "targetContainerName": "app"}]);
    p.spec = serde_json::from_value(spec).expect("spec");
    p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    assert!(h.rt.containers_named("debugger").is_empty());
    let s = h.api.last_status().expect("status");
    let waiting = ephemeral_status(&s, "debugger")
        .state
        .and_then(|s| s.waiting)
        .expect("waiting");
    assert_eq!(waiting.reason.as_deref(), Some("CreateContainerError"));
    assert_eq!(
        waiting.message.as_deref(),
        Some("container \"app\" is not running")
    );
}

#[tokio::test]
async fn a_host_users_false_pod_gets_its_range_until_it_is_gone() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    p.spec.as_mut().expect("spec").host_users = Some(false);
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    let sandboxes: Vec<_> =
        h.rt.state
            .lock()
            .expect("lock")
            .sandboxes
            .values()
            .cloned()
            .collect();
    let ids = sandboxes[0]
        .config
        .user_namespace
        .expect("a user namespace");
    assert_eq!((ids.container_id, ids.length), (0, 65536));
    assert_eq!(ids.host_id % 65536, 0);
    assert!(ids.host_id >= 65536);
    assert_eq!(h.env.userns.get("uid-1"), Some(ids));

    // Another pod gets another range; a pod with the node's users gets none.
    let mut other = pod("Always", "busybox:1.36", "IfNotPresent");
    other.metadata.uid = Some("uid-2".into());
    assert_eq!(h.env.user_namespace(&other).expect("none"), None);
    other.spec.as_mut().expect("spec").host_users = Some(false);
    let second = h
        .env
        .user_namespace(&other)
        .expect("allocated")
        .expect("some");
    assert_ne!(second.host_id, ids.host_id);

    p = with_status(p, &h.api);
    p.metadata.deletion_timestamp = Some(podapi::api_time(h.clock.now()));
    p.metadata.deletion_grace_period_seconds = Some(0);
    assert_eq!(w.sync(&h.env, &p).await, None);
    assert_eq!(h.env.userns.get("uid-1"), None);
}

#[test]
fn sandbox_cgroup_sits_in_the_pods_qos_tier() {
    let h = harness();
    let parent = |resources: serde_json::Value| {
        let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
        if let Some(c) = p.spec.as_mut().map(|s| &mut s.containers[0]) {
            c.resources = Some(serde_json::from_value(resources).expect("resources"));
        }
        super::env::sandbox_config(&h.env, &p, 0).cgroup_parent
    };
    assert_eq!(
        parent(json!({})),
        Some(PathBuf::from("peapod/kubepods/besteffort/poduid-1"))
    );
    assert_eq!(
        parent(json!({"requests": {"cpu": "100m"}})),
        Some(PathBuf::from("peapod/kubepods/burstable/poduid-1"))
    );
    assert_eq!(
        parent(json!({"limits": {"cpu": "1", "memory": "64Mi"}})),
        Some(PathBuf::from("peapod/kubepods/poduid-1"))
    );
}

#[tokio::test]
async fn the_sandbox_runs_with_the_handler_of_the_pods_runtime_class() {
    let h = harness();
    let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
    p.spec.as_mut().expect("spec").runtime_class_name = Some("fast".into());
    let mut w = PodWorker::new(&p, Default::default());
    w.sync(&h.env, &p).await;
    // The class is not there (yet): no sandbox, and the kubelet's event.
    assert!(h.rt.state.lock().expect("lock").sandboxes.is_empty());
    assert_eq!(h.api.reasons(), vec!["FailedCreatePodSandBox"]);
    assert_eq!(
        h.api.messages(),
        vec!["Failed to create pod sandbox: runtimeclass.node.k8s.io \"fast\" not found"]
    );

    h.api.lock().runtime_classes.insert(
        "fast".into(),
        serde_json::from_value(json!({"metadata": {"name": "fast"}, "handler": "kata"}))
            .expect("class"),
    );
    h.clock.advance(std::time::Duration::from_secs(11));
    let p = with_status(p, &h.api);
    w.sync(&h.env, &p).await;
    let handlers: Vec<String> =
        h.rt.state
            .lock()
            .expect("lock")
            .sandboxes
            .values()
            .map(|s| s.config.runtime_handler.clone())
            .collect();
    assert_eq!(handlers, vec!["kata"]);
}

#[tokio::test]
async fn a_label_change_rewrites_the_downward_api_files_at_once() {
    let h = harness();
    let with_tier = |tier: &str| {
        let mut p = pod("Always", "busybox:1.36", "IfNotPresent");
        p.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        let volume = json!({"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}}]}});
        p.spec.as_mut().expect("spec").volumes =
            Some(vec![serde_json::from_value(volume).expect("volume")]);
        p
    };
    let one = with_tier("one");
    let mut w = PodWorker::new(&one, Default::default());
    w.sync(&h.env, &one).await;
    let file = w.state.volumes.paths.as_ref().expect("volumes set up")["info"].join("labels");
    let read = || std::fs::read_to_string(&file).expect("labels file");
    assert_eq!(read(), "tier=\"one\"");
    // The fake clock stands still: only the label change can cause the rewrite.
    w.sync(&h.env, &with_status(with_tier("two"), &h.api)).await;
    assert_eq!(read(), "tier=\"two\"");
    super::volumes::teardown_volumes(&h.env, &mut w.state.volumes, &one);
}
