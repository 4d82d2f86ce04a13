//! The API server's authorizer: every authenticated request is checked against RBAC before
//! it is served (`system:masters` passes at once), from an in-memory [`Policy`] that a watch
//! of the four RBAC kinds in the store keeps current (one writer, many readers), so no
//! decision reads the store. Impersonation headers are checked here too. A refusal carries
//! what kube-apiserver's 403 Status says; the server turns it into one.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use futures::StreamExt;
use http::HeaderMap;
use rbac::user::Impersonation;
use rbac::{Attributes, Decision, Policy, PolicyKind, User};
use store::{EventKind, Store, StoreError};

/// A refused request: what the 403 Status names (`pods`, `deployments.apps`, or nothing
/// for a path), and its message after `… is forbidden: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct Refusal {
    pub resource: String,
    pub group: String,
    pub name: String,
    pub detail: String,
}

/// Why a request's impersonation was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImpersonationError {
    #[error("invalid {header} header")]
    Header { header: String },
    #[error("requested impersonation of groups, a uid or extras without impersonating a user")]
    NoUser,
    #[error(transparent)]
    Refused(#[from] Refusal),
}

/// Pod subresources a WebSocket (a GET) streams on: kube v1.33 asks for `create` on them
/// as well as `get`, as for the POST that SPDY clients send.
const STREAMING: &[&str] = &["exec", "attach", "portforward"];

/// The policy index and its readers; cheap to clone.
#[derive(Clone, Default)]
pub struct Authorizer {
    policy: Arc<RwLock<Policy>>,
}

fn read(policy: &RwLock<Policy>) -> RwLockReadGuard<'_, Policy> {
    // A writer that panicked left a complete index behind (each apply is one insert).
    policy.read().unwrap_or_else(|p| p.into_inner())
}

