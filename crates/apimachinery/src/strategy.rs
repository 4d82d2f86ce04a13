//! What a kind is: the discovery entry kubectl reads ([`ResourceInfo`]) and the strategy
//! that holds everything kube-apiserver does differently per kind ([`Strategy`]): defaulting,
//! validation, create/update preparation, status-subresource rules, table columns and field
//! selectors. Generic code calls these hooks and never names a kind; each kind implements
//! them in one file under `kinds/`.

use std::fmt;

use serde_json::{json, Map, Value};

use crate::checks::{meta_update, object_meta, NameRule};
use crate::deletion::GcPolicy;
use crate::field_errors::{FieldError, FieldErrors};
use crate::printing::{default_cells, Column, DEFAULT_COLUMNS};

/// One served resource (e.g. core/v1 pods) and its strategy.
#[derive(Debug, Clone)]
pub struct ResourceInfo {
    /// API group, `""` for core.
    pub group: &'static str,
    pub version: &'static str,
    /// Plural, lower-case: `pods`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub kind: &'static str,
    pub list_kind: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub verbs: &'static [&'static str],
    /// Subresources, as discovery lists them.
    pub subresources: &'static [Subresource],
    /// The kind's rules.
    pub strategy: &'static dyn Strategy,
}

/// Two entries are the same resource when group, version and plural agree.
impl PartialEq for ResourceInfo {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceInfo {}

/// A subresource: its name and the group, version, kind and verbs of what it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// Verbs of a regular collection (kube-apiserver lists them sorted).
pub const ALL_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
pub const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];
pub const CONNECT_VERBS: &[&str] = &["create", "get"];

/// A v1 subresource.
pub const fn sub(
    name: &'static str,
    group: &'static str,
    kind: &'static str,
    verbs: &'static [&'static str],
) -> Subresource {
    Subresource {
        name,
        group,
        version: "v1",
        kind,
        verbs,
    }
}

/// A field a kind's `fieldSelector` accepts (kube-apiserver's field label conversion), and
/// how its value is read from the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SelectableField {
    /// The selector's name for it (`spec.nodeName`, `source`).
    pub name: &'static str,
    /// Where it lives; empty means the name's dotted path.
    pub path: &'static [&'static str],
    /// The text an absent field compares as (`false` for booleans, else empty).
    pub absent: &'static str,
}

impl SelectableField {
    /// A field found at its own dotted path.
    pub const fn new(name: &'static str) -> Self {
        SelectableField {
            name,
            path: &[],
            absent: "",
        }
    }

    /// A field read from another place than its name says (events' `source`).
    pub const fn at(name: &'static str, path: &'static [&'static str]) -> Self {
        SelectableField {
            name,
            path,
            absent: "",
        }
    }

    /// A boolean field, which upstream formats as `false` when unset.
    pub const fn boolean(name: &'static str) -> Self {
        SelectableField {
            name,
            path: &[],
            absent: "false",
        }
    }

    /// The text the selector compares for `obj`.
    pub fn value(&self, obj: &Value) -> String {
        let found = if self.path.is_empty() {
            self.name.split('.').try_fold(obj, |v, k| v.get(k))
        } else {
            crate::json::at(obj, self.path)
        };
        match found {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => n.to_string(),
            _ => self.absent.to_string(),
        }
    }
}

/// Fields every kind's field selector accepts.
pub const METADATA_FIELDS: &[SelectableField] = &[
    SelectableField::new("metadata.name"),
    SelectableField::new("metadata.namespace"),
];

/// Everything kube-apiserver does differently per kind (its `RESTCreateStrategy`,
/// `RESTUpdateStrategy`, defaulting functions, printers and field label conversions).
/// Defaults are what most kinds need; a kind overrides what it does differently.
pub trait Strategy: Send + Sync + fmt::Debug {
    /// Decodes into the kind's typed schema and encodes again (strict field validation
    /// reports what did not survive); see [`typed_round_trip`].
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error>;

    /// `SetDefaults_<Kind>` (and the defaulting admission plugins of a stock cluster), in
    /// place. Runs on create and on every update, status updates included.
    fn apply_defaults(&self, _obj: &mut Map<String, Value>) {}

    /// Which syntax object names follow.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// `Validate<Kind>` beyond object metadata, on create.
    fn validate(&self, _obj: &Value, _errs: &mut FieldErrors) {}

    /// `Validate<Kind>Update` beyond metadata immutability; by default the create rules
    /// applied to the new object.
    fn validate_update(&self, _old: &Value, new: &Value, errs: &mut FieldErrors) {
        self.validate(new, errs);
    }

    /// Conversion from the form clients send to the stored form (a Secret's write-only
    /// `stringData` folds into `data`).
    fn normalize(&self, _obj: &mut Value) {}

    /// `PrepareForCreate`: server-owned fields of a new object (generation, status).
    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
    }

