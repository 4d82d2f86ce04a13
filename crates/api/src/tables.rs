//! Server-side printing: `meta.k8s.io/v1` Tables with the columns of upstream's printers.

/// What `includeObject` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

/// Column definitions for `kind` (JSON objects with name, type, format, description, priority).
pub fn column_definitions(kind: &str) -> Vec<serde_json::Value> {
    let _ = kind;
    unimplemented!()
}

/// The cells of one row for `obj` at time `now` (AGE computed with upstream's HumanDuration).
pub fn row_cells(kind: &str, obj: &serde_json::Value, now: jiff::Timestamp) -> Vec<serde_json::Value> {
    let _ = (kind, obj, now);
    unimplemented!()
}

/// A whole Table for `objs`. `with_columns` false omits columnDefinitions (watch events after
/// the first). `resource_version` goes in metadata.
pub fn table(
    kind: &str,
    objs: &[serde_json::Value],
    include: IncludeObject,
    with_columns: bool,
    resource_version: &str,
    now: jiff::Timestamp,
) -> serde_json::Value {
    let _ = (kind, objs, include, with_columns, resource_version, now);
    unimplemented!()
}

/// Upstream `duration.HumanDuration`: `5s`, `3m20s`, `12m`, `5h3m`, `2d3h`, `400d`, `2y10d`.
pub fn human_duration(d: std::time::Duration) -> String {
    let _ = d;
    unimplemented!()
}
