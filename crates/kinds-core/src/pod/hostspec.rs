//! Validation of the pod spec fields that reach into the node's files and kernel:
//! `hostAliases` (lines of the pod's `/etc/hosts`), `securityContext.sysctls` and
//! `hostUsers` with each container's `procMount`, with kube-apiserver v1.33's messages
//! (`ValidateHostAliases`, `validateSysctls`, `validateHostUsers`, the procMount checks of
//! `ValidateSecurityContext`).

use std::collections::BTreeSet;

use serde_json::Value;

use apimachinery::field_errors::FieldErrors;
use apimachinery::json::arr;
use apimachinery::names::dns1123_subdomain;

/// Upstream's `SysctlMaxLength`.
const SYSCTL_MAX_LENGTH: usize = 253;

/// Upstream's `sysctlContainSlashRegexp`, as its message prints it.
const SYSCTL_REGEX: &str =
    r"^([a-z0-9]([-_a-z0-9]*[a-z0-9])?[\./])*[a-z0-9]([-_a-z0-9]*[a-z0-9])?$";

/// Every `hostAliases[i].ip` is an IP address and each hostname an RFC 1123 subdomain.
pub(super) fn host_aliases(e: &mut FieldErrors, spec: &Value, path: &str) {
    for (i, alias) in arr(spec.get("hostAliases")).iter().enumerate() {
        let ap = format!("{path}.hostAliases[{i}]");
        let ip = alias.get("ip").and_then(Value::as_str).unwrap_or("");
        if ip.parse::<std::net::IpAddr>().is_err() {
            e.invalid(
                &format!("{ap}.ip"),
                &Value::from(ip),
                "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
            );
        }
        for (j, name) in arr(alias.get("hostnames")).iter().enumerate() {
            let name = name.as_str().unwrap_or("");
            for m in dns1123_subdomain(name) {
                e.invalid(&format!("{ap}.hostnames[{j}]"), &Value::from(name), &m);
            }
        }
    }
}

/// One segment of a sysctl name: `[a-z0-9]([-_a-z0-9]*[a-z0-9])?`.
fn sysctl_segment(s: &str) -> bool {
    let b = s.as_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match (b.first(), b.last()) {
        (Some(first), Some(last)) => {
            edge(first) && edge(last) && b.iter().all(|c| edge(c) || *c == b'-' || *c == b'_')
        }
        _ => false,
    }
}

/// Upstream's `IsValidSysctlName`: segments separated by `.` or `/`, at most 253 bytes.
pub fn is_valid_sysctl_name(name: &str) -> bool {
    name.len() <= SYSCTL_MAX_LENGTH && name.split(['.', '/']).all(sysctl_segment)
}

/// The namespace a sysctl belongs to (upstream's `GetNamespace`): `net` or `ipc`, else
/// none. A name whose first separator is `/` uses slashes throughout.
fn sysctl_namespace(name: &str) -> Option<&'static str> {
    let dotted = match name.find(['.', '/']) {
        Some(i) if name.as_bytes()[i] == b'/' => name.replace('/', "."),
        _ => name.to_string(),
    };
    if dotted.starts_with("net.") {
        return Some("net");
    }
    let ipc = ["kernel.shm", "kernel.msg", "fs.mqueue."];
    (dotted == "kernel.sem" || ipc.iter().any(|p| dotted.starts_with(p))).then_some("ipc")
}

/// `spec.securityContext.sysctls`: each name required, valid and not repeated, and none of
/// the host's own network or IPC namespace when the pod shares it.
pub(super) fn sysctls(e: &mut FieldErrors, spec: &Value, path: &str) {
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    let host_ipc = spec.get("hostIPC").and_then(Value::as_bool) == Some(true);
    let list = spec.get("securityContext").and_then(|s| s.get("sysctls"));
    let mut seen = BTreeSet::new();
    for (i, s) in arr(list).iter().enumerate() {
        let field = format!("{path}.securityContext.sysctls[{i}].name");
        let name = s.get("name").and_then(Value::as_str).unwrap_or("");
        if name.is_empty() {
            e.required(&field, "");
        } else if !is_valid_sysctl_name(name) {
            e.invalid(
                &field,
                &Value::from(name),
                &format!(
                    "must have at most {SYSCTL_MAX_LENGTH} characters and match regex {SYSCTL_REGEX}"
                ),
            );
        } else if !seen.insert(name) {
            e.duplicate(&field, &Value::from(name));
        }
        match sysctl_namespace(name) {
            Some("net") if host_network => e.invalid(
                &field,
                &Value::from(name),
                "may not be specified when 'hostNetwork' is true",
            ),
            Some("ipc") if host_ipc => e.invalid(
                &field,
                &Value::from(name),
                "may not be specified when 'hostIPC' is true",
            ),
            _ => {}
        }
    }
}

/// `hostUsers: false` (a user namespace for the pod) cannot be combined with the node's
/// network, PID or IPC namespace: kube-apiserver v1.33 refuses those, since the pod's root
/// would get surprising rights, or none, over namespaces the node's user namespace owns.
pub(super) fn host_users(e: &mut FieldErrors, spec: &Value, path: &str) {
    let host_users = spec.get("hostUsers").and_then(Value::as_bool) != Some(false);
    proc_mounts(e, spec, path, host_users);
    if host_users {
        return;
    }
    for key in ["hostNetwork", "hostPID", "hostIPC"] {
        if spec.get(key).and_then(Value::as_bool) == Some(true) {
            e.forbidden(&format!("{path}.{key}"), "when `hostUsers` is false");
        }
    }
}

