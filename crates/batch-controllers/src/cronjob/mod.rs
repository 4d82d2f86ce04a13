//! The CronJob controller of kube-controller-manager: starts a CronJob's Jobs on its
//! schedule, in its time zone.
//!
//! A reconcile reads the CronJob's jobs fresh from the API, applies [`plan`] (track the
//! active jobs, trim the history, start the due run), writes the status, and asks to be
//! woken at the next scheduled time; the jobs' watch events wake it when a run finishes.
//! Nothing polls.

mod plan;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use jiff::tz::TimeZone;
use k8s_openapi::api::batch::v1::{CronJob, CronJobStatus, Job};
use kube::api::{Api, DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::ownership::is_controlled_by;
use controller_base::Shared;

const COMPONENT: &str = "cronjob-controller";
const RETRY_RACE: Duration = Duration::from_millis(200);

struct Ctx {
    client: Client,
    recorder: Recorder,
    /// The controller's own zone, for CronJobs without `timeZone` (as upstream uses the
    /// controller manager's local time).
    local: TimeZone,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<CronJob>::all(client.clone()),
        watcher::Config::default(),
    )
    .owns(Api::<Job>::all(client.clone()), watcher::Config::default());
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        local: TimeZone::system(),
    });
    controller_base::runner::drive("cronjob", controller, ctx, reconcile)
        .map(|_| ())
        .boxed()
}

async fn reconcile(cj: Arc<CronJob>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = cj.namespace().unwrap_or_default();
    let uid = cj.uid().unwrap_or_default();
    let jobs_api = Api::<Job>::namespaced(ctx.client.clone(), &ns);
    let jobs: Vec<Job> = jobs_api
        .list(&ListParams::default())
        .await
        .map_err(Error::api(format!(
            "listing the jobs of cronjob {ns}/{}",
            cj.name_any()
        )))?
        .items
        .into_iter()
        .filter(|j| is_controlled_by(&j.metadata, &uid))
        .collect();
    let now = jiff::Timestamp::now();
    let mut p = plan::plan(&cj, &jobs, now, &ctx.local);
    for n in &p.notes {
        ctx.recorder
            .record(&*cj, n.type_, n.reason, &n.message)
            .await?;
    }
    for name in &p.delete {
        delete_job(&jobs_api, &ctx.recorder, &cj, name).await?;
    }
    if let Some((job, scheduled)) = p.create.take() {
        let created = create_job(&jobs_api, &ctx.recorder, &cj, &job).await?;
        p.status
            .active
            .get_or_insert_with(Vec::new)
            .push(plan::job_ref(&created));
        p.status.last_schedule_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            scheduled,
        ));
    }
    let current = cj.status.clone().unwrap_or_default();
    if json_of(&current) != json_of(&p.status) {
        let next = CronJob {
            status: Some(p.status),
            ..(*cj).clone()
        };
        let api = Api::<CronJob>::namespaced(ctx.client.clone(), &ns);
        match api
            .replace_status(&cj.name_any(), &PostParams::default(), &next)
            .await
        {
            Ok(_) => {}
            Err(e) if is_conflict(&e) || is_not_found(&e) => {
                return Ok(Action::requeue(RETRY_RACE))
            }
            Err(e) => {
                return Err(Error::api(format!(
                    "updating the status of cronjob {ns}/{}",
                    cj.name_any()
                ))(e))
            }
        }
    }
    Ok(p.requeue.map_or_else(Action::await_change, Action::requeue))
}

fn json_of(s: &CronJobStatus) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
}

/// Creates the run's job; one of ours that already exists under its name counts as
/// created (a previous attempt got that far).
async fn create_job(api: &Api<Job>, rec: &Recorder, cj: &CronJob, job: &Job) -> Result<Job, Error> {
    let name = job.name_any();
    match api.create(&PostParams::default(), job).await {
        Ok(created) => {
            rec.record(
                cj,
                EventType::Normal,
                "SuccessfulCreate",
                &format!("Created job {name}"),
            )
            .await?;
            Ok(created)
        }
        Err(e) if is_conflict(&e) => {
            let existing = api
                .get(&name)
                .await
                .map_err(Error::api(format!("reading job {name}")))?;
            let ours = is_controlled_by(&existing.metadata, &cj.uid().unwrap_or_default());
            if ours {
                Ok(existing)
            } else {
                Err(Error::api(format!("creating job {name}"))(e))
            }
        }
        Err(e) => {
            rec.record(
                cj,
                EventType::Warning,
                "FailedCreate",
                &format!("Error creating job: {e}"),
            )
            .await?;
            Err(Error::api(format!("creating job {name}"))(e))
        }
    }
}

/// Deletes a job and, through the garbage collector, its pods.
async fn delete_job(api: &Api<Job>, rec: &Recorder, cj: &CronJob, name: &str) -> Result<(), Error> {
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => {
            rec.record(
                cj,
                EventType::Normal,
                "SuccessfulDelete",
                &format!("Deleted job {name}"),
            )
            .await
        }
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => {
            rec.record(
                cj,
                EventType::Warning,
                "FailedDelete",
                &format!("Deleted job: {e}"),
            )
            .await?;
            Err(Error::api(format!("deleting job {name}"))(e))
        }
    }
}
