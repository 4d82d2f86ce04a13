//! Validation with kube-apiserver's field paths and messages, for 422 Invalid answers.
//!
//! Messages follow upstream's `field.Error` rendering (`<path>: <type>[: <value>][: <detail>]`)
//! and the wording of `k8s.io/apimachinery/pkg/util/validation`, because users and tests
//! compare them with what a real cluster prints.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// kube-apiserver's `StatusCause.reason` values for field errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseReason {
    FieldValueRequired,
    FieldValueInvalid,
    FieldValueNotSupported,
    FieldValueDuplicate,
    FieldValueForbidden,
    FieldValueTooLong,
    FieldValueTypeInvalid,
    FieldValueNotFound,
    FieldValueTooMany,
}

impl CauseReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            CauseReason::FieldValueRequired => "FieldValueRequired",
            CauseReason::FieldValueInvalid => "FieldValueInvalid",
            CauseReason::FieldValueNotSupported => "FieldValueNotSupported",
            CauseReason::FieldValueDuplicate => "FieldValueDuplicate",
            CauseReason::FieldValueForbidden => "FieldValueForbidden",
            CauseReason::FieldValueTooLong => "FieldValueTooLong",
            CauseReason::FieldValueTypeInvalid => "FieldValueTypeInvalid",
            CauseReason::FieldValueNotFound => "FieldValueNotFound",
            CauseReason::FieldValueTooMany => "FieldValueTooMany",
        }
    }
}

/// One invalid field: `field` is the path (`spec.containers[0].image`), `message` the full text
/// kube-apiserver prints for it (`spec.containers[0].image: Required value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub reason: CauseReason,
    pub message: String,
}

/// Validates a whole object of `kind` on create (after defaulting).
pub fn validate_create(kind: &str, obj: &Value) -> Result<(), Vec<FieldError>> {
    let mut e = Errs::default();
    check_create(&mut e, kind, obj);
    e.finish()
}

/// Validates an update: the new object and what may not change from the old (pod spec fields
/// other than container images, activeDeadlineSeconds, tolerations are immutable, etc.).
pub fn validate_update(kind: &str, old: &Value, new: &Value) -> Result<(), Vec<FieldError>> {
    let mut e = Errs::default();
    meta_update(&mut e, old, new);
    match kind {
        "Pod" => {
            // Metadata rules apply to the new object; the spec may only change in the few
            // places upstream's ValidatePodUpdate allows.
            object_meta(&mut e, new, true, NameRule::Subdomain);
            pod_update(&mut e, old, new);
            mirror_annotation_update(&mut e, old, new);
        }
        "ConfigMap" | "Secret" => {
            check_create(&mut e, kind, new);
            immutable_data_update(&mut e, kind, old, new);
        }
        "Service" => {
            check_create(&mut e, kind, new);
            let old_ip = str_at(old, &["spec", "clusterIP"]);
            let new_ip = str_at(new, &["spec", "clusterIP"]);
            if !old_ip.is_empty() && !new_ip.is_empty() && old_ip != new_ip {
                e.invalid("spec.clusterIP", &Value::from(new_ip), "field is immutable");
            }
        }
        _ => check_create(&mut e, kind, new),
    }
    e.finish()
}

// ---------------------------------------------------------------------------------------
// Error collection and rendering.

#[derive(Default)]
struct Errs(Vec<FieldError>);

impl Errs {
    fn push(&mut self, field: &str, reason: CauseReason, body: String) {
        let message = if field.is_empty() {
            body
        } else {
            format!("{field}: {body}")
        };
        self.0.push(FieldError {
            field: field.to_string(),
            reason,
            message,
        });
    }
    fn required(&mut self, field: &str, detail: &str) {
        self.push(
            field,
            CauseReason::FieldValueRequired,
            with_detail("Required value".into(), detail),
        );
    }
    fn invalid(&mut self, field: &str, value: &Value, detail: &str) {
        let body = format!("Invalid value: {}", go_value(value));
        self.push(
            field,
            CauseReason::FieldValueInvalid,
            with_detail(body, detail),
        );
    }
    fn not_supported(&mut self, field: &str, value: &Value, supported: &[&str]) {
        let list = supported
            .iter()
            .map(|s| go_quote(s))
            .collect::<Vec<_>>()
            .join(", ");
        let body = format!("Unsupported value: {}", go_value(value));
        let detail = if supported.is_empty() {
            String::new()
        } else {
            format!("supported values: {list}")
        };
        self.push(
            field,
            CauseReason::FieldValueNotSupported,
            with_detail(body, &detail),
        );
    }
    fn duplicate(&mut self, field: &str, value: &Value) {
        self.push(
            field,
            CauseReason::FieldValueDuplicate,
            format!("Duplicate value: {}", go_value(value)),
        );
    }
    fn forbidden(&mut self, field: &str, detail: &str) {
        self.push(
            field,
            CauseReason::FieldValueForbidden,
            with_detail("Forbidden".into(), detail),
        );
    }
    fn not_found(&mut self, field: &str, value: &Value) {
        self.push(
            field,
            CauseReason::FieldValueNotFound,
            format!("Not found: {}", go_value(value)),
        );
    }
    fn too_long(&mut self, field: &str, max: usize) {
        let body = format!("Too long: may not be more than {max} bytes");
        self.push(field, CauseReason::FieldValueTooLong, body);
    }
    fn finish(self) -> Result<(), Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(self.0)
        }
    }
}

