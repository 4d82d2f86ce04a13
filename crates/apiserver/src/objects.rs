//! The resource registry: what kube-apiserver's generic store and per-kind strategies do on
//! create, update, patch and delete (server-set metadata, defaulting, validation, status
//! subresource rules, graceful pod deletion, finalizers). HTTP-free, so it is unit-tested
//! directly and shared with the in-process controllers.

use std::collections::BTreeMap;
use std::sync::Arc;

use api::deletion::{finalizers_after_delete, PropagationChoice};
use api::resources::ResourceInfo;
use api::selectors::{FieldSelector, LabelSelector};
use api::strategy::DeleteStep;
use field_ownership::managers::Writer;
use serde_json::{json, Map, Value};
use store::{ObjectKey, Preconditions, Store, StoreError};

use crate::error::{qualified, ApiError, CONFLICT_DETAIL};
use crate::paging::Continue;
use crate::request::FieldValidation;

/// Options of a write request.
#[derive(Debug, Clone)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// `fieldManager` of the query.
    pub field_manager: Option<String>,
    /// Checks the object a create, update or patch would store, on behalf of the request's
    /// user (RBAC's escalation prevention); `None`: nothing to check.
    pub guard: Option<WriteGuard>,
    /// The manager when the query names none: the client's User-Agent up to its first `/`,
    /// as kube-apiserver takes it.
    pub default_manager: Option<String>,
    /// `force`: an apply takes the fields it conflicts on.
    pub force: bool,
}

/// The check a [`WriteGuard`] runs: (resource, namespace or "", object).
pub type GuardFn = dyn Fn(&ResourceInfo, &str, &Value) -> Result<(), ApiError> + Send + Sync;

/// A check of an object about to be written.
#[derive(Clone)]
pub struct WriteGuard(pub Arc<GuardFn>);

impl std::fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriteGuard")
    }
}

impl WriteOptions {
    fn check(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        obj: &Value,
    ) -> Result<(), ApiError> {
        match &self.guard {
            Some(g) => (g.0)(info, namespace.unwrap_or(""), obj),
            None => Ok(()),
        }
    }
}

impl Default for WriteOptions {
    fn default() -> Self {
        WriteOptions {
            dry_run: false,
            field_validation: FieldValidation::Strict,
            field_manager: None,
            guard: None,
            default_manager: None,
            force: false,
        }
    }
}

impl WriteOptions {
    /// Who the write's fields go to in `managedFields`; none for the server's own writes.
    pub(crate) fn writer(&self, info: &ResourceInfo, subresource: &str) -> Option<Writer> {
        let manager = self
            .field_manager
            .as_deref()
            .or(self.default_manager.as_deref())
            .filter(|m| !m.is_empty())?;
        Some(Writer {
            manager: manager.to_string(),
            api_version: api_version(info),
            subresource: subresource.to_string(),
            time: now(),
        })
    }
}

/// The result of a write: the stored object and `Warning` texts.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    /// True when the write created the object (apply of a missing object).
    pub created: bool,
}

/// Which part of an object a PUT or PATCH writes: the object, its `status`, or one of the
/// strategy's object subresources (a pod's `ephemeralcontainers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    Object,
    Status,
    Subresource(&'static str),
}

impl Part {
    /// The part a request's subresource names; `None` when it does not write the object.
    pub fn of(info: &ResourceInfo, sub: Option<&str>) -> Option<Part> {
        match sub {
            None => Some(Part::Object),
            Some("status") => Some(Part::Status),
            Some(s) => info
                .strategy
                .object_subresources()
                .iter()
                .find(|o| **o == s)
                .map(|o| Part::Subresource(o)),
        }
    }

    /// The subresource's name as managedFields record it (`""` for the object).
    pub fn subresource(self) -> &'static str {
        match self {
            Part::Object => "",
            Part::Status => "status",
            Part::Subresource(s) => s,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or("").trim();
        match base {
            "application/json-patch+json" => Some(PatchType::Json),
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/strategic-merge-patch+json" => Some(PatchType::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => {
                Some(PatchType::Apply)
            }
            _ => None,
        }
    }
}

/// metav1.DeleteOptions, from the body or the query.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub preconditions: Preconditions,
    pub dry_run: bool,
    /// `propagationPolicy` / `orphanDependents`.
    pub propagation: PropagationChoice,
}

/// How a delete ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Deleted {
    /// Removed from the store; the last state.
    Gone(Value),
    /// Still there, terminating (graceful pod deletion, finalizers, namespaces).
    Pending(Value),
}

/// A page of a list, with the token of the next one.
pub struct PagedList {
    pub items: Vec<Value>,
    pub resource_version: u64,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// Label and field selectors of a list or watch (plus a name for single-object watches).
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    pub label: Option<LabelSelector>,
    pub field: Option<FieldSelector>,
    pub name: Option<String>,
}

