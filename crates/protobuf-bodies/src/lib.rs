//! Decoding of `application/vnd.kubernetes.protobuf` request bodies, which kubectl ≥1.32
//! sends for typed creates (`kubectl create namespace|configmap|secret|serviceaccount|service`,
//! and `kubectl create deployment|job|cronjob|pdb`, whose specs [`workloads`] decodes, the
//! Eviction `kubectl drain` posts, the TokenRequest of `kubectl create token`, and the RBAC
//! objects and access reviews of `kubectl create role…` and `kubectl auth` in
//! [`authorization`], and the CertificateSigningRequests `kubectl certificate approve|deny`
//! puts in [`certificates`]).
//! A small wire-format reader for the `k8s\0` + `runtime.Unknown` envelope and the few kinds
//! those commands create, turned into the JSON the rest of the server works on. Field numbers
//! are those of k8s.io/api's generated.proto.

mod authorization;
mod certificates;
mod wire;
mod workloads;

use serde_json::{json, Map, Value};

pub use wire::ProtobufError;
use wire::{
    insert_map, int_or_string, map_entry, object_meta, push, set_int, set_string, string, Field,
    Reader,
};

/// ServicePort: name 1, protocol 2, port 3, targetPort 4, nodePort 5, appProtocol 6.
fn service_port(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut p = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => set_string(&mut p, "name", b),
            (2, Field::Bytes(b)) => set_string(&mut p, "protocol", b),
            (3, Field::Varint(v)) => set_int(&mut p, "port", v),
            (4, Field::Bytes(b)) => {
                if let Some(v) = int_or_string(b, at)? {
                    p.insert("targetPort".into(), v);
                }
            }
            (5, Field::Varint(v)) => set_int(&mut p, "nodePort", v),
            (6, Field::Bytes(b)) => set_string(&mut p, "appProtocol", b),
            _ => {}
        }
    }
    Ok(Value::Object(p))
}

/// ServiceSpec: the fields `kubectl create service clusterip|nodeport|loadbalancer|
/// externalname` and `kubectl expose` set.
fn service_spec(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut s = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => push(&mut s, "ports", service_port(b, at)?),
            (2, Field::Bytes(b)) => insert_map(&mut s, "selector", map_entry(b, at, false)?),
            (3, Field::Bytes(b)) => set_string(&mut s, "clusterIP", b),
            (4, Field::Bytes(b)) => set_string(&mut s, "type", b),
            (5, Field::Bytes(b)) => push(&mut s, "externalIPs", string(b)),
            (7, Field::Bytes(b)) => set_string(&mut s, "sessionAffinity", b),
            (10, Field::Bytes(b)) => set_string(&mut s, "externalName", b),
            (11, Field::Bytes(b)) => set_string(&mut s, "externalTrafficPolicy", b),
            (13, Field::Varint(v)) if v != 0 => {
                s.insert("publishNotReadyAddresses".into(), json!(true));
            }
            (17, Field::Bytes(b)) => set_string(&mut s, "ipFamilyPolicy", b),
            (18, Field::Bytes(b)) => push(&mut s, "clusterIPs", string(b)),
            (19, Field::Bytes(b)) => push(&mut s, "ipFamilies", string(b)),
            (22, Field::Bytes(b)) => set_string(&mut s, "internalTrafficPolicy", b),
            _ => {}
        }
    }
    Ok(Value::Object(s))
}

/// TokenRequestSpec: audiences 1, boundObjectRef 3 (kind 1, apiVersion 2, name 3, uid 4),
/// expirationSeconds 4.
fn token_request_spec(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut s = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(b)) => push(&mut s, "audiences", string(b)),
            (3, Field::Bytes(b)) => {
                let mut o = Map::new();
                let mut rr = Reader::new(b, at);
                while let Some((n, f, _)) = rr.next()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => set_string(&mut o, "kind", b),
                        (2, Field::Bytes(b)) => set_string(&mut o, "apiVersion", b),
                        (3, Field::Bytes(b)) => set_string(&mut o, "name", b),
                        (4, Field::Bytes(b)) => set_string(&mut o, "uid", b),
                        _ => {}
                    }
                }
                s.insert("boundObjectRef".into(), Value::Object(o));
            }
            (4, Field::Varint(v)) => {
                s.insert(
                    "expirationSeconds".into(),
                    json!(i64::from_ne_bytes(v.to_ne_bytes())),
                );
            }
            _ => {}
        }
    }
    Ok(Value::Object(s))
}

