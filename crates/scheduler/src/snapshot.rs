//! What the scheduler sees of the cluster for one decision: each node with the live pods
//! bound to it (terminal pods hold nothing), their summed requests and host ports, and the
//! labels of every namespace (for affinity terms' `namespaceSelector`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod, PodSpec};
use kube::ResourceExt;

use crate::ports::{host_ports, HostPort};
use crate::resources::{pod_requests, Requests, Resources};
use crate::selectors::Labels;

/// One node and what is placed on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    pub node: Arc<Node>,
    pub name: String,
    pub pods: Vec<Arc<Pod>>,
    /// The pods' requests as declared (the fit check).
    pub requested: Resources,
    /// The pods' requests with the scoring defaults for missing cpu and memory.
    pub nonzero: Resources,
    pub ports: Vec<HostPort>,
}

impl NodeInfo {
    /// `node` holding `pods`, with their requests and host ports summed.
    pub fn new(node: Arc<Node>, pods: Vec<Arc<Pod>>) -> Self {
        let empty = PodSpec::default();
        let mut info = NodeInfo {
            name: node.name_any(),
            node,
            pods: Vec::new(),
            requested: Resources::default(),
            nonzero: Resources::default(),
            ports: Vec::new(),
        };
        for pod in pods {
            let spec = pod.spec.as_ref().unwrap_or(&empty);
            info.requested.add(&pod_requests(spec, Requests::Declared));
            info.nonzero.add(&pod_requests(spec, Requests::NonZero));
            info.ports.extend(host_ports(spec));
            info.pods.push(pod);
        }
        info
    }

    pub fn labels(&self) -> &Labels {
        static EMPTY: Labels = Labels::new();
        self.node.metadata.labels.as_ref().unwrap_or(&EMPTY)
    }
}

/// The cluster as one scheduling decision sees it.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub nodes: Vec<NodeInfo>,
    pub namespace_labels: BTreeMap<String, Labels>,
}

impl Snapshot {
    /// The same cluster with node `name` holding `pods` instead (a preemption's trial).
    pub fn with_node_pods(&self, name: &str, pods: Vec<Arc<Pod>>) -> Snapshot {
        let mut out = self.clone();
        if let Some(info) = out.nodes.iter_mut().find(|n| n.name == name) {
            *info = NodeInfo::new(info.node.clone(), pods);
        }
        out
    }
}

/// Whether a pod still holds its node's resources: not Succeeded or Failed.
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed"))
}

impl Snapshot {
    /// `pods` are all pods; those bound to a node in `nodes` and still active are placed.
    pub fn new(nodes: &[Arc<Node>], pods: &[Arc<Pod>], namespaces: &[Arc<Namespace>]) -> Self {
        let mut by_node: HashMap<&str, Vec<Arc<Pod>>> = HashMap::new();
        for pod in pods.iter().filter(|p| is_active(p)) {
            if let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                by_node.entry(node).or_default().push(pod.clone());
            }
        }
        let nodes = nodes
            .iter()
            .map(|node| {
                let placed = by_node.remove(node.name_any().as_str()).unwrap_or_default();
                NodeInfo::new(node.clone(), placed)
            })
            .collect();
        let namespace_labels = namespaces
            .iter()
            .map(|ns| (ns.name_any(), ns.labels().clone()))
            .collect();
        Snapshot {
            nodes,
            namespace_labels,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nodes_hold_their_active_pods() {
        let node = |n: &str| -> Arc<Node> {
            Arc::new(serde_json::from_value(json!({"metadata": {"name": n}})).expect("node"))
        };
        let pod = |node: &str, phase: &str| -> Arc<Pod> {
            Arc::new(
                serde_json::from_value(json!({"spec": {"nodeName": node, "containers": [
                    {"name": "c", "resources": {"requests": {"cpu": "1"}},
                     "ports": [{"containerPort": 80, "hostPort": 80}]}]},
                    "status": {"phase": phase}}))
                .expect("pod"),
            )
        };
        let pods = vec![
            pod("a", "Running"),
            pod("a", "Succeeded"),
            pod("b", "Pending"),
            pod("gone", "Running"),
        ];
        let ns: Arc<Namespace> = Arc::new(
            serde_json::from_value(json!({"metadata": {"name": "x", "labels": {"k": "v"}}}))
                .expect("ns"),
        );
        let snap = Snapshot::new(&[node("a"), node("b")], &pods, &[ns]);
        assert_eq!(snap.nodes[0].pods.len(), 1);
        assert_eq!(snap.nodes[0].requested.milli_cpu, 1000);
        assert_eq!(snap.nodes[0].nonzero.memory, 200 * 1024 * 1024);
        assert_eq!(snap.nodes[0].ports.len(), 1);
        assert_eq!(snap.nodes[1].pods.len(), 1);
        assert_eq!(snap.namespace_labels["x"]["k"], "v");
    }
}
