//! The Deployment controller of kube-controller-manager: owns one ReplicaSet per pod
//! template (named and labelled with its `pod-template-hash`) and moves replicas from the
//! old ones to the new one — `RollingUpdate` within `maxSurge` / `maxUnavailable`, gated on
//! the ReplicaSets' available counts, or `Recreate` (old pods gone before new ones start).
//! It numbers revisions (`deployment.kubernetes.io/revision`), keeps
//! `revisionHistoryLimit` old ReplicaSets, scales a rollout in flight proportionally,
//! honours `paused`, and reports `Progressing` (with `ProgressDeadlineExceeded` when no
//! progress was made for `progressDeadlineSeconds`) and `Available`, with
//! `ScalingReplicaSet` events. The arithmetic is in [`crate::rollout`].

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};
use controller_base::Shared;

use crate::rollout::{
    self, calculate_status, complete, condition, deployment_template, equal_ignore_hash, max_surge,
    new_condition, new_rs_replicas, progress_deadline, progressing, remove_condition, replicas,
    rs_replicas, rs_revision, scale_down_old, scale_targets, set_condition, set_new_rs_annotations,
    set_replicas_annotations, stuck_requeue, template_hash, timed_out, ScalePlan, HASH_LABEL,
    REVISION,
};
use controller_base::ownership::{
    claim, controller_of, controller_ref, is_controlled_by, key_of, label_selector, owners_to_sync,
};

const COMPONENT: &str = "deployment-controller";
/// After losing a write race: the watch brings the state that won.
const RETRY_RACE: Duration = Duration::from_millis(200);

struct Ctx {
    client: Client,
    sets: Store<ReplicaSet>,
    pods: Store<Pod>,
    recorder: Recorder,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let controller = controller_base::cache::controller(
        Api::<Deployment>::all(client.clone()),
        watcher::Config::default(),
    );
    let deployments = controller.store();
    let (sets, set_writer) = reflector::store();
    let set_events = reflector::reflector(
        set_writer,
        controller_base::cache::watch(
            Api::<ReplicaSet>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let pods = shared.pods.store();
    let owners = deployments.clone();
    let pod_sets = sets.clone();
    let controller = controller
        .watches_stream(set_events, move |rs: ReplicaSet| {
            owners_to_sync(&rs, &owners, |d: &Deployment| {
                d.spec.as_ref().map(|s| &s.selector)
            })
        })
        .watches_shared_stream(shared.pods.touched(), move |pod: Arc<Pod>| {
            recreate_owner(&pod, &pod_sets, &deployments)
        });
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        sets,
        pods,
    });
    controller_base::runner::drive("deployment", controller, ctx, reconcile)
        .map(|_| ())
        .boxed()
}

/// A `Recreate` Deployment waits for its old pods to be gone, so their changes concern it
/// (pod → its ReplicaSet → that ReplicaSet's Deployment).
fn recreate_owner(
    pod: &Pod,
    sets: &Store<ReplicaSet>,
    deployments: &Store<Deployment>,
) -> Option<ObjectRef<Deployment>> {
    let ns = pod.namespace().unwrap_or_default();
    let rs_ref = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")?;
    let rs = sets.get(&ObjectRef::new(&rs_ref.name).within(&ns))?;
    let d_ref = controller_of(&rs.metadata).filter(|r| r.kind == "Deployment")?;
    let key = ObjectRef::new(&d_ref.name).within(&ns);
    let d = deployments.get(&key)?;
    (!rollout::is_rolling(&d)).then_some(key)
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let mut sync = Sync {
        ctx: &ctx,
        d: (*d).clone(),
        now: Timestamp::now(),
    };
    match sync.run().await {
        // Another writer won, or something vanished: the watch brings the new state.
        Err(Error::Api { source, .. }) if is_conflict(&source) || is_not_found(&source) => {
            Ok(Action::requeue(RETRY_RACE))
        }
        other => other,
    }
}

