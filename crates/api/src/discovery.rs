//! Discovery documents built from the resource registry: aggregated discovery (v2 and
//! v2beta1, chosen by the client's Accept) and the legacy `/api`, `/apis`, `/api/v1`,
//! `/apis/<g>/<v>` lists. The resource metrics API (`metrics.k8s.io`), served beside the
//! registry rather than from the store, is listed after the registry's groups.

use crate::resources::ResourceInfo;
use serde_json::{json, Value};

pub const AGG_V2: &str = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";
pub const AGG_V2BETA1: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList";

/// Which aggregated discovery version the client offered first, if any.
pub fn aggregated_version(accept: Option<&str>) -> Option<&'static str> {
    let accept = accept?;
    for part in accept.split(',') {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        if !params.contains(&"as=APIGroupDiscoveryList")
            || !params.contains(&"g=apidiscovery.k8s.io")
        {
            continue;
        }
        if params.contains(&"v=v2") {
            return Some("v2");
        }
        if params.contains(&"v=v2beta1") {
            return Some("v2beta1");
        }
    }
    None
}

pub fn content_type(version: &str) -> &'static str {
    if version == "v2" {
        AGG_V2
    } else {
        AGG_V2BETA1
    }
}

/// (group, version) pairs in registry order, core first.
fn group_versions(core: bool) -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in crate::resources::all() {
        if (r.group.is_empty()) == core && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn resources_of<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceInfo> + 'a {
    crate::resources::all()
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        v["subresources"] = r
            .subresources
            .iter()
            .map(|s| {
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                    "verbs": s.verbs,
                })
            })
            .collect();
    }
    v
}

/// `APIGroupDiscoveryList` for `/api` (core) or `/apis` (named groups).
pub fn aggregated(core: bool, version: &str) -> Value {
    let mut groups: Vec<(&str, Vec<Value>)> = Vec::new();
    for (g, v) in group_versions(core) {
        let entry = json!({
            "version": v,
            "freshness": "Current",
            "resources": resources_of(g, v).map(aggregated_resource).collect::<Vec<_>>(),
        });
        match groups.iter_mut().find(|(name, _)| *name == g) {
            Some((_, versions)) => versions.push(entry),
            None => groups.push((g, vec![entry])),
        }
    }
    if !core {
        groups.push((metricsapi::GROUP, vec![metricsapi::aggregated_version()]));
    }
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": groups.into_iter().map(|(name, versions)| json!({
            "metadata": {"name": name, "creationTimestamp": null},
            "versions": versions,
        })).collect::<Vec<_>>(),
    })
}

/// Legacy `/api`.
pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn api_group(name: &str) -> Value {
    let versions: Vec<Value> = group_versions(false)
        .into_iter()
        .filter(|(g, _)| *g == name)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({
        "name": name,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

/// Legacy `/apis`.
pub fn api_group_list() -> Value {
    let mut names: Vec<&str> = Vec::new();
    for (g, _) in group_versions(false) {
        if !names.contains(&g) {
            names.push(g);
        }
    }
    let mut groups: Vec<Value> = names.into_iter().map(api_group).collect();
    groups.push(metricsapi::api_group());
    json!({
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": groups,
    })
}

/// Legacy `/apis/<group>`, `None` for unknown groups.
pub fn api_group_doc(group: &str) -> Option<Value> {
    let mut v = if group == metricsapi::GROUP {
        metricsapi::api_group()
    } else if group_versions(false).iter().any(|(g, _)| *g == group) {
        api_group(group)
    } else {
        return None;
    };
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// Legacy `APIResourceList` for one group-version, `None` if it is not served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    if (group, version) == (metricsapi::GROUP, metricsapi::VERSION) {
        return Some(metricsapi::resource_list());
    }
    let mut list = Vec::new();
    for r in resources_of(group, version) {
        let mut v = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            v["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            v["categories"] = json!(r.categories);
        }
        list.push(v);
        for s in r.subresources {
            let mut sv = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if !s.group.is_empty() || s.version != version {
                sv["group"] = json!(s.group);
                sv["version"] = json!(s.version);
            }
            list.push(sv);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": gv,
        "resources": list,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_first_offered_aggregated_version() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(Some(kubectl)), Some("v2"));
        let old = "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(aggregated_version(Some(old)), Some("v2beta1"));
        assert_eq!(aggregated_version(Some("application/json")), None);
        assert_eq!(aggregated_version(None), None);
    }

    #[test]
    fn the_metrics_group_is_listed_after_the_registrys() {
        let agg = aggregated(false, "v2");
        let items = agg["items"].as_array().expect("items");
        assert_eq!(
            items.last().map(|g| &g["metadata"]["name"]),
            Some(&json!("metrics.k8s.io"))
        );
        assert!(!aggregated(true, "v2")
            .to_string()
            .contains("metrics.k8s.io"));
        let groups = api_group_list();
        assert!(groups["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .any(|g| g["name"] == "metrics.k8s.io"));
        assert_eq!(
            api_group_doc("metrics.k8s.io").map(|g| g["kind"].clone()),
            Some(json!("APIGroup"))
        );
        assert_eq!(
            resource_list("metrics.k8s.io", "v1beta1").map(|l| l["resources"][1]["kind"].clone()),
            Some(json!("PodMetrics"))
        );
        assert_eq!(resource_list("metrics.k8s.io", "v1"), None);
    }
}
