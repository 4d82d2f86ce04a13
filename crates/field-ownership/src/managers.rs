//! `metadata.managedFields`: one entry per manager, operation, API version and subresource,
//! each owning a set of fields; how an update moves ownership to its writer, and how an
//! apply merges, removes and refuses to take fields that others own.

use std::fmt;

use serde_json::{json, Map, Value};

use crate::merge::{merge, remove_fields};
use crate::path::{display, Path};
use crate::schema::Schema;
use crate::set::{Changes, FieldSet, FieldsV1Error};

/// Update entries an object keeps before the oldest are merged (kube-apiserver's cap).
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager the oldest update entries are merged into.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    /// Empty for the main resource; `status`, `scale` for those subresources.
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    /// How conflicts name the manager: `"kubectl"` for an applier, `"kubectl-edit" using
    /// apps/v1` for an updater (with its subresource when it wrote through one).
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }

    fn is(&self, w: &Writer, op: Operation) -> bool {
        self.manager == w.manager && self.operation == op && self.subresource == w.subresource
    }
}

/// Who writes, through which version and subresource, and when.
#[derive(Debug, Clone)]
pub struct Writer {
    pub manager: String,
    pub api_version: String,
    pub subresource: String,
    pub time: String,
}

/// Which part of an object a writer's ownership covers: everything but `exclude` (the main
/// resource leaves `status` to its subresource), or only `include` (the status subresource).
#[derive(Debug, Clone, Default)]
pub struct Scope {
    pub include: Option<Vec<Path>>,
    pub exclude: Vec<Path>,
}

impl Scope {
    pub fn restrict(&self, set: &FieldSet) -> FieldSet {
        let s = set.without_prefixes(&self.exclude);
        match &self.include {
            Some(inc) => s.within_prefixes(inc),
            None => s,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ManagedFieldsError {
    #[error("metadata.managedFields must be a list, got {0}")]
    NotAList(Value),
    #[error("metadata.managedFields[{index}]: {what}")]
    Entry { index: usize, what: &'static str },
    #[error("metadata.managedFields[{index}].fieldsV1")]
    Fields {
        index: usize,
        #[source]
        source: FieldsV1Error,
    },
}

/// A field another manager owns that an apply would change.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    /// The owner as [`Entry::describe`] names it.
    pub manager: String,
    pub path: Path,
}

/// Why an apply was refused: kube-apiserver's text and one cause per conflict.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct Conflicts(pub Vec<Conflict>);

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.0;
        if let [one] = c.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                one.manager,
                display(&one.path)
            );
        }
        let mut managers: Vec<&str> = c.iter().map(|x| x.manager.as_str()).collect();
        managers.sort();
        managers.dedup();
        let mut lines = Vec::new();
        for m in managers {
            lines.push(format!("conflicts with {m}:"));
            for x in c.iter().filter(|x| x.manager == m) {
                lines.push(format!("- {}", display(&x.path)));
            }
        }
        write!(
            f,
            "Apply failed with {} conflicts: {}",
            c.len(),
            lines.join("\n")
        )
    }
}

/// The entries of one object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManagedFields(pub Vec<Entry>);