/// One sync of one Deployment: the object as it is being updated, and the time.
struct Sync<'a> {
    ctx: &'a Ctx,
    d: Deployment,
    now: Timestamp,
}

impl Sync<'_> {
    fn ns(&self) -> String {
        self.d.namespace().unwrap_or_default()
    }

    async fn run(&mut self) -> Result<Action, Error> {
        let Some(spec) = self.d.spec.clone() else {
            return Ok(Action::await_change());
        };
        let selects_nothing = spec
            .selector
            .match_labels
            .as_ref()
            .is_none_or(|m| m.is_empty())
            && spec
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(|m| m.is_empty());
        if selects_nothing {
            self.event(
                EventType::Warning,
                "SelectingAll",
                "This deployment is selecting all pods. A non-empty selector is required.",
            )
            .await;
            let status = self.d.status.get_or_insert_default();
            if status.observed_generation < self.d.metadata.generation {
                status.observed_generation = self.d.metadata.generation;
                self.update_status().await?;
            }
            return Ok(Action::await_change());
        }
        let Some(selector) = label_selector(&spec.selector) else {
            return Ok(Action::await_change());
        };
        for ready in [
            controller_base::cache::ready(&self.ctx.sets).await,
            controller_base::cache::ready(&self.ctx.pods).await,
        ] {
            ready.map_err(|e| Error::Cache("replica set", e))?;
        }
        let ns = self.ns();
        let candidates = self
            .ctx
            .sets
            .state()
            .into_iter()
            .filter(|rs| rs.namespace().as_deref() == Some(ns.as_str()));
        let mut sets: Vec<ReplicaSet> = claim(&self.ctx.client, &self.d, &selector, candidates)
            .await?
            .into_iter()
            .map(|rs| (*rs).clone())
            .collect();
        rollout::sort_by_age(&mut sets);
        if self.d.metadata.deletion_timestamp.is_some() {
            let new = rollout::find_new(&self.d, &sets);
            return self.sync_status(&sets, new).await;
        }
        self.check_paused_conditions().await?;
        if spec.paused == Some(true) {
            return self.sync_scale(sets).await;
        }
        let new = self.sync_revision(&mut sets, false).await?;
        if rollout::is_scaling_event(&self.d, &sets) {
            return self.sync_scale(sets).await;
        }
        if rollout::is_rolling(&self.d) {
            self.rollout_rolling(sets, new).await
        } else {
            self.rollout_recreate(sets, new).await
        }
    }

    async fn event(&self, type_: EventType, reason: &str, message: &str) {
        if let Err(e) = self
            .ctx
            .recorder
            .record(&self.d, type_, reason, message)
            .await
        {
            tracing::debug!(error = %controller_base::runner::chain(&e), "event not recorded");
        }
    }

    fn sets_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(self.ctx.client.clone(), &self.ns())
    }

    /// PUT of the status subresource, which also carries the annotations.
    async fn update_status(&mut self) -> Result<(), Error> {
        let api = Api::<Deployment>::namespaced(self.ctx.client.clone(), &self.ns());
        self.d = api
            .replace_status(&self.d.name_any(), &PostParams::default(), &self.d)
            .await
            .map_err(Error::api(format!(
                "updating the status of Deployment {}",
                key_of(&self.d.metadata)
            )))?;
        Ok(())
    }

    async fn replace_set(&self, rs: &ReplicaSet) -> Result<ReplicaSet, Error> {
        self.sets_api()
            .replace(&rs.name_any(), &PostParams::default(), rs)
            .await
            .map_err(Error::api(format!(
                "updating ReplicaSet {}",
                key_of(&rs.metadata)
            )))
    }

    /// `SetDeploymentRevision`: whether it changed.
    fn set_revision(&mut self, revision: &str) -> bool {
        let ann = self.d.metadata.annotations.get_or_insert_default();
        if ann.get(REVISION).map(String::as_str) == Some(revision) {
            return false;
        }
        ann.insert(REVISION.into(), revision.to_string());
        true
    }

    fn set_progressing(&mut self, status: &str, reason: &str, message: String) {
        let cond = new_condition("Progressing", status, reason, message, self.now);
        set_condition(self.d.status.get_or_insert_default(), cond);
    }

    /// `getAllReplicaSetsAndSyncRevision`: the index of the new ReplicaSet in `sets`
    /// (created when `create` and missing), its revision and annotations brought up to
    /// date, and the Deployment's revision with it.
    async fn sync_revision(
        &mut self,
        sets: &mut Vec<ReplicaSet>,
        create: bool,
    ) -> Result<Option<usize>, Error> {
        let new = rollout::find_new(&self.d, sets);
        let max_old = sets
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != new)
            .map(|(_, rs)| rs_revision(rs))
            .max()
            .unwrap_or(0);
        let new_revision = max_old + 1;
        let min_ready = self.d.spec.as_ref().and_then(|s| s.min_ready_seconds);
        if let Some(i) = new {
            let mut copy = sets[i].clone();
            let annotated = set_new_rs_annotations(&self.d, &mut copy, new_revision, true);
            let spec = copy.spec.get_or_insert_default();
            let min_ready_changed = spec.min_ready_seconds.unwrap_or(0) != min_ready.unwrap_or(0);
            if annotated || min_ready_changed {
                spec.min_ready_seconds = min_ready;
                sets[i] = self.replace_set(&copy).await?;
            }
            let revision = rs_revision(&sets[i]).to_string();
            let mut changed = self.set_revision(&revision);
            if condition(self.d.status.as_ref(), "Progressing").is_none() {
                let msg = format!("Found new replica set {:?}", sets[i].name_any());
                self.set_progressing("True", rollout::FOUND_NEW_RS, msg);
                changed = true;
            }
            if changed {
                self.update_status().await?;
            }
            return Ok(Some(i));
        }
        if !create {
            return Ok(None);
        }
        let rs = self.new_replica_set(sets, new_revision, min_ready);
        let name = rs.name_any();
        let wanted = rs_replicas(&rs);
        let already_existed = match self.sets_api().create(&PostParams::default(), &rs).await {
            Ok(created) => {
                if wanted > 0 {
                    let msg = format!("Scaled up replica set {name} from 0 to {wanted}");
                    self.event(EventType::Normal, "ScalingReplicaSet", &msg)
                        .await;
                }
                sets.push(created);
                false
            }
            Err(e) if is_conflict(&e) => {
                // The name is the hash: the set may be ours already (a cache behind), or
                // another template's with the same hash (a collision).
                let existing = self
                    .sets_api()
                    .get(&name)
                    .await
                    .map_err(Error::api(format!("reading ReplicaSet {name}")))?;
                let ours = is_controlled_by(
                    &existing.metadata,
                    self.d.metadata.uid.as_deref().unwrap_or_default(),
                );
                let same = existing
                    .spec
                    .as_ref()
                    .and_then(|s| s.template.as_ref())
                    .is_some_and(|t| equal_ignore_hash(t, &deployment_template(&self.d)));
                if !(ours && same) {
                    let status = self.d.status.get_or_insert_default();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    self.update_status().await?;
                    return Err(Error::api(format!("creating ReplicaSet {name}"))(e));
                }
                sets.push(existing);
                true
            }
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                self.event(EventType::Warning, "ReplicaSetCreateError", &msg)
                    .await;
                return Err(Error::api(format!("creating ReplicaSet {name}"))(e));
            }
        };
        let mut changed = self.set_revision(&new_revision.to_string());
        if !already_existed && progress_deadline(&self.d).is_some() {
            let msg = format!("Created new replica set {name:?}");
            self.set_progressing("True", rollout::NEW_RS_CREATED, msg);
            changed = true;
        }
        if changed {
            self.update_status().await?;
        }
        Ok(Some(sets.len() - 1))
    }

    /// The ReplicaSet for the Deployment's current template.
    fn new_replica_set(
        &self,
        sets: &[ReplicaSet],
        revision: i64,
        min_ready: Option<i32>,
    ) -> ReplicaSet {
        let d = &self.d;
        let mut template = deployment_template(d);
        let collisions = d.status.as_ref().and_then(|s| s.collision_count);
        let hash = template_hash(&template, collisions);
        let labels = template
            .metadata
            .get_or_insert_default()
            .labels
            .get_or_insert_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let labels = labels.clone();
        let mut selector = d
            .spec
            .as_ref()
            .map(|s| s.selector.clone())
            .unwrap_or_default();
        selector
            .match_labels
            .get_or_insert_default()
            .insert(HASH_LABEL.into(), hash.clone());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(format!("{}-{hash}", d.name_any())),
                namespace: d.namespace(),
                labels: Some(labels),
                owner_references: Some(vec![controller_ref(d)]),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: min_ready,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = sets.iter().chain([&rs]).collect();
        let n = new_rs_replicas(d, &all, &rs);
        if let Some(spec) = rs.spec.as_mut() {
            spec.replicas = Some(n);
        }
        set_new_rs_annotations(d, &mut rs, revision, false);
        rs
    }

    /// `scaleReplicaSet`: sets the size (and, with `annotate`, the Deployment's replica
    /// annotations even when the size stays); a changed size is a `ScalingReplicaSet` event.
    /// Whether the size changed.
    async fn scale(
        &self,
        sets: &mut [ReplicaSet],
        i: usize,
        size: i32,
        annotate: bool,
    ) -> Result<bool, Error> {
        let old = rs_replicas(&sets[i]);
        if old == size && !annotate {
            return Ok(false);
        }
        let mut copy = sets[i].clone();
        let d = &self.d;
        let annotated =
            set_replicas_annotations(&mut copy, replicas(d), replicas(d) + max_surge(d));
        if old == size && !annotated {
            return Ok(false);
        }
        copy.spec.get_or_insert_default().replicas = Some(size);
        sets[i] = self.replace_set(&copy).await?;
        if old != size {
            let op = if size > old { "up" } else { "down" };
            let msg = format!(
                "Scaled {op} replica set {} from {old} to {size}",
                copy.name_any()
            );
            self.event(EventType::Normal, "ScalingReplicaSet", &msg)
                .await;
        }
        Ok(old != size)
    }

    /// `rolloutRolling`: grow the new ReplicaSet within the surge, else shrink the old ones
    /// within the unavailability budget, else clean up; then the status.
    async fn rollout_rolling(
        &mut self,
        mut sets: Vec<ReplicaSet>,
        new: Option<usize>,
    ) -> Result<Action, Error> {
        let new = match new {
            Some(n) => Some(n),
            None => self.sync_revision(&mut sets, true).await?,
        };
        if let Some(n) = new {
            let want = replicas(&self.d);
            let cur = rs_replicas(&sets[n]);
            let target = if cur > want {
                want
            } else {
                let all: Vec<&ReplicaSet> = sets.iter().collect();
                new_rs_replicas(&self.d, &all, &sets[n])
            };
            if target != cur && self.scale(&mut sets, n, target, false).await? {
                return self.sync_rollout_status(&sets, new).await;
            }
        }
        let old: Vec<usize> = (0..sets.len())
            .filter(|i| Some(*i) != new && rs_replicas(&sets[*i]) > 0)
            .collect();
        let mut scaled = false;
        for (i, size) in scale_down_old(&self.d, &sets, &old, new) {
            scaled |= self.scale(&mut sets, i, size, false).await?;
        }
        if scaled {
            return self.sync_rollout_status(&sets, new).await;
        }
        if complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&sets, new).await?;
        }
        self.sync_rollout_status(&sets, new).await
    }

    /// `rolloutRecreate`: scale every old ReplicaSet to zero, wait until their pods are
    /// gone, then create and scale up the new one.
    async fn rollout_recreate(
        &mut self,
        mut sets: Vec<ReplicaSet>,
        new: Option<usize>,
    ) -> Result<Action, Error> {
        let old: Vec<usize> = (0..sets.len())
            .filter(|i| Some(*i) != new && rs_replicas(&sets[*i]) > 0)
            .collect();
        let mut scaled = false;
        for i in old {
            scaled |= self.scale(&mut sets, i, 0, false).await?;
        }
        if scaled || self.old_pods_running(&sets, new) {
            return self.sync_rollout_status(&sets, new).await;
        }
        let new = match new {
            Some(n) => Some(n),
            None => self.sync_revision(&mut sets, true).await?,
        };
        if let Some(n) = new {
            let want = replicas(&self.d);
            self.scale(&mut sets, n, want, false).await?;
        }
        if complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup(&sets, new).await?;
        }
        self.sync_rollout_status(&sets, new).await
    }

    /// Whether any pod of an old ReplicaSet may still run.
    fn old_pods_running(&self, sets: &[ReplicaSet], new: Option<usize>) -> bool {
        let old: Vec<&ReplicaSet> = (0..sets.len())
            .filter(|i| Some(*i) != new)
            .map(|i| &sets[i])
            .collect();
        if rollout::actual_total(old.iter().copied()) > 0 {
            return true;
        }
        let uids: Vec<&str> = old
            .iter()
            .filter_map(|rs| rs.metadata.uid.as_deref())
            .collect();
        let ns = self.ns();
        self.ctx.pods.state().iter().any(|p| {
            p.namespace().as_deref() == Some(ns.as_str())
                && controller_of(&p.metadata).is_some_and(|r| uids.contains(&r.uid.as_str()))
                && !matches!(
                    p.status.as_ref().and_then(|s| s.phase.as_deref()),
                    Some("Failed" | "Succeeded")
                )
        })
    }

    /// A scaling event or a paused Deployment: resize without rolling (upstream `sync`).
    async fn sync_scale(&mut self, mut sets: Vec<ReplicaSet>) -> Result<Action, Error> {
        let new = self.sync_revision(&mut sets, false).await?;
        match scale_targets(&self.d, &sets, new) {
            ScalePlan::Resize(sizes) => {
                for (i, size) in sizes {
                    self.scale(&mut sets, i, size, false).await?;
                }
            }
            ScalePlan::Proportional(sizes) => {
                for (i, size) in sizes {
                    self.scale(&mut sets, i, size, true).await?;
                }
            }
        }
        if self.d.spec.as_ref().and_then(|s| s.paused) == Some(true) {
            self.cleanup(&sets, new).await?;
        }
        self.sync_status(&sets, new).await
    }

    /// `cleanupDeployment`: delete the oldest revisions beyond `revisionHistoryLimit`
    /// that run nothing.
    async fn cleanup(&self, sets: &[ReplicaSet], new: Option<usize>) -> Result<(), Error> {
        let Some(limit) = self
            .d
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .filter(|l| *l != i32::MAX)
        else {
            return Ok(());
        };
        let mut cleanable: Vec<&ReplicaSet> = (0..sets.len())
            .filter(|i| Some(*i) != new)
            .map(|i| &sets[i])
            .filter(|rs| rs.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable
            .len()
            .saturating_sub(usize::try_from(limit).unwrap_or(0));
        cleanable.sort_by_key(|rs| (rs_revision(rs), rollout::age_key(rs)));
        for rs in cleanable.into_iter().take(excess) {
            let status = rs.status.clone().unwrap_or_default();
            let settled =
                status.observed_generation.unwrap_or(0) >= rs.metadata.generation.unwrap_or(0);
            if status.replicas != 0 || rs_replicas(rs) != 0 || !settled {
                continue;
            }
            match self
                .sets_api()
                .delete(&rs.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(Error::api(format!(
                        "deleting old ReplicaSet {}",
                        key_of(&rs.metadata)
                    ))(e))
                }
            }
        }
        Ok(())
    }

    /// `checkPausedConditions`: pausing and resuming show in the Progressing condition.
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let reason =
            condition(self.d.status.as_ref(), "Progressing").and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(rollout::TIMED_OUT) {
            return Ok(());
        }
        let paused_shown = reason.as_deref() == Some(rollout::PAUSED);
        let paused = self.d.spec.as_ref().and_then(|s| s.paused) == Some(true);
        if paused && !paused_shown {
            self.set_progressing("Unknown", rollout::PAUSED, "Deployment is paused".into());
        } else if !paused && paused_shown {
            self.set_progressing("Unknown", rollout::RESUMED, "Deployment is resumed".into());
        } else {
            return Ok(());
        }
        self.update_status().await
    }

    /// `syncDeploymentStatus`: the counts and Available, without judging progress.
    async fn sync_status(
        &mut self,
        sets: &[ReplicaSet],
        new: Option<usize>,
    ) -> Result<Action, Error> {
        let all: Vec<&ReplicaSet> = sets.iter().collect();
        let status = calculate_status(&self.d, &all, new.map(|i| &sets[i]), self.now);
        if self.d.status.as_ref() != Some(&status) {
            self.d.status = Some(status);
            self.update_status().await?;
        }
        Ok(Action::await_change())
    }

    /// `syncRolloutStatus`: the counts, Available, and whether the rollout progresses,
    /// completed or ran out of time; when a stalled rollout will time out.
    async fn sync_rollout_status(
        &mut self,
        sets: &[ReplicaSet],
        new: Option<usize>,
    ) -> Result<Action, Error> {
        let all: Vec<&ReplicaSet> = sets.iter().collect();
        let new_rs = new.map(|i| &sets[i]);
        let mut status = calculate_status(&self.d, &all, new_rs, self.now);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, "Progressing");
        }
        let current = condition(self.d.status.as_ref(), "Progressing").cloned();
        let finished = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref())
                == Some(rollout::NEW_RS_AVAILABLE);
        let subject = match new_rs {
            Some(rs) => format!("ReplicaSet {:?}", rs.name_any()),
            None => format!("Deployment {:?}", self.d.name_any()),
        };
        if deadline.is_some() && !finished {
            if complete(&self.d, &status) {
                let msg = format!("{subject} has successfully progressed.");
                let cond = new_condition(
                    "Progressing",
                    "True",
                    rollout::NEW_RS_AVAILABLE,
                    msg,
                    self.now,
                );
                set_condition(&mut status, cond);
            } else if progressing(&self.d, &status) {
                let msg = format!("{subject} is progressing.");
                let mut cond =
                    new_condition("Progressing", "True", rollout::RS_UPDATED, msg, self.now);
                // Progress moves lastUpdateTime even with the same reason.
                if let Some(cur) = current.as_ref().filter(|c| c.status == "True") {
                    cond.last_transition_time = cur.last_transition_time.clone();
                }
                remove_condition(&mut status, "Progressing");
                set_condition(&mut status, cond);
            } else if timed_out(&self.d, &status, self.now) {
                let msg = format!("{subject} has timed out progressing.");
                let cond = new_condition("Progressing", "False", rollout::TIMED_OUT, msg, self.now);
                set_condition(&mut status, cond);
            }
        }
        // A ReplicaSet that cannot create or delete pods says so on the Deployment.
        let failure = new_rs
            .into_iter()
            .chain(sets.iter())
            .filter_map(|rs| {
                rs.status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "ReplicaFailure")
            })
            .next()
            .cloned();
        match failure {
            Some(f) => set_condition(
                &mut status,
                new_condition(
                    "ReplicaFailure",
                    &f.status,
                    f.reason.as_deref().unwrap_or_default(),
                    f.message.unwrap_or_default(),
                    self.now,
                ),
            ),
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        if self.d.status.as_ref() != Some(&status) {
            self.d.status = Some(status.clone());
            self.update_status().await?;
        }
        Ok(stuck_requeue(&self.d, &status, self.now)
            .map(Action::requeue)
            .unwrap_or_else(Action::await_change))
    }
}
