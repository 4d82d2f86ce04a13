//! Services: type and port defaults, port and selector rules, an immutable `clusterIP`, and
//! the TYPE / CLUSTER-IP / EXTERNAL-IP / PORT(S) columns. (Address and node-port allocation
//! needs the store, so the API server does it.)

use k8s_openapi::api::core::v1::Service;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

use apimachinery::checks::{enum_field, labels, port_or_name, NameRule};
use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, child, each_item, present, set, set_str, str_at};
use apimachinery::names::{dns1123_label, PORT_RANGE_MSG};
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{
    bump_generation, initial_generation, keep_status, reset_status, sub, typed_round_trip,
    ListStrategy, ResourceInfo, Strategy, ALL_VERBS, PROXY_VERBS, STATUS_VERBS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "services",
    singular: "service",
    kind: "Service",
    list_kind: "ServiceList",
    namespaced: true,
    short_names: &["svc"],
    categories: &["all"],
    verbs: ALL_VERBS,
    subresources: &[
        sub("proxy", "", "ServiceProxyOptions", PROXY_VERBS),
        sub("status", "", "Service", STATUS_VERBS),
    ],
    strategy: &Services,
};

#[derive(Debug)]
struct Services;

impl Strategy for Services {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Service>(obj)
    }

    fn apply_defaults(&self, obj: &mut Map<String, Value>) {
        default_service(obj);
    }

    fn name_rule(&self) -> NameRule {
        NameRule::Dns1035
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        service(e, obj);
    }

    fn validate_update(&self, old: &Value, new: &Value, e: &mut FieldErrors) {
        self.validate(new, e);
        let old_ip = str_at(old, &["spec", "clusterIP"]);
        let new_ip = str_at(new, &["spec", "clusterIP"]);
        if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
            e.invalid("spec.clusterIP", &Value::from(new_ip), "field is immutable");
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        initial_generation(obj);
        // Status is written through the status subresource; defaulting adds the empty
        // load balancer status upstream's types always carry.
        reset_status(obj, None);
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        keep_status(old, new);
        bump_generation(old, new);
    }

    fn list_strategy(&self, path: &[String], field: &str) -> Option<ListStrategy> {
        (path == ["spec"] && field == "ports").then_some(ListStrategy::Key("port"))
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("Type", "string", "", 0, "How the service is exposed."),
            ("Cluster-IP", "string", "", 0, "The IP address of the service inside the cluster."),
            ("External-IP", "string", "", 0, "External IP addresses the service is reachable at."),
            ("Port(s)", "string", "", 0, "The ports the service exposes."),
            AGE,
            ("Selector", "string", "", 1, "Pods with labels matching this selector receive the traffic."),
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        service_cells(obj, now)
    }
}

fn default_service(svc: &mut Map<String, Value>) {
    let Some(spec) = svc.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_str(spec, "sessionAffinity", "None");
    set_str(spec, "type", "ClusterIP");
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP")
        .to_string();
    if spec.get("sessionAffinity").and_then(Value::as_str) == Some("ClientIP") {
        if let Some(cfg) = child(spec, "sessionAffinityConfig") {
            if let Some(ip) = child(cfg, "clientIP") {
                set(ip, "timeoutSeconds", json!(10800));
            }
        }
    }
    each_item(spec, "ports", |p| {
        set_str(p, "protocol", "TCP");
        let zero = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            Some(_) => false,
        };
        if zero {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    });
    if ty != "ExternalName" {
        set_str(spec, "internalTrafficPolicy", "Cluster");
    }
    if ty == "NodePort" || ty == "LoadBalancer" {
        set_str(spec, "externalTrafficPolicy", "Cluster");
    }
    if ty == "LoadBalancer" {
        set(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    set(svc, "status", json!({"loadBalancer": {}}));
}

fn service(e: &mut FieldErrors, obj: &Value) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !TYPES.contains(&ty) {
        e.not_supported("spec.type", &Value::from(ty), TYPES);
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = arr(spec.get("ports"));
    if ty == "ExternalName" {
        if spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            e.required("spec.externalName", "");
        }
    } else if ports.is_empty() && !headless {
        e.required("spec.ports", "");
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            if ports.len() > 1 {
                e.required(&format!("{pp}.name"), "");
            }
        } else {
            for m in dns1123_label(name) {
                e.invalid(&format!("{pp}.name"), &Value::from(name), &m);
            }
            if !names.insert(name.to_string()) {
                e.duplicate(&format!("{pp}.name"), &Value::from(name));
            }
        }
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            other => e.invalid(
                &format!("{pp}.port"),
                &Value::from(other.unwrap_or(0)),
                PORT_RANGE_MSG,
            ),
        }
        enum_field(
            e,
            p.get("protocol"),
            &format!("{pp}.protocol"),
            &["SCTP", "TCP", "UDP"],
        );
        if present(p.get("targetPort")) {
            port_or_name(e, p.get("targetPort"), &format!("{pp}.targetPort"));
        }
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
            if n != 0 && !(1..=65535).contains(&n) {
                e.invalid(&format!("{pp}.nodePort"), &Value::from(n), PORT_RANGE_MSG);
            }
        }
    }
    if let Some(a) = spec.get("sessionAffinity").and_then(Value::as_str) {
        if a != "ClientIP" && a != "None" {
            e.not_supported(
                "spec.sessionAffinity",
                &Value::from(a),
                &["ClientIP", "None"],
            );
        }
    }
    labels(e, spec.get("selector"), "spec.selector");
}

fn service_cells(svc: &Value, now: jiff::Timestamp) -> Vec<Value> {
    let (name, age) = name_and_age(svc, now);
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
        name,
        json!(ty),
        json!(cluster_ip),
        json!(external_ip),
        json!(ports),
        age,
        json!(selector),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    #[test]
    fn defaults() {
        let mut svc =
            json!({"spec":{"ports":[{"port":80},{"port":53,"protocol":"UDP","targetPort":"dns"}]}});
        RESOURCE.apply_defaults(&mut svc);
        assert_eq!(svc["spec"]["type"], "ClusterIP");
        assert_eq!(svc["spec"]["sessionAffinity"], "None");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port":80,"protocol":"TCP","targetPort":80})
        );
        assert_eq!(svc["spec"]["ports"][1]["targetPort"], "dns");
    }

    #[test]
    fn validation() {
        let mut svc =
            json!({"metadata":{"name":"1web","namespace":"d"},"spec":{"ports":[{"port":80}]}});
        RESOURCE.apply_defaults(&mut svc);
        let m = messages(RESOURCE.validate_create(&svc));
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label"));
        let mut old = svc.clone();
        old["metadata"]["name"] = json!("web");
        old["spec"]["clusterIP"] = json!("10.96.0.10");
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.96.0.11");
        assert_eq!(
            messages(RESOURCE.validate_update(&old, &new)),
            vec!["spec.clusterIP: Invalid value: \"10.96.0.11\": field is immutable"]
        );
    }

    #[test]
    fn rows() {
        let svc = json!({"metadata":{"name":"web"},"spec":{"type":"NodePort","clusterIP":"10.96.0.10",
            "ports":[{"port":80,"protocol":"TCP","nodePort":30080},{"port":53,"protocol":"UDP"}],"selector":{"app":"web"}}});
        let c = RESOURCE.strategy.cells(&svc, now());
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
}
