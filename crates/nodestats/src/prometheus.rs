//! The node's stats in the Prometheus text format: the kubelet's `/metrics/resource` (the
//! small stable set metrics-server reads: node, pod and container CPU seconds and working
//! set) and `/metrics/cadvisor` (cAdvisor's common `container_*` series, the pods' with
//! `container=""`). Samples carry the time they were read, in milliseconds, as the kubelet's
//! do.

use std::fmt::Write as _;

use jiff::Timestamp;
use metrics::escape;

use crate::summary::{CpuStats, MemoryStats, Summary};

/// One series family being written.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn start(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64, at: Timestamp) {
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{}}}", labels.join(","))
        };
        let _ = writeln!(self.out, "{name}{braces} {value} {}", at.as_millisecond());
    }
}

fn cpu_seconds(c: &CpuStats) -> f64 {
    c.usage_core_nano_seconds as f64 / 1e9
}

/// Which memory figure a series shows.
type MemoryField = fn(&MemoryStats) -> Option<u64>;

/// Every (labels, stats) the cadvisor and resource families walk: containers, then pods.
struct Row<'a> {
    namespace: &'a str,
    pod: &'a str,
    container: Option<&'a str>,
    start: Timestamp,
    cpu: Option<&'a CpuStats>,
    memory: Option<&'a MemoryStats>,
}

fn rows(s: &Summary) -> Vec<Row<'_>> {
    let mut out = Vec::new();
    for p in &s.pods {
        for c in &p.containers {
            out.push(Row {
                namespace: &p.pod_ref.namespace,
                pod: &p.pod_ref.name,
                container: Some(&c.name),
                start: c.start_time,
                cpu: c.cpu.as_ref(),
                memory: c.memory.as_ref(),
            });
        }
    }
    for p in &s.pods {
        out.push(Row {
            namespace: &p.pod_ref.namespace,
            pod: &p.pod_ref.name,
            container: None,
            start: p.start_time,
            cpu: p.cpu.as_ref(),
            memory: p.memory.as_ref(),
        });
    }
    out
}

/// The kubelet's `/metrics/resource`.
pub fn resource_metrics(s: &Summary) -> String {
    let mut out = String::new();
    let rows = rows(s);
    let containers = || rows.iter().filter_map(|r| r.container.map(|c| (r, c)));
    let pods = || rows.iter().filter(|r| r.container.is_none());
    {
        let name = "container_cpu_usage_seconds_total";
        let mut f = Family::start(
            &mut out,
            name,
            "counter",
            "[STABLE] Cumulative CPU time consumed by the container in core-seconds",
        );
        for (r, c) in containers() {
            if let Some(cpu) = r.cpu {
                let labels = [("container", c), ("namespace", r.namespace), ("pod", r.pod)];
                f.sample(name, &labels, cpu_seconds(cpu), cpu.time);
            }
        }
    }
    {
        let name = "container_memory_working_set_bytes";
        let mut f = Family::start(
            &mut out,
            name,
            "gauge",
            "[STABLE] Current working set of the container in bytes",
        );
        for (r, c) in containers() {
            if let Some((m, ws)) = r.memory.and_then(|m| Some((m, m.working_set_bytes?))) {
                let labels = [("container", c), ("namespace", r.namespace), ("pod", r.pod)];
                f.sample(name, &labels, ws as f64, m.time);
            }
        }
    }
    {
        let name = "container_start_time_seconds";
        let mut f = Family::start(
            &mut out,
            name,
            "gauge",
            "[STABLE] Start time of the container since unix epoch in seconds",
        );
        for (r, c) in containers() {
            let labels = [("container", c), ("namespace", r.namespace), ("pod", r.pod)];
            let at = r.cpu.map_or(r.start, |c| c.time);
            f.sample(name, &labels, r.start.as_second() as f64, at);
        }
    }
    if let Some(cpu) = &s.node.cpu {
        let name = "node_cpu_usage_seconds_total";
        let mut f = Family::start(
            &mut out,
            name,
            "counter",
            "[STABLE] Cumulative CPU time consumed by the node in core-seconds",
        );
        f.sample(name, &[], cpu_seconds(cpu), cpu.time);
    }
    if let Some((m, ws)) = s.node.memory.and_then(|m| Some((m, m.working_set_bytes?))) {
        let name = "node_memory_working_set_bytes";
        let mut f = Family::start(
            &mut out,
            name,
            "gauge",
            "[STABLE] Current working set of the node in bytes",
        );
        f.sample(name, &[], ws as f64, m.time);
    }
    {
        let name = "pod_cpu_usage_seconds_total";
        let mut f = Family::start(
            &mut out,
            name,
            "counter",
            "[STABLE] Cumulative CPU time consumed by the pod in core-seconds",
        );
        for r in pods() {
            if let Some(cpu) = r.cpu {
                let labels = [("namespace", r.namespace), ("pod", r.pod)];
                f.sample(name, &labels, cpu_seconds(cpu), cpu.time);
            }
        }
    }
    {
        let name = "pod_memory_working_set_bytes";
        let mut f = Family::start(
            &mut out,
            name,
            "gauge",
            "[STABLE] Current working set of the pod in bytes",
        );
        for r in pods() {
            if let Some((m, ws)) = r.memory.and_then(|m| Some((m, m.working_set_bytes?))) {
                let labels = [("namespace", r.namespace), ("pod", r.pod)];
                f.sample(name, &labels, ws as f64, m.time);
            }
        }
    }
    let _ = writeln!(out, "# HELP resource_scrape_error [STABLE] 1 if there was an error while getting container metrics, 0 otherwise");
    let _ = writeln!(out, "# TYPE resource_scrape_error gauge");
    let _ = writeln!(out, "resource_scrape_error 0");
    out
}

