//! The Job controller of kube-controller-manager: runs a Job's pods to completion.
//!
//! A reconcile of a Job reads its pods fresh from the API (so it never acts twice on a
//! cache that has not seen its own writes), then applies the three steps of [`plan`]:
//! record newly finished pods in `uncountedTerminatedPods`, drop their tracking finalizer,
//! and count them; then judge the job and create or delete pods. It is woken by the Job's
//! and its pods' watch events, and requeued only for time-driven work (the failure
//! back-off, `activeDeadlineSeconds`, `ttlSecondsAfterFinished`).
//!
//! A second loop looks after pods whose Job is gone: their tracking finalizer goes, so the
//! garbage collector's deletion (or a user's) can finish.

mod backoff;
mod indexes;
mod per_index;
mod plan;
mod pods;
mod success;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use serde_json::json;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::Shared;

use controller_base::ownership::is_controlled_by;

use pods::{has_finalizer, TRACKING_FINALIZER};

const COMPONENT: &str = "job-controller";
/// After losing a write race: look again soon at the state that won.
const RETRY_RACE: Duration = Duration::from_millis(200);

struct Ctx {
    client: Client,
    recorder: Recorder,
    jobs: Store<Job>,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let jobs = controller_base::cache::controller(
        Api::<Job>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns_shared_stream(shared.pods.touched());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        jobs: jobs.store(),
        client: client.clone(),
    });
    let orphans =
        kube::runtime::Controller::for_shared_stream(shared.pods.applied(), shared.pods.store());
    futures::future::join(
        controller_base::runner::drive("job", jobs, ctx.clone(), reconcile),
        controller_base::runner::drive("job-orphan-pods", orphans, ctx, release_orphan),
    )
    .map(|_| ())
    .boxed()
}

async fn reconcile(job: Arc<Job>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let pod_api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
    let job_api = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let pods = owned_pods(&pod_api, &job, &uid).await?;
    if job.metadata.deletion_timestamp.is_some() {
        // Being deleted (in the foreground): let its pods go so the deletion can finish.
        for p in pods.iter().filter(|p| has_finalizer(p)) {
            release(&pod_api, p).await?;
        }
        return Ok(Action::await_change());
    }
    let now = jiff::Timestamp::now();
    let mut job = (*job).clone();

    let tracking = plan::track(&job, &pods, now);
    if tracking.changed {
        match write_status(&ctx.client, &job, tracking.status).await? {
            Some(stored) => job = stored,
            None => return Ok(Action::requeue(RETRY_RACE)),
        }
    }
    for p in pods
        .iter()
        .filter(|p| tracking.release.contains(&p.name_any()))
    {
        release(&pod_api, p).await?;
    }
    let mut settled = job.status.clone().unwrap_or_default();
    plan::settle(&job, &mut settled);
    job.status = Some(settled);

    let decision = plan::decide(&job, &pods, now);
    for p in pods
        .iter()
        .filter(|p| decision.delete.contains(&p.name_any()))
    {
        if has_finalizer(p) {
            release(&pod_api, p).await?;
        }
        delete_pod(&pod_api, &ctx.recorder, &job, p).await?;
    }
    for index in &decision.create {
        let counts = index.and_then(|i| decision.index_failures.get(&i).copied());
        create_pod(&pod_api, &ctx.recorder, &job, *index, counts).await?;
    }
    for n in &decision.notes {
        ctx.recorder
            .record(&job, n.type_, n.reason, &n.message)
            .await?;
    }
    let stored = job.status.clone().unwrap_or_default();
    if json_of(&stored) != json_of(&decision.status) {
        let original = Job {
            status: job.status.clone(),
            ..job.clone()
        };
        if write_status(&ctx.client, &original, decision.status)
            .await?
            .is_none()
        {
            return Ok(Action::requeue(RETRY_RACE));
        }
    }
    if decision.delete_job {
        delete_finished_job(&job_api, &name, &uid).await?;
        return Ok(Action::await_change());
    }
    Ok(decision.requeue.map_or_else(Action::await_change, |d| {
        Action::requeue(d.max(Duration::from_millis(100)))
    }))
}

fn json_of(s: &JobStatus) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

