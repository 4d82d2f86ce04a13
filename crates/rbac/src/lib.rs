//! Role-based access control as kube-apiserver v1.33 decides it, with no I/O: what a request
//! asks ([`attributes`], kube's RequestInfo), which rules allow it ([`rules`]), the index of
//! Roles and bindings the decision reads ([`policy`]), the message a refusal carries
//! ([`forbidden`]), the default roles every cluster starts with ([`bootstrap`]), ClusterRole
//! aggregation ([`aggregation`]), the answers to access reviews ([`reviews`]) and to token
//! reviews once the API server has checked the token ([`token_review`]), and the
//! escalation checks on writes of RBAC objects ([`escalation`]).
//!
//! Modules depend downwards only: `reviews`, `escalation` → `policy` → `rules` → `attributes`
//! → `user`; the Node authorizer ([`node`]) reads `attributes` and `user`, its graph of pods
//! ([`node_graph`]) reads `node` and `forbidden`.

pub mod aggregation;
pub mod attributes;
pub mod bootstrap;
pub mod escalation;
pub mod forbidden;
pub mod node;
pub mod node_graph;
pub mod policy;
pub mod reviews;
pub mod rules;
pub mod token_review;
pub mod user;

pub use attributes::Attributes;
pub use policy::{Decision, Policy, PolicyKind};
pub use user::User;

pub use rules::GROUP;
