//! `ValidatePod` and `ValidatePodUpdate`: the spec rules of kube-apiserver v1.33 with its
//! field paths and messages, the fields an update may change, and the mirror-pod annotation.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

use super::defaults::volume_sources;
use apimachinery::checks::{annotations_at, enum_field, labels, nonnegative, port_or_name};
use apimachinery::field_errors::{go_quote, FieldErrors};
use apimachinery::json::{arr, at, obj, present, str_at};
use apimachinery::names::{
    dns1123_label, dns1123_subdomain, label_value, port_name, qualified_name, PORT_RANGE_MSG,
};
use apimachinery::quantity::parse_quantity;

const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

/// Create rules beyond metadata.
pub(super) fn validate_pod(e: &mut FieldErrors, obj: &Value) {
    if let Some(spec) = obj.get("spec") {
        pod_spec(e, spec, "spec");
    } else {
        e.required("spec.containers", "");
    }
    mirror_annotation_create(e, obj);
}

/// Update rules beyond metadata: the spec may only change in the few places upstream's
/// ValidatePodUpdate allows.
pub(super) fn validate_pod_update(e: &mut FieldErrors, old: &Value, new: &Value) {
    pod_update(e, old, new);
    mirror_annotation_update(e, old, new);
}

/// upstream's `ValidatePodEphemeralContainersUpdate`, for the `ephemeralcontainers`
/// subresource: the new pod is valid as a whole, a static pod takes none, and those already
/// there are neither changed nor removed.
pub(super) fn validate_ephemeral_update(e: &mut FieldErrors, old: &Value, new: &Value) {
    validate_pod(e, new);
    mirror_annotation_update(e, old, new);
    if at(old, &["metadata", "annotations", MIRROR_POD_ANNOTATION]).is_some() {
        *e = FieldErrors::default();
        e.forbidden("", "static pods do not support ephemeral containers");
        return;
    }
    let empty = Value::Object(Map::new());
    ephemeral_changes(
        e,
        old.get("spec").unwrap_or(&empty),
        new.get("spec").unwrap_or(&empty),
    );
}

/// `ValidatePodTemplateSpec` of a template at `path` (`spec.template`): its labels and
/// annotations, and its spec by the pod rules; templates may not hold ephemeral containers.
pub fn validate_pod_template(e: &mut FieldErrors, template: &Value, path: &str) {
    let meta = template.get("metadata");
    labels(
        e,
        meta.and_then(|m| m.get("labels")),
        &format!("{path}.labels"),
    );
    annotations_at(
        e,
        meta.and_then(|m| m.get("annotations")),
        &format!("{path}.annotations"),
    );
    match template.get("spec") {
        Some(spec) => {
            pod_spec(e, spec, &format!("{path}.spec"));
            if !arr(spec.get("ephemeralContainers")).is_empty() {
                e.forbidden(
                    &format!("{path}.spec.ephemeralContainers"),
                    "ephemeral containers not allowed in pod template",
                );
            }
        }
        None => e.required(&format!("{path}.spec.containers"), ""),
    }
}

fn pod_spec(e: &mut FieldErrors, spec: &Value, path: &str) {
    let volumes = pod_volumes(e, spec, path);
    let containers = arr(spec.get("containers"));
    if containers.is_empty() {
        e.required(&format!("{path}.containers"), "");
    }
    let mut names = BTreeSet::new();
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in arr(spec.get(key)).iter().enumerate() {
            container(
                e,
                c,
                &format!("{path}.{key}[{i}]"),
                key,
                &volumes,
                &mut names,
            );
        }
    }
    ephemeral_targets(e, spec, path);
    enum_field(
        e,
        spec.get("restartPolicy"),
        &format!("{path}.restartPolicy"),
        &["Always", "OnFailure", "Never"],
    );
    let dns = format!("{path}.dnsPolicy");
    enum_field(
        e,
        spec.get("dnsPolicy"),
        &dns,
        &["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"],
    );
    if spec.get("dnsPolicy").and_then(Value::as_str) == Some("None")
        && !present(spec.get("dnsConfig"))
    {
        e.required(
            &format!("{path}.dnsConfig"),
            "must provide `dnsConfig` when `dnsPolicy` is None",
        );
    }
    if let Some(d) = spec.get("activeDeadlineSeconds").filter(|v| !v.is_null()) {
        let n = d.as_i64().unwrap_or(0);
        if !(1..=i64::from(i32::MAX)).contains(&n) {
            e.invalid(
                &format!("{path}.activeDeadlineSeconds"),
                d,
                "must be between 1 and 2147483647, inclusive",
            );
        }
    }
    // Upstream's `validateReadinessGates`: each conditionType is a qualified name.
    for (i, gate) in arr(spec.get("readinessGates")).iter().enumerate() {
        let ty = gate
            .get("conditionType")
            .and_then(Value::as_str)
            .unwrap_or("");
        for m in qualified_name(ty) {
            e.invalid(
                &format!("{path}.readinessGates[{i}].conditionType"),
                &Value::from(ty),
                &m,
            );
        }
    }
    super::hostspec::host_aliases(e, spec, path);
    super::hostspec::sysctls(e, spec, path);
    super::hostspec::host_users(e, spec, path);
    labels(e, spec.get("nodeSelector"), &format!("{path}.nodeSelector"));
    seccomp_profile(e, spec, &format!("{path}.securityContext"));
    supplemental_groups_policy(e, spec, &format!("{path}.securityContext"));
    for (key, label) in [
        ("nodeName", false),
        ("serviceAccountName", false),
        ("runtimeClassName", false),
        ("hostname", true),
        ("subdomain", true),
    ] {
        let v = spec.get(key).and_then(Value::as_str).unwrap_or("");
        if v.is_empty() {
            continue;
        }
        let msgs = if label {
            dns1123_label(v)
        } else {
            dns1123_subdomain(v)
        };
        for m in msgs {
            e.invalid(&format!("{path}.{key}"), &Value::from(v), &m);
        }
    }
    validate_tolerations(e, spec.get("tolerations"), &format!("{path}.tolerations"));
    if let Some(overhead) = spec.get("overhead").filter(|o| !o.is_null()) {
        validate_overhead(e, overhead, &format!("{path}.overhead"));
    }
    nonnegative(
        e,
        spec.get("terminationGracePeriodSeconds"),
        &format!("{path}.terminationGracePeriodSeconds"),
    );
}

