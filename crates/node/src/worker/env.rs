//! The environment a pod runs in, built from the pod and the node: the sandbox's config
//! (hostname, labels, DNS, sysctls, pod cgroup), the placement facts env vars and downward
//! API volumes read, and the config maps and secrets a container's env refers to.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use runtime::{PodSandboxConfig, PodSandboxStatus};

use super::deps::WorkerDeps;
use super::plan::pod_key;
use crate::{dnsconfig, network};
use containerspec::{EnvSources, PodContext};
use podapi::ApiError;

/// The runtime's config for attempt `attempt` of the pod's sandbox.
pub fn sandbox_config(deps: &WorkerDeps, pod: &Pod, attempt: u32) -> PodSandboxConfig {
    let (namespace, name, uid) = pod_key(pod);
    let spec = pod.spec.as_ref();
    let (hostname, domain) = pod_hostname(pod, &name, &namespace);
    let mut labels: BTreeMap<String, String> = pod.metadata.labels.clone().unwrap_or_default();
    labels.insert(containerspec::LABEL_POD_NAME.to_string(), name.clone());
    labels.insert(
        containerspec::LABEL_POD_NAMESPACE.to_string(),
        namespace.clone(),
    );
    labels.insert(containerspec::LABEL_POD_UID.to_string(), uid.clone());
    // kubelet's pod cgroup in its QoS tier (`pod_container_manager`).
    let cgroup_parent = deps
        .pod_cgroups
        .as_ref()
        .zip(spec)
        .and_then(|(layout, spec)| layout.pod(api::qos::of_typed_spec(spec), &uid));
    PodSandboxConfig {
        log_directory: crilog::pod_log_dir(&deps.log_root, &namespace, &name, &uid),
        name,
        namespace,
        uid,
        attempt,
        hostname,
        domain,
        labels,
        annotations: pod.metadata.annotations.clone().unwrap_or_default(),
        host_network: network::is_host_network(pod),
        host_pid: spec.and_then(|s| s.host_pid).unwrap_or(false),
        host_ipc: spec.and_then(|s| s.host_ipc).unwrap_or(false),
        port_mappings: network::port_mappings(pod),
        // kubelet's `--resolv-conf` default supplies the node's search domains.
        dns: dnsconfig::pod_dns_config(
            pod,
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        ),
        share_process_namespace: containerspec::share_process_namespace(pod),
        sysctls: containerspec::pod_sysctls(pod),
        resources: spec.map(containerspec::pod_resources).unwrap_or_default(),
        cgroup_parent,
        host_aliases: spec
            .and_then(|s| s.host_aliases.as_ref())
            .into_iter()
            .flatten()
            .map(|a| runtime::HostAlias {
                ip: a.ip.clone(),
                hostnames: a.hostnames.clone().unwrap_or_default(),
            })
            .collect(),
        // Filled in by the sandbox's creation, which allocates the range (`hostUsers`).
        user_namespace: None,
        // Filled in by the sandbox's creation, from the pod's RuntimeClass.
        runtime_handler: String::new(),
    }
}

/// The pod's kernel hostname and DNS domain, as kubelet's `GeneratePodHostNameAndDomain`
/// and `GetNodenameForKernel` derive them: `spec.hostname` or the pod name (at most 63
/// characters, no trailing `-`/`.`); the domain `subdomain.NS.svc.cluster.local` when
/// `spec.subdomain` is set; the hostname becomes `hostname.domain` with `setHostnameAsFQDN`.
/// A hostNetwork pod has the node's (empty here: the runtime fills it in).
fn pod_hostname(pod: &Pod, name: &str, namespace: &str) -> (String, Option<String>) {
    let spec = pod.spec.as_ref();
    if spec.and_then(|s| s.host_network).unwrap_or(false) {
        return (String::new(), None);
    }
    let hostname = match spec.and_then(|s| s.hostname.as_deref()) {
        Some(h) if !h.is_empty() => h.to_string(),
        _ => name
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches(['-', '.'])
            .to_string(),
    };
    let domain = spec
        .and_then(|s| s.subdomain.as_deref())
        .filter(|d| !d.is_empty())
        .map(|sub| format!("{sub}.{namespace}.svc.{}", crate::dnsconfig::CLUSTER_DOMAIN));
    let fqdn = spec.and_then(|s| s.set_hostname_as_fqdn).unwrap_or(false);
    match domain {
        Some(d) if fqdn => (format!("{hostname}.{d}"), Some(d)),
        d => (hostname, d),
    }
}