    /// `PrepareForUpdate` of the object itself (not its status subresource), after the
    /// server carried metadata over from `old`.
    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        bump_generation(old, new);
    }

    /// `PrepareForUpdate` of the status subresource: only status changes.
    fn prepare_for_status_update(&self, old: &Value, new: &mut Value) {
        let mut out = old.clone();
        match new.get_mut("status").map(Value::take) {
            Some(s) => out["status"] = s,
            None => {
                if let Some(o) = out.as_object_mut() {
                    o.remove("status");
                }
            }
        }
        *new = out;
    }

    /// Subresources other than `status` whose GET, PUT and PATCH read and write the object
    /// itself but may change only one part of it (a pod's `ephemeralcontainers`).
    fn object_subresources(&self) -> &'static [&'static str] {
        &[]
    }

    /// `PrepareForUpdate` of one of [`Strategy::object_subresources`]: keep of `new` only
    /// what `sub` may change. By default it changes nothing.
    fn prepare_for_subresource_update(&self, _sub: &str, old: &Value, new: &mut Value) {
        *new = old.clone();
    }

    /// `ValidateUpdate` of one of [`Strategy::object_subresources`]; by default the
    /// object's update rules.
    fn validate_subresource_update(
        &self,
        _sub: &str,
        old: &Value,
        new: &Value,
        errs: &mut FieldErrors,
    ) {
        self.validate_update(old, new, errs);
    }

    /// The Table columns `kubectl get` prints (priority 1 ones with `-o wide`).
    fn columns(&self) -> &'static [Column] {
        DEFAULT_COLUMNS
    }

    /// One row's cells for [`Strategy::columns`] at time `now`.
    fn cells(&self, obj: &Value, _now: jiff::Timestamp) -> Vec<Value> {
        default_cells(obj)
    }

    /// Conditions a Table row carries (upstream marks finished pods).
    fn row_conditions(&self, _obj: &Value) -> Option<Value> {
        None
    }

    /// Fields the kind's `fieldSelector` accepts besides [`METADATA_FIELDS`].
    fn selectable_fields(&self) -> &'static [SelectableField] {
        &[]
    }

    /// `CheckGracefulDeleteStrategy`: seconds a delete waits for the object's owner to let
    /// go (0 removes it at once), given the request's `gracePeriodSeconds`.
    fn deletion_grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether DELETE answers with the deleted object instead of a Status
    /// (upstream's `ReturnDeletedObject`).
    fn return_deleted_object(&self) -> bool {
        false
    }

    /// What a DELETE of `obj` does before graceful deletion and finalizers, which are the
    /// same for every kind; `now` is the deletion time to record.
    fn before_delete(&self, _obj: &Value, _now: &str) -> DeleteStep {
        DeleteStep::Proceed
    }

    /// How list `field` merges in a strategic merge patch when it sits under `path` (field
    /// names from the object's root) and is one of the kind's own lists; `None` for the
    /// shared types' lists, which the patch code knows, and for lists that are replaced.
    fn list_strategy(&self, _path: &[String], _field: &str) -> Option<ListStrategy> {
        None
    }

    /// `DefaultGarbageCollectionPolicy`: what a DELETE that chooses no propagation does with
    /// the object's dependents.
    fn gc_policy(&self) -> GcPolicy {
        GcPolicy::DeleteDependents
    }

    /// The `Warning` a DELETE that chooses no propagation gets (upstream's Job storage warns
    /// that a Job's pods are kept by default).
    fn implicit_propagation_warning(&self) -> Option<&'static str> {
        None
    }

    /// Where the kind keeps what its `scale` subresource shows, for kinds that serve one.
    fn scale(&self) -> Option<&'static ScalePaths> {
        None
    }

    /// `ShouldDeleteDuringUpdate`: whether an update that produced `obj` removes it instead
    /// of storing it (its deletion is pending and nothing holds it any more).
    fn delete_during_update(&self, obj: &Value) -> bool {
        deletion_finished(obj)
    }
}

/// Where an object keeps the three things an autoscaling/v1 `Scale` shows (what
/// upstream's per-kind scale storage reads, and a CRD's `specReplicasPath`,
/// `statusReplicasPath` and `labelSelectorPath` name), as field paths from the root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScalePaths {
    /// The desired count, which a scale update writes (`spec.replicas`).
    pub spec_replicas: &'static [&'static str],
    /// The observed count (`status.replicas`; absent reads as 0).
    pub status_replicas: &'static [&'static str],
    /// The `metav1.LabelSelector` of the pods counted (`spec.selector`), shown as text.
    pub selector: &'static [&'static str],
}

/// The paths of the apps kinds: `spec.replicas`, `status.replicas`, `spec.selector`.
pub const REPLICAS_SCALE: ScalePaths = ScalePaths {
    spec_replicas: &["spec", "replicas"],
    status_replicas: &["status", "replicas"],
    selector: &["spec", "selector"],
};

