//! The Endpoints and EndpointSlice controllers of kube-controller-manager, for Services with
//! a selector: which pods back a Service, on which ports, and whether each may take traffic.
//!
//! As upstream: only pods with an IP, not finished, whose labels match the selector count;
//! a Ready pod goes in `subsets[].addresses`, any other in `notReadyAddresses` (or nowhere
//! when it is terminating); EndpointSlices list every such pod with `conditions.ready`, so a
//! pod whose readiness probe fails keeps its slice entry but receives no proxied traffic.
//! `targetPort` is a number or the name of a container port (looked up per pod, so pods may
//! disagree; each distinct port mapping gets its own subset and slice). Services without a
//! selector are left to whoever writes their endpoints. When a Service goes, the Endpoints
//! and slices this controller made for it go too.
//!
//! The decision (`desired_*`) is pure and unit-tested; the reconcile of a Service applies it,
//! woken by the Service's and its namespace's pods' watch events.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

use controller_base::error::{is_conflict, is_not_found, Error};
use controller_base::Shared;

/// The label that ties a slice to its Service, and the manager label of upstream's
/// controller (kubectl and kube-proxy select on both).
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// v1.33's endpoints controller labels what it manages (KEP-4974) — and only that is
/// removed when its Service goes.
const ENDPOINTS_MANAGED_BY_LABEL: &str = "endpoints.kubernetes.io/managed-by";
const ENDPOINTS_MANAGED_BY: &str = "endpoint-controller";
/// Safety net: a Service is looked at again this often even without events (someone may
/// have edited its Endpoints by hand).
const RESYNC: Duration = Duration::from_secs(30);
/// After losing a write race to another writer.
const RETRY_RACE: Duration = Duration::from_millis(200);

struct Ctx {
    client: Client,
    pods: Store<Pod>,
}

pub fn run(shared: &Shared) -> BoxFuture<'static, ()> {
    let client = shared.client.clone();
    let services = controller_base::cache::controller(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let pods = shared.pods.store();
    let selecting = services.store();
    // Any pod change in a namespace may add it to, move it within or drop it from the
    // endpoints of that namespace's Services (its labels may have changed too).
    let services = services.watches_shared_stream(shared.pods.touched(), move |pod: Arc<Pod>| {
        let ns = pod.namespace();
        selecting
            .state()
            .into_iter()
            .filter(|s| s.namespace() == ns && has_selector(s))
            .map(|s| ObjectRef::from_obj(&*s))
            .collect::<Vec<_>>()
    });
    // Endpoints this controller made, to remove them (and their slices) with their Service.
    let orphans = controller_base::cache::controller(
        Api::<Endpoints>::all(client.clone()),
        watcher::Config::default().labels(&format!(
            "{ENDPOINTS_MANAGED_BY_LABEL}={ENDPOINTS_MANAGED_BY}"
        )),
    )
    .watches(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
        |svc: Service| {
            let ns = svc.namespace().unwrap_or_default();
            Some(ObjectRef::<Endpoints>::new(&svc.name_any()).within(&ns))
        },
    );
    let ctx = Arc::new(Ctx { client, pods });
    futures::future::join(
        controller_base::runner::drive("endpoints", services, ctx.clone(), reconcile),
        controller_base::runner::drive("endpoints-cleanup", orphans, ctx, remove_orphan),
    )
    .map(|_| ())
    .boxed()
}

async fn reconcile(svc: Arc<Service>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let slices = Api::<EndpointSlice>::namespaced(ctx.client.clone(), &ns);
    // Read fresh, not from a cache: a slice created a moment ago must not be created twice.
    let mine = slices
        .list(&ListParams::default().labels(&slice_selector(&name)))
        .await
        .map_err(Error::api(format!(
            "listing the EndpointSlices of {ns}/{name}"
        )))?
        .items;
    if !has_selector(&svc) || svc.metadata.deletion_timestamp.is_some() {
        for s in &mine {
            delete_quietly(&slices, &s.name_any()).await?;
        }
        return Ok(Action::await_change());
    }
    controller_base::cache::ready(&ctx.pods)
        .await
        .map_err(|e| Error::Cache("pod", e))?;
    let pods = ctx.pods.state();
    let endpoints = Api::<Endpoints>::namespaced(ctx.client.clone(), &ns);
    let current = match endpoints.get(&name).await {
        Ok(e) => Some(e),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(Error::api(format!("reading the Endpoints {ns}/{name}"))(e)),
    };
    let written = match sync_endpoints(&endpoints, &svc, current, &pods).await {
        Ok(()) => sync_slices(&slices, &svc, mine, &pods).await,
        Err(e) => Err(e),
    };
    match written {
        Ok(()) => Ok(Action::requeue(RESYNC)),
        // Another writer or a concurrent delete: look again soon at the state that won.
        Err(e) if is_conflict(&e) || is_not_found(&e) => Ok(Action::requeue(RETRY_RACE)),
        Err(e) => Err(Error::api(format!("writing the endpoints of {ns}/{name}"))(
            e,
        )),
    }
}

