//! Pod defaults: `SetDefaults_Pod` and friends, plus what the admission plugins of a stock
//! cluster add (ServiceAccount, DefaultTolerationSeconds), because users see those
//! fields on every pod of a real cluster.

use serde_json::{json, Map, Value};

use apimachinery::json::{child, each_item, set, set_str};

pub(super) fn default_pod(pod: &mut Map<String, Value>) {
    // Status (phase Pending, qosClass) belongs to the create strategy, not to defaulting:
    // defaulting also runs on status updates, where it must not invent a phase.
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        default_pod_spec(spec);
        pod_only_defaults(spec);
    }
}

/// `SetDefaults_PodSpec` and the defaults of the types a spec holds (containers, probes,
/// volumes): what pods and pod templates share.
pub fn default_pod_spec(spec: &mut Map<String, Value>) {
    set_str(spec, "dnsPolicy", "ClusterFirst");
    set_str(spec, "restartPolicy", "Always");
    set(spec, "terminationGracePeriodSeconds", json!(30));
    set(spec, "securityContext", json!({}));
    set_str(spec, "schedulerName", "default-scheduler");
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        each_item(spec, key, default_container);
    }
    each_item(spec, "volumes", default_volume);
}

/// The defaults only a Pod gets, never a template: `SetDefaults_Pod`'s (service links,
/// requests from limits, host ports of the host network) and the admission plugins' of a
/// stock cluster.
fn pod_only_defaults(spec: &mut Map<String, Value>) {
    set(spec, "enableServiceLinks", json!(true));
    // ServiceAccount admission: pods run as the namespace's `default` account (or the one
    // the deprecated `serviceAccount` names, as v1's conversion reads it); `serviceAccount`
    // mirrors `serviceAccountName` as a real cluster shows.
    if let Some(legacy) = spec
        .get("serviceAccount")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
    {
        set_str(spec, "serviceAccountName", &legacy);
    }
    set_str(spec, "serviceAccountName", "default");
    if let Some(sa) = spec.get("serviceAccountName").cloned() {
        set(spec, "serviceAccount", sa);
    }
    // `spec.priority` and `spec.preemptionPolicy` come from the Priority admission plugin,
    // which must see what the client sent (a value it gave that disagrees is refused).
    default_tolerations(spec);
    let host_network = spec
        .get("hostNetwork")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    for key in ["containers", "initContainers", "ephemeralContainers"] {
        each_item(spec, key, |c| pod_container_defaults(c, host_network));
    }
}

/// `SetDefaults_Pod` per container: requests default to limits, and with the host network
/// the container port is the host port.
fn pod_container_defaults(c: &mut Map<String, Value>, host_network: bool) {
    if host_network {
        each_item(c, "ports", |p| {
            if let Some(port) = p.get("containerPort").cloned() {
                if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                    p.insert("hostPort".into(), port);
                }
            }
        });
    }
    if let Some(res) = child(c, "resources") {
        // Requests default to limits for every resource that has only a limit.
        if let Some(limits) = res.get("limits").and_then(Value::as_object).cloned() {
            if let Some(req) = child(res, "requests") {
                for (k, v) in limits {
                    req.entry(k).or_insert(v);
                }
            }
        }
    }
}

/// DefaultTolerationSeconds admission: tolerate not-ready and unreachable nodes for 300 s
/// unless the pod already tolerates those taints.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let existing: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |key: &str| {
        existing.iter().any(|t| {
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            let tkey = t.get("key").and_then(Value::as_str).unwrap_or("");
            let op = t.get("operator").and_then(Value::as_str).unwrap_or("Equal");
            (effect.is_empty() || effect == "NoExecute")
                && (tkey == key || (tkey.is_empty() && op == "Exists"))
        })
    };
    let mut list = existing.clone();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        if !tolerates(key) {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if list.len() != existing.len() {
        spec.insert("tolerations".into(), Value::Array(list));
    }
}

/// `IfNotPresent` for a tagged (non-`latest`) or digest reference, else `Always`.
pub fn default_image_pull_policy(image: &str) -> &'static str {
    if image.contains('@') {
        return "IfNotPresent";
    }
    // The tag follows the last ':' after the last '/' (a ':' before it is a registry port).
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.rsplit_once(':') {
        Some((_, tag)) if tag != "latest" => "IfNotPresent",
        _ => "Always",
    }
}

