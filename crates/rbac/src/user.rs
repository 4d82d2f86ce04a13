//! Who a request authenticated as (kube's `user.Info`), and the groups with a fixed meaning.

use std::collections::BTreeMap;

/// Everything: kube-apiserver lets this group do anything before RBAC is asked.
pub const MASTERS: &str = "system:masters";
/// Every authenticated request carries it.
pub const AUTHENTICATED: &str = "system:authenticated";
/// Requests without credentials.
pub const UNAUTHENTICATED: &str = "system:unauthenticated";
/// The name of requests without credentials.
pub const ANONYMOUS: &str = "system:anonymous";
/// ServiceAccount user names start with this.
pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Extra attributes (a bound token's pod and node).
    pub extra: BTreeMap<String, Vec<String>>,
}

impl User {
    /// A request without credentials.
    pub fn anonymous() -> Self {
        User {
            name: ANONYMOUS.into(),
            groups: vec![UNAUTHENTICATED.into()],
            ..Default::default()
        }
    }

    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }

    /// `system:masters` may do anything.
    pub fn is_privileged(&self) -> bool {
        self.in_group(MASTERS)
    }
}

/// The user name of ServiceAccount `name` in `namespace`.
pub fn service_account_name(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// The user a request asks to act as (kube's impersonation headers: `Impersonate-User`,
/// `Impersonate-Group`, `Impersonate-Uid`, `Impersonate-Extra-<key>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impersonation {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

impl Impersonation {
    /// The user the request then runs as: the named user with the groups asked for, and
    /// the groups kube adds (a ServiceAccount's, and `system:authenticated` for anyone but
    /// anonymous).
    pub fn user(&self) -> User {
        let mut groups = self.groups.clone();
        if let Some(rest) = self.name.strip_prefix(SERVICE_ACCOUNT_PREFIX) {
            if let Some((ns, _)) = rest.split_once(':') {
                for g in [
                    "system:serviceaccounts".to_string(),
                    format!("system:serviceaccounts:{ns}"),
                ] {
                    if !groups.contains(&g) {
                        groups.push(g);
                    }
                }
            }
        }
        if self.name != ANONYMOUS && !groups.iter().any(|g| g == AUTHENTICATED) {
            groups.push(AUTHENTICATED.into());
        } else if self.name == ANONYMOUS && !groups.iter().any(|g| g == UNAUTHENTICATED) {
            groups.push(UNAUTHENTICATED.into());
        }
        User {
            name: self.name.clone(),
            uid: self.uid.clone(),
            groups,
            extra: self.extra.clone(),
        }
    }

    /// What the requester must be allowed to `impersonate` for this, one request per
    /// impersonated attribute, as kube checks them.
    pub fn checks(&self) -> Vec<ImpersonationCheck> {
        let check = |group: &'static str,
                     resource: &'static str,
                     subresource: &str,
                     namespace: &str,
                     name: &str| ImpersonationCheck {
            group,
            resource,
            subresource: subresource.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        };
        let mut out = Vec::new();
        match self
            .name
            .strip_prefix(SERVICE_ACCOUNT_PREFIX)
            .and_then(|r| r.split_once(':'))
        {
            Some((ns, sa)) => out.push(check("", "serviceaccounts", "", ns, sa)),
            None => out.push(check("", "users", "", "", &self.name)),
        }
        for g in &self.groups {
            out.push(check("", "groups", "", "", g));
        }
        if !self.uid.is_empty() {
            out.push(check("authentication.k8s.io", "uids", "", "", &self.uid));
        }
        for (k, values) in &self.extra {
            for v in values {
                out.push(check("authentication.k8s.io", "userextras", k, "", v));
            }
        }
        out
    }
}

/// One `impersonate` permission an impersonating request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpersonationCheck {
    pub group: &'static str,
    pub resource: &'static str,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
}
