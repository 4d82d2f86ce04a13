//! LimitRanges (core v1, namespaced) and the `LimitRanger` admission plugin's pure part.
//!
//! A LimitRange bounds what each container, pod or claim of its namespace may ask for and
//! fills in the requests and limits a container leaves out. The kind: upstream's item
//! defaults (`default` from `max`, `defaultRequest` from `default` or `min`),
//! `ValidateLimitRange` (min <= defaultRequest <= default <= max, ratio >= 1) and the
//! NAME / CREATED AT columns. The plugin (kube-apiserver v1.33
//! `plugin/pkg/admission/limitranger`): [`default_pod`] is its mutating half on a new pod,
//! [`check_pod`] and [`check_claim`] its validating half, each against one LimitRange.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::api::core::v1::LimitRange;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, obj};
use apimachinery::names::qualified_name;
use apimachinery::quantity::Quantity;
use apimachinery::quantity_text::{canonical_of, format_of, go_debug, Format};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "limitranges",
    singular: "limitrange",
    kind: "LimitRange",
    list_kind: "LimitRangeList",
    namespaced: true,
    short_names: &["limits"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &LimitRanges,
};

pub const CONTAINER: &str = "Container";
pub const POD: &str = "Pod";
pub const CLAIM: &str = "PersistentVolumeClaim";

/// The annotation a defaulted pod gets, naming what was set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

pub(crate) const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

#[derive(Debug)]
struct LimitRanges;

impl Strategy for LimitRanges {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<LimitRange>(obj)
    }

    /// `SetDefaults_LimitRangeItem`: a Container item's missing `default` comes from `max`,
    /// its missing `defaultRequest` from `default`, then from `min`.
    fn apply_defaults(&self, lr: &mut Map<String, Value>) {
        let Some(items) = lr
            .get_mut("spec")
            .and_then(|s| s.get_mut("limits"))
            .and_then(Value::as_array_mut)
        else {
            return;
        };
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            if item.get("type").and_then(Value::as_str) != Some(CONTAINER) {
                continue;
            }
            fill_missing(item, "default", "max");
            fill_missing(item, "defaultRequest", "default");
            fill_missing(item, "defaultRequest", "min");
        }
    }

    fn validate(&self, lr: &Value, e: &mut FieldErrors) {
        validate_limit_range(lr, e);
    }
}

/// Copies into list `to` of an item each resource of list `from` that `to` lacks.
fn fill_missing(item: &mut Map<String, Value>, to: &str, from: &str) {
    let Some(source) = item.get(from).and_then(Value::as_object).cloned() else {
        return;
    };
    if source.is_empty() {
        return;
    }
    let target = item.entry(to).or_insert_with(|| Value::Object(Map::new()));
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Some(target) = target.as_object_mut() {
        for (name, q) in source {
            target.entry(name).or_insert(q);
        }
    }
}

/// A quantity as upstream holds it: the amount and the format its text was written in,
/// which the canonical text keeps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Amount {
    pub q: Quantity,
    pub format: Format,
}

impl Amount {
    pub fn from_json(v: &Value) -> Option<Amount> {
        let text = quantity_text(v)?;
        Some(Amount {
            q: Quantity::parse(&text)?,
            format: format_of(&text)?,
        })
    }

    /// `Quantity.String()`.
    pub fn shown(self) -> String {
        canonical_of(self.q, self.format)
    }

    /// `Add`: the sum keeps the receiver's format, unless the receiver is zero.
    pub fn plus(self, other: Amount) -> Amount {
        Amount {
            q: self.q.saturating_add(other.q),
            format: if self.q.is_zero() {
                other.format
            } else {
                self.format
            },
        }
    }
}

fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A resource list (`requests`, `max`, …) by resource name; unparsable entries are left
/// out (validation refuses them).
pub(crate) type Resources = BTreeMap<String, Amount>;

pub(crate) fn resources(v: Option<&Value>) -> Resources {
    obj(v)
        .into_iter()
        .flatten()
        .filter_map(|(k, q)| Some((k.clone(), Amount::from_json(q)?)))
        .collect()
}

// ---- validation ----