/// Upstream deletes the Endpoints of a Service that is gone (and the slice controller its
/// slices).
async fn remove_orphan(ep: Arc<Endpoints>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = ep.namespace().unwrap_or_default();
    let name = ep.name_any();
    // Ask the API, not the Service cache: this runs on its own watch of Services, and the
    // other controller's cache may still hold a Service whose deletion woke us (and then
    // nothing would wake us again), or not yet hold a new one.
    match Api::<Service>::namespaced(ctx.client.clone(), &ns)
        .get(&name)
        .await
    {
        Ok(_) => return Ok(Action::await_change()),
        Err(e) if is_not_found(&e) => {}
        Err(e) => return Err(Error::api(format!("reading the Service {ns}/{name}"))(e)),
    }
    let endpoints = Api::<Endpoints>::namespaced(ctx.client.clone(), &ns);
    delete_quietly(&endpoints, &name).await?;
    let slices = Api::<EndpointSlice>::namespaced(ctx.client.clone(), &ns);
    let mine = slices
        .list(&ListParams::default().labels(&slice_selector(&name)))
        .await
        .map_err(Error::api(format!(
            "listing the EndpointSlices of {ns}/{name}"
        )))?;
    for s in &mine.items {
        delete_quietly(&slices, &s.name_any()).await?;
    }
    Ok(Action::await_change())
}

async fn delete_quietly<K>(api: &Api<K>, name: &str) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
        Err(e) => Err(Error::api(format!("deleting {name}"))(e)),
    }
}

fn slice_selector(service: &str) -> String {
    format!("{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={MANAGED_BY}")
}

fn has_selector(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.selector.as_ref())
        .is_some_and(|m| !m.is_empty())
}

/// (name, port, protocol) of each Service port a pod serves: pods that agree share a
/// subset and a slice.
type PortMapping = Vec<(String, i32, String)>;

/// A pod's part in a Service's endpoints.
#[derive(Debug, Clone)]
struct Member<'a> {
    ip: String,
    ready: bool,
    terminating: bool,
    pod: &'a Pod,
    ports: PortMapping,
}

fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

fn protocol(sp: &ServicePort) -> &str {
    sp.protocol.as_deref().unwrap_or("TCP")
}

/// The pod's port for one Service port: `targetPort` as a number, or the container port of
/// that name and protocol (upstream `podutil.FindPort`).
fn resolve_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match sp.target_port.as_ref() {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            pod.spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name.as_str())
                        && p.protocol.as_deref().unwrap_or("TCP") == protocol(sp)
                })
                .map(|p| p.container_port)
        }
    }
}

fn selector_matches(svc: &Service, pod: &Pod) -> bool {
    let Some(sel) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if sel.is_empty() {
        return false;
    }
    let labels = pod.labels();
    sel.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn publishes_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

/// The pods backing `svc` among `pods` (same namespace), sorted by IP.
fn members<'a>(svc: &Service, pods: &'a [Arc<Pod>]) -> Vec<Member<'a>> {
    let ns = svc.namespace();
    let mut out: Vec<Member> = pods
        .iter()
        .map(|p| &**p)
        .filter(|p| p.namespace() == ns)
        .filter(|p| selector_matches(svc, p))
        .filter(|p| {
            !matches!(
                p.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            )
        })
        .filter_map(|p| {
            let ip = p
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .filter(|s| !s.is_empty())?;
            let ports = service_ports(svc)
                .iter()
                .filter_map(|sp| {
                    Some((
                        sp.name.clone().unwrap_or_default(),
                        resolve_port(p, sp)?,
                        protocol(sp).to_string(),
                    ))
                })
                .collect();
            Some(Member {
                ip: ip.to_string(),
                ready: publishes_not_ready(svc) || pod_ready(p),
                terminating: p.metadata.deletion_timestamp.is_some(),
                pod: p,
                ports,
            })
        })
        .collect();
    out.sort_by(|a, b| {
        let ka: Option<IpAddr> = a.ip.parse().ok();
        let kb: Option<IpAddr> = b.ip.parse().ok();
        ka.cmp(&kb).then_with(|| a.ip.cmp(&b.ip))
    });
    out
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: Some(pod.namespace().unwrap_or_default()),
        name: Some(pod.name_any()),
        uid: Some(pod.metadata.uid.clone().unwrap_or_default()),
        ..Default::default()
    }
}

