//! One scheduling decision, as kube-scheduler's framework makes it: every node goes through
//! the filters in upstream's order (the first failing filter gives its reasons), the nodes
//! left are scored by each plugin on 0–100, normalised across nodes and weighted as the
//! default profile weighs them, and the best node wins; ties go to the node with fewer pods,
//! then to the first name, so the choice is deterministic.

use k8s_openapi::api::core::v1::{Node, Pod, PodSpec, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use controller_base::nodefit;

use crate::interpod::InterPod;
use crate::misfit::{Misfit, NoFit};
use crate::nodescore;
use crate::ports::{self, HostPort};
use crate::resources::{self, pod_requests, Requests, Resources, MAX_SCORE};
use crate::snapshot::{NodeInfo, Snapshot};
use crate::spread::Spread;

/// The default profile's score weights (kube-scheduler v1.33).
const TAINT_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;
const FIT_WEIGHT: i64 = 1;
const BALANCED_WEIGHT: i64 = 1;
const SPREAD_WEIGHT: i64 = 2;
const INTERPOD_WEIGHT: i64 = 2;

/// The taint `kubectl cordon` stands for; a pod tolerating it may go to a cordoned node.
const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

/// The pod's view of one snapshot: what it asks for and the plugins' pre-computed state.
pub struct Plan<'a> {
    snap: &'a Snapshot,
    spec: PodSpec,
    request: Resources,
    nonzero: Resources,
    ports: Vec<HostPort>,
    /// Whether the pod tolerates the taint a cordoned node stands for.
    tolerates_cordon: bool,
    interpod: InterPod,
    spread: Spread,
}

/// Raw plugin scores of one feasible node.
struct Raw<'a> {
    node: &'a NodeInfo,
    taints: i64,
    affinity: i64,
    least: i64,
    balanced: i64,
    spread: Option<i64>,
    interpod: i64,
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

impl<'a> Plan<'a> {
    /// `default_spread` selects the pods the system default spreading counts (see
    /// [`crate::spread::default_selector`]).
    pub fn new(pod: &Pod, snap: &'a Snapshot, default_spread: Option<&LabelSelector>) -> Plan<'a> {
        let spec = pod.spec.clone().unwrap_or_default();
        let cordon = Taint {
            key: UNSCHEDULABLE_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        };
        Plan {
            tolerates_cordon: spec
                .tolerations
                .iter()
                .flatten()
                .any(|t| nodefit::tolerates(t, &cordon)),
            snap,
            request: pod_requests(&spec, Requests::Declared),
            nonzero: pod_requests(&spec, Requests::NonZero),
            ports: ports::host_ports(&spec),
            interpod: InterPod::new(pod, snap),
            spread: Spread::new(pod, snap, default_spread),
            spec,
        }
    }

    /// The filters, in upstream's order; `volumes` is the VolumeBinding filter.
    pub fn filter(
        &self,
        info: &NodeInfo,
        volumes: &impl Fn(&Node) -> Result<(), Misfit>,
    ) -> Result<(), Vec<Misfit>> {
        let node = &*info.node;
        let one = |m: Misfit| Err(vec![m]);
        if !is_ready(node) {
            return one(Misfit::NotReady);
        }
        let cordoned = node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true);
        if cordoned && !self.tolerates_cordon {
            return one(Misfit::Unschedulable);
        }
        let hard = |e: &str| matches!(e, "NoSchedule" | "NoExecute");
        if let Some(t) = nodefit::untolerated_taint(&self.spec, node, hard) {
            return one(Misfit::Taint {
                key: t.key.clone(),
                value: t.value.clone().unwrap_or_default(),
            });
        }
        if !nodefit::matches_node(&self.spec, node) {
            return one(Misfit::NodeSelector);
        }
        if !ports::ports_free(&self.ports, &info.ports) {
            return one(Misfit::Ports);
        }
        resources::fit(&self.request, node, &info.requested, info.pods.len())?;
        volumes(node).map_err(|m| vec![m])?;
        self.spread.filter(info).map_err(|m| vec![m])?;
        self.interpod.filter(info).map_err(|m| vec![m])
    }

    /// Whether the node named `name` passes every filter.
    pub fn fits(&self, name: &str, volumes: &impl Fn(&Node) -> Result<(), Misfit>) -> bool {
        self.snap
            .nodes
            .iter()
            .any(|n| n.name == name && self.filter(n, volumes).is_ok())
    }

    /// The best feasible node, or every node's reasons.
    pub fn choose(&self, volumes: &impl Fn(&Node) -> Result<(), Misfit>) -> Result<String, NoFit> {
        if self.snap.nodes.is_empty() {
            return Err(NoFit::NoNodes);
        }
        let mut reasons = Vec::new();
        let mut feasible = Vec::new();
        for info in &self.snap.nodes {
            match self.filter(info, volumes) {
                Ok(()) => feasible.push(self.raw(info)),
                Err(r) => reasons.extend(r),
            }
        }
        let totals = normalise(&feasible);
        let best = feasible
            .iter()
            .zip(totals)
            .max_by(|(a, sa), (b, sb)| {
                sa.cmp(sb)
                    .then(b.node.pods.len().cmp(&a.node.pods.len()))
                    .then(b.node.name.cmp(&a.node.name))
            })
            .map(|(r, _)| r.node.name.clone());
        best.ok_or(NoFit::Misfits {
            nodes: self.snap.nodes.len(),
            reasons,
        })
    }