impl ManagedFields {
    /// Reads `metadata.managedFields` (absent or null is none).
    pub fn of_object(obj: &Value) -> Result<ManagedFields, ManagedFieldsError> {
        let list = match obj.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => return Ok(ManagedFields::default()),
            Some(Value::Array(list)) => list,
            Some(other) => return Err(ManagedFieldsError::NotAList(other.clone())),
        };
        let mut entries = Vec::new();
        for (index, e) in list.iter().enumerate() {
            let text = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let err = |what| ManagedFieldsError::Entry { index, what };
            let operation = match e.get("operation").and_then(Value::as_str) {
                Some("Apply") => Operation::Apply,
                Some("Update") => Operation::Update,
                _ => return Err(err("operation must be Apply or Update")),
            };
            if text("fieldsType").is_some_and(|t| t != "FieldsV1") {
                return Err(err("fieldsType must be FieldsV1"));
            }
            let fields = match e.get("fieldsV1") {
                None | Some(Value::Null) => FieldSet::new(),
                Some(v) => FieldSet::from_fields_v1(v)
                    .map_err(|source| ManagedFieldsError::Fields { index, source })?,
            };
            entries.push(Entry {
                manager: text("manager").unwrap_or_default(),
                operation,
                api_version: text("apiVersion").unwrap_or_default(),
                time: text("time"),
                subresource: text("subresource").unwrap_or_default(),
                fields,
            });
        }
        Ok(ManagedFields(entries))
    }

    /// Stores the entries in `metadata.managedFields`, leaving out those that own nothing
    /// (and the field itself when none is left).
    pub fn write_to(&self, obj: &mut Value) {
        let list: Vec<Value> = self
            .0
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut m = Map::new();
                m.insert("manager".into(), json!(e.manager));
                m.insert("operation".into(), json!(e.operation.as_str()));
                m.insert("apiVersion".into(), json!(e.api_version));
                if let Some(t) = &e.time {
                    m.insert("time".into(), json!(t));
                }
                m.insert("fieldsType".into(), json!("FieldsV1"));
                m.insert("fieldsV1".into(), e.fields.to_fields_v1());
                if !e.subresource.is_empty() {
                    m.insert("subresource".into(), json!(e.subresource));
                }
                Value::Object(m)
            })
            .collect();
        let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
            return;
        };
        if list.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(list));
        }
    }

    fn entry_mut(&mut self, w: &Writer, op: Operation) -> &mut Entry {
        let i = match self.0.iter().position(|e| e.is(w, op)) {
            Some(i) => i,
            None => {
                self.0.push(Entry {
                    manager: w.manager.clone(),
                    operation: op,
                    api_version: w.api_version.clone(),
                    time: None,
                    subresource: w.subresource.clone(),
                    fields: FieldSet::new(),
                });
                self.0.len() - 1
            }
        };
        &mut self.0[i]
    }

    /// A create, update or patch by `w` from `old` to `new`: the writer takes the fields it
    /// added or changed (from whoever had them); fields it removed leave every set.
    pub fn record_update(
        &mut self,
        old: &Value,
        new: &Value,
        w: &Writer,
        schema: &dyn Schema,
        scope: &Scope,
    ) {
        let ch = Changes::between(old, new, schema);
        let changed = scope.restrict(&ch.changed);
        let taken = changed.union(&ch.removed);
        for e in self.0.iter_mut().filter(|e| !e.is(w, Operation::Update)) {
            e.fields = e.fields.difference(&taken);
        }
        if changed.is_empty() && !self.0.iter().any(|e| e.is(w, Operation::Update)) {
            return;
        }
        let own = self.entry_mut(w, Operation::Update);
        let before = own.fields.clone();
        own.fields = own.fields.union(&changed).difference(&ch.removed);
        if own.fields != before {
            own.time = Some(w.time.clone());
            own.api_version = w.api_version.clone();
        }
        self.0.retain(|e| !e.fields.is_empty());
        self.cap_updates();
    }

    /// Keeps at most [`MAX_UPDATE_MANAGERS`] update entries, as kube-apiserver does: the
    /// oldest are merged, fields and all, into one [`ANCIENT_CHANGES`] entry per API version.
    fn cap_updates(&mut self) {
        let is_bucket = |e: &Entry| {
            e.manager == ANCIENT_CHANGES
                && e.operation == Operation::Update
                && e.subresource.is_empty()
        };
        loop {
            let updates = self
                .0
                .iter()
                .filter(|e| e.operation == Operation::Update)
                .count();
            if updates <= MAX_UPDATE_MANAGERS {
                return;
            }
            // The oldest updater that is not a bucket (no time counts as oldest).
            let Some(oldest) = self
                .0
                .iter()
                .enumerate()
                .filter(|(_, e)| e.operation == Operation::Update && !is_bucket(e))
                .min_by(|(_, a), (_, b)| a.time.cmp(&b.time))
                .map(|(i, _)| i)
            else {
                return;
            };
            let old = self.0.remove(oldest);
            match self
                .0
                .iter_mut()
                .find(|e| is_bucket(e) && e.api_version == old.api_version)
            {
                Some(bucket) => {
                    bucket.fields = bucket.fields.union(&old.fields);
                    bucket.time = bucket.time.clone().max(old.time);
                }
                None => self.0.push(Entry {
                    manager: ANCIENT_CHANGES.to_string(),
                    subresource: String::new(),
                    ..old
                }),
            }
        }
    }

    /// Server-side apply of `config` by `w` to `live`: the merged object, or the conflicts
    /// with other managers' fields it would change. With `force` the applier takes those
    /// fields instead. Fields the applier applied before and no longer does are removed,
    /// unless another manager owns them too.
    pub fn apply(
        &mut self,
        live: &Value,
        config: &Value,
        w: &Writer,
        force: bool,
        schema: &dyn Schema,
        scope: &Scope,
    ) -> Result<Value, Conflicts> {
        let applied = scope.restrict(&FieldSet::of_object(config, schema));
        let mut merged = merge(live, config, schema);
        let changed = scope.restrict(&Changes::between(live, &merged, schema).changed);
        let mut conflicts = Vec::new();
        // Only the applier's own apply entry is exempt: its updates (or another
        // subresource's) are other managers, as upstream keys them.
        for e in self.0.iter_mut().filter(|e| !e.is(w, Operation::Apply)) {
            let clash = e.fields.intersection(&changed);
            if clash.is_empty() {
                continue;
            }
            if force {
                e.fields = e.fields.difference(&clash);
            } else {
                let manager = e.describe();
                conflicts.extend(clash.iter().map(|p| Conflict {
                    manager: manager.clone(),
                    path: p.clone(),
                }));
            }
        }
        if !conflicts.is_empty() {
            return Err(Conflicts(conflicts));
        }
        let previous = self
            .0
            .iter()
            .find(|e| e.is(w, Operation::Apply))
            .map(|e| e.fields.clone())
            .unwrap_or_default();
        let mut keep = applied.clone();
        for e in self.0.iter().filter(|e| !e.is(w, Operation::Apply)) {
            keep = keep.union(&e.fields);
        }
        remove_fields(&mut merged, &previous.difference(&applied), &keep);
        let gone = Changes::between(live, &merged, schema).removed;
        for e in self.0.iter_mut() {
            e.fields = e.fields.difference(&gone);
        }
        let own = self.entry_mut(w, Operation::Apply);
        own.fields = applied;
        own.time = Some(w.time.clone());
        own.api_version = w.api_version.clone();
        self.0.retain(|e| !e.fields.is_empty());
        Ok(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::PathElement;
    use crate::set::tests::TestSchema;

    fn writer(manager: &str, subresource: &str) -> Writer {
        Writer {
            manager: manager.into(),
            api_version: "apps/v1".into(),
            subresource: subresource.into(),
            time: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn path(s: &str) -> Path {
        s.split('.')
            .filter(|x| !x.is_empty())
            .map(|x| PathElement::Field(x.into()))
            .collect()
    }

    fn owners(mf: &ManagedFields, p: &str) -> Vec<String> {
        mf.0.iter()
            .filter(|e| e.fields.contains(&path(p)))
            .map(|e| e.manager.clone())
            .collect()
    }

    fn config(replicas: i64, image: &str) -> Value {
        json!({"spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "web", "image": image}]}}}})
    }

    #[test]
    fn updates_take_the_fields_they_change() {
        let mut mf = ManagedFields::default();
        let v1 = config(1, "a");
        mf.record_update(
            &json!({}),
            &v1,
            &writer("create", ""),
            &TestSchema,
            &Scope::default(),
        );
        assert_eq!(owners(&mf, ".spec.replicas"), ["create"]);
        let mut v2 = v1.clone();
        v2["spec"]["replicas"] = json!(3);
        mf.record_update(
            &v1,
            &v2,
            &writer("scale", "scale"),
            &TestSchema,
            &Scope::default(),
        );
        assert_eq!(owners(&mf, ".spec.replicas"), ["scale"]);
        assert_eq!(mf.0[1].subresource, "scale");
        // An update that changes nothing adds no entry.
        mf.record_update(
            &v2,
            &v2,
            &writer("noop", ""),
            &TestSchema,
            &Scope::default(),
        );
        assert_eq!(mf.0.len(), 2);
        // Entries left with nothing are dropped.
        let mut v3 = v2.clone();
        v3["spec"]["replicas"] = json!(4);
        mf.record_update(
            &v2,
            &v3,
            &writer("create", ""),
            &TestSchema,
            &Scope::default(),
        );
        assert_eq!(mf.0.len(), 1);
    }

    #[test]
    fn apply_conflicts_with_other_owners_unless_forced() {
        let mut mf = ManagedFields::default();
        let w = writer("kubectl", "");
        let live = mf
            .apply(
                &json!({}),
                &config(1, "a"),
                &w,
                false,
                &TestSchema,
                &Scope::default(),
            )
            .expect("first apply");
        let mut scaled = live.clone();
        scaled["spec"]["replicas"] = json!(5);
        mf.record_update(
            &live,
            &scaled,
            &writer("kubectl-scale", "scale"),
            &TestSchema,
            &Scope::default(),
        );
        assert_eq!(owners(&mf, ".spec.replicas"), ["kubectl-scale"]);

        let err = mf
            .clone()
            .apply(
                &scaled,
                &config(2, "a"),
                &w,
                false,
                &TestSchema,
                &Scope::default(),
            )
            .expect_err("must fail");
        assert_eq!(
            err.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-scale\" with subresource \"scale\" using apps/v1: .spec.replicas"
        );
        // The same value is no conflict: both own it.
        let mut shared = mf.clone();
        shared
            .apply(
                &scaled,
                &config(5, "a"),
                &w,
                false,
                &TestSchema,
                &Scope::default(),
            )
            .expect("same value");
        assert_eq!(
            owners(&shared, ".spec.replicas"),
            ["kubectl", "kubectl-scale"]
        );
        // Forced, the applier takes the field.
        let forced = mf
            .apply(
                &scaled,
                &config(2, "a"),
                &w,
                true,
                &TestSchema,
                &Scope::default(),
            )
            .expect("forced");
        assert_eq!(forced["spec"]["replicas"], 2);
        assert_eq!(owners(&mf, ".spec.replicas"), ["kubectl"]);
    }

    #[test]
    fn several_conflicts_are_listed_by_manager() {
        let c = Conflicts(vec![
            Conflict {
                manager: "\"b\"".into(),
                path: path(".spec.x"),
            },
            Conflict {
                manager: "\"a\"".into(),
                path: path(".spec.y"),
            },
            Conflict {
                manager: "\"b\"".into(),
                path: path(".spec.z"),
            },
        ]);
        assert_eq!(
            c.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"a\":\n- .spec.y\nconflicts with \"b\":\n- .spec.x\n- .spec.z"
        );
    }

    #[test]
    fn fields_no_longer_applied_are_removed_unless_co_owned() {
        let mut mf = ManagedFields::default();
        let a = writer("a", "");
        let b = writer("b", "");
        let full = json!({"data": {"x": "1", "y": "2", "z": "3"}});
        let live = mf
            .apply(&json!({}), &full, &a, false, &TestSchema, &Scope::default())
            .expect("a");
        let live = mf
            .apply(
                &live,
                &json!({"data": {"y": "2"}}),
                &b,
                false,
                &TestSchema,
                &Scope::default(),
            )
            .expect("b");
        assert_eq!(owners(&mf, ".data.y"), ["a", "b"]);
        let live = mf
            .apply(
                &live,
                &json!({"data": {"z": "3"}}),
                &a,
                false,
                &TestSchema,
                &Scope::default(),
            )
            .expect("a again");
        assert_eq!(live, json!({"data": {"y": "2", "z": "3"}}));
        assert_eq!(owners(&mf, ".data.y"), ["b"]);
        assert_eq!(owners(&mf, ".data.x"), Vec::<String>::new());
    }

    #[test]
    fn list_items_are_owned_and_removed_by_key() {
        let mut mf = ManagedFields::default();
        let w = writer("kubectl", "");
        let two = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "web", "image": "a"}, {"name": "side", "image": "b"}]}}}});
        let live = mf
            .apply(&json!({}), &two, &w, false, &TestSchema, &Scope::default())
            .expect("two");
        let fv1 = mf.0[0].fields.to_fields_v1();
        assert_eq!(
            fv1["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"side\"}"],
            json!({".": {}, "f:name": {}, "f:image": {}})
        );
        let live = mf
            .apply(
                &live,
                &config(1, "a"),
                &w,
                false,
                &TestSchema,
                &Scope::default(),
            )
            .expect("one");
        assert_eq!(
            live["spec"]["template"]["spec"]["containers"],
            json!([{"name": "web", "image": "a"}])
        );
    }

    #[test]
    fn scope_keeps_status_out_of_the_main_resource() {
        let scope = Scope {
            include: None,
            exclude: vec![path(".status")],
        };
        let mut mf = ManagedFields::default();
        mf.record_update(
            &json!({}),
            &json!({"spec": {"a": 1}, "status": {"b": 2}}),
            &writer("w", ""),
            &TestSchema,
            &scope,
        );
        assert_eq!(owners(&mf, ".spec.a"), ["w"]);
        assert!(owners(&mf, ".status.b").is_empty());
    }

    #[test]
    fn entries_round_trip_through_the_object() {
        let mut mf = ManagedFields::default();
        mf.record_update(
            &json!({}),
            &config(1, "a"),
            &writer("w", "status"),
            &TestSchema,
            &Scope::default(),
        );
        let mut obj = json!({"metadata": {"name": "x"}});
        mf.write_to(&mut obj);
        assert_eq!(obj["metadata"]["managedFields"][0]["subresource"], "status");
        assert_eq!(obj["metadata"]["managedFields"][0]["operation"], "Update");
        assert_eq!(ManagedFields::of_object(&obj).expect("parse"), mf);
        assert!(ManagedFields::of_object(&json!({"metadata": {"managedFields": {}}})).is_err());
        assert!(ManagedFields::of_object(
            &json!({"metadata": {"managedFields": [{"operation": "Other"}]}})
        )
        .is_err());
        ManagedFields::default().write_to(&mut obj);
        assert!(obj["metadata"].get("managedFields").is_none());
    }

    /// Twelve updaters, each writing its own field at a later time: the bucket counts as an
    /// updater, so the three oldest end up in one `ancient-changes` entry that still owns
    /// their fields; an applier is not counted.
    #[test]
    fn update_entries_are_capped_by_merging_the_oldest() {
        let mut mf = ManagedFields::default();
        let mut obj = json!({"metadata": {"labels": {}}});
        mf.apply(
            &json!({}),
            &json!({"metadata": {"annotations": {"a": "1"}}}),
            &writer("kubectl", ""),
            false,
            &TestSchema,
            &Scope::default(),
        )
        .expect("apply");
        for i in 0..12 {
            let old = obj.clone();
            obj["metadata"]["labels"][format!("l{i}")] = json!("v");
            let mut w = writer(&format!("m{i}"), "");
            w.time = format!("2026-01-01T00:00:{i:02}Z");
            mf.record_update(&old, &obj, &w, &TestSchema, &Scope::default());
        }
        let updates: Vec<&Entry> =
            mf.0.iter()
                .filter(|e| e.operation == Operation::Update)
                .collect();
        assert_eq!(updates.len(), MAX_UPDATE_MANAGERS);
        assert_eq!(owners(&mf, ".metadata.labels.l0"), [ANCIENT_CHANGES]);
        assert_eq!(owners(&mf, ".metadata.labels.l1"), [ANCIENT_CHANGES]);
        assert_eq!(owners(&mf, ".metadata.labels.l2"), [ANCIENT_CHANGES]);
        assert_eq!(owners(&mf, ".metadata.labels.l3"), ["m3"]);
        assert_eq!(owners(&mf, ".metadata.annotations.a"), ["kubectl"]);
        let bucket =
            mf.0.iter()
                .find(|e| e.manager == ANCIENT_CHANGES)
                .expect("bucket");
        assert_eq!(bucket.time.as_deref(), Some("2026-01-01T00:00:02Z"));
    }
}
