//! Protobuf bodies of the authorization kinds kubectl creates: the RBAC objects of
//! `kubectl create role|clusterrole|rolebinding|clusterrolebinding`, and the reviews of
//! `kubectl auth can-i` (SelfSubjectAccessReview, SelfSubjectRulesReview for `--list`) and
//! `kubectl auth whoami` (SelfSubjectReview), decoded whole by field-number tables as in
//! [`workloads`](super::workloads).

use serde_json::Value;

use super::wire::ProtobufError;
use super::workloads::{f, message, rep, Schema, Ty::*, LABEL_SELECTOR};

static POLICY_RULE: Schema = Schema {
    name: "PolicyRule",
    fields: &[
        rep(1, "verbs", Str),
        rep(2, "apiGroups", Str),
        rep(3, "resources", Str),
        rep(4, "resourceNames", Str),
        rep(5, "nonResourceURLs", Str),
    ],
};
static AGGREGATION_RULE: Schema = Schema {
    name: "AggregationRule",
    fields: &[rep(1, "clusterRoleSelectors", Msg(&LABEL_SELECTOR))],
};
static SUBJECT: Schema = Schema {
    name: "Subject",
    fields: &[
        f(1, "kind", Str),
        f(2, "apiGroup", Str),
        f(3, "name", Str),
        f(4, "namespace", Str),
    ],
};
static ROLE_REF: Schema = Schema {
    name: "RoleRef",
    fields: &[f(1, "apiGroup", Str), f(2, "kind", Str), f(3, "name", Str)],
};
static ROLE: Schema = Schema {
    name: "Role",
    fields: &[f(1, "metadata", Meta), rep(2, "rules", Msg(&POLICY_RULE))],
};
static CLUSTER_ROLE: Schema = Schema {
    name: "ClusterRole",
    fields: &[
        f(1, "metadata", Meta),
        rep(2, "rules", Msg(&POLICY_RULE)),
        f(3, "aggregationRule", Msg(&AGGREGATION_RULE)),
    ],
};
static BINDING: Schema = Schema {
    name: "RoleBinding",
    fields: &[
        f(1, "metadata", Meta),
        rep(2, "subjects", Msg(&SUBJECT)),
        f(3, "roleRef", Msg(&ROLE_REF)),
    ],
};

static RESOURCE_ATTRIBUTES: Schema = Schema {
    name: "ResourceAttributes",
    fields: &[
        f(1, "namespace", Str),
        f(2, "verb", Str),
        f(3, "group", Str),
        f(4, "version", Str),
        f(5, "resource", Str),
        f(6, "subresource", Str),
        f(7, "name", Str),
    ],
};
static NON_RESOURCE_ATTRIBUTES: Schema = Schema {
    name: "NonResourceAttributes",
    fields: &[f(1, "path", Str), f(2, "verb", Str)],
};
static ACCESS_SPEC: Schema = Schema {
    name: "SubjectAccessReviewSpec",
    fields: &[
        f(1, "resourceAttributes", Msg(&RESOURCE_ATTRIBUTES)),
        f(2, "nonResourceAttributes", Msg(&NON_RESOURCE_ATTRIBUTES)),
        f(3, "user", Str),
        rep(4, "groups", Str),
        f(6, "uid", Str),
    ],
};
/// The status a client sends along is empty; the server writes its own.
static ACCESS_STATUS: Schema = Schema {
    name: "SubjectAccessReviewStatus",
    fields: &[
        f(1, "allowed", Bool),
        f(2, "reason", Str),
        f(3, "evaluationError", Str),
        f(4, "denied", Bool),
    ],
};
static ACCESS_REVIEW: Schema = Schema {
    name: "SubjectAccessReview",
    fields: &[
        f(1, "metadata", Meta),
        f(2, "spec", Msg(&ACCESS_SPEC)),
        f(3, "status", Msg(&ACCESS_STATUS)),
    ],
};
static RULES_SPEC: Schema = Schema {
    name: "SelfSubjectRulesReviewSpec",
    fields: &[f(1, "namespace", Str)],
};
static RULES_STATUS: Schema = Schema {
    name: "SubjectRulesReviewStatus",
    fields: &[f(3, "incomplete", Bool), f(4, "evaluationError", Str)],
};
static RULES_REVIEW: Schema = Schema {
    name: "SelfSubjectRulesReview",
    fields: &[
        f(1, "metadata", Meta),
        f(2, "spec", Msg(&RULES_SPEC)),
        f(3, "status", Msg(&RULES_STATUS)),
    ],
};
static USER_INFO: Schema = Schema {
    name: "UserInfo",
    fields: &[
        f(1, "username", Str),
        f(2, "uid", Str),
        rep(3, "groups", Str),
    ],
};
static SELF_STATUS: Schema = Schema {
    name: "SelfSubjectReviewStatus",
    fields: &[f(1, "userInfo", Msg(&USER_INFO))],
};
static SELF_REVIEW: Schema = Schema {
    name: "SelfSubjectReview",
    fields: &[f(1, "metadata", Meta), f(2, "status", Msg(&SELF_STATUS))],
};

fn schema(kind: &str) -> Option<&'static Schema> {
    Some(match kind {
        "Role" => &ROLE,
        "ClusterRole" => &CLUSTER_ROLE,
        "RoleBinding" | "ClusterRoleBinding" => &BINDING,
        "SelfSubjectAccessReview" | "SubjectAccessReview" | "LocalSubjectAccessReview" => {
            &ACCESS_REVIEW
        }
        "SelfSubjectRulesReview" => &RULES_REVIEW,
        "SelfSubjectReview" => &SELF_REVIEW,
        _ => return None,
    })
}

/// The object's fields (metadata included) when `kind` is one of these kinds.
pub(super) fn object(kind: &str, b: &[u8], base: usize) -> Option<Result<Value, ProtobufError>> {
    schema(kind).map(|s| message(b, base, s))
}
