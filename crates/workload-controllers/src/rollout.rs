//! The arithmetic of a Deployment rollout (upstream `deployment/util`), pure so it is
//! tested without an API: the pod-template-hash, which ReplicaSet is the new one, revisions
//! and their annotations, `maxSurge` / `maxUnavailable` resolved against the replica count,
//! how far a rolling update may scale the new ReplicaSet up and the old ones down,
//! proportional scaling of a rollout in flight, and the Deployment status with its
//! `Progressing` and `Available` conditions.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentStatus, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use serde_json::Value;

/// The label (on ReplicaSets, their selectors and pods) naming the template's hash.
pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";
/// Deployment annotations never copied to its ReplicaSets.
const NOT_COPIED: &[&str] = &[
    "kubectl.kubernetes.io/last-applied-configuration",
    REVISION,
    REVISION_HISTORY,
    DESIRED_REPLICAS,
    MAX_REPLICAS,
    "deprecated.deployment.rollback.to",
];

/// Condition reasons of upstream's deployment controller.
pub const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
pub const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
pub const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
pub const RS_UPDATED: &str = "ReplicaSetUpdated";
pub const TIMED_OUT: &str = "ProgressDeadlineExceeded";
pub const PAUSED: &str = "DeploymentPaused";
pub const RESUMED: &str = "DeploymentResumed";

/// `int32` fields read as upstream's pointers-with-defaults.
pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0)
}

fn rs_status(
    rs: &ReplicaSet,
    f: impl Fn(&k8s_openapi::api::apps::v1::ReplicaSetStatus) -> i32,
) -> i32 {
    rs.status.as_ref().map(f).unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs_status(rs, |s| s.available_replicas.unwrap_or(0))
}

/// Sum of `spec.replicas`.
pub fn spec_total<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    sets.into_iter().map(rs_replicas).sum()
}

/// Sum of `status.replicas`.
pub fn actual_total<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    sets.into_iter()
        .map(|rs| rs_status(rs, |s| s.replicas))
        .sum()
}

fn available_total<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    sets.into_iter().map(rs_available).sum()
}

fn ready_total<'a>(sets: impl IntoIterator<Item = &'a ReplicaSet>) -> i32 {
    sets.into_iter()
        .map(|rs| rs_status(rs, |s| s.ready_replicas.unwrap_or(0)))
        .sum()
}

pub fn is_rolling(d: &Deployment) -> bool {
    strategy_type(d) != "Recreate"
}

pub fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// `GetScaledValueFromIntOrPercent`.
fn scaled(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(n)) => *n,
        Some(IntOrString::String(s)) => {
            let pct: i64 = s.trim_end_matches('%').parse().unwrap_or(0);
            let product = pct * i64::from(total);
            let value = if round_up {
                (product + 99).div_euclid(100)
            } else {
                product.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

/// `ResolveFenceposts`: (maxSurge, maxUnavailable) as counts for `desired` replicas; surge
/// rounds up, unavailability down, and both zero means one may be unavailable.
pub fn fenceposts(d: &Deployment, desired: i32) -> (i32, i32) {
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()), desired, true);
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()), desired, false);
    if surge == 0 && unavailable == 0 {
        (0, 1)
    } else {
        (surge, unavailable)
    }
}

pub fn max_surge(d: &Deployment) -> i32 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d, replicas(d)).0
}

pub fn max_unavailable(d: &Deployment) -> i32 {
    let n = replicas(d);
    if !is_rolling(d) || n == 0 {
        return 0;
    }
    fenceposts(d, n).1.min(n)
}

/// The hash of a template (with the Deployment's collision count), as it appears in the
/// `pod-template-hash` label and the ReplicaSet name: FNV-1a of the template's JSON, in
/// upstream's alphabet of characters that never spell words.
pub fn template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h: u32 = 0x811c_9dc5;
    let mut feed = |bytes: &[u8]| {
        for b in bytes {
            h ^= u32::from(*b);
            h = h.wrapping_mul(0x0100_0193);
        }
    };
    feed(&serde_json::to_vec(template).unwrap_or_default());
    if let Some(c) = collision_count {
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&c.to_le_bytes());
        feed(&bytes);
    }
    h.to_string()
        .bytes()
        .map(|b| ALPHANUMS[usize::from(b) % ALPHANUMS.len()] as char)
        .collect()
}