fn with_detail(body: String, detail: &str) -> String {
    if detail.is_empty() {
        body
    } else {
        format!("{body}: {detail}")
    }
}

/// Go's `%q` for a string: double quotes with Go escapes.
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// How upstream prints a bad value: strings quoted, numbers and booleans bare, `null`.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------------------
// Name and key syntax (k8s.io/apimachinery/pkg/util/validation).

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const CONFIG_KEY_FMT: &str = "[-._a-zA-Z0-9]+";

/// Upstream's `RegexError`: the message, examples and the regex shown to the user.
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut s = format!("{msg} (e.g. ");
    for (i, ex) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push('\'');
        s.push_str(ex);
        s.push_str("', ");
    }
    s.push_str("regex used for validation is '");
    s.push_str(fmt);
    s.push_str("')");
    s
}

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn dns_label_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// `IsDNS1123Label`.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !dns_label_syntax(s) {
        errs.push(regex_error(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// `IsDNS1123Subdomain`.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if !s.split('.').all(dns_label_syntax) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// `IsDNS1035Label` (service names).
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    let ok = dns_label_syntax(s) && s.starts_with(|c: char| c.is_ascii_lowercase());
    if !ok {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

const QUALIFIED_NAME_MSG: &str =
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";

/// `IsQualifiedName`: label keys, annotation keys, finalizers.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push("prefix part must be non-empty".to_string());
            } else {
                errs.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|m| format!("prefix part {m}")),
                );
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_MSG, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else if name.len() > 63 {
        errs.push(format!("name part {}", max_len_error(63)));
    }
    if !name.is_empty() && !qualified_name_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_MSG,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// `IsValidLabelValue`.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push(max_len_error(63));
    }
    if !s.is_empty() && !qualified_name_part(s) {
        errs.push(regex_error(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

/// `IsConfigMapKey`: keys of ConfigMap and Secret data.
pub fn config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 253 {
        errs.push(max_len_error(253));
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
    {
        errs.push(regex_error(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            CONFIG_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if s == "." {
        errs.push("must not be '.'".into());
    } else if s == ".." {
        errs.push("must not be '..'".into());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".into());
    }
    errs
}

/// `IsValidPortNum` message.
const PORT_RANGE_MSG: &str = "must be between 1 and 65535, inclusive";

/// `IsValidPortName`: IANA service names.
pub fn port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Parses a resource quantity (`500m`, `1Gi`, `1e3`, `0.5`) to its numeric value.
pub fn parse_quantity(s: &str) -> Option<f64> {
    let s = s.trim();
    let num_end = s
        .char_indices()
        .find(|(i, c)| !(c.is_ascii_digit() || *c == '.' || ((*c == '+' || *c == '-') && *i == 0)))
        .map(|(i, _)| i)
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(num_end);
    if num.is_empty() || num == "+" || num == "-" || num == "." {
        return None;
    }
    let value: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let e: i32 = exp[1..].parse().ok()?;
            10f64.powi(e)
        }
        _ => return None,
    };
    Some(value * mult)
}

const QUANTITY_MSG: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

// ---------------------------------------------------------------------------------------
// JSON access helpers.

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.get(k))
}

fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn present(v: Option<&Value>) -> bool {
    v.is_some_and(|v| !v.is_null())
}

// ---------------------------------------------------------------------------------------
// Per-kind create rules.

#[derive(Clone, Copy)]
enum NameRule {
    Subdomain,
    Label,
    Dns1035,
}

fn check_create(e: &mut Errs, kind: &str, obj: &Value) {
    let namespaced = !matches!(kind, "Namespace" | "Node");
    let rule = match kind {
        "Namespace" => NameRule::Label,
        "Service" => NameRule::Dns1035,
        _ => NameRule::Subdomain,
    };
    object_meta(e, obj, namespaced, rule);
    match kind {
        "Pod" => {
            if let Some(spec) = obj.get("spec") {
                pod_spec(e, spec, "spec");
            } else {
                e.required("spec.containers", "");
            }
            mirror_annotation_create(e, obj);
        }
        "Namespace" => {
            for (i, f) in arr(at(obj, &["spec", "finalizers"])).iter().enumerate() {
                let s = f.as_str().unwrap_or("");
                for m in qualified_name(s) {
                    e.invalid(&format!("spec.finalizers[{i}]"), f, &m);
                }
            }
        }
        "ConfigMap" => config_data(e, obj, false),
        "Secret" => {
            config_data(e, obj, true);
            secret_type(e, obj);
        }
        "Service" => service(e, obj),
        "Endpoints" => endpoints(e, obj),
        "Lease" => lease(e, obj),
        "Event" => event(e, obj),
        _ => {}
    }
}

fn name_errors(rule: NameRule, name: &str, prefix: bool) -> Vec<String> {
    // A generateName prefix may end in '-' (upstream's maskTrailingDash).
    let name = if prefix && name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 1])
    } else {
        name.to_string()
    };
    match rule {
        NameRule::Subdomain => dns1123_subdomain(&name),
        NameRule::Label => dns1123_label(&name),
        NameRule::Dns1035 => dns1035_label(&name),
    }
}