fn pod_volumes(e: &mut FieldErrors, spec: &Value, path: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, v) in arr(spec.get("volumes")).iter().enumerate() {
        let vp = format!("{path}.volumes[{i}]");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            e.required(&format!("{vp}.name"), "");
        } else {
            for m in dns1123_label(name) {
                e.invalid(&format!("{vp}.name"), &Value::from(name), &m);
            }
            if !names.insert(name.to_string()) {
                e.duplicate(&format!("{vp}.name"), &Value::from(name));
            }
        }
        let Some(map) = v.as_object() else { continue };
        let sources = volume_sources(map);
        match sources.as_slice() {
            [] => e.required(&vp, "must specify a volume type"),
            [_] => {}
            [_, second, ..] => e.forbidden(
                &format!("{vp}.{second}"),
                "may not specify more than 1 volume type",
            ),
        }
        let required = |e: &mut FieldErrors, src: &str, field: &str| {
            if let Some(s) = map.get(src).filter(|s| !s.is_null()) {
                if s.get(field)
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .is_empty()
                {
                    e.required(&format!("{vp}.{src}.{field}"), "");
                }
            }
        };
        required(e, "hostPath", "path");
        required(e, "secret", "secretName");
        required(e, "configMap", "name");
        required(e, "persistentVolumeClaim", "claimName");
        if let Some(t) = map
            .get("hostPath")
            .and_then(|h| h.get("type"))
            .and_then(Value::as_str)
        {
            const TYPES: &[&str] = &[
                "",
                "BlockDevice",
                "CharDevice",
                "Directory",
                "DirectoryOrCreate",
                "File",
                "FileOrCreate",
                "Socket",
            ];
            if !TYPES.contains(&t) {
                e.not_supported(&format!("{vp}.hostPath.type"), &Value::from(t), TYPES);
            }
        }
    }
    names
}

fn container(
    e: &mut FieldErrors,
    c: &Value,
    path: &str,
    key: &str,
    volumes: &BTreeSet<String>,
    names: &mut BTreeSet<String>,
) {
    let name = c.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() {
        e.required(&format!("{path}.name"), "");
    } else {
        for m in dns1123_label(name) {
            e.invalid(&format!("{path}.name"), &Value::from(name), &m);
        }
        if !names.insert(name.to_string()) {
            e.duplicate(&format!("{path}.name"), &Value::from(name));
        }
    }
    if key == "ephemeralContainers" {
        ephemeral_fields(e, c, path);
    }
    let image = c.get("image").and_then(Value::as_str).unwrap_or("");
    if image.is_empty() {
        e.required(&format!("{path}.image"), "");
    } else if image.trim() != image {
        e.invalid(
            &format!("{path}.image"),
            &Value::from(image),
            "must not have leading or trailing whitespace",
        );
    }
    enum_field(
        e,
        c.get("imagePullPolicy"),
        &format!("{path}.imagePullPolicy"),
        &["Always", "IfNotPresent", "Never"],
    );
    enum_field(
        e,
        c.get("terminationMessagePolicy"),
        &format!("{path}.terminationMessagePolicy"),
        &["File", "FallbackToLogsOnError"],
    );
    if let Some(rp) = c
        .get("restartPolicy")
        .and_then(Value::as_str)
        .filter(|_| key != "ephemeralContainers")
    {
        if key == "initContainers" {
            if rp != "Always" {
                e.not_supported(
                    &format!("{path}.restartPolicy"),
                    &Value::from(rp),
                    &["Always"],
                );
            }
        } else {
            e.forbidden(
                &format!("{path}.restartPolicy"),
                "may not be set for non-init containers",
            );
        }
    }
    ports(e, c, path);
    env(e, c, path);
    env_from(e, c, path);
    seccomp_profile(e, c, &format!("{path}.securityContext"));
    volume_mounts(e, c, path, volumes);
    resources(e, c.get("resources"), &format!("{path}.resources"));
    let sidecar = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = c
            .get(probe)
            .filter(|p| !p.is_null() && key != "ephemeralContainers")
        else {
            continue;
        };
        let pp = format!("{path}.{probe}");
        if key == "initContainers" && !sidecar {
            e.forbidden(
                &pp,
                "may not be set for init containers without restartPolicy=Always",
            );
            continue;
        }
        validate_probe(e, p, &pp, probe != "readinessProbe");
    }
    if let Some(lc) = c.get("lifecycle").filter(|l| !l.is_null()) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lc.get(hook).filter(|h| !h.is_null()) {
                handler(
                    e,
                    h,
                    &format!("{path}.lifecycle.{hook}"),
                    &["exec", "httpGet", "tcpSocket", "sleep"],
                );
            }
        }
    }
}

/// The fields an ephemeral container may not set (upstream's allow-list of
/// `EphemeralContainerCommon` and of its volume mounts); `resources: {}` is as good as none.
fn ephemeral_fields(e: &mut FieldErrors, c: &Value, path: &str) {
    const FORBIDDEN: &[&str] = &[
        "ports",
        "resources",
        "resizePolicy",
        "restartPolicy",
        "livenessProbe",
        "readinessProbe",
        "startupProbe",
        "lifecycle",
    ];
    const MSG: &str = "cannot be set for an Ephemeral Container";
    let set = |v: &Value| match v {
        Value::Null => false,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => o
            .values()
            .any(|v| !v.is_null() && v != &Value::Object(Map::new())),
        Value::String(s) => !s.is_empty(),
        Value::Bool(_) | Value::Number(_) => true,
    };
    for field in FORBIDDEN {
        if c.get(*field).is_some_and(set) {
            e.forbidden(&format!("{path}.{field}"), MSG);
        }
    }
    for (i, m) in arr(c.get("volumeMounts")).iter().enumerate() {
        for field in ["subPath", "subPathExpr"] {
            if m.get(field).is_some_and(set) {
                e.forbidden(&format!("{path}.volumeMounts[{i}].{field}"), MSG);
            }
        }
    }
}

