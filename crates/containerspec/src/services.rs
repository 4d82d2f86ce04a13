//! The Service environment variables kubelet gives every container (`envvars.FromServices`
//! over `getServiceEnvVarMap`): for each Service with a ClusterIP in the pod's namespace
//! (when `enableServiceLinks`), and always for the `kubernetes` Service of the `default`
//! namespace, `<NAME>_SERVICE_HOST`, `<NAME>_SERVICE_PORT`, one `<NAME>_SERVICE_PORT_<PORT>`
//! per named port, and Docker's link variables (`<NAME>_PORT`, `<NAME>_PORT_<n>_<PROTO>`
//! with `_PROTO`, `_PORT` and `_ADDR`). This is how in-cluster clients find the API server
//! (`KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;

/// Services whose variables every pod gets, from the `default` namespace.
const MASTER_SERVICES: &[&str] = &["kubernetes"];

/// `my-svc` → `MY_SVC`.
fn env_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

fn cluster_ip(svc: &Service) -> Option<&str> {
    svc.spec
        .as_ref()
        .and_then(|s| s.cluster_ip.as_deref())
        .filter(|ip| !ip.is_empty() && *ip != "None")
}

/// `ip:port`, bracketed for IPv6.
fn host_port(ip: &str, port: i32) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// The variables of one Service, in kubelet's order.
fn service_vars(svc: &Service, out: &mut Vec<(String, String)>) {
    let Some(ip) = cluster_ip(svc) else { return };
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let Some(first) = ports.first() else { return };
    let prefix = env_name(svc.metadata.name.as_deref().unwrap_or_default());
    out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
    let port_var = format!("{prefix}_SERVICE_PORT");
    out.push((port_var.clone(), first.port.to_string()));
    for p in ports {
        if let Some(name) = p.name.as_deref().filter(|n| !n.is_empty()) {
            out.push((format!("{port_var}_{}", env_name(name)), p.port.to_string()));
        }
    }
    for (i, p) in ports.iter().enumerate() {
        let proto = p.protocol.as_deref().unwrap_or("TCP");
        let url = format!("{}://{}", proto.to_lowercase(), host_port(ip, p.port));
        if i == 0 {
            out.push((format!("{prefix}_PORT"), url.clone()));
        }
        let pp = format!("{prefix}_PORT_{}_{}", p.port, proto.to_uppercase());
        out.push((pp.clone(), url));
        out.push((format!("{pp}_PROTO"), proto.to_lowercase()));
        out.push((format!("{pp}_PORT"), p.port.to_string()));
        out.push((format!("{pp}_ADDR"), ip.to_string()));
    }
}

/// The Service variables of a container in `namespace`, from `services` (the pod's
/// namespace's and the `default` namespace's), sorted by Service name.
pub fn service_env(
    services: &[Service],
    namespace: &str,
    enable_service_links: bool,
) -> Vec<(String, String)> {
    let mut chosen: BTreeMap<String, &Service> = BTreeMap::new();
    for svc in services.iter().filter(|s| cluster_ip(s).is_some()) {
        let name = svc.metadata.name.clone().unwrap_or_default();
        let ns = svc.metadata.namespace.as_deref().unwrap_or_default();
        if ns == "default" && MASTER_SERVICES.contains(&name.as_str()) {
            chosen.entry(name).or_insert(svc);
        } else if ns == namespace && enable_service_links {
            chosen.insert(name, svc);
        }
    }
    let mut out = Vec::new();
    for svc in chosen.values() {
        service_vars(svc, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn svc(ns: &str, name: &str, ip: &str, ports: serde_json::Value) -> Service {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": ns},
            "spec": {"clusterIP": ip, "ports": ports}}))
        .expect("service")
    }

    fn all() -> Vec<Service> {
        vec![
            svc(
                "default",
                "kubernetes",
                "10.96.0.1",
                json!([{"name": "https", "port": 443, "protocol": "TCP"}]),
            ),
            svc("default", "other", "10.96.0.9", json!([{"port": 1}])),
            svc(
                "team",
                "my-db",
                "10.96.0.20",
                json!([{"port": 5432}, {"name": "metrics", "port": 9187, "protocol": "UDP"}]),
            ),
            svc("team", "headless", "None", json!([{"port": 80}])),
        ]
    }

    fn get<'a>(env: &'a [(String, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn kubernetes_service_vars_as_kubelet_sets_them() {
        let env = service_env(&all(), "team", false);
        let want = [
            ("KUBERNETES_SERVICE_HOST", "10.96.0.1"),
            ("KUBERNETES_SERVICE_PORT", "443"),
            ("KUBERNETES_SERVICE_PORT_HTTPS", "443"),
            ("KUBERNETES_PORT", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP", "tcp://10.96.0.1:443"),
            ("KUBERNETES_PORT_443_TCP_PROTO", "tcp"),
            ("KUBERNETES_PORT_443_TCP_PORT", "443"),
            ("KUBERNETES_PORT_443_TCP_ADDR", "10.96.0.1"),
        ];
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn namespace_services_with_links_enabled() {
        let env = service_env(&all(), "team", true);
        assert_eq!(get(&env, "MY_DB_SERVICE_HOST"), Some("10.96.0.20"));
        assert_eq!(get(&env, "MY_DB_SERVICE_PORT"), Some("5432"));
        assert_eq!(get(&env, "MY_DB_SERVICE_PORT_METRICS"), Some("9187"));
        assert_eq!(get(&env, "MY_DB_PORT"), Some("tcp://10.96.0.20:5432"));
        assert_eq!(
            get(&env, "MY_DB_PORT_9187_UDP"),
            Some("udp://10.96.0.20:9187")
        );
        assert_eq!(get(&env, "MY_DB_PORT_9187_UDP_PROTO"), Some("udp"));
        assert_eq!(get(&env, "KUBERNETES_SERVICE_HOST"), Some("10.96.0.1"));
        assert!(get(&env, "HEADLESS_SERVICE_HOST").is_none());
        assert!(
            get(&env, "OTHER_SERVICE_HOST").is_none(),
            "other namespaces' services"
        );
        let in_default = service_env(&all(), "default", true);
        assert_eq!(get(&in_default, "OTHER_SERVICE_HOST"), Some("10.96.0.9"));
    }
}
