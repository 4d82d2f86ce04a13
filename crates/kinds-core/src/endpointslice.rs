//! EndpointSlices (discovery.k8s.io/v1): the ADDRESSTYPE / PORTS / ENDPOINTS columns.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::{json, Value};

use apimachinery::json::arr;
use apimachinery::printing::{list_with_more, name_and_age, s, Column, AGE, NAME};
use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy, ALL_VERBS};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "discovery.k8s.io",
    version: "v1",
    plural: "endpointslices",
    singular: "endpointslice",
    kind: "EndpointSlice",
    list_kind: "EndpointSliceList",
    namespaced: true,
    short_names: &[],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[],
    strategy: &EndpointSlices,
};

#[derive(Debug)]
struct EndpointSlices;

impl Strategy for EndpointSlices {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<EndpointSlice>(obj)
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            ("AddressType", "string", "", 0, "The type of address carried by this EndpointSlice."),
            ("Ports", "string", "", 0, "The ports of the endpoints in this slice."),
            (
                "Endpoints",
                "string",
                "",
                0,
                "Addresses of the endpoints in this slice (up to three shown).",
            ),
            AGE,
        ]
    }

    fn cells(&self, obj: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(obj, now);
        vec![
            name,
            json!(s(obj, &["addressType"])),
            json!(format_slice_ports(obj)),
            json!(format_slice_endpoints(obj)),
            age,
        ]
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::now;

    #[test]
    fn rows() {
        let es = json!({"metadata":{"name":"web-abc","creationTimestamp":"2026-01-02T14:59:30Z"},
            "addressType":"IPv4","ports":[{"name":"http","port":80},{"name":"x"}],
            "endpoints":[{"addresses":["10.244.0.2"]},{"addresses":["10.244.0.3"]},
                         {"addresses":["10.244.0.4"]},{"addresses":["10.244.0.5"]}]});
        assert_eq!(
            RESOURCE.strategy.cells(&es, now()),
            vec![
                json!("web-abc"),
                json!("IPv4"),
                json!("80,x"),
                json!("10.244.0.2,10.244.0.3,10.244.0.4 + 1 more..."),
                json!("30s")
            ]
        );
        let empty = json!({"metadata":{"name":"e"},"addressType":"IPv4"});
        assert_eq!(RESOURCE.strategy.cells(&empty, now())[2], json!("<unset>"));
        assert_eq!(RESOURCE.strategy.columns().len(), 5);
    }
}