/// cAdvisor's common `container_*` series as the kubelet's `/metrics/cadvisor` serves them:
/// containers with their names, pods with `container=""`, the node (its root cgroup) with
/// every label empty.
pub fn cadvisor_metrics(s: &Summary) -> String {
    let mut out = String::new();
    let mut rows = rows(s);
    rows.push(Row {
        namespace: "",
        pod: "",
        container: None,
        start: s.node.start_time.unwrap_or_default(),
        cpu: s.node.cpu.as_ref(),
        memory: s.node.memory.as_ref(),
    });
    let labels = |r: &Row<'_>| -> [(&'static str, String); 3] {
        [
            ("container", r.container.unwrap_or_default().to_string()),
            ("namespace", r.namespace.to_string()),
            ("pod", r.pod.to_string()),
        ]
    };
    let write = |out: &mut String,
                 name: &str,
                 kind: &str,
                 help: &str,
                 value: &dyn Fn(&Row<'_>) -> Option<(f64, Timestamp)>| {
        let mut f = Family::start(out, name, kind, help);
        for r in &rows {
            if let Some((v, at)) = value(r) {
                let l = labels(r);
                let l: Vec<(&str, &str)> = l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                f.sample(name, &l, v, at);
            }
        }
    };
    write(
        &mut out,
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
        &|r| r.cpu.map(|c| (cpu_seconds(c), c.time)),
    );
    let memory: [(&str, &str, MemoryField); 3] = [
        ("container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed", |m| m.usage_bytes),
        ("container_memory_working_set_bytes", "Current working set in bytes.", |m| m.working_set_bytes),
        ("container_memory_rss", "Size of RSS in bytes.", |m| m.rss_bytes),
    ];
    for (name, help, field) in memory {
        write(&mut out, name, "gauge", help, &|r| {
            let m = r.memory?;
            Some((field(m)? as f64, m.time))
        });
    }
    {
        let name = "container_memory_failures_total";
        let mut f = Family::start(
            &mut out,
            name,
            "counter",
            "Cumulative count of memory allocation failures.",
        );
        for r in &rows {
            let Some(m) = r.memory else { continue };
            for (scope, value) in [
                ("pgfault", m.page_faults),
                ("pgmajfault", m.major_page_faults),
            ] {
                if let Some(v) = value {
                    let l = labels(r);
                    let mut l: Vec<(&str, &str)> =
                        l.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    l.push(("failure_type", scope));
                    l.push(("scope", "container"));
                    f.sample(name, &l, v as f64, m.time);
                }
            }
        }
    }
    write(
        &mut out,
        "container_start_time_seconds",
        "gauge",
        "Start time of the container since unix epoch in seconds.",
        &|r| {
            let at = r.cpu.map(|c| c.time).or(r.memory.map(|m| m.time))?;
            Some((r.start.as_second() as f64, at))
        },
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::summary::{ContainerStats, NodeStats, PodReference, PodStats};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    fn summary() -> Summary {
        let cpu = |ns: u64| CpuStats {
            time: at(1_700_000_010),
            usage_nano_cores: Some(1),
            usage_core_nano_seconds: ns,
        };
        let memory = |ws: u64| MemoryStats {
            time: at(1_700_000_010),
            available_bytes: None,
            usage_bytes: Some(ws + 100),
            working_set_bytes: Some(ws),
            rss_bytes: Some(ws / 2),
            page_faults: Some(7),
            major_page_faults: None,
        };
        Summary {
            node: NodeStats {
                node_name: "n1".into(),
                start_time: Some(at(1_600_000_000)),
                cpu: Some(cpu(12_500_000_000)),
                memory: Some(memory(4096)),
            },
            pods: vec![PodStats {
                pod_ref: PodReference {
                    name: "web".into(),
                    namespace: "default".into(),
                    uid: "u1".into(),
                },
                start_time: at(1_700_000_000),
                containers: vec![ContainerStats {
                    name: "app\"x".into(),
                    start_time: at(1_700_000_001),
                    cpu: Some(cpu(1_500_000_000)),
                    memory: Some(memory(2048)),
                }],
                cpu: Some(cpu(2_000_000_000)),
                memory: Some(memory(3072)),
            }],
        }
    }

    #[test]
    fn resource_metrics_use_the_kubelet_names_and_labels() {
        let text = resource_metrics(&summary());
        for line in [
            "# TYPE container_cpu_usage_seconds_total counter",
            "container_cpu_usage_seconds_total{container=\"app\\\"x\",namespace=\"default\",pod=\"web\"} 1.5 1700000010000",
            "container_memory_working_set_bytes{container=\"app\\\"x\",namespace=\"default\",pod=\"web\"} 2048 1700000010000",
            "container_start_time_seconds{container=\"app\\\"x\",namespace=\"default\",pod=\"web\"} 1700000001 1700000010000",
            "node_cpu_usage_seconds_total 12.5 1700000010000",
            "node_memory_working_set_bytes 4096 1700000010000",
            "pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"} 2 1700000010000",
            "pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"} 3072 1700000010000",
            "resource_scrape_error 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
    }

    #[test]
    fn cadvisor_metrics_cover_containers_pods_and_the_root() {
        let text = cadvisor_metrics(&summary());
        for line in [
            "container_cpu_usage_seconds_total{container=\"\",namespace=\"default\",pod=\"web\"} 2 1700000010000",
            "container_cpu_usage_seconds_total{container=\"\",namespace=\"\",pod=\"\"} 12.5 1700000010000",
            "container_memory_usage_bytes{container=\"app\\\"x\",namespace=\"default\",pod=\"web\"} 2148 1700000010000",
            "container_memory_rss{container=\"\",namespace=\"default\",pod=\"web\"} 1536 1700000010000",
            "container_memory_failures_total{container=\"\",namespace=\"default\",pod=\"web\",failure_type=\"pgfault\",scope=\"container\"} 7 1700000010000",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("pgmajfault"), "{text}");
    }
}