/// `ValidateObjectMeta`.
fn object_meta(e: &mut Errs, obj: &Value, namespaced: bool, rule: NameRule) {
    let meta = obj.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let generate = meta
        .and_then(|m| m.get("generateName"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if !generate.is_empty() {
        for m in name_errors(rule, generate, true) {
            e.invalid("metadata.generateName", &Value::from(generate), &m);
        }
    }
    if name.is_empty() {
        if generate.is_empty() {
            e.required("metadata.name", "name or generateName is required");
        }
    } else {
        for m in name_errors(rule, name, false) {
            e.invalid("metadata.name", &Value::from(name), &m);
        }
    }
    let ns = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if namespaced {
        if ns.is_empty() {
            e.required("metadata.namespace", "");
        } else {
            for m in dns1123_label(ns) {
                e.invalid("metadata.namespace", &Value::from(ns), &m);
            }
        }
    } else if !ns.is_empty() {
        e.forbidden("metadata.namespace", "not allowed on this type");
    }
    if let Some(g) = meta
        .and_then(|m| m.get("generation"))
        .and_then(Value::as_i64)
    {
        if g < 0 {
            e.invalid(
                "metadata.generation",
                &Value::from(g),
                "must be greater than or equal to 0",
            );
        }
    }
    labels(
        e,
        obj.get("metadata").and_then(|m| m.get("labels")),
        "metadata.labels",
    );
    annotations(e, meta.and_then(|m| m.get("annotations")));
    for r in arr(meta.and_then(|m| m.get("ownerReferences"))) {
        let api_version = r.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let version = api_version.rsplit('/').next().unwrap_or("");
        let p = "metadata.ownerReferences";
        if version.is_empty() {
            e.invalid(
                &format!("{p}.apiVersion"),
                &Value::from(api_version),
                "version must not be empty",
            );
        }
        for (k, what) in [("kind", "kind"), ("name", "name"), ("uid", "uid")] {
            if r.get(k).and_then(Value::as_str).unwrap_or("").is_empty() {
                e.invalid(
                    &format!("{p}.{k}"),
                    &Value::from(""),
                    &format!("{what} must not be empty"),
                );
            }
        }
    }
    for f in arr(meta.and_then(|m| m.get("finalizers"))) {
        let s = f.as_str().unwrap_or("");
        for m in qualified_name(s) {
            e.invalid("metadata.finalizers", f, &m);
        }
    }
}

/// `ValidateLabels` at `path` (also node selectors and service selectors).
fn labels(e: &mut Errs, labels: Option<&Value>, path: &str) {
    let Some(map) = obj(labels) else { return };
    for (k, v) in map {
        for m in qualified_name(k) {
            e.invalid(path, &Value::from(k.as_str()), &m);
        }
        let v = v.as_str().unwrap_or("");
        for m in label_value(v) {
            e.invalid(path, &Value::from(v), &m);
        }
    }
}

const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

fn annotations(e: &mut Errs, ann: Option<&Value>) {
    let Some(map) = obj(ann) else { return };
    let mut total = 0;
    for (k, v) in map {
        for m in qualified_name(&k.to_lowercase()) {
            e.invalid("metadata.annotations", &Value::from(k.as_str()), &m);
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE {
        e.too_long("metadata.annotations", TOTAL_ANNOTATION_SIZE);
    }
}

fn enum_field(e: &mut Errs, v: Option<&Value>, path: &str, supported: &[&str]) {
    match v.and_then(Value::as_str) {
        None | Some("") => e.required(path, ""),
        Some(s) if supported.contains(&s) => {}
        Some(s) => e.not_supported(path, &Value::from(s), supported),
    }
}

fn nonnegative(e: &mut Errs, v: Option<&Value>, path: &str) {
    if let Some(n) = v.and_then(Value::as_i64) {
        if n < 0 {
            e.invalid(path, &Value::from(n), "must be greater than or equal to 0");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Pods.

fn pod_spec(e: &mut Errs, spec: &Value, path: &str) {
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
    labels(e, spec.get("nodeSelector"), &format!("{path}.nodeSelector"));
    for (key, label) in [
        ("nodeName", false),
        ("serviceAccountName", false),
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
    for (i, t) in arr(spec.get("tolerations")).iter().enumerate() {
        toleration(e, t, &format!("{path}.tolerations[{i}]"));
    }
    nonnegative(
        e,
        spec.get("terminationGracePeriodSeconds"),
        &format!("{path}.terminationGracePeriodSeconds"),
    );
}

fn pod_volumes(e: &mut Errs, spec: &Value, path: &str) -> BTreeSet<String> {
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
        let sources = crate::defaults::volume_sources(map);
        match sources.as_slice() {
            [] => e.required(&vp, "must specify a volume type"),
            [_] => {}
            [_, second, ..] => e.forbidden(
                &format!("{vp}.{second}"),
                "may not specify more than 1 volume type",
            ),
        }
        let required = |e: &mut Errs, src: &str, field: &str| {
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
    e: &mut Errs,
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
    if let Some(rp) = c.get("restartPolicy").and_then(Value::as_str) {
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
    volume_mounts(e, c, path, volumes);
    resources(e, c.get("resources"), &format!("{path}.resources"));
    let sidecar = c.get("restartPolicy").and_then(Value::as_str) == Some("Always");
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let Some(p) = c.get(probe).filter(|p| !p.is_null()) else {
            continue;
        };
        let pp = format!("{path}.{probe}");
        if key == "ephemeralContainers" || (key == "initContainers" && !sidecar) {
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

fn ports(e: &mut Errs, c: &Value, path: &str) {
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

fn env(e: &mut Errs, c: &Value, path: &str) {
    for (i, v) in arr(c.get("env")).iter().enumerate() {
        let ep = format!("{path}.env[{i}]");
        let name = v.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            e.required(&format!("{ep}.name"), "");
        } else if !name.chars().all(|c| (' '..='~').contains(&c) && c != '=') {
            // RelaxedEnvironmentVariableValidation is on by default in v1.33.
            e.invalid(
                &format!("{ep}.name"),
                &Value::from(name),
                "a valid environment variable name must consist only of printable ASCII characters other than '='",
            );
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

fn volume_mounts(e: &mut Errs, c: &Value, path: &str, volumes: &BTreeSet<String>) {
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
    }
}

fn resources(e: &mut Errs, res: Option<&Value>, path: &str) {
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

fn quantity_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn validate_probe(e: &mut Errs, p: &Value, path: &str, success_must_be_one: bool) {
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

fn handler(e: &mut Errs, h: &Value, path: &str, kinds: &[&str]) {
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

fn port_or_name(e: &mut Errs, v: Option<&Value>, path: &str) {
    match v {
        Some(Value::Number(n)) => {
            let n = n.as_i64().unwrap_or(0);
            if !(1..=65535).contains(&n) {
                e.invalid(path, &Value::from(n), PORT_RANGE_MSG);
            }
        }
        Some(Value::String(s)) => {
            if let Ok(n) = s.parse::<i64>() {
                if !(1..=65535).contains(&n) {
                    e.invalid(path, &Value::from(n), PORT_RANGE_MSG);
                }
            } else {
                for m in port_name(s) {
                    e.invalid(path, &Value::from(s.as_str()), &m);
                }
            }
        }
        _ => e.invalid(path, &Value::from(0), PORT_RANGE_MSG),
    }
}

fn toleration(e: &mut Errs, t: &Value, path: &str) {
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

// ---------------------------------------------------------------------------------------
// Other kinds.

const MAX_CONFIG_SIZE: usize = 1024 * 1024;

fn config_data(e: &mut Errs, obj: &Value, secret: bool) {
    let mut total = 0;
    let parts: &[&str] = if secret {
        &["data", "stringData"]
    } else {
        &["data", "binaryData"]
    };
    let mut keys = BTreeSet::new();
    for part in parts {
        let Some(map) = obj.get(*part).and_then(Value::as_object) else {
            continue;
        };
        for (k, v) in map {
            let fp = format!("{part}[{k}]");
            for m in config_map_key(k) {
                e.invalid(&fp, &Value::from(k.as_str()), &m);
            }
            if !secret && !keys.insert(k.clone()) {
                e.invalid(
                    &fp,
                    &Value::from(k.as_str()),
                    "duplicate of key present in data",
                );
            }
            total += v.as_str().map_or(0, str::len);
        }
    }
    if total > MAX_CONFIG_SIZE {
        let what = if secret { "data" } else { "" };
        e.too_long(what, MAX_CONFIG_SIZE);
    }
}

fn secret_type(e: &mut Errs, obj: &Value) {
    let ty = obj.get("type").and_then(Value::as_str).unwrap_or("");
    let has = |k: &str| {
        ["data", "stringData"]
            .iter()
            .any(|p| obj.get(*p).and_then(|m| m.get(k)).is_some())
    };
    // Keys each built-in secret type requires (upstream ValidateSecret).
    let required: &[&str] = match ty {
        "kubernetes.io/tls" => &["tls.crt", "tls.key"],
        "kubernetes.io/dockerconfigjson" => &[".dockerconfigjson"],
        "kubernetes.io/dockercfg" => &[".dockercfg"],
        "kubernetes.io/ssh-auth" => &["ssh-privatekey"],
        // Basic auth needs at least one of the two.
        "kubernetes.io/basic-auth" if !has("username") && !has("password") => {
            &["username", "password"]
        }
        _ => &[],
    };
    for k in required.iter().filter(|k| !has(k)) {
        e.required(&format!("data[{k}]"), "");
    }
    let sa_annotation = str_at(
        obj,
        &[
            "metadata",
            "annotations",
            "kubernetes.io/service-account.name",
        ],
    );
    if ty == "kubernetes.io/service-account-token" && sa_annotation.is_empty() {
        e.required(
            "metadata.annotations[kubernetes.io/service-account.name]",
            "",
        );
    }
}

fn service(e: &mut Errs, obj: &Value) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let ty = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    const TYPES: &[&str] = &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
    if !TYPES.contains(&ty) {
        e.not_supported("spec.type", &Value::from(ty), TYPES);
    }
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let ports = arr(spec.get("ports"));
    if ty == "ExternalName" {
        if spec
            .get("externalName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            e.required("spec.externalName", "");
        }
    } else if ports.is_empty() && !headless {
        e.required("spec.ports", "");
    }
    let mut names = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let pp = format!("spec.ports[{i}]");
        let name = p.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            if ports.len() > 1 {
                e.required(&format!("{pp}.name"), "");
            }
        } else {
            for m in dns1123_label(name) {
                e.invalid(&format!("{pp}.name"), &Value::from(name), &m);
            }
            if !names.insert(name.to_string()) {
                e.duplicate(&format!("{pp}.name"), &Value::from(name));
            }
        }
        match p.get("port").and_then(Value::as_i64) {
            Some(n) if (1..=65535).contains(&n) => {}
            other => e.invalid(
                &format!("{pp}.port"),
                &Value::from(other.unwrap_or(0)),
                PORT_RANGE_MSG,
            ),
        }
        enum_field(
            e,
            p.get("protocol"),
            &format!("{pp}.protocol"),
            &["SCTP", "TCP", "UDP"],
        );
        if present(p.get("targetPort")) {
            port_or_name(e, p.get("targetPort"), &format!("{pp}.targetPort"));
        }
        if let Some(n) = p.get("nodePort").and_then(Value::as_i64) {
            if n != 0 && !(1..=65535).contains(&n) {
                e.invalid(&format!("{pp}.nodePort"), &Value::from(n), PORT_RANGE_MSG);
            }
        }
    }
    if let Some(a) = spec.get("sessionAffinity").and_then(Value::as_str) {
        if a != "ClientIP" && a != "None" {
            e.not_supported(
                "spec.sessionAffinity",
                &Value::from(a),
                &["ClientIP", "None"],
            );
        }
    }
    labels(e, spec.get("selector"), "spec.selector");
}

fn endpoints(e: &mut Errs, obj: &Value) {
    for (i, s) in arr(obj.get("subsets")).iter().enumerate() {
        for key in ["addresses", "notReadyAddresses"] {
            for (j, a) in arr(s.get(key)).iter().enumerate() {
                let ip = a.get("ip").and_then(Value::as_str).unwrap_or("");
                if ip.parse::<std::net::IpAddr>().is_err() {
                    e.invalid(
                        &format!("subsets[{i}].{key}[{j}].ip"),
                        &Value::from(ip),
                        "must be a valid IP address",
                    );
                }
            }
        }
        for (j, p) in arr(s.get("ports")).iter().enumerate() {
            match p.get("port").and_then(Value::as_i64) {
                Some(n) if (1..=65535).contains(&n) => {}
                other => e.invalid(
                    &format!("subsets[{i}].ports[{j}].port"),
                    &Value::from(other.unwrap_or(0)),
                    PORT_RANGE_MSG,
                ),
            }
        }
    }
}

fn lease(e: &mut Errs, obj: &Value) {
    if let Some(n) = at(obj, &["spec", "leaseDurationSeconds"]).and_then(Value::as_i64) {
        if n <= 0 {
            e.invalid(
                "spec.leaseDurationSeconds",
                &Value::from(n),
                "must be greater than 0",
            );
        }
    }
    nonnegative(
        e,
        at(obj, &["spec", "leaseTransitions"]),
        "spec.leaseTransitions",
    );
}

fn event(e: &mut Errs, obj: &Value) {
    let ns = str_at(obj, &["metadata", "namespace"]);
    let ins = str_at(obj, &["involvedObject", "namespace"]);
    if !ins.is_empty() && !ns.is_empty() && ins != ns {
        e.invalid(
            "involvedObject.namespace",
            &Value::from(ins),
            "does not match event.namespace",
        );
    }
}

// ---------------------------------------------------------------------------------------
// Updates.

fn meta_update(e: &mut Errs, old: &Value, new: &Value) {
    for (field, key) in [
        ("metadata.name", "name"),
        ("metadata.namespace", "namespace"),
        ("metadata.uid", "uid"),
        ("metadata.creationTimestamp", "creationTimestamp"),
    ] {
        let o = str_at(old, &["metadata", key]);
        let n = str_at(new, &["metadata", key]);
        // An empty new value is filled from the stored object by the server.
        if !n.is_empty() && o != n {
            e.invalid(field, &Value::from(n), "field is immutable");
        }
    }
    let o_del = at(old, &["metadata", "deletionGracePeriodSeconds"]).filter(|v| !v.is_null());
    let n_del = at(new, &["metadata", "deletionGracePeriodSeconds"]).filter(|v| !v.is_null());
    if o_del.is_some() && n_del != o_del {
        e.invalid(
            "metadata.deletionGracePeriodSeconds",
            n_del.unwrap_or(&Value::Null),
            "field is immutable; may only be changed via deletion",
        );
    }
}

const POD_UPDATE_MSG: &str = "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

/// The annotation kubelet puts on mirror pods (the API's copies of static pods).
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// upstream's ValidatePodSpecificAnnotations: a mirror pod names its node.
fn mirror_annotation_create(e: &mut Errs, obj: &Value) {
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
fn mirror_annotation_update(e: &mut Errs, old: &Value, new: &Value) {
    let path = ["metadata", "annotations", MIRROR_POD_ANNOTATION];
    let field = format!("metadata.annotations[{MIRROR_POD_ANNOTATION}]");
    match (at(old, &path), at(new, &path)) {
        (Some(o), Some(n)) if o == n => {}
        (Some(_), _) => e.forbidden(&field, "may not remove or update mirror pod annotation"),
        (None, Some(_)) => e.forbidden(&field, "may not add mirror pod annotation"),
        (None, None) => {}
    }
}

fn pod_update(e: &mut Errs, old: &Value, new: &Value) {
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
    ephemeral_update(e, old_spec, new_spec);
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
        // Ephemeral containers change only through their own subresource.
        restore(m, old_spec, "ephemeralContainers");
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

/// Ephemeral containers may be added (the `ephemeralcontainers` subresource `kubectl debug`
/// patches) but an existing one may not change; new ones get the container checks.
fn ephemeral_update(e: &mut Errs, old_spec: &Value, new_spec: &Value) {
    let mut names: BTreeSet<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| arr(new_spec.get(*k)))
        .filter_map(|c| c.get("name").and_then(Value::as_str).map(str::to_string))
        .collect();
    // Volume errors were reported when the pod was created; only the names matter here.
    let volumes = pod_volumes(&mut Errs::default(), new_spec, "spec");
    let old_list = arr(old_spec.get("ephemeralContainers"));
    for (i, c) in arr(new_spec.get("ephemeralContainers")).iter().enumerate() {
        let path = format!("spec.ephemeralContainers[{i}]");
        let name = c.get("name").and_then(Value::as_str).unwrap_or("");
        match old_list
            .iter()
            .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
        {
            Some(o) if o != c => e.forbidden(
                &path,
                &format!(
                    "existing ephemeral containers {} may not be changed",
                    go_quote(name)
                ),
            ),
            Some(_) => {
                names.insert(name.to_string());
            }
            None => container(e, c, &path, "ephemeralContainers", &volumes, &mut names),
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

fn immutable_data_update(e: &mut Errs, kind: &str, old: &Value, new: &Value) {
    if kind == "Secret" {
        let (o, n) = (str_at(old, &["type"]), str_at(new, &["type"]));
        if o != n {
            e.invalid("type", &Value::from(n), "field is immutable");
        }
    }
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return;
    }
    const MSG: &str = "field is immutable when `immutable` is set";
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        e.forbidden("immutable", MSG);
    }
    let parts: &[&str] = if kind == "Secret" {
        &["data"]
    } else {
        &["data", "binaryData"]
    };
    for part in parts {
        let empty = Value::Object(Map::new());
        let o = old.get(*part).filter(|v| !v.is_null()).unwrap_or(&empty);
        let n = new.get(*part).filter(|v| !v.is_null()).unwrap_or(&empty);
        if o != n {
            e.forbidden(part, MSG);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(spec: Value) -> Value {
        let mut p = json!({"apiVersion":"v1","kind":"Pod","metadata":{"name":"web","namespace":"default"},"spec":spec});
        crate::defaults::apply_defaults("Pod", &mut p);
        p
    }

    fn messages(r: Result<(), Vec<FieldError>>) -> Vec<String> {
        r.err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.message)
            .collect()
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
        assert_eq!(validate_create("Pod", &p), Ok(()));
    }

    #[test]
    fn missing_image() {
        let p = pod(json!({"containers":[{"name":"a"}]}));
        let errs = validate_create("Pod", &p).expect_err("invalid");
        assert_eq!(errs.len(), 1);
        assert_eq!(errs[0].field, "spec.containers[0].image");
        assert_eq!(errs[0].reason, CauseReason::FieldValueRequired);
        assert_eq!(errs[0].message, "spec.containers[0].image: Required value");
    }

    #[test]
    fn names() {
        let mut p = pod(json!({"containers":[{"name":"A","image":"x"},{"name":"A","image":"x"}]}));
        p["metadata"]["name"] = json!("Web_1");
        let m = messages(validate_create("Pod", &p));
        assert_eq!(m[0], "metadata.name: Invalid value: \"Web_1\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')");
        assert_eq!(m[1], "spec.containers[0].name: Invalid value: \"A\": a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')");
        assert!(m.contains(&"spec.containers[1].name: Duplicate value: \"A\"".to_string()));

        let mut p = pod(json!({"containers":[{"name":"a","image":"x"}]}));
        p["metadata"] = json!({"namespace":"default"});
        assert_eq!(
            messages(validate_create("Pod", &p)),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        p["metadata"]["generateName"] = json!("web-");
        assert_eq!(validate_create("Pod", &p), Ok(()));
    }

    #[test]
    fn labels_and_namespace() {
        let mut p = pod(json!({"containers":[{"name":"a","image":"x"}]}));
        p["metadata"]["labels"] = json!({"a/b/c":"x", "ok": "bad value"});
        let m = messages(validate_create("Pod", &p));
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[0].starts_with(
            "metadata.labels: Invalid value: \"a/b/c\": a qualified name must consist of"
        ));
        assert!(m[1].starts_with(
            "metadata.labels: Invalid value: \"bad value\": a valid label must be an empty string"
        ));
        let ns = json!({"metadata":{"name":"dev","namespace":"x"}});
        assert_eq!(
            messages(validate_create("Namespace", &ns)),
            vec!["metadata.namespace: Forbidden: not allowed on this type"]
        );
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
        let m = messages(validate_create("Pod", &p));
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
            messages(validate_create("Pod", &p)),
            vec!["spec.containers: Required value"]
        );
    }

    #[test]
    fn mirror_pod_annotation_rules() {
        let mut mirror = pod(json!({"containers":[{"name":"a","image":"nginx:1"}]}));
        mirror["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
        let errs = validate_create("Pod", &mirror).expect_err("no nodeName");
        assert_eq!(
            errs[0].message,
            "metadata.annotations[kubernetes.io/config.mirror]: Invalid value: \"abc\": must set spec.nodeName if mirror pod annotation is set"
        );
        mirror["spec"]["nodeName"] = json!("n1");
        assert_eq!(validate_create("Pod", &mirror), Ok(()));
        let mut changed = mirror.clone();
        changed["metadata"]["annotations"]["kubernetes.io/config.mirror"] = json!("def");
        let errs = validate_update("Pod", &mirror, &changed).expect_err("changed");
        assert_eq!(
            errs[0].message,
            "metadata.annotations[kubernetes.io/config.mirror]: Forbidden: may not remove or update mirror pod annotation"
        );
        let mut plain = mirror.clone();
        plain["metadata"]["annotations"] = json!({});
        assert!(validate_update("Pod", &mirror, &plain).is_err());
        let errs = validate_update("Pod", &plain, &mirror).expect_err("added");
        assert!(errs[0]
            .message
            .ends_with("may not add mirror pod annotation"));
        let mut labelled = mirror.clone();
        labelled["metadata"]["labels"] = json!({"x": "y"});
        assert_eq!(validate_update("Pod", &mirror, &labelled), Ok(()));
    }

    #[test]
    fn pod_update_rules() {
        let old = pod(json!({"containers":[{"name":"a","image":"nginx:1"}]}));
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:2");
        new["metadata"]["labels"] = json!({"x":"y"});
        assert_eq!(validate_update("Pod", &old, &new), Ok(()));
        if let Some(t) = new["spec"]["tolerations"].as_array_mut() {
            t.push(json!({"key":"k","operator":"Exists"}));
        }
        assert_eq!(validate_update("Pod", &old, &new), Ok(()));
        new["spec"]["restartPolicy"] = json!("Never");
        let errs = validate_update("Pod", &old, &new).expect_err("forbidden");
        assert_eq!(errs[0].field, "spec");
        assert!(errs[0]
            .message
            .starts_with(&format!("spec: Forbidden: {POD_UPDATE_MSG}\n")));
        let mut debug = old.clone();
        debug["spec"]["ephemeralContainers"] = json!([{"name":"dbg","image":"busybox",
            "imagePullPolicy":"IfNotPresent","terminationMessagePolicy":"File"}]);
        assert_eq!(validate_update("Pod", &old, &debug), Ok(()));
        let mut changed = debug.clone();
        changed["spec"]["ephemeralContainers"][0]["image"] = json!("alpine");
        assert_eq!(
            messages(validate_update("Pod", &debug, &changed)),
            vec!["spec.ephemeralContainers[0]: Forbidden: existing ephemeral containers \"dbg\" may not be changed"]
        );
        let mut clash = old.clone();
        clash["spec"]["ephemeralContainers"] = json!([{"name":"a","image":"busybox",
            "imagePullPolicy":"IfNotPresent","terminationMessagePolicy":"File"}]);
        assert_eq!(
            messages(validate_update("Pod", &old, &clash)),
            vec!["spec.ephemeralContainers[0].name: Duplicate value: \"a\""]
        );
        let mut renamed = old.clone();
        renamed["metadata"]["name"] = json!("other");
        assert_eq!(
            messages(validate_update("Pod", &old, &renamed)),
            vec!["metadata.name: Invalid value: \"other\": field is immutable"]
        );
    }

    #[test]
    fn configmap_secret_service_lease() {
        let cm = json!({"metadata":{"name":"c","namespace":"d"},"data":{"a b":"x"}});
        let m = messages(validate_create("ConfigMap", &cm));
        assert_eq!(m, vec!["data[a b]: Invalid value: \"a b\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"]);
        let old =
            json!({"metadata":{"name":"c","namespace":"d"},"immutable":true,"data":{"a":"1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        assert_eq!(
            messages(validate_update("ConfigMap", &old, &new)),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        let tls =
            json!({"metadata":{"name":"s","namespace":"d"},"type":"kubernetes.io/tls","data":{}});
        assert_eq!(
            messages(validate_create("Secret", &tls)),
            vec![
                "data[tls.crt]: Required value",
                "data[tls.key]: Required value"
            ]
        );
        let mut svc =
            json!({"metadata":{"name":"1web","namespace":"d"},"spec":{"ports":[{"port":80}]}});
        crate::defaults::apply_defaults("Service", &mut svc);
        let m = messages(validate_create("Service", &svc));
        assert_eq!(m.len(), 1);
        assert!(m[0].starts_with("metadata.name: Invalid value: \"1web\": a DNS-1035 label"));
        let lease = json!({"metadata":{"name":"n","namespace":"kube-node-lease"},"spec":{"leaseDurationSeconds":0}});
        assert_eq!(
            messages(validate_create("Lease", &lease)),
            vec!["spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0"]
        );
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("500m"), Some(0.5));
        assert_eq!(parse_quantity("1Gi"), Some(1073741824.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("2"), Some(2.0));
        assert_eq!(parse_quantity("abc"), None);
        assert_eq!(parse_quantity("1Xi"), None);
    }

    #[test]
    fn syntax_helpers() {
        assert!(dns1123_label("my-name").is_empty());
        assert!(!dns1123_label("-x").is_empty());
        assert_eq!(
            dns1123_label(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
        assert!(dns1123_subdomain("a.b-c.d").is_empty());
        assert!(qualified_name("example.com/My_Name.1").is_empty());
        assert_eq!(qualified_name("/x"), vec!["prefix part must be non-empty"]);
        assert!(label_value("").is_empty());
        assert!(port_name("http").is_empty());
        assert_eq!(
            port_name("80"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert_eq!(go_quote("a\"b\n"), "\"a\\\"b\\n\"");
    }
}