/// `ValidateLimitRange` beyond object metadata.
fn validate_limit_range(lr: &Value, e: &mut FieldErrors) {
    let items = arr(lr.pointer("/spec/limits"));
    let mut types = BTreeSet::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("spec.limits[{i}]");
        let ty = item.get("type").and_then(Value::as_str).unwrap_or("");
        limit_type_name(e, ty, &format!("{path}.type"));
        if !types.insert(ty) {
            e.duplicate(&format!("{path}.type"), &json!(ty));
        }
        let mut lists: BTreeMap<&str, Resources> = BTreeMap::new();
        let mut keys = BTreeSet::new();
        let mut take = |e: &mut FieldErrors, field: &'static str| {
            let mut list = Resources::new();
            for (name, q) in obj(item.get(field)).into_iter().flatten() {
                let at = format!("{path}.{field}[{name}]");
                resource_name(e, ty, name, &at);
                keys.insert(name.clone());
                match Amount::from_json(q) {
                    Some(a) => {
                        list.insert(name.clone(), a);
                    }
                    None => e.invalid(&at, q, QUANTITY_MSG),
                }
            }
            lists.insert(field, list);
        };
        take(e, "max");
        take(e, "min");
        if ty == POD {
            for field in ["default", "defaultRequest"] {
                if obj(item.get(field)).is_some_and(|m| !m.is_empty()) {
                    e.forbidden(
                        &format!("{path}.{field}"),
                        "may not be specified when `type` is 'Pod'",
                    );
                }
            }
        } else {
            take(e, "default");
            take(e, "defaultRequest");
        }
        if ty == CLAIM {
            let has = |field: &str| obj(item.get(field)).is_some_and(|m| m.contains_key("storage"));
            if !has("min") && !has("max") {
                e.required(
                    &format!("{path}.limits"),
                    "either minimum or maximum storage value is required, but neither was provided",
                );
            }
        }
        take(e, "maxLimitRequestRatio");
        for k in &keys {
            let get = |field: &str| lists.get(field).and_then(|l| l.get(k)).copied();
            bounds(
                e,
                &path,
                k,
                Bounds {
                    min: get("min"),
                    max: get("max"),
                    default: get("default"),
                    default_request: get("defaultRequest"),
                    ratio: get("maxLimitRequestRatio"),
                },
                item,
            );
        }
    }
}

/// One resource's entries in the lists of one item.
struct Bounds {
    min: Option<Amount>,
    max: Option<Amount>,
    default: Option<Amount>,
    default_request: Option<Amount>,
    ratio: Option<Amount>,
}

/// The order rules between one resource's entries; the bad value is shown as Go's `%#v`
/// of the quantity, as upstream passes the quantity itself to `field.Invalid`.
fn bounds(e: &mut FieldErrors, path: &str, k: &str, b: Bounds, item: &Value) {
    let shown_value = |field: &str| {
        let raw = item.get(field).and_then(|l| l.get(k));
        raw.and_then(quantity_text)
            .and_then(|t| go_debug(&t))
            .unwrap_or_else(|| {
                raw.map(apimachinery::field_errors::go_value)
                    .unwrap_or_default()
            })
    };
    let invalid = |e: &mut FieldErrors, field: &str, value_of: &str, detail: String| {
        e.invalid_text(
            &format!("{path}.{field}[{k}]"),
            &shown_value(value_of),
            &detail,
        );
    };
    if let (Some(min), Some(max)) = (b.min, b.max) {
        if min.q > max.q {
            let detail = format!(
                "min value {} is greater than max value {}",
                min.shown(),
                max.shown()
            );
            invalid(e, "min", "min", detail);
        }
    }
    if let Some(dr) = b.default_request {
        if let Some(min) = b.min.filter(|m| m.q > dr.q) {
            let detail = format!(
                "min value {} is greater than default request value {}",
                min.shown(),
                dr.shown()
            );
            invalid(e, "defaultRequest", "defaultRequest", detail);
        }
        if let Some(max) = b.max.filter(|m| dr.q > m.q) {
            let detail = format!(
                "default request value {} is greater than max value {}",
                dr.shown(),
                max.shown()
            );
            invalid(e, "defaultRequest", "defaultRequest", detail);
        }
        if let Some(d) = b.default.filter(|d| dr.q > d.q) {
            let detail = format!(
                "default request value {} is greater than default limit value {}",
                dr.shown(),
                d.shown()
            );
            invalid(e, "defaultRequest", "defaultRequest", detail);
        }
    }
    if let Some(d) = b.default {
        if let Some(min) = b.min.filter(|m| m.q > d.q) {
            let detail = format!(
                "min value {} is greater than default value {}",
                min.shown(),
                d.shown()
            );
            invalid(e, "default", "min", detail);
        }
        if let Some(max) = b.max.filter(|m| d.q > m.q) {
            let detail = format!(
                "default value {} is greater than max value {}",
                d.shown(),
                max.shown()
            );
            invalid(e, "default", "max", detail);
        }
    }
    if let Some(ratio) = b.ratio {
        if ratio.q < Quantity::from_units(1) {
            let detail = format!("ratio {} is less than 1", ratio.shown());
            invalid(e, "maxLimitRequestRatio", "maxLimitRequestRatio", detail);
        }
        if let (Some(min), Some(max)) = (b.min, b.max) {
            let precise = [ratio, min, max]
                .iter()
                .all(|a| a.q.value() < MAX_MILLI_VALUE);
            let (ratio_value, min_value, max_value) = if precise {
                (
                    ratio.q.milli_value() as f64 / 1000.0,
                    min.q.milli_value(),
                    max.q.milli_value(),
                )
            } else {
                (ratio.q.value() as f64, min.q.value(), max.q.value())
            };
            let allowed = max_value as f64 / min_value as f64;
            if ratio_value > allowed {
                let detail = format!(
                    "ratio {} is greater than max/min = {}",
                    ratio.shown(),
                    go_float(allowed)
                );
                invalid(e, "maxLimitRequestRatio", "maxLimitRequestRatio", detail);
            }
        }
    }
    let overcommit_allowed = is_native(k) && !k.starts_with("hugepages-");
    if let (Some(d), Some(dr)) = (b.default, b.default_request) {
        if !overcommit_allowed && d.q != dr.q {
            let detail = format!(
                "default value {} must equal to defaultRequest value {} in {k}",
                d.shown(),
                dr.shown()
            );
            invalid(e, "defaultRequest", "defaultRequest", detail);
        }
    }
}

