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