/// JSON with nulls and empty maps and lists dropped, so an absent field and an empty one
/// compare equal (upstream's semantic equality).
fn normalized(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, normalized(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(normalized).collect()),
        other => other,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

fn without_hash(t: &PodTemplateSpec) -> Value {
    let mut t = t.clone();
    if let Some(labels) = t.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
        labels.remove(HASH_LABEL);
    }
    normalized(serde_json::to_value(&t).unwrap_or_default())
}

/// `EqualIgnoreHash`: the templates agree but for the hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    without_hash(a) == without_hash(b)
}

fn template_of(rs: &ReplicaSet) -> Option<&PodTemplateSpec> {
    rs.spec.as_ref().and_then(|s| s.template.as_ref())
}

pub fn deployment_template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

/// Oldest first, then by name (`ReplicaSetsByCreationTimestamp`).
pub fn sort_by_age(sets: &mut [ReplicaSet]) {
    sets.sort_by_key(age_key);
}

/// `FindNewReplicaSet`: the oldest ReplicaSet whose template is the Deployment's.
pub fn find_new(d: &Deployment, sets: &[ReplicaSet]) -> Option<usize> {
    let want = deployment_template(d);
    let mut order: Vec<usize> = (0..sets.len()).collect();
    order.sort_by_key(|i| age_key(&sets[*i]));
    order
        .into_iter()
        .find(|i| template_of(&sets[*i]).is_some_and(|t| equal_ignore_hash(t, &want)))
}

/// Creation time, then name: oldest first.
pub fn age_key(rs: &ReplicaSet) -> (Option<Timestamp>, Option<String>) {
    (
        rs.metadata.creation_timestamp.as_ref().map(|t| t.0),
        rs.metadata.name.clone(),
    )
}

