//! What objects use of a quota, as kube-apiserver v1.33's quota evaluators
//! (`pkg/quota/v1/evaluator/core`, `generic`) measure it, and the check the `ResourceQuota`
//! admission plugin makes of a new or changed object against the quotas of its namespace.
//!
//! Pods use `pods`, cpu, memory, ephemeral storage, huge pages and extended resources (their
//! requests and limits as the pod's totals) while they are not finished nor past their
//! deletion grace; every pod in storage counts in `count/pods`. Services use `services`,
//! `services.nodeports` and `services.loadbalancers`; claims `persistentvolumeclaims` and
//! `requests.storage`, also per storage class; any other object one `count/<resource>[.<group>]`
//! (and the legacy name of configmaps, secrets, resourcequotas, replicationcontrollers).
//! Only pods answer to scopes.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use apimachinery::json::{arr, obj, str_at};
use apimachinery::qos::{self, QosClass};
use apimachinery::quantity::Quantity;
use apimachinery::quantity_text::Format;

use super::{
    BEST_EFFORT, CROSS_NAMESPACE_POD_AFFINITY, NOT_BEST_EFFORT, NOT_TERMINATING, PRIORITY_CLASS,
    TERMINATING,
};
use crate::limitrange::{is_extended, is_native, pod_totals, resources, Amount};

/// Amounts by resource name.
pub type Usage = BTreeMap<String, Amount>;

/// A whole number of objects, as upstream counts them (`DecimalSI`).
fn count(n: usize) -> Amount {
    Amount {
        q: Quantity::from_units(i128::try_from(n).unwrap_or(i128::MAX)),
        format: Format::DecimalSI,
    }
}

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// How one kind of object is measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Evaluator {
    Pods,
    Services,
    Claims,
    /// Objects of any other resource, counted; `alias` is the legacy name of the count.
    Count {
        object_count: String,
        alias: Option<&'static str>,
    },
}

/// `count/<resource>` for the core group, `count/<resource>.<group>` otherwise.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.loadbalancers",
    "services.nodeports",
];

const CLAIM_RESOURCES: &[&str] = &["persistentvolumeclaims", "requests.storage"];

/// The resources a pod that lacks a request or limit for them may not be created under
/// (the evaluator's `validationSet`).
const MUST_SPECIFY: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