impl Selectors {
    pub fn parse(
        info: &ResourceInfo,
        label: Option<&str>,
        field: Option<&str>,
        name: Option<String>,
    ) -> Result<Self, ApiError> {
        let label = match label {
            Some(s) if !s.trim().is_empty() => {
                Some(LabelSelector::parse(s).map_err(|e| ApiError::bad_request(e.to_string()))?)
            }
            _ => None,
        };
        let field = match field {
            Some(s) if !s.trim().is_empty() => Some(
                FieldSelector::parse_for(info, s)
                    .map_err(|e| ApiError::bad_request(e.to_string()))?,
            ),
            _ => None,
        };
        Ok(Selectors { label, field, name })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        if let Some(n) = &self.name {
            if obj.pointer("/metadata/name").and_then(Value::as_str) != Some(n.as_str()) {
                return false;
            }
        }
        if let Some(l) = &self.label {
            if !l.matches(&labels_of(obj)) {
                return false;
            }
        }
        if let Some(f) = &self.field {
            if !f.matches(obj) {
                return false;
            }
        }
        true
    }
}

pub fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// `2026-01-02T15:04:05Z`: metav1.Time has second precision.
pub fn format_time(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn now() -> String {
    format_time(jiff::Timestamp::now())
}

fn str_at<'a>(obj: &'a Value, ptr: &str) -> Option<&'a str> {
    obj.pointer(ptr).and_then(Value::as_str)
}

pub fn name_of(obj: &Value) -> &str {
    str_at(obj, "/metadata/name").unwrap_or("")
}

/// The object's `metadata`, made an object (as is the object itself) when it is not one.
fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    object_mut(object_mut(obj).entry("metadata").or_insert(Value::Null))
}

/// `v` as an object, replaced by an empty one when it is anything else.
fn object_mut(v: &mut Value) -> &mut Map<String, Value> {
    match v {
        Value::Object(map) => map,
        other => {
            *other = Value::Object(Map::new());
            object_mut(other)
        }
    }
}

pub fn api_version(info: &ResourceInfo) -> String {
    if info.group.is_empty() {
        info.version.to_string()
    } else {
        format!("{}/{}", info.group, info.version)
    }
}

/// Namespaces that exist from the start.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

