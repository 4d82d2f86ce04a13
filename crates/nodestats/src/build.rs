//! One sample of the node turned into a [`Summary`]: the pure step behind the collector.
//! CPU rates (`usageNanoCores`) come from the previous cumulative reading of the same
//! cgroup; only the cgroups of the latest sample are remembered, so readings of removed
//! pods and containers are dropped at the next sample and the memory stays bounded by what
//! runs.

use std::collections::HashMap;

use cgroups::Usage;
use jiff::Timestamp;
use runtime::PodSandboxStats;

use crate::proc::NodeUsage;
use crate::summary::{
    ContainerStats, CpuStats, MemoryStats, NodeStats, PodReference, PodStats, Summary,
};

/// The last cumulative CPU reading of each cgroup of the previous sample.
#[derive(Debug, Default)]
pub struct Rates {
    last: HashMap<String, (u64, Timestamp)>,
}

impl Rates {
    /// How many cgroups are remembered.
    pub fn len(&self) -> usize {
        self.last.len()
    }

    pub fn is_empty(&self) -> bool {
        self.last.is_empty()
    }
}

/// Everything one sample read.
#[derive(Debug, Clone, Copy)]
pub struct Observed<'a> {
    pub now: Timestamp,
    pub node_name: &'a str,
    pub node: NodeUsage,
    pub sandboxes: &'a [PodSandboxStats],
}

/// The summary of `observed`, with rates against `rates`, which then holds this sample's
/// readings (and no others).
pub fn build(rates: &mut Rates, observed: Observed<'_>) -> Summary {
    let now = observed.now;
    let mut next = HashMap::new();
    let mut cpu = |key: String, nanos: Option<u64>| -> Option<CpuStats> {
        let nanos = nanos?;
        let usage_nano_cores = rates.last.get(&key).and_then(|(before, at)| {
            let elapsed = now.duration_since(*at).as_nanos();
            let used = nanos.checked_sub(*before)?;
            // A counter that went backwards is a new cgroup under an old name: no rate.
            (elapsed > 0)
                .then(|| u64::try_from(i128::from(used) * 1_000_000_000 / elapsed).ok())
                .flatten()
        });
        next.insert(key, (nanos, now));
        Some(CpuStats {
            time: now,
            usage_nano_cores,
            usage_core_nano_seconds: nanos,
        })
    };
    let node_cpu = cpu("node".to_string(), observed.node.cpu_usage_nanos);
    let mut pods = Vec::with_capacity(observed.sandboxes.len());
    for s in observed.sandboxes {
        let containers = s
            .containers
            .iter()
            .map(|c| ContainerStats {
                name: c.name.clone(),
                start_time: c.started_at,
                cpu: cpu(format!("{}/{}", s.id, c.id), c.usage.cpu_usage_nanos),
                memory: memory(now, &c.usage, None),
            })
            .collect();
        pods.push(PodStats {
            pod_ref: PodReference {
                name: s.config.name.clone(),
                namespace: s.config.namespace.clone(),
                uid: s.config.uid.clone(),
            },
            start_time: s.created_at,
            containers,
            cpu: cpu(s.id.clone(), s.usage.cpu_usage_nanos),
            memory: memory(now, &s.usage, None),
        });
    }
    let node = &observed.node;
    let node_memory = Usage {
        cpu_usage_nanos: None,
        memory_usage_bytes: node.memory_usage_bytes,
        memory_working_set_bytes: node.memory_working_set_bytes,
        memory_rss_bytes: node.memory_rss_bytes,
        page_faults: node.page_faults,
        major_page_faults: node.major_page_faults,
    };
    rates.last = next;
    Summary {
        node: NodeStats {
            node_name: observed.node_name.to_string(),
            start_time: node.boot_time.and_then(|t| Timestamp::from_second(t).ok()),
            cpu: node_cpu,
            memory: memory(now, &node_memory, node.memory_available_bytes),
        },
        pods,
    }
}

