//! Nodes: allocatable defaults to capacity, the status subresource (a kubelet registers with
//! its status in one create), the STATUS / ROLES / VERSION columns.

use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

use apimachinery::json::{arr, set};
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, keep_status, sub, typed_round_trip, ListStrategy, ResourceInfo,
    SelectableField, Strategy, ALL_VERBS, PROXY_VERBS, STATUS_VERBS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "nodes",
    singular: "node",
    kind: "Node",
    list_kind: "NodeList",
    namespaced: false,
    short_names: &["no"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[
        sub("proxy", "", "NodeProxyOptions", PROXY_VERBS),
        sub("status", "", "Node", STATUS_VERBS),
    ],
    strategy: &Nodes,
};

/// The fields `fieldSelector` accepts besides name and namespace.
const SELECTABLE: &[SelectableField] = &[SelectableField::boolean("spec.unschedulable")];

#[derive(Debug)]
struct Nodes;

impl Strategy for Nodes {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Node>(obj)
    }

    fn apply_defaults(&self, node: &mut Map<String, Value>) {
        set(node, "spec", json!({}));
        if let Some(status) = node.get_mut("status").and_then(Value::as_object_mut) {
            // SetDefaults_NodeStatus: allocatable defaults to capacity.
            if status.get("allocatable").is_none_or(Value::is_null) {
                if let Some(cap) = status.get("capacity").cloned() {
                    status.insert("allocatable".into(), cap);
                }
            }
        }
    }

    // PrepareForCreate keeps the status: nodes register with it (the default hook).

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    fn list_strategy(&self, path: &[String], field: &str) -> Option<ListStrategy> {
        match (path.last().map(String::as_str), field) {
            (Some("spec"), "podCIDRs") => Some(ListStrategy::Set),
            (Some("status"), "addresses") => Some(ListStrategy::Key("type")),
            _ => None,
        }
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Status", "string", "", 0, "The status of the node"),
            ("Roles", "string", "", 0, "The roles of the node"),
            AGE,
            ("Version", "string", "", 0, "Kubelet version reported by the node."),
            ("Internal-IP", "string", "", 1, "List of internal IPs of the node."),
            ("External-IP", "string", "", 1, "List of external IPs of the node."),
            ("OS-Image", "string", "", 1, "OS image reported by the node."),
            ("Kernel-Version", "string", "", 1, "Kernel version reported by the node."),
            ("Container-Runtime", "string", "", 1, "Container runtime version reported by the node."),
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        node_cells(obj, now)
    }

    fn selectable_fields(&self) -> &'static [SelectableField] {
        SELECTABLE
    }
}

fn node_cells(node: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_and_age(node, now);
    let mut status: Vec<String> = Vec::new();
    if let Some(c) = arr(node.pointer("/status/conditions"))
        .iter()
        .rev()
        .find(|c| s(c, &["type"]) == "Ready")
    {
        status.push(if s(c, &["status"]) == "True" {
            "Ready".into()
        } else {
            "NotReady".into()
        });
    }
    if status.is_empty() {
        status.push("Unknown".into());
    }
    if node.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true) {
        status.push("SchedulingDisabled".into());
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == "kubernetes.io/role" {
                if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                    roles.insert(v.to_string());
                }
            }
        }
    }
    let roles = if roles.is_empty() {
        "<none>".to_string()
    } else {
        roles.into_iter().collect::<Vec<_>>().join(",")
    };
    let address = |ty: &str| {
        arr(node.pointer("/status/addresses"))
            .iter()
            .find(|a| s(a, &["type"]) == ty)
            .map(|a| s(a, &["address"]))
            .unwrap_or_else(|| "<none>".into())
    };
    let info = |k: &str| {
        let v = s(node, &["status", "nodeInfo", k]);
        if v.is_empty() {
            "<unknown>".to_string()
        } else {
            v
        }
    };
    vec![
        name,
        json!(status.join(",")),
        json!(roles),
        age,
        json!(s(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::now;

    #[test]
    fn rows() {
        let node = json!({"metadata":{"name":"n1","creationTimestamp":"2026-01-01T15:00:00Z",
            "labels":{"node-role.kubernetes.io/control-plane":""}},
            "spec":{"unschedulable":true},
            "status":{"conditions":[{"type":"Ready","status":"True"}],
              "addresses":[{"type":"InternalIP","address":"10.0.0.1"}],
              "nodeInfo":{"kubeletVersion":"v1.33.0","osImage":"Debian"}}});
        let c = RESOURCE.strategy.cells(&node, now());
        assert_eq!(
            c[..5],
            [
                json!("n1"),
                json!("Ready,SchedulingDisabled"),
                json!("control-plane"),
                json!("24h"),
                json!("v1.33.0")
            ]
        );
        assert_eq!(
            c[5..],
            [
                json!("10.0.0.1"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
    }

    #[test]
    fn allocatable_defaults_to_capacity() {
        let mut node = json!({"metadata":{"name":"n"},"status":{"capacity":{"cpu":"2"}}});
        RESOURCE.apply_defaults(&mut node);
        assert_eq!(node["status"]["allocatable"], json!({"cpu":"2"}));
        assert_eq!(node["spec"], json!({}));
        let mut created = node.clone();
        RESOURCE.strategy.prepare_for_create(&mut created);
        assert_eq!(created["status"], node["status"]);
    }
}
