//! The Node object and its Lease as kubelet v1.33 writes them: registration (create, or
//! patch when it exists), status with capacity, allocatable, addresses, nodeInfo and the
//! four conditions, computed every `nodeStatusUpdateFrequency` (10 s) but posted only when it
//! changed or every `nodeStatusReportFrequency` (5 minutes), and the Lease renewed every
//! quarter of its duration (40 s), as kubelet does with node leases. Object building is pure.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeFeatures,
    NodeRuntimeHandler, NodeRuntimeHandlerFeatures, NodeSpec, NodeStatus, NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::machine::MachineFacts;
use node_pressure::Signal;
use podapi::api_time;

/// The kubelet version peapod's agent reports.
pub const KUBELET_VERSION: &str = "v1.33.0";
/// How often the agent looks at and reports its node (the KubeletConfiguration's
/// `nodeStatusUpdateFrequency`, `nodeStatusReportFrequency`, `nodeLeaseDurationSeconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// How often the node status is computed (and posted when it changed).
    pub update: Duration,
    /// How often an unchanged status is still posted: in between, the Lease alone says the
    /// node is alive.
    pub report: Duration,
    /// The Lease's `leaseDurationSeconds`.
    pub lease_duration_seconds: i32,
}

impl Default for Periods {
    /// The kubelet's defaults.
    fn default() -> Self {
        Periods {
            update: Duration::from_secs(10),
            report: Duration::from_secs(5 * 60),
            lease_duration_seconds: 40,
        }
    }
}

impl Periods {
    /// The kubelet's defaulting: an unset report frequency follows an update frequency that
    /// is set (so that a node configured to report often before leases still does).
    pub fn from_config(
        update: Option<Duration>,
        report: Option<Duration>,
        lease_duration_seconds: Option<i32>,
    ) -> Self {
        let d = Periods::default();
        Periods {
            update: update.unwrap_or(d.update),
            report: report.or(update).unwrap_or(d.report),
            lease_duration_seconds: lease_duration_seconds.unwrap_or(d.lease_duration_seconds),
        }
    }

    /// How often the Lease is renewed: a quarter of its duration, as the kubelet does.
    pub fn lease_renew(&self) -> Duration {
        Duration::from_secs(u64::try_from(self.lease_duration_seconds.max(1)).unwrap_or(1)) / 4
    }
}

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// Failures talking to the API about the Node and its Lease.
#[derive(Debug, thiserror::Error)]
pub enum NodeStatusError {
    #[error("registering node {node}")]
    Register {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("updating status of node {node}")]
    UpdateStatus {
        node: String,
        #[source]
        source: kube::Error,
    },
    #[error("renewing lease of node {node}")]
    RenewLease {
        node: String,
        #[source]
        source: kube::Error,
    },
}

/// Node annotation telling the local-path provisioner where this node keeps its volumes
/// (the provisioner reads it; the agent's `localpath` removes what is reclaimed).
pub const LOCAL_PATH_ROOT_ANNOTATION: &str = "peapod.io/local-path-root";

/// What the Node reports besides machine facts.
#[derive(Debug, Clone)]
pub struct NodeIdentity {
    pub name: String,
    pub ip: IpAddr,
    pub port: u16,
    /// The absolute directory local-path volumes of this node go in.
    pub local_path_root: String,
    /// The hard eviction thresholds: the memory and nodefs ones are taken off allocatable.
    pub eviction_hard: Vec<node_pressure::Threshold>,
    /// The container runtime's handlers and features (`runtimeHandlers`, `features`).
    pub runtime: runtime::RuntimeStatus,
}

/// The annotations the agent owns on its Node.
pub fn node_annotations(id: &NodeIdentity) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            "volumes.kubernetes.io/controller-managed-attach-detach".to_string(),
            "true".to_string(),
        ),
        (
            LOCAL_PATH_ROOT_ANNOTATION.to_string(),
            id.local_path_root.clone(),
        ),
    ])
}

pub fn node_labels(id: &NodeIdentity, facts: &MachineFacts) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("kubernetes.io/hostname".to_string(), id.name.clone()),
        ("kubernetes.io/os".to_string(), "linux".to_string()),
        ("kubernetes.io/arch".to_string(), facts.arch.clone()),
        ("beta.kubernetes.io/os".to_string(), "linux".to_string()),
        ("beta.kubernetes.io/arch".to_string(), facts.arch.clone()),
    ])
}

