//! Protobuf bodies of the workload kinds kubectl creates (`kubectl create deployment`, `create
//! job`, `create cronjob`, `create job --from=cronjob/NAME`, `create pdb`, `create quota`,
//! the pods of `kubectl debug --copy-to` and `kubectl debug node/NAME`) and the
//! DeleteOptions of the Eviction `kubectl drain` posts, decoded by tables of k8s.io/api's
//! field numbers: a Deployment, Job or CronJob spec with its pod template, the pod spec and the container
//! fields those commands carry (the `--from` copy holds everything the API server
//! defaulted). A field the tables do not know is refused by number, never dropped, so the
//! client can send JSON instead.

use serde_json::{json, Map, Value};

use super::wire::{int_or_string, map_entry, object_meta, Field, ProtobufError, Reader};

/// How one field is written on the wire and read into JSON.
#[derive(Clone, Copy)]
pub(super) enum Ty {
    /// A non-pointer string: gogo writes it even when empty, JSON omits it then.
    Str,
    /// A pointer string: present means set, even to "".
    PStr,
    /// A non-pointer integer: 0 is unset.
    Int,
    /// A pointer integer: present means set, even to 0.
    PInt,
    /// A non-pointer bool: false is unset.
    Bool,
    PBool,
    Msg(&'static Schema),
    /// A message whose fields JSON inlines into the parent (`VolumeSource` in `Volume`).
    Inline(&'static Schema),
    /// `map<string, string>`.
    StrMap,
    /// `map<string, Quantity>` (a `ResourceList`).
    QtyMap,
    Quantity,
    IntOrStr,
    /// A pointer IntOrString: present means set, even to 0 (a budget's `minAvailable`).
    PIntOrStr,
    /// An `ObjectMeta`.
    Meta,
    /// `bytes`, base64 in JSON.
    Bytes,
    /// A `metav1.Time` (seconds 1, nanos 2), RFC 3339 in JSON.
    Time,
    /// A field the server sets itself and ignores from clients (a CSR's requester).
    Ignored,
}

pub(super) struct F {
    num: u64,
    name: &'static str,
    ty: Ty,
    repeated: bool,
}

pub(super) const fn f(num: u64, name: &'static str, ty: Ty) -> F {
    F {
        num,
        name,
        ty,
        repeated: false,
    }
}

pub(super) const fn rep(num: u64, name: &'static str, ty: Ty) -> F {
    F {
        num,
        name,
        ty,
        repeated: true,
    }
}

/// A message: its name for errors and its known fields.
pub(super) struct Schema {
    pub(super) name: &'static str,
    pub(super) fields: &'static [F],
}

use Ty::*;

static LABEL_REQUIREMENT: Schema = Schema {
    name: "LabelSelectorRequirement",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        rep(3, "values", Str),
    ],
};
pub(super) static LABEL_SELECTOR: Schema = Schema {
    name: "LabelSelector",
    fields: &[
        f(1, "matchLabels", StrMap),
        rep(2, "matchExpressions", Msg(&LABEL_REQUIREMENT)),
    ],
};
static LOCAL_REF: Schema = Schema {
    name: "LocalObjectReference",
    fields: &[f(1, "name", Str)],
};
static FIELD_REF: Schema = Schema {
    name: "ObjectFieldSelector",
    fields: &[f(1, "apiVersion", Str), f(2, "fieldPath", Str)],
};
static RESOURCE_REF: Schema = Schema {
    name: "ResourceFieldSelector",
    fields: &[
        f(1, "containerName", Str),
        f(2, "resource", Str),
        f(3, "divisor", Quantity),
    ],
};
static KEY_REF: Schema = Schema {
    name: "KeySelector",
    fields: &[
        f(1, "", Inline(&LOCAL_REF)),
        f(2, "key", Str),
        f(3, "optional", PBool),
    ],
};
static ENV_SOURCE: Schema = Schema {
    name: "EnvVarSource",
    fields: &[
        f(1, "fieldRef", Msg(&FIELD_REF)),
        f(2, "resourceFieldRef", Msg(&RESOURCE_REF)),
        f(3, "configMapKeyRef", Msg(&KEY_REF)),
        f(4, "secretKeyRef", Msg(&KEY_REF)),
    ],
};
static ENV: Schema = Schema {
    name: "EnvVar",
    fields: &[
        f(1, "name", Str),
        f(2, "value", Str),
        f(3, "valueFrom", Msg(&ENV_SOURCE)),
    ],
};
static ENV_FROM_REF: Schema = Schema {
    name: "EnvSource",
    fields: &[f(1, "", Inline(&LOCAL_REF)), f(2, "optional", PBool)],
};
static ENV_FROM: Schema = Schema {
    name: "EnvFromSource",
    fields: &[
        f(1, "prefix", Str),
        f(2, "configMapRef", Msg(&ENV_FROM_REF)),
        f(3, "secretRef", Msg(&ENV_FROM_REF)),
    ],
};
static PORT: Schema = Schema {
    name: "ContainerPort",
    fields: &[
        f(1, "name", Str),
        f(2, "hostPort", Int),
        f(3, "containerPort", Int),
        f(4, "protocol", Str),
        f(5, "hostIP", Str),
    ],
};
static RESOURCES: Schema = Schema {
    name: "ResourceRequirements",
    fields: &[f(1, "limits", QtyMap), f(2, "requests", QtyMap)],
};
static MOUNT: Schema = Schema {
    name: "VolumeMount",
    fields: &[
        f(1, "name", Str),
        f(2, "readOnly", Bool),
        f(3, "mountPath", Str),
        f(4, "subPath", Str),
        f(5, "mountPropagation", PStr),
        f(6, "subPathExpr", Str),
        f(7, "recursiveReadOnly", PStr),
    ],
};
static EXEC: Schema = Schema {
    name: "ExecAction",
    fields: &[rep(1, "command", Str)],
};
static HEADER: Schema = Schema {
    name: "HTTPHeader",
    fields: &[f(1, "name", Str), f(2, "value", Str)],
};
static HTTP_GET: Schema = Schema {
    name: "HTTPGetAction",
    fields: &[
        f(1, "path", Str),
        f(2, "port", IntOrStr),
        f(3, "host", Str),
        f(4, "scheme", Str),
        rep(5, "httpHeaders", Msg(&HEADER)),
    ],
};
static TCP: Schema = Schema {
    name: "TCPSocketAction",
    fields: &[f(1, "port", IntOrStr), f(2, "host", Str)],
};
static HANDLER: Schema = Schema {
    name: "ProbeHandler",
    fields: &[
        f(1, "exec", Msg(&EXEC)),
        f(2, "httpGet", Msg(&HTTP_GET)),
        f(3, "tcpSocket", Msg(&TCP)),
    ],
};
static PROBE: Schema = Schema {
    name: "Probe",
    fields: &[
        f(1, "", Inline(&HANDLER)),
        f(2, "initialDelaySeconds", Int),
        f(3, "timeoutSeconds", Int),
        f(4, "periodSeconds", Int),
        f(5, "successThreshold", Int),
        f(6, "failureThreshold", Int),
        f(7, "terminationGracePeriodSeconds", PInt),
    ],
};
static CAPABILITIES: Schema = Schema {
    name: "Capabilities",
    fields: &[rep(1, "add", Str), rep(2, "drop", Str)],
};
static SECURITY: Schema = Schema {
    name: "SecurityContext",
    fields: &[
        f(1, "capabilities", Msg(&CAPABILITIES)),
        f(2, "privileged", PBool),
        f(4, "runAsUser", PInt),
        f(5, "runAsNonRoot", PBool),
        f(6, "readOnlyRootFilesystem", PBool),
        f(7, "allowPrivilegeEscalation", PBool),
        f(8, "runAsGroup", PInt),
    ],
};
static CONTAINER: Schema = Schema {
    name: "Container",
    fields: &[
        f(1, "name", Str),
        f(2, "image", Str),
        rep(3, "command", Str),
        rep(4, "args", Str),
        f(5, "workingDir", Str),
        rep(6, "ports", Msg(&PORT)),
        rep(7, "env", Msg(&ENV)),
        f(8, "resources", Msg(&RESOURCES)),
        rep(9, "volumeMounts", Msg(&MOUNT)),
        f(10, "livenessProbe", Msg(&PROBE)),
        f(11, "readinessProbe", Msg(&PROBE)),
        f(13, "terminationMessagePath", Str),
        f(14, "imagePullPolicy", Str),
        f(15, "securityContext", Msg(&SECURITY)),
        f(16, "stdin", Bool),
        f(17, "stdinOnce", Bool),
        f(18, "tty", Bool),
        rep(19, "envFrom", Msg(&ENV_FROM)),
        f(20, "terminationMessagePolicy", Str),
        f(22, "startupProbe", Msg(&PROBE)),
    ],
};
static KEY_TO_PATH: Schema = Schema {
    name: "KeyToPath",
    fields: &[f(1, "key", Str), f(2, "path", Str), f(3, "mode", PInt)],
};
static HOST_PATH: Schema = Schema {
    name: "HostPathVolumeSource",
    fields: &[f(1, "path", Str), f(2, "type", PStr)],
};
static EMPTY_DIR: Schema = Schema {
    name: "EmptyDirVolumeSource",
    fields: &[f(1, "medium", Str), f(2, "sizeLimit", Quantity)],
};
static SECRET_VOLUME: Schema = Schema {
    name: "SecretVolumeSource",
    fields: &[
        f(1, "secretName", Str),
        rep(2, "items", Msg(&KEY_TO_PATH)),
        f(3, "defaultMode", PInt),
        f(4, "optional", PBool),
    ],
};
static CLAIM_VOLUME: Schema = Schema {
    name: "PersistentVolumeClaimVolumeSource",
    fields: &[f(1, "claimName", Str), f(2, "readOnly", Bool)],
};
static CONFIG_MAP_VOLUME: Schema = Schema {
    name: "ConfigMapVolumeSource",
    fields: &[
        f(1, "", Inline(&LOCAL_REF)),
        rep(2, "items", Msg(&KEY_TO_PATH)),
        f(3, "defaultMode", PInt),
        f(4, "optional", PBool),
    ],
};
static DOWNWARD_FILE: Schema = Schema {
    name: "DownwardAPIVolumeFile",
    fields: &[
        f(1, "path", Str),
        f(2, "fieldRef", Msg(&FIELD_REF)),
        f(3, "resourceFieldRef", Msg(&RESOURCE_REF)),
        f(4, "mode", PInt),
    ],
};
static DOWNWARD_VOLUME: Schema = Schema {
    name: "DownwardAPIVolumeSource",
    fields: &[
        rep(1, "items", Msg(&DOWNWARD_FILE)),
        f(2, "defaultMode", PInt),
    ],
};
static DOWNWARD_PROJECTION: Schema = Schema {
    name: "DownwardAPIProjection",
    fields: &[rep(1, "items", Msg(&DOWNWARD_FILE))],
};
static OBJECT_PROJECTION: Schema = Schema {
    name: "ConfigMapProjection",
    fields: &[
        f(1, "", Inline(&LOCAL_REF)),
        rep(2, "items", Msg(&KEY_TO_PATH)),
        f(4, "optional", PBool),
    ],
};
static TOKEN_PROJECTION: Schema = Schema {
    name: "ServiceAccountTokenProjection",
    fields: &[
        f(1, "audience", Str),
        f(2, "expirationSeconds", PInt),
        f(3, "path", Str),
    ],
};
static PROJECTION: Schema = Schema {
    name: "VolumeProjection",
    fields: &[
        f(1, "secret", Msg(&OBJECT_PROJECTION)),
        f(2, "downwardAPI", Msg(&DOWNWARD_PROJECTION)),
        f(3, "configMap", Msg(&OBJECT_PROJECTION)),
        f(4, "serviceAccountToken", Msg(&TOKEN_PROJECTION)),
    ],
};
static PROJECTED_VOLUME: Schema = Schema {
    name: "ProjectedVolumeSource",
    fields: &[
        rep(1, "sources", Msg(&PROJECTION)),
        f(2, "defaultMode", PInt),
    ],
};
static VOLUME_SOURCE: Schema = Schema {
    name: "VolumeSource",
    fields: &[
        f(1, "hostPath", Msg(&HOST_PATH)),
        f(2, "emptyDir", Msg(&EMPTY_DIR)),
        f(6, "secret", Msg(&SECRET_VOLUME)),
        f(10, "persistentVolumeClaim", Msg(&CLAIM_VOLUME)),
        f(16, "downwardAPI", Msg(&DOWNWARD_VOLUME)),
        f(19, "configMap", Msg(&CONFIG_MAP_VOLUME)),
        f(26, "projected", Msg(&PROJECTED_VOLUME)),
    ],
};
static VOLUME: Schema = Schema {
    name: "Volume",
    fields: &[f(1, "name", Str), f(2, "", Inline(&VOLUME_SOURCE))],
};
static POD_SECURITY: Schema = Schema {
    name: "PodSecurityContext",
    fields: &[
        f(2, "runAsUser", PInt),
        f(3, "runAsNonRoot", PBool),
        rep(4, "supplementalGroups", Int),
        f(5, "fsGroup", PInt),
        f(6, "runAsGroup", PInt),
    ],
};
static TOLERATION: Schema = Schema {
    name: "Toleration",
    fields: &[
        f(1, "key", Str),
        f(2, "operator", Str),
        f(3, "value", Str),
        f(4, "effect", Str),
        f(5, "tolerationSeconds", PInt),
    ],
};
static POD_SPEC: Schema = Schema {
    name: "PodSpec",
    fields: &[
        rep(1, "volumes", Msg(&VOLUME)),
        rep(2, "containers", Msg(&CONTAINER)),
        f(3, "restartPolicy", Str),
        f(4, "terminationGracePeriodSeconds", PInt),
        f(5, "activeDeadlineSeconds", PInt),
        f(6, "dnsPolicy", Str),
        f(7, "nodeSelector", StrMap),
        f(8, "serviceAccountName", Str),
        f(9, "serviceAccount", Str),
        f(10, "nodeName", Str),
        f(11, "hostNetwork", Bool),
        f(12, "hostPID", Bool),
        f(13, "hostIPC", Bool),
        f(14, "securityContext", Msg(&POD_SECURITY)),
        rep(15, "imagePullSecrets", Msg(&LOCAL_REF)),
        f(16, "hostname", Str),
        f(17, "subdomain", Str),
        f(19, "schedulerName", Str),
        rep(20, "initContainers", Msg(&CONTAINER)),
        f(21, "automountServiceAccountToken", PBool),
        rep(22, "tolerations", Msg(&TOLERATION)),
        f(24, "priorityClassName", Str),
        f(25, "priority", PInt),
        f(27, "shareProcessNamespace", PBool),
        f(29, "runtimeClassName", PStr),
        f(30, "enableServiceLinks", PBool),
        f(31, "preemptionPolicy", PStr),
    ],
};
/// Metadata of a template: what `object_meta` reads, less what templates never carry.
static POD_TEMPLATE: Schema = Schema {
    name: "PodTemplateSpec",
    fields: &[f(2, "spec", Msg(&POD_SPEC))],
};
static EXIT_CODES: Schema = Schema {
    name: "PodFailurePolicyOnExitCodesRequirement",
    fields: &[
        f(1, "containerName", PStr),
        f(2, "operator", Str),
        rep(3, "values", Int),
    ],
};
static POD_CONDITION_PATTERN: Schema = Schema {
    name: "PodFailurePolicyOnPodConditionsPattern",
    fields: &[f(1, "type", Str), f(2, "status", Str)],
};
static FAILURE_RULE: Schema = Schema {
    name: "PodFailurePolicyRule",
    fields: &[
        f(1, "action", Str),
        f(2, "onExitCodes", Msg(&EXIT_CODES)),
        rep(3, "onPodConditions", Msg(&POD_CONDITION_PATTERN)),
    ],
};
static FAILURE_POLICY: Schema = Schema {
    name: "PodFailurePolicy",
    fields: &[rep(1, "rules", Msg(&FAILURE_RULE))],
};
static JOB_SPEC: Schema = Schema {
    name: "JobSpec",
    fields: &[
        f(1, "parallelism", PInt),
        f(2, "completions", PInt),
        f(3, "activeDeadlineSeconds", PInt),
        f(4, "selector", Msg(&LABEL_SELECTOR)),
        f(5, "manualSelector", PBool),
        f(6, "template", Msg(&POD_TEMPLATE)),
        f(7, "backoffLimit", PInt),
        f(8, "ttlSecondsAfterFinished", PInt),
        f(9, "completionMode", PStr),
        f(10, "suspend", PBool),
        f(11, "podFailurePolicy", Msg(&FAILURE_POLICY)),
        f(12, "backoffLimitPerIndex", PInt),
        f(13, "maxFailedIndexes", PInt),
        f(14, "podReplacementPolicy", PStr),
        f(15, "managedBy", PStr),
    ],
};
static JOB_TEMPLATE: Schema = Schema {
    name: "JobTemplateSpec",
    fields: &[f(2, "spec", Msg(&JOB_SPEC))],
};
static CRON_JOB_SPEC: Schema = Schema {
    name: "CronJobSpec",
    fields: &[
        f(1, "schedule", Str),
        f(2, "startingDeadlineSeconds", PInt),
        f(3, "concurrencyPolicy", Str),
        f(4, "suspend", PBool),
        f(5, "jobTemplate", Msg(&JOB_TEMPLATE)),
        f(6, "successfulJobsHistoryLimit", PInt),
        f(7, "failedJobsHistoryLimit", PInt),
        f(8, "timeZone", PStr),
    ],
};

static ROLLING_UPDATE: Schema = Schema {
    name: "RollingUpdateDeployment",
    fields: &[f(1, "maxUnavailable", IntOrStr), f(2, "maxSurge", IntOrStr)],
};
static DEPLOYMENT_STRATEGY: Schema = Schema {
    name: "DeploymentStrategy",
    fields: &[
        f(1, "type", Str),
        f(2, "rollingUpdate", Msg(&ROLLING_UPDATE)),
    ],
};
static DEPLOYMENT_SPEC: Schema = Schema {
    name: "DeploymentSpec",
    fields: &[
        f(1, "replicas", PInt),
        f(2, "selector", Msg(&LABEL_SELECTOR)),
        f(3, "template", Msg(&POD_TEMPLATE)),
        f(4, "strategy", Msg(&DEPLOYMENT_STRATEGY)),
        f(5, "minReadySeconds", Int),
        f(6, "revisionHistoryLimit", PInt),
        f(7, "paused", Bool),
        f(9, "progressDeadlineSeconds", PInt),
    ],
};
static PDB_SPEC: Schema = Schema {
    name: "PodDisruptionBudgetSpec",
    fields: &[
        f(1, "minAvailable", PIntOrStr),
        f(2, "selector", Msg(&LABEL_SELECTOR)),
        f(3, "maxUnavailable", PIntOrStr),
        f(4, "unhealthyPodEvictionPolicy", PStr),
    ],
};

static SCOPED_REQUIREMENT: Schema = Schema {
    name: "ScopedResourceSelectorRequirement",
    fields: &[
        f(1, "scopeName", Str),
        f(2, "operator", Str),
        rep(3, "values", Str),
    ],
};
static SCOPE_SELECTOR: Schema = Schema {
    name: "ScopeSelector",
    fields: &[rep(1, "matchExpressions", Msg(&SCOPED_REQUIREMENT))],
};
/// `kubectl create quota NAME --hard=… --scopes=…`.
static RESOURCE_QUOTA_SPEC: Schema = Schema {
    name: "ResourceQuotaSpec",
    fields: &[
        f(1, "hard", QtyMap),
        rep(2, "scopes", Str),
        f(3, "scopeSelector", Msg(&SCOPE_SELECTOR)),
    ],
};

static PRECONDITIONS: Schema = Schema {
    name: "Preconditions",
    fields: &[f(1, "uid", PStr), f(2, "resourceVersion", PStr)],
};
/// metav1.DeleteOptions (its TypeMeta is not on the wire).
static DELETE_OPTIONS: Schema = Schema {
    name: "DeleteOptions",
    fields: &[
        f(1, "gracePeriodSeconds", PInt),
        f(2, "preconditions", Msg(&PRECONDITIONS)),
        f(3, "orphanDependents", PBool),
        f(4, "propagationPolicy", PStr),
        rep(5, "dryRun", Str),
        f(6, "ignoreStoreReadErrorWithClusterBreakingPotential", PBool),
    ],
};

/// The `deleteOptions` of an Eviction body (its field 2), as `kubectl drain` sends it.
pub(super) fn delete_options(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    message(b, base, &DELETE_OPTIONS)
}

/// The spec of a Deployment, Job, CronJob, PodDisruptionBudget, ResourceQuota or Pod body
/// (field 2 of the object; a Pod as `kubectl debug --copy-to` and `kubectl debug node/NAME`
/// create it);
/// `None` for other kinds.
pub(super) fn spec(kind: &str, b: &[u8], base: usize) -> Option<Result<Value, ProtobufError>> {
    let msg = match kind {
        "Deployment" => &DEPLOYMENT_SPEC,
        "Job" => &JOB_SPEC,
        "CronJob" => &CRON_JOB_SPEC,
        "PodDisruptionBudget" => &PDB_SPEC,
        "Pod" => &POD_SPEC,
        "ResourceQuota" => &RESOURCE_QUOTA_SPEC,
        _ => return None,
    };
    Some(message(b, base, msg))
}

/// The kinds [`spec`] decodes.
pub(super) fn handles(kind: &str) -> bool {
    matches!(
        kind,
        "Deployment" | "Job" | "CronJob" | "PodDisruptionBudget" | "Pod" | "ResourceQuota"
    )
}

/// A varint as the signed integer the wire's two's complement encodes.
fn signed(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

/// A `metav1.Time`: seconds since the epoch (1) and nanoseconds (2), which JSON writes
/// as RFC 3339 to the second.
fn time(b: &[u8], base: usize) -> Result<Option<Value>, ProtobufError> {
    let mut r = Reader::new(b, base);
    let mut seconds = 0i64;
    while let Some((n, f, _)) = r.next()? {
        if let (1, Field::Varint(v)) = (n, f) {
            seconds = signed(v);
        }
    }
    Ok(jiff::Timestamp::from_second(seconds)
        .ok()
        .map(|t| json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())))
}

fn text(b: &[u8]) -> Value {
    Value::String(String::from_utf8_lossy(b).into_owned())
}

/// A `resource.Quantity` (its string form is field 1).
fn quantity(b: &[u8], base: usize) -> Result<Value, ProtobufError> {
    let mut r = Reader::new(b, base);
    let mut out = Value::String(String::new());
    while let Some((n, f, _)) = r.next()? {
        if let (1, Field::Bytes(s)) = (n, f) {
            out = text(s);
        }
    }
    Ok(out)
}

/// A `map<string, Quantity>` entry.
fn quantity_entry(b: &[u8], base: usize) -> Result<(String, Value), ProtobufError> {
    let mut r = Reader::new(b, base);
    let (mut k, mut v) = (String::new(), Value::String(String::new()));
    while let Some((n, f, at)) = r.next()? {
        match (n, f) {
            (1, Field::Bytes(s)) => k = String::from_utf8_lossy(s).into_owned(),
            (2, Field::Bytes(s)) => v = quantity(s, at)?,
            _ => {}
        }
    }
    Ok((k, v))
}

/// Decodes `b` as `msg`: known fields by their JSON names, metadata (field 1 of templates)
/// as object metadata.
pub(super) fn message(b: &[u8], base: usize, msg: &'static Schema) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    let mut r = Reader::new(b, base);
    while let Some((n, field, at)) = r.next()? {
        let template_meta = matches!(msg.name, "PodTemplateSpec" | "JobTemplateSpec") && n == 1;
        if let (true, Field::Bytes(b)) = (template_meta, &field) {
            out.insert("metadata".into(), object_meta(b, at)?);
            continue;
        }
        let Some(def) = msg.fields.iter().find(|d| d.num == n) else {
            return Err(ProtobufError::UnsupportedField {
                message: msg.name,
                field: n,
            });
        };
        let value = match (def.ty, field) {
            (Str, Field::Bytes(s)) if s.is_empty() && !def.repeated => None,
            (Str | PStr, Field::Bytes(s)) => Some(text(s)),
            (Int | Bool, Field::Varint(0)) if !def.repeated => None,
            (Int | PInt, Field::Varint(v)) => Some(json!(signed(v))),
            (Bool | PBool, Field::Varint(v)) => Some(json!(v != 0)),
            // A packed repeated integer field.
            (Int, Field::Bytes(packed)) if def.repeated => {
                let mut p = Reader::new(packed, at);
                while p.pos < p.buf.len() {
                    let v = p.varint()?;
                    push(&mut out, def.name, json!(signed(v)));
                }
                None
            }
            (Msg(m), Field::Bytes(s)) => Some(message(s, at, m)?),
            (Inline(m), Field::Bytes(s)) => {
                if let Value::Object(inner) = message(s, at, m)? {
                    out.extend(inner);
                }
                None
            }
            (StrMap, Field::Bytes(s)) => {
                let (k, v) = map_entry(s, at, false)?;
                insert(&mut out, def.name, k, v);
                None
            }
            (QtyMap, Field::Bytes(s)) => {
                let (k, v) = quantity_entry(s, at)?;
                insert(&mut out, def.name, k, v);
                None
            }
            (Quantity, Field::Bytes(s)) => Some(quantity(s, at)?),
            (Meta, Field::Bytes(s)) => Some(object_meta(s, at)?),
            (Bytes, Field::Bytes(s)) => {
                use base64::Engine as _;
                Some(json!(base64::engine::general_purpose::STANDARD.encode(s)))
            }
            (Time, Field::Bytes(s)) => time(s, at)?,
            (Ignored, _) => None,
            (IntOrStr, Field::Bytes(s)) => int_or_string(s, at)?,
            (PIntOrStr, Field::Bytes(s)) => Some(int_or_string(s, at)?.unwrap_or(json!(0))),
            _ => return Err(ProtobufError::Malformed { offset: at }),
        };
        if let Some(v) = value {
            if def.repeated {
                push(&mut out, def.name, v);
            } else {
                out.insert(def.name.into(), v);
            }
        }
    }
    Ok(Value::Object(out))
}

fn push(obj: &mut Map<String, Value>, key: &str, v: Value) {
    if let Some(l) = obj
        .entry(key)
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
    {
        l.push(v);
    }
}

fn insert(obj: &mut Map<String, Value>, key: &str, k: String, v: Value) {
    if let Some(m) = obj
        .entry(key)
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
    {
        m.insert(k, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_maps_quantities_and_unknown_fields() {
        // parallelism 0 (a pointer, so kept), suspend true, a limit of 500m CPU.
        let qty = [&b"\x0a\x04500m"[..]].concat();
        let entry = [
            &b"\x0a\x03cpu\x12"[..],
            &[u8::try_from(qty.len()).expect("len")],
            &qty,
        ]
        .concat();
        let resources = [
            &b"\x0a"[..],
            &[u8::try_from(entry.len()).expect("len")],
            &entry,
        ]
        .concat();
        let c = [
            &b"\x0a\x01c\x42"[..],
            &[u8::try_from(resources.len()).expect("len")],
            &resources,
        ]
        .concat();
        let pod = [&b"\x12"[..], &[u8::try_from(c.len()).expect("len")], &c].concat();
        let template = [&b"\x12"[..], &[u8::try_from(pod.len()).expect("len")], &pod].concat();
        let spec = [
            &b"\x08\x00\x50\x01\x32"[..],
            &[u8::try_from(template.len()).expect("len")],
            &template,
        ]
        .concat();
        let v = message(&spec, 0, &JOB_SPEC).expect("spec");
        assert_eq!(v["parallelism"], 0);
        assert_eq!(v["suspend"], true);
        assert_eq!(
            v["template"]["spec"]["containers"][0]["resources"],
            json!({"limits": {"cpu": "500m"}})
        );
        // Field 99 of a container is nothing the tables know: refused, not dropped.
        let unknown = b"\x0a\x01c\x9a\x06\x00";
        assert_eq!(
            message(unknown, 0, &CONTAINER),
            Err(ProtobufError::UnsupportedField {
                message: "Container",
                field: 99
            })
        );
    }
}