/// Create/update/delete logic over a store.
#[derive(Clone)]
pub struct Registry {
    pub store: Arc<dyn Store>,
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Registry { store }
    }

    pub fn key(info: &ResourceInfo, namespace: Option<&str>, name: &str) -> ObjectKey {
        let ns = if info.namespaced {
            namespace.unwrap_or("")
        } else {
            ""
        };
        ObjectKey::new(info.group, info.plural, ns, name)
    }

    pub async fn get(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.store
            .get(&Self::key(info, namespace, name))
            .await
            .map_err(|e| ApiError::from_store(e, info, name))
    }

    /// Matching objects and the list's resourceVersion.
    pub async fn list(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        selectors: &Selectors,
    ) -> Result<(Vec<Value>, u64), ApiError> {
        let ns = if info.namespaced { namespace } else { None };
        let res = self
            .store
            .list(info.group, info.plural, ns)
            .await
            .map_err(ApiError::Store)?;
        let items = res
            .items
            .into_iter()
            .filter(|o| selectors.matches(o))
            .collect();
        Ok((items, res.resource_version))
    }

    /// One page of matching objects (see [`crate::paging`]).
    pub async fn list_page(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        selectors: &Selectors,
        limit: usize,
        from: Option<&Continue>,
    ) -> Result<PagedList, ApiError> {
        let ns = if info.namespaced { namespace } else { None };
        let filter: Option<store::ListFilter> =
            if selectors.label.is_some() || selectors.field.is_some() || selectors.name.is_some() {
                let selectors = selectors.clone();
                Some(Arc::new(move |o: &Value| selectors.matches(o)))
            } else {
                None
            };
        let page = self
            .store
            .list_page(
                info.group,
                info.plural,
                ns,
                store::PageRequest {
                    start: from.map(|c| c.start.clone()),
                    limit,
                    filter,
                },
            )
            .await
            .map_err(ApiError::Store)?;
        let resource_version = from.map_or(page.resource_version, |c| c.resource_version);
        Ok(PagedList {
            items: page.items,
            resource_version,
            continue_token: page.next_start.map(|start| {
                Continue {
                    resource_version,
                    start,
                }
                .encode()
            }),
            remaining: page.remaining,
        })
    }

    /// Checks a body's kind/apiVersion against the URL's resource and fills them in.
    fn check_type(info: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
        let Some(o) = obj.as_object_mut() else {
            return Err(ApiError::bad_request(
                "the body of the request was not a JSON object",
            ));
        };
        let want_av = api_version(info);
        if let Some(k) = o.get("kind").and_then(Value::as_str) {
            if !k.is_empty() && k != info.kind {
                return Err(ApiError::bad_request(format!(
                    "{k} in version \"{}\" cannot be handled as a {}: the object kind {k} does not match {}",
                    info.version, info.kind, info.kind
                )));
            }
        }
        if let Some(av) = o.get("apiVersion").and_then(Value::as_str) {
            if !av.is_empty() && av != want_av {
                return Err(ApiError::bad_request(format!(
                    "the API version in the data ({av}) does not match the expected API version ({want_av})"
                )));
            }
        }
        o.insert("kind".into(), Value::String(info.kind.to_string()));
        o.insert("apiVersion".into(), Value::String(want_av));
        Ok(())
    }

    /// Unknown fields per `fieldValidation`: an error, warnings, or silently dropped.
    fn check_fields(
        info: &ResourceInfo,
        obj: &mut Value,
        mode: FieldValidation,
    ) -> Result<Vec<String>, ApiError> {
        let unknown = api::fields::unknown_fields(info.kind, obj);
        if unknown.is_empty() {
            return Ok(Vec::new());
        }
        let texts: Vec<String> = unknown
            .iter()
            .map(|p| format!("unknown field \"{p}\""))
            .collect();
        if mode == FieldValidation::Strict {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                info.kind,
                info.version,
                info.kind,
                texts.join(", ")
            )));
        }
        // Typed decoding in kube-apiserver drops unknown fields in Warn and Ignore modes.
        api::fields::drop_unknown_fields(info.kind, obj);
        Ok(if mode == FieldValidation::Warn {
            texts
        } else {
            Vec::new()
        })
    }

    /// The namespace must exist and not be terminating (kube's NamespaceLifecycle admission).
    async fn check_namespace(
        &self,
        info: &ResourceInfo,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        let ns_info = api::resources::lookup("", "namespaces").ok_or(ApiError::PathNotFound)?;
        let obj = self.get(ns_info, None, ns).await?;
        if obj.pointer("/metadata/deletionTimestamp").is_some()
            || str_at(&obj, "/status/phase") == Some("Terminating")
        {
            return Err(ApiError::Forbidden {
                resource: qualified(info),
                group: info.group.to_string(),
                name: name.to_string(),
                detail: format!(
                    "unable to create new content in namespace {ns} because it is being terminated"
                ),
            });
        }
        Ok(())
    }

    pub(crate) fn invalid(
        info: &ResourceInfo,
        name: &str,
        causes: Vec<api::validation::FieldError>,
    ) -> ApiError {
        ApiError::Invalid {
            kind: info.kind.to_string(),
            group: info.group.to_string(),
            name: name.to_string(),
            causes,
        }
    }

    /// The part of a create that needs no store: type and unknown-field checks, server-set
    /// metadata and defaults. Returns the object and the unknown-field warnings.
    pub(crate) fn prepare_create(
        info: &ResourceInfo,
        namespace: Option<&str>,
        body: Value,
        mode: FieldValidation,
    ) -> Result<(Value, Vec<String>), ApiError> {
        let mut obj = body;
        Self::check_type(info, &mut obj)?;
        let warnings = Self::check_fields(info, &mut obj, mode)?;
        let meta = meta_mut(&mut obj);
        if info.namespaced {
            let Some(url_ns) = namespace else {
                return Err(ApiError::MethodNotAllowed);
            };
            match meta.get("namespace").and_then(Value::as_str) {
                Some(ns) if !ns.is_empty() && ns != url_ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ))
                }
                _ => {
                    meta.insert("namespace".into(), Value::String(url_ns.to_string()));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name_empty = meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if name_empty {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                if !prefix.is_empty() {
                    let name = format!("{prefix}{}", crate::names::random_suffix());
                    meta.insert("name".into(), Value::String(name));
                }
            }
        }
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert("creationTimestamp".into(), Value::String(now()));
        meta.remove("deletionTimestamp");
        meta.remove("deletionGracePeriodSeconds");
        meta.remove("resourceVersion");
        meta.remove("generation");
        info.strategy.prepare_for_create(&mut obj);
        info.apply_defaults(&mut obj);
        Ok((obj, warnings))
    }

    /// POST: server-set metadata, defaults, validation, admission, store. The creator owns
    /// the fields it set (an `Update` entry in managedFields).
    pub async fn create(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        self.create_tracked(info, namespace, body, opts, true).await
    }

    /// [`Self::create`]; `track` false when the body carries its managedFields already (an
    /// apply that creates).
    async fn create_tracked(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        body: Value,
        opts: &WriteOptions,
        track: bool,
    ) -> Result<Written, ApiError> {
        let (mut obj, warnings) =
            Self::prepare_create(info, namespace, body, opts.field_validation)?;
        if let Some(w) = opts.writer(info, "").filter(|_| track) {
            crate::managed_fields::record_update(info, &json!({}), &mut obj, &w);
        }
        let name = name_of(&obj).to_string();
        // Admission comes before validation, as in kube-apiserver: the namespace must be
        // live (NamespaceLifecycle), then the kind's plugin may change or refuse the object.
        if let Some(ns) = namespace.filter(|_| info.namespaced) {
            self.check_namespace(info, ns, &name).await?;
        }
        for plugin in crate::admission::of(info) {
            plugin.admit(self.store.as_ref(), &mut obj).await?;
        }
        opts.check(info, namespace, &obj)?;
        if let Err(causes) = info.validate_create(&obj) {
            return Err(Self::invalid(info, &name, causes));
        }
        info.strategy.normalize(&mut obj);
        if name.is_empty() {
            return Err(Self::invalid(
                info,
                "",
                vec![api::validation::FieldError {
                    field: "metadata.name".into(),
                    reason: api::validation::CauseReason::FieldValueRequired,
                    message: "metadata.name: Required value: name or generateName is required"
                        .into(),
                }],
            ));
        }
        for plugin in crate::admission::validating(info) {
            plugin.validate(self.store.as_ref(), &obj).await?;
        }
        crate::admission::resource_quota(self.store.as_ref(), info, &obj, None, opts.dry_run)
            .await?;
        if opts.dry_run {
            return Ok(Written {
                object: obj,
                warnings,
                created: true,
            });
        }
        let key = Self::key(info, namespace, &name);
        let object = match crate::hooks::of(info) {
            None => self
                .store
                .create(&key, obj)
                .await
                .map_err(|e| ApiError::from_store(e, info, &name))?,
            // What the hooks take must be given back when the create fails, so the two run
            // to their end in their own task even if the client goes away meanwhile.
            Some(hooks) => {
                let store = self.store.clone();
                let info = info.clone();
                tokio::spawn(async move {
                    let taken = hooks
                        .before_write(store.as_ref(), &info, &name, None, &mut obj)
                        .await?;
                    match store.create(&key, obj).await {
                        Ok(o) => Ok(o),
                        Err(e) => {
                            hooks.undo(store.as_ref(), &taken).await;
                            Err(ApiError::from_store(e, &info, &name))
                        }
                    }
                })
                .await
                .map_err(ApiError::WriteTask)??
            }
        };
        Ok(Written {
            object,
            warnings,
            created: true,
        })
    }

    /// Carries server-owned fields from `old` into `new` (the strategies' PrepareForUpdate).
    fn prepare_for_update(info: &ResourceInfo, old: &Value, mut new: Value, part: Part) -> Value {
        match part {
            Part::Object => {}
            Part::Status => {
                info.strategy.prepare_for_status_update(old, &mut new);
                return new;
            }
            Part::Subresource(sub) => {
                info.strategy
                    .prepare_for_subresource_update(sub, old, &mut new);
                return new;
            }
        }
        let old_meta = old.get("metadata").cloned().unwrap_or_else(|| json!({}));
        let meta = meta_mut(&mut new);
        // A uid the client sent stays, so that validation refuses a different one: a patch
        // naming the uid it expects is how controllers make adoption conditional.
        if meta
            .get("uid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            match old_meta.get("uid") {
                Some(v) => {
                    meta.insert("uid".into(), v.clone());
                }
                None => {
                    meta.remove("uid");
                }
            }
        }
        for k in [
            "name",
            "namespace",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ] {
            match old_meta.get(k) {
                Some(v) => {
                    meta.insert(k.into(), v.clone());
                }
                None => {
                    meta.remove(k);
                }
            }
        }
        if meta.get("managedFields").is_none() {
            if let Some(mf) = old_meta.get("managedFields") {
                meta.insert("managedFields".into(), mf.clone());
            }
        }
        info.strategy.prepare_for_update(old, &mut new);
        new
    }

    /// Stores `new` as the next state of `old` after defaulting and validation. Removes the
    /// object when its deletion is pending and its last finalizer just went.
    #[allow(
        clippy::too_many_arguments,
        reason = "the update's identity, both states and its three modes; a struct would only rename them"
    )]
    async fn commit_update(
        &self,
        info: &ResourceInfo,
        key: &ObjectKey,
        old: &Value,
        new: Value,
        part: Part,
        expected_rv: Option<u64>,
        dry_run: bool,
        writer: Option<&Writer>,
    ) -> Result<Value, ApiError> {
        let mut new = Self::prepare_for_update(info, old, new, part);
        info.apply_defaults(&mut new);
        info.strategy.normalize(&mut new);
        // As upstream, the writer owns what it changed once defaults are in.
        if let Some(w) = writer {
            crate::managed_fields::record_update(info, old, &mut new, w);
        }
        // Hooks run before validation: a Service keeps its addresses over an update that
        // omits them (validation holds clusterIP immutable) and takes node ports it newly
        // needs.
        let Some(hooks) = crate::hooks::of(info).filter(|_| part == Part::Object && !dry_run)
        else {
            return self
                .commit_allocated(info, key, old, new, part, expected_rv, dry_run)
                .await;
        };
        // What the hooks take must be given back when the write fails, so the three steps
        // run to their end in their own task even if the client goes away meanwhile.
        let (this, info, key, old) = (self.clone(), info.clone(), key.clone(), old.clone());
        tokio::spawn(async move {
            let store = this.store.as_ref();
            let taken = hooks
                .before_write(store, &info, &key.name, Some(&old), &mut new)
                .await?;
            let result = this
                .commit_allocated(&info, &key, &old, new, part, expected_rv, false)
                .await;
            match &result {
                Ok(stored) => {
                    // The write may have removed the object (its last finalizer went).
                    let gone = matches!(store.get(&key).await, Err(StoreError::NotFound { .. }));
                    let kept = (!gone).then_some(stored);
                    hooks.after_write(store, &old, kept).await
                }
                Err(_) => hooks.undo(store, &taken).await,
            }
            result
        })
        .await
        .map_err(ApiError::WriteTask)?
    }

    /// The validate-and-write half of [`Self::commit_update`].
    #[allow(
        clippy::too_many_arguments,
        reason = "the update's identity, both states and its three modes; a struct would only rename them"
    )]
    async fn commit_allocated(
        &self,
        info: &ResourceInfo,
        key: &ObjectKey,
        old: &Value,
        new: Value,
        part: Part,
        expected_rv: Option<u64>,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let checked = match part {
            Part::Subresource(sub) => info.validate_subresource_update(sub, old, &new),
            Part::Object | Part::Status => info.validate_update(old, &new),
        };
        if let Err(causes) = checked {
            return Err(Self::invalid(info, &key.name, causes));
        }
        // Validating admission comes after validation, as on create; an object already
        // being deleted is not held to it (its finalizers must be able to go).
        if old.pointer("/metadata/deletionTimestamp").is_none() {
            for plugin in crate::admission::validating_update(info, part.subresource()) {
                plugin.validate(self.store.as_ref(), &new).await?;
            }
        }
        if part == Part::Object {
            crate::admission::resource_quota(self.store.as_ref(), info, &new, Some(old), dry_run)
                .await?;
        }
        if dry_run {
            return Ok(new);
        }
        if info.strategy.delete_during_update(&new) {
            let pre = Preconditions {
                uid: None,
                resource_version: expected_rv,
            };
            return self
                .store
                .delete(key, &pre)
                .await
                .map_err(|e| ApiError::from_store(e, info, &key.name));
        }
        self.store
            .update(key, new, expected_rv)
            .await
            .map_err(|e| ApiError::from_store(e, info, &key.name))
    }

    /// PUT of the object or of its `status` subresource.
    pub async fn update(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut body = body;
        Self::check_type(info, &mut body)?;
        let warnings = Self::check_fields(info, &mut body, opts.field_validation)?;
        if let Some(n) = str_at(&body, "/metadata/name") {
            if n != name {
                return Err(ApiError::bad_request(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
        }
        if info.namespaced {
            if let (Some(b), Some(u)) = (str_at(&body, "/metadata/namespace"), namespace) {
                if !b.is_empty() && b != u {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
            }
        }
        let expected = match str_at(&body, "/metadata/resourceVersion") {
            None | Some("") => None,
            Some(s) => Some(
                s.parse::<u64>()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {s:?}")))?,
            ),
        };
        let key = Self::key(info, namespace, name);
        opts.check(info, namespace, &body)?;
        let writer = opts.writer(info, part.subresource());
        let object = self
            .retry_update(
                info,
                &key,
                expected,
                |_old| Ok(body.clone()),
                part,
                opts.dry_run,
                writer.as_ref(),
            )
            .await?;
        Ok(Written {
            object,
            warnings,
            created: false,
        })
    }

    /// Read-modify-write with `f`; retried on conflicts unless the caller pinned a
    /// resourceVersion (then a mismatch is the client's 409). `writer` takes the fields the
    /// write changes.
    #[allow(
        clippy::too_many_arguments,
        reason = "the update's identity, its step and its three modes; a struct would only rename them"
    )]
    pub(crate) async fn retry_update(
        &self,
        info: &ResourceInfo,
        key: &ObjectKey,
        expected: Option<u64>,
        mut f: impl FnMut(&Value) -> Result<Value, ApiError>,
        part: Part,
        dry_run: bool,
        writer: Option<&Writer>,
    ) -> Result<Value, ApiError> {
        const ATTEMPTS: usize = 16;
        for _ in 0..ATTEMPTS {
            let old = self
                .store
                .get(key)
                .await
                .map_err(|e| ApiError::from_store(e, info, &key.name))?;
            let old_rv = store::resource_version_of(&old);
            if let (Some(want), Some(have)) = (expected, old_rv) {
                if want != have {
                    return Err(ApiError::Conflict {
                        resource: qualified(info),
                        group: info.group.to_string(),
                        name: key.name.clone(),
                        detail: CONFLICT_DETAIL.into(),
                    });
                }
            }
            let new = f(&old)?;
            match self
                .commit_update(info, key, &old, new, part, old_rv, dry_run, writer)
                .await
            {
                Err(ApiError::Conflict { .. }) if expected.is_none() => continue,
                other => return other,
            }
        }
        Err(ApiError::Store(StoreError::TooManyRetries {
            key: key.clone(),
            attempts: ATTEMPTS as u32,
        }))
    }

    /// PATCH of the object or its `status`; apply patches create missing objects.
    #[allow(
        clippy::too_many_arguments,
        reason = "one argument per part of the request; a struct would only rename them"
    )]
    pub async fn patch(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
        part: Part,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let patch: Value = parse_patch_body(patch_type, body)?;
        let key = Self::key(info, namespace, name);
        let writer = opts.writer(info, part.subresource());
        if patch_type == PatchType::Apply {
            let Some(w) = writer.as_ref() else {
                return Err(ApiError::bad_request(
                    "PATCH requests with the apply patch type require a fieldManager",
                ));
            };
            if let Some(n) = str_at(&patch, "/metadata/name") {
                if n != name {
                    return Err(ApiError::bad_request(format!(
                        "the name of the object ({n}) does not match the name on the URL ({name})"
                    )));
                }
            }
            match self.store.get(&key).await {
                Err(StoreError::NotFound { .. }) if part == Part::Object => {
                    let mut config = patch.clone();
                    Self::check_type(info, &mut config)?;
                    meta_mut(&mut config).insert("name".into(), Value::String(name.to_string()));
                    let obj =
                        crate::managed_fields::apply(info, &json!({}), &config, w, opts.force)?;
                    return self.create_tracked(info, namespace, obj, opts, false).await;
                }
                Err(e) => return Err(ApiError::from_store(e, info, name)),
                Ok(_) => {}
            }
        }
        let expected = str_at(&patch, "/metadata/resourceVersion").and_then(|s| s.parse().ok());
        let mut warnings = Vec::new();
        let object = self
            .retry_update(
                info,
                &key,
                expected,
                |old| {
                    let mut new = match (patch_type, writer.as_ref()) {
                        (PatchType::Json, _) => api::patch::json_patch(old, &patch),
                        (PatchType::Merge, _) => api::patch::merge_patch(old, &patch),
                        (PatchType::Strategic, _) | (PatchType::Apply, None) => {
                            api::patch::strategic_merge_patch(info.kind, old, &patch)
                        }
                        (PatchType::Apply, Some(w)) => {
                            let mut config = patch.clone();
                            Self::check_type(info, &mut config)?;
                            Ok(crate::managed_fields::apply(
                                info, old, &config, w, opts.force,
                            )?)
                        }
                    }
                    .map_err(|e| match e {
                        e if e.is_malformed() => ApiError::bad_request(e.to_string()),
                        e => ApiError::Invalid {
                            kind: info.kind.to_string(),
                            group: info.group.to_string(),
                            name: name.to_string(),
                            causes: vec![api::validation::FieldError {
                                field: String::new(),
                                reason: api::validation::CauseReason::FieldValueInvalid,
                                message: e.to_string(),
                            }],
                        },
                    })?;
                    Self::check_type(info, &mut new)?;
                    warnings = Self::check_fields(info, &mut new, opts.field_validation)?;
                    // The patch may not rename or move the object.
                    let m = meta_mut(&mut new);
                    m.insert("name".into(), Value::String(name.to_string()));
                    opts.check(info, namespace, &new)?;
                    Ok(new)
                },
                part,
                opts.dry_run,
                // An apply has set its managedFields already.
                writer.as_ref().filter(|_| patch_type != PatchType::Apply),
            )
            .await?;
        Ok(Written {
            object,
            warnings,
            created: false,
        })
    }

    /// DELETE with kube-apiserver's graceful deletion and finalizer rules.
    pub async fn delete(
        &self,
        info: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = Self::key(info, namespace, name);
        for _ in 0..16 {
            let old = self.get(info, namespace, name).await?;
            check_preconditions(info, name, &old, &opts.preconditions)?;
            let rv = store::resource_version_of(&old);
            let result = self.delete_once(info, &key, old, rv, opts).await;
            match result {
                Err(ApiError::Conflict { .. }) if opts.preconditions.resource_version.is_none() => {
                    continue
                }
                other => return other,
            }
        }
        Err(ApiError::Store(StoreError::TooManyRetries {
            key,
            attempts: 16,
        }))
    }

    /// One attempt of a DELETE against the stored `old` (kube's `Store.Delete` with
    /// `BeforeDelete` and `updateForGracefulDeletionAndFinalizers`): the request's
    /// propagation sets the garbage-collection finalizers; an object with finalizers or a
    /// grace period is marked deleting and kept, any other is removed.
    async fn delete_once(
        &self,
        info: &ResourceInfo,
        key: &ObjectKey,
        old: Value,
        rv: Option<u64>,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let name = key.name.as_str();
        let deleting = old.pointer("/metadata/deletionTimestamp").is_some();
        let current_grace = old
            .pointer("/metadata/deletionGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        // Negative grace periods count as one second on the delete path.
        let requested = opts.grace_period_seconds.map(|g| if g < 0 { 1 } else { g });
        // A graceful deletion under way may only be shortened; otherwise, as upstream, the
        // object (finalizers included) is left as it is.
        let shorten_to = match requested {
            Some(g) if deleting && current_grace > 0 && g < current_grace => Some(g),
            _ if deleting && current_grace > 0 => return Ok(Deleted::Pending(old)),
            _ => None,
        };
        let mut candidate = old.clone();
        let current: Vec<String> = old
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .map(|f| {
                f.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        let finalizers =
            match finalizers_after_delete(info.strategy.gc_policy(), &current, opts.propagation) {
                Some(next) => {
                    meta_mut(&mut candidate).insert("finalizers".into(), json!(next));
                    next
                }
                None => current,
            };
        match info.strategy.before_delete(&candidate, &now()) {
            DeleteStep::Proceed => {}
            DeleteStep::Forbid(detail) => {
                return Err(ApiError::Forbidden {
                    resource: qualified(info),
                    group: info.group.to_string(),
                    name: name.to_string(),
                    detail: detail.into(),
                })
            }
            DeleteStep::AlreadyPending => return Ok(Deleted::Pending(old)),
            DeleteStep::MarkDeleting(new) => {
                return self.store_pending(info, key, new, rv, opts).await
            }
        }
        let mut new = candidate;
        let marked_at = str_at(&old, "/metadata/deletionTimestamp")
            .and_then(|t| t.parse::<jiff::Timestamp>().ok());
        // An object already marked (its grace period over) is held by finalizers alone.
        let grace = match shorten_to {
            Some(g) => g,
            None if deleting => 0,
            None => info.strategy.deletion_grace_period(&old, requested),
        };
        if grace == 0 && finalizers.is_empty() {
            if opts.dry_run {
                return Ok(Deleted::Gone(old));
            }
            let pre = Preconditions {
                uid: None,
                resource_version: rv,
            };
            let obj = self
                .store
                .delete(key, &pre)
                .await
                .map_err(|e| ApiError::from_store(e, info, name))?;
            if let Some(h) = crate::hooks::of(info) {
                h.after_write(self.store.as_ref(), &obj, None).await;
            }
            return Ok(Deleted::Gone(obj));
        }
        let now = jiff::Timestamp::now();
        let deadline = match (shorten_to, marked_at) {
            // The deadline moves as the grace period shrinks.
            (Some(g), Some(at)) => at
                .checked_sub(jiff::SignedDuration::from_secs(current_grace - g))
                .unwrap_or(now),
            // markAsDeleting keeps an earlier deletion time.
            (None, Some(at)) if at <= now => at,
            _ => now
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now),
        };
        let m = meta_mut(&mut new);
        m.insert(
            "deletionTimestamp".into(),
            Value::String(format_time(deadline)),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
        if new == old {
            return Ok(Deleted::Pending(old));
        }
        self.store_pending(info, key, new, rv, opts).await
    }

    /// Stores `new`, an object marked for deletion that stays for now.
    async fn store_pending(
        &self,
        info: &ResourceInfo,
        key: &ObjectKey,
        new: Value,
        rv: Option<u64>,
        opts: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        if opts.dry_run {
            return Ok(Deleted::Pending(new));
        }
        let obj = self
            .store
            .update(key, new, rv)
            .await
            .map_err(|e| ApiError::from_store(e, info, &key.name))?;
        Ok(Deleted::Pending(obj))
    }

    /// `pods/binding`: assigns a node once, and records PodScheduled (as kube's
    /// BindingREST does).
    pub async fn bind(
        &self,
        namespace: &str,
        pod: &str,
        node: &str,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let info = api::resources::lookup("", "pods").ok_or(ApiError::PathNotFound)?;
        let key = Self::key(info, Some(namespace), pod);
        for _ in 0..16 {
            let old = self.get(info, Some(namespace), pod).await?;
            if old.pointer("/metadata/deletionTimestamp").is_some() {
                return Err(ApiError::Conflict {
                    resource: "pods/binding".into(),
                    group: String::new(),
                    name: pod.to_string(),
                    detail: format!("pod {pod} is being deleted, cannot be assigned to a host"),
                });
            }
            if let Some(n) = str_at(&old, "/spec/nodeName").filter(|n| !n.is_empty()) {
                return Err(ApiError::Conflict {
                    resource: "pods/binding".into(),
                    group: String::new(),
                    name: pod.to_string(),
                    detail: format!("pod {pod} is already assigned to node \"{n}\""),
                });
            }
            let mut new = old.clone();
            new["spec"]["nodeName"] = Value::String(node.to_string());
            set_condition(
                &mut new,
                json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": now()}),
            );
            if dry_run {
                return Ok(new);
            }
            match self
                .store
                .update(&key, new, store::resource_version_of(&old))
                .await
            {
                Ok(v) => return Ok(v),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, info, pod)),
            }
        }
        Err(ApiError::Store(StoreError::TooManyRetries {
            key,
            attempts: 16,
        }))
    }

    /// `PUT namespaces/<n>/finalize`: only `spec.finalizers` changes. A terminating namespace
    /// whose finalizers are all gone is removed.
    pub async fn finalize_namespace(
        &self,
        name: &str,
        body: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let info = api::resources::lookup("", "namespaces").ok_or(ApiError::PathNotFound)?;
        let key = Self::key(info, None, name);
        let finalizers = body
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or_else(|| json!([]));
        for _ in 0..16 {
            let old = self.get(info, None, name).await?;
            let mut new = old.clone();
            new["spec"]["finalizers"] = finalizers.clone();
            if dry_run {
                return Ok(new);
            }
            let spec_empty = finalizers.as_array().is_none_or(Vec::is_empty);
            let meta_empty = new
                .pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty);
            let deleting = new.pointer("/metadata/deletionTimestamp").is_some();
            let rv = store::resource_version_of(&old);
            let res = if deleting && spec_empty && meta_empty {
                self.store
                    .delete(
                        &key,
                        &Preconditions {
                            uid: None,
                            resource_version: rv,
                        },
                    )
                    .await
            } else {
                self.store.update(&key, new, rv).await
            };
            match res {
                Ok(v) => return Ok(v),
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(ApiError::from_store(e, info, name)),
            }
        }
        Err(ApiError::Store(StoreError::TooManyRetries {
            key,
            attempts: 16,
        }))
    }

    /// Creates the namespaces every cluster has, and their `default` ServiceAccounts, if
    /// missing. The serviceaccounts controller keeps a `default` account in every namespace;
    /// creating the first ones here lets pods be admitted before any controller runs
    /// (`peapod up --no-controllers`).
    pub async fn ensure_system_namespaces(&self) -> Result<(), ApiError> {
        let info = api::resources::lookup("", "namespaces").ok_or(ApiError::PathNotFound)?;
        let sa_info =
            api::resources::lookup("", "serviceaccounts").ok_or(ApiError::PathNotFound)?;
        for ns in SYSTEM_NAMESPACES {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default"}});
            for (info, namespace, body) in [(info, None, body), (sa_info, Some(*ns), sa)] {
                match self
                    .create(info, namespace, body, &WriteOptions::default())
                    .await
                {
                    Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }
}

/// Replaces or appends a status condition by type.
pub fn set_condition(obj: &mut Value, cond: Value) {
    let ty = cond.get("type").cloned();
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    let conds = &mut obj["status"]["conditions"];
    if !conds.is_array() {
        *conds = json!([]);
    }
    if let Some(list) = conds.as_array_mut() {
        match list.iter_mut().find(|c| c.get("type") == ty.as_ref()) {
            Some(c) => *c = cond,
            None => list.push(cond),
        }
    }
}

/// `BeforeDelete`'s early precondition check; upstream names the kind (not the resource)
/// in this conflict.
pub(crate) fn check_preconditions(
    info: &ResourceInfo,
    name: &str,
    obj: &Value,
    pre: &Preconditions,
) -> Result<(), ApiError> {
    let conflict = |detail: String| ApiError::Conflict {
        resource: if info.group.is_empty() {
            info.kind.to_string()
        } else {
            format!("{}.{}", info.kind, info.group)
        },
        group: info.group.to_string(),
        name: name.to_string(),
        detail,
    };
    if let Some(uid) = &pre.uid {
        let have = str_at(obj, "/metadata/uid").unwrap_or("");
        if have != uid {
            return Err(conflict(format!(
                "the UID in the precondition ({uid}) does not match the UID in record ({have}). The object might have been deleted and then recreated"
            )));
        }
    }
    if let Some(rv) = pre.resource_version {
        let have = store::resource_version_of(obj);
        if have != Some(rv) {
            return Err(conflict(format!(
                "the ResourceVersion in the precondition ({rv}) does not match the ResourceVersion in record ({}). The object might have been modified",
                have.map_or_else(String::new, |r| r.to_string())
            )));
        }
    }
    Ok(())
}

/// Patch bodies are JSON; apply bodies may also be YAML.
pub(crate) fn parse_patch_body(patch_type: PatchType, body: &[u8]) -> Result<Value, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) if patch_type == PatchType::Apply => serde_yaml_ng::from_slice::<Value>(body)
            .map_err(|e| {
                ApiError::bad_request(format!("error decoding YAML: {e} (as JSON: {json_err})"))
            }),
        Err(e) => Err(ApiError::bad_request(format!("error decoding patch: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_made_an_object_whatever_the_body() {
        for (mut body, want) in [
            (json!("text"), json!({"metadata": {"name": "x"}})),
            (json!({"metadata": [1]}), json!({"metadata": {"name": "x"}})),
            (
                json!({"kind": "Pod", "metadata": {"uid": "u"}}),
                json!({"kind": "Pod", "metadata": {"uid": "u", "name": "x"}}),
            ),
        ] {
            meta_mut(&mut body).insert("name".into(), json!("x"));
            assert_eq!(body, want);
        }
    }

    /// Unknown keys are removed as keys, never re-parsed from their printed path: `]`, `[`,
    /// dots and multi-byte characters in a key once made the path splitter panic.
    #[test]
    fn hostile_unknown_field_keys_are_dropped_without_panicking() {
        let info = api::resources::lookup("", "configmaps").expect("configmaps");
        let keys = ["a[0]]", "x]é]", "[]]", "é[1]]", "a.b[", "]", "[", "ü[ü]ü]"];
        let mut obj = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"k": "v"}});
        for k in keys {
            obj[k] = json!(1);
            obj["metadata"][k] = json!({k: 2});
        }
        let mut warn = obj.clone();
        let texts = Registry::check_fields(info, &mut warn, FieldValidation::Warn).expect("warn");
        assert_eq!(texts.len(), 2 * keys.len(), "{texts:?}");
        assert_eq!(
            warn,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c"}, "data": {"k": "v"}})
        );
        let mut ignore = obj.clone();
        assert!(
            Registry::check_fields(info, &mut ignore, FieldValidation::Ignore)
                .expect("ignore")
                .is_empty()
        );
        assert_eq!(ignore, warn);
        assert!(Registry::check_fields(info, &mut obj, FieldValidation::Strict).is_err());
    }

    #[test]
    fn patch_types() {
        assert_eq!(
            PatchType::from_content_type("application/strategic-merge-patch+json; charset=utf-8"),
            Some(PatchType::Strategic)
        );
        assert_eq!(PatchType::from_content_type("application/json"), None);
    }
}