fn condition(
    old: Option<&NodeStatus>,
    now: Timestamp,
    kind: &str,
    status: &str,
    reason: &str,
    message: &str,
) -> NodeCondition {
    let since = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|l| l.iter().find(|c| c.type_ == kind && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or_else(|| api_time(now));
    NodeCondition {
        type_: kind.to_string(),
        status: status.to_string(),
        reason: Some(reason.to_string()),
        message: Some(message.to_string()),
        last_heartbeat_time: Some(api_time(now)),
        last_transition_time: Some(since),
    }
}

/// Pods a node runs at most (the kubelet's default `maxPods`).
pub const MAX_PODS: u32 = 110;

/// The node status; `old` keeps condition transition times.
pub fn node_status(
    id: &NodeIdentity,
    facts: &MachineFacts,
    old: Option<&NodeStatus>,
    now: Timestamp,
    pressure: node_pressure::Conditions,
) -> NodeStatus {
    let ki = |v: u64| Quantity(format!("{v}Ki"));
    let storage_ki = facts.ephemeral_storage_bytes / 1024;
    let capacity = BTreeMap::from([
        ("cpu".to_string(), Quantity(facts.cpus.to_string())),
        ("memory".to_string(), ki(facts.memory_ki)),
        ("pods".to_string(), Quantity(MAX_PODS.to_string())),
        ("ephemeral-storage".to_string(), ki(storage_ki)),
        ("hugepages-1Gi".to_string(), Quantity("0".to_string())),
        ("hugepages-2Mi".to_string(), Quantity("0".to_string())),
    ]);
    // As the kubelet's: the hard eviction thresholds of memory and nodefs are taken off
    // allocatable.
    let reserved = |signal| {
        id.eviction_hard
            .iter()
            .filter(|t| t.signal == signal)
            .map(|t| match signal {
                Signal::MemoryAvailable => t.amount(facts.memory_ki.saturating_mul(1024)),
                _ => t.amount(facts.ephemeral_storage_bytes),
            })
            .max()
            .unwrap_or(0)
    };
    let mut allocatable = capacity.clone();
    allocatable.insert(
        "memory".to_string(),
        ki(facts
            .memory_ki
            .saturating_sub(reserved(Signal::MemoryAvailable).div_ceil(1024))),
    );
    allocatable.insert(
        "ephemeral-storage".to_string(),
        Quantity(
            facts
                .ephemeral_storage_bytes
                .saturating_sub(reserved(Signal::NodefsAvailable))
                .to_string(),
        ),
    );
    NodeStatus {
        capacity: Some(capacity),
        allocatable: Some(allocatable),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_string(),
                address: id.ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_string(),
                address: id.name.clone(),
            },
        ]),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(id.port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            machine_id: facts.machine_id.clone(),
            system_uuid: facts.system_uuid.clone(),
            boot_id: facts.boot_id.clone(),
            kernel_version: facts.kernel_version.clone(),
            os_image: facts.os_image.clone(),
            container_runtime_version: format!("peapod://{}", env!("CARGO_PKG_VERSION")),
            kubelet_version: KUBELET_VERSION.to_string(),
            kube_proxy_version: KUBELET_VERSION.to_string(),
            operating_system: "linux".to_string(),
            architecture: facts.arch.clone(),
            swap: None,
        }),
        // kubelet's `RuntimeHandlers` and `NodeFeatures` setters, from the runtime's status.
        runtime_handlers: (!id.runtime.handlers.is_empty()).then(|| {
            id.runtime
                .handlers
                .iter()
                .map(|h| NodeRuntimeHandler {
                    name: Some(h.name.clone()),
                    features: Some(NodeRuntimeHandlerFeatures {
                        recursive_read_only_mounts: Some(h.recursive_read_only_mounts),
                        user_namespaces: Some(h.user_namespaces),
                    }),
                })
                .collect()
        }),
        features: Some(NodeFeatures {
            supplemental_groups_policy: Some(id.runtime.supplemental_groups_policy),
        }),
        conditions: Some(vec![
            // kubelet's eviction manager's conditions, with its reasons and messages.
            if pressure.memory {
                condition(
                    old,
                    now,
                    "MemoryPressure",
                    "True",
                    "KubeletHasInsufficientMemory",
                    "kubelet has insufficient memory available",
                )
            } else {
                condition(
                    old,
                    now,
                    "MemoryPressure",
                    "False",
                    "KubeletHasSufficientMemory",
                    "kubelet has sufficient memory available",
                )
            },
            if pressure.disk {
                condition(
                    old,
                    now,
                    "DiskPressure",
                    "True",
                    "KubeletHasDiskPressure",
                    "kubelet has disk pressure",
                )
            } else {
                condition(
                    old,
                    now,
                    "DiskPressure",
                    "False",
                    "KubeletHasNoDiskPressure",
                    "kubelet has no disk pressure",
                )
            },
            condition(
                old,
                now,
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition(
                old,
                now,
                "Ready",
                "True",
                "KubeletReady",
                "kubelet is posting ready status",
            ),
        ]),
        ..Default::default()
    }
}