/// An ephemeral container's `targetContainerName` names one of the pod's containers or
/// init containers.
fn ephemeral_targets(e: &mut FieldErrors, spec: &Value, path: &str) {
    let names: BTreeSet<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| arr(spec.get(*k)))
        .filter_map(|c| c.get("name").and_then(Value::as_str))
        .collect();
    for (i, c) in arr(spec.get("ephemeralContainers")).iter().enumerate() {
        if let Some(t) = c
            .get("targetContainerName")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            if !names.contains(t) {
                e.not_found(
                    &format!("{path}.ephemeralContainers[{i}].targetContainerName"),
                    &Value::from(t),
                );
            }
        }
    }
}

fn ports(e: &mut FieldErrors, c: &Value, path: &str) {
    let mut port_names = BTreeSet::new();
    for (i, p) in arr(c.get("ports")).iter().enumerate() {
        let pp = format!("{path}.ports[{i}]");
        if let Some(name) = p
            .get("name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        {
            for m in port_name(name) {
                e.invalid(&format!("{pp}.name"), &Value::from(name), &m);
            }
            if !port_names.insert(name.to_string()) {
                e.duplicate(&format!("{pp}.name"), &Value::from(name));
            }
        }
        match p.get("containerPort").and_then(Value::as_i64) {
            None | Some(0) => e.required(&format!("{pp}.containerPort"), ""),
            Some(n) if !(1..=65535).contains(&n) => e.invalid(
                &format!("{pp}.containerPort"),
                &Value::from(n),
                PORT_RANGE_MSG,
            ),
            Some(_) => {}
        }
        if let Some(n) = p.get("hostPort").and_then(Value::as_i64) {
            if n != 0 && !(1..=65535).contains(&n) {
                e.invalid(&format!("{pp}.hostPort"), &Value::from(n), PORT_RANGE_MSG);
            }
        }
        enum_field(
            e,
            p.get("protocol"),
            &format!("{pp}.protocol"),
            &["SCTP", "TCP", "UDP"],
        );
    }
}

/// RelaxedEnvironmentVariableValidation is on by default in v1.33: any printable ASCII but
/// `=`.
fn is_env_var_name(name: &str) -> bool {
    name.chars().all(|c| (' '..='~').contains(&c) && c != '=')
}

const ENV_VAR_NAME_MSG: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";

/// `envFrom`: a prefix must itself be an env var name, and each entry names exactly one of
/// a ConfigMap or a Secret (upstream's `ValidateEnvFrom`).
fn env_from(e: &mut FieldErrors, c: &Value, path: &str) {
    let list = format!("{path}.envFrom");
    for (i, v) in arr(c.get("envFrom")).iter().enumerate() {
        let ep = format!("{list}[{i}]");
        let prefix = v.get("prefix").and_then(Value::as_str).unwrap_or("");
        if !prefix.is_empty() && !is_env_var_name(prefix) {
            e.invalid(
                &format!("{ep}.prefix"),
                &Value::from(prefix),
                ENV_VAR_NAME_MSG,
            );
        }
        let refs = ["configMapRef", "secretRef"]
            .iter()
            .filter(|k| present(v.get(**k)))
            .count();
        if refs == 0 {
            e.invalid(
                &list,
                &Value::from(""),
                "must specify one of: `configMapRef` or `secretRef`",
            );
        } else if refs > 1 {
            e.forbidden(&ep, "may not have more than one field specified at a time");
        }
    }
}

fn env(e: &mut FieldErrors, c: &Value, path: &str) {
    for (i, v) in arr(c.get("env")).iter().enumerate() {
        let ep = format!("{path}.env[{i}]");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            e.required(&format!("{ep}.name"), "");
        } else if !is_env_var_name(name) {
            e.invalid(&format!("{ep}.name"), &Value::from(name), ENV_VAR_NAME_MSG);
        }
        if let Some(from) = v.get("valueFrom").filter(|f| !f.is_null()) {
            let sources = [
                "fieldRef",
                "resourceFieldRef",
                "configMapKeyRef",
                "secretKeyRef",
            ]
            .iter()
            .filter(|k| present(from.get(**k)))
            .count();
            if sources == 0 {
                e.invalid(
                    &format!("{ep}.valueFrom"),
                    &Value::from(""),
                    "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                );
            } else if sources > 1 {
                e.invalid(
                    &format!("{ep}.valueFrom"),
                    &Value::from(""),
                    "may not have more than one field specified at a time",
                );
            }
            if !v
                .get("value")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                e.invalid(
                    &format!("{ep}.valueFrom"),
                    &Value::from(""),
                    "may not be specified when `value` is not empty",
                );
            }
        }
    }
}

fn volume_mounts(e: &mut FieldErrors, c: &Value, path: &str, volumes: &BTreeSet<String>) {
    let mut paths = BTreeSet::new();
    for (i, m) in arr(c.get("volumeMounts")).iter().enumerate() {
        let mp = format!("{path}.volumeMounts[{i}]");
        let name = m.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            e.required(&format!("{mp}.name"), "");
        } else if !volumes.contains(name) {
            e.not_found(&format!("{mp}.name"), &Value::from(name));
        }
        let mount_path = m.get("mountPath").and_then(Value::as_str).unwrap_or("");
        if mount_path.is_empty() {
            e.required(&format!("{mp}.mountPath"), "");
        } else if !paths.insert(mount_path.to_string()) {
            e.invalid(
                &format!("{mp}.mountPath"),
                &Value::from(mount_path),
                "must be unique",
            );
        }
        if let Some(sub) = m
            .get("subPath")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
        {
            if sub.starts_with('/') {
                e.invalid(
                    &format!("{mp}.subPath"),
                    &Value::from(sub),
                    "must be a relative path",
                );
            }
            if sub.split('/').any(|p| p == "..") {
                e.invalid(
                    &format!("{mp}.subPath"),
                    &Value::from(sub),
                    "must not contain '..'",
                );
            }
        }
        // Upstream names these two under the list, without the mount's index.
        mount_propagation(e, c, m, &format!("{path}.volumeMounts.mountPropagation"));
        recursive_read_only(e, m, &format!("{path}.volumeMounts.recursiveReadOnly"));
    }
}