/// The revision a ReplicaSet carries (0 when none).
pub fn revision(meta_annotations: Option<&BTreeMap<String, String>>) -> i64 {
    meta_annotations
        .and_then(|a| a.get(REVISION))
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn rs_revision(rs: &ReplicaSet) -> i64 {
    revision(rs.metadata.annotations.as_ref())
}

/// `SetReplicasAnnotations`: whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if ann.get(k) != Some(&v) {
            ann.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

/// `SetNewReplicaSetAnnotations`: the Deployment's annotations copied, the revision (and
/// the history of revisions it had) and, for a ReplicaSet about to be created, the replica
/// annotations. Whether anything changed.
pub fn set_new_rs_annotations(
    d: &Deployment,
    rs: &mut ReplicaSet,
    new_revision: i64,
    exists: bool,
) -> bool {
    let mut changed = false;
    let ann = rs.metadata.annotations.get_or_insert_with(BTreeMap::new);
    for (k, v) in d.metadata.annotations.iter().flatten() {
        if NOT_COPIED.contains(&k.as_str()) || ann.get(k) == Some(v) {
            continue;
        }
        ann.insert(k.clone(), v.clone());
        changed = true;
    }
    let old = ann.get(REVISION).cloned().unwrap_or_default();
    let old_n: i64 = old.parse().unwrap_or(0);
    if old_n < new_revision {
        ann.insert(REVISION.into(), new_revision.to_string());
        changed = true;
        if !old.is_empty() {
            let history = match ann.get(REVISION_HISTORY) {
                Some(h) if !h.is_empty() => format!("{h},{old}"),
                _ => old,
            };
            ann.insert(REVISION_HISTORY.into(), history);
        }
    }
    if !exists && set_replicas_annotations(rs, replicas(d), replicas(d) + max_surge(d)) {
        changed = true;
    }
    changed
}

/// `NewRSNewReplicas`: the size the new ReplicaSet may grow to now.
pub fn new_rs_replicas(d: &Deployment, all: &[&ReplicaSet], new: &ReplicaSet) -> i32 {
    if !is_rolling(d) {
        return replicas(d);
    }
    let current = spec_total(all.iter().copied());
    let max_total = replicas(d) + max_surge(d);
    if current >= max_total {
        return rs_replicas(new);
    }
    let up = (max_total - current).min(replicas(d) - rs_replicas(new));
    rs_replicas(new) + up
}

/// The old ReplicaSets' new sizes in a rolling update (upstream `reconcileOldReplicaSets`):
/// first unhealthy replicas (beyond the available ones) go, then available ones as far as
/// `maxUnavailable` allows. `old` indexes into `all`; returns (index, new size) pairs.
pub fn scale_down_old(
    d: &Deployment,
    all: &[ReplicaSet],
    old: &[usize],
    new: Option<usize>,
) -> Vec<(usize, i32)> {
    let mut sizes: Vec<i32> = all.iter().map(rs_replicas).collect();
    let old_pods: i32 = old.iter().map(|i| sizes[*i]).sum();
    if old_pods == 0 {
        return Vec::new();
    }
    let all_pods: i32 = sizes.iter().sum();
    let min_available = replicas(d) - max_unavailable(d);
    let new_unavailable = new.map_or(0, |i| rs_replicas(&all[i]) - rs_available(&all[i]));
    let max_scaled_down = all_pods - min_available - new_unavailable;
    if max_scaled_down <= 0 {
        return Vec::new();
    }
    let mut by_age: Vec<usize> = old.to_vec();
    by_age.sort_by_key(|i| age_key(&all[*i]));
    // Unhealthy replicas first.
    let mut cleaned = 0;
    for &i in &by_age {
        if cleaned >= max_scaled_down {
            break;
        }
        let unhealthy = sizes[i] - rs_available(&all[i]);
        if sizes[i] == 0 || unhealthy <= 0 {
            continue;
        }
        let down = (max_scaled_down - cleaned).min(unhealthy);
        sizes[i] -= down;
        cleaned += down;
    }
    // Then healthy ones, keeping minAvailable.
    let available = available_total(all);
    if available > min_available {
        let total_down = available - min_available;
        let mut done = 0;
        for &i in &by_age {
            if done >= total_down {
                break;
            }
            if sizes[i] == 0 {
                continue;
            }
            let down = sizes[i].min(total_down - done);
            sizes[i] -= down;
            done += down;
        }
    }
    old.iter()
        .filter(|i| sizes[**i] != rs_replicas(&all[**i]))
        .map(|i| (*i, sizes[*i]))
        .collect()
}

fn max_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(MAX_REPLICAS))
        .and_then(|v| v.parse().ok())
}

fn desired_annotation(rs: &ReplicaSet) -> Option<i32> {
    rs.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESIRED_REPLICAS))
        .and_then(|v| v.parse().ok())
}

/// `isScalingEvent`: an active ReplicaSet was made for another replica count.
pub fn is_scaling_event(d: &Deployment, all: &[ReplicaSet]) -> bool {
    all.iter()
        .filter(|rs| rs_replicas(rs) > 0)
        .filter_map(desired_annotation)
        .any(|desired| desired != replicas(d))
}

/// `IsSaturated`: the new ReplicaSet runs every replica, all available.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    rs_replicas(rs) == replicas(d)
        && desired_annotation(rs) == Some(replicas(d))
        && rs_available(rs) == replicas(d)
}

/// What a scaling event does to the Deployment's ReplicaSets (index into `all`, size).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScalePlan {
    /// Only these change size.
    Resize(Vec<(usize, i32)>),
    /// Every active one gets this size and the Deployment's replica annotations, changed
    /// size or not, so that the scaling event is over.
    Proportional(Vec<(usize, i32)>),
}