/// What a container's env sees of its placement, in `sandbox`.
pub fn container_context(deps: &WorkerDeps, pod: &Pod, sandbox: &PodSandboxStatus) -> PodContext {
    PodContext {
        node_name: deps.node.name.clone(),
        host_ip: deps.node.host_ip.clone(),
        pod_ip: network::pod_ip(&deps.node.host_ip, pod, Some(sandbox)),
        node_cpu: deps.node.cpu,
        node_memory: deps.node.memory,
        node_ephemeral_storage: deps.node.ephemeral_storage,
    }
}

/// What the pod's downward API volumes see of its placement: set up before the sandbox, so
/// without a pod IP unless the pod uses the host's network.
pub fn volume_context(deps: &WorkerDeps, pod: &Pod) -> PodContext {
    PodContext {
        node_name: deps.node.name.clone(),
        host_ip: deps.node.host_ip.clone(),
        pod_ip: if network::is_host_network(pod) {
            deps.node.host_ip.clone()
        } else {
            String::new()
        },
        node_cpu: deps.node.cpu,
        node_memory: deps.node.memory,
        node_ephemeral_storage: deps.node.ephemeral_storage,
    }
}

/// Fetches the config maps and secrets the container's env refers to, and the Services
/// whose variables it gets (the pod's namespace's when `enableServiceLinks`, and the
/// `default` namespace's `kubernetes` Service).
pub async fn env_sources(
    deps: &WorkerDeps,
    pod: &Pod,
    container: &Container,
) -> Result<EnvSources, ApiError> {
    let (ns, _, _) = pod_key(pod);
    let links = pod
        .spec
        .as_ref()
        .and_then(|s| s.enable_service_links)
        .unwrap_or(true);
    let listed = async {
        let mut services = deps.api.list_services("default").await?;
        if links && ns != "default" {
            services.extend(deps.api.list_services(&ns).await?);
        }
        Ok::<_, ApiError>(services)
    }
    .await;
    let services = match listed {
        Ok(s) => s,
        // As kubelet, a static pod starts without Service variables when the API cannot
        // tell them; any other pod waits for them.
        Err(err) if staticpods::is_static_pod(pod) => {
            tracing::warn!(pod = ?pod.metadata.name, error = %err, "static pod starts without Service variables");
            Vec::new()
        }
        Err(err) => return Err(err),
    };
    let (maps, secrets) = containerspec::referenced_sources(container);
    let mut out = EnvSources {
        services: containerspec::service_env(&services, &ns, links),
        ..Default::default()
    };
    for m in maps {
        let v = deps.api.get_config_map(&ns, &m).await?;
        out.config_maps.insert(m, v);
    }
    for s in secrets {
        let v = deps.api.get_secret(&ns, &s).await?;
        out.secrets.insert(s, v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::pod_hostname;
    use k8s_openapi::api::core::v1::Pod;
    use serde_json::json;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod")
    }

    #[test]
    fn hostname_and_domain_follow_the_kubelet() {
        let long = format!("{}-x", "a".repeat(62));
        assert_eq!(
            pod_hostname(&pod(json!({})), &long, "ns"),
            ("a".repeat(62), None)
        );
        assert_eq!(
            pod_hostname(&pod(json!({"hostname": "web-0"})), "p", "ns"),
            ("web-0".to_string(), None)
        );
        let domain = Some("web.ns.svc.cluster.local".to_string());
        assert_eq!(
            pod_hostname(
                &pod(json!({"hostname": "web-0", "subdomain": "web"})),
                "p",
                "ns"
            ),
            ("web-0".to_string(), domain.clone())
        );
        assert_eq!(
            pod_hostname(
                &pod(json!({"hostname": "web-0", "subdomain": "web", "setHostnameAsFQDN": true})),
                "p",
                "ns"
            ),
            ("web-0.web.ns.svc.cluster.local".to_string(), domain)
        );
        assert_eq!(
            pod_hostname(
                &pod(json!({"hostNetwork": true, "subdomain": "web"})),
                "p",
                "ns"
            ),
            (String::new(), None)
        );
    }
}
