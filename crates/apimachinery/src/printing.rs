//! Building blocks of server-side printing that every kind's table columns use: column
//! definitions, cell text helpers and upstream's `HumanDuration` for the AGE column.

use serde_json::{json, Value};

/// One column: name, type, format, priority (0 always shown, 1 only with `-o wide`),
/// description.
pub type Column = (&'static str, &'static str, &'static str, u32, &'static str);

const NAME_DESC: &str =
    "Name must be unique within a namespace. Is required when creating resources.";
const AGE_DESC: &str =
    "CreationTimestamp is a timestamp representing the server time when this object was created.";

/// The NAME column every kind starts with.
pub const NAME: Column = ("Name", "string", "name", 0, NAME_DESC);
/// The NAME column shown only with `-o wide` (events list it last).
pub const WIDE_NAME: Column = ("Name", "string", "name", 1, NAME_DESC);
/// The AGE column.
pub const AGE: Column = ("Age", "string", "", 0, AGE_DESC);

/// The columns of upstream's default table convertor, for kinds without a printer.
pub const DEFAULT_COLUMNS: &[Column] = &[NAME, ("Created At", "date", "", 0, AGE_DESC)];

/// The cells of [`DEFAULT_COLUMNS`].
pub fn default_cells(obj: &Value) -> Vec<Value> {
    let created = parse_ts(obj.pointer("/metadata/creationTimestamp"))
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    vec![json!(s(obj, &["metadata", "name"])), json!(created)]
}

/// The object's name and AGE cells, which most rows start and end with.
pub fn name_and_age(obj: &Value, now: jiff::Timestamp) -> (Value, Value) {
    (
        json!(s(obj, &["metadata", "name"])),
        json!(since(obj.pointer("/metadata/creationTimestamp"), now)),
    )
}

/// Upstream `duration.HumanDuration`: `5s`, `3m20s`, `12m`, `5h3m`, `2d3h`, `400d`, `2y10d`.
pub fn human_duration(d: std::time::Duration) -> String {
    let seconds = d.as_secs();
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{h}h")
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    let years = days / 365;
    if hours < 24 * 365 * 8 {
        let dy = days % 365;
        return if dy == 0 {
            format!("{years}y")
        } else {
            format!("{years}y{dy}d")
        };
    }
    format!("{years}y")
}

/// The string at `path` as an owned cell text, `""` when absent.
pub fn s(v: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// Entries of a map or list (the DATA and SECRETS columns).
pub fn len_of(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// A `metav1.Time` field as a timestamp.
pub fn parse_ts(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v.and_then(Value::as_str).and_then(|t| t.parse().ok())
}

/// Upstream `translateTimestampSince`: `<unknown>` for a zero time, `<invalid>` for more than
/// a second in the future, else the human duration.
pub fn since(v: Option<&Value>, now: jiff::Timestamp) -> String {
    let Some(t) = parse_ts(v) else {
        return "<unknown>".into();
    };
    let secs = now.as_second() - t.as_second();
    if secs < -1 {
        "<invalid>".into()
    } else {
        let nanos = (now.as_nanosecond() - t.as_nanosecond()).max(0);
        human_duration(std::time::Duration::from_nanos(
            u64::try_from(nanos).unwrap_or(0),
        ))
    }
}

/// Upstream `listWithMoreString` with its limit of three.
pub fn list_with_more(items: &[String]) -> String {
    const MAX: usize = 3;
    if items.is_empty() {
        return "<unset>".into();
    }
    let shown = items
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(",");
    if items.len() > MAX {
        format!("{shown} + {} more...", items.len() - MAX)
    } else {
        shown
    }
}

/// `<none>` for an empty cell text.
pub fn or_none(v: String) -> String {
    if v.is_empty() {
        "<none>".to_string()
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations() {
        let cases = [
            (5, "5s"),
            (119, "119s"),
            (200, "3m20s"),
            (180, "3m"),
            (720, "12m"),
            (3 * 3600 + 180, "3h3m"),
            (5 * 3600, "5h"),
            (20 * 3600, "20h"),
            (2 * 86400 + 3 * 3600, "2d3h"),
            (400 * 86400, "400d"),
            (2 * 365 * 86400 + 10 * 86400, "2y10d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_duration(Duration::from_secs(secs)), want, "{secs}");
        }
    }

    #[test]
    fn since_and_defaults() {
        let now: jiff::Timestamp = "2026-01-02T15:00:00Z".parse().expect("timestamp");
        assert_eq!(since(None, now), "<unknown>");
        assert_eq!(
            since(Some(&json!("2026-01-02T15:00:10Z")), now),
            "<invalid>"
        );
        assert_eq!(since(Some(&json!("2026-01-02T14:59:30Z")), now), "30s");
        let other = json!({"metadata":{"name":"x","creationTimestamp":"2026-01-02T14:00:00Z"}});
        assert_eq!(
            default_cells(&other),
            vec![json!("x"), json!("2026-01-02T14:00:00Z")]
        );
        assert_eq!(DEFAULT_COLUMNS.len(), default_cells(&other).len());
        assert_eq!(list_with_more(&[]), "<unset>");
        assert_eq!(or_none(String::new()), "<none>");
    }
}
