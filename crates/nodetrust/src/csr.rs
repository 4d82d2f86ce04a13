//! Node client certificates through the CertificateSigningRequest API
//! (certificates.k8s.io/v1): the request a joining node makes (`CN=system:node:<name>`,
//! `O=system:nodes`), kube-controller-manager's `csrapproving` rules for the
//! `kubernetes.io/kube-apiserver-client-kubelet` signer (a node client request from a
//! bootstrapper, or from the node itself renewing, is approved), and its `csrsigning`: a
//! certificate from the cluster CA with the requested subject and key, the usages of the
//! request and its `expirationSeconds` (at most a year, never past the CA).

use std::time::{Duration, SystemTime};

use serde_json::Value;

pub const KUBELET_CLIENT_SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";
const BOOTSTRAPPERS: &str = "system:bootstrappers";
/// kube-controller-manager's `--cluster-signing-duration` default.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);
/// Backdating, as upstream's signer does, for clocks a little behind.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("spec.request is not a PEM certificate request")]
    NotPem,
    #[error("spec.request is not a valid certificate request")]
    Invalid(#[source] rcgen::Error),
    #[error("loading the cluster CA")]
    Ca(#[source] rcgen::Error),
    #[error("signing the certificate")]
    Sign(#[source] rcgen::Error),
    #[error("making a key or request")]
    Generate(#[source] rcgen::Error),
}

/// What the approver looks at in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub common_name: String,
    pub organizations: Vec<String>,
    /// Any subject alternative name (DNS, IP, email, URI) was asked for.
    pub has_sans: bool,
}

/// The subject of the PEM request `pem` (its signature checked).
pub fn subject(pem: &str) -> Result<Subject, CsrError> {
    use x509_parser::prelude::FromDer;
    let parsed = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|_| CsrError::NotPem)?
        .1;
    let (_, req) =
        x509_parser::certification_request::X509CertificationRequest::from_der(&parsed.contents)
            .map_err(|_| CsrError::Invalid(rcgen::Error::CouldNotParseCertificationRequest))?;
    req.verify_signature()
        .map_err(|_| CsrError::Invalid(rcgen::Error::InvalidCertificationRequestSignature))?;
    let name = &req.certification_request_info.subject;
    let text = |a: &x509_parser::x509::AttributeTypeAndValue| a.as_str().unwrap_or("").to_string();
    let has_sans = req.requested_extensions().is_some_and(|mut exts| {
        exts.any(|e| {
            matches!(
                e,
                x509_parser::extensions::ParsedExtension::SubjectAlternativeName(san)
                    if !san.general_names.is_empty()
            )
        })
    });
    let common_name = name.iter_common_name().next().map(text).unwrap_or_default();
    let organizations = name.iter_organization().map(text).collect();
    Ok(Subject {
        common_name,
        organizations,
        has_sans,
    })
}

/// Upstream's `IsKubeletClientCSR`: `O=system:nodes` alone, `CN=system:node:<name>`, no
/// alternative names, and `client auth` among usages that allow nothing but `digital
/// signature` and `key encipherment` besides.
pub fn is_node_client(subject: &Subject, usages: &[&str]) -> bool {
    let allowed = ["client auth", "digital signature", "key encipherment"];
    subject.organizations == [NODES_GROUP]
        && subject
            .common_name
            .strip_prefix(NODE_USER_PREFIX)
            .is_some_and(|n| !n.is_empty())
        && !subject.has_sans
        && usages.contains(&"client auth")
        && usages.iter().all(|u| allowed.contains(u))
}

/// What the approver does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Add the `Approved` condition with this message.
    Approve(&'static str),
    /// Not for this approver (another signer, already decided, not a node client request,
    /// or from a requester it does not vouch for): left to a human.
    Skip,
}

pub const APPROVED_REASON: &str = "AutoApproved";

/// kube-controller-manager's csrapproving for node client certificates: a request from a
/// bootstrap token (`system:bootstrappers`) for any node, or from node `N` for itself.
pub fn decide(csr: &Value) -> Decision {
    let spec = |k: &str| csr.pointer(&format!("/spec/{k}"));
    let decided = csr
        .pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|c| {
            c.iter().any(|c| {
                matches!(
                    c.get("type").and_then(Value::as_str),
                    Some("Approved" | "Denied")
                )
            })
        });
    if decided || spec("signerName").and_then(Value::as_str) != Some(KUBELET_CLIENT_SIGNER) {
        return Decision::Skip;
    }
    let Some(request) = spec("request").and_then(Value::as_str).and_then(decode_b64) else {
        return Decision::Skip;
    };
    let Ok(subject) = subject(&request) else {
        return Decision::Skip;
    };
    let usages: Vec<&str> = spec("usages")
        .and_then(Value::as_array)
        .map(|u| u.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !is_node_client(&subject, &usages) {
        return Decision::Skip;
    }
    let username = spec("username").and_then(Value::as_str).unwrap_or("");
    let bootstrapper = spec("groups")
        .and_then(Value::as_array)
        .is_some_and(|g| g.iter().any(|g| g.as_str() == Some(BOOTSTRAPPERS)));
    if bootstrapper {
        Decision::Approve("Auto approving kubelet client certificate after SubjectAccessReview.")
    } else if username == subject.common_name {
        Decision::Approve(
            "Auto approving self kubelet client certificate after SubjectAccessReview.",
        )
    } else {
        Decision::Skip
    }
}

fn decode_b64(text: &str) -> Option<String> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

/// The certificate (PEM) for the PEM request `request`, signed by the CA: the request's
/// subject and key, `usages` as key usages and extended key usages, valid from a little
/// before `now` for `duration`.
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    request: &str,
    usages: &[&str],
    duration: Duration,
    now: SystemTime,
) -> Result<String, CsrError> {
    use rcgen::{ExtendedKeyUsagePurpose, KeyUsagePurpose};
    let key = rcgen::KeyPair::from_pem(ca_key_pem).map_err(CsrError::Ca)?;
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, key).map_err(CsrError::Ca)?;
    let asked =
        rcgen::CertificateSigningRequestParams::from_pem(request).map_err(CsrError::Invalid)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = asked.params.distinguished_name.clone();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + duration).into();
    params.use_authority_key_identifier_extension = true;
    for u in usages {
        match *u {
            "digital signature" => params.key_usages.push(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => params.key_usages.push(KeyUsagePurpose::KeyEncipherment),
            "client auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth),
            _ => {}
        }
    }
    let signed = rcgen::CertificateSigningRequestParams {
        params,
        public_key: asked.public_key,
    }
    .signed_by(&issuer)
    .map_err(CsrError::Sign)?;
    Ok(signed.pem())
}