/// Upstream `scale`: the sizes a scaling event gives the Deployment's ReplicaSets; `new`
/// is the new one's index, the rest are old.
pub fn scale_targets(d: &Deployment, all: &[ReplicaSet], new: Option<usize>) -> ScalePlan {
    let want = replicas(d);
    let active: Vec<usize> = (0..all.len())
        .filter(|i| rs_replicas(&all[*i]) > 0)
        .collect();
    // One active ReplicaSet (or none: the newest) takes the whole count.
    let only = match active.as_slice() {
        [] => new.or_else(|| (0..all.len()).max_by_key(|i| age_key(&all[*i]))),
        [one] => Some(*one),
        _ => None,
    };
    if let Some(i) = only {
        return ScalePlan::Resize(if rs_replicas(&all[i]) != want {
            vec![(i, want)]
        } else {
            Vec::new()
        });
    }
    if let Some(n) = new.filter(|n| is_saturated(d, &all[*n])) {
        return ScalePlan::Resize(
            active
                .into_iter()
                .filter(|i| *i != n)
                .map(|i| (i, 0))
                .collect(),
        );
    }
    if !is_rolling(d) {
        return ScalePlan::Resize(Vec::new());
    }
    let current: i32 = active.iter().map(|i| rs_replicas(&all[*i])).sum();
    let allowed = if want > 0 { want + max_surge(d) } else { 0 };
    let to_add = allowed - current;
    let mut order = active.clone();
    let created = |i: &usize| all[*i].metadata.creation_timestamp.as_ref().map(|t| t.0);
    if to_add > 0 {
        // Larger first; among equals, newer first.
        order.sort_by(|a, b| {
            rs_replicas(&all[*b])
                .cmp(&rs_replicas(&all[*a]))
                .then(created(b).cmp(&created(a)))
        });
    } else if to_add < 0 {
        // Larger first; among equals, older first.
        order.sort_by(|a, b| {
            rs_replicas(&all[*b])
                .cmp(&rs_replicas(&all[*a]))
                .then(created(a).cmp(&created(b)))
        });
    }
    let mut added = 0;
    let mut sizes: Vec<(usize, i32)> = Vec::new();
    for &i in &order {
        let rs = &all[i];
        let size = rs_replicas(rs);
        if to_add == 0 {
            sizes.push((i, size));
            continue;
        }
        let proportion = proportion(d, rs, to_add, added);
        sizes.push((i, size + proportion));
        added += proportion;
    }
    if let Some(first) = sizes.first_mut() {
        if to_add != 0 {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    ScalePlan::Proportional(sizes)
}

/// `GetProportion`.
fn proportion(d: &Deployment, rs: &ReplicaSet, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = if replicas(d) == 0 {
        -rs_replicas(rs)
    } else {
        let total = replicas(d) + max_surge(d);
        let annotated = max_replicas_annotation(rs)
            .unwrap_or_else(|| d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0))
            .max(1);
        let size = f64::from(rs_replicas(rs)) * f64::from(total) / f64::from(annotated);
        size.round() as i32 - rs_replicas(rs)
    };
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

pub fn condition<'a>(
    status: Option<&'a DeploymentStatus>,
    type_: &str,
) -> Option<&'a DeploymentCondition> {
    status
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == type_))
}

pub fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: String,
    now: Timestamp,
) -> DeploymentCondition {
    DeploymentCondition {
        type_: type_.into(),
        status: status.into(),
        reason: Some(reason.into()),
        message: Some(message),
        last_update_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

/// `SetDeploymentCondition`: same status and reason changes nothing; same status keeps the
/// transition time.
pub fn set_condition(status: &mut DeploymentStatus, mut cond: DeploymentCondition) {
    let conds = status.conditions.get_or_insert_with(Vec::new);
    if let Some(cur) = conds.iter().find(|c| c.type_ == cond.type_) {
        if cur.status == cond.status && cur.reason == cond.reason {
            return;
        }
        if cur.status == cond.status {
            cond.last_transition_time = cur.last_transition_time.clone();
        }
    }
    conds.retain(|c| c.type_ != cond.type_);
    conds.push(cond);
}

pub fn remove_condition(status: &mut DeploymentStatus, type_: &str) {
    if let Some(conds) = status.conditions.as_mut() {
        conds.retain(|c| c.type_ != type_);
        if conds.is_empty() {
            status.conditions = None;
        }
    }
}

/// Upstream `calculateStatus`.
pub fn calculate_status(
    d: &Deployment,
    all: &[&ReplicaSet],
    new: Option<&ReplicaSet>,
    now: Timestamp,
) -> DeploymentStatus {
    let available = available_total(all.iter().copied());
    let total = spec_total(all.iter().copied());
    let mut status = DeploymentStatus {
        observed_generation: d.metadata.generation,
        replicas: Some(actual_total(all.iter().copied())),
        updated_replicas: Some(new.map_or(0, |rs| actual_total([rs]))),
        ready_replicas: Some(ready_total(all.iter().copied())),
        available_replicas: Some(available),
        unavailable_replicas: Some((total - available).max(0)),
        collision_count: d.status.as_ref().and_then(|s| s.collision_count),
        conditions: None,
        terminating_replicas: None,
    };
    for c in d
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default()
    {
        set_condition(&mut status, c);
    }
    if available >= replicas(d) - max_unavailable(d) {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.".into(),
                now,
            ),
        );
    } else {
        set_condition(
            &mut status,
            new_condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.".into(),
                now,
            ),
        );
    }
    status
}

pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

/// `DeploymentComplete`.
pub fn complete(d: &Deployment, s: &DeploymentStatus) -> bool {
    let n = replicas(d);
    s.updated_replicas.unwrap_or(0) == n
        && s.replicas.unwrap_or(0) == n
        && s.available_replicas.unwrap_or(0) == n
        && s.observed_generation.unwrap_or(0) >= d.metadata.generation.unwrap_or(0)
}

/// `DeploymentProgressing`: more updated, fewer old, more ready or more available replicas
/// than the stored status says.
pub fn progressing(d: &Deployment, s: &DeploymentStatus) -> bool {
    let old = d.status.clone().unwrap_or_default();
    let n = |v: Option<i32>| v.unwrap_or(0);
    let old_old = n(old.replicas) - n(old.updated_replicas);
    let new_old = n(s.replicas) - n(s.updated_replicas);
    n(s.updated_replicas) > n(old.updated_replicas)
        || new_old < old_old
        || n(s.ready_replicas) > n(old.ready_replicas)
        || n(s.available_replicas) > n(old.available_replicas)
}

/// `DeploymentTimedOut`: no progress for `progressDeadlineSeconds` since the Progressing
/// condition last moved.
pub fn timed_out(d: &Deployment, s: &DeploymentStatus, now: Timestamp) -> bool {
    let Some(deadline) = progress_deadline(d) else {
        return false;
    };
    let Some(cond) = condition(Some(s), "Progressing") else {
        return false;
    };
    match cond.reason.as_deref() {
        Some(NEW_RS_AVAILABLE) => false,
        Some(TIMED_OUT) => true,
        _ => cond.last_update_time.as_ref().is_some_and(|from| {
            from.0
                .saturating_add(SignedDuration::from_secs(i64::from(deadline)))
                .is_ok_and(|at| at < now)
        }),
    }
}

