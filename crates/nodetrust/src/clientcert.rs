//! Who a verified TLS client certificate names, as kube-apiserver's x509 authenticator reads
//! it: the user is the subject's common name, the groups its organizations.

use x509_parser::prelude::FromDer;

/// The user and groups of a DER certificate; `None` when it cannot be parsed or names no
/// user.
pub fn identity(der: &[u8]) -> Option<(String, Vec<String>)> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_string();
    if name.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_string)
        .collect();
    Some((name, groups))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_is_the_common_name_and_the_groups_the_organizations() {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "system:node:n1");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:nodes");
        let cert = params.self_signed(&key).expect("cert");
        assert_eq!(
            identity(cert.der()),
            Some((
                "system:node:n1".to_string(),
                vec!["system:nodes".to_string()]
            ))
        );
        assert_eq!(identity(b"junk"), None);
    }
}