impl Evaluator {
    /// The evaluator of objects of `group`/`plural`.
    pub fn of(group: &str, plural: &str) -> Evaluator {
        match (group, plural) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::Claims,
            _ => Evaluator::Count {
                object_count: object_count_name(group, plural),
                alias: match (group, plural) {
                    ("", "configmaps") => Some("configmaps"),
                    ("", "secrets") => Some("secrets"),
                    ("", "resourcequotas") => Some("resourcequotas"),
                    ("", "replicationcontrollers") => Some("replicationcontrollers"),
                    _ => None,
                },
            },
        }
    }

    /// Whether the plugin checks updates of these objects too (a service may change its
    /// type, a claim grow), not only creates.
    pub fn checks_updates(&self) -> bool {
        matches!(self, Evaluator::Services | Evaluator::Claims)
    }

    /// `MatchingResources`: those of `names` this evaluator measures.
    pub fn matching_resources<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        names
            .into_iter()
            .filter(|n| self.measures(n))
            .map(str::to_string)
            .collect()
    }

    fn measures(&self, name: &str) -> bool {
        match self {
            Evaluator::Pods => {
                POD_RESOURCES.contains(&name)
                    || name.starts_with("hugepages-")
                    || name.starts_with("requests.hugepages-")
                    || (!is_native(name) && name.starts_with("requests."))
            }
            Evaluator::Services => SERVICE_RESOURCES.contains(&name),
            Evaluator::Claims => {
                name == "count/persistentvolumeclaims"
                    || CLAIM_RESOURCES.contains(&name)
                    || CLAIM_RESOURCES
                        .iter()
                        .any(|r| name.ends_with(&format!("{STORAGE_CLASS_SUFFIX}{r}")))
            }
            Evaluator::Count {
                object_count,
                alias,
            } => name == object_count || *alias == Some(name),
        }
    }

    /// Whether `obj` falls in the scope `req` picks (only pods fall in any).
    pub fn matches_scope(&self, req: &ScopeRequirement, obj: &Value) -> bool {
        match self {
            Evaluator::Pods => pod_matches_scope(req, obj),
            _ => false,
        }
    }

    /// `Usage`: what `obj` uses, at time `now`.
    pub fn usage(&self, obj: &Value, now: jiff::Timestamp) -> Usage {
        match self {
            Evaluator::Pods => pod_usage(obj, now),
            Evaluator::Services => service_usage(obj),
            Evaluator::Claims => claim_usage(obj),
            Evaluator::Count {
                object_count,
                alias,
            } => {
                let mut u = Usage::from([(object_count.clone(), count(1))]);
                if let Some(a) = alias {
                    u.insert(a.to_string(), count(1));
                }
                u
            }
        }
    }

    /// `Constraints`: a pod under a quota of cpu or memory must give the matching request
    /// or limit in every container (`must specify limits.cpu for: c1; requests.cpu for: c1`).
    pub fn constraints(&self, required: &[String], obj: &Value) -> Result<(), MustSpecify> {
        if *self != Evaluator::Pods {
            return Ok(());
        }
        let required: BTreeSet<&str> = required
            .iter()
            .map(String::as_str)
            .filter(|r| MUST_SPECIFY.contains(r))
            .collect();
        let mut missing: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        for c in arr(spec.get("containers"))
            .iter()
            .chain(arr(spec.get("initContainers")))
        {
            let has = compute_usage(
                &resources(c.pointer("/resources/requests")),
                &resources(c.pointer("/resources/limits")),
            );
            for r in &required {
                if !has.contains_key(*r) {
                    missing
                        .entry(r.to_string())
                        .or_default()
                        .insert(str_at(c, &["name"]).to_string());
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(MustSpecify(missing))
        }
    }
}

/// The containers of a pod that leave out a request or limit a quota limits, by resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must specify {}", must_specify_text(.0))]
pub struct MustSpecify(pub BTreeMap<String, BTreeSet<String>>);

fn must_specify_text(missing: &BTreeMap<String, BTreeSet<String>>) -> String {
    missing
        .iter()
        .map(|(r, names)| {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            format!("{r} for: {}", names.join(","))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One scope a quota picks objects by: its `scopes` (operator `Exists`) and its
/// `scopeSelector` expressions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeRequirement {
    pub scope: String,
    pub operator: String,
    pub values: Vec<String>,
}

/// `getScopeSelectorsFromQuota`.
pub fn scope_requirements(quota: &Value) -> Vec<ScopeRequirement> {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mut out: Vec<ScopeRequirement> = arr(quota.pointer("/spec/scopes"))
        .iter()
        .map(|s| ScopeRequirement {
            scope: text(s),
            operator: "Exists".into(),
            values: Vec::new(),
        })
        .collect();
    for req in arr(quota.pointer("/spec/scopeSelector/matchExpressions")) {
        out.push(ScopeRequirement {
            scope: str_at(req, &["scopeName"]).to_string(),
            operator: str_at(req, &["operator"]).to_string(),
            values: arr(req.get("values")).iter().map(text).collect(),
        });
    }
    out
}

/// The names of a quota's `status.hard`.
fn hard_names(quota: &Value) -> Vec<&str> {
    obj(quota.pointer("/status/hard"))
        .into_iter()
        .flatten()
        .map(|(k, _)| k.as_str())
        .collect()
}

/// `Matches`: the quota limits something `ev` measures and `obj` falls in all its scopes.
pub fn quota_matches(ev: &Evaluator, quota: &Value, obj: &Value) -> bool {
    !ev.matching_resources(hard_names(quota)).is_empty()
        && scope_requirements(quota)
            .iter()
            .all(|r| ev.matches_scope(r, obj))
}

fn pod_matches_scope(req: &ScopeRequirement, pod: &Value) -> bool {
    let terminating = pod
        .pointer("/spec/activeDeadlineSeconds")
        .and_then(Value::as_i64)
        .is_some_and(|s| s >= 0);
    let best_effort = || qos::of_pod(pod) == QosClass::BestEffort;
    match req.scope.as_str() {
        TERMINATING => terminating,
        NOT_TERMINATING => !terminating,
        BEST_EFFORT => best_effort(),
        NOT_BEST_EFFORT => !best_effort(),
        PRIORITY_CLASS => {
            let class = str_at(pod, &["spec", "priorityClassName"]);
            let has = !class.is_empty();
            match req.operator.as_str() {
                "Exists" => has,
                "DoesNotExist" => !has,
                "In" => has && req.values.iter().any(|v| v == class),
                "NotIn" => !has || !req.values.iter().any(|v| v == class),
                _ => false,
            }
        }
        CROSS_NAMESPACE_POD_AFFINITY => cross_namespace_affinity(pod),
        _ => false,
    }
}

/// `usesCrossNamespacePodAffinity`: an affinity or anti-affinity term naming namespaces
/// or a namespace selector.
fn cross_namespace_affinity(pod: &Value) -> bool {
    let crosses = |term: &Value| {
        !arr(term.get("namespaces")).is_empty()
            || term.get("namespaceSelector").is_some_and(|s| !s.is_null())
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = pod.pointer(&format!("/spec/affinity/{kind}")) else {
            return false;
        };
        arr(a.get("requiredDuringSchedulingIgnoredDuringExecution"))
            .iter()
            .any(crosses)
            || arr(a.get("preferredDuringSchedulingIgnoredDuringExecution"))
                .iter()
                .any(|w| w.get("podAffinityTerm").is_some_and(crosses))
    })
}

/// `QuotaV1Pod`: a pod counts until it finished or its deletion grace ran out.
pub fn pod_counts(pod: &Value, now: jiff::Timestamp) -> bool {
    let phase = str_at(pod, &["status", "phase"]);
    if phase == "Succeeded" || phase == "Failed" {
        return false;
    }
    match grace_end(pod) {
        Some(end) => now <= end,
        None => true,
    }
}

/// When a pod being deleted with a grace period stops counting.
pub fn grace_end(pod: &Value) -> Option<jiff::Timestamp> {
    let deleted: jiff::Timestamp = pod
        .pointer("/metadata/deletionTimestamp")?
        .as_str()?
        .parse()
        .ok()?;
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")?
        .as_i64()?;
    deleted
        .checked_add(jiff::SignedDuration::from_secs(grace))
        .ok()
}

fn add_into(total: &mut Usage, more: &Usage) {
    for (k, v) in more {
        let sum = match total.get(k) {
            Some(t) => t.plus(*v),
            None => *v,
        };
        total.insert(k.clone(), sum);
    }
}

/// `podComputeUsageHelper`: what requests and limits use of quota resources.
fn compute_usage(requests: &Usage, limits: &Usage) -> Usage {
    let mut out = Usage::from([("pods".to_string(), count(1))]);
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            out.insert(r.to_string(), *q);
            out.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            out.insert(format!("limits.{r}"), *q);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        }
        if is_extended(name) {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

/// `PodUsageFunc`.
fn pod_usage(pod: &Value, now: jiff::Timestamp) -> Usage {
    let mut out = Usage::from([("count/pods".to_string(), count(1))]);
    if !pod_counts(pod, now) {
        return out;
    }
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let overhead = resources(spec.get("overhead"));
    let mut requests = pod_totals(spec, "requests");
    add_into(&mut requests, &overhead);
    let mut limits = pod_totals(spec, "limits");
    for (k, v) in &overhead {
        if let Some(l) = limits.get_mut(k) {
            *l = l.plus(*v);
        }
    }
    add_into(&mut out, &compute_usage(&requests, &limits));
    out
}

fn service_usage(svc: &Value) -> Usage {
    let ports = arr(svc.pointer("/spec/ports"));
    let mut out = Usage::from([
        ("count/services".to_string(), count(1)),
        ("services".to_string(), count(1)),
        ("services.loadbalancers".to_string(), count(0)),
        ("services.nodeports".to_string(), count(0)),
    ]);
    match str_at(svc, &["spec", "type"]) {
        "NodePort" => {
            out.insert("services.nodeports".into(), count(ports.len()));
        }
        "LoadBalancer" => {
            let allocate = svc
                .pointer("/spec/allocateLoadBalancerNodePorts")
                .and_then(Value::as_bool)
                != Some(false);
            let n = if allocate {
                ports.len()
            } else {
                ports
                    .iter()
                    .filter(|p| p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) != 0)
                    .count()
            };
            out.insert("services.nodeports".into(), count(n));
            out.insert("services.loadbalancers".into(), count(1));
        }
        _ => {}
    }
    out
}

/// A storage request in whole bytes (`RoundUp(0)`).
fn whole_bytes(a: Amount) -> Amount {
    let nanos = a.q.nanos();
    let unit = 1_000_000_000;
    let rounded = if nanos % unit > 0 {
        (nanos / unit + 1) * unit
    } else {
        nanos - nanos % unit
    };
    Amount {
        q: Quantity::from_nanos(rounded),
        format: a.format,
    }
}

fn claim_usage(pvc: &Value) -> Usage {
    let mut out = Usage::from([
        ("persistentvolumeclaims".to_string(), count(1)),
        ("count/persistentvolumeclaims".to_string(), count(1)),
    ]);
    let annotated = str_at(
        pvc,
        &[
            "metadata",
            "annotations",
            "volume.beta.kubernetes.io/storage-class",
        ],
    );
    let class = if annotated.is_empty() {
        str_at(pvc, &["spec", "storageClassName"])
    } else {
        annotated
    };
    if !class.is_empty() {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            count(1),
        );
    }
    let requested = resources(pvc.pointer("/spec/resources/requests"))
        .get("storage")
        .copied()
        .map(whole_bytes);
    let allocated = resources(pvc.pointer("/status/allocatedResources"))
        .get("storage")
        .copied();
    let storage = match (requested, allocated) {
        (Some(r), Some(a)) if a.q > r.q => Some(whole_bytes(a)),
        (r, _) => r,
    };
    if let Some(s) = storage {
        out.insert("requests.storage".into(), s);
        if !class.is_empty() {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), s);
        }
    }
    out
}

