//! The node lifecycle controller (kube-controller-manager's `node-lifecycle-controller`,
//! taint-based eviction as in v1.33): per Node, it watches for signs of life (the Lease in
//! `kube-node-lease` renewed, the Ready heartbeat moving) and, after the grace period
//! without any, sets the kubelet's conditions to `Unknown`, records `NodeNotReady` and marks
//! the node's pods not Ready (upstream `MarkPodsNotReady`). On every pass it keeps the
//! controller's taints in line with the conditions. Instead of upstream's 5 s sweep over
//! all nodes, each node's reconcile asks to be woken when its grace period would run out.
//!
//! New evictions (a `NoExecute` taint where there was none) are paced per zone
//! ([`crate::zones`]). While every zone is fully disrupted nothing is evicted (upstream's
//! "master disruption mode": the control plane is more likely cut off than every node dead);
//! leaving that mode gives each node a fresh grace period.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::events::{EventType, Recorder};

use crate::health::{self, Probe, Verdict};
use crate::settings::Settings;
use crate::taints::{desired_taints, starts_eviction};
use crate::zones::{self, Bucket, Take, ZoneState};

/// Where kubelets keep their Leases.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// The component named in this controller's events.
const COMPONENT: &str = "node-controller";
/// After losing a write race to the kubelet or another writer.
const RETRY_RACE: Duration = Duration::from_millis(200);

struct Ctx {
    client: Client,
    settings: Settings,
    nodes: Store<Node>,
    leases: Store<Lease>,
    pods: Store<Pod>,
    probes: Mutex<HashMap<String, Probe>>,
    /// The zones' states at the last look, and whether every zone was fully disrupted.
    zones: Mutex<(BTreeMap<Zone, ZoneState>, bool)>,
    /// Each zone's pace of new evictions.
    buckets: Mutex<HashMap<Zone, Bucket>>,
    /// Asks for a pass over every node (a zone's state or the eviction mode changed).
    wake_all: mpsc::UnboundedSender<()>,
    recorder: Recorder,
}

pub fn run(client: Client, settings: Settings, pods: Store<Pod>) -> BoxFuture<'static, ()> {
    let (leases, lease_writer) = reflector::store();
    let lease_events = reflector::reflector(
        lease_writer,
        controller_base::cache::watch(
            Api::<Lease>::namespaced(client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (wake_all, woken) = mpsc::unbounded_channel();
    let controller = controller_base::cache::controller(
        Api::<Node>::all(client.clone()),
        watcher::Config::default(),
    )
    .watches_stream(lease_events, |lease: Lease| {
        Some(ObjectRef::<Node>::new(&lease.name_any()))
    })
    .reconcile_all_on(UnboundedReceiverStream::new(woken));
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        settings,
        nodes: controller.store(),
        leases,
        pods,
        probes: Mutex::default(),
        zones: Mutex::default(),
        buckets: Mutex::default(),
        wake_all,
    });
    controller_base::runner::drive("node-lifecycle", controller, ctx, reconcile)
        .map(|_| ())
        .boxed()
}

async fn reconcile(node: Arc<Node>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    controller_base::cache::ready(&ctx.leases)
        .await
        .map_err(|e| Error::Cache("lease", e))?;
    let name = node.name_any();
    let now = Timestamp::now();
    let renew_time = ctx
        .leases
        .get(&ObjectRef::new(&name).within(LEASE_NAMESPACE))
        .and_then(|l| l.spec.as_ref()?.renew_time.as_ref().map(|t| t.0));
    let probe = {
        let mut probes = lock(&ctx.probes);
        let probe = health::observe(probes.get(&name), &node, renew_time, now);
        probes.insert(name.clone(), probe.clone());
        probe
    };
    let verdict = health::verdict(
        &probe,
        &node,
        ctx.settings.node_monitor_grace_period,
        ctx.settings.node_startup_grace_period,
        now,
    );
    let mut node = (*node).clone();
    let api = Api::<Node>::all(ctx.client.clone());
    if verdict == Verdict::Silent {
        if let Some(conditions) = health::unknown_conditions(&node, now) {
            let was_ready = health::ready_status(&node) == Some("True");
            node.status.get_or_insert_with(Default::default).conditions = Some(conditions);
            tracing::info!(node = %name, "node stopped posting status; conditions now Unknown");
            let patch = json!({
                "metadata": {"resourceVersion": node.resource_version()},
                "status": {"conditions": node.status.as_ref().and_then(|s| s.conditions.as_ref())},
            });
            node = match write(api.patch_status(
                &name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            ))
            .await
            {
                Written::Done(n) => n,
                Written::Raced => return Ok(Action::requeue(RETRY_RACE)),
                Written::Failed(e) => {
                    return Err(Error::api(format!("marking node {name} Unknown"))(e))
                }
            };
            if was_ready {
                let message = format!("Node {name} status is now: NodeNotReady");
                if let Err(e) = ctx
                    .recorder
                    .record(&node, EventType::Normal, "NodeNotReady", &message)
                    .await
                {
                    tracing::warn!(node = %name, error = %e, "recording NodeNotReady failed");
                }
            }
        }
        if mark_pods_not_ready(&ctx, &name, now).await? {
            return Ok(Action::requeue(RETRY_RACE));
        }
    }
    let mut wait = None;
    let evict = match eviction_mode(&ctx, &node, now) {
        Mode::Paused => false,
        Mode::Paced { .. } if !starts_eviction(&node) => true,
        Mode::Paced { zone, rate } => {
            match lock(&ctx.buckets).entry(zone).or_default().take(rate, now) {
                Take::Granted => true,
                Take::Wait(d) => {
                    wait = Some(d);
                    false
                }
                // The zone's state changing wakes every node.
                Take::Never => false,
            }
        }
    };
    if let Some(taints) = desired_taints(&node, evict, now) {
        tracing::info!(node = %name, taints = ?taints.iter().map(|t| format!("{}:{}", t.key, t.effect)).collect::<Vec<_>>(), "updating node taints");
        let patch = json!({
            "metadata": {"resourceVersion": node.resource_version()},
            "spec": {"taints": taints},
        });
        match write(api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))).await {
            Written::Done(_) => {}
            Written::Raced => return Ok(Action::requeue(RETRY_RACE)),
            Written::Failed(e) => {
                return Err(Error::api(format!("updating the taints of node {name}"))(e))
            }
        }
    }
    Ok(match (verdict, wait) {
        (Verdict::Alive { recheck_in }, Some(w)) => Action::requeue(recheck_in.min(w)),
        (Verdict::Alive { recheck_in }, None) => Action::requeue(recheck_in),
        (Verdict::Silent, Some(w)) => Action::requeue(w),
        (Verdict::Silent, None) => Action::await_change(),
    })
}