/// Go's `%f`: six decimals, `+Inf` and `NaN` spelled as Go spells them.
fn go_float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else {
        format!("{f:.6}")
    }
}

/// `validateLimitRangeTypeName`.
fn limit_type_name(e: &mut FieldErrors, ty: &str, path: &str) {
    let errs = qualified_name(ty);
    if !errs.is_empty() {
        for m in errs {
            e.invalid(path, &json!(ty), &m);
        }
        return;
    }
    if !ty.contains('/') && ![POD, CONTAINER, CLAIM].contains(&ty) {
        e.invalid(
            path,
            &json!(ty),
            "must be a standard limit type or fully qualified",
        );
    }
}

/// `validateLimitRangeResourceName`: container resource names for Pod and Container
/// items, any resource name for the others.
fn resource_name(e: &mut FieldErrors, ty: &str, name: &str, path: &str) {
    let errs = qualified_name(name);
    if !errs.is_empty() {
        for m in errs {
            e.invalid(path, &json!(name), &m);
        }
        return;
    }
    let plain = !name.contains('/');
    if plain && !is_standard_resource(name) {
        e.invalid(
            path,
            &json!(name),
            "must be a standard resource type or fully qualified",
        );
        return;
    }
    if ty != POD && ty != CONTAINER {
        return;
    }
    if plain {
        if !is_standard_container_resource(name) {
            e.invalid(
                path,
                &json!(name),
                "must be a standard resource for containers",
            );
        }
    } else if !is_native(name) && !is_extended(name) {
        e.invalid(
            path,
            &json!(name),
            "doesn't follow extended resource name standard",
        );
    }
}

/// `IsStandardResourceName`.
pub(crate) fn is_standard_resource(name: &str) -> bool {
    const STANDARD: &[&str] = &[
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
        "services",
        "replicationcontrollers",
        "resourcequotas",
        "secrets",
        "configmaps",
        "persistentvolumeclaims",
        "storage",
        "requests.storage",
        "services.nodeports",
        "services.loadbalancers",
    ];
    STANDARD.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

/// `IsStandardContainerResourceName`.
fn is_standard_container_resource(name: &str) -> bool {
    ["cpu", "memory", "ephemeral-storage"].contains(&name) || name.starts_with("hugepages-")
}

/// `IsNativeResource`: no domain, or a `kubernetes.io/` one.
pub(crate) fn is_native(name: &str) -> bool {
    !name.contains('/') || name.contains("kubernetes.io/")
}

/// `IsExtendedResourceName`.
pub(crate) fn is_extended(name: &str) -> bool {
    !is_native(name)
        && !name.starts_with("requests.")
        && qualified_name(&format!("requests.{name}")).is_empty()
}

// ---- admission ----

/// Upstream's `resource.MaxMilliValue`: above it amounts compare in whole units.
const MAX_MILLI_VALUE: i128 = (i64::MAX / 1000) as i128;

/// The LimitRanger plugin's refusal of one object by one LimitRange: each broken bound,
/// shown as upstream's error aggregate shows them (one bare, several in brackets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violations(pub Vec<String>);

impl fmt::Display for Violations {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seen = Vec::new();
        for m in &self.0 {
            if !seen.contains(m) {
                seen.push(m.clone());
            }
        }
        match seen.as_slice() {
            [one] => f.write_str(one),
            many => write!(f, "[{}]", many.join(", ")),
        }
    }
}

