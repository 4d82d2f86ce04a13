//! Endpoints: port protocol defaults, IP and port rules, and the ENDPOINTS column.

use k8s_openapi::api::core::v1::Endpoints;
use serde_json::{json, Map, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::{arr, each_item, set_str};
use apimachinery::names::PORT_RANGE_MSG;
use apimachinery::printing::{name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "",
    version: "v1",
    plural: "endpoints",
    singular: "endpoints",
    kind: "Endpoints",
    list_kind: "EndpointsList",
    namespaced: true,
    short_names: &["ep"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &EndpointsStrategy,
};

#[derive(Debug)]
struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<Endpoints>(obj)
    }

    fn apply_defaults(&self, ep: &mut Map<String, Value>) {
        each_item(ep, "subsets", |s| {
            each_item(s, "ports", |p| set_str(p, "protocol", "TCP"))
        });
    }

    fn validate(&self, obj: &Value, e: &mut FieldErrors) {
        endpoints(e, obj);
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            (
                "Endpoints",
                "string",
                "",
                0,
                "Endpoints of the service (up to three shown).",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![name, json!(format_endpoints(obj)), age]
    }
}

fn endpoints(e: &mut FieldErrors, obj: &Value) {
    for (i, s) in arr(obj.get("subsets")).iter().enumerate() {
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr(s.get(key)).iter().enumerate() {
                let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                if ip.parse::<std::net::IpAddr>().is_err() {
                    e.invalid(
                        &format!("subsets[{i}].{key}[{j}].ip"),
                        &Value::from(ip),
                        "must be a valid IP address",
                    );
                }
            }
        }
        for (j, p) in arr(s.get("ports")).iter().enumerate() {
            match p.get("port").and_then(Value::as_i64) {
                Some(n) if (1..=65535).contains(&n) => {}
                other => e.invalid(
                    &format!("subsets[{i}].ports[{j}].port"),
                    &Value::from(other.unwrap_or(0)),
                    PORT_RANGE_MSG,
                ),
            }
        }
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
    use crate::testing::{messages, now};

    #[test]
    fn rows() {
        let ep = json!({"metadata":{"name":"web"},"subsets":[{"addresses":[{"ip":"1.1.1.1"},{"ip":"1.1.1.2"},
            {"ip":"1.1.1.3"},{"ip":"1.1.1.4"}],"ports":[{"port":80}]}]});
        assert_eq!(
            RESOURCE.strategy.cells(&ep, now())[1],
            "1.1.1.1:80,1.1.1.2:80,1.1.1.3:80 + 1 more..."
        );
    }

    #[test]
    fn defaults_and_validation() {
        let mut ep = json!({"metadata":{"name":"web","namespace":"d"},
            "subsets":[{"addresses":[{"ip":"nope"}],"ports":[{"port":0}]}]});
        RESOURCE.apply_defaults(&mut ep);
        assert_eq!(ep["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(
            messages(RESOURCE.validate_create(&ep)),
            vec![
                "subsets[0].addresses[0].ip: Invalid value: \"nope\": must be a valid IP address",
                "subsets[0].ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
            ]
        );
    }
}