/// The job's pods: those its selector selects that it controls.
async fn owned_pods(api: &Api<Pod>, job: &Job, uid: &str) -> Result<Vec<Pod>, Error> {
    let selector = job
        .spec
        .as_ref()
        .and_then(|s| s.selector.clone())
        .and_then(|s| kube::core::Selector::try_from(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(Error::api(format!(
            "listing the pods of job {}",
            job.name_any()
        )))?;
    Ok(list
        .items
        .into_iter()
        .filter(|p| is_controlled_by(&p.metadata, uid))
        .collect())
}

/// Stores `status` on `job` (at its resourceVersion); `None` when someone else wrote first.
async fn write_status(
    client: &kube::Client,
    job: &Job,
    status: JobStatus,
) -> Result<Option<Job>, Error> {
    let next = Job {
        status: Some(status),
        ..job.clone()
    };
    controller_base::status::replace(client, &next).await
}

/// Removes the tracking finalizer, only if it is still where the pod had it.
async fn release(api: &Api<Pod>, pod: &Pod) -> Result<(), Error> {
    let Some(i) = pod
        .finalizers()
        .iter()
        .position(|f| f == TRACKING_FINALIZER)
    else {
        return Ok(());
    };
    let path = format!("/metadata/finalizers/{i}");
    let patch: json_patch::Patch = match serde_json::from_value(json!([
        {"op": "test", "path": path, "value": TRACKING_FINALIZER},
        {"op": "remove", "path": path},
    ])) {
        Ok(p) => p,
        Err(_) => return Ok(()),
    };
    match api
        .patch(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Json::<()>(patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::api(format!(
            "removing the job tracking finalizer of pod {}",
            pod.name_any()
        ))(e)),
    }
}

async fn create_pod(
    api: &Api<Pod>,
    rec: &Recorder,
    job: &Job,
    index: Option<i32>,
    counts: Option<(i32, i32)>,
) -> Result<(), Error> {
    match api
        .create(&PostParams::default(), &pods::new_pod(job, index, counts))
        .await
    {
        Ok(pod) => {
            rec.record(
                job,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created pod: {}", pod.name_any()),
            )
            .await
        }
        Err(e) => {
            rec.record(
                job,
                EventType::Warning,
                "FailedCreate",
                &format!("Error creating: {e}"),
            )
            .await?;
            Err(Error::api(format!(
                "creating a pod for job {}",
                job.name_any()
            ))(e))
        }
    }
}

async fn delete_pod(api: &Api<Pod>, rec: &Recorder, job: &Job, pod: &Pod) -> Result<(), Error> {
    match api.delete(&pod.name_any(), &DeleteParams::default()).await {
        Ok(_) => {
            rec.record(
                job,
                EventType::Normal,
                "SuccessfulDelete",
                &format!("Deleted pod: {}", pod.name_any()),
            )
            .await
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::api(format!("deleting pod {}", pod.name_any()))(e)),
    }
}

/// `ttlSecondsAfterFinished` ran out: the job goes after its pods, as upstream's TTL
/// controller deletes (foreground propagation: the garbage collector removes the pods, then
/// the job). The uid precondition spares a new job of the same name.
async fn delete_finished_job(api: &Api<Job>, name: &str, uid: &str) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::api(format!("deleting finished job {name}"))(e)),
    }
}

/// A pod holding the tracking finalizer whose controlling Job no longer exists (or is a
/// different Job of the same name) loses the finalizer.
async fn release_orphan(pod: Arc<Pod>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    if !has_finalizer(&pod) {
        return Ok(Action::await_change());
    }
    let ns = pod.namespace().unwrap_or_default();
    let owner = pod
        .owner_references()
        .iter()
        .find(|r| r.controller == Some(true) && r.kind == "Job")
        .cloned();
    if let Some(owner) = owner.as_ref() {
        let cached = ctx
            .jobs
            .get(&ObjectRef::<Job>::new(&owner.name).within(&ns));
        if cached.is_some_and(|j| j.uid().as_deref() == Some(owner.uid.as_str())) {
            return Ok(Action::await_change());
        }
        // The cache may lag behind a new job: ask the API.
        match Api::<Job>::namespaced(ctx.client.clone(), &ns)
            .get(&owner.name)
            .await
        {
            Ok(j) if j.uid().as_deref() == Some(owner.uid.as_str()) => {
                return Ok(Action::await_change())
            }
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(Error::api(format!("reading job {ns}/{}", owner.name))(e)),
        }
    }
    release(&Api::namespaced(ctx.client.clone(), &ns), &pod).await?;
    Ok(Action::await_change())
}