impl Authorizer {
    /// The index as it is now (for the access reviews).
    pub fn policy(&self) -> RwLockReadGuard<'_, Policy> {
        read(&self.policy)
    }

    /// Checks `user`'s request; the 403 to answer when it is refused.
    pub fn authorize(
        &self,
        user: &User,
        method: &str,
        path: &str,
        query: Option<&str>,
    ) -> Result<(), Refusal> {
        if user.is_privileged() {
            return Ok(());
        }
        let a = Attributes::from_request(user.clone(), method, path, query);
        // The Node authorizer and NodeRestriction come before RBAC, as in kube-apiserver's
        // `--authorization-mode=Node,RBAC`.
        match rbac::node::authorize(&a) {
            rbac::node::NodeDecision::Allow => return Ok(()),
            rbac::node::NodeDecision::Deny(reason) => {
                return Err(Refusal {
                    resource: rbac::forbidden::qualified_resource(&a),
                    group: a.api_group.clone(),
                    name: a.name.clone(),
                    detail: reason,
                })
            }
            rbac::node::NodeDecision::NoOpinion => {}
        }
        let policy = self.policy();
        let mut asks = vec![a.clone()];
        if a.verb == "get"
            && a.api_group.is_empty()
            && a.resource == "pods"
            && STREAMING.contains(&a.subresource.as_str())
        {
            asks.push(a.with_verb("create"));
        }
        for ask in asks {
            let Decision { allowed, reason } = policy.authorize(&ask);
            if !allowed {
                tracing::debug!(user = %ask.user.name, verb = %ask.verb, path, %reason, "forbidden");
                return Err(forbidden(&ask, &reason));
            }
        }
        Ok(())
    }

    /// The user a request runs as: `user`, or whom its impersonation headers name when
    /// `user` may impersonate them (each user, group, uid and extra is checked as kube does).
    pub fn acting_user(&self, user: User, headers: &HeaderMap) -> Result<User, ImpersonationError> {
        let Some(imp) = impersonation(headers)? else {
            return Ok(user);
        };
        if !user.is_privileged() {
            let policy = self.policy();
            for check in imp.checks() {
                let ask = Attributes::impersonate(user.clone(), &check);
                let Decision { allowed, reason } = policy.authorize(&ask);
                if !allowed {
                    return Err(forbidden(&ask, &reason).into());
                }
            }
        }
        Ok(imp.user())
    }

    /// Lists the four kinds into the index; the resourceVersion to watch from, per kind.
    async fn list(&self, store: &dyn Store, kind: PolicyKind) -> Result<u64, StoreError> {
        let listed = store.list(rbac::GROUP, kind.resource(), None).await?;
        let mut policy = self.policy.write().unwrap_or_else(|p| p.into_inner());
        policy.clear(kind);
        for obj in &listed.items {
            if let Err(e) = policy.apply(kind, obj) {
                tracing::warn!(resource = kind.resource(), error = %e, "stored RBAC object does not decode");
            }
        }
        Ok(listed.resource_version)
    }

    /// The index filled from the store, before the server takes requests.
    pub async fn start(store: &dyn Store) -> Result<(Self, Vec<u64>), StoreError> {
        let me = Authorizer::default();
        let mut from = Vec::new();
        for kind in PolicyKind::ALL {
            from.push(me.list(store, kind).await?);
        }
        Ok((me, from))
    }

    /// Keeps the index current until `stop`: one watch per kind from where `start` listed,
    /// listed again when a watch ends or falls behind.
    pub async fn run(
        self,
        store: Arc<dyn Store>,
        from: Vec<u64>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) {
        let watches = PolicyKind::ALL.into_iter().zip(from).map(|(kind, rv)| {
            let me = self.clone();
            let store = store.clone();
            let mut stop = stop.clone();
            async move {
                tokio::select! {
                    _ = stop.wait_for(|s| *s) => {}
                    _ = me.follow(store.as_ref(), kind, rv) => {}
                }
            }
        });
        futures::future::join_all(watches).await;
    }

    async fn follow(&self, store: &dyn Store, kind: PolicyKind, mut rv: u64) {
        loop {
            match store.watch(rbac::GROUP, kind.resource(), None, rv).await {
                Ok(mut events) => {
                    while let Some(ev) = events.next().await {
                        let ev = match ev {
                            Ok(ev) => ev,
                            Err(e) => {
                                tracing::debug!(resource = kind.resource(), error = %e, "RBAC watch ended");
                                break;
                            }
                        };
                        rv = ev.resource_version;
                        let mut policy = self.policy.write().unwrap_or_else(|p| p.into_inner());
                        match ev.kind {
                            EventKind::Added | EventKind::Modified => {
                                if let Err(e) = policy.apply(kind, &ev.object) {
                                    tracing::warn!(resource = kind.resource(), error = %e, "RBAC object does not decode");
                                }
                            }
                            EventKind::Deleted => policy.remove(kind, &ev.object),
                            EventKind::Bookmark => {}
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(resource = kind.resource(), error = %e, "RBAC watch failed")
                }
            }
            // Whatever was missed is read again in full.
            tokio::time::sleep(Duration::from_millis(200)).await;
            match self.list(store, kind).await {
                Ok(listed) => rv = listed,
                Err(e) => {
                    tracing::warn!(resource = kind.resource(), error = %e, "relisting RBAC objects")
                }
            }
        }
    }
}

/// The refusal of request `a`.
fn forbidden(a: &Attributes, reason: &str) -> Refusal {
    Refusal {
        resource: rbac::forbidden::qualified_resource(a),
        group: a.api_group.clone(),
        name: a.name.clone(),
        detail: rbac::forbidden::detail(a, reason),
    }
}

const IMPERSONATE_USER: &str = "impersonate-user";
const IMPERSONATE_GROUP: &str = "impersonate-group";
const IMPERSONATE_UID: &str = "impersonate-uid";
const IMPERSONATE_EXTRA: &str = "impersonate-extra-";

/// Decodes the `%XX` escapes of an extra's key (header names cannot carry every character).
fn unescape(key: &str) -> String {
    let bytes = key.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The impersonation a request's headers ask for, if any.
fn impersonation(headers: &HeaderMap) -> Result<Option<Impersonation>, ImpersonationError> {
    let mut imp = Impersonation::default();
    let mut asked = false;
    for (name, value) in headers {
        let name = name.as_str();
        if !name.starts_with("impersonate-") {
            continue;
        }
        let value = value
            .to_str()
            .map_err(|_| ImpersonationError::Header {
                header: name.to_string(),
            })?
            .to_string();
        asked = true;
        match name {
            IMPERSONATE_USER => imp.name = value,
            IMPERSONATE_GROUP => imp.groups.push(value),
            IMPERSONATE_UID => imp.uid = value,
            _ => {
                if let Some(key) = name.strip_prefix(IMPERSONATE_EXTRA) {
                    imp.extra.entry(unescape(key)).or_default().push(value);
                }
            }
        }
    }
    if !asked {
        return Ok(None);
    }
    if imp.name.is_empty() {
        return Err(ImpersonationError::NoUser);
    }
    Ok(Some(imp))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn bob() -> User {
        User {
            name: "bob".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    #[test]
    fn impersonation_headers() {
        let mut h = HeaderMap::new();
        assert_eq!(impersonation(&h), Ok(None));
        h.insert("impersonate-group", HeaderValue::from_static("devs"));
        assert_eq!(impersonation(&h), Err(ImpersonationError::NoUser));
        h.insert("impersonate-user", HeaderValue::from_static("jane"));
        h.insert(
            "impersonate-extra-example.com%2fteam",
            HeaderValue::from_static("blue"),
        );
        let imp = impersonation(&h).expect("valid").expect("asked");
        assert_eq!(imp.name, "jane");
        assert_eq!(imp.groups, ["devs"]);
        assert_eq!(imp.extra["example.com/team"], ["blue"]);
    }

    #[test]
    fn refusals_name_the_request() {
        let authz = Authorizer::default();
        let r = authz
            .authorize(
                &bob(),
                "GET",
                "/apis/apps/v1/namespaces/ns/deployments/web",
                None,
            )
            .expect_err("nothing granted");
        assert_eq!(r.resource, "deployments.apps");
        assert_eq!(r.name, "web");
        assert_eq!(
            r.detail,
            r#"User "bob" cannot get resource "deployments" in API group "apps" in the namespace "ns""#
        );
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", HeaderValue::from_static("jane"));
        assert!(matches!(
            authz.acting_user(bob(), &h),
            Err(ImpersonationError::Refused(_))
        ));
        let admin = User {
            name: "admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        assert!(authz
            .authorize(&admin, "DELETE", "/api/v1/nodes/n", None)
            .is_ok());
        assert_eq!(
            authz.acting_user(admin, &h).map(|u| u.name),
            Ok("jane".to_string())
        );
    }
}
