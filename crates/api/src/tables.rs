//! Server-side printing: `meta.k8s.io/v1` Tables with the columns of upstream's printers.
//!
//! kubectl prints server Tables verbatim, so the columns and the cell logic (notably the pod
//! STATUS reason) mirror kube-apiserver's `printers.go`. As upstream does, the server always
//! fills every column, wide ones included; kubectl hides `priority > 0` columns unless `-o wide`.

use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

/// What `includeObject` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    /// Parses the `includeObject` query value (`None`, `Metadata`, `Object`); the default is
    /// `Metadata`, as upstream.
    pub fn from_query(v: Option<&str>) -> Option<Self> {
        match v {
            None | Some("") | Some("Metadata") => Some(IncludeObject::Metadata),
            Some("None") => Some(IncludeObject::None),
            Some("Object") => Some(IncludeObject::Object),
            Some(_) => None,
        }
    }
}

/// One column: name, type, format, priority, description.
type Col = (&'static str, &'static str, &'static str, u32, &'static str);

const NAME_DESC: &str =
    "Name must be unique within a namespace. Is required when creating resources.";
const AGE_DESC: &str =
    "CreationTimestamp is a timestamp representing the server time when this object was created.";

fn name_col() -> Col {
    ("Name", "string", "name", 0, NAME_DESC)
}

fn age_col() -> Col {
    ("Age", "string", "", 0, AGE_DESC)
}