/// Each container's `securityContext.procMount`: `Default` or `Unmasked`, and `Unmasked` (an
/// unmasked `/proc`) only inside the pod's own user namespace.
fn proc_mounts(e: &mut FieldErrors, spec: &Value, path: &str, host_users: bool) {
    for key in ["initContainers", "containers", "ephemeralContainers"] {
        for (i, c) in arr(spec.get(key)).iter().enumerate() {
            let Some(kind) = c
                .get("securityContext")
                .and_then(|sc| sc.get("procMount"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            let field = format!("{path}.{key}[{i}].securityContext.procMount");
            match kind {
                "Default" => {}
                "Unmasked" if host_users => e.invalid(
                    &field,
                    &Value::from(kind),
                    "`hostUsers` must be false to use `Unmasked`",
                ),
                "Unmasked" => {}
                other => e.not_supported(&field, &Value::from(other), &["Default", "Unmasked"]),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(f: impl FnOnce(&mut FieldErrors)) -> Vec<String> {
        let mut e = FieldErrors::default();
        f(&mut e);
        e.finish()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|c| c.message)
            .collect()
    }

    #[test]
    fn sysctl_names() {
        for ok in [
            "kernel.shm_rmid_forced",
            "net.ipv4.ip_local_port_range",
            "net/ipv4/conf/eth0.1/forwarding",
            "a",
        ] {
            assert!(is_valid_sysctl_name(ok), "{ok}");
        }
        for bad in ["foo-", "bar..", "", "Kernel.x", "a._b", "-a", "a/"] {
            assert!(!is_valid_sysctl_name(bad), "{bad}");
        }
        let spec = json!({"hostNetwork": true, "securityContext": {"sysctls": [
            {"name": "foo-", "value": "1"}, {"name": "bar..", "value": "1"},
            {"name": "kernel.msgmax", "value": "1"}, {"name": "kernel.msgmax", "value": "2"},
            {"name": "net.core.somaxconn", "value": "1"}, {"value": "1"}]}});
        let m = messages(|e| sysctls(e, &spec, "spec"));
        let regex = format!("must have at most 253 characters and match regex {SYSCTL_REGEX}");
        assert_eq!(
            m,
            [
                format!("spec.securityContext.sysctls[0].name: Invalid value: \"foo-\": {regex}"),
                format!("spec.securityContext.sysctls[1].name: Invalid value: \"bar..\": {regex}"),
                "spec.securityContext.sysctls[3].name: Duplicate value: \"kernel.msgmax\"".to_string(),
                "spec.securityContext.sysctls[4].name: Invalid value: \"net.core.somaxconn\": may not be specified when 'hostNetwork' is true".to_string(),
                "spec.securityContext.sysctls[5].name: Required value".to_string(),
            ]
        );
    }

    #[test]
    fn host_alias_addresses_and_names() {
        let spec = json!({"hostAliases": [
            {"ip": "127.0.0.1", "hostnames": ["foo.local", "bar.local"]},
            {"ip": "10.1.2", "hostnames": ["Bad_Name"]}]});
        let m = messages(|e| host_aliases(e, &spec, "spec"));
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(
            m[0],
            "spec.hostAliases[1].ip: Invalid value: \"10.1.2\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"
        );
        assert!(m[1].starts_with("spec.hostAliases[1].hostnames[0]: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"), "{}", m[1]);
    }

    #[test]
    fn host_users_false_refuses_host_namespaces() {
        let spec = json!({"hostUsers": false, "hostNetwork": true, "hostPID": true,
            "hostIPC": true});
        assert_eq!(
            messages(|e| host_users(e, &spec, "spec")),
            [
                "spec.hostNetwork: Forbidden: when `hostUsers` is false",
                "spec.hostPID: Forbidden: when `hostUsers` is false",
                "spec.hostIPC: Forbidden: when `hostUsers` is false",
            ]
        );
        let spec = json!({"hostUsers": true, "hostNetwork": true, "hostPID": true});
        assert!(messages(|e| host_users(e, &spec, "spec")).is_empty());
        let spec = json!({"hostUsers": false, "hostNetwork": false});
        assert!(messages(|e| host_users(e, &spec, "spec")).is_empty());
    }

    #[test]
    fn unmasked_proc_only_in_a_user_namespace() {
        let c = |kind: &str| json!([{"name": "c", "securityContext": {"procMount": kind}}]);
        let spec = json!({"containers": c("Unmasked"), "initContainers": c("Other")});
        assert_eq!(
            messages(|e| host_users(e, &spec, "spec")),
            [
                "spec.initContainers[0].securityContext.procMount: Unsupported value: \"Other\": supported values: \"Default\", \"Unmasked\"",
                "spec.containers[0].securityContext.procMount: Invalid value: \"Unmasked\": `hostUsers` must be false to use `Unmasked`",
            ]
        );
        let spec = json!({"hostUsers": false, "containers": c("Unmasked")});
        assert!(messages(|e| host_users(e, &spec, "spec")).is_empty());
        let spec = json!({"containers": c("Default")});
        assert!(messages(|e| host_users(e, &spec, "spec")).is_empty());
    }
}
