//! CertificateSigningRequests (certificates.k8s.io/v1, cluster-scoped): a request for a
//! certificate from a named signer. kube-apiserver records who asked (`spec.username`,
//! `uid`, `groups`, `extra`), keeps the spec as created, lets the `approval` and `status`
//! subresources change only the status (approval conditions, the issued certificate), and
//! validates the request (a PEM `CERTIFICATE REQUEST`), the signer name, the usages, the
//! requested duration and the conditions. `kubectl get csr` shows NAME / AGE / SIGNERNAME /
//! REQUESTOR / REQUESTEDDURATION / CONDITION.

use base64::Engine as _;
use k8s_openapi::api::certificates::v1::CertificateSigningRequest;
use serde_json::{json, Value};

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::str_at;
use apimachinery::printing::{human_duration, name_and_age, Column, AGE, NAME};
use apimachinery::strategy::{
    reset_status, sub, typed_round_trip, ResourceInfo, Strategy, ALL_VERBS, STATUS_VERBS,
};

pub const RESOURCE: ResourceInfo = ResourceInfo {
    group: "certificates.k8s.io",
    version: "v1",
    plural: "certificatesigningrequests",
    singular: "certificatesigningrequest",
    kind: "CertificateSigningRequest",
    list_kind: "CertificateSigningRequestList",
    namespaced: false,
    short_names: &["csr"],
    categories: &[],
    verbs: ALL_VERBS,
    subresources: &[
        sub(
            "approval",
            "certificates.k8s.io",
            "CertificateSigningRequest",
            STATUS_VERBS,
        ),
        sub(
            "status",
            "certificates.k8s.io",
            "CertificateSigningRequest",
            STATUS_VERBS,
        ),
    ],
    strategy: &Csrs,
};

/// Upstream's `KeyUsage` values.
const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

const CONDITION_TYPES: &[&str] = &["Approved", "Denied", "Failed"];
const MIN_EXPIRATION_SECONDS: i64 = 600;

#[derive(Debug)]
struct Csrs;

/// The decoded `spec.request`, if it is base64 at all.
fn request_text(csr: &Value) -> Option<String> {
    let b64 = csr.pointer("/spec/request")?.as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    String::from_utf8(bytes).ok()
}

fn validate_signer_name(signer: &str, e: &mut FieldErrors) {
    if signer.is_empty() {
        e.required("spec.signerName", "");
        return;
    }
    let ok = signer.split_once('/').is_some_and(|(domain, path)| {
        !domain.is_empty()
            && domain.contains('.')
            && domain
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
            && !path.is_empty()
    });
    if !ok {
        e.invalid(
            "spec.signerName",
            &Value::from(signer),
            "must be a fully qualified domain and path of the form 'example.com/signer-name'",
        );
    }
}

fn validate_conditions(csr: &Value, e: &mut FieldErrors) {
    let Some(conds) = csr.pointer("/status/conditions").and_then(Value::as_array) else {
        return;
    };
    let mut seen: Vec<&str> = Vec::new();
    for (i, c) in conds.iter().enumerate() {
        let path = format!("status.conditions[{i}]");
        let t = str_at(c, &["type"]);
        if t.is_empty() {
            e.required(&format!("{path}.type"), "");
        } else if seen.contains(&t) && CONDITION_TYPES.contains(&t) {
            e.duplicate(&format!("{path}.type"), &Value::from(t));
        }
        let status = str_at(c, &["status"]);
        if !["True", "False", "Unknown"].contains(&status) {
            e.not_supported(
                &format!("{path}.status"),
                &Value::from(status),
                &["False", "True", "Unknown"],
            );
        }
        let exclusive = (t == "Approved" && seen.contains(&"Denied"))
            || (t == "Denied" && seen.contains(&"Approved"));
        if exclusive {
            e.invalid(
                &format!("{path}.type"),
                &Value::from(t),
                "Approved and Denied conditions are mutually exclusive",
            );
        }
        seen.push(t);
    }
}