/// upstream's `validateMountPropagation`: a known mode, and `Bidirectional` only for
/// privileged containers.
fn mount_propagation(e: &mut FieldErrors, c: &Value, m: &Value, path: &str) {
    let Some(mode) = m.get("mountPropagation").and_then(Value::as_str) else {
        return;
    };
    const MODES: &[&str] = &["Bidirectional", "HostToContainer", "None"];
    if !MODES.contains(&mode) {
        e.not_supported(path, &Value::from(mode), MODES);
    }
    let privileged = at(c, &["securityContext", "privileged"]).and_then(Value::as_bool);
    if mode == "Bidirectional" && privileged != Some(true) {
        e.forbidden(
            path,
            "Bidirectional mount propagation is available only to privileged containers",
        );
    }
}

/// upstream's `validateMountRecursiveReadOnly` (KEP-3857): `IfPossible` and `Enabled` need a
/// read-only mount that propagates nothing.
fn recursive_read_only(e: &mut FieldErrors, m: &Value, path: &str) {
    let Some(mode) = m.get("recursiveReadOnly").and_then(Value::as_str) else {
        return;
    };
    match mode {
        "Disabled" => {}
        "Enabled" | "IfPossible" => {
            if m.get("readOnly").and_then(Value::as_bool) != Some(true) {
                e.forbidden(path, "may only be specified when readOnly is true");
            }
            if m.get("mountPropagation")
                .and_then(Value::as_str)
                .is_some_and(|p| p != "None")
            {
                e.forbidden(
                    path,
                    "may only be specified when mountPropagation is None or not specified",
                );
            }
        }
        other => e.not_supported(
            path,
            &Value::from(other),
            &["Disabled", "Enabled", "IfPossible"],
        ),
    }
}

/// upstream's `validateSupplementalGroupsPolicy` (KEP-3619).
fn supplemental_groups_policy(e: &mut FieldErrors, spec: &Value, sc_path: &str) {
    if let Some(policy) =
        at(spec, &["securityContext", "supplementalGroupsPolicy"]).and_then(Value::as_str)
    {
        const POLICIES: &[&str] = &["Merge", "Strict"];
        if !POLICIES.contains(&policy) {
            e.not_supported(
                &format!("{sc_path}.supplementalGroupsPolicy"),
                &Value::from(policy),
                POLICIES,
            );
        }
    }
}

fn resources(e: &mut FieldErrors, res: Option<&Value>, path: &str) {
    let Some(res) = res.filter(|r| !r.is_null()) else {
        return;
    };
    let mut parsed: BTreeMap<(&str, String), f64> = BTreeMap::new();
    for part in ["limits", "requests"] {
        let Some(map) = obj(res.get(part)) else {
            continue;
        };
        for (name, q) in map {
            let fp = format!("{path}.{part}[{name}]");
            let text = match q {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => other.to_string(),
            };
            match parse_quantity(&text) {
                None => e.invalid(&fp, &Value::from(text.as_str()), QUANTITY_MSG),
                Some(v) if v < 0.0 => e.invalid(
                    &fp,
                    &Value::from(text.as_str()),
                    "must be greater than or equal to 0",
                ),
                Some(v) => {
                    parsed.insert((part, name.clone()), v);
                }
            }
        }
    }
    if let Some(req) = obj(res.get("requests")) {
        for (name, q) in req {
            let (Some(r), Some(l)) = (
                parsed.get(&("requests", name.clone())),
                parsed.get(&("limits", name.clone())),
            ) else {
                continue;
            };
            if r > l {
                let limit = res
                    .get("limits")
                    .and_then(|m| m.get(name))
                    .map(quantity_text)
                    .unwrap_or_default();
                e.invalid(
                    &format!("{path}.requests[{name}]"),
                    &Value::from(quantity_text(q)),
                    &format!("must be less than or equal to {name} limit of {limit}"),
                );
            }
        }
    }
}

/// `ValidateTolerations` of the list at `path` (a pod's, or a RuntimeClass's scheduling).
pub fn validate_tolerations(e: &mut FieldErrors, list: Option<&Value>, path: &str) {
    for (i, t) in arr(list).iter().enumerate() {
        toleration(e, t, &format!("{path}[{i}]"));
    }
}

/// A pod's (or a RuntimeClass's) fixed overhead at `path`: upstream checks it as the limits
/// of a container's resource requirements, so errors name `path.limits[name]`.
pub fn validate_overhead(e: &mut FieldErrors, overhead: &Value, path: &str) {
    let as_limits = serde_json::json!({ "limits": overhead });
    resources(e, Some(&as_limits), path);
}

fn quantity_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn validate_probe(e: &mut FieldErrors, p: &Value, path: &str, success_must_be_one: bool) {
    handler(e, p, path, &["exec", "httpGet", "tcpSocket", "grpc"]);
    for f in [
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ] {
        nonnegative(e, p.get(f), &format!("{path}.{f}"));
    }
    if success_must_be_one {
        if let Some(n) = p.get("successThreshold").and_then(Value::as_i64) {
            if n != 1 {
                e.invalid(
                    &format!("{path}.successThreshold"),
                    &Value::from(n),
                    "must be 1",
                );
            }
        }
    } else if present(p.get("terminationGracePeriodSeconds")) {
        e.invalid(
            &format!("{path}.terminationGracePeriodSeconds"),
            p.get("terminationGracePeriodSeconds")
                .unwrap_or(&Value::Null),
            "must not be set for readinessProbes",
        );
    }
}