impl std::error::Error for Violations {}

fn items_of<'a>(lr: &'a Value, ty: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    arr(lr.pointer("/spec/limits"))
        .iter()
        .filter(move |i| i.get("type").and_then(Value::as_str) == Some(ty))
}

/// The mutating half on a new pod (`PodMutateLimitFunc`): each container and init
/// container missing a limit or a request for a resource that `lr`'s Container items
/// default gets the default, and the pod is annotated with what was set.
pub fn default_pod(pod: &mut Value, lr: &Value) {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for item in items_of(lr, CONTAINER) {
        if let Some(m) = obj(item.get("defaultRequest")) {
            requests.extend(m.clone());
        }
        if let Some(m) = obj(item.get("default")) {
            limits.extend(m.clone());
        }
    }
    let mut notes = Vec::new();
    if let Some(spec) = pod.get_mut("spec") {
        for (list, what) in [
            ("containers", "container"),
            ("initContainers", "init container"),
        ] {
            let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
                continue;
            };
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let name = c
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let set_limits = fill(c, "limits", &limits);
                let set_requests = fill(c, "requests", &requests);
                if !set_requests.is_empty() {
                    notes.push(format!(
                        "{} request for {what} {name}",
                        set_requests.join(", ")
                    ));
                }
                if !set_limits.is_empty() {
                    notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
                }
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let Some(meta) = pod.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if !annotations.is_object() {
        *annotations = Value::Object(Map::new());
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            ANNOTATION.into(),
            json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
        );
    }
}

/// Adds to the container's `resources.<part>` each of `defaults` it lacks; the names set,
/// sorted.
fn fill(c: &mut Map<String, Value>, part: &str, defaults: &Map<String, Value>) -> Vec<String> {
    if defaults.is_empty() {
        return Vec::new();
    }
    let resources = c
        .entry("resources")
        .or_insert_with(|| Value::Object(Map::new()));
    if !resources.is_object() {
        *resources = Value::Object(Map::new());
    }
    let Some(resources) = resources.as_object_mut() else {
        return Vec::new();
    };
    let list = resources
        .entry(part)
        .or_insert_with(|| Value::Object(Map::new()));
    if !list.is_object() {
        *list = Value::Object(Map::new());
    }
    let Some(list) = list.as_object_mut() else {
        return Vec::new();
    };
    let mut set: Vec<String> = defaults
        .iter()
        .filter(|(k, _)| !list.contains_key(*k))
        .map(|(k, _)| k.clone())
        .collect();
    for k in &set {
        if let Some(v) = defaults.get(k) {
            list.insert(k.clone(), v.clone());
        }
    }
    set.sort();
    set
}

/// The amounts upstream compares: thousandths when every one fits, whole units otherwise
/// (`requestLimitEnforcedValues`); an absent amount counts as zero.
fn comparable(req: Option<Amount>, lim: Option<Amount>, enforced: Amount) -> (i128, i128, i128) {
    let q = |a: Option<Amount>| a.map(|a| a.q).unwrap_or(Quantity::ZERO);
    let all = [q(req), q(lim), enforced.q];
    if all.iter().all(|x| x.value() <= MAX_MILLI_VALUE) {
        (
            all[0].milli_value(),
            all[1].milli_value(),
            all[2].milli_value(),
        )
    } else {
        (all[0].value(), all[1].value(), all[2].value())
    }
}

/// `minConstraint`.
fn min_rule(
    ty: &str,
    k: &str,
    enforced: Amount,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let (r, l) = (req.get(k).copied(), lim.get(k).copied());
    let (rv, lv, ev) = comparable(r, l, enforced);
    let min = enforced.shown();
    match (r, l) {
        (None, _) => Some(format!(
            "minimum {k} usage per {ty} is {min}.  No request is specified"
        )),
        (Some(r), _) if rv < ev => Some(format!(
            "minimum {k} usage per {ty} is {min}, but request is {}",
            r.shown()
        )),
        (_, Some(l)) if lv < ev => Some(format!(
            "minimum {k} usage per {ty} is {min}, but limit is {}",
            l.shown()
        )),
        _ => None,
    }
}