/// A new key (PEM, PKCS#8) and the node client request for `node_name` (PEM), as a kubelet
/// bootstraps its credential.
pub fn node_request(node_name: &str) -> Result<(String, String), CsrError> {
    let key = rcgen::KeyPair::generate().map_err(CsrError::Generate)?;
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{NODE_USER_PREFIX}{node_name}"),
    );
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, NODES_GROUP);
    let request = params
        .serialize_request(&key)
        .and_then(|r| r.pem())
        .map_err(CsrError::Generate)?;
    Ok((key.serialize_pem(), request))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use serde_json::json;

    fn csr(request: &str, username: &str, groups: &[&str], usages: &[&str]) -> Value {
        json!({
            "spec": {
                "signerName": KUBELET_CLIENT_SIGNER,
                "request": base64::engine::general_purpose::STANDARD.encode(request),
                "usages": usages,
                "username": username,
                "groups": groups,
            }
        })
    }

    const USAGES: &[&str] = &["digital signature", "client auth"];

    #[test]
    fn node_requests_from_bootstrappers_or_the_node_itself_are_approved() {
        let (_, request) = node_request("n1").expect("request");
        let s = subject(&request).expect("subject");
        assert_eq!(s.common_name, "system:node:n1");
        assert_eq!(s.organizations, ["system:nodes"]);
        assert!(!s.has_sans);

        let boot = csr(
            &request,
            "system:bootstrap:abcdef",
            &["system:bootstrappers", "system:authenticated"],
            USAGES,
        );
        assert!(matches!(decide(&boot), Decision::Approve(_)));
        let own = csr(&request, "system:node:n1", &["system:nodes"], USAGES);
        assert!(matches!(decide(&own), Decision::Approve(_)));

        // Another node, a plain user, another signer, extra usages, a decided request.
        let other = csr(&request, "system:node:n2", &["system:nodes"], USAGES);
        assert_eq!(decide(&other), Decision::Skip);
        let user = csr(&request, "alice", &["system:authenticated"], USAGES);
        assert_eq!(decide(&user), Decision::Skip);
        let mut signer = boot.clone();
        signer["spec"]["signerName"] = json!("kubernetes.io/kube-apiserver-client");
        assert_eq!(decide(&signer), Decision::Skip);
        let server = csr(
            &request,
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
            &["client auth", "server auth"],
        );
        assert_eq!(decide(&server), Decision::Skip);
        let no_client = csr(
            &request,
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
            &["digital signature"],
        );
        assert_eq!(decide(&no_client), Decision::Skip);
        let mut denied = boot.clone();
        denied["status"] = json!({"conditions": [{"type": "Denied", "status": "True"}]});
        assert_eq!(decide(&denied), Decision::Skip);
    }

    #[test]
    fn requests_for_other_subjects_are_left_alone() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["n1.example".to_string()]).expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let with_san = params
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .expect("pem");
        assert!(subject(&with_san).expect("subject").has_sans);
        let boot = csr(
            &with_san,
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
            USAGES,
        );
        assert_eq!(decide(&boot), Decision::Skip);

        let mut admin = rcgen::CertificateParams::default();
        admin.distinguished_name = rcgen::DistinguishedName::new();
        admin
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        admin
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        let masters = admin
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .expect("pem");
        let boot = csr(
            &masters,
            "system:bootstrap:abcdef",
            &["system:bootstrappers"],
            USAGES,
        );
        assert_eq!(decide(&boot), Decision::Skip);
        assert!(subject("garbage").is_err());
    }

    #[test]
    fn the_issued_certificate_carries_the_request_subject_and_chains_to_the_ca() {
        use x509_parser::prelude::FromDer;
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        let ca_cert = ca.self_signed(&ca_key).expect("ca");
        let (_, request) = node_request("n1").expect("request");
        let now = SystemTime::now();
        let pem = issue(
            &ca_cert.pem(),
            &ca_key.serialize_pem(),
            &request,
            &["digital signature", "key encipherment", "client auth"],
            Duration::from_secs(3600),
            now,
        )
        .expect("issued");
        let (_, parsed) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).expect("pem");
        let (_, cert) =
            x509_parser::certificate::X509Certificate::from_der(&parsed.contents).expect("der");
        let cn: Vec<_> = cert
            .subject()
            .iter_common_name()
            .map(|a| a.as_str().unwrap_or(""))
            .collect();
        assert_eq!(cn, ["system:node:n1"]);
        assert_eq!(
            cert.issuer()
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok()),
            Some("test-ca")
        );
        let eku = cert.extended_key_usage().expect("eku").expect("present");
        assert!(eku.value.client_auth && !eku.value.server_auth);
        let (_, ca_parsed) =
            x509_parser::certificate::X509Certificate::from_der(ca_cert.der()).expect("ca der");
        assert!(cert.verify_signature(Some(ca_parsed.public_key())).is_ok());
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        assert_eq!(lifetime, 3600 + 300);
    }
}