fn handler(e: &mut FieldErrors, h: &Value, path: &str, kinds: &[&str]) {
    let set: Vec<&str> = kinds
        .iter()
        .copied()
        .filter(|k| present(h.get(*k)))
        .collect();
    match set.as_slice() {
        [] => e.required(path, "must specify a handler type"),
        [_] => {}
        [_, second, ..] => e.forbidden(
            &format!("{path}.{second}"),
            "may not specify more than 1 handler type",
        ),
    }
    if let Some(exec) = h.get("exec").filter(|x| !x.is_null()) {
        if arr(exec.get("command")).is_empty() {
            e.required(&format!("{path}.exec.command"), "");
        }
    }
    for k in ["httpGet", "tcpSocket"] {
        if let Some(a) = h.get(k).filter(|x| !x.is_null()) {
            port_or_name(e, a.get("port"), &format!("{path}.{k}.port"));
        }
    }
    if let Some(g) = h.get("httpGet").filter(|x| !x.is_null()) {
        if let Some(s) = g.get("scheme").and_then(Value::as_str) {
            if s != "HTTP" && s != "HTTPS" {
                e.not_supported(
                    &format!("{path}.httpGet.scheme"),
                    &Value::from(s),
                    &["HTTP", "HTTPS"],
                );
            }
        }
    }
    if let Some(g) = h.get("grpc").filter(|x| !x.is_null()) {
        match g.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            _ => e.invalid(
                &format!("{path}.grpc.port"),
                g.get("port").unwrap_or(&Value::from(0)),
                PORT_RANGE_MSG,
            ),
        }
    }
}