/// The amounts of a resource list in an object (`status.used`).
pub fn list_of(v: Option<&Value>) -> Usage {
    resources(v)
}

/// A resource list as stored: canonical text by name.
pub fn to_json(u: &Usage) -> Value {
    Value::Object(
        u.iter()
            .map(|(k, a)| (k.clone(), Value::String(a.shown())))
            .collect(),
    )
}

/// `quota.Equals`: the same names with the same amounts.
pub fn same(a: &Usage, b: &Usage) -> bool {
    a.len() == b.len() && a.iter().all(|(k, v)| b.get(k).is_some_and(|w| w.q == v.q))
}

/// `prettyPrint`: `name=amount` in name order, comma-separated.
fn pretty(u: &Usage) -> String {
    u.iter()
        .map(|(k, v)| format!("{k}={}", v.shown()))
        .collect::<Vec<_>>()
        .join(",")
}

fn mask(u: &Usage, names: &BTreeSet<String>) -> Usage {
    u.iter()
        .filter(|(k, _)| names.contains(*k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// The total usage of `items` (objects `ev` measures) that fall in all the scopes of
/// `scopes`, for the resources `names`, each starting from zero (`CalculateUsageStats`).
pub fn usage_of<'a>(
    ev: &Evaluator,
    names: &[String],
    scopes: &[ScopeRequirement],
    items: impl IntoIterator<Item = &'a Value>,
    now: jiff::Timestamp,
) -> Usage {
    let mut total: Usage = names.iter().map(|n| (n.clone(), count(0))).collect();
    for item in items {
        if scopes.iter().all(|s| ev.matches_scope(s, item)) {
            add_into(&mut total, &ev.usage(item, now));
        }
    }
    let wanted: BTreeSet<String> = names.iter().cloned().collect();
    mask(&total, &wanted)
}

/// Why the plugin refuses an object (the 403's reason, in upstream's words).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    #[error("failed quota: {quota}: {missing}")]
    Constraints { quota: String, missing: MustSpecify },
    /// The quota limits what the object uses but the controller has not counted it yet.
    #[error("status unknown for quota: {quota}, resources: {}", .resources.join(","))]
    StatusUnknown {
        quota: String,
        resources: Vec<String>,
    },
    #[error("quota usage is negative for resource(s): {}", .resources.join(","))]
    Negative { resources: Vec<String> },
    /// What the object asks for, what is used and the limit, of the resources it exceeds.
    #[error("exceeded quota: {quota}, requested: {}, used: {}, limited: {}",
        pretty(.requested), pretty(.used), pretty(.limited))]
    Exceeded {
        quota: String,
        requested: Usage,
        used: Usage,
        limited: Usage,
    },
}