fn columns(kind: &str) -> Vec<Col> {
    match kind {
        "Pod" => vec![
            name_col(),
            ("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
            ("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
            ("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
            age_col(),
            ("IP", "string", "", 1, "IP address allocated to the pod."),
            ("Node", "string", "", 1, "Name of the node the pod is assigned to."),
            ("Nominated Node", "string", "", 1, "Node the scheduler nominated for this pod when preempting others."),
            ("Readiness Gates", "string", "", 1, "Pod readiness gates."),
        ],
        "Node" => vec![
            name_col(),
            ("Status", "string", "", 0, "The status of the node"),
            ("Roles", "string", "", 0, "The roles of the node"),
            age_col(),
            ("Version", "string", "", 0, "Kubelet version reported by the node."),
            ("Internal-IP", "string", "", 1, "List of internal IPs of the node."),
            ("External-IP", "string", "", 1, "List of external IPs of the node."),
            ("OS-Image", "string", "", 1, "OS image reported by the node."),
            ("Kernel-Version", "string", "", 1, "Kernel version reported by the node."),
            ("Container-Runtime", "string", "", 1, "Container runtime version reported by the node."),
        ],
        "Namespace" => vec![
            name_col(),
            ("Status", "string", "", 0, "The status of the namespace"),
            age_col(),
        ],
        "Event" => vec![
            ("Last Seen", "string", "", 0, "The time the event was last seen."),
            ("Type", "string", "", 0, "Type of this event (Normal, Warning)."),
            ("Reason", "string", "", 0, "Why the action was taken, in machine readable form."),
            ("Object", "string", "", 0, "The object this event is about."),
            ("Subobject", "string", "", 1, "The part of the object this event is about (fieldPath)."),
            ("Source", "string", "", 1, "The component reporting this event."),
            ("Message", "string", "", 0, "A human-readable description of the status of this operation."),
            ("First Seen", "string", "", 1, "The time the event was first seen."),
            ("Count", "string", "", 1, "The number of times this event has occurred."),
            ("Name", "string", "name", 1, NAME_DESC),
        ],
        "ConfigMap" => vec![
            name_col(),
            ("Data", "string", "", 0, "Number of keys in data and binaryData."),
            age_col(),
        ],
        "Secret" => vec![
            name_col(),
            ("Type", "string", "", 0, "The type of the secret"),
            ("Data", "string", "", 0, "The total number of data entries in the secret."),
            age_col(),
        ],
        "Service" => vec![
            name_col(),
            ("Type", "string", "", 0, "How the service is exposed."),
            ("Cluster-IP", "string", "", 0, "The IP address of the service inside the cluster."),
            ("External-IP", "string", "", 0, "External IP addresses the service is reachable at."),
            ("Port(s)", "string", "", 0, "The ports the service exposes."),
            age_col(),
            ("Selector", "string", "", 1, "Pods with labels matching this selector receive the traffic."),
        ],
        "Endpoints" => vec![
            name_col(),
            ("Endpoints", "string", "", 0, "Endpoints of the service (up to three shown)."),
            age_col(),
        ],
        "EndpointSlice" => vec![
            name_col(),
            ("AddressType", "string", "", 0, "The type of address carried by this EndpointSlice."),
            ("Ports", "string", "", 0, "The ports of the endpoints in this slice."),
            ("Endpoints", "string", "", 0, "Addresses of the endpoints in this slice (up to three shown)."),
            age_col(),
        ],
        "Lease" => vec![
            name_col(),
            ("Holder", "string", "", 0, "The holder of the lease."),
            age_col(),
        ],
        "ServiceAccount" => vec![
            name_col(),
            ("Secrets", "string", "", 0, "The number of secrets listed for the service account."),
            age_col(),
        ],
        _ => vec![
            name_col(),
            ("Created At", "date", "", 0, AGE_DESC),
        ],
    }
}

/// Column definitions for `kind` (JSON objects with name, type, format, description, priority).
pub fn column_definitions(kind: &str) -> Vec<Value> {
    columns(kind)
        .into_iter()
        .map(|(name, ty, format, priority, description)| {
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect()
}

/// The cells of one row for `obj` at time `now` (AGE computed with upstream's HumanDuration).
pub fn row_cells(kind: &str, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let name = s(obj, &["metadata", "name"]);
    let age = since(obj.pointer("/metadata/creationTimestamp"), now);
    match kind {
        "Pod" => pod_cells(obj, now),
        "Node" => node_cells(obj, &age),
        "Namespace" => vec![json!(name), json!(s(obj, &["status", "phase"])), json!(age)],
        "Event" => event_cells(obj, now),
        "ConfigMap" => {
            let n = len_of(obj.get("data")) + len_of(obj.get("binaryData"));
            vec![json!(name), json!(n), json!(age)]
        }
        "Secret" => vec![
            json!(name),
            json!(s(obj, &["type"])),
            json!(len_of(obj.get("data"))),
            json!(age),
        ],
        "Service" => service_cells(obj, &age),
        "Endpoints" => vec![json!(name), json!(format_endpoints(obj)), json!(age)],
        "EndpointSlice" => vec![
            json!(name),
            json!(s(obj, &["addressType"])),
            json!(format_slice_ports(obj)),
            json!(format_slice_endpoints(obj)),
            json!(age),
        ],
        "Lease" => vec![
            json!(name),
            json!(s(obj, &["spec", "holderIdentity"])),
            json!(age),
        ],
        "ServiceAccount" => vec![json!(name), json!(len_of(obj.get("secrets"))), json!(age)],
        _ => {
            let created = parse_ts(obj.pointer("/metadata/creationTimestamp"))
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_default();
            vec![json!(name), json!(created)]
        }
    }
}

/// A whole Table for `objs`. `with_columns` false omits columnDefinitions (watch events after
/// the first). `resource_version` goes in metadata.
pub fn table(
    kind: &str,
    objs: &[Value],
    include: IncludeObject,
    with_columns: bool,
    resource_version: &str,
    now: jiff::Timestamp,
) -> Value {
    let rows: Vec<Value> = objs
        .iter()
        .map(|o| {
            let object = match include {
                IncludeObject::None => Value::Null,
                IncludeObject::Metadata => json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": o.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
                IncludeObject::Object => o.clone(),
            };
            let mut row = Map::new();
            row.insert("cells".into(), Value::Array(row_cells(kind, o, now)));
            if kind == "Pod" {
                if let Some(c) = pod_row_conditions(o) {
                    row.insert("conditions".into(), c);
                }
            }
            row.insert("object".into(), object);
            Value::Object(row)
        })
        .collect();
    let mut t = Map::new();
    t.insert("kind".into(), json!("Table"));
    t.insert("apiVersion".into(), json!("meta.k8s.io/v1"));
    t.insert(
        "metadata".into(),
        json!({"resourceVersion": resource_version}),
    );
    if with_columns {
        t.insert(
            "columnDefinitions".into(),
            Value::Array(column_definitions(kind)),
        );
    }
    t.insert("rows".into(), Value::Array(rows));
    Value::Object(t)
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

// ---------------------------------------------------------------------------------------
// Helpers.

fn s(v: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(v, |v, k| v.get(*k))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn len_of(v: Option<&Value>) -> usize {
    match v {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

fn parse_ts(v: Option<&Value>) -> Option<jiff::Timestamp> {
    v.and_then(Value::as_str).and_then(|t| t.parse().ok())
}

/// Upstream `translateTimestampSince`: `<unknown>` for a zero time, `<invalid>` for more than
/// a second in the future, else the human duration.
fn since(v: Option<&Value>, now: jiff::Timestamp) -> String {
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

// ---------------------------------------------------------------------------------------
// Pods.

fn is_restartable_init(spec: &Value, name: &str) -> bool {
    arr(spec.get("initContainers")).iter().any(|c| {
        c.get("name").and_then(Value::as_str) == Some(name)
            && c.get("restartPolicy").and_then(Value::as_str) == Some("Always")
    })
}

fn condition_true(status: &Value, ty: &str) -> bool {
    arr(status.get("conditions")).iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some(ty)
            && c.get("status").and_then(Value::as_str) == Some("True")
    })
}

/// Exit status text for a terminated state without a reason (`Signal:9`, `ExitCode:2`).
fn exit_text(term: &Value) -> String {
    let signal = term.get("signal").and_then(Value::as_i64).unwrap_or(0);
    if signal != 0 {
        format!("Signal:{signal}")
    } else {
        format!(
            "ExitCode:{}",
            term.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
        )
    }
}

fn last_terminated(cs: &Value) -> Option<jiff::Timestamp> {
    parse_ts(cs.pointer("/lastState/terminated/finishedAt"))
}

fn pod_cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let null = Value::Null;
    let spec = pod.get("spec").unwrap_or(&null);
    let status = pod.get("status").unwrap_or(&null);
    let init_specs = arr(spec.get("initContainers"));
    // Sidecars (restartable init containers) count towards READY like regular containers.
    let total = arr(spec.get("containers")).len()
        + init_specs
            .iter()
            .filter(|c| c.get("restartPolicy").and_then(Value::as_str) == Some("Always"))
            .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart: Option<jiff::Timestamp> = None;
    let mut last_sidecar_restart: Option<jiff::Timestamp> = None;
    let phase = s(status, &["phase"]);
    let mut reason = phase.clone();
    let status_reason = s(status, &["reason"]);
    if !status_reason.is_empty() {
        reason = status_reason.clone();
    }
    if arr(status.get("conditions")).iter().any(|c| {
        c.get("type").and_then(Value::as_str) == Some("PodScheduled")
            && c.get("reason").and_then(Value::as_str) == Some("SchedulingGated")
    }) {
        reason = "SchedulingGated".into();
    }

    let mut initializing = false;
    for (i, cs) in arr(status.get("initContainerStatuses")).iter().enumerate() {
        let cname = s(cs, &["name"]);
        let count = cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        restarts += count;
        if let Some(t) = last_terminated(cs) {
            last_restart = last_restart.max(Some(t));
        }
        let sidecar = is_restartable_init(spec, &cname);
        if sidecar {
            sidecar_restarts += count;
            if let Some(t) = last_terminated(cs) {
                last_sidecar_restart = last_sidecar_restart.max(Some(t));
            }
        }
        let terminated = cs.pointer("/state/terminated").filter(|t| !t.is_null());
        let waiting_reason = s(cs, &["state", "waiting", "reason"]);
        if terminated.is_some_and(|t| t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) == 0) {
            continue;
        }
        if sidecar && cs.get("started").and_then(Value::as_bool) == Some(true) {
            if cs.get("ready").and_then(Value::as_bool) == Some(true) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            let r = s(t, &["reason"]);
            reason = if r.is_empty() {
                format!("Init:{}", exit_text(t))
            } else {
                format!("Init:{r}")
            };
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(status, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in arr(status.get("containerStatuses")).iter().rev() {
            restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            if let Some(t) = last_terminated(cs) {
                last_restart = last_restart.max(Some(t));
            }
            let waiting = s(cs, &["state", "waiting", "reason"]);
            let terminated = cs.pointer("/state/terminated").filter(|t| !t.is_null());
            let running = cs.pointer("/state/running").is_some_and(|r| !r.is_null());
            if !waiting.is_empty() {
                reason = waiting;
            } else if let Some(t) = terminated {
                let r = s(t, &["reason"]);
                reason = if r.is_empty() { exit_text(t) } else { r };
            } else if cs.get("ready").and_then(Value::as_bool) == Some(true) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            let has_ready = arr(status.get("conditions"))
                .iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some("Ready"));
            reason = if has_ready && condition_true(status, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = pod
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|d| !d.is_null());
    if deleting && status_reason == "NodeLost" {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_text = match last_restart {
        Some(t) if restarts != 0 => {
            let ago = since(Some(&json!(t.to_string())), now);
            format!("{restarts} ({ago} ago)")
        }
        _ => restarts.to_string(),
    };

    let mut ip = status
        .get("podIPs")
        .and_then(|v| v.get(0))
        .map(|v| s(v, &["ip"]))
        .unwrap_or_default();
    if ip.is_empty() {
        ip = s(status, &["podIP"]);
    }
    let none = |v: String| {
        if v.is_empty() {
            "<none>".to_string()
        } else {
            v
        }
    };
    let gates = arr(spec.get("readinessGates"));
    let gates_text = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(status.get("conditions"));
        let true_count = gates
            .iter()
            .filter(|g| {
                let ty = s(g, &["conditionType"]);
                conditions
                    .iter()
                    .find(|c| s(c, &["type"]) == ty)
                    .is_some_and(|c| s(c, &["status"]) == "True")
            })
            .count();
        format!("{true_count}/{}", gates.len())
    };
    vec![
        json!(s(pod, &["metadata", "name"])),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_text),
        json!(since(pod.pointer("/metadata/creationTimestamp"), now)),
        json!(none(ip)),
        json!(none(s(spec, &["nodeName"]))),
        json!(none(s(status, &["nominatedNodeName"]))),
        json!(gates_text),
    ]
}

/// Row conditions upstream attaches to finished pods.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    match pod.pointer("/status/phase").and_then(Value::as_str) {
        Some("Succeeded") => Some(
            json!([{"type":"Completed","status":"True","reason":"Succeeded","message":"The pod has completed successfully."}]),
        ),
        Some("Failed") => Some(
            json!([{"type":"Completed","status":"True","reason":"Failed","message":"The pod failed."}]),
        ),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Other kinds.

fn node_cells(node: &Value, age: &str) -> Vec<Value> {
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
        json!(s(node, &["metadata", "name"])),
        json!(status.join(",")),
        json!(roles),
        json!(age),
        json!(s(node, &["status", "nodeInfo", "kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(info("osImage")),
        json!(info("kernelVersion")),
        json!(info("containerRuntimeVersion")),
    ]
}

fn event_cells(ev: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let first = if parse_ts(ev.get("firstTimestamp")).is_some() {
        since(ev.get("firstTimestamp"), now)
    } else {
        since(ev.get("eventTime"), now)
    };
    let mut last = if parse_ts(ev.get("lastTimestamp")).is_some() {
        since(ev.get("lastTimestamp"), now)
    } else {
        first.clone()
    };
    let mut count = ev.get("count").and_then(Value::as_i64).unwrap_or(0);
    if let Some(series) = ev.get("series").filter(|x| !x.is_null()) {
        last = since(series.get("lastObservedTime"), now);
        count = series.get("count").and_then(Value::as_i64).unwrap_or(0);
    } else if count == 0 {
        count = 1;
    }
    let kind = s(ev, &["involvedObject", "kind"]).to_lowercase();
    let name = s(ev, &["involvedObject", "name"]);
    let target = if name.is_empty() {
        kind
    } else {
        format!("{kind}/{name}")
    };
    let first_non_empty = |a: String, b: String| if a.is_empty() { b } else { a };
    let component = first_non_empty(
        s(ev, &["source", "component"]),
        s(ev, &["reportingComponent"]),
    );
    let instance = first_non_empty(s(ev, &["source", "host"]), s(ev, &["reportingInstance"]));
    let source = if instance.is_empty() {
        component
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last),
        json!(s(ev, &["type"])),
        json!(s(ev, &["reason"])),
        json!(target),
        json!(s(ev, &["involvedObject", "fieldPath"])),
        json!(source),
        json!(s(ev, &["message"]).trim()),
        json!(first),
        json!(count),
        json!(s(ev, &["metadata", "name"])),
    ]
}

fn service_cells(svc: &Value, age: &str) -> Vec<Value> {
    let spec = svc.get("spec").cloned().unwrap_or(Value::Null);
    let ty = s(&spec, &["type"]);
    let mut cluster_ip = arr(spec.get("clusterIPs"))
        .first()
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if cluster_ip.is_empty() {
        cluster_ip = s(&spec, &["clusterIP"]);
    }
    if cluster_ip.is_empty() {
        cluster_ip = "<none>".into();
    }
    let external: Vec<String> = arr(spec.get("externalIPs"))
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    let external_ip = match ty.as_str() {
        "ClusterIP" | "NodePort" => {
            if external.is_empty() {
                "<none>".to_string()
            } else {
                external.join(",")
            }
        }
        "LoadBalancer" => {
            let mut ips: Vec<String> = arr(svc.pointer("/status/loadBalancer/ingress"))
                .iter()
                .map(|i| {
                    let ip = s(i, &["ip"]);
                    if ip.is_empty() {
                        s(i, &["hostname"])
                    } else {
                        ip
                    }
                })
                .filter(|x| !x.is_empty())
                .collect();
            ips.extend(external);
            if ips.is_empty() {
                "<pending>".to_string()
            } else {
                ips.join(",")
            }
        }
        "ExternalName" => s(&spec, &["externalName"]),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = arr(spec.get("ports"))
        .iter()
        .map(|p| {
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            let proto = s(p, &["protocol"]);
            match p.get("nodePort").and_then(Value::as_i64) {
                Some(np) if np > 0 => format!("{port}:{np}/{proto}"),
                _ => format!("{port}/{proto}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    let selector = spec
        .get("selector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_else(|| "<none>".into());
    vec![
        json!(s(svc, &["metadata", "name"])),
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        json!(age),
        json!(selector),
    ]
}

/// Upstream `formatDiscoveryPorts`: up to three port numbers (the name, or `*`, when the
/// port is unset), then `+ N more...`; `<unset>` when there are none.
fn format_slice_ports(slice: &Value) -> String {
    let items: Vec<String> = arr(slice.get("ports"))
        .iter()
        .map(|p| match p.get("port").and_then(Value::as_i64) {
            Some(n) => n.to_string(),
            None => p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("*")
                .to_string(),
        })
        .collect();
    list_with_more(&items)
}

/// Upstream `formatDiscoveryEndpoints`: the first three addresses over all endpoints.
fn format_slice_endpoints(slice: &Value) -> String {
    let items: Vec<String> = arr(slice.get("endpoints"))
        .iter()
        .flat_map(|e| arr(e.get("addresses")).to_vec())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    list_with_more(&items)
}

/// Upstream `listWithMoreString` with its limit of three.
fn list_with_more(items: &[String]) -> String {
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

/// Upstream `formatEndpoints`: at most three `ip:port` entries, then `+ N more...`.
fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(ep.get("subsets"));
    if subsets.is_empty() {
        return "<none>".into();
    }
    const MAX: usize = 3;
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addrs = arr(ss.get("addresses"));
        let ports = arr(ss.get("ports"));
        if ports.is_empty() {
            count += addrs.len();
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(s(a, &["ip"]));
            }
            continue;
        }
        for p in ports {
            count += addrs.len();
            let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
            for a in addrs {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                let ip = s(a, &["ip"]);
                list.push(if ip.contains(':') {
                    format!("[{ip}]:{port}")
                } else {
                    format!("{ip}:{port}")
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else if joined.is_empty() {
        "<none>".into()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn now() -> jiff::Timestamp {
        "2026-01-02T15:00:00Z".parse().expect("timestamp")
    }

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

    fn pod(status: Value) -> Value {
        json!({"metadata":{"name":"web","creationTimestamp":"2026-01-02T14:55:00Z"},
               "spec":{"containers":[{"name":"a"},{"name":"b"}],"nodeName":"n1"},"status":status})
    }

    #[test]
    fn pod_running_with_restarts() {
        let p = pod(
            json!({"phase":"Running","podIP":"10.0.0.5","containerStatuses":[
            {"name":"a","ready":true,"restartCount":2,"state":{"running":{}},
             "lastState":{"terminated":{"finishedAt":"2026-01-02T14:55:00Z"}}},
            {"name":"b","ready":false,"restartCount":0,"state":{"running":{}}}]}),
        );
        let cells = row_cells("Pod", &p, now());
        assert_eq!(
            cells,
            vec![
                json!("web"),
                json!("1/2"),
                json!("Running"),
                json!("2 (5m ago)"),
                json!("5m"),
                json!("10.0.0.5"),
                json!("n1"),
                json!("<none>"),
                json!("<none>")
            ]
        );
    }

    #[test]
    fn pod_reasons() {
        let waiting = pod(json!({"phase":"Pending","containerStatuses":[
            {"name":"a","state":{"waiting":{"reason":"ContainerCreating"}}},
            {"name":"b","state":{"waiting":{"reason":"ErrImagePull"}}}]}));
        // Upstream walks the statuses backwards, so the first container's reason wins.
        assert_eq!(row_cells("Pod", &waiting, now())[2], "ContainerCreating");
        let done = pod(json!({"phase":"Succeeded","containerStatuses":[
            {"name":"a","state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}));
        assert_eq!(row_cells("Pod", &done, now())[2], "Completed");
        let sig = pod(json!({"phase":"Failed","containerStatuses":[
            {"name":"a","state":{"terminated":{"exitCode":137,"signal":9}}}]}));
        assert_eq!(row_cells("Pod", &sig, now())[2], "Signal:9");
        let mut term = pod(json!({"phase":"Running"}));
        term["metadata"]["deletionTimestamp"] = json!("2026-01-02T14:59:00Z");
        assert_eq!(row_cells("Pod", &term, now())[2], "Terminating");
        let mut lost = pod(json!({"phase":"Running","reason":"NodeLost"}));
        lost["metadata"]["deletionTimestamp"] = json!("2026-01-02T14:59:00Z");
        assert_eq!(row_cells("Pod", &lost, now())[2], "Unknown");
    }

    #[test]
    fn pod_init_states() {
        let mut p = pod(json!({"phase":"Pending","initContainerStatuses":[
            {"name":"i1","state":{"terminated":{"exitCode":0}}},
            {"name":"i2","state":{"running":{}}}]}));
        p["spec"]["initContainers"] = json!([{"name":"i1"},{"name":"i2"}]);
        assert_eq!(row_cells("Pod", &p, now())[2], "Init:1/2");
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"terminated":{"exitCode":1,"reason":"Error"}});
        assert_eq!(row_cells("Pod", &p, now())[2], "Init:Error");
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting":{"reason":"CrashLoopBackOff"}});
        assert_eq!(row_cells("Pod", &p, now())[2], "Init:CrashLoopBackOff");
        p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated":{"exitCode":0}});
        p["status"]["containerStatuses"] =
            json!([{"name":"a","state":{"waiting":{"reason":"PodInitializing"}}}]);
        assert_eq!(row_cells("Pod", &p, now())[2], "PodInitializing");
    }

    #[test]
    fn node_namespace_event_service() {
        let node = json!({"metadata":{"name":"n1","creationTimestamp":"2026-01-01T15:00:00Z",
            "labels":{"node-role.kubernetes.io/control-plane":""}},
            "spec":{"unschedulable":true},
            "status":{"conditions":[{"type":"Ready","status":"True"}],
              "addresses":[{"type":"InternalIP","address":"10.0.0.1"}],
              "nodeInfo":{"kubeletVersion":"v1.33.0","osImage":"Debian"}}});
        let c = row_cells("Node", &node, now());
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

        let ns = json!({"metadata":{"name":"default","creationTimestamp":"2026-01-02T14:59:30Z"},"status":{"phase":"Active"}});
        assert_eq!(
            row_cells("Namespace", &ns, now()),
            vec![json!("default"), json!("Active"), json!("30s")]
        );

        let ev = json!({"metadata":{"name":"web.1"},"type":"Normal","reason":"Pulled","message":"ok ",
            "involvedObject":{"kind":"Pod","name":"web","fieldPath":"spec.containers{a}"},
            "source":{"component":"kubelet","host":"n1"},"firstTimestamp":"2026-01-02T14:50:00Z",
            "lastTimestamp":"2026-01-02T14:58:00Z","count":3});
        assert_eq!(
            row_cells("Event", &ev, now()),
            vec![
                json!("2m"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/web"),
                json!("spec.containers{a}"),
                json!("kubelet, n1"),
                json!("ok"),
                json!("10m"),
                json!(3),
                json!("web.1")
            ]
        );

        let svc = json!({"metadata":{"name":"web"},"spec":{"type":"NodePort","clusterIP":"10.96.0.10",
            "ports":[{"port":80,"protocol":"TCP","nodePort":30080},{"port":53,"protocol":"UDP"}],"selector":{"app":"web"}}});
        let c = row_cells("Service", &svc, now());
        assert_eq!(
            c[1..5],
            [
                json!("NodePort"),
                json!("10.96.0.10"),
                json!("<none>"),
                json!("80:30080/TCP,53/UDP")
            ]
        );
        assert_eq!(c[5], "<unknown>");
        assert_eq!(c[6], "app=web");
    }

    #[test]
    fn endpoints_and_misc() {
        let ep = json!({"metadata":{"name":"web"},"subsets":[{"addresses":[{"ip":"1.1.1.1"},{"ip":"1.1.1.2"},
            {"ip":"1.1.1.3"},{"ip":"1.1.1.4"}],"ports":[{"port":80}]}]});
        assert_eq!(
            row_cells("Endpoints", &ep, now())[1],
            "1.1.1.1:80,1.1.1.2:80,1.1.1.3:80 + 1 more..."
        );
        let cm = json!({"metadata":{"name":"c"},"data":{"a":"1","b":"2"},"binaryData":{"c":""}});
        assert_eq!(row_cells("ConfigMap", &cm, now())[1], 3);
        let other = json!({"metadata":{"name":"x","creationTimestamp":"2026-01-02T14:00:00Z"}});
        assert_eq!(
            row_cells("Widget", &other, now()),
            vec![json!("x"), json!("2026-01-02T14:00:00Z")]
        );
        assert_eq!(
            column_definitions("Pod").len(),
            row_cells("Pod", &json!({}), now()).len()
        );
        for kind in [
            "Node",
            "Namespace",
            "Event",
            "ConfigMap",
            "Secret",
            "Service",
            "Endpoints",
            "Lease",
            "ServiceAccount",
        ] {
            assert_eq!(
                column_definitions(kind).len(),
                row_cells(kind, &json!({}), now()).len(),
                "{kind}"
            );
        }
    }

    #[test]
    fn whole_table() {
        let p = pod(json!({"phase":"Succeeded"}));
        let t = table(
            "Pod",
            std::slice::from_ref(&p),
            IncludeObject::Metadata,
            true,
            "42",
            now(),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"]["resourceVersion"], "42");
        assert_eq!(t["columnDefinitions"][0]["name"], "Name");
        assert_eq!(t["columnDefinitions"][5]["priority"], 1);
        assert_eq!(t["rows"][0]["object"]["kind"], "PartialObjectMetadata");
        assert_eq!(t["rows"][0]["object"]["metadata"]["name"], "web");
        assert_eq!(t["rows"][0]["conditions"][0]["reason"], "Succeeded");
        let t = table(
            "Pod",
            std::slice::from_ref(&p),
            IncludeObject::None,
            false,
            "42",
            now(),
        );
        assert!(t.get("columnDefinitions").is_none());
        assert_eq!(t["rows"][0]["object"], Value::Null);
        let t = table(
            "Pod",
            std::slice::from_ref(&p),
            IncludeObject::Object,
            false,
            "1",
            now(),
        );
        assert_eq!(t["rows"][0]["object"], p);
    }

    #[test]
    fn endpoint_slice_rows() {
        let es = json!({"metadata":{"name":"web-abc","creationTimestamp":"2026-01-02T14:59:30Z"},
            "addressType":"IPv4","ports":[{"name":"http","port":80},{"name":"x"}],
            "endpoints":[{"addresses":["10.244.0.2"]},{"addresses":["10.244.0.3"]},
                         {"addresses":["10.244.0.4"]},{"addresses":["10.244.0.5"]}]});
        assert_eq!(
            row_cells("EndpointSlice", &es, now()),
            vec![
                json!("web-abc"),
                json!("IPv4"),
                json!("80,x"),
                json!("10.244.0.2,10.244.0.3,10.244.0.4 + 1 more..."),
                json!("30s")
            ]
        );
        let empty = json!({"metadata":{"name":"e"},"addressType":"IPv4"});
        assert_eq!(
            row_cells("EndpointSlice", &empty, now())[2],
            json!("<unset>")
        );
        assert_eq!(columns("EndpointSlice").len(), 5);
    }
}
