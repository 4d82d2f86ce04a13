//! Sets of field paths: the fields an object sets, what changed between two objects, and the
//! FieldsV1 encoding `metadata.managedFields` stores them in.

use std::collections::BTreeSet;

use serde_json::{Map, Value};

use crate::path::{Path, PathElement, PathError};
use crate::schema::{ListType, Schema};

/// A set of paths. A path is in the set when its field (or list item) is owned as such;
/// its parents need not be.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeSet<Path>);

#[derive(Debug, thiserror::Error)]
pub enum FieldsV1Error {
    #[error("FieldsV1 must be a JSON object at {path}, got {got}")]
    NotAnObject { path: String, got: Value },
    #[error("FieldsV1 at {path}")]
    Element {
        path: String,
        #[source]
        source: PathError,
    },
}

impl FieldSet {
    pub fn new() -> Self {
        FieldSet::default()
    }

    pub fn insert(&mut self, path: Path) {
        self.0.insert(path);
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        self.0.contains(path)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Path> {
        self.0.iter()
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.union(&other.0).cloned().collect())
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.difference(&other.0).cloned().collect())
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        FieldSet(self.0.intersection(&other.0).cloned().collect())
    }

    /// Whether a path at or below `prefix` is in the set.
    pub fn has_prefix(&self, prefix: &[PathElement]) -> bool {
        self.0
            .range(prefix.to_vec()..)
            .next()
            .is_some_and(|p| p.starts_with(prefix))
    }

    /// The set without the paths at or below any of `prefixes`.
    pub fn without_prefixes(&self, prefixes: &[Path]) -> FieldSet {
        FieldSet(
            self.0
                .iter()
                .filter(|p| !prefixes.iter().any(|x| p.starts_with(x)))
                .cloned()
                .collect(),
        )
    }

    /// Only the paths at or below one of `prefixes`.
    pub fn within_prefixes(&self, prefixes: &[Path]) -> FieldSet {
        FieldSet(
            self.0
                .iter()
                .filter(|p| prefixes.iter().any(|x| p.starts_with(x)))
                .cloned()
                .collect(),
        )
    }

    /// The fields `obj` sets: every scalar, atomic or empty value, every list item (keyed or
    /// set member) as itself and its fields. A keyed list with an item lacking its key is
    /// owned whole, as an atomic list.
    pub fn of_object(obj: &Value, schema: &dyn Schema) -> FieldSet {
        let mut set = FieldSet::new();
        if let Value::Object(m) = obj {
            walk_map(m, schema, &mut Vec::new(), &mut Vec::new(), &mut set);
        }
        set
    }

    /// The FieldsV1 document: nested objects keyed by element, `{}` for an owned leaf and
    /// `".": {}` for an owned path that also has owned children.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Node::default();
        for path in &self.0 {
            let mut node = &mut root;
            for pe in path {
                node = node.children.entry(pe.to_fields_v1()).or_default();
            }
            node.owned = true;
        }
        root.to_json()
    }

    /// Reads a FieldsV1 document.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldsV1Error> {
        let mut set = FieldSet::new();
        read_node(v, &mut Vec::new(), &mut set)?;
        Ok(set)
    }
}

impl FromIterator<Path> for FieldSet {
    fn from_iter<T: IntoIterator<Item = Path>>(iter: T) -> Self {
        FieldSet(iter.into_iter().collect())
    }
}

/// The tree FieldsV1 is written from.
#[derive(Default)]
struct Node {
    owned: bool,
    children: std::collections::BTreeMap<String, Node>,
}

impl Node {
    /// A leaf is `{}`; an owned node with children says so with `".": {}`.
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if self.owned && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, child) in &self.children {
            m.insert(k.clone(), child.to_json());
        }
        Value::Object(m)
    }
}

fn read_node(v: &Value, path: &mut Path, set: &mut FieldSet) -> Result<(), FieldsV1Error> {
    let Value::Object(m) = v else {
        return Err(FieldsV1Error::NotAnObject {
            path: crate::path::display(path),
            got: v.clone(),
        });
    };
    if m.is_empty() && !path.is_empty() {
        set.insert(path.clone());
    }
    for (k, child) in m {
        if k == "." {
            if !path.is_empty() {
                set.insert(path.clone());
            }
            continue;
        }
        let pe = PathElement::from_fields_v1(k).map_err(|source| FieldsV1Error::Element {
            path: crate::path::display(path),
            source,
        })?;
        path.push(pe);
        let r = read_node(child, path, set);
        path.pop();
        r?;
    }
    Ok(())
}

fn walk_map(
    m: &Map<String, Value>,
    schema: &dyn Schema,
    names: &mut Vec<String>,
    path: &mut Path,
    set: &mut FieldSet,
) {
    for (k, child) in m {
        path.push(PathElement::Field(k.clone()));
        walk_field(k, child, schema, names, path, set);
        path.pop();
    }
}

/// The paths of field `k` of the map at `names`, whose own path is `path`.
fn walk_field(
    k: &str,
    child: &Value,
    schema: &dyn Schema,
    names: &mut Vec<String>,
    path: &mut Path,
    set: &mut FieldSet,
) {
    match child {
        Value::Object(c) if !c.is_empty() && !schema.atomic_map(names, k) => {
            names.push(k.to_string());
            walk_map(c, schema, names, path, set);
            names.pop();
        }
        Value::Array(items) if !items.is_empty() => {
            let Some(elements) = item_elements(schema.list_type(names, k), items) else {
                set.insert(path.clone());
                return;
            };
            names.push(k.to_string());
            for (pe, item) in elements.into_iter().zip(items) {
                path.push(pe);
                set.insert(path.clone());
                if let Value::Object(fields) = item {
                    walk_map(fields, schema, names, path, set);
                }
                path.pop();
            }
            names.pop();
        }
        _ => set.insert(path.clone()),
    }
}