fn default_container(c: &mut Map<String, Value>) {
    // Upstream defaults this even without an image: an empty reference has no tag.
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    let policy = default_image_pull_policy(image);
    set_str(c, "imagePullPolicy", policy);
    set_str(c, "terminationMessagePath", "/dev/termination-log");
    set_str(c, "terminationMessagePolicy", "File");
    each_item(c, "ports", |p| set_str(p, "protocol", "TCP"));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            default_probe(p);
        }
    }
    if let Some(lc) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get_mut(hook).and_then(Value::as_object_mut) {
                default_handler(h);
            }
        }
    }
    each_item(c, "env", |e| {
        if let Some(from) = e.get_mut("valueFrom").and_then(Value::as_object_mut) {
            if let Some(f) = from.get_mut("fieldRef").and_then(Value::as_object_mut) {
                set_str(f, "apiVersion", "v1");
            }
            if let Some(r) = from
                .get_mut("resourceFieldRef")
                .and_then(Value::as_object_mut)
            {
                set(r, "divisor", json!("0"));
            }
        }
    });
}

fn default_probe(p: &mut Map<String, Value>) {
    set(p, "timeoutSeconds", json!(1));
    set(p, "periodSeconds", json!(10));
    set(p, "successThreshold", json!(1));
    set(p, "failureThreshold", json!(3));
    default_handler(p);
}

fn default_handler(h: &mut Map<String, Value>) {
    if let Some(get) = h.get_mut("httpGet").and_then(Value::as_object_mut) {
        set_str(get, "path", "/");
        set_str(get, "scheme", "HTTP");
    }
    if let Some(grpc) = h.get_mut("grpc").and_then(Value::as_object_mut) {
        set(grpc, "service", json!(""));
    }
}

/// Volume sources kube-apiserver knows; a volume with none of them becomes an emptyDir.
const VOLUME_SOURCES: &[&str] = &[
    "hostPath",
    "emptyDir",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// Names of the volume source fields set in `v`.
pub fn volume_sources(v: &Map<String, Value>) -> Vec<&'static str> {
    VOLUME_SOURCES
        .iter()
        .copied()
        .filter(|k| v.get(*k).is_some_and(|x| !x.is_null()))
        .collect()
}

fn default_volume(v: &mut Map<String, Value>) {
    if volume_sources(v).is_empty() {
        v.insert("emptyDir".into(), json!({}));
    }
    for key in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(src) = v.get_mut(key).and_then(Value::as_object_mut) {
            set(src, "defaultMode", json!(420));
            if key == "downwardAPI" {
                each_item(src, "items", default_downward_item);
            }
            if key == "projected" {
                each_item(src, "sources", |source| {
                    if let Some(d) = source.get_mut("downwardAPI").and_then(Value::as_object_mut) {
                        each_item(d, "items", default_downward_item);
                    }
                });
            }
        }
    }
    if let Some(hp) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        set(hp, "type", json!(""));
    }
    if let Some(img) = v.get_mut("image").and_then(Value::as_object_mut) {
        if let Some(reference) = img.get("reference").and_then(Value::as_str) {
            let policy = default_image_pull_policy(reference);
            set_str(img, "pullPolicy", policy);
        }
    }
}