impl Strategy for Csrs {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        typed_round_trip::<CertificateSigningRequest>(obj)
    }

    fn validate(&self, csr: &Value, e: &mut FieldErrors) {
        match request_text(csr) {
            None if csr.pointer("/spec/request").is_none() => e.required("spec.request", ""),
            Some(pem) if pem.contains("-----BEGIN CERTIFICATE REQUEST-----") => {
                if let Err(err) = nodetrust::csr::subject(&pem) {
                    e.invalid_text("spec.request", "[]byte{...}", &err.to_string());
                }
            }
            _ => e.invalid_text(
                "spec.request",
                "[]byte{...}",
                "PEM block type must be CERTIFICATE REQUEST",
            ),
        }
        validate_signer_name(str_at(csr, &["spec", "signerName"]), e);
        match csr.pointer("/spec/usages").and_then(Value::as_array) {
            Some(usages) if !usages.is_empty() => {
                let mut seen = Vec::new();
                for (i, u) in usages.iter().enumerate() {
                    let path = format!("spec.usages[{i}]");
                    if !u.as_str().is_some_and(|u| USAGES.contains(&u)) {
                        e.not_supported(&path, u, USAGES);
                    } else if seen.contains(&u) {
                        e.duplicate(&path, u);
                    }
                    seen.push(u);
                }
            }
            _ => e.required("spec.usages", ""),
        }
        if let Some(secs) = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_i64)
        {
            if secs < MIN_EXPIRATION_SECONDS {
                e.invalid(
                    "spec.expirationSeconds",
                    &Value::from(secs),
                    "may not specify a duration less than 600 seconds (10 minutes)",
                );
            }
        }
        validate_conditions(csr, e);
    }

    /// The spec is fixed at create (kube's strategy puts the old spec back); only the
    /// conditions are checked again.
    fn validate_update(&self, _old: &Value, new: &Value, e: &mut FieldErrors) {
        validate_conditions(new, e);
    }

    fn prepare_for_create(&self, csr: &mut Value) {
        reset_status(csr, None);
    }

    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        for part in ["spec", "status"] {
            match old.get(part) {
                Some(v) => new[part] = v.clone(),
                None => {
                    if let Some(o) = new.as_object_mut() {
                        o.remove(part);
                    }
                }
            }
        }
    }

    fn object_subresources(&self) -> &'static [&'static str] {
        &["approval"]
    }

    /// The `approval` subresource changes only the conditions (kube's
    /// `csrApprovalStrategy`); everything else stays as stored.
    fn prepare_for_subresource_update(&self, _sub: &str, old: &Value, new: &mut Value) {
        let conditions = new.pointer("/status/conditions").cloned();
        let mut out = old.clone();
        match conditions {
            Some(c) => {
                if !out.get("status").is_some_and(Value::is_object) {
                    out["status"] = json!({});
                }
                out["status"]["conditions"] = c;
            }
            None => {
                if let Some(status) = out.get_mut("status").and_then(Value::as_object_mut) {
                    status.remove("conditions");
                }
            }
        }
        *new = out;
    }

    fn validate_subresource_update(
        &self,
        _sub: &str,
        _old: &Value,
        new: &Value,
        e: &mut FieldErrors,
    ) {
        validate_conditions(new, e);
    }

    fn set_requester(&self, csr: &mut Value, user: &Value) {
        if !csr.get("spec").is_some_and(Value::is_object) {
            return;
        }
        let spec = &mut csr["spec"];
        for (field, from) in [
            ("username", "username"),
            ("uid", "uid"),
            ("groups", "groups"),
            ("extra", "extra"),
        ] {
            match user.get(from).filter(|v| !is_empty(v)) {
                Some(v) => spec[field] = v.clone(),
                None => {
                    if let Some(o) = spec.as_object_mut() {
                        o.remove(field);
                    }
                }
            }
        }
    }

    #[rustfmt::skip]
    fn columns(&self) -> &'static [Column] {
        &[
            NAME,
            AGE,
            ("SignerName", "string", "", 0, "The signer the request is addressed to."),
            ("Requestor", "string", "", 0, "Who made the request."),
            ("RequestedDuration", "string", "", 0, "How long the certificate should be valid."),
            ("Condition", "string", "", 0, "Whether the request was approved, denied or failed, and issued."),
        ]
    }

    fn cells(&self, csr: &Value, now: jiff::Timestamp) -> Vec<Value> {
        let (name, age) = name_and_age(csr, now);
        let duration = csr
            .pointer("/spec/expirationSeconds")
            .and_then(Value::as_u64)
            .map(|s| human_duration(std::time::Duration::from_secs(s)))
            .unwrap_or_else(|| "<none>".into());
        vec![
            name,
            age,
            json!(str_at(csr, &["spec", "signerName"])),
            json!(str_at(csr, &["spec", "username"])),
            json!(duration),
            json!(condition(csr)),
        ]
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// kubectl's CONDITION: the condition types that hold, then `Issued` once there is a
/// certificate; `Pending` when neither.
pub fn condition(csr: &Value) -> String {
    let mut parts: Vec<String> = csr
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter(|c| str_at(c, &["status"]) == "True")
                .map(|c| str_at(c, &["type"]).to_string())
                .collect()
        })
        .unwrap_or_default();
    if csr
        .pointer("/status/certificate")
        .and_then(Value::as_str)
        .is_some_and(|c| !c.is_empty())
    {
        parts.push("Issued".into());
    }
    if parts.is_empty() {
        "Pending".into()
    } else {
        parts.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{messages, now};

    fn request() -> String {
        let (_, pem) = nodetrust::csr::node_request("n1").expect("request");
        base64::engine::general_purpose::STANDARD.encode(pem)
    }

    fn csr() -> Value {
        json!({"metadata": {"name": "node-csr-1", "creationTimestamp": "2026-01-02T14:59:00Z"},
            "spec": {"request": request(), "signerName": nodetrust::csr::KUBELET_CLIENT_SIGNER,
                "usages": ["digital signature", "client auth"]}})
    }

    #[test]
    fn validation() {
        assert!(RESOURCE.validate_create(&csr()).is_ok());
        let bad = json!({"metadata": {"name": "x"}, "spec": {
            "request": base64::engine::general_purpose::STANDARD.encode("hello"),
            "signerName": "nodomain", "usages": ["client auth", "client auth", "flying"],
            "expirationSeconds": 60}});
        assert_eq!(
            messages(RESOURCE.validate_create(&bad)),
            vec![
                "spec.request: Invalid value: []byte{...}: PEM block type must be CERTIFICATE REQUEST",
                "spec.signerName: Invalid value: \"nodomain\": must be a fully qualified domain and path of the form 'example.com/signer-name'",
                "spec.usages[1]: Duplicate value: \"client auth\"",
                format!("spec.usages[2]: Unsupported value: \"flying\": supported values: {}",
                    USAGES.iter().map(|u| format!("\"{u}\"")).collect::<Vec<_>>().join(", ")).as_str(),
                "spec.expirationSeconds: Invalid value: 60: may not specify a duration less than 600 seconds (10 minutes)",
            ]
        );
        let mut both = csr();
        both["status"] = json!({"conditions": [
            {"type": "Approved", "status": "True"}, {"type": "Denied", "status": "True"}]});
        assert_eq!(
            messages(RESOURCE.validate_update(&csr(), &both)),
            vec!["status.conditions[1].type: Invalid value: \"Denied\": Approved and Denied conditions are mutually exclusive"]
        );
    }

    #[test]
    fn the_requester_is_recorded_and_the_spec_kept() {
        let mut c = csr();
        c["spec"]["username"] = json!("forged");
        c["status"] = json!({"certificate": "Zm9v"});
        RESOURCE.strategy.set_requester(
            &mut c,
            &json!({"username": "system:bootstrap:abcdef", "uid": "", "groups": ["system:bootstrappers"]}),
        );
        RESOURCE.strategy.prepare_for_create(&mut c);
        assert_eq!(c["spec"]["username"], "system:bootstrap:abcdef");
        assert_eq!(c["spec"]["groups"], json!(["system:bootstrappers"]));
        assert!(c["spec"].get("uid").is_none() && c.get("status").is_none());
        let mut changed = c.clone();
        changed["spec"]["signerName"] = json!("example.com/other");
        changed["status"] = json!({"certificate": "Zm9v"});
        RESOURCE.strategy.prepare_for_update(&c, &mut changed);
        assert_eq!(changed, c);

        // Approval changes the conditions and nothing else.
        let mut approved = c.clone();
        approved["spec"]["signerName"] = json!("example.com/other");
        approved["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True"}], "certificate": "Zm9v"});
        RESOURCE
            .strategy
            .prepare_for_subresource_update("approval", &c, &mut approved);
        assert_eq!(approved["spec"], c["spec"]);
        assert_eq!(
            approved["status"],
            json!({"conditions": [{"type": "Approved", "status": "True"}]})
        );
    }

    #[test]
    fn columns_as_kubectl_shows_them() {
        let mut c = csr();
        c["spec"]["username"] = json!("system:bootstrap:abcdef");
        c["spec"]["expirationSeconds"] = json!(3600);
        let cells = RESOURCE.strategy.cells(&c, now());
        assert_eq!(
            cells,
            vec![
                json!("node-csr-1"),
                json!("60s"),
                json!(nodetrust::csr::KUBELET_CLIENT_SIGNER),
                json!("system:bootstrap:abcdef"),
                json!("60m"),
                json!("Pending")
            ]
        );
        c["status"] =
            json!({"conditions": [{"type": "Approved", "status": "True"}], "certificate": "Zm9v"});
        assert_eq!(condition(&c), "Approved,Issued");
    }
}