/// `maxConstraint`.
fn max_rule(
    ty: &str,
    k: &str,
    enforced: Amount,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let (r, l) = (req.get(k).copied(), lim.get(k).copied());
    let (rv, lv, ev) = comparable(r, l, enforced);
    let max = enforced.shown();
    match (r, l) {
        (_, None) => Some(format!(
            "maximum {k} usage per {ty} is {max}.  No limit is specified"
        )),
        (_, Some(l)) if lv > ev => Some(format!(
            "maximum {k} usage per {ty} is {max}, but limit is {}",
            l.shown()
        )),
        (Some(r), _) if rv > ev => Some(format!(
            "maximum {k} usage per {ty} is {max}, but request is {}",
            r.shown()
        )),
        _ => None,
    }
}

/// `maxRequestConstraint`: a claim's request against a max (claims have no limits).
fn max_request_rule(ty: &str, k: &str, enforced: Amount, req: &Resources) -> Option<String> {
    let r = req.get(k).copied();
    let (rv, _, ev) = comparable(r, None, enforced);
    let max = enforced.shown();
    match r {
        None => Some(format!(
            "maximum {k} usage per {ty} is {max}.  No request is specified"
        )),
        Some(r) if rv > ev => Some(format!(
            "maximum {k} usage per {ty} is {max}, but request is {}",
            r.shown()
        )),
        _ => None,
    }
}

/// `limitRequestRatioConstraint`.
fn ratio_rule(
    ty: &str,
    k: &str,
    enforced: Amount,
    req: &Resources,
    lim: &Resources,
) -> Option<String> {
    let (r, l) = (req.get(k).copied(), lim.get(k).copied());
    let (rv, lv, _) = comparable(r, l, enforced);
    let ratio = enforced.shown();
    if r.is_none() || rv == 0 {
        return Some(format!(
            "{k} max limit to request ratio per {ty} is {ratio}, but no request is specified or request is 0"
        ));
    }
    if l.is_none() || lv == 0 {
        return Some(format!(
            "{k} max limit to request ratio per {ty} is {ratio}, but no limit is specified or limit is 0"
        ));
    }
    let observed = lv as f64 / rv as f64;
    let (scaled, allowed) = if enforced.q.value() <= MAX_MILLI_VALUE {
        (observed * 1000.0, enforced.q.milli_value() as f64)
    } else {
        (observed, enforced.q.value() as f64)
    };
    (scaled > allowed).then(|| {
        format!(
            "{k} max limit to request ratio per {ty} is {ratio}, but provided ratio is {}",
            go_float(observed)
        )
    })
}

/// The min, max and ratio rules of one item against one set of requests and limits.
fn item_rules(ty: &str, item: &Value, req: &Resources, lim: &Resources, out: &mut Vec<String>) {
    for (k, v) in resources(item.get("min")) {
        out.extend(min_rule(ty, &k, v, req, lim));
    }
    for (k, v) in resources(item.get("max")) {
        out.extend(max_rule(ty, &k, v, req, lim));
    }
    for (k, v) in resources(item.get("maxLimitRequestRatio")) {
        out.extend(ratio_rule(ty, &k, v, req, lim));
    }
}

fn container_lists(c: &Value) -> (Resources, Resources) {
    (
        resources(c.pointer("/resources/requests")),
        resources(c.pointer("/resources/limits")),
    )
}

fn add_into(total: &mut Resources, more: &Resources) {
    for (k, v) in more {
        let sum = match total.get(k) {
            Some(t) => t.plus(*v),
            None => *v,
        };
        total.insert(k.clone(), sum);
    }
}

fn max_into(total: &mut Resources, other: &Resources) {
    for (k, v) in other {
        if total.get(k).is_none_or(|t| v.q > t.q) {
            total.insert(k.clone(), *v);
        }
    }
}

/// Upstream's `podRequests` / `podLimits` on a new pod: the containers' sum, raised to what
/// the init containers need at their peak (a sidecar's share stays counted for the ones
/// after it and for the app containers).
pub(crate) fn pod_totals(spec: &Value, part: &str) -> Resources {
    let list = |c: &Value| resources(c.pointer(&format!("/resources/{part}")));
    let mut total = Resources::new();
    for c in arr(spec.get("containers")) {
        add_into(&mut total, &list(c));
    }
    let mut sidecars = Resources::new();
    let mut init_peak = Resources::new();
    for c in arr(spec.get("initContainers")) {
        let own = list(c);
        let need = if c.get("restartPolicy").and_then(Value::as_str) == Some("Always") {
            add_into(&mut total, &own);
            add_into(&mut sidecars, &own);
            sidecars.clone()
        } else {
            let mut need = own;
            add_into(&mut need, &sidecars);
            need
        };
        max_into(&mut init_peak, &need);
    }
    max_into(&mut total, &init_peak);
    total
}

