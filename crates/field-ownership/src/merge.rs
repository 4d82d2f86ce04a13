//! The object side of an apply: merging an applied configuration into the live object, and
//! removing the fields its manager applied before and applies no more.

use serde_json::{Map, Value};

use crate::path::PathElement;
use crate::schema::{ListType, Schema};
use crate::set::{item_elements, FieldSet};

/// `live` with `config` merged in: maps field by field, keyed lists item by item (new items
/// after the live ones), set-like lists as unions; scalars, atomic values and lists that
/// cannot be keyed are taken from `config`.
pub fn merge(live: &Value, config: &Value, schema: &dyn Schema) -> Value {
    match (live, config) {
        (Value::Object(l), Value::Object(c)) => {
            Value::Object(merge_map(l, c, schema, &mut Vec::new()))
        }
        _ => config.clone(),
    }
}

fn merge_map(
    live: &Map<String, Value>,
    config: &Map<String, Value>,
    schema: &dyn Schema,
    names: &mut Vec<String>,
) -> Map<String, Value> {
    let mut out = live.clone();
    for (k, cv) in config {
        let merged = match (live.get(k), cv) {
            (Some(Value::Object(l)), Value::Object(c)) if !schema.atomic_map(names, k) => {
                names.push(k.clone());
                let m = merge_map(l, c, schema, names);
                names.pop();
                Value::Object(m)
            }
            (Some(Value::Array(l)), Value::Array(c)) => {
                let list_type = schema.list_type(names, k);
                names.push(k.clone());
                let m = merge_list(list_type, l, c, schema, names);
                names.pop();
                m
            }
            _ => cv.clone(),
        };
        out.insert(k.clone(), merged);
    }
    out
}

fn merge_list(
    list_type: ListType,
    live: &[Value],
    config: &[Value],
    schema: &dyn Schema,
    names: &mut Vec<String>,
) -> Value {
    let (Some(live_pes), Some(config_pes)) = (
        item_elements(list_type.clone(), live),
        item_elements(list_type, config),
    ) else {
        return Value::Array(config.to_vec());
    };
    let mut out = live.to_vec();
    for (pe, item) in config_pes.iter().zip(config) {
        match live_pes.iter().position(|l| l == pe) {
            Some(i) => {
                if let (Value::Object(l), Value::Object(c)) = (&out[i], item) {
                    out[i] = Value::Object(merge_map(l, c, schema, names));
                }
            }
            None => out.push(item.clone()),
        }
    }
    Value::Array(out)
}

/// Removes every path of `remove` from `obj`, except those at or above a path `keep` holds
/// (another manager's field). A map or list the removal leaves empty goes too, unless
/// `keep` holds it.
pub fn remove_fields(obj: &mut Value, remove: &FieldSet, keep: &FieldSet) {
    // Shallowest first: an item goes whole while its key fields still name it.
    let mut paths: Vec<&Vec<PathElement>> = remove.iter().collect();
    paths.sort_by_key(|p| p.len());
    for path in paths {
        if keep.has_prefix(path) {
            continue;
        }
        remove_path(obj, path);
        // Prune the containers the removal emptied.
        for depth in (1..path.len()).rev() {
            let parent = &path[..depth];
            if keep.has_prefix(parent) {
                break;
            }
            let empty = match crate::set::value_at(obj, parent) {
                Some(Value::Object(m)) => m.is_empty(),
                Some(Value::Array(a)) => a.is_empty(),
                _ => false,
            };
            if !empty {
                break;
            }
            remove_path(obj, parent);
        }
    }
}

/// Removes the value at `path` (a map entry, or the list items it names).
pub fn remove_path(obj: &mut Value, path: &[PathElement]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for pe in parents {
        let next = match (pe, cur) {
            (PathElement::Field(n), Value::Object(m)) => m.get_mut(n),
            (_, Value::Array(items)) => items
                .iter_mut()
                .enumerate()
                .find(|(i, item)| pe.matches_item(*i, item))
                .map(|(_, item)| item),
            _ => None,
        };
        let Some(next) = next else {
            return;
        };
        cur = next;
    }
    match (last, cur) {
        (PathElement::Field(n), Value::Object(m)) => {
            m.remove(n);
        }
        (PathElement::Field(_), _) => {}
        (pe, Value::Array(items)) => {
            let mut i = 0;
            items.retain(|item| {
                let keep = !pe.matches_item(i, item);
                i += 1;
                keep
            });
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::set::tests::TestSchema;
    use serde_json::json;

    #[test]
    fn keyed_lists_merge_by_key_and_atomic_values_are_replaced() {
        let live = json!({"spec": {
            "selector": {"matchLabels": {"a": "1", "b": "2"}},
            "containers": [
                {"name": "web", "image": "nginx", "args": ["x", "y"]},
                {"name": "side", "image": "busybox"}
            ]
        }, "metadata": {"finalizers": ["a"]}});
        let config = json!({"spec": {
            "selector": {"matchLabels": {"a": "1"}},
            "containers": [
                {"name": "side", "image": "busybox:2"},
                {"name": "new", "image": "x"},
                {"name": "web", "args": ["z"]}
            ]
        }, "metadata": {"finalizers": ["b"]}});
        let merged = merge(&live, &config, &TestSchema);
        assert_eq!(
            merged,
            json!({"spec": {
                "selector": {"matchLabels": {"a": "1"}},
                "containers": [
                    {"name": "web", "image": "nginx", "args": ["z"]},
                    {"name": "side", "image": "busybox:2"},
                    {"name": "new", "image": "x"}
                ]
            }, "metadata": {"finalizers": ["a", "b"]}})
        );
    }

    #[test]
    fn lists_with_unkeyable_items_are_replaced() {
        let live = json!({"spec": {"containers": [{"name": "a"}]}});
        let config = json!({"spec": {"containers": [{"image": "x"}]}});
        assert_eq!(merge(&live, &config, &TestSchema), config);
    }

    #[test]
    fn removal_spares_other_managers_fields_and_prunes_what_it_empties() {
        let mut obj = json!({"data": {"a": "1", "b": "2"}, "metadata": {"labels": {"x": "y"}},
            "spec": {"containers": [{"name": "web", "image": "n", "env": ["k"]}, {"name": "s"}]}});
        let f = |s: &str| PathElement::Field(s.into());
        let web = PathElement::key_of(&json!({"name": "web"}), &["name".into()]).expect("key");
        let side = PathElement::key_of(&json!({"name": "s"}), &["name".into()]).expect("key");
        let remove: FieldSet = [
            vec![f("data"), f("a")],
            vec![f("data"), f("b")],
            vec![f("metadata"), f("labels"), f("x")],
            vec![f("spec"), f("containers"), web.clone()],
            vec![f("spec"), f("containers"), web.clone(), f("image")],
            vec![f("spec"), f("containers"), side.clone()],
            vec![f("spec"), f("containers"), side, f("name")],
        ]
        .into_iter()
        .collect();
        let keep: FieldSet = [
            vec![f("data"), f("b")],
            vec![f("spec"), f("containers"), web, f("env")],
        ]
        .into_iter()
        .collect();
        remove_fields(&mut obj, &remove, &keep);
        assert_eq!(
            obj,
            json!({"data": {"b": "2"}, "spec": {"containers": [{"name": "web", "env": ["k"]}]}})
        );
    }
}