/// Decodes a whole protobuf request body into a JSON object.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let raw = body.strip_prefix(b"k8s\0").ok_or(ProtobufError::Magic)?;
    let mut r = Reader::new(raw, 4);
    let (mut api_version, mut kind) = (String::new(), String::new());
    let mut inner: Option<(&[u8], usize)> = None;
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                let mut t = Reader::new(tm, at);
                while let Some((n, f, _)) = t.next()? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => api_version = String::from_utf8_lossy(b).into(),
                        (2, Field::Bytes(b)) => kind = String::from_utf8_lossy(b).into(),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(b)) => inner = Some((b, at)),
            _ => {}
        }
    }
    let (msg, base) = inner.unwrap_or((&[], 0));
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), Value::String(api_version));
    obj.insert("kind".into(), Value::String(kind.clone()));
    if let Some(fields) =
        authorization::object(&kind, msg, base).or_else(|| certificates::object(&kind, msg, base))
    {
        if let Value::Object(fields) = fields? {
            obj.extend(fields);
        }
        return Ok(Value::Object(obj));
    }
    let mut r = Reader::new(msg, base);
    while let Some((n, f, at)) = r.next()? {
        match (kind.as_str(), n, f) {
            (_, 1, Field::Bytes(b)) => {
                obj.insert("metadata".into(), object_meta(b, at)?);
            }
            ("Namespace", 2, Field::Bytes(b)) => {
                let mut spec = Map::new();
                let mut s = Reader::new(b, at);
                while let Some((n, f, _)) = s.next()? {
                    if let (1, Field::Bytes(b)) = (n, f) {
                        push(&mut spec, "finalizers", string(b));
                    }
                }
                obj.insert("spec".into(), Value::Object(spec));
            }
            ("Namespace", _, _) => {}
            ("ConfigMap", 2, Field::Bytes(b)) => {
                insert_map(&mut obj, "data", map_entry(b, at, false)?)
            }
            ("ConfigMap", 3, Field::Bytes(b)) => {
                insert_map(&mut obj, "binaryData", map_entry(b, at, true)?)
            }
            ("ConfigMap", 4, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("ConfigMap", _, _) => {}
            ("Secret", 2, Field::Bytes(b)) => insert_map(&mut obj, "data", map_entry(b, at, true)?),
            ("Secret", 3, Field::Bytes(b)) => {
                obj.insert("type".into(), string(b));
            }
            ("Secret", 4, Field::Bytes(b)) => {
                insert_map(&mut obj, "stringData", map_entry(b, at, false)?)
            }
            ("Secret", 5, Field::Varint(v)) => {
                obj.insert("immutable".into(), json!(v != 0));
            }
            ("Secret", _, _) => {}
            ("ServiceAccount", 4, Field::Varint(v)) => {
                obj.insert("automountServiceAccountToken".into(), json!(v != 0));
            }
            ("ServiceAccount", _, _) => {}
            ("Service", 2, Field::Bytes(b)) => {
                obj.insert("spec".into(), service_spec(b, at)?);
            }
            ("Service", _, _) => {}
            ("Eviction", 2, Field::Bytes(b)) => {
                obj.insert("deleteOptions".into(), workloads::delete_options(b, at)?);
            }
            ("Eviction", _, _) => {}
            ("TokenRequest", 2, Field::Bytes(b)) => {
                obj.insert("spec".into(), token_request_spec(b, at)?);
            }
            ("TokenRequest", _, _) => {}
            (k, 2, Field::Bytes(b)) if workloads::handles(k) => {
                if let Some(spec) = workloads::spec(k, b, at) {
                    obj.insert("spec".into(), spec?);
                }
            }
            // A status sent on create is reset by the strategy anyway.
            (k, _, _) if workloads::handles(k) => {}
            _ => return Err(ProtobufError::UnsupportedKind { kind }),
        }
    }
    if !matches!(
        kind.as_str(),
        "Namespace"
            | "ConfigMap"
            | "Secret"
            | "ServiceAccount"
            | "Service"
            | "Eviction"
            | "TokenRequest"
    ) && !workloads::handles(&kind)
    {
        return Err(ProtobufError::UnsupportedKind { kind });
    }
    Ok(Value::Object(obj))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, u8::try_from(b.len()).expect("short")];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_deployment_from_kubectl_create() {
        let entry = [ld(1, b"app"), ld(2, b"web")].concat();
        let labels = ld(11, &entry);
        let container = [
            ld(1, b"busybox"),
            ld(2, b"busybox"),
            ld(3, b"sleep"),
            ld(3, b"3600"),
            ld(8, b""),
        ]
        .concat();
        let pod_spec = [ld(2, &container), ld(3, b"")].concat();
        let template = [ld(1, &labels), ld(2, &pod_spec)].concat();
        let spec = [
            vec![0x08, 0x02],
            ld(2, &ld(1, &entry)),
            ld(3, &template),
            ld(4, b""),
            vec![0x28, 0x00, 0x38, 0x00],
        ]
        .concat();
        let msg = [
            ld(1, &[ld(1, b"web"), labels.clone()].concat()),
            ld(2, &spec),
        ]
        .concat();
        let body = [
            b"k8s\0".to_vec(),
            ld(1, &[ld(1, b"apps/v1"), ld(2, b"Deployment")].concat()),
            ld(2, &msg),
        ]
        .concat();
        assert_eq!(
            decode(&body).expect("decode"),
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "web", "labels": {"app": "web"}},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                            "strategy": {},
                            "template": {"metadata": {"labels": {"app": "web"}},
                                         "spec": {"containers": [{"name": "busybox", "image": "busybox",
                                                                  "command": ["sleep", "3600"], "resources": {}}]}}}})
        );
    }

    #[test]
    fn decodes_configmap() {
        let mut entry = ld(1, b"a");
        entry.extend(ld(2, b"b"));
        let mut meta = ld(1, b"cfg");
        meta.extend(ld(3, b"default"));
        let mut label = ld(1, b"app");
        label.extend(ld(2, b"x"));
        meta.extend(ld(11, &label));
        let mut cm = ld(1, &meta);
        cm.extend(ld(2, &entry));
        let mut tm = ld(1, b"v1");
        tm.extend(ld(2, b"ConfigMap"));
        let mut body = b"k8s\0".to_vec();
        body.extend(ld(1, &tm));
        body.extend(ld(2, &cm));
        let v = decode(&body).expect("decode");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "cfg", "namespace": "default", "labels": {"app": "x"}},
                   "data": {"a": "b"}})
        );
    }

    /// The body kubectl v1.33 sends for `kubectl create service nodeport mydb2 --tcp=5432:db`.
    #[test]
    fn decodes_service_from_kubectl_create() {
        let body: &[u8] = b"k8s\0\x0a\x0d\x0a\x02v1\x12\x07Service\x12\x70\x0a\x23\x0a\x05mydb2\
            \x12\x00\x1a\x00\x22\x00\x2a\x00\x32\x00\x38\x00\x42\x00\x5a\x0c\x0a\x03app\x12\x05mydb2\
            \x12\x45\x0a\x1d\x0a\x075432-db\x12\x03TCP\x18\xb8\x2a\x22\x08\x08\x01\x10\x00\x1a\x02db\
            \x28\x00\x12\x0c\x0a\x03app\x12\x05mydb2\x1a\x00\x22\x08NodePort\x3a\x00\x42\x00\x52\x00\
            \x5a\x00\x60\x00\x68\x00\x1a\x02\x0a\x00\x1a\x00\x22\x00";
        let v = decode(body).expect("decode");
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Service",
                   "metadata": {"name": "mydb2", "generateName": "", "namespace": "",
                                "labels": {"app": "mydb2"}},
                   "spec": {"ports": [{"name": "5432-db", "protocol": "TCP", "port": 5432,
                                       "targetPort": "db"}],
                            "selector": {"app": "mydb2"}, "type": "NodePort"}})
        );
        // An int targetPort, and the zero value left for defaulting.
        assert_eq!(
            int_or_string(b"\x08\x00\x10\xb8\x2a\x1a\x00", 0).expect("int"),
            Some(json!(5432))
        );
        assert_eq!(
            int_or_string(b"\x08\x00\x10\x00\x1a\x00", 0).expect("zero"),
            None
        );
    }

    /// The body kubectl v1.32 sends for `kubectl create job hello --image=busybox -- sh -c
    /// 'echo hi'`.
    const JOB: &[u8] = b"k8s\x00\x0a\x0f\x0a\x08batch/v1\x12\x03Job\x12\x91\x01\x0a\x15\x0a\x05hello\
        \x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12n2l\x0a\x10\x0a\x00\x12\x00\x1a\x00\x22\x00*\
        \x002\x008\x00B\x00\x12X\x125\x0a\x05hello\x12\x07busybox\x1a\x02sh\x1a\x02-c\x1a\x07echo hi*\
        \x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\x1a\x05Never2\x00B\x00J\
        \x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\x01\x00\x1a\x08 \x00(\x000\
        \x00:\x00\x1a\x00\x22\x00";

    /// `kubectl create cronjob tick --image=busybox --schedule='* * * * *' -- sh -c 'echo tick'`.
    const CRON_JOB: &[u8] = b"k8s\x00\x0a\x13\x0a\x08batch/v1\x12\x07CronJob\x12\xb6\x01\x0a\x14\
        \x0a\x04tick\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12\x9b\x01\x0a\x09* * * * *\x1a\x00*\
        \x8b\x01\x0a\x14\x0a\x04tick\x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12s2q\x0a\x10\x0a\x00\
        \x12\x00\x1a\x00\x22\x00*\x002\x008\x00B\x00\x12]\x126\x0a\x04tick\x12\x07busybox\x1a\x02sh\
        \x1a\x02-c\x1a\x09echo tick*\x00B\x00j\x00r\x00\x80\x01\x00\x88\x01\x00\x90\x01\x00\xa2\x01\x00\
        \x1a\x09OnFailure2\x00B\x00J\x00R\x00X\x00`\x00h\x00\x82\x01\x00\x8a\x01\x00\x9a\x01\x00\xc2\
        \x01\x00\x1a\x00\x1a\x00\x22\x00";

    fn container(name: &str, cmd: &str) -> Value {
        json!({"name": name, "image": "busybox", "command": ["sh", "-c", cmd], "resources": {}})
    }

    #[test]
    fn decodes_kubectl_create_job_and_cronjob() {
        let job = decode(JOB).expect("job");
        assert_eq!(job["kind"], "Job");
        assert_eq!(job["metadata"]["name"], "hello");
        let template = &job["spec"]["template"];
        assert_eq!(
            template["spec"],
            json!({"containers": [container("hello", "echo hi")], "restartPolicy": "Never"})
        );
        assert!(template["metadata"].is_object());
        assert!(job.get("status").is_none());

        let cj = decode(CRON_JOB).expect("cronjob");
        assert_eq!(cj["spec"]["schedule"], "* * * * *");
        let pod = &cj["spec"]["jobTemplate"]["spec"]["template"]["spec"];
        assert_eq!(
            *pod,
            json!({"containers": [container("tick", "echo tick")], "restartPolicy": "OnFailure"})
        );
        assert_eq!(cj["spec"]["jobTemplate"]["metadata"]["name"], "tick");
    }

    fn envelope(api_version: &[u8], kind: &[u8], msg: &[u8]) -> Vec<u8> {
        [
            b"k8s\0".to_vec(),
            ld(1, &[ld(1, api_version), ld(2, kind)].concat()),
            ld(2, msg),
        ]
        .concat()
    }

    /// `kubectl create quota q --hard=pods=2,cpu=1 --scopes=NotTerminating`.
    #[test]
    fn decodes_resource_quota() {
        let quantity = |s: &[u8]| ld(1, s);
        let entry = |k: &[u8], v: &[u8]| ld(1, &[ld(1, k), ld(2, &quantity(v))].concat());
        let spec = [
            entry(b"pods", b"2"),
            entry(b"cpu", b"1"),
            ld(2, b"NotTerminating"),
        ]
        .concat();
        let msg = [ld(1, &ld(1, b"q")), ld(2, &spec), ld(3, b"")].concat();
        let quota = decode(&envelope(b"v1", b"ResourceQuota", &msg)).expect("quota");
        assert_eq!(
            quota["spec"],
            json!({"hard": {"pods": "2", "cpu": "1"}, "scopes": ["NotTerminating"]})
        );
    }

    /// `kubectl create pdb web --selector=app=web --min-available=0`: a zero budget is set.
    #[test]
    fn decodes_pdb_and_eviction() {
        let selector = ld(1, &[ld(1, b"app"), ld(2, b"web")].concat());
        let zero = [vec![0x08, 0x00], vec![0x10, 0x00], ld(3, b"")].concat();
        let spec = [ld(1, &zero), ld(2, &selector)].concat();
        let msg = [ld(1, &ld(1, b"web")), ld(2, &spec), ld(3, &[0x08, 0x00])].concat();
        let pdb = decode(&envelope(b"policy/v1", b"PodDisruptionBudget", &msg)).expect("pdb");
        assert_eq!(
            pdb["spec"],
            json!({"minAvailable": 0, "selector": {"matchLabels": {"app": "web"}}})
        );
        // drain's Eviction: a grace period of 0 and a dry run.
        let opts = [vec![0x08, 0x00], ld(5, b"All")].concat();
        let msg = [
            ld(1, &[ld(1, b"web-1"), ld(3, b"default")].concat()),
            ld(2, &opts),
        ]
        .concat();
        let ev = decode(&envelope(b"policy/v1", b"Eviction", &msg)).expect("eviction");
        assert_eq!(ev["metadata"]["name"], "web-1");
        assert_eq!(
            ev["deleteOptions"],
            json!({"gracePeriodSeconds": 0, "dryRun": ["All"]})
        );
    }

    #[test]
    fn decodes_token_request_from_kubectl_create_token() {
        let bound = [ld(1, b"Pod"), ld(2, b"v1"), ld(3, b"web"), ld(4, b"u-1")].concat();
        let mut spec = [ld(1, b"vault"), ld(3, &bound)].concat();
        spec.extend_from_slice(&[4 << 3, 0x90, 0x1c]); // expirationSeconds 3600
        let tm = [ld(1, b"authentication.k8s.io/v1"), ld(2, b"TokenRequest")].concat();
        let inner = [ld(1, &ld(1, b"default")), ld(2, &spec)].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &inner)].concat();
        assert_eq!(
            decode(&body).expect("decode"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                   "metadata": {"name": "default"},
                   "spec": {"audiences": ["vault"], "expirationSeconds": 3600,
                            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "u-1"}}})
        );
    }

    /// A varint as the wire writes it.
    fn varint(mut n: usize) -> Vec<u8> {
        let mut v = Vec::new();
        while n >= 0x80 {
            v.push(u8::try_from(n & 0x7f).expect("seven bits") | 0x80);
            n >>= 7;
        }
        v.push(u8::try_from(n).expect("seven bits"));
        v
    }

    /// `ld` for any field number and length.
    fn ld2(field: u8, b: &[u8]) -> Vec<u8> {
        let mut v = varint((usize::from(field) << 3) | 2);
        v.extend(varint(b.len()));
        v.extend_from_slice(b);
        v
    }

    /// The pod `kubectl debug node/NAME` creates: the host's namespaces, its root at /host
    /// and a projected token volume as a copied pod carries.
    #[test]
    fn decodes_node_debugger_pod() {
        let mount = [ld2(1, b"host-root"), ld2(3, b"/host")].concat();
        let container = [
            ld2(1, b"debugger"),
            ld2(2, b"busybox"),
            ld2(3, b"sh"),
            ld2(9, &mount),
            ld2(14, b"IfNotPresent"),
            ld2(20, b"FallbackToLogsOnError"),
        ]
        .concat();
        let host_root = [ld2(1, b"host-root"), ld2(2, &ld2(1, &ld2(1, b"/")))].concat();
        let token = [ld2(3, b"token"), vec![2 << 3, 0x8f, 0x1c]].concat(); // 3599 s
        let projected = ld2(26, &ld2(1, &ld2(4, &token)));
        let api_access = [ld2(1, b"kube-api-access"), ld2(2, &projected)].concat();
        let mut spec = [ld2(1, &host_root), ld2(1, &api_access), ld2(2, &container)].concat();
        spec.extend(ld2(3, b"Never"));
        spec.extend(ld2(10, b"node-a"));
        spec.extend_from_slice(&[11 << 3, 1, 12 << 3, 1, 13 << 3, 1]);
        spec.extend(ld2(22, &ld2(2, b"Exists")));
        let msg = [ld2(1, &ld2(1, b"node-debugger-node-a-x1")), ld2(2, &spec)].concat();
        let tm = [ld2(1, b"v1"), ld2(2, b"Pod")].concat();
        let body = [b"k8s\0".to_vec(), ld2(1, &tm), ld2(2, &msg)].concat();
        let pod = decode(&body).expect("pod");
        assert_eq!(
            pod["spec"],
            json!({
                "volumes": [
                    {"name": "host-root", "hostPath": {"path": "/"}},
                    {"name": "kube-api-access", "projected": {"sources": [
                        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3599}}]}}
                ],
                "containers": [{"name": "debugger", "image": "busybox", "command": ["sh"],
                                "volumeMounts": [{"name": "host-root", "mountPath": "/host"}],
                                "imagePullPolicy": "IfNotPresent",
                                "terminationMessagePolicy": "FallbackToLogsOnError"}],
                "restartPolicy": "Never", "nodeName": "node-a",
                "hostNetwork": true, "hostPID": true, "hostIPC": true,
                "tolerations": [{"operator": "Exists"}]
            })
        );
    }

    #[test]
    fn rejects_garbage_and_unknown_kinds() {
        assert_eq!(decode(b"nope"), Err(ProtobufError::Magic));
        assert!(matches!(
            decode(b"k8s\0\x0a\xff"),
            Err(ProtobufError::Malformed { .. })
        ));
        let mut tm = ld(1, b"v1");
        tm.extend(ld(2, b"Node"));
        let mut body = b"k8s\0".to_vec();
        body.extend(ld(1, &tm));
        assert!(matches!(
            decode(&body),
            Err(ProtobufError::UnsupportedKind { .. })
        ));
    }
}