/// The element naming each item of a list, or `None` when the list is owned whole (atomic,
/// or an item that cannot be named).
pub(crate) fn item_elements(list_type: ListType, items: &[Value]) -> Option<Vec<PathElement>> {
    match list_type {
        ListType::Atomic => None,
        ListType::Set => items
            .iter()
            .map(|i| (!i.is_object() && !i.is_array()).then(|| PathElement::value_of(i)))
            .collect(),
        ListType::Map(keys) => items
            .iter()
            .map(|i| PathElement::key_of(i, &keys))
            .collect(),
    }
}

/// The value at `path` in `obj`.
pub fn value_at<'a>(obj: &'a Value, path: &[PathElement]) -> Option<&'a Value> {
    let mut cur = obj;
    for pe in path {
        cur = match (pe, cur) {
            (PathElement::Field(n), Value::Object(m)) => m.get(n)?,
            (PathElement::Field(_), _) => return None,
            (_, Value::Array(items)) => items
                .iter()
                .enumerate()
                .find(|(i, item)| pe.matches_item(*i, item))
                .map(|(_, item)| item)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// What an update from `old` to `new` did: the paths it added or changed, and those it
/// removed. Keyed list items count as added or removed; their fields are compared one by one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub changed: FieldSet,
    pub removed: FieldSet,
}

impl Changes {
    pub fn between(old: &Value, new: &Value, schema: &dyn Schema) -> Changes {
        let before = FieldSet::of_object(old, schema);
        let after = FieldSet::of_object(new, schema);
        let mut changed = after.difference(&before);
        for p in before.intersection(&after).iter() {
            if matches!(p.last(), Some(PathElement::Key(_))) {
                continue;
            }
            if value_at(old, p) != value_at(new, p) {
                changed.insert(p.clone());
            }
        }
        Changes {
            changed,
            removed: before.difference(&after),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// Containers keyed by name, their ports by containerPort, finalizers a set, selectors
    /// atomic.
    pub struct TestSchema;

    impl Schema for TestSchema {
        fn list_type(&self, path: &[String], field: &str) -> ListType {
            match (path.last().map(String::as_str), field) {
                (Some("spec"), "containers") => ListType::Map(vec!["name".into()]),
                (Some("containers"), "ports") => ListType::Map(vec!["containerPort".into()]),
                (Some("metadata"), "finalizers") => ListType::Set,
                _ => ListType::Atomic,
            }
        }

        fn atomic_map(&self, _path: &[String], field: &str) -> bool {
            field == "selector"
        }
    }

    fn deployment() -> Value {
        json!({
            "metadata": {"labels": {"app": "web"}, "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"spec": {"containers": [
                    {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}], "args": ["x"]}
                ]}}
            }
        })
    }

    #[test]
    fn an_objects_fields_encode_as_kube_writes_them() {
        let set = FieldSet::of_object(&deployment(), &TestSchema);
        let want = json!({
            "f:metadata": {"f:labels": {"f:app": {}}, "f:finalizers": {"v:\"a\"": {}, "v:\"b\"": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:selector": {},
                "f:template": {"f:spec": {"f:containers": {"k:{\"name\":\"web\"}": {
                    ".": {}, "f:name": {}, "f:image": {}, "f:args": {},
                    "f:ports": {"k:{\"containerPort\":80}": {".": {}, "f:containerPort": {}}}
                }}}}
            }
        });
        assert_eq!(set.to_fields_v1(), want);
        assert_eq!(FieldSet::from_fields_v1(&want).expect("parse"), set);
    }

    #[test]
    fn fields_v1_errors_name_the_place() {
        let err = FieldSet::from_fields_v1(&json!({"f:spec": {"x:y": {}}})).expect_err("must fail");
        assert!(err.to_string().contains(".spec"), "{err}");
        assert!(FieldSet::from_fields_v1(&json!({"f:spec": 1})).is_err());
    }

    #[test]
    fn empty_values_and_unkeyable_items_are_owned_whole() {
        let obj = json!({"data": {}, "spec": {"containers": [{"image": "x"}]}, "list": []});
        let set = FieldSet::of_object(&obj, &TestSchema);
        let f = |s: &str| PathElement::Field(s.into());
        assert!(set.contains(&[f("data")]));
        assert!(set.contains(&[f("list")]));
        assert!(set.contains(&[f("spec"), f("containers")]));
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn changes_name_added_modified_and_removed_fields() {
        let old = deployment();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(3);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["metadata"]["labels"]["tier"] = json!("front");
        new["metadata"]["finalizers"] = json!(["a"]);
        let ch = Changes::between(&old, &new, &TestSchema);
        let paths: Vec<String> = ch.changed.iter().map(|p| crate::path::display(p)).collect();
        assert_eq!(
            paths,
            [
                ".metadata.labels.tier",
                ".spec.replicas",
                ".spec.template.spec.containers[name=\"web\"].image"
            ]
        );
        let removed: Vec<String> = ch.removed.iter().map(|p| crate::path::display(p)).collect();
        assert_eq!(removed, [".metadata.finalizers[=\"b\"]"]);
    }

    #[test]
    fn values_are_found_by_key_and_by_member() {
        let d = deployment();
        let set = FieldSet::of_object(&d, &TestSchema);
        for p in set.iter() {
            assert!(value_at(&d, p).is_some(), "{p:?}");
        }
        assert!(set.has_prefix(&[PathElement::Field("spec".into())]));
        assert!(!set.has_prefix(&[PathElement::Field("status".into())]));
    }
}
