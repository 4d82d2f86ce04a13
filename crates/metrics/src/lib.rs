//! Duration histograms and counters for the node's and the API server's `/metrics`, in the
//! Prometheus text exposition format (0.0.4), which is what kubelet and kube-apiserver serve
//! and what every scraper reads. Observing is a few relaxed atomic adds, cheap enough for
//! the pod start and request paths; there is no global registry: whoever serves the metrics
//! owns a `Registry` and hands its families to the code that observes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod counter;
mod text;

pub use counter::{render_gauge, Counter};
pub use text::escape;
use text::{braces, label_pairs};

/// Upper bounds (seconds) fine enough to read pod start phases of a millisecond or two from,
/// and wide enough for an image pull. kubelet's own histograms use coarser buckets; the
/// metric names keep their meaning, the bounds are ours.
pub const DURATION_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15,
    0.2, 0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

/// One series: counts per bucket (not cumulative; the last slot is above every bound), and
/// the sum of the observed durations in nanoseconds.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
}

/// A consistent-enough read of a histogram: cumulative counts per upper bound (the last one
/// is `+Inf`), the total count and the sum in seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    pub cumulative: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    /// A histogram over `bounds`, which must be increasing.
    pub fn new(bounds: &'static [f64]) -> Self {
        debug_assert!(
            bounds.windows(2).all(|w| w[0] < w[1]),
            "bounds must increase"
        );
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
        }
    }

    /// Counts one duration: in the first bucket whose bound is not below it (`le`).
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let slot = self.bounds.partition_point(|b| *b < secs);
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut total = 0;
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let bounds = self.bounds.iter().copied().chain([f64::INFINITY]);
        for (bound, b) in bounds.zip(self.buckets.iter()) {
            total += b.load(Ordering::Relaxed);
            cumulative.push((bound, total));
        }
        let sum = Duration::from_nanos(self.sum_nanos.load(Ordering::Relaxed)).as_secs_f64();
        Snapshot {
            cumulative,
            count: total,
            sum,
        }
    }
}

impl Snapshot {
    /// The `q` quantile (0..=1) estimated as Prometheus' `histogram_quantile` does: linear
    /// within the bucket it falls in; the highest finite bound when it falls above them all.
    /// `None` when nothing was observed.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let rank = q * self.count as f64;
        let mut lower = (0.0, 0u64);
        for &(bound, cum) in &self.cumulative {
            if cum as f64 >= rank && cum > lower.1 {
                if bound.is_infinite() {
                    return Some(lower.0);
                }
                let inside = (rank - lower.1 as f64) / (cum - lower.1) as f64;
                return Some(lower.0 + (bound - lower.0) * inside);
            }
            lower = (bound, cum);
        }
        Some(lower.0)
    }
}

/// A named metric: one histogram, or one per combination of label values.
#[derive(Debug)]
pub struct Family {
    name: &'static str,
    help: &'static str,
    labels: Vec<&'static str>,
    bounds: &'static [f64],
    series: Mutex<BTreeMap<Vec<String>, Arc<Histogram>>>,
}

impl Family {
    /// A metric without labels.
    pub fn new(name: &'static str, help: &'static str, bounds: &'static [f64]) -> Self {
        Self {
            name,
            help,
            labels: Vec::new(),
            bounds,
            series: Mutex::new(BTreeMap::new()),
        }
    }

    /// A metric with one label (`phase`, `operation_type` …).
    pub fn labelled(
        name: &'static str,
        help: &'static str,
        label: &'static str,
        bounds: &'static [f64],
    ) -> Self {
        Self::with_labels(name, help, &[label], bounds)
    }