fn toleration(e: &mut FieldErrors, t: &Value, path: &str) {
    let key = t.get("key").and_then(Value::as_str).unwrap_or("");
    if !key.is_empty() {
        for m in qualified_name(key) {
            e.invalid(&format!("{path}.key"), &Value::from(key), &m);
        }
    }
    let op = t.get("operator").and_then(Value::as_str).unwrap_or("");
    let value = t.get("value").and_then(Value::as_str).unwrap_or("");
    if key.is_empty() && op != "Exists" {
        e.invalid(
            &format!("{path}.operator"),
            &Value::from(op),
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        );
    }
    match op {
        "" | "Equal" => {
            for m in label_value(value) {
                e.invalid(&format!("{path}.operator"), &Value::from(value), &m);
            }
        }
        "Exists" => {
            if !value.is_empty() {
                e.invalid(
                    &format!("{path}.operator"),
                    &Value::from(value),
                    "value must be empty when `operator` is 'Exists'",
                );
            }
        }
        other => e.not_supported(
            &format!("{path}.operator"),
            &Value::from(other),
            &["Equal", "Exists"],
        ),
    }
    let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
    if !effect.is_empty() && !["NoSchedule", "PreferNoSchedule", "NoExecute"].contains(&effect) {
        e.not_supported(
            &format!("{path}.effect"),
            &Value::from(effect),
            &["NoSchedule", "PreferNoSchedule", "NoExecute"],
        );
    }
    if present(t.get("tolerationSeconds")) && effect != "NoExecute" {
        e.invalid(
            &format!("{path}.effect"),
            &Value::from(effect),
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        );
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The annotation kubelet puts on mirror pods (the API's copies of static pods).
pub(super) const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// upstream's ValidatePodSpecificAnnotations: a mirror pod names its node.
/// `validateSeccompProfileField` on `owner.securityContext.seccompProfile`: a known type,
/// and a `localhostProfile` exactly for Localhost, relative and without `..` (kubelet joins
/// it to its profile directory).
fn seccomp_profile(e: &mut FieldErrors, owner: &Value, sc_path: &str) {
    let Some(sp) = at(owner, &["securityContext", "seccompProfile"]).filter(|v| !v.is_null())
    else {
        return;
    };
    let path = format!("{sc_path}.seccompProfile");
    let kind = str_at(sp, &["type"]);
    match kind {
        "" => e.required(
            &format!("{path}.type"),
            "type is required when seccompProfile is set",
        ),
        "Localhost" | "RuntimeDefault" | "Unconfined" => {}
        other => e.not_supported(
            &format!("{path}.type"),
            &Value::from(other),
            &["Localhost", "RuntimeDefault", "Unconfined"],
        ),
    }
    let local = format!("{path}.localhostProfile");
    match (kind, sp.get("localhostProfile").and_then(Value::as_str)) {
        ("Localhost", None) => e.required(&local, "must be set when seccomp type is Localhost"),
        ("Localhost", Some(p)) => {
            if p.starts_with('/') {
                e.invalid(&local, &Value::from(p), "must be a relative path");
            }
            if p.split('/').any(|part| part == "..") {
                e.invalid(&local, &Value::from(p), "must not contain '..'");
            }
        }
        (_, Some(p)) => e.invalid(
            &local,
            &Value::from(p),
            "can only be set when seccomp type is Localhost",
        ),
        (_, None) => {}
    }
}

fn mirror_annotation_create(e: &mut FieldErrors, obj: &Value) {
    let Some(value) = at(obj, &["metadata", "annotations", MIRROR_POD_ANNOTATION]) else {
        return;
    };
    if str_at(obj, &["spec", "nodeName"]).is_empty() {
        e.invalid(
            &format!("metadata.annotations[{MIRROR_POD_ANNOTATION}]"),
            value,
            "must set spec.nodeName if mirror pod annotation is set",
        );
    }
}

/// upstream's ValidatePodSpecificAnnotationUpdates: only kubelet makes mirror pods, by
/// creating them; an update may not add, change or remove the mirror annotation.
fn mirror_annotation_update(e: &mut FieldErrors, old: &Value, new: &Value) {
    let path = ["metadata", "annotations", MIRROR_POD_ANNOTATION];
    let field = format!("metadata.annotations[{MIRROR_POD_ANNOTATION}]");
    match (at(old, &path), at(new, &path)) {
        (Some(o), Some(n)) if o == n => {}
        (Some(_), _) => e.forbidden(&field, "may not remove or update mirror pod annotation"),
        (None, Some(_)) => e.forbidden(&field, "may not add mirror pod annotation"),
        (None, None) => {}
    }
}

fn pod_update(e: &mut FieldErrors, old: &Value, new: &Value) {
    let empty = Value::Object(Map::new());
    let old_spec = old.get("spec").unwrap_or(&empty);
    let new_spec = new.get("spec").unwrap_or(&empty);
    for key in ["containers", "initContainers"] {
        for (i, c) in arr(new_spec.get(key)).iter().enumerate() {
            if c.get("image")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                e.required(&format!("spec.{key}[{i}].image"), "");
            }
        }
    }
    let old_deadline = old_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    let new_deadline = new_spec
        .get("activeDeadlineSeconds")
        .and_then(Value::as_i64);
    match (old_deadline, new_deadline) {
        (Some(_), None) => e.invalid(
            "spec.activeDeadlineSeconds",
            &Value::Null,
            "must not update from a positive integer to nil value",
        ),
        (Some(o), Some(n)) if n > o => e.invalid(
            "spec.activeDeadlineSeconds",
            &Value::from(n),
            "must be less than or equal to previous value",
        ),
        _ => {}
    }
    for (i, t) in arr(new_spec.get("tolerations")).iter().enumerate() {
        toleration(e, t, &format!("spec.tolerations[{i}]"));
    }
    // Bring the new spec's mutable fields back to the old values; whatever differs after
    // that is a forbidden change (upstream's "munged" spec comparison).
    let mut munged = new_spec.clone();
    if let Some(m) = munged.as_object_mut() {
        for key in ["containers", "initContainers"] {
            let old_list = arr(old_spec.get(key));
            if let Some(list) = m.get_mut(key).and_then(Value::as_array_mut) {
                if list.len() == old_list.len() {
                    for (c, oc) in list.iter_mut().zip(old_list) {
                        if let (Some(c), Some(img)) = (c.as_object_mut(), oc.get("image")) {
                            c.insert("image".into(), img.clone());
                        }
                    }
                }
            }
        }
        restore(m, old_spec, "activeDeadlineSeconds");
        let old_tol = arr(old_spec.get("tolerations"));
        let new_tol = arr(new_spec.get("tolerations"));
        if old_tol.iter().all(|t| new_tol.contains(t)) {
            restore(m, old_spec, "tolerations");
        }
        let old_grace = old_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = new_spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            restore(m, old_spec, "terminationGracePeriodSeconds");
        }
    }
    if &munged != old_spec {
        let diff = spec_diff(old_spec, &munged, "spec");
        e.forbidden("spec", &format!("{POD_UPDATE_MSG}\n{diff}"));
    }
}

/// Ephemeral containers may be added but none that exists may change or go. Patches do not
/// keep their order, so each is found by name.
fn ephemeral_changes(e: &mut FieldErrors, old_spec: &Value, new_spec: &Value) {
    let new_list = arr(new_spec.get("ephemeralContainers"));
    for o in arr(old_spec.get("ephemeralContainers")) {
        let name = o.get("name").and_then(Value::as_str).unwrap_or("");
        match new_list
            .iter()
            .find(|c| c.get("name").and_then(Value::as_str) == Some(name))
        {
            None => e.forbidden(
                "spec.ephemeralContainers",
                &format!(
                    "existing ephemeral containers {} may not be removed\n",
                    go_quote(name)
                ),
            ),
            Some(c) if c != o => {
                let diff = spec_diff(o, c, "");
                e.forbidden(
                    "spec.ephemeralContainers",
                    &format!(
                        "existing ephemeral containers {} may not be changed\n{diff}",
                        go_quote(name)
                    ),
                );
            }
            Some(_) => {}
        }
    }
}

fn restore(m: &mut Map<String, Value>, old: &Value, key: &str) {
    match old.get(key) {
        Some(v) => {
            m.insert(key.into(), v.clone());
        }
        None => {
            m.remove(key);
        }
    }
}

/// A short listing of what differs, in place of upstream's Go struct diff.
fn spec_diff(old: &Value, new: &Value, path: &str) -> String {
    let mut lines = Vec::new();
    diff_into(old, new, path, &mut lines);
    lines.truncate(20);
    lines.join("\n")
}

fn diff_into(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let null = Value::Null;
                let (x, y) = (a.get(k).unwrap_or(&null), b.get(k).unwrap_or(&null));
                if x != y {
                    diff_into(x, y, &format!("{path}.{k}"), out);
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (x, y)) in a.iter().zip(b).enumerate() {
                if x != y {
                    diff_into(x, y, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {
            out.push(format!("  - {path}: {old}"));
            out.push(format!("  + {path}: {new}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RESOURCE;
    use super::*;
    use crate::testing::messages;
    use apimachinery::field_errors::CauseReason;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        let mut p = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},"spec":spec});
        RESOURCE.apply_defaults(&mut p);
        p
    }

    #[test]
    fn valid_pod_passes() {
        let p = pod(
            json!({"containers":[{"name":"a","image":"nginx","ports":[{"containerPort":80,"name":"http"}],
            "volumeMounts":[{"name":"d","mountPath":"/d"}],
            "resources":{"requests":{"cpu":"500m"},"limits":{"cpu":"1","memory":"1Gi"}},
            "readinessProbe":{"httpGet":{"port":"http"}}}],
            "volumes":[{"name":"d","emptyDir":{}}]}),
        );
        assert_eq!(RESOURCE.validate_create(&p), Ok(()));
    }

    #[test]
    fn missing_image() {
        let p = pod(json!({"containers":[{"name":"a"}]}));
        let errs = RESOURCE.validate_create(&p).expect_err("invalid");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.containers[0].image");
        assert_eq!(errs[0].reason, CauseReason::FieldValueRequired);
        assert_eq!(errs[0].message, "spec.containers[0].image: Required value");
    }

    #[test]
    fn names() {
        let mut p = pod(json!({"containers":[{"name":"A","image":"x"},{"name":"A","image":"x"}]}));
        p["metadata"]["name"] = json!("Web_1");
        let m = messages(RESOURCE.validate_create(&p));
        assert_eq!(m[0], "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
        assert_eq!(m[1], "spec.containers[0].name: Invalid value: \"A\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')");
        assert!(m.contains(&"spec.containers[1].name: Duplicate value: \"A\"".to_string()));

        let mut p = pod(json!({"containers":[{"name":"a","image":"x"}]}));
        p["metadata"] = json!({"namespace":"default"});
        assert_eq!(
            messages(RESOURCE.validate_create(&p)),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        p["metadata"]["generateName"] = json!("web-");
        assert_eq!(RESOURCE.validate_create(&p), Ok(()));
    }

    #[test]
    fn label_rules() {
        let mut p = pod(json!({"containers":[{"name":"a","image":"x"}]}));
        p["metadata"]["labels"] = json!({"a/b/c":"x", "ok": "bad value"});
        let m = messages(RESOURCE.validate_create(&p));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with(
            "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of"
        ));
        assert!(m[1].starts_with(
            "metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string"
        ));
    }

    #[test]
    fn pod_spec_rules() {
        let p = pod(
            json!({"restartPolicy":"Sometimes","containers":[{"name":"a","image":"x",
            "ports":[{"containerPort":70000}],"env":[{"name":"A=B"}],
            "volumeMounts":[{"name":"missing","mountPath":"/m"}],
            "resources":{"requests":{"cpu":"2"},"limits":{"cpu":"1"}},
            "livenessProbe":{"successThreshold":2}}]}),
        );
        let m = messages(RESOURCE.validate_create(&p));
        let want = [
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.containers[0].env[0].name: Invalid value: \"A=B\": a valid environment variable name must consist only of printable ASCII characters other than '='",
            "spec.containers[0].volumeMounts[0].name: Not found: \"missing\"",
            "spec.containers[0].resources.requests[cpu]: Invalid value: \"2\": must be less than or equal to cpu limit of 1",
            "spec.containers[0].livenessProbe: Required value: must specify a handler type",
            "spec.containers[0].livenessProbe.successThreshold: Invalid value: 2: must be 1",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ];
        assert_eq!(m, want);
        let p = pod(json!({"containers":[]}));
        assert_eq!(
            messages(RESOURCE.validate_create(&p)),
            vec!["spec.containers: Required value"]
        );
    }

    #[test]
    fn runtime_class_name_and_overhead_rules() {
        let p = pod(json!({"containers":[{"name":"a","image":"busybox"}],
            "runtimeClassName": "Bad_Class",
            "overhead": {"cpu": "-1", "memory": "lots"}}));
        assert_eq!(
            messages(RESOURCE.validate_create(&p)),
            vec![
                "spec.runtimeClassName: Invalid value: \"Bad_Class\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
                "spec.overhead.limits[cpu]: Invalid value: \"-1\": must be greater than or equal to 0",
                "spec.overhead.limits[memory]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
            ]
        );
        let p = pod(json!({"containers":[{"name":"a","image":"busybox"}],
            "runtimeClassName": "kata.fast", "overhead": {"cpu": "250m", "memory": "120Mi"}}));
        assert!(RESOURCE.validate_create(&p).is_ok());
    }

    #[test]
    fn readiness_gate_condition_types_are_qualified_names() {
        let p = pod(json!({"containers":[{"name":"a","image":"busybox"}],
            "readinessGates":[{"conditionType":"www.example.com/feature-1"},{"conditionType":"bad type"}]}));
        let m = messages(RESOURCE.validate_create(&p));
        assert_eq!(m.len(), 1, "{m:?}");
        assert!(
            m[0].starts_with("spec.readinessGates[1].conditionType: Invalid value: \"bad type\": name part must consist of alphanumeric characters"),
            "{}",
            m[0]
        );
    }

    #[test]
    fn env_from_prefix_and_sources() {
        let p = pod(
            json!({"containers":[{"name":"a","image":"busybox","envFrom":[
            {"prefix":"my-app.", "configMapRef":{"name":"m"}},
            {"prefix":"A=", "secretRef":{"name":"s"}},
            {"prefix":"X"},
            {"configMapRef":{"name":"m"}, "secretRef":{"name":"s"}}]}]}),
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&p)),
            [
                "spec.containers[0].envFrom[1].prefix: Invalid value: \"A=\": a valid environment variable name must consist only of printable ASCII characters other than '='",
                "spec.containers[0].envFrom: Invalid value: \"\": must specify one of: `configMapRef` or `secretRef`",
                "spec.containers[0].envFrom[3]: Forbidden: may not have more than one field specified at a time",
            ]
        );
    }

    #[test]
    fn seccomp_profile_rules() {
        let p = pod(
            json!({"securityContext": {"seccompProfile": {"type": "Localhost"}},
            "containers":[{"name":"a","image":"x","securityContext":
              {"seccompProfile": {"type": "Localhost", "localhostProfile": "/etc/../x"}}},
              {"name":"b","image":"x","securityContext":
              {"seccompProfile": {"type": "Unconfined", "localhostProfile": "x"}}},
              {"name":"c","image":"x","securityContext":
              {"seccompProfile": {"type": "Docker"}}},
              {"name":"d","image":"x","securityContext":
              {"seccompProfile": {"type": "Localhost", "localhostProfile": "team/p.json"}}}]}),
        );
        let m = messages(RESOURCE.validate_create(&p));
        let want = [
            "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: \"/etc/../x\": must be a relative path",
            "spec.containers[0].securityContext.seccompProfile.localhostProfile: Invalid value: \"/etc/../x\": must not contain '..'",
            "spec.containers[1].securityContext.seccompProfile.localhostProfile: Invalid value: \"x\": can only be set when seccomp type is Localhost",
            "spec.containers[2].securityContext.seccompProfile.type: Unsupported value: \"Docker\": supported values: \"Localhost\", \"RuntimeDefault\", \"Unconfined\"",
            "spec.securityContext.seccompProfile.localhostProfile: Required value: must be set when seccomp type is Localhost",
        ];
        assert_eq!(m, want);
    }

    #[test]
    fn recursive_read_only_and_mount_propagation_rules() {
        let mounts = json!([
            {"name":"d","mountPath":"/a","readOnly":true,"recursiveReadOnly":"Enabled"},
            {"name":"d","mountPath":"/b","readOnly":true,"recursiveReadOnly":"IfPossible"},
            {"name":"d","mountPath":"/c","recursiveReadOnly":"Disabled"},
            {"name":"d","mountPath":"/e","readOnly":true,"recursiveReadOnly":"Enabled",
             "mountPropagation":"None"}]);
        let p = pod(
            json!({"containers":[{"name":"a","image":"x","volumeMounts":mounts}],
            "volumes":[{"name":"d","emptyDir":{}}]}),
        );
        assert_eq!(RESOURCE.validate_create(&p), Ok(()));

        let mounts = json!([
            {"name":"d","mountPath":"/a","recursiveReadOnly":"Enabled"},
            {"name":"d","mountPath":"/b","readOnly":true,"recursiveReadOnly":"IfPossible",
             "mountPropagation":"HostToContainer"},
            {"name":"d","mountPath":"/c","readOnly":true,"recursiveReadOnly":"Always"},
            {"name":"d","mountPath":"/e","mountPropagation":"Bidirectional"},
            {"name":"d","mountPath":"/f","mountPropagation":"Shared"}]);
        let p = pod(
            json!({"containers":[{"name":"a","image":"x","volumeMounts":mounts}],
            "volumes":[{"name":"d","emptyDir":{}}]}),
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&p)),
            [
                "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when readOnly is true",
                "spec.containers[0].volumeMounts.recursiveReadOnly: Forbidden: may only be specified when mountPropagation is None or not specified",
                "spec.containers[0].volumeMounts.recursiveReadOnly: Unsupported value: \"Always\": supported values: \"Disabled\", \"Enabled\", \"IfPossible\"",
                "spec.containers[0].volumeMounts.mountPropagation: Forbidden: Bidirectional mount propagation is available only to privileged containers",
                "spec.containers[0].volumeMounts.mountPropagation: Unsupported value: \"Shared\": supported values: \"Bidirectional\", \"HostToContainer\", \"None\"",
            ]
        );
        let privileged = pod(json!({"containers":[{"name":"a","image":"x",
            "securityContext":{"privileged":true},
            "volumeMounts":[{"name":"d","mountPath":"/e","mountPropagation":"Bidirectional"}]}],
            "volumes":[{"name":"d","emptyDir":{}}]}));
        assert_eq!(RESOURCE.validate_create(&privileged), Ok(()));
    }

    #[test]
    fn supplemental_groups_policy_values() {
        for ok in ["Merge", "Strict"] {
            let p = pod(json!({"securityContext":{"supplementalGroupsPolicy":ok},
                "containers":[{"name":"a","image":"x"}]}));
            assert_eq!(RESOURCE.validate_create(&p), Ok(()), "{ok}");
        }
        let p = pod(
            json!({"securityContext":{"supplementalGroupsPolicy":"Loose"},
            "containers":[{"name":"a","image":"x"}]}),
        );
        assert_eq!(
            messages(RESOURCE.validate_create(&p)),
            ["spec.securityContext.supplementalGroupsPolicy: Unsupported value: \"Loose\": supported values: \"Merge\", \"Strict\""]
        );
    }

    #[test]
    fn mirror_pod_annotation_rules() {
        let mut mirror = pod(json!({"containers":[{"name":"a","image":"nginx:1"}]}));
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
        let errs = RESOURCE.validate_create(&mirror).expect_err("no nodeName");
        assert_eq!(
            errs[0].message,
            "metadata.annotations[kubernetes.io/config.mirror]: Invalid value: \"abc\": must set spec.nodeName if mirror pod annotation is set"
        );
        mirror["spec"]["nodeName"] = json!("n1");
        assert_eq!(RESOURCE.validate_create(&mirror), Ok(()));
        let mut changed = mirror.clone();
        changed["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("def");
        let errs = RESOURCE
            .validate_update(&mirror, &changed)
            .expect_err("changed");
        assert_eq!(
            errs[0].message,
            "metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not remove or update mirror pod annotation"
        );
        let mut plain = mirror.clone();
        plain["metadata"]["annotations"] = json!({});
        assert!(RESOURCE.validate_update(&mirror, &plain).is_err());
        let errs = RESOURCE
            .validate_update(&plain, &mirror)
            .expect_err("added");
        assert!(errs[0]
            .message
            .ends_with("may not add mirror pod annotation"));
        let mut labelled = mirror.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        assert_eq!(RESOURCE.validate_update(&mirror, &labelled), Ok(()));
    }

    #[test]
    fn pod_update_rules() {
        let old = pod(json!({"containers":[{"name":"a","image":"nginx:1"}]}));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["metadata"]["labels"] = json!({"x":"y"});
        assert_eq!(RESOURCE.validate_update(&old, &new), Ok(()));
        if let Some(t) = new["spec"]["tolerations"].as_array_mut() {
            t.push(json!({"key":"k","operator":"Exists"}));
        }
        assert_eq!(RESOURCE.validate_update(&old, &new), Ok(()));
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = RESOURCE.validate_update(&old, &new).expect_err("forbidden");
        assert_eq!(errs[0].field, "spec");
        assert!(errs[0]
            .message
            .starts_with(&format!("spec: Forbidden: {POD_UPDATE_MSG}\n")));
        // Ephemeral containers are added through their subresource only.
        let sub = |old: &Value, new: &Value| {
            RESOURCE.validate_subresource_update("ephemeralcontainers", old, new)
        };
        let mut debug = old.clone();
        debug["spec"]["ephemeralContainers"] = json!([{"name":"dbg","image":"busybox",
            "imagePullPolicy":"IfNotPresent","terminationMessagePolicy":"File"}]);
        assert_eq!(sub(&old, &debug), Ok(()));
        let errs = RESOURCE
            .validate_update(&old, &debug)
            .expect_err("pod update");
        assert_eq!(errs[0].field, "spec");
        let mut changed = debug.clone();
        changed["spec"]["ephemeralContainers"][0]["image"] = json!("alpine");
        let errs = sub(&debug, &changed).expect_err("changed");
        assert_eq!(errs[0].field, "spec.ephemeralContainers");
        assert!(errs[0].message.starts_with(
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"dbg\" may not be changed\n"
        ));
        let mut clash = old.clone();
        clash["spec"]["ephemeralContainers"] = json!([{"name":"a","image":"busybox",
            "imagePullPolicy":"IfNotPresent","terminationMessagePolicy":"File"}]);
        assert_eq!(
            messages(sub(&old, &clash)),
            vec!["spec.ephemeralContainers[0].name: Duplicate value: \"a\""]
        );
        let mut renamed = old.clone();
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            messages(RESOURCE.validate_update(&old, &renamed)),
            vec!["metadata.name: Invalid value: \"other\": field is immutable"]
        );
    }
}
