//! ServiceAccounts as kube-apiserver serves them, in the parts that need no store: the
//! signed, expiring, audience-scoped tokens of the TokenRequest API ([`token`], with the
//! request body in [`request`]) and the ServiceAccount admission's changes to new pods
//! ([`admission`]). The API server looks accounts and pods up and calls these.

pub mod admission;
pub mod request;
pub mod token;

pub use token::{Authority, Claims, Grant, Issued, ObjectRef, TokenError};

/// The issuer (and so the default audience) of peapod's tokens: what kubeadm configures as
/// `--service-account-issuer`.
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