/// A downward API file's selectors get the defaults they get in `env`: the field's
/// `apiVersion`, and the zero `divisor` kube-apiserver stores for an unset one (its
/// `resource.Quantity` zero value, which the kubelet reads as 1).
fn default_downward_item(item: &mut Map<String, Value>) {
    if let Some(f) = item.get_mut("fieldRef").and_then(Value::as_object_mut) {
        set_str(f, "apiVersion", "v1");
    }
    if let Some(r) = item
        .get_mut("resourceFieldRef")
        .and_then(Value::as_object_mut)
    {
        set(r, "divisor", json!("0"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::RESOURCE;
    use super::*;

    fn pod() -> Value {
        json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web"},"spec":{"containers":[
            {"name":"a","image":"nginx","ports":[{"containerPort":80}],
             "livenessProbe":{"httpGet":{"port":80}}},
            {"name":"b","image":"nginx:1.27","resources":{"limits":{"cpu":"1","memory":"1Gi"}}}]}})
    }

    #[test]
    fn deprecated_service_account_names_the_account() {
        let mut p = pod();
        p["spec"]["serviceAccount"] = json!("builder");
        RESOURCE.apply_defaults(&mut p);
        assert_eq!(p["spec"]["serviceAccountName"], "builder");
        assert_eq!(p["spec"]["serviceAccount"], "builder");
        let mut both = pod();
        both["spec"]["serviceAccountName"] = json!("web");
        RESOURCE.apply_defaults(&mut both);
        assert_eq!(both["spec"]["serviceAccount"], "web");
    }

    #[test]
    fn pod_spec_defaults() {
        let mut p = pod();
        RESOURCE.apply_defaults(&mut p);
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["terminationGracePeriodSeconds"], 30);
        assert_eq!(s["schedulerName"], "default-scheduler");
        assert_eq!(s["securityContext"], json!({}));
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["serviceAccountName"], "default");
        assert!(s.get("priority").is_none(), "set by Priority admission");
        assert_eq!(s["tolerations"].as_array().map(Vec::len), Some(2));
        assert_eq!(s["tolerations"][0]["tolerationSeconds"], 300);
        let a = &s["containers"][0];
        assert_eq!(a["imagePullPolicy"], "Always");
        assert_eq!(a["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(a["terminationMessagePolicy"], "File");
        assert_eq!(a["ports"][0]["protocol"], "TCP");
        let probe = &a["livenessProbe"];
        assert_eq!(
            (
                &probe["timeoutSeconds"],
                &probe["periodSeconds"],
                &probe["successThreshold"],
                &probe["failureThreshold"]
            ),
            (&json!(1), &json!(10), &json!(1), &json!(3))
        );
        assert_eq!(probe["httpGet"]["path"], "/");
        assert_eq!(probe["httpGet"]["scheme"], "HTTP");
        let b = &s["containers"][1];
        assert_eq!(b["imagePullPolicy"], "IfNotPresent");
        assert_eq!(b["resources"]["requests"]["cpu"], "1");
        assert!(p.get("status").is_none());
        assert_eq!(apimachinery::qos::of_spec(&p["spec"]).as_str(), "Burstable");
    }

    #[test]
    fn defaults_keep_user_values_and_are_idempotent() {
        let mut p = pod();
        p["spec"]["restartPolicy"] = json!("Never");
        p["spec"]["tolerations"] = json!([{"operator":"Exists"}]);
        RESOURCE.apply_defaults(&mut p);
        let once = p.clone();
        RESOURCE.apply_defaults(&mut p);
        assert_eq!(once, p);
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        assert_eq!(p["spec"]["tolerations"], json!([{"operator":"Exists"}]));
    }

    #[test]
    fn templates_get_the_spec_defaults_only() {
        let mut p = pod();
        if let Some(spec) = p["spec"].as_object_mut() {
            default_pod_spec(spec);
        }
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["containers"][0]["imagePullPolicy"], "Always");
        assert_eq!(s["containers"][0]["ports"][0]["protocol"], "TCP");
        for pod_only in [
            "serviceAccountName",
            "priority",
            "tolerations",
            "enableServiceLinks",
        ] {
            assert!(s.get(pod_only).is_none(), "{pod_only}");
        }
        assert!(s["containers"][1]["resources"].get("requests").is_none());
    }

    #[test]
    fn image_pull_policy() {
        assert_eq!(default_image_pull_policy("nginx"), "Always");
        assert_eq!(default_image_pull_policy("nginx:latest"), "Always");
        assert_eq!(default_image_pull_policy("localhost:5000/nginx"), "Always");
        assert_eq!(
            default_image_pull_policy("localhost:5000/nginx:1"),
            "IfNotPresent"
        );
        assert_eq!(
            default_image_pull_policy("nginx@sha256:abc"),
            "IfNotPresent"
        );
    }

    #[test]
    fn volumes_and_non_objects() {
        let mut p = json!({"spec":{"containers":[],"volumes":[{"name":"x"},{"name":"s","secret":{"secretName":"s"}}]}});
        RESOURCE.apply_defaults(&mut p);
        assert_eq!(p["spec"]["volumes"][0]["emptyDir"], json!({}));
        assert_eq!(p["spec"]["volumes"][1]["secret"]["defaultMode"], 420);
        let mut junk = json!("string");
        RESOURCE.apply_defaults(&mut junk);
        assert_eq!(junk, json!("string"));
        let mut bad = json!({"spec": 5});
        RESOURCE.apply_defaults(&mut bad);
        assert_eq!(bad["spec"], 5);
    }
}