    fn raw<'n>(&self, info: &'n NodeInfo) -> Raw<'n> {
        let node = &*info.node;
        Raw {
            node: info,
            taints: nodescore::intolerable_preferences(&self.spec, node),
            affinity: nodescore::preferred_affinity(&self.spec, node),
            least: resources::least_allocated(&self.nonzero, node, &info.nonzero),
            balanced: resources::balanced_allocation(&self.nonzero, node, &info.nonzero),
            spread: self.spread.raw_score(info),
            interpod: self.interpod.score(info),
        }
    }
}

/// Each plugin's raw scores brought to 0–100 as upstream normalises them, weighted and
/// summed per node.
fn normalise(raw: &[Raw<'_>]) -> Vec<i64> {
    let max_of = |f: &dyn Fn(&Raw<'_>) -> i64| raw.iter().map(f).max().unwrap_or(0);
    let max_taints = max_of(&|r| r.taints);
    let max_affinity = max_of(&|r| r.affinity);
    let spreads: Vec<i64> = raw.iter().filter_map(|r| r.spread).collect();
    let (min_spread, max_spread) = (
        spreads.iter().copied().min().unwrap_or(0),
        spreads.iter().copied().max().unwrap_or(0),
    );
    let min_interpod = raw.iter().map(|r| r.interpod).min().unwrap_or(0);
    let max_interpod = max_of(&|r| r.interpod);
    raw.iter()
        .map(|r| {
            // Fewer intolerable preferences is better.
            let taints = if max_taints == 0 {
                MAX_SCORE
            } else {
                MAX_SCORE - r.taints * MAX_SCORE / max_taints
            };
            let affinity = if max_affinity == 0 {
                0
            } else {
                r.affinity * MAX_SCORE / max_affinity
            };
            // Fewer matching pods in the domain is better; a node without the keys gets 0.
            let spread = match r.spread {
                None => 0,
                Some(_) if max_spread == 0 => MAX_SCORE,
                Some(s) => MAX_SCORE * (max_spread + min_spread - s) / max_spread,
            };
            let interpod = if max_interpod > min_interpod {
                MAX_SCORE * (r.interpod - min_interpod) / (max_interpod - min_interpod)
            } else {
                0
            };
            TAINT_WEIGHT * taints
                + NODE_AFFINITY_WEIGHT * affinity
                + FIT_WEIGHT * r.least
                + BALANCED_WEIGHT * r.balanced
                + SPREAD_WEIGHT * spread
                + INTERPOD_WEIGHT * interpod
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Namespace;
    use serde_json::{json, Value};
    use std::sync::Arc;

    fn no_volumes(_: &Node) -> Result<(), Misfit> {
        Ok(())
    }

    fn pod(v: Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    /// A Ready node with 4 cpus, 8Gi and room for 10 pods, plus `extra` fields.
    fn node(name: &str, extra: Value) -> Arc<Node> {
        let mut v = json!({
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "disk": "ssd"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]}});
        merge(&mut v, extra);
        Arc::new(serde_json::from_value(v).expect("node"))
    }

    fn merge(into: &mut Value, from: Value) {
        match (into, from) {
            (Value::Object(a), Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(Value::Null), v);
                }
            }
            (slot, v) => *slot = v,
        }
    }

    fn choose(p: &Pod, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Result<String, String> {
        let ns: Vec<Arc<Namespace>> = Vec::new();
        let snap = Snapshot::new(nodes, pods, &ns);
        Plan::new(p, &snap, None)
            .choose(&no_volumes)
            .map_err(|e| e.to_string())
    }

    fn cpu_pod(node: &str, cpu: &str) -> Arc<Pod> {
        pod(json!({"metadata": {"name": "x", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c",
            "resources": {"requests": {"cpu": cpu}}}]}}))
    }

    #[test]
    fn least_loaded_ready_node_wins_and_ties_break_by_pods_then_name() {
        let p = pod(json!({"spec": {"containers": []}}));
        let nodes = [
            node("a", json!({})),
            node("b", json!({})),
            node(
                "c",
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        ];
        assert_eq!(choose(&p, &nodes, &[]), Ok("a".into()));
        assert_eq!(choose(&p, &nodes, &[cpu_pod("a", "1")]), Ok("b".into()));
    }

    #[test]
    fn required_node_affinity_pins_daemon_pods() {
        let p = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["b"]}]}]}}}}}),
        );
        let nodes = [node("a", json!({})), node("b", json!({}))];
        assert_eq!(choose(&p, &nodes, &[cpu_pod("b", "3")]), Ok("b".into()));
    }

    #[test]
    fn resources_filter_and_explain() {
        let p = cpu_pod("", "3");
        let nodes = [
            node("a", json!({})),
            node("b", json!({"status": {"allocatable": {"cpu": "2"}}})),
            node("c", json!({"metadata": {"labels": {"disk": "hdd"}}})),
        ];
        let mut sel = (*p).clone();
        if let Some(s) = sel.spec.as_mut() {
            s.node_selector = Some([("disk".to_string(), "ssd".to_string())].into());
        }
        assert_eq!(choose(&sel, &nodes, &[]), Ok("a".into()));
        assert_eq!(
            choose(&sel, &nodes, &[cpu_pod("a", "2")]),
            Err("0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 2 Insufficient cpu.".into())
        );
    }

    #[test]
    fn filters_run_in_upstream_order() {
        let p = pod(json!({"spec": {"containers": [{"name": "c",
            "ports": [{"containerPort": 80, "hostPort": 80}]}]}}));
        let nodes = [
            node("cordoned", json!({"spec": {"unschedulable": true}})),
            node(
                "tainted",
                json!({"spec": {"taints": [{"key": "k", "value": "v", "effect": "NoSchedule"}]}}),
            ),
            node("busy", json!({})),
            node("full", json!({"status": {"allocatable": {"pods": "1"}}})),
        ];
        let placed = [
            pod(
                json!({"spec": {"nodeName": "busy", "containers": [{"name": "c",
                "ports": [{"containerPort": 80, "hostPort": 80}]}]}}),
            ),
            pod(json!({"spec": {"nodeName": "full", "containers": []}})),
        ];
        assert_eq!(
            choose(&p, &nodes, &placed),
            Err("0/4 nodes are available: 1 Too many pods, 1 node(s) didn't have free ports for the requested pod ports, \
                 1 node(s) had untolerated taint {k: v}, 1 node(s) were unschedulable.".into())
        );
        let tolerant = pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"}]}}));
        let snap = Snapshot::new(&nodes, &placed, &[]);
        assert!(Plan::new(&tolerant, &snap, None).fits("cordoned", &no_volumes));
        assert!(!Plan::new(&tolerant, &snap, None).fits("tainted", &no_volumes));
        let none = |_: &Node| Err(Misfit::NoVolume);
        assert_eq!(
            Plan::new(&tolerant, &snap, None).choose(&none).map_err(|e| e.to_string()),
            Err("0/4 nodes are available: 1 Too many pods, 1 node(s) had untolerated taint {k: v}, \
                 2 node(s) didn't find available persistent volumes to bind.".into())
        );
        assert_eq!(
            choose(&p, &[], &[]),
            Err("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn preferences_steer_the_choice() {
        let nodes = [
            node(
                "a",
                json!({"spec": {"taints": [{"key": "k", "effect": "PreferNoSchedule"}]},
                             "metadata": {"labels": {"zone": "z2"}}}),
            ),
            node("b", json!({"metadata": {"labels": {"zone": "z1"}}})),
            node("c", json!({"metadata": {"labels": {"zone": "z2"}}})),
        ];
        // The PreferNoSchedule taint keeps a plain pod off a.
        assert_eq!(
            choose(&pod(json!({"spec": {"containers": []}})), &nodes, &[]),
            Ok("b".into())
        );
        // A preferred node affinity picks the zone, the taint the node in it.
        let wants_z2 = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 50, "preference": {
                "matchExpressions": [{"key": "zone", "operator": "In", "values": ["z2"]}]}}]}}}}),
        );
        assert_eq!(choose(&wants_z2, &nodes, &[]), Ok("c".into()));
        // Preferred pod affinity towards a db pod in z2 does too.
        let near_db = pod(
            json!({"metadata": {"namespace": "default"}, "spec": {"containers": [],
            "affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}},
                 "topologyKey": "zone"}}]}}}}),
        );
        let db = pod(
            json!({"metadata": {"namespace": "default", "labels": {"app": "db"}},
            "spec": {"nodeName": "a", "containers": []}}),
        );
        assert_eq!(
            choose(&near_db, &nodes, std::slice::from_ref(&db)),
            Ok("c".into())
        );
        // Preferred anti-affinity turns away from it.
        let away = pod(
            json!({"metadata": {"namespace": "default"}, "spec": {"containers": [],
            "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "db"}},
                 "topologyKey": "zone"}}]}}}}),
        );
        assert_eq!(choose(&away, &nodes, &[db]), Ok("b".into()));
        // ScheduleAnyway spreading goes to the emptier zone.
        let spread = pod(
            json!({"metadata": {"namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [], "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone",
                "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app": "web"}}}]}}),
        );
        let web = |n: &str| {
            pod(
                json!({"metadata": {"namespace": "default", "labels": {"app": "web"}},
            "spec": {"nodeName": n, "containers": []}}),
            )
        };
        assert_eq!(
            choose(&spread, &nodes, &[web("b"), web("b"), web("c")]),
            Ok("c".into())
        );
    }
}