/// How a list merges in a strategic merge patch (the `patchStrategy` and `patchMergeKey`
/// tags of k8s.io/api).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListStrategy {
    /// No tag: the patch list replaces the original.
    Replace,
    /// `patchStrategy:"merge"` on a list of scalars: union.
    Set,
    /// `patchStrategy:"merge"` with `patchMergeKey`.
    Key(&'static str),
}

/// The outcome of [`Strategy::before_delete`].
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteStep {
    /// Go on as for any object: graceful deletion, finalizers, removal.
    Proceed,
    /// The object may not be deleted; the text says why (a 403).
    Forbid(&'static str),
    /// Its deletion is already under way; the answer is the object as stored.
    AlreadyPending,
    /// Store this version, marked for deletion, instead of removing the object.
    MarkDeleting(Value),
}

/// A deleting object with no finalizers left and no grace period running.
pub fn deletion_finished(obj: &Value) -> bool {
    let finalizers_empty = obj
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    let deleting = obj.pointer("/metadata/deletionTimestamp").is_some();
    let grace_zero = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64)
        .is_none_or(|g| g == 0);
    deleting && finalizers_empty && grace_zero
}

/// Decodes `obj` as `T` and encodes it again: the body of [`Strategy::round_trip`].
pub fn typed_round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
    obj: Value,
) -> Result<Value, serde_json::Error> {
    let typed: T = serde_json::from_value(obj)?;
    serde_json::to_value(typed)
}

/// A new object with a spec starts at generation 1.
pub fn initial_generation(obj: &mut Value) {
    if obj.get("spec").is_some() {
        if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("generation".into(), json!(1));
        }
    }
}

/// A spec change moves `metadata.generation` on by one.
pub fn bump_generation(old: &Value, new: &mut Value) {
    if new.get("spec").is_some() && new.get("spec") != old.get("spec") {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if let Some(meta) = new.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("generation".into(), json!(g + 1));
        }
    }
}

/// Kinds with a status subresource: an update of the object keeps the stored status.
pub fn keep_status(old: &Value, new: &mut Value) {
    if let Some(o) = new.as_object_mut() {
        match old.get("status") {
            Some(s) => {
                o.insert("status".into(), s.clone());
            }
            None => {
                o.remove("status");
            }
        }
    }
}

/// Kinds with a status subresource: a create ignores the status the client sent.
pub fn reset_status(obj: &mut Value, status: Option<Value>) {
    if let Some(o) = obj.as_object_mut() {
        match status {
            Some(s) => {
                o.insert("status".into(), s);
            }
            None => {
                o.remove("status");
            }
        }
    }
}

impl ResourceInfo {
    /// `apiVersion` as objects of this resource carry it (`v1`, `coordination.k8s.io/v1`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The subresource called `name`, if served.
    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|s| s.name == name)
    }

    /// Fills the kind's defaults in place (objects that are not JSON objects stay as they
    /// are; validation reports them).
    pub fn apply_defaults(&self, obj: &mut Value) {
        if let Some(map) = obj.as_object_mut() {
            self.strategy.apply_defaults(map);
        }
    }

    /// Validates a whole object on create (after defaulting).
    pub fn validate_create(&self, obj: &Value) -> Result<(), Vec<FieldError>> {
        let mut errs = FieldErrors::default();
        object_meta(&mut errs, obj, self.namespaced, self.strategy.name_rule());
        self.strategy.validate(obj, &mut errs);
        errs.finish()
    }

    /// Validates an update: metadata that may not change, the new object's metadata, and
    /// the kind's update rules.
    pub fn validate_update(&self, old: &Value, new: &Value) -> Result<(), Vec<FieldError>> {
        let mut errs = FieldErrors::default();
        meta_update(&mut errs, old, new);
        object_meta(&mut errs, new, self.namespaced, self.strategy.name_rule());
        self.strategy.validate_update(old, new, &mut errs);
        errs.finish()
    }

    /// Validates an update through `sub`, one of [`Strategy::object_subresources`].
    pub fn validate_subresource_update(
        &self,
        sub: &str,
        old: &Value,
        new: &Value,
    ) -> Result<(), Vec<FieldError>> {
        let mut errs = FieldErrors::default();
        meta_update(&mut errs, old, new);
        object_meta(&mut errs, new, self.namespaced, self.strategy.name_rule());
        self.strategy
            .validate_subresource_update(sub, old, new, &mut errs);
        errs.finish()
    }

    /// The fields `fieldSelector` accepts for this resource.
    pub fn selectable_fields(&self) -> impl Iterator<Item = &'static SelectableField> {
        METADATA_FIELDS
            .iter()
            .chain(self.strategy.selectable_fields())
    }
}
