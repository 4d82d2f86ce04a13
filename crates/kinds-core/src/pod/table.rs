//! The pod row of `kubectl get pods`: READY, STATUS (upstream printers.go's reason logic),
//! RESTARTS, AGE and the wide IP / NODE / NOMINATED NODE / READINESS GATES columns.

use serde_json::{json, Value};

use apimachinery::json::arr;
use apimachinery::printing::{parse_ts, s, since, Column, AGE, NAME};

#[rustfmt::skip]
pub(super) const COLUMNS: &[Column] = &[
    NAME,
    ("Ready", "string", "", 0, "The aggregate readiness state of this pod for accepting traffic."),
    ("Status", "string", "", 0, "The aggregate status of the containers in this pod."),
    ("Restarts", "string", "", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
    AGE,
    ("IP", "string", "", 1, "IP address allocated to the pod."),
    ("Node", "string", "", 1, "Name of the node the pod is assigned to."),
    ("Nominated Node", "string", "", 1, "Node the scheduler nominated for this pod when preempting others."),
    ("Readiness Gates", "string", "", 1, "Pod readiness gates."),
];

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

pub(super) fn pod_cells(pod: &Value, now: jiff::Timestamp) -> Vec<Value> {
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
pub(super) fn pod_row_conditions(pod: &Value) -> Option<Value> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::now;

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
        let cells = pod_cells(&p, now());
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
        assert_eq!(pod_cells(&waiting, now())[2], "ContainerCreating");
        let done = pod(json!({"phase":"Succeeded","containerStatuses":[
            {"name":"a","state":{"terminated":{"exitCode":0,"reason":"Completed"}}}]}));
        assert_eq!(pod_cells(&done, now())[2], "Completed");
        let sig = pod(json!({"phase":"Failed","containerStatuses":[
            {"name":"a","state":{"terminated":{"exitCode":137,"signal":9}}}]}));
        assert_eq!(pod_cells(&sig, now())[2], "Signal:9");
        let mut term = pod(json!({"phase":"Running"}));
        term["metadata"]["deletionTimestamp"] = json!("2026-01-02T14:59:00Z");
        assert_eq!(pod_cells(&term, now())[2], "Terminating");
        let mut lost = pod(json!({"phase":"Running","reason":"NodeLost"}));
        lost["metadata"]["deletionTimestamp"] = json!("2026-01-02T14:59:00Z");
        assert_eq!(pod_cells(&lost, now())[2], "Unknown");
    }

    #[test]
    fn pod_init_states() {
        let mut p = pod(json!({"phase":"Pending","initContainerStatuses":[
            {"name":"i1","state":{"terminated":{"exitCode":0}}},
            {"name":"i2","state":{"running":{}}}]}));
        p["spec"]["initContainers"] = json!([{"name":"i1"},{"name":"i2"}]);
        assert_eq!(pod_cells(&p, now())[2], "Init:1/2");
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"terminated":{"exitCode":1,"reason":"Error"}});
        assert_eq!(pod_cells(&p, now())[2], "Init:Error");
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting":{"reason":"CrashLoopBackOff"}});
        assert_eq!(pod_cells(&p, now())[2], "Init:CrashLoopBackOff");
        p["status"]["initContainerStatuses"][1]["state"] = json!({"terminated":{"exitCode":0}});
        p["status"]["containerStatuses"] =
            json!([{"name":"a","state":{"waiting":{"reason":"PodInitializing"}}}]);
        assert_eq!(pod_cells(&p, now())[2], "PodInitializing");
    }

    #[test]
    fn one_cell_per_column() {
        assert_eq!(COLUMNS.len(), pod_cells(&json!({}), now()).len());
    }
}
