//! Counters: a named count per combination of label values (`apiserver_request_total` by
//! verb, resource and code), incremented with one relaxed atomic add once the series exists.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::text::{braces, label_pairs};

/// A counter family.
#[derive(Debug)]
pub struct Counter {
    name: &'static str,
    help: &'static str,
    labels: &'static [&'static str],
    series: Mutex<BTreeMap<Vec<String>, Arc<AtomicU64>>>,
}

impl Counter {
    /// A counter with these label names (none for a single series).
    pub fn new(name: &'static str, help: &'static str, labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            labels,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    fn series(&self, values: &[&str]) -> Arc<AtomicU64> {
        let key: Vec<String> = (0..self.labels.len())
            .map(|i| values.get(i).copied().unwrap_or_default().to_string())
            .collect();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        series.entry(key).or_default().clone()
    }

    /// Adds one to the series of `values` (one per label name, in order; missing ones are
    /// empty).
    pub fn inc(&self, values: &[&str]) {
        self.series(values).fetch_add(1, Ordering::Relaxed);
    }

    /// The count of the series of `values`.
    pub fn get(&self, values: &[&str]) -> u64 {
        self.series(values).load(Ordering::Relaxed)
    }

    /// Drops every series whose label `label` has `value` (the series of a pod that is
    /// gone), so the family holds only what still exists.
    pub fn remove_where(&self, label: &str, value: &str) {
        let Some(i) = self.labels.iter().position(|l| *l == label) else {
            return;
        };
        self.series
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| key.get(i).map(String::as_str) != Some(value));
    }

    pub(crate) fn render(&self, out: &mut String) {
        let series: Vec<(Vec<String>, u64)> = {
            let map = self.series.lock().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(k, v)| (k.clone(), v.load(Ordering::Relaxed)))
                .collect()
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (values, count) in series {
            let labels = braces(&label_pairs(self.labels, &values));
            let _ = writeln!(out, "{}{labels} {count}", self.name);
        }
    }
}

/// A gauge family computed when it is scraped (`apiserver_storage_objects`): its samples
/// are given whole, as (label values, value).
pub fn render_gauge(
    out: &mut String,
    name: &str,
    help: &str,
    labels: &[&str],
    samples: &[(Vec<String>, f64)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (values, value) in samples {
        let labels = braces(&label_pairs(labels, values));
        let _ = writeln!(out, "{name}{labels} {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_label_values_sorted() {
        let c = Counter::new("req_total", "Requests.", &["verb", "code"]);
        c.inc(&["LIST", "200"]);
        c.inc(&["GET", "404"]);
        c.inc(&["LIST", "200"]);
        c.inc(&["GET"]);
        assert_eq!(c.get(&["LIST", "200"]), 2);
        c.inc(&["PUT", "409"]);
        c.remove_where("verb", "PUT");
        c.remove_where("nope", "LIST");
        let mut out = String::new();
        c.render(&mut out);
        assert_eq!(
            out,
            "# HELP req_total Requests.\n# TYPE req_total counter\n\
req_total{verb=\"GET\",code=\"\"} 1\nreq_total{verb=\"GET\",code=\"404\"} 1\n\
req_total{verb=\"LIST\",code=\"200\"} 2\n"
        );
    }

    #[test]
    fn gauges_are_rendered_as_given() {
        let mut out = String::new();
        render_gauge(
            &mut out,
            "objects",
            "Objects.",
            &["resource"],
            &[(vec!["pods".into()], 3.0), (vec!["a\"b".into()], 0.0)],
        );
        assert_eq!(
            out,
            "# HELP objects Objects.\n# TYPE objects gauge\nobjects{resource=\"pods\"} 3\nobjects{resource=\"a\\\"b\"} 0\n"
        );
    }
}