/// The Node as first registered.
pub fn node_object(id: &NodeIdentity, facts: &MachineFacts, now: Timestamp) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(id.name.clone()),
            labels: Some(node_labels(id, facts)),
            annotations: Some(node_annotations(id)),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(node_status(id, facts, None, now, Default::default())),
    }
}

/// The node's Lease, owned by the Node so it goes with it.
pub fn lease_object(
    node: &str,
    node_uid: Option<&str>,
    lease_duration_seconds: i32,
    now: Timestamp,
) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(node.to_string()),
            namespace: Some(LEASE_NAMESPACE.to_string()),
            owner_references: node_uid.map(|uid| {
                vec![OwnerReference {
                    api_version: "v1".to_string(),
                    kind: "Node".to_string(),
                    name: node.to_string(),
                    uid: uid.to_string(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(node.to_string()),
            lease_duration_seconds: Some(lease_duration_seconds),
            renew_time: Some(MicroTime(now)),
            ..Default::default()
        }),
    }
}

/// Creates the Node, or patches labels and status onto an existing one; returns its uid.
pub async fn register(
    client: &kube::Client,
    id: &NodeIdentity,
    facts: &MachineFacts,
    pressure: node_pressure::Conditions,
) -> Result<Option<String>, NodeStatusError> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| NodeStatusError::Register {
        node: id.name.clone(),
        source,
    };
    let now = Timestamp::now();
    let existing = api.get_opt(&id.name).await.map_err(err)?;
    let node = match existing {
        None => api
            .create(&PostParams::default(), &node_object(id, facts, now))
            .await
            .map_err(err)?,
        Some(_) => {
            let patch = serde_json::json!({ "metadata": {
                "labels": node_labels(id, facts),
                "annotations": node_annotations(id),
            } });
            api.patch(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(err)?
        }
    };
    post_status(client, id, facts, node.status.as_ref(), pressure).await?;
    Ok(node.metadata.uid)
}

/// kubelet's `nodeStatusHasChanged`: whether `new` says anything `old` does not, the
/// conditions' heartbeat times aside.
pub fn status_changed(old: &NodeStatus, new: &NodeStatus) -> bool {
    let without_heartbeats = |s: &NodeStatus| {
        let mut s = s.clone();
        for c in s.conditions.iter_mut().flatten() {
            c.last_heartbeat_time = None;
        }
        s
    };
    without_heartbeats(old) != without_heartbeats(new)
}

/// kubelet's `tryUpdateNodeStatus`: computes the node status against the stored one and
/// posts it when it changed, or when `report_due` (the report frequency has passed). Returns
/// whether it posted.
pub async fn update_status(
    client: &kube::Client,
    id: &NodeIdentity,
    facts: &MachineFacts,
    pressure: node_pressure::Conditions,
    report_due: bool,
) -> Result<bool, NodeStatusError> {
    let api: Api<Node> = Api::all(client.clone());
    let err = |source| NodeStatusError::UpdateStatus {
        node: id.name.clone(),
        source,
    };
    let stored = api.get_status(&id.name).await.map_err(err)?.status;
    if !report_due {
        if let Some(old) = &stored {
            let fresh = node_status(id, facts, Some(old), Timestamp::now(), pressure);
            if !status_changed(old, &fresh) {
                return Ok(false);
            }
        }
    }
    post_status(client, id, facts, stored.as_ref(), pressure).await?;
    Ok(true)
}

/// Writes a fresh node status (heartbeat), keeping condition transition times of `old`.
async fn post_status(
    client: &kube::Client,
    id: &NodeIdentity,
    facts: &MachineFacts,
    old: Option<&NodeStatus>,
    pressure: node_pressure::Conditions,
) -> Result<(), NodeStatusError> {
    let api: Api<Node> = Api::all(client.clone());
    let status = node_status(id, facts, old, Timestamp::now(), pressure);
    let patch = serde_json::json!({ "status": status });
    api.patch_status(&id.name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| NodeStatusError::UpdateStatus {
            node: id.name.clone(),
            source,
        })?;
    Ok(())
}

/// Reports the node not ready because it shuts down (kubelet's `KubeletNotReady` with the
/// shutdown manager's error), keeping the other conditions.
pub async fn mark_shutting_down(client: &kube::Client, node: &str) -> Result<(), NodeStatusError> {
    let api: Api<Node> = Api::all(client.clone());
    let now = Timestamp::now();
    let ready = condition(
        None,
        now,
        "Ready",
        "False",
        "KubeletNotReady",
        node_shutdown::NODE_MESSAGE,
    );
    let patch = serde_json::json!({"status": {"conditions": [ready]}});
    api.patch_status(node, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(|source| NodeStatusError::UpdateStatus {
            node: node.to_string(),
            source,
        })?;
    Ok(())
}

/// Creates or renews the node's Lease.
pub async fn renew_lease(
    client: &kube::Client,
    node: &str,
    node_uid: Option<&str>,
    lease_duration_seconds: i32,
) -> Result<(), NodeStatusError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let err = |source| NodeStatusError::RenewLease {
        node: node.to_string(),
        source,
    };
    let now = Timestamp::now();
    match api.get_opt(node).await.map_err(err)? {
        None => {
            api.create(
                &PostParams::default(),
                &lease_object(node, node_uid, lease_duration_seconds, now),
            )
            .await
            .map_err(err)?;
        }
        Some(mut lease) => {
            let fresh = lease_object(node, node_uid, lease_duration_seconds, now);
            let spec = lease.spec.get_or_insert_with(Default::default);
            spec.holder_identity = Some(node.to_string());
            spec.lease_duration_seconds = Some(lease_duration_seconds);
            spec.renew_time = Some(MicroTime(now));
            if lease.metadata.owner_references.is_none() {
                lease.metadata.owner_references = fresh.metadata.owner_references;
            }
            api.replace(node, &PostParams::default(), &lease)
                .await
                .map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_default_as_the_kubelet() {
        let s = Duration::from_secs;
        assert_eq!(
            Periods::from_config(None, None, None),
            Periods {
                update: s(10),
                report: s(300),
                lease_duration_seconds: 40
            }
        );
        // An update frequency set alone is also the report frequency.
        let p = Periods::from_config(Some(s(2)), None, Some(8));
        assert_eq!((p.update, p.report), (s(2), s(2)));
        assert_eq!(p.lease_renew(), s(2));
        let p = Periods::from_config(Some(s(2)), Some(s(60)), None);
        assert_eq!(p.report, s(60));
        assert_eq!(p.lease_renew(), s(10));
    }

    fn facts() -> MachineFacts {
        MachineFacts {
            cpus: 2,
            memory_ki: 4_000_000,
            ephemeral_storage_bytes: 10 * 1024 * 1024 * 1024,
            machine_id: "mid".into(),
            system_uuid: "uuid".into(),
            boot_id: "bid".into(),
            kernel_version: "6.1.0".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            hostname: "host".into(),
            arch: "amd64".into(),
        }
    }

    fn id() -> NodeIdentity {
        NodeIdentity {
            name: "node-a".into(),
            ip: "192.168.1.5".parse().expect("ip"),
            port: 10250,
            local_path_root: "/var/lib/peapod/local-path".into(),
            eviction_hard: node_pressure::default_hard(),
            runtime: runtime::RuntimeStatus {
                handlers: ["", "runc"]
                    .iter()
                    .map(|name| runtime::RuntimeHandler {
                        name: name.to_string(),
                        recursive_read_only_mounts: true,
                        user_namespaces: true,
                    })
                    .collect(),
                supplemental_groups_policy: true,
            },
        }
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).expect("time")
    }

    #[test]
    fn node_object_fields() {
        let node = node_object(&id(), &facts(), t(0));
        let v = serde_json::to_value(&node).expect("json");
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/hostname"], "node-a");
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/os"], "linux");
        assert_eq!(v["metadata"]["labels"]["kubernetes.io/arch"], "amd64");
        assert_eq!(
            v["metadata"]["annotations"][LOCAL_PATH_ROOT_ANNOTATION],
            "/var/lib/peapod/local-path"
        );
        let st = &v["status"];
        assert_eq!(st["capacity"]["cpu"], "2");
        assert_eq!(st["capacity"]["memory"], "4000000Ki");
        assert_eq!(st["capacity"]["pods"], "110");
        assert_eq!(st["capacity"]["ephemeral-storage"], "10485760Ki");
        assert_eq!(st["allocatable"]["memory"], "3897600Ki");
        // 10 GiB less the 5 % nodefs threshold.
        assert_eq!(st["allocatable"]["ephemeral-storage"], "10200547328");
        assert_eq!(
            st["addresses"][0],
            serde_json::json!({"type": "InternalIP", "address": "192.168.1.5"})
        );
        assert_eq!(
            st["addresses"][1],
            serde_json::json!({"type": "Hostname", "address": "node-a"})
        );
        assert_eq!(st["daemonEndpoints"]["kubeletEndpoint"]["Port"], 10250);
        assert_eq!(st["nodeInfo"]["kubeletVersion"], "v1.33.0");
        assert_eq!(
            st["nodeInfo"]["containerRuntimeVersion"],
            format!("peapod://{}", env!("CARGO_PKG_VERSION"))
        );
        assert_eq!(st["nodeInfo"]["osImage"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(st["nodeInfo"]["operatingSystem"], "linux");
        let ready = &st["conditions"][3];
        assert_eq!(ready["type"], "Ready");
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["message"], "kubelet is posting ready status");
        assert_eq!(st["conditions"][0]["status"], "False");
        assert_eq!(
            st["runtimeHandlers"],
            serde_json::json!([
                {"name": "", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}},
                {"name": "runc", "features": {"recursiveReadOnlyMounts": true, "userNamespaces": true}}
            ])
        );
        assert_eq!(
            st["features"],
            serde_json::json!({"supplementalGroupsPolicy": true})
        );
    }

    #[test]
    fn heartbeat_moves_but_transition_stays() {
        let calm = node_pressure::Conditions::default();
        let first = node_status(&id(), &facts(), None, t(0), calm);
        let second = node_status(&id(), &facts(), Some(&first), t(10), calm);
        let c = &second.conditions.as_ref().expect("conditions")[3];
        assert_eq!(c.last_heartbeat_time, Some(api_time(t(10))));
        assert_eq!(c.last_transition_time, Some(api_time(t(0))));
    }

    #[test]
    fn only_heartbeats_do_not_make_a_change_worth_posting() {
        let calm = node_pressure::Conditions::default();
        let first = node_status(&id(), &facts(), None, t(0), calm);
        let later = node_status(&id(), &facts(), Some(&first), t(10), calm);
        assert!(!status_changed(&first, &later));
        let memory = node_pressure::Conditions {
            memory: true,
            disk: false,
        };
        let pressed = node_status(&id(), &facts(), Some(&first), t(10), memory);
        assert!(status_changed(&first, &pressed));
        // A condition another writer changed (the node lifecycle controller's Unknown).
        let mut unknown = first.clone();
        unknown.conditions.as_mut().expect("conditions")[3].status = "Unknown".into();
        let fresh = node_status(&id(), &facts(), Some(&unknown), t(10), calm);
        assert!(status_changed(&unknown, &fresh));
    }

    #[test]
    fn pressure_conditions_turn_true_with_a_new_transition() {
        let calm = node_pressure::Conditions::default();
        let first = node_status(&id(), &facts(), None, t(0), calm);
        let memory = node_pressure::Conditions {
            memory: true,
            disk: false,
        };
        let second = node_status(&id(), &facts(), Some(&first), t(10), memory);
        let c = &second.conditions.as_ref().expect("conditions")[0];
        assert_eq!(c.type_, "MemoryPressure");
        assert_eq!(c.status, "True");
        assert_eq!(c.reason.as_deref(), Some("KubeletHasInsufficientMemory"));
        assert_eq!(c.last_transition_time, Some(api_time(t(10))));
        let disk = &second.conditions.as_ref().expect("conditions")[1];
        assert_eq!(disk.status, "False");
    }

    #[test]
    fn lease_fields() {
        let lease = lease_object("node-a", Some("u1"), 40, t(0));
        let v = serde_json::to_value(&lease).expect("json");
        assert_eq!(v["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(v["spec"]["holderIdentity"], "node-a");
        assert_eq!(v["spec"]["leaseDurationSeconds"], 40);
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "Node");
    }
}