/// A zone: (region, zone) from the node's topology labels.
type Zone = (String, String);

/// How new evictions go for one node.
enum Mode {
    /// Every zone is fully disrupted: none at all, and the `NoExecute` taints come off.
    Paused,
    /// At most `rate` new ones per second in the node's zone.
    Paced { zone: Zone, rate: f64 },
}

/// The eviction mode for `node` (as just written; the others from the cache). A change of
/// any zone's state wakes every node; leaving the paused mode restarts every node's grace
/// period.
fn eviction_mode(ctx: &Ctx, node: &Node, now: Timestamp) -> Mode {
    let name = node.name_any();
    let nodes = ctx.nodes.state();
    let counts = zones::count(
        std::iter::once(node).chain(nodes.iter().map(|n| &**n).filter(|n| n.name_any() != name)),
    );
    let threshold = ctx.settings.unhealthy_zone_threshold;
    let paused = zones::all_fully_disrupted(&counts, threshold);
    let states: BTreeMap<Zone, ZoneState> = counts
        .iter()
        .map(|(z, c)| (z.clone(), c.state(threshold)))
        .collect();
    let mut probes = lock(&ctx.probes);
    // Forget nodes that are gone (a deleted node is never reconciled again).
    let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    probes.retain(|n, _| *n == name || names.contains(n));
    let mut was = lock(&ctx.zones);
    if was.1 != paused {
        if paused {
            tracing::warn!("every zone is fully disrupted: pausing taint-based evictions");
        } else {
            tracing::info!("a node is Ready again: resuming taint-based evictions");
            for probe in probes.values_mut() {
                probe.probed_at = now;
            }
        }
    }
    if *was != (states.clone(), paused) {
        for (zone, state) in &states {
            if was.0.get(zone) != Some(state) {
                tracing::info!(region = %zone.0, zone = %zone.1, ?state, "zone state");
            }
        }
        *was = (states, paused);
        // Only fails when the controller is gone.
        let _ = ctx.wake_all.send(());
    }
    if paused {
        return Mode::Paused;
    }
    let zone = zones::zone_of(node);
    let rate = counts
        .get(&zone)
        .map_or(ctx.settings.node_eviction_rate, |c| {
            zones::eviction_rate(c, &ctx.settings)
        });
    Mode::Paced { zone, rate }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Upstream `MarkPodsNotReady`: each pod bound to the node gets Ready=False. Returns
/// whether some write lost a race (look again soon).
async fn mark_pods_not_ready(ctx: &Ctx, node: &str, now: Timestamp) -> Result<bool, Error> {
    controller_base::cache::ready(&ctx.pods)
        .await
        .map_err(|e| Error::Cache("pod", e))?;
    let mut raced = false;
    for pod in ctx.pods.state() {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let mut pod = (*pod).clone();
        let Some(ready) = pod
            .status
            .as_mut()
            .and_then(|s| s.conditions.as_mut())
            .and_then(|l| l.iter_mut().find(|c| c.type_ == "Ready"))
        else {
            continue;
        };
        if ready.status == "False" {
            continue;
        }
        ready.status = "False".into();
        ready.last_transition_time = Some(Time(now));
        let ns = pod.namespace().unwrap_or_default();
        let name = pod.name_any();
        let api = Api::<Pod>::namespaced(ctx.client.clone(), &ns);
        let patch = json!({
            "metadata": {"resourceVersion": pod.resource_version()},
            "status": {"conditions": pod.status.as_ref().and_then(|s| s.conditions.as_ref())},
        });
        match write(api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))).await {
            Written::Done(_) => {}
            Written::Raced => raced = true,
            Written::Failed(e) => {
                return Err(Error::api(format!("marking pod {ns}/{name} not Ready"))(e))
            }
        }
        if let Err(e) = ctx
            .recorder
            .record(
                &pod,
                EventType::Warning,
                "NodeNotReady",
                "Node is not ready",
            )
            .await
        {
            tracing::warn!(pod = %name, error = %e, "recording NodeNotReady failed");
        }
    }
    Ok(raced)
}

enum Written<T> {
    Done(T),
    /// A conflict or the object is gone: the next event brings the state that won.
    Raced,
    Failed(kube::Error),
}

async fn write<T>(
    request: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Written<T> {
    match request.await {
        Ok(v) => Written::Done(v),
        Err(e) if is_conflict(&e) || is_not_found(&e) => Written::Raced,
        Err(e) => Written::Failed(e),
    }
}