/// The new `status.used` of a quota the admitted object is charged to.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    /// Its index in the quotas checked.
    pub index: usize,
    pub used: Usage,
}

/// `CheckRequest`: whether `obj` (replacing `old` on an update) fits every quota of
/// `quotas` that applies to it, and the usage each such quota has with it charged.
pub fn check(
    ev: &Evaluator,
    quotas: &[Value],
    obj: &Value,
    old: Option<&Value>,
    now: jiff::Timestamp,
) -> Result<Vec<Charge>, Refusal> {
    let mut interesting = Vec::new();
    for (i, quota) in quotas.iter().enumerate() {
        if !quota_matches(ev, quota, obj) {
            continue;
        }
        let name = str_at(quota, &["metadata", "name"]);
        let restricted = ev.matching_resources(hard_names(quota));
        if let Err(missing) = ev.constraints(&restricted, obj) {
            return Err(Refusal::Constraints {
                quota: name.to_string(),
                missing,
            });
        }
        let used = obj_keys(quota.pointer("/status/used"));
        let hard = obj_keys(quota.pointer("/status/hard"));
        if restricted
            .iter()
            .any(|r| hard.contains(r) && !used.contains(r))
        {
            let mut resources = restricted.clone();
            resources.sort();
            return Err(Refusal::StatusUnknown {
                quota: name.to_string(),
                resources,
            });
        }
        interesting.push(i);
    }
    if interesting.is_empty() {
        return Ok(Vec::new());
    }
    let input = ev.usage(obj, now);
    let negative: Vec<String> = input
        .iter()
        .filter(|(_, v)| v.q.is_negative())
        .map(|(k, _)| k.clone())
        .collect();
    if !negative.is_empty() {
        return Err(Refusal::Negative {
            resources: negative,
        });
    }
    let previous = old.map(|o| (o, ev.usage(o, now)));
    let mut charges = Vec::new();
    for i in interesting {
        let quota = &quotas[i];
        let delta = match &previous {
            Some((o, prev)) if quota_matches(ev, quota, o) => subtract_non_negative(&input, prev),
            _ => input.clone(),
        };
        let delta: Usage = delta.into_iter().filter(|(_, v)| !v.q.is_zero()).collect();
        if delta.is_empty() {
            continue;
        }
        let hard = list_of(quota.pointer("/status/hard"));
        let used = list_of(quota.pointer("/status/used"));
        let hard_keys: BTreeSet<String> = hard.keys().cloned().collect();
        let requested = mask(&delta, &hard_keys);
        let mut new_used = used.clone();
        add_into(&mut new_used, &requested);
        let exceeded: BTreeSet<String> = requested
            .keys()
            .filter(|k| match (new_used.get(*k), hard.get(*k)) {
                (Some(u), Some(h)) => u.q > h.q,
                _ => false,
            })
            .cloned()
            .collect();
        if !exceeded.is_empty() {
            return Err(Refusal::Exceeded {
                quota: str_at(quota, &["metadata", "name"]).to_string(),
                requested: mask(&requested, &exceeded),
                used: mask(&used, &exceeded),
                limited: mask(&hard, &exceeded),
            });
        }
        charges.push(Charge {
            index: i,
            used: new_used,
        });
    }
    Ok(charges)
}

fn obj_keys(v: Option<&Value>) -> BTreeSet<String> {
    obj(v)
        .into_iter()
        .flatten()
        .map(|(k, _)| k.clone())
        .collect()
}

/// `SubtractWithNonNegativeResult`.
fn subtract_non_negative(a: &Usage, b: &Usage) -> Usage {
    a.iter()
        .map(|(k, v)| {
            let q = match b.get(k) {
                Some(w) => v.q.saturating_sub(w.q),
                None => v.q,
            };
            let q = if q.is_negative() { Quantity::ZERO } else { q };
            (
                k.clone(),
                Amount {
                    q,
                    format: v.format,
                },
            )
        })
        .collect()
}