fn memory(now: Timestamp, u: &Usage, available_bytes: Option<u64>) -> Option<MemoryStats> {
    if u.memory_usage_bytes.is_none() && u.memory_working_set_bytes.is_none() {
        return None;
    }
    Some(MemoryStats {
        time: now,
        available_bytes,
        usage_bytes: u.memory_usage_bytes,
        working_set_bytes: u.memory_working_set_bytes,
        rss_bytes: u.memory_rss_bytes,
        page_faults: u.page_faults,
        major_page_faults: u.major_page_faults,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::{ContainerStats as RuntimeContainer, PodSandboxConfig};

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).expect("time")
    }

    fn usage(cpu: u64, working_set: u64) -> Usage {
        Usage {
            cpu_usage_nanos: Some(cpu),
            memory_usage_bytes: Some(working_set + 4096),
            memory_working_set_bytes: Some(working_set),
            memory_rss_bytes: Some(working_set / 2),
            ..Default::default()
        }
    }

    fn sandbox(id: &str, containers: &[(&str, u64)]) -> PodSandboxStats {
        PodSandboxStats {
            id: id.to_string(),
            config: PodSandboxConfig {
                name: format!("pod-{id}"),
                namespace: "default".into(),
                uid: format!("uid-{id}"),
                ..Default::default()
            },
            created_at: at(100),
            usage: usage(containers.iter().map(|c| c.1).sum(), 1 << 20),
            containers: containers
                .iter()
                .map(|(name, cpu)| RuntimeContainer {
                    id: format!("c-{name}"),
                    name: name.to_string(),
                    started_at: at(101),
                    usage: usage(*cpu, 1 << 19),
                })
                .collect(),
        }
    }

    fn observe<'a>(now: i64, node_cpu: u64, sandboxes: &'a [PodSandboxStats]) -> Observed<'a> {
        Observed {
            now: at(now),
            node_name: "n1",
            node: NodeUsage {
                cpu_usage_nanos: Some(node_cpu),
                memory_usage_bytes: Some(8 << 30),
                memory_working_set_bytes: Some(6 << 30),
                memory_available_bytes: Some(10 << 30),
                boot_time: Some(50),
                ..Default::default()
            },
            sandboxes,
        }
    }

    #[test]
    fn the_first_sample_has_no_rate_and_the_second_divides_by_elapsed_time() {
        let mut rates = Rates::default();
        let first = build(
            &mut rates,
            observe(
                1000,
                5_000_000_000,
                &[sandbox("a", &[("busy", 1_000_000_000)])],
            ),
        );
        let c = &first.pods[0].containers[0];
        let cpu = c.cpu.expect("cpu");
        assert_eq!(cpu.usage_nano_cores, None);
        assert_eq!(cpu.usage_core_nano_seconds, 1_000_000_000);
        assert_eq!(c.memory.and_then(|m| m.working_set_bytes), Some(1 << 19));
        // 10 s later: the container used 5 s of CPU (half a core), the node 20 s (2 cores).
        let second = build(
            &mut rates,
            observe(
                1010,
                25_000_000_000,
                &[sandbox("a", &[("busy", 6_000_000_000)])],
            ),
        );
        let cpu = second.pods[0].containers[0].cpu.expect("cpu");
        assert_eq!(cpu.usage_nano_cores, Some(500_000_000));
        assert_eq!(
            second.node.cpu.and_then(|c| c.usage_nano_cores),
            Some(2_000_000_000)
        );
        assert_eq!(
            second.pods[0].cpu.and_then(|c| c.usage_nano_cores),
            Some(500_000_000)
        );
        assert_eq!(second.node.start_time, Some(at(50)));
        assert_eq!(
            second.node.memory.and_then(|m| m.available_bytes),
            Some(10 << 30)
        );
    }

    #[test]
    fn readings_of_gone_cgroups_are_forgotten() {
        let mut rates = Rates::default();
        let two = [
            sandbox("a", &[("x", 1), ("y", 2)]),
            sandbox("b", &[("z", 3)]),
        ];
        build(&mut rates, observe(1, 1, &two));
        // node + 2 pods + 3 containers.
        assert_eq!(rates.len(), 6);
        let one = [sandbox("b", &[("z", 4)])];
        let s = build(&mut rates, observe(2, 2, &one));
        assert_eq!(rates.len(), 3);
        assert_eq!(s.pods.len(), 1);
        // A counter that went backwards (the same name on a new cgroup) gets no rate.
        let reset = [sandbox("b", &[("z", 1)])];
        let s = build(&mut rates, observe(3, 3, &reset));
        assert_eq!(
            s.pods[0].containers[0].cpu.expect("cpu").usage_nano_cores,
            None
        );
    }

    #[test]
    fn serializes_in_the_kubelet_shape() {
        let mut rates = Rates::default();
        let s = build(
            &mut rates,
            observe(1_700_000_000, 7, &[sandbox("a", &[("c", 9)])]),
        );
        let v = serde_json::to_value(&s).expect("json");
        assert_eq!(v["node"]["nodeName"], "n1");
        assert_eq!(v["node"]["cpu"]["usageCoreNanoSeconds"], 7);
        assert_eq!(v["node"]["cpu"]["time"], "2023-11-14T22:13:20Z");
        assert!(v["node"]["cpu"].get("usageNanoCores").is_none());
        assert_eq!(v["pods"][0]["podRef"]["name"], "pod-a");
        assert_eq!(v["pods"][0]["podRef"]["uid"], "uid-a");
        assert_eq!(v["pods"][0]["containers"][0]["name"], "c");
        assert_eq!(
            v["pods"][0]["containers"][0]["memory"]["workingSetBytes"],
            1 << 19
        );
        assert_eq!(v["pods"][0]["containers"][0]["memory"]["rssBytes"], 1 << 18);
        let back: Summary = serde_json::from_value(v).expect("round trip");
        assert_eq!(back, s);
    }
}