/// The validating half on a new pod (`PodValidateLimitFunc`): every container and init
/// container within `lr`'s Container items, the pod's totals within its Pod items.
pub fn check_pod(pod: &Value, lr: &Value) -> Result<(), Violations> {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut out = Vec::new();
    for item in arr(lr.pointer("/spec/limits")) {
        match item.get("type").and_then(Value::as_str) {
            Some(CONTAINER) => {
                let all = arr(spec.get("containers"))
                    .iter()
                    .chain(arr(spec.get("initContainers")));
                for c in all {
                    let (req, lim) = container_lists(c);
                    item_rules(CONTAINER, item, &req, &lim, &mut out);
                }
            }
            Some(POD) => {
                let (req, lim) = (pod_totals(spec, "requests"), pod_totals(spec, "limits"));
                item_rules(POD, item, &req, &lim, &mut out);
            }
            _ => {}
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(Violations(out))
    }
}

/// The validating half on a new claim (`PersistentVolumeClaimValidateLimitFunc`): its
/// requested storage within `lr`'s PersistentVolumeClaim items (claims are not defaulted).
pub fn check_claim(pvc: &Value, lr: &Value) -> Result<(), Violations> {
    let req = resources(pvc.pointer("/spec/resources/requests"));
    let mut out = Vec::new();
    for item in items_of(lr, CLAIM) {
        for (k, v) in resources(item.get("min")) {
            out.extend(min_rule(CLAIM, &k, v, &req, &Resources::new()));
        }
        for (k, v) in resources(item.get("max")) {
            out.extend(max_request_rule(CLAIM, &k, v, &req));
        }
    }
    if out.is_empty() {
        Ok(())
    } else {
        Err(Violations(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn range(items: Value) -> Value {
        let mut lr = json!({"metadata": {"name": "lr", "namespace": "default",
                                         "creationTimestamp": "2026-01-02T14:00:00Z"},
                            "spec": {"limits": items}});
        RESOURCE.apply_defaults(&mut lr);
        lr
    }

    fn container_range() -> Value {
        range(json!([{"type": "Container",
            "min": {"cpu": "100m", "memory": "100Mi"},
            "max": {"cpu": "500m", "memory": "500Mi"},
            "default": {"cpu": "500m", "memory": "500Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "200Mi"}}]))
    }

    #[test]
    fn container_items_are_defaulted_as_upstream() {
        let lr = range(json!([
            {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "1Mi"}},
            {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"memory": "5Mi"}},
            {"type": "Pod", "max": {"cpu": "4"}}]));
        let items = &lr["spec"]["limits"];
        assert_eq!(items[0]["default"], json!({"cpu": "2"}));
        assert_eq!(
            items[0]["defaultRequest"],
            json!({"cpu": "2", "memory": "1Mi"})
        );
        assert_eq!(
            items[1]["defaultRequest"],
            json!({"cpu": "1", "memory": "5Mi"})
        );
        assert_eq!(items[2].get("default"), None);
        assert_eq!(
            messages(RESOURCE.validate_create(&lr)),
            vec!["spec.limits[1].type: Duplicate value: \"Container\""]
        );
        assert!(RESOURCE.validate_create(&container_range()).is_ok());
    }

    #[test]
    fn order_rules_and_messages_follow_upstream() {
        let lr = range(json!([{"type": "Container",
            "min": {"cpu": "1"}, "max": {"cpu": "500m"},
            "default": {"memory": "1Gi"}, "defaultRequest": {"memory": "2Gi"}}]));
        assert_eq!(
            messages(RESOURCE.validate_create(&lr)),
            vec![
                "spec.limits[0].min[cpu]: Invalid value: resource.Quantity{i:resource.int64Amount{value:1, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"1\", Format:\"DecimalSI\"}: min value 1 is greater than max value 500m",
                "spec.limits[0].defaultRequest[cpu]: Invalid value: resource.Quantity{i:resource.int64Amount{value:500, scale:-3}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"500m\", Format:\"DecimalSI\"}: min value 1 is greater than default request value 500m",
                "spec.limits[0].default[cpu]: Invalid value: resource.Quantity{i:resource.int64Amount{value:1, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"1\", Format:\"DecimalSI\"}: min value 1 is greater than default value 500m",
                "spec.limits[0].defaultRequest[memory]: Invalid value: resource.Quantity{i:resource.int64Amount{value:2147483648, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"2Gi\", Format:\"BinarySI\"}: default request value 2Gi is greater than default limit value 1Gi",
            ]
        );
        let pod_defaults = range(json!([{"type": "Pod", "max": {"cpu": "1"},
            "default": {"cpu": "1"}, "defaultRequest": {"cpu": "1"}}]));
        assert_eq!(
            messages(RESOURCE.validate_create(&pod_defaults)),
            vec![
                "spec.limits[0].default: Forbidden: may not be specified when `type` is 'Pod'",
                "spec.limits[0].defaultRequest: Forbidden: may not be specified when `type` is 'Pod'",
            ]
        );
        let ratio = range(
            json!([{"type": "Pod", "maxLimitRequestRatio": {"cpu": "500m"}},
            {"type": "Pod", "min": {"memory": "1Gi"}, "max": {"memory": "2Gi"},
             "maxLimitRequestRatio": {"memory": "3"}}]),
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&ratio)),
            vec![
                "spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value: resource.Quantity{i:resource.int64Amount{value:500, scale:-3}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"500m\", Format:\"DecimalSI\"}: ratio 500m is less than 1",
                "spec.limits[1].type: Duplicate value: \"Pod\"",
                "spec.limits[1].maxLimitRequestRatio[memory]: Invalid value: resource.Quantity{i:resource.int64Amount{value:3, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"3\", Format:\"DecimalSI\"}: ratio 3 is greater than max/min = 2.000000",
            ]
        );
        let names = range(json!([{"type": "Widget"}, {"type": "PersistentVolumeClaim",
            "max": {"cpu": "1", "bogus": "1"}},
            {"type": "Pod", "max": {"pods": "1", "example.com/gpu": "1", "cpu": "lots"}}]));
        assert_eq!(
            messages(RESOURCE.validate_create(&names)),
            vec![
                "spec.limits[0].type: Invalid value: \"Widget\": must be a standard limit type or fully qualified",
                "spec.limits[1].max[bogus]: Invalid value: \"bogus\": must be a standard resource type or fully qualified",
                "spec.limits[1].limits: Required value: either minimum or maximum storage value is required, but neither was provided",
                format!("spec.limits[2].max[cpu]: Invalid value: \"lots\": {QUANTITY_MSG}").as_str(),
                "spec.limits[2].max[pods]: Invalid value: \"pods\": must be a standard resource for containers",
            ]
        );
        let gpu = range(json!([{"type": "Container",
            "default": {"example.com/gpu": "2"}, "defaultRequest": {"example.com/gpu": "1"}}]));
        assert_eq!(
            messages(RESOURCE.validate_create(&gpu)),
            vec!["spec.limits[0].defaultRequest[example.com/gpu]: Invalid value: resource.Quantity{i:resource.int64Amount{value:1, scale:0}, d:resource.infDecAmount{Dec:(*inf.Dec)(nil)}, s:\"1\", Format:\"DecimalSI\"}: default value 2 must equal to defaultRequest value 1 in example.com/gpu"]
        );
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": containers}})
    }

    #[test]
    fn missing_requests_and_limits_get_the_defaults() {
        let lr = container_range();
        let mut p = pod(json!([{"name": "a"},
            {"name": "b", "resources": {"limits": {"cpu": "300m"}, "requests": {"cpu": "300m"}}},
            {"name": "c", "resources": {"limits": {"cpu": "200m", "memory": "200Mi"},
                                        "requests": {"cpu": "200m", "memory": "200Mi"}}}]));
        p["spec"]["initContainers"] = json!([{"name": "i"}]);
        default_pod(&mut p, &lr);
        let c = &p["spec"]["containers"];
        assert_eq!(
            c[0]["resources"],
            json!({"limits": {"cpu": "500m", "memory": "500Mi"},
                                             "requests": {"cpu": "100m", "memory": "200Mi"}})
        );
        assert_eq!(
            c[1]["resources"],
            json!({"limits": {"cpu": "300m", "memory": "500Mi"},
                                             "requests": {"cpu": "300m", "memory": "200Mi"}})
        );
        assert_eq!(c[2]["resources"]["limits"]["memory"], "200Mi");
        assert_eq!(
            p["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; memory request for container b; memory limit for container b; cpu, memory request for init container i; cpu, memory limit for init container i"
        );
        assert!(check_pod(&p, &lr).is_ok());

        // Nothing to default: no annotation.
        let mut untouched = pod(json!([{"name": "a"}]));
        default_pod(
            &mut untouched,
            &range(json!([{"type": "Pod", "max": {"cpu": "1"}}])),
        );
        assert_eq!(untouched, pod(json!([{"name": "a"}])));
    }

    #[test]
    fn bounds_refuse_in_upstream_words() {
        let lr = container_range();
        let refusal = |containers: Value| {
            let mut p = pod(containers);
            default_pod(&mut p, &lr);
            check_pod(&p, &lr)
                .err()
                .map(|v| v.to_string())
                .unwrap_or_default()
        };
        assert_eq!(
            refusal(json!([{"name": "a", "resources": {"limits": {"cpu": "1"}}}])),
            "maximum cpu usage per Container is 500m, but limit is 1"
        );
        assert_eq!(
            refusal(json!([{"name": "a", "resources": {
                "limits": {"cpu": "1000m", "memory": "1Gi"}, "requests": {"cpu": "50m"}}}])),
            "[minimum cpu usage per Container is 100m, but request is 50m, maximum cpu usage per Container is 500m, but limit is 1, maximum memory usage per Container is 500Mi, but limit is 1Gi]"
        );
        assert_eq!(
            refusal(
                json!([{"name": "a", "resources": {"requests": {"memory": "600Mi"},
                                                      "limits": {"memory": "500Mi"}}}])
            ),
            "maximum memory usage per Container is 500Mi, but request is 600Mi"
        );

        let bare = range(
            json!([{"type": "Pod", "min": {"cpu": "1"}, "max": {"memory": "1Gi"},
                                 "maxLimitRequestRatio": {"cpu": "2"}}]),
        );
        let p = pod(json!([
            {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "512Mi"},
                                        "limits": {"cpu": "1", "memory": "512Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "1Gi"},
                                        "limits": {"cpu": "1"}}}]));
        assert_eq!(
            check_pod(&p, &bare).err().map(|v| v.to_string()).unwrap_or_default(),
            "[minimum cpu usage per Pod is 1, but request is 500m, maximum memory usage per Pod is 1Gi, but request is 1536Mi, cpu max limit to request ratio per Pod is 2, but provided ratio is 4.000000]"
        );
        let none = pod(json!([{"name": "a"}]));
        assert_eq!(
            check_pod(&none, &bare).err().map(|v| v.to_string()).unwrap_or_default(),
            "[minimum cpu usage per Pod is 1.  No request is specified, maximum memory usage per Pod is 1Gi.  No limit is specified, cpu max limit to request ratio per Pod is 2, but no request is specified or request is 0]"
        );
    }

    #[test]
    fn init_containers_count_at_their_peak() {
        let lr = range(json!([{"type": "Pod", "max": {"cpu": "1"}}]));
        let mut p = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "400m"}}}]));
        p["spec"]["initContainers"] = json!([
            {"name": "side", "restartPolicy": "Always", "resources": {"limits": {"cpu": "300m"}}},
            {"name": "init", "resources": {"limits": {"cpu": "800m"}}}]);
        // Peak: the sidecar (300m) beside the 800m init container beats 400m + 300m.
        assert_eq!(
            check_pod(&p, &lr)
                .err()
                .map(|v| v.to_string())
                .unwrap_or_default(),
            "maximum cpu usage per Pod is 1, but limit is 1100m"
        );
        p["spec"]["initContainers"][1]["resources"]["limits"]["cpu"] = json!("700m");
        assert!(check_pod(&p, &lr).is_ok());
    }

    #[test]
    fn claims_are_held_to_storage_bounds() {
        let lr = range(json!([{"type": "PersistentVolumeClaim",
                               "min": {"storage": "1Gi"}, "max": {"storage": "2Gi"}}]));
        let claim = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        assert!(check_claim(&claim("1536Mi"), &lr).is_ok());
        assert_eq!(
            check_claim(&claim("3Gi"), &lr).err().map(|v| v.to_string()),
            Some(
                "maximum storage usage per PersistentVolumeClaim is 2Gi, but request is 3Gi".into()
            )
        );
        assert_eq!(
            check_claim(&claim("512Mi"), &lr)
                .err()
                .map(|v| v.to_string()),
            Some(
                "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 512Mi"
                    .into()
            )
        );
        assert_eq!(
            check_claim(&json!({"spec": {}}), &lr).err().map(|v| v.to_string()),
            Some("[minimum storage usage per PersistentVolumeClaim is 1Gi.  No request is specified, maximum storage usage per PersistentVolumeClaim is 2Gi.  No request is specified]".into())
        );
    }

    #[test]
    fn rows() {
        assert_eq!(
            RESOURCE.strategy.cells(&container_range(), now()),
            vec![json!("lr"), json!("2026-01-02T14:00:00Z")]
        );
        assert_eq!(RESOURCE.strategy.columns()[1].0, "Created At");
    }
}
