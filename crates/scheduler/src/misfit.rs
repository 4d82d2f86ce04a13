//! Why a node cannot take a pod, in kube-scheduler's words, and the `0/N nodes are
//! available: …` message built from the reasons of every node.

use std::collections::BTreeMap;
use std::fmt;

/// One filter's reason for turning a node down.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Misfit {
    NotReady,
    /// NodeUnschedulable: `spec.unschedulable` without the matching toleration.
    Unschedulable,
    /// TaintToleration: the first taint the pod does not tolerate.
    Taint {
        key: String,
        value: String,
    },
    /// NodeAffinity: `nodeSelector` or required node affinity.
    NodeSelector,
    /// NodePorts: a requested host port is taken.
    Ports,
    /// NodeResourcesFit: the node has too little of this resource left.
    Insufficient(String),
    /// NodeResourcesFit: the node runs as many pods as allocatable `pods` allows.
    TooManyPods,
    /// VolumeBinding: a bound volume is not reachable from the node.
    VolumeAffinity,
    /// VolumeBinding: a waiting claim can get no volume on the node.
    NoVolume,
    /// PodTopologySpread: the node lacks a constraint's topology key.
    SpreadMissingLabel,
    /// PodTopologySpread: placing the pod here would exceed `maxSkew`.
    Spread,
    /// InterPodAffinity: an existing pod's required anti-affinity rejects the pod here.
    ExistingAntiAffinity,
    /// InterPodAffinity: the pod's required anti-affinity matches a pod in this domain.
    AntiAffinity,
    /// InterPodAffinity: the pod's required affinity finds no pod in this domain.
    Affinity,
}

impl Misfit {
    /// Whether evicting pods from the node may cure this (upstream: the filter answered
    /// `Unschedulable`, not `UnschedulableAndUnresolvable`).
    pub fn preemption_may_help(&self) -> bool {
        match self {
            Misfit::Ports
            | Misfit::Insufficient(_)
            | Misfit::TooManyPods
            | Misfit::Spread
            | Misfit::ExistingAntiAffinity
            | Misfit::AntiAffinity => true,
            Misfit::NotReady
            | Misfit::Unschedulable
            | Misfit::Taint { .. }
            | Misfit::NodeSelector
            | Misfit::VolumeAffinity
            | Misfit::NoVolume
            | Misfit::SpreadMissingLabel
            | Misfit::Affinity => false,
        }
    }
}

impl fmt::Display for Misfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misfit::NotReady => f.write_str("node(s) were not ready"),
            Misfit::Unschedulable => f.write_str("node(s) were unschedulable"),
            Misfit::Taint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Misfit::NodeSelector => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Misfit::Ports => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Misfit::Insufficient(resource) => write!(f, "Insufficient {resource}"),
            Misfit::TooManyPods => f.write_str("Too many pods"),
            Misfit::VolumeAffinity => f.write_str("node(s) had volume node affinity conflict"),
            Misfit::NoVolume => {
                f.write_str("node(s) didn't find available persistent volumes to bind")
            }
            Misfit::SpreadMissingLabel => f.write_str(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ),
            Misfit::Spread => f.write_str("node(s) didn't match pod topology spread constraints"),
            Misfit::ExistingAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
            Misfit::AntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Misfit::Affinity => f.write_str("node(s) didn't match pod affinity rules"),
        }
    }
}

/// Why no node takes a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoFit {
    NoNodes,
    /// Every node failed a filter; one node may give several reasons (NodeResourcesFit
    /// names each short resource).
    Misfits {
        nodes: usize,
        reasons: Vec<Misfit>,
    },
    /// No node can take the pod whatever it is (a PreFilter rejection: a missing claim).
    Unresolvable {
        nodes: usize,
        reason: String,
    },
}

impl fmt::Display for NoFit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoFit::NoNodes => f.write_str("no nodes available to schedule pods"),
            NoFit::Misfits { nodes, reasons } => {
                // kube-scheduler's FitError: a histogram of reasons, each "COUNT REASON",
                // sorted as strings.
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for r in reasons {
                    *counts.entry(r.to_string()).or_default() += 1;
                }
                let mut parts: Vec<String> =
                    counts.iter().map(|(r, n)| format!("{n} {r}")).collect();
                parts.sort();
                write!(f, "0/{nodes} nodes are available: {}.", parts.join(", "))
            }
            NoFit::Unresolvable { nodes, reason } => {
                write!(f, "0/{nodes} nodes are available: {reason}.")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_counted_and_sorted_as_strings() {
        let no_fit = NoFit::Misfits {
            nodes: 4,
            reasons: vec![
                Misfit::Insufficient("cpu".into()),
                Misfit::NodeSelector,
                Misfit::Insufficient("cpu".into()),
                Misfit::Insufficient("memory".into()),
                Misfit::TooManyPods,
                Misfit::Taint {
                    key: "dedicated".into(),
                    value: "db".into(),
                },
            ],
        };
        assert_eq!(
            no_fit.to_string(),
            "0/4 nodes are available: 1 Insufficient memory, 1 Too many pods, \
             1 node(s) didn't match Pod's node affinity/selector, \
             1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient cpu."
        );
        assert_eq!(
            NoFit::NoNodes.to_string(),
            "no nodes available to schedule pods"
        );
        let missing = NoFit::Unresolvable {
            nodes: 1,
            reason: "persistentvolumeclaim \"data\" not found".into(),
        };
        assert_eq!(
            missing.to_string(),
            "0/1 nodes are available: persistentvolumeclaim \"data\" not found."
        );
    }
}