    /// A metric with several labels (`verb`, `resource` …), observed with
    /// [`Family::observe_labels`].
    pub fn with_labels(
        name: &'static str,
        help: &'static str,
        labels: &[&'static str],
        bounds: &'static [f64],
    ) -> Self {
        Self {
            labels: labels.to_vec(),
            ..Self::new(name, help, bounds)
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The series of `value` (of the label; ignored when the metric has none).
    pub fn series(&self, value: &str) -> Arc<Histogram> {
        self.series_of(&[value])
    }

    /// The series of `values`, one per label name in order (missing ones are empty, extra
    /// ones ignored).
    pub fn series_of(&self, values: &[&str]) -> Arc<Histogram> {
        let key: Vec<String> = (0..self.labels.len())
            .map(|i| values.get(i).copied().unwrap_or_default().to_string())
            .collect();
        let mut series = self.series.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(h) = series.get(&key) {
            return h.clone();
        }
        let h = Arc::new(Histogram::new(self.bounds));
        series.insert(key, h.clone());
        h
    }

    /// Observes `d` in the unlabelled series.
    pub fn observe(&self, d: Duration) {
        self.series("").observe(d);
    }

    /// Observes `d` in the series of label value `value`.
    pub fn observe_with(&self, value: &str, d: Duration) {
        self.series(value).observe(d);
    }

    /// Observes `d` in the series of label values `values`.
    pub fn observe_labels(&self, values: &[&str], d: Duration) {
        self.series_of(values).observe(d);
    }

    fn render(&self, out: &mut String) {
        let series: Vec<(Vec<String>, Arc<Histogram>)> = {
            let map = self.series.lock().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} histogram", self.name);
        for (values, h) in series {
            let plain = label_pairs(&self.labels, &values);
            let labels = if plain.is_empty() {
                String::new()
            } else {
                format!("{plain},")
            };
            let snap = h.snapshot();
            for (bound, cum) in &snap.cumulative {
                let le = if bound.is_infinite() {
                    "+Inf".to_string()
                } else {
                    bound.to_string()
                };
                let _ = writeln!(out, "{}_bucket{{{labels}le=\"{le}\"}} {cum}", self.name);
            }
            let braces = braces(&plain);
            let _ = writeln!(out, "{}_sum{braces} {}", self.name, snap.sum);
            let _ = writeln!(out, "{}_count{braces} {}", self.name, snap.count);
        }
    }
}

/// One registered family of either type.
#[derive(Debug, Clone)]
enum Entry {
    Histogram(Arc<Family>),
    Counter(Arc<Counter>),
}

/// The families one endpoint serves, in registration order.
#[derive(Debug, Default)]
pub struct Registry {
    families: Mutex<Vec<Entry>>,
}

/// The `Content-Type` of [`Registry::render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

impl Registry {
    /// Adds a family and returns the handle observers keep.
    pub fn register(&self, family: Family) -> Arc<Family> {
        let family = Arc::new(family);
        self.families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry::Histogram(family.clone()));
        family
    }

    /// Adds a counter and returns the handle observers keep.
    pub fn register_counter(&self, counter: Counter) -> Arc<Counter> {
        let counter = Arc::new(counter);
        self.families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Entry::Counter(counter.clone()));
        counter
    }

    /// Every family in the text exposition format.
    pub fn render(&self) -> String {
        let families = self
            .families
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        for f in families {
            match f {
                Entry::Histogram(h) => h.render(&mut out),
                Entry::Counter(c) => c.render(&mut out),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: &[f64] = &[0.01, 0.1, 1.0];

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn observations_land_in_the_first_bucket_not_below_them() {
        let h = Histogram::new(BOUNDS);
        for d in [ms(5), ms(10), ms(11), ms(100), ms(2000)] {
            h.observe(d);
        }
        let snap = h.snapshot();
        assert_eq!(
            snap.cumulative,
            vec![(0.01, 2), (0.1, 4), (1.0, 4), (f64::INFINITY, 5)]
        );
        assert_eq!(snap.count, 5);
        assert!((snap.sum - 2.126).abs() < 1e-9, "sum {}", snap.sum);
    }

    #[test]
    fn quantiles_interpolate_within_a_bucket() {
        let h = Histogram::new(BOUNDS);
        assert_eq!(h.snapshot().quantile(0.5), None);
        for _ in 0..4 {
            h.observe(ms(50));
        }
        let snap = h.snapshot();
        // All four in (0.01, 0.1]: the median is halfway through that bucket.
        let median = snap.quantile(0.5).expect("median");
        assert!((median - 0.055).abs() < 1e-9, "median {median}");
        h.observe(ms(5000));
        // Above every finite bound: the highest finite bound, as histogram_quantile says.
        assert_eq!(h.snapshot().quantile(1.0), Some(1.0));
        assert_eq!(h.snapshot().quantile(1.5), None);
    }

    #[test]
    fn renders_the_text_format_with_cumulative_buckets() {
        let registry = Registry::default();
        let plain = registry.register(Family::new("x_seconds", "X.", BOUNDS));
        let phases = registry.register(Family::labelled("y_seconds", "Y.", "phase", BOUNDS));
        plain.observe(ms(20));
        phases.observe_with("net\"work", ms(1));
        phases.observe_with("net\"work", ms(500));
        let text = registry.render();
        let expected = "\
# HELP x_seconds X.
# TYPE x_seconds histogram
x_seconds_bucket{le=\"0.01\"} 0
x_seconds_bucket{le=\"0.1\"} 1
x_seconds_bucket{le=\"1\"} 1
x_seconds_bucket{le=\"+Inf\"} 1
x_seconds_sum 0.02
x_seconds_count 1
# HELP y_seconds Y.
# TYPE y_seconds histogram
y_seconds_bucket{phase=\"net\\\"work\",le=\"0.01\"} 1
y_seconds_bucket{phase=\"net\\\"work\",le=\"0.1\"} 1
y_seconds_bucket{phase=\"net\\\"work\",le=\"1\"} 2
y_seconds_bucket{phase=\"net\\\"work\",le=\"+Inf\"} 2
y_seconds_sum{phase=\"net\\\"work\"} 0.501
y_seconds_count{phase=\"net\\\"work\"} 2
";
        assert_eq!(text, expected);
    }

    #[test]
    fn a_family_without_observations_has_only_its_header() {
        let registry = Registry::default();
        registry.register(Family::labelled("z_seconds", "Z.", "phase", BOUNDS));
        assert_eq!(
            registry.render(),
            "# HELP z_seconds Z.\n# TYPE z_seconds histogram\n"
        );
    }

    #[test]
    fn the_unlabelled_series_ignores_the_value() {
        let f = Family::new("w_seconds", "W.", BOUNDS);
        f.observe_with("anything", ms(1));
        f.observe(ms(1));
        assert_eq!(f.series("").snapshot().count, 2);
    }

    #[test]
    fn several_labels_and_counters_render_in_registration_order() {
        let registry = Registry::default();
        let requests = registry.register_counter(Counter::new("r_total", "R.", &["verb"]));
        let latency = registry.register(Family::with_labels(
            "l_seconds",
            "L.",
            &["verb", "scope"],
            BOUNDS,
        ));
        requests.inc(&["GET"]);
        latency.observe_labels(&["GET", "resource"], ms(2));
        let text = registry.render();
        let expected = "\
# HELP r_total R.
# TYPE r_total counter
r_total{verb=\"GET\"} 1
# HELP l_seconds L.
# TYPE l_seconds histogram
l_seconds_bucket{verb=\"GET\",scope=\"resource\",le=\"0.01\"} 1
l_seconds_bucket{verb=\"GET\",scope=\"resource\",le=\"0.1\"} 1
l_seconds_bucket{verb=\"GET\",scope=\"resource\",le=\"1\"} 1
l_seconds_bucket{verb=\"GET\",scope=\"resource\",le=\"+Inf\"} 1
l_seconds_sum{verb=\"GET\",scope=\"resource\"} 0.002
l_seconds_count{verb=\"GET\",scope=\"resource\"} 1
";
        assert_eq!(text, expected);
    }

    #[test]
    fn default_buckets_increase() {
        assert!(DURATION_BUCKETS.windows(2).all(|w| w[0] < w[1]));
    }
}
