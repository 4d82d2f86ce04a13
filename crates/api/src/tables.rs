//! Server-side printing: `meta.k8s.io/v1` Tables with each kind's columns.
//!
//! kubectl prints server Tables verbatim, so each kind's strategy mirrors kube-apiserver's
//! `printers.go` for its columns and cells; kinds without a printer get upstream's default
//! NAME / CREATED AT. As upstream does, the server always fills every column, wide ones
//! included; kubectl hides `priority > 0` columns unless `-o wide`.

use serde_json::{json, Map, Value};

use crate::resources::{lookup_any_kind, ResourceInfo};
use apimachinery::printing::{default_cells, Column, DEFAULT_COLUMNS};

/// What `includeObject` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value (`None`, `Metadata`, `Object`); the default is
    /// `Metadata`, as upstream.
    pub fn from_query(v: Option<&str>) -> Option<Self> {
        match v {
            None | Some("") | Some("Metadata") => Some(IncludeObject::Metadata),
            Some("None") => Some(IncludeObject::None),
            Some("Object") => Some(IncludeObject::Object),
            Some(_) => None,
        }
    }
}

fn definitions(columns: &[Column]) -> Vec<Value> {
    columns
        .iter()
        .map(|(name, ty, format, priority, description)| {
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect()
}

/// Column definitions for `info` (JSON objects with name, type, format, description,
/// priority).
pub fn column_definitions(info: &ResourceInfo) -> Vec<Value> {
    definitions(info.strategy.columns())
}

/// The cells of one row for `obj` at time `now` (AGE computed with upstream's HumanDuration).
pub fn row_cells(info: &ResourceInfo, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    info.strategy.cells(obj, now)
}

/// A whole Table of `info`'s objects. `with_columns` false omits columnDefinitions (watch
/// events after the first). `resource_version` goes in metadata.
pub fn table_for(
    info: &ResourceInfo,
    objs: &[Value],
    include: IncludeObject,
    with_columns: bool,
    resource_version: &str,
    now: jiff::Timestamp,
) -> Value {
    let s = info.strategy;
    build(
        s.columns(),
        &|o| (s.cells(o, now), s.row_conditions(o)),
        objs,
        include,
        with_columns,
        resource_version,
    )
}

/// [`table_for`] by kind name; a kind that is not served prints upstream's default columns.
pub fn table(
    kind: &str,
    objs: &[Value],
    include: IncludeObject,
    with_columns: bool,
    resource_version: &str,
    now: jiff::Timestamp,
) -> Value {
    match lookup_any_kind(kind) {
        Some(info) => table_for(info, objs, include, with_columns, resource_version, now),
        None => build(
            DEFAULT_COLUMNS,
            &|o| (default_cells(o), None),
            objs,
            include,
            with_columns,
            resource_version,
        ),
    }
}

type RowFn<'a> = dyn Fn(&Value) -> (Vec<Value>, Option<Value>) + 'a;

fn build(
    columns: &[Column],
    row_of: &RowFn<'_>,
    objs: &[Value],
    include: IncludeObject,
    with_columns: bool,
    resource_version: &str,
) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
                IncludeObject::Object => o.clone(),
            };
            let (cells, conditions) = row_of(o);
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(cells));
            if let Some(c) = conditions {
                row.insert("conditions".into(), c);
            }
            row.insert("object".into(), object);
            Value::Object(row)
        })
        .collect();
    let mut t = Map::new();
    t.insert("kind".into(), json!("Table"));
    t.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    t.insert(
        "metadata".into(),
        json!({"resourceVersion": resource_version}),
    );
    if with_columns {
        t.insert(
            "columnDefinitions".into(),
            Value::Array(definitions(columns)),
        );
    }
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;

    fn now() -> jiff::Timestamp {
        "2026-01-02T15:00:00Z".parse().expect("timestamp")
    }

    fn pod(status: Value) -> Value {
        json!({"metadata":{"name":"web","creationTimestamp":"2026-01-02T14:55:00Z"},
               "spec":{"containers":[{"name":"a"},{"name":"b"}],"nodeName":"n1"},"status":status})
    }

    #[test]
    fn definitions_match_cells() {
        let pods = lookup("", "pods").expect("pods");
        assert_eq!(
            column_definitions(pods).len(),
            row_cells(pods, &json!({}), now()).len()
        );
        assert_eq!(column_definitions(pods)[5]["priority"], 1);
    }

    #[test]
    fn unknown_kinds_get_default_columns() {
        let other = json!({"metadata":{"name":"x","creationTimestamp":"2026-01-02T14:00:00Z"}});
        let t = table(
            "Widget",
            std::slice::from_ref(&other),
            IncludeObject::None,
            true,
            "1",
            now(),
        );
        assert_eq!(t["columnDefinitions"][1]["name"], "Created At");
        assert_eq!(t["rows"][0]["cells"], json!(["x", "2026-01-02T14:00:00Z"]));
    }

    #[test]
    fn whole_table() {
        let p = pod(json!({"phase":"Succeeded"}));
        let t = table(
            "Pod",
            std::slice::from_ref(&p),
            IncludeObject::Metadata,
            true,
            "42",
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "42");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
        let t = table(
            "Pod",
            std::slice::from_ref(&p),
            IncludeObject::None,
            false,
            "42",
            now(),
        );
        assert!(t.get("columnDefinitions").is_none());
        assert_eq!(t["rows"][0]["object"], Value::Null);
        let t = table(
            "Pod",
            std::slice::from_ref(&p),
            IncludeObject::Object,
            false,
            "1",
            now(),
        );
        assert_eq!(t["rows"][0]["object"], p);
    }
}