fn node_name(pod: &Pod) -> Option<String> {
    pod.spec.as_ref().and_then(|s| s.node_name.clone())
}

/// Upstream `ShouldSetHostname`: a pod with a hostname whose subdomain is this Service (in
/// its namespace) is published under that hostname, so cluster DNS answers
/// `<hostname>.<service>.<namespace>.svc` (a StatefulSet's stable pod names).
fn hostname_for(svc: &Service, pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let hostname = spec.hostname.as_deref().filter(|h| !h.is_empty())?;
    let same = spec.subdomain.as_deref() == svc.metadata.name.as_deref()
        && pod.metadata.namespace == svc.metadata.namespace;
    same.then(|| hostname.to_string())
}

fn non_empty(name: &str) -> Option<String> {
    (!name.is_empty()).then(|| name.to_string())
}

fn is_headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

/// Service labels carried over, plus upstream's headless marker.
fn derived_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut labels = svc.labels().clone();
    if is_headless(svc) {
        labels.insert("service.kubernetes.io/headless".into(), String::new());
    }
    labels
}

/// The `subsets` of the Service's Endpoints (empty when nothing backs it).
pub fn desired_subsets(svc: &Service, pods: &[Arc<Pod>]) -> Vec<EndpointSubset> {
    type Addresses = (Vec<EndpointAddress>, Vec<EndpointAddress>);
    let mut groups: BTreeMap<PortMapping, Addresses> = BTreeMap::new();
    let publish = publishes_not_ready(svc);
    for m in members(svc, pods) {
        // Upstream: a pod that serves none of the ports is skipped; terminating pods leave
        // the Endpoints unless the Service publishes not-ready addresses.
        if m.ports.is_empty() || (m.terminating && !publish) {
            continue;
        }
        let addr = EndpointAddress {
            ip: m.ip.clone(),
            node_name: node_name(m.pod),
            target_ref: Some(target_ref(m.pod)),
            hostname: hostname_for(svc, m.pod),
        };
        let (ready, not_ready) = groups.entry(m.ports.clone()).or_default();
        if m.ready {
            ready.push(addr);
        } else {
            not_ready.push(addr);
        }
    }
    groups
        .into_iter()
        .map(|(ports, (ready, not_ready))| EndpointSubset {
            addresses: (!ready.is_empty()).then_some(ready),
            not_ready_addresses: (!not_ready.is_empty()).then_some(not_ready),
            ports: Some(
                ports
                    .iter()
                    .map(|(name, port, proto)| EndpointPort {
                        name: non_empty(name),
                        port: *port,
                        protocol: Some(proto.clone()),
                        app_protocol: None,
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// The (ports, endpoints) of each EndpointSlice the Service should have: one per distinct
/// port mapping, or one empty placeholder when no pod backs it.
pub fn desired_slices(svc: &Service, pods: &[Arc<Pod>]) -> Vec<(Vec<SlicePort>, Vec<Endpoint>)> {
    let mut groups: BTreeMap<PortMapping, Vec<Endpoint>> = BTreeMap::new();
    let has_ports = !service_ports(svc).is_empty();
    for m in members(svc, pods) {
        if m.ports.is_empty() && has_ports {
            continue;
        }
        let endpoint = Endpoint {
            addresses: vec![m.ip.clone()],
            conditions: Some(EndpointConditions {
                ready: Some(m.ready && !m.terminating),
                serving: Some(pod_ready(m.pod)),
                terminating: Some(m.terminating),
            }),
            node_name: node_name(m.pod),
            target_ref: Some(target_ref(m.pod)),
            hostname: hostname_for(svc, m.pod),
            ..Default::default()
        };
        groups.entry(m.ports).or_default().push(endpoint);
    }
    if groups.is_empty() {
        return vec![(Vec::new(), Vec::new())];
    }
    groups
        .into_iter()
        .map(|(ports, eps)| {
            let ports = ports
                .into_iter()
                .map(|(name, port, proto)| SlicePort {
                    name: non_empty(&name),
                    port: Some(port),
                    protocol: Some(proto),
                    app_protocol: None,
                })
                .collect();
            (ports, eps)
        })
        .collect()
}

fn owner_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.name_any(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

async fn sync_endpoints(
    api: &Api<Endpoints>,
    svc: &Service,
    current: Option<Endpoints>,
    pods: &[Arc<Pod>],
) -> Result<(), kube::Error> {
    let subsets = desired_subsets(svc, pods);
    let mut labels = derived_labels(svc);
    labels.insert(
        ENDPOINTS_MANAGED_BY_LABEL.into(),
        ENDPOINTS_MANAGED_BY.into(),
    );
    let mut want = Endpoints {
        metadata: ObjectMeta {
            name: Some(svc.name_any()),
            namespace: svc.namespace(),
            labels: Some(labels),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    };
    let pp = PostParams::default();
    match current {
        None => api.create(&pp, &want).await.map(|_| ()),
        Some(cur) => {
            let same = cur.subsets == want.subsets && cur.labels() == want.labels();
            if same {
                return Ok(());
            }
            want.metadata.resource_version = cur.metadata.resource_version;
            api.replace(&svc.name_any(), &pp, &want).await.map(|_| ())
        }
    }
}

async fn sync_slices(
    api: &Api<EndpointSlice>,
    svc: &Service,
    current: Vec<EndpointSlice>,
    pods: &[Arc<Pod>],
) -> Result<(), kube::Error> {
    let name = svc.name_any();
    let mut labels = derived_labels(svc);
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let pp = PostParams::default();
    let mut unused = current;
    for (ports, endpoints) in desired_slices(svc, pods) {
        // Reuse the slice that already carries these ports, else any spare one.
        let pos = unused
            .iter()
            .position(|s| s.ports.as_deref().unwrap_or(&[]) == ports.as_slice())
            .or(if unused.is_empty() { None } else { Some(0) });
        let mut want = EndpointSlice {
            metadata: ObjectMeta {
                namespace: svc.namespace(),
                labels: Some(labels.clone()),
                owner_references: Some(vec![owner_ref(svc)]),
                ..Default::default()
            },
            address_type: "IPv4".into(),
            endpoints,
            ports: Some(ports),
        };
        match pos.map(|i| unused.remove(i)) {
            None => {
                want.metadata.generate_name = Some(format!("{name}-"));
                api.create(&pp, &want).await?;
            }
            Some(cur) => {
                let same = cur.endpoints == want.endpoints
                    && cur.ports.as_deref().unwrap_or(&[]) == want.ports.as_deref().unwrap_or(&[])
                    && cur.metadata.labels == want.metadata.labels;
                if same {
                    continue;
                }
                let slice_name = cur.name_any();
                want.metadata.name = Some(slice_name.clone());
                want.metadata.resource_version = cur.metadata.resource_version;
                api.replace(&slice_name, &pp, &want).await?;
            }
        }
    }
    for extra in unused {
        match api
            .delete(&extra.name_any(), &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn pod(name: &str, ip: &str, ready: bool, labels: Value) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": "ns", "uid": format!("u-{name}"), "labels": labels},
                       "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
                       "status": {"phase": "Running", "podIP": ip,
                                  "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}}),
            )
            .expect("pod"),
        )
    }

    fn svc(target: Value) -> Service {
        serde_json::from_value(
            json!({"metadata": {"name": "web", "namespace": "ns", "uid": "s1"},
                   "spec": {"selector": {"app": "web"}, "clusterIP": "10.96.0.20",
                            "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target}]}}),
        )
        .expect("service")
    }

    fn json_of<T: serde::Serialize>(v: &T) -> Value {
        serde_json::to_value(v).expect("json")
    }

    #[test]
    fn ready_pods_are_addresses_and_others_not_ready() {
        let pods = vec![
            pod("b", "10.244.0.11", true, json!({"app": "web"})),
            pod("a", "10.244.0.9", false, json!({"app": "web"})),
            pod("c", "10.244.0.12", true, json!({"app": "db"})),
            pod("d", "", true, json!({"app": "web"})),
        ];
        let subsets = json_of(&desired_subsets(&svc(json!(8080)), &pods));
        assert_eq!(subsets.as_array().map(Vec::len), Some(1));
        assert_eq!(subsets[0]["addresses"][0]["ip"], "10.244.0.11");
        assert_eq!(subsets[0]["addresses"][0]["targetRef"]["name"], "b");
        assert_eq!(subsets[0]["addresses"][0]["nodeName"], "n1");
        assert_eq!(subsets[0]["notReadyAddresses"][0]["ip"], "10.244.0.9");
        assert_eq!(
            subsets[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
    }

    #[test]
    fn named_target_port_resolves_per_pod() {
        let mut other = (*pod("x", "10.244.0.5", true, json!({"app": "web"}))).clone();
        if let Some(spec) = other.spec.as_mut() {
            spec.containers[0].ports = Some(vec![serde_json::from_value(
                json!({"name": "http", "containerPort": 9090}),
            )
            .expect("port")]);
        }
        let mut none = (*pod("y", "10.244.0.6", true, json!({"app": "web"}))).clone();
        if let Some(spec) = none.spec.as_mut() {
            spec.containers[0].ports = Some(vec![]);
        }
        let pods = vec![
            pod("a", "10.244.0.4", true, json!({"app": "web"})),
            Arc::new(other),
            Arc::new(none),
        ];
        let subsets = desired_subsets(&svc(json!("http")), &pods);
        let ports: Vec<i32> = subsets
            .iter()
            .filter_map(|s| s.ports.as_ref().map(|p| p[0].port))
            .collect();
        assert_eq!(ports, vec![8080, 9090]);
        let slices = desired_slices(&svc(json!("http")), &pods);
        assert_eq!(slices.len(), 2);
    }

    #[test]
    fn slices_carry_readiness_and_a_placeholder_when_empty() {
        let pods = vec![
            pod("a", "10.244.0.9", false, json!({"app": "web"})),
            pod("b", "10.244.0.10", true, json!({"app": "web"})),
        ];
        let slices = desired_slices(&svc(json!(8080)), &pods);
        assert_eq!(slices.len(), 1);
        let (ports, eps) = &slices[0];
        assert_eq!(ports[0].port, Some(8080));
        let eps = json_of(eps);
        assert_eq!(eps[0]["addresses"], json!(["10.244.0.9"]));
        assert_eq!(eps[0]["conditions"]["ready"], false);
        assert_eq!(eps[1]["conditions"]["ready"], true);
        assert_eq!(desired_slices(&svc(json!(80)), &[]), vec![(vec![], vec![])]);
    }

    #[test]
    fn terminating_and_finished_pods_leave() {
        let mut t = (*pod("t", "10.244.0.7", true, json!({"app": "web"}))).clone();
        t.metadata.deletion_timestamp =
            Some(serde_json::from_value(json!("2026-01-01T00:00:00Z")).expect("time"));
        let mut f = (*pod("f", "10.244.0.8", false, json!({"app": "web"}))).clone();
        if let Some(status) = f.status.as_mut() {
            status.phase = Some("Succeeded".into());
        }
        let pods = vec![Arc::new(t), Arc::new(f)];
        assert!(desired_subsets(&svc(json!(80)), &pods).is_empty());
        let slices = desired_slices(&svc(json!(80)), &pods);
        assert_eq!(slices[0].1.len(), 1);
        let cond = slices[0].1[0].conditions.clone().unwrap_or_default();
        assert_eq!(cond.terminating, Some(true));
        assert_eq!(cond.ready, Some(false));
    }

    #[test]
    fn pods_of_the_subdomain_are_published_by_hostname() {
        let mut named = (*pod("web-0", "10.244.0.7", true, json!({"app": "web"}))).clone();
        if let Some(spec) = named.spec.as_mut() {
            spec.hostname = Some("web-0".into());
            spec.subdomain = Some("web".into());
        }
        let mut elsewhere = (*pod("db-0", "10.244.0.8", true, json!({"app": "web"}))).clone();
        if let Some(spec) = elsewhere.spec.as_mut() {
            spec.hostname = Some("db-0".into());
            spec.subdomain = Some("db".into());
        }
        let pods = vec![Arc::new(named), Arc::new(elsewhere)];
        let subsets = json_of(&desired_subsets(&svc(json!(8080)), &pods));
        assert_eq!(subsets[0]["addresses"][0]["hostname"], "web-0");
        assert!(subsets[0]["addresses"][1].get("hostname").is_none());
        let slices = desired_slices(&svc(json!(8080)), &pods);
        let eps = json_of(&slices[0].1);
        assert_eq!(eps[0]["hostname"], "web-0");
        assert!(eps[1].get("hostname").is_none());
    }

    #[test]
    fn selectorless_services_match_nothing() {
        let mut s = svc(json!(80));
        if let Some(spec) = s.spec.as_mut() {
            spec.selector = Some(BTreeMap::new());
        }
        assert!(!has_selector(&s));
        assert!(!selector_matches(
            &s,
            &pod("a", "1.2.3.4", true, json!({"app": "web"}))
        ));
    }
}
