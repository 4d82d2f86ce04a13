//! A pod's resolver, as kubelet's `pkg/kubelet/network/dns` derives it from `dnsPolicy` and
//! `dnsConfig`: `ClusterFirst` pods ask the cluster DNS Service and search their namespace's
//! service domain first (with `ndots:5`, so `mydb` and `mydb.ns` are tried as service names
//! before the outside world), `Default` pods get the node's resolver, `None` pods only what
//! their `dnsConfig` says.

use k8s_openapi::api::core::v1::Pod;
use runtime::DnsConfig;

/// kubelet's `--cluster-dns`: the ClusterIP of `kube-system/kube-dns` that peapod's API
/// server reserves.
pub const CLUSTER_DNS: &str = "10.96.0.10";
/// kubelet's `--cluster-domain`.
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// The `search`/`nameserver`/`options` lines of a resolv.conf.
fn parse_resolv_conf(text: &str) -> DnsConfig {
    let mut out = DnsConfig::default();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => out.servers.extend(words.next().map(str::to_string)),
            Some("search") | Some("domain") => {
                out.searches = words.map(str::to_string).collect();
            }
            Some("options") => out.options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    out
}

fn option_name(o: &str) -> &str {
    o.split(':').next().unwrap_or(o)
}

/// The pod's resolver, or `None` to copy the node's file unchanged. `host_resolv` is the
/// node's `/etc/resolv.conf`.
pub fn pod_dns_config(pod: &Pod, host_resolv: &str) -> Option<DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.metadata.namespace.as_deref().unwrap_or("default");
    let host_network = spec.host_network.unwrap_or(false);
    let policy = spec.dns_policy.as_deref().unwrap_or("ClusterFirst");
    let host = parse_resolv_conf(host_resolv);
    let mut cfg = match (policy, host_network) {
        // kubelet: ClusterFirst on the host network falls back to Default.
        ("ClusterFirstWithHostNet", _) | ("ClusterFirst", false) => {
            let mut searches = vec![
                format!("{ns}.svc.{CLUSTER_DOMAIN}"),
                format!("svc.{CLUSTER_DOMAIN}"),
                CLUSTER_DOMAIN.to_string(),
            ];
            searches.extend(host.searches.iter().cloned());
            DnsConfig {
                servers: vec![CLUSTER_DNS.to_string()],
                searches,
                options: vec!["ndots:5".to_string()],
            }
        }
        ("None", _) => DnsConfig::default(),
        _ => {
            // Without a dnsConfig the node's file is copied as it is.
            spec.dns_config.as_ref()?;
            host
        }
    };
    if let Some(extra) = &spec.dns_config {
        for s in extra.nameservers.iter().flatten() {
            if !cfg.servers.contains(s) {
                cfg.servers.push(s.clone());
            }
        }
        for s in extra.searches.iter().flatten() {
            if !cfg.searches.contains(s) {
                cfg.searches.push(s.clone());
            }
        }
        // A pod option replaces the one of the same name (kubelet's mergeDNSOptions).
        for o in extra.options.iter().flatten() {
            let Some(name) = o.name.as_deref() else {
                continue;
            };
            let text = match &o.value {
                Some(v) => format!("{name}:{v}"),
                None => name.to_string(),
            };
            cfg.options.retain(|x| option_name(x) != name);
            cfg.options.push(text);
        }
    }
    Some(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": "p", "namespace": "shop"}, "spec": spec}),
        )
        .expect("pod")
    }

    const HOST: &str = "nameserver 192.0.2.53\nsearch corp.example\noptions edns0\n";

    #[test]
    fn cluster_first_uses_cluster_dns_and_search_path() {
        let cfg = pod_dns_config(&pod(json!({"containers": []})), HOST).expect("cfg");
        assert_eq!(
            cfg.resolv_conf(),
            "search shop.svc.cluster.local svc.cluster.local cluster.local corp.example\nnameserver 10.96.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn host_network_and_default_copy_the_node() {
        let p = pod(json!({"containers": [], "hostNetwork": true}));
        assert_eq!(pod_dns_config(&p, HOST), None);
        let p = pod(json!({"containers": [], "dnsPolicy": "Default"}));
        assert_eq!(pod_dns_config(&p, HOST), None);
        let p = pod(
            json!({"containers": [], "hostNetwork": true, "dnsPolicy": "ClusterFirstWithHostNet"}),
        );
        assert_eq!(
            pod_dns_config(&p, HOST).expect("cfg").servers,
            vec!["10.96.0.10"]
        );
    }

    #[test]
    fn dns_config_merges_and_none_takes_only_it() {
        let p = pod(json!({"containers": [], "dnsConfig": {
            "nameservers": ["1.1.1.1"], "searches": ["x.test"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]}}));
        let cfg = pod_dns_config(&p, "").expect("cfg");
        assert_eq!(cfg.servers, vec!["10.96.0.10", "1.1.1.1"]);
        assert_eq!(cfg.searches.last().map(String::as_str), Some("x.test"));
        assert_eq!(cfg.options, vec!["ndots:2", "edns0"]);
        let p = pod(json!({"containers": [], "dnsPolicy": "None",
            "dnsConfig": {"nameservers": ["9.9.9.9"]}}));
        assert_eq!(
            pod_dns_config(&p, HOST).expect("cfg").resolv_conf(),
            "nameserver 9.9.9.9\n"
        );
    }
}