/// `requeueStuckDeployment`: when to look again so a stalled rollout times out on time.
pub fn stuck_requeue(
    d: &Deployment,
    s: &DeploymentStatus,
    now: Timestamp,
) -> Option<std::time::Duration> {
    let deadline = progress_deadline(d)?;
    let cond = condition(d.status.as_ref(), "Progressing")?;
    if complete(d, s) || cond.reason.as_deref() == Some(TIMED_OUT) {
        return None;
    }
    let from = cond.last_update_time.as_ref()?.0;
    let at = from
        .saturating_add(SignedDuration::from_secs(i64::from(deadline)))
        .ok()?;
    let wait = now.duration_until(at);
    if wait < SignedDuration::from_secs(1) {
        Some(std::time::Duration::from_millis(100))
    } else {
        Some(wait.unsigned_abs() + std::time::Duration::from_secs(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(replicas: i32, surge: Value, unavailable: Value) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "d1", "generation": 2,
                         "annotations": {"kubernetes.io/change-cause": "v2", REVISION: "1"}},
            "spec": {"replicas": replicas,
                     "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}},
                     "progressDeadlineSeconds": 600,
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox:2"}]}}}
        }))
        .expect("deployment")
    }

    fn rs(
        name: &str,
        created: &str,
        image: &str,
        spec: i32,
        available: i32,
        annotations: Value,
    ) -> ReplicaSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"),
                         "creationTimestamp": created, "annotations": annotations},
            "spec": {"replicas": spec, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web", HASH_LABEL: name}},
                                  "spec": {"containers": [{"name": "c", "image": image}]}}},
            "status": {"replicas": spec, "readyReplicas": available, "availableReplicas": available}
        }))
        .expect("rs")
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailability_down() {
        let d = deployment(10, json!("25%"), json!("25%"));
        assert_eq!(fenceposts(&d, 10), (3, 2));
        assert_eq!(max_surge(&d), 3);
        assert_eq!(max_unavailable(&d), 2);
        let d = deployment(3, json!(0), json!("10%"));
        assert_eq!(fenceposts(&d, 3), (0, 1));
        let d = deployment(2, json!(1), json!(5));
        assert_eq!(max_unavailable(&d), 2);
    }

    #[test]
    fn hashes_are_stable_and_ignore_the_hash_label() {
        let d = deployment(3, json!(1), json!(0));
        let t = deployment_template(&d);
        let h = template_hash(&t, None);
        assert_eq!(h, template_hash(&t, None));
        assert_ne!(h, template_hash(&t, Some(1)));
        assert!(
            h.bytes()
                .all(|b| b"bcdfghjklmnpqrstvwxz2456789".contains(&b)),
            "{h}"
        );
        let mut labelled = t.clone();
        if let Some(l) = labelled.metadata.as_mut().and_then(|m| m.labels.as_mut()) {
            l.insert(HASH_LABEL.into(), h.clone());
        }
        assert!(equal_ignore_hash(&t, &labelled));
        let old = rs("a", "2026-01-01T00:00:00Z", "busybox:1", 3, 3, json!({}));
        let new = rs("b", "2026-01-01T00:01:00Z", "busybox:2", 0, 0, json!({}));
        assert_eq!(find_new(&d, &[old.clone(), new.clone()]), Some(1));
        assert_eq!(find_new(&d, &[old]), None);
    }

    #[test]
    fn revisions_and_annotations() {
        let d = deployment(3, json!(1), json!(0));
        let mut new = rs(
            "b",
            "2026-01-01T00:01:00Z",
            "busybox:2",
            0,
            0,
            json!({REVISION: "1"}),
        );
        assert!(set_new_rs_annotations(&d, &mut new, 3, false));
        let ann = new.metadata.annotations.clone().unwrap_or_default();
        assert_eq!(ann.get(REVISION).map(String::as_str), Some("3"));
        assert_eq!(ann.get(REVISION_HISTORY).map(String::as_str), Some("1"));
        assert_eq!(
            ann.get("kubernetes.io/change-cause").map(String::as_str),
            Some("v2")
        );
        assert_eq!(ann.get(DESIRED_REPLICAS).map(String::as_str), Some("3"));
        assert_eq!(ann.get(MAX_REPLICAS).map(String::as_str), Some("4"));
        assert!(!set_new_rs_annotations(&d, &mut new, 3, true));
        assert_eq!(rs_revision(&new), 3);
    }

    #[test]
    fn a_rolling_update_surges_then_trades_available_old_pods() {
        // 3 replicas, maxSurge 1, maxUnavailable 0.
        let d = deployment(3, json!(1), json!(0));
        let old = rs("a", "2026-01-01T00:00:00Z", "busybox:1", 3, 3, json!({}));
        let mut new = rs("b", "2026-01-01T00:01:00Z", "busybox:2", 0, 0, json!({}));
        assert_eq!(new_rs_replicas(&d, &[&old, &new], &new), 1);
        // The new pod is not available yet: nothing old may go.
        new = rs("b", "2026-01-01T00:01:00Z", "busybox:2", 1, 0, json!({}));
        let all = vec![old.clone(), new.clone()];
        assert_eq!(scale_down_old(&d, &all, &[0], Some(1)), vec![]);
        assert_eq!(new_rs_replicas(&d, &[&old, &new], &new), 1);
        // Once it is available, one old pod goes.
        new = rs("b", "2026-01-01T00:01:00Z", "busybox:2", 1, 1, json!({}));
        let all = vec![old, new];
        assert_eq!(scale_down_old(&d, &all, &[0], Some(1)), vec![(0, 2)]);
    }

    #[test]
    fn unhealthy_old_replicas_go_first() {
        // 4 replicas, maxSurge 1, maxUnavailable 1: the old set has 2 unavailable pods.
        let d = deployment(4, json!(1), json!(1));
        let old = rs("a", "2026-01-01T00:00:00Z", "busybox:1", 4, 2, json!({}));
        let new = rs("b", "2026-01-01T00:01:00Z", "busybox:2", 1, 0, json!({}));
        // allPods 5 - minAvailable 3 - newUnavailable 1 = 1 unhealthy may go; available 2 < 3.
        assert_eq!(scale_down_old(&d, &[old, new], &[0], Some(1)), vec![(0, 3)]);
    }

    #[test]
    fn scaling_a_rollout_in_flight_is_proportional() {
        // From 10 (surge 3) to 20 replicas while old has 8 and new 5.
        let mut d = deployment(20, json!("25%"), json!("25%"));
        d.status = Some(DeploymentStatus {
            replicas: Some(13),
            ..Default::default()
        });
        let max = json!({MAX_REPLICAS: "13", DESIRED_REPLICAS: "10"});
        let old = rs("a", "2026-01-01T00:00:00Z", "busybox:1", 8, 8, max.clone());
        let new = rs("b", "2026-01-01T00:01:00Z", "busybox:2", 5, 0, max);
        let all = vec![old, new];
        assert!(is_scaling_event(&d, &all));
        let targets = scale_targets(&d, &all, Some(1));
        assert_eq!(targets, ScalePlan::Proportional(vec![(0, 15), (1, 10)]));
        // A single active set simply takes the count.
        let only = vec![rs(
            "a",
            "2026-01-01T00:00:00Z",
            "busybox:2",
            3,
            3,
            json!({}),
        )];
        assert_eq!(
            scale_targets(&d, &only, Some(0)),
            ScalePlan::Resize(vec![(0, 20)])
        );
    }

    #[test]
    fn conditions_and_deadlines() {
        let now: Timestamp = "2026-01-01T00:10:00Z".parse().expect("time");
        let mut d = deployment(2, json!(1), json!(0));
        let old = rs("a", "2026-01-01T00:00:00Z", "busybox:2", 2, 2, json!({}));
        let s = calculate_status(&d, &[&old], Some(&old), now);
        assert_eq!(s.updated_replicas, Some(2));
        assert_eq!(
            condition(Some(&s), "Available").map(|c| c.status.as_str()),
            Some("True")
        );
        d.metadata.generation = Some(2);
        assert!(complete(&d, &s));
        let mut stalled = s.clone();
        set_condition(
            &mut stalled,
            new_condition(
                "Progressing",
                "True",
                RS_UPDATED,
                "x".into(),
                "2026-01-01T00:00:00Z".parse().expect("time"),
            ),
        );
        let later: Timestamp = "2026-01-01T00:10:01Z".parse().expect("time");
        assert!(
            timed_out(&d, &stalled, later),
            "600 s after the last progress"
        );
        assert!(!timed_out(&d, &stalled, now), "exactly at the deadline");
        assert!(!timed_out(
            &d,
            &stalled,
            "2026-01-01T00:05:00Z".parse().expect("time")
        ));
        // Same status and reason: nothing changes, the times stay.
        let before = stalled.clone();
        set_condition(
            &mut stalled,
            new_condition("Progressing", "True", RS_UPDATED, "y".into(), now),
        );
        assert_eq!(before, stalled);
        d.status = Some(stalled.clone());
        let mut unfinished = stalled.clone();
        unfinished.available_replicas = Some(1);
        let wait = stuck_requeue(
            &d,
            &unfinished,
            "2026-01-01T00:09:00Z".parse().expect("time"),
        );
        assert_eq!(wait, Some(std::time::Duration::from_secs(61)));
        assert!(progressing(
            &d,
            &DeploymentStatus {
                updated_replicas: Some(3),
                ..stalled
            }
        ));
    }
}
