//! The review kinds: questions a client asks the API server (may I? who am I?) by creating
//! one, answered in the response and never stored. Discovery lists them with `create` only,
//! as kube-apiserver does; the API server answers them itself.

use k8s_openapi::api::authentication::v1::{SelfSubjectReview, TokenReview};
use k8s_openapi::api::authorization::v1::{
    LocalSubjectAccessReview, SelfSubjectAccessReview, SelfSubjectRulesReview, SubjectAccessReview,
};
use serde_json::Value;

use apimachinery::strategy::{typed_round_trip, ResourceInfo, Strategy};

const CREATE: &[&str] = &["create"];

const fn review(
    group: &'static str,
    plural: &'static str,
    kind: &'static str,
    namespaced: bool,
    strategy: &'static dyn Strategy,
) -> ResourceInfo {
    ResourceInfo {
        group,
        version: "v1",
        plural,
        singular: "",
        kind,
        list_kind: "",
        namespaced,
        short_names: &[],
        categories: &[],
        verbs: CREATE,
        subresources: &[],
        strategy,
    }
}

pub const SELF_SUBJECT_REVIEWS: ResourceInfo = review(
    "authentication.k8s.io",
    "selfsubjectreviews",
    "SelfSubjectReview",
    false,
    &Review(typed_round_trip::<SelfSubjectReview>),
);

pub const TOKEN_REVIEWS: ResourceInfo = review(
    "authentication.k8s.io",
    "tokenreviews",
    "TokenReview",
    false,
    &Review(typed_round_trip::<TokenReview>),
);

pub const LOCAL_SUBJECT_ACCESS_REVIEWS: ResourceInfo = review(
    "authorization.k8s.io",
    "localsubjectaccessreviews",
    "LocalSubjectAccessReview",
    true,
    &Review(typed_round_trip::<LocalSubjectAccessReview>),
);

pub const SELF_SUBJECT_ACCESS_REVIEWS: ResourceInfo = review(
    "authorization.k8s.io",
    "selfsubjectaccessreviews",
    "SelfSubjectAccessReview",
    false,
    &Review(typed_round_trip::<SelfSubjectAccessReview>),
);

pub const SELF_SUBJECT_RULES_REVIEWS: ResourceInfo = review(
    "authorization.k8s.io",
    "selfsubjectrulesreviews",
    "SelfSubjectRulesReview",
    false,
    &Review(typed_round_trip::<SelfSubjectRulesReview>),
);

pub const SUBJECT_ACCESS_REVIEWS: ResourceInfo = review(
    "authorization.k8s.io",
    "subjectaccessreviews",
    "SubjectAccessReview",
    false,
    &Review(typed_round_trip::<SubjectAccessReview>),
);

/// A review kind: only its schema (strict decoding of the request) differs.
struct Review(fn(Value) -> Result<Value, serde_json::Error>);

impl std::fmt::Debug for Review {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Review")
    }
}

impl Strategy for Review {
    fn round_trip(&self, obj: Value) -> Result<Value, serde_json::Error> {
        (self.0)(obj)
    }
}
