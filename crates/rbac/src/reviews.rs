//! The answers to access reviews, as kube-apiserver's authorization and authentication
//! REST handlers give them: `SelfSubjectAccessReview` (`kubectl auth can-i`),
//! `SubjectAccessReview` and `LocalSubjectAccessReview` (about anyone, for those allowed to
//! ask), `SelfSubjectRulesReview` (`kubectl auth can-i --list`) and `SelfSubjectReview`
//! (`kubectl auth whoami`). Each takes the request body and returns the body with its
//! `status` filled in.

use std::collections::BTreeMap;

use apimachinery::field_errors::{FieldError, FieldErrors};
use serde_json::{json, Map, Value};

use crate::attributes::Attributes;
use crate::policy::Policy;
use crate::user::User;

/// Which review a request creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Review {
    SelfSubjectAccess,
    SelfSubjectRules,
    SubjectAccess,
    LocalSubjectAccess,
    SelfSubject,
}

impl Review {
    /// The review served under `plural`.
    pub fn from_plural(plural: &str) -> Option<Self> {
        Some(match plural {
            "selfsubjectaccessreviews" => Review::SelfSubjectAccess,
            "selfsubjectrulesreviews" => Review::SelfSubjectRules,
            "subjectaccessreviews" => Review::SubjectAccess,
            "localsubjectaccessreviews" => Review::LocalSubjectAccess,
            "selfsubjectreviews" => Review::SelfSubject,
            _ => return None,
        })
    }

    pub fn kind(self) -> &'static str {
        match self {
            Review::SelfSubjectAccess => "SelfSubjectAccessReview",
            Review::SelfSubjectRules => "SelfSubjectRulesReview",
            Review::SubjectAccess => "SubjectAccessReview",
            Review::LocalSubjectAccess => "LocalSubjectAccessReview",
            Review::SelfSubject => "SelfSubjectReview",
        }
    }

    pub fn group(self) -> &'static str {
        match self {
            Review::SelfSubject => "authentication.k8s.io",
            _ => "authorization.k8s.io",
        }
    }

    /// The answer to `body`, a review of this kind that `user` created (in `namespace`, for
    /// the local one).
    pub fn answer(
        self,
        policy: &Policy,
        user: &User,
        namespace: &str,
        mut body: Value,
    ) -> Result<Value, ReviewError> {
        let obj = body.as_object_mut().ok_or(ReviewError::Decode)?;
        obj.insert(
            "apiVersion".into(),
            Value::from(format!("{}/v1", self.group())),
        );
        obj.insert("kind".into(), Value::from(self.kind()));
        match self {
            Review::SelfSubjectAccess => self_subject_access(policy, user, body),
            Review::SelfSubjectRules => self_subject_rules(policy, user, body),
            Review::SubjectAccess => subject_access(policy, body),
            Review::LocalSubjectAccess => local_subject_access(policy, namespace, body),
            Review::SelfSubject => self_subject(user, body),
        }
    }
}

/// Why a review request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("the request body is not an object of its kind")]
    Decode,
    #[error("invalid review")]
    Invalid(Vec<FieldError>),
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    v.pointer(path).and_then(Value::as_str).unwrap_or_default()
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The attributes `spec` asks about for `user` (`ValidateSubjectAccessReviewSpec`'s rule
/// first: exactly one of the two attribute sets).
fn spec_attributes(user: User, spec: &Value) -> Result<Attributes, ReviewError> {
    let res = spec.get("resourceAttributes").filter(|v| v.is_object());
    let non = spec.get("nonResourceAttributes").filter(|v| v.is_object());
    let mut errs = FieldErrors::default();
    match (res, non) {
        (Some(_), Some(_)) => errs.invalid_text(
            "spec.resourceAttributes",
            "&authorization.ResourceAttributes{...}",
            "cannot be specified in combination with resourceAttributes",
        ),
        (None, None) => errs.invalid_text(
            "spec.resourceAttributes",
            "nil",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ),
        _ => {}
    }
    errs.finish().map_err(ReviewError::Invalid)?;
    let mut a = Attributes::from_request(user, "GET", "/", None);
    match (res, non) {
        (Some(r), _) => {
            a.resource_request = true;
            a.path = String::new();
            a.verb = s(r, "/verb").to_string();
            a.namespace = s(r, "/namespace").to_string();
            a.api_group = s(r, "/group").to_string();
            a.api_version = s(r, "/version").to_string();
            a.resource = s(r, "/resource").to_string();
            a.subresource = s(r, "/subresource").to_string();
            a.name = s(r, "/name").to_string();
        }
        (None, Some(n)) => {
            a.verb = s(n, "/verb").to_string();
            a.path = s(n, "/path").to_string();
        }
        (None, None) => {}
    }
    Ok(a)
}

fn answer(mut body: Value, status: Value) -> Result<Value, ReviewError> {
    let obj = body.as_object_mut().ok_or(ReviewError::Decode)?;
    let meta = obj.entry("metadata").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.entry("creationTimestamp").or_insert(Value::Null);
    }
    obj.insert("status".into(), status);
    Ok(body)
}

fn decide(policy: &Policy, a: &Attributes, body: Value) -> Result<Value, ReviewError> {
    let d = policy.authorize(a);
    let mut status = Map::new();
    status.insert("allowed".into(), json!(d.allowed));
    if !d.reason.is_empty() {
        status.insert("reason".into(), json!(d.reason));
    }
    answer(body, Value::Object(status))
}

/// `POST selfsubjectaccessreviews`: may `user` do what `spec` says?
pub fn self_subject_access(
    policy: &Policy,
    user: &User,
    body: Value,
) -> Result<Value, ReviewError> {
    let spec = body.get("spec").cloned().unwrap_or_default();
    let a = spec_attributes(user.clone(), &spec)?;
    decide(policy, &a, body)
}

/// The user a SubjectAccessReview's spec describes.
fn spec_user(spec: &Value) -> Result<User, ReviewError> {
    let name = s(spec, "/user").to_string();
    let groups = strings(spec.get("groups"));
    if name.is_empty() && groups.is_empty() {
        let mut errs = FieldErrors::default();
        errs.invalid_text(
            "spec.user",
            "\"\"",
            "at least one of user or group must be specified",
        );
        return errs
            .finish()
            .map_err(ReviewError::Invalid)
            .map(|_| User::default());
    }
    let extra: BTreeMap<String, Vec<String>> = spec
        .get("extra")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), strings(Some(v))))
                .collect()
        })
        .unwrap_or_default();
    Ok(User {
        name,
        uid: s(spec, "/uid").to_string(),
        groups,
        extra,
    })
}

/// `POST subjectaccessreviews`: may the user the spec names do what it says?
pub fn subject_access(policy: &Policy, body: Value) -> Result<Value, ReviewError> {
    let spec = body.get("spec").cloned().unwrap_or_default();
    let user = spec_user(&spec)?;
    let a = spec_attributes(user, &spec)?;
    decide(policy, &a, body)
}

/// `POST namespaces/NS/localsubjectaccessreviews`: a SubjectAccessReview confined to `ns`.
pub fn local_subject_access(
    policy: &Policy,
    namespace: &str,
    mut body: Value,
) -> Result<Value, ReviewError> {
    let asked = s(&body, "/spec/resourceAttributes/namespace").to_string();
    let mut errs = FieldErrors::default();
    if body
        .pointer("/spec/nonResourceAttributes")
        .is_some_and(Value::is_object)
    {
        errs.invalid_text(
            "spec.nonResourceAttributes",
            "&authorization.NonResourceAttributes{...}",
            "disallowed on this kind of request",
        );
    }
    if !asked.is_empty() && asked != namespace {
        errs.invalid(
            "spec.resourceAttributes.namespace",
            &Value::from(asked.clone()),
            &format!("must match metadata.namespace {namespace:?}"),
        );
    }
    errs.finish().map_err(ReviewError::Invalid)?;
    if let Some(r) = body
        .pointer_mut("/spec/resourceAttributes")
        .and_then(Value::as_object_mut)
    {
        r.insert("namespace".into(), json!(namespace));
    }
    subject_access(policy, body)
}

/// `POST selfsubjectrulesreviews`: every rule `user` holds in `spec.namespace`.
pub fn self_subject_rules(policy: &Policy, user: &User, body: Value) -> Result<Value, ReviewError> {
    let namespace = s(&body, "/spec/namespace").to_string();
    let (rules, errors) = policy.rules_for(user, &namespace);
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules {
        if r.resources.as_ref().is_some_and(|l| !l.is_empty()) {
            resource_rules.push(json!({
                "verbs": r.verbs,
                "apiGroups": r.api_groups.unwrap_or_default(),
                "resources": r.resources.unwrap_or_default(),
                "resourceNames": r.resource_names.unwrap_or_default(),
            }));
        }
        if r.non_resource_urls.as_ref().is_some_and(|l| !l.is_empty()) {
            non_resource_rules.push(json!({
                "verbs": r.verbs,
                "nonResourceURLs": r.non_resource_urls.unwrap_or_default(),
            }));
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": !errors.is_empty(),
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    answer(body, status)
}

/// `POST selfsubjectreviews`: who the server takes `user` for.
pub fn self_subject(user: &User, body: Value) -> Result<Value, ReviewError> {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    answer(body, json!({"userInfo": info}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::PolicyKind;

    fn bob() -> User {
        User {
            name: "bob".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        }
    }

    fn policy() -> Policy {
        let mut p = Policy::default();
        for r in crate::bootstrap::cluster_roles() {
            p.apply(PolicyKind::ClusterRole, &r).expect("role");
        }
        for b in crate::bootstrap::cluster_role_bindings() {
            p.apply(PolicyKind::ClusterRoleBinding, &b)
                .expect("binding");
        }
        p
    }

    #[test]
    fn can_i_answers() {
        let p = policy();
        let ask = |verb: &str, resource: &str| {
            json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {"namespace": "default", "verb": verb, "resource": resource}}})
        };
        let no = self_subject_access(&p, &bob(), ask("list", "pods")).expect("answer");
        assert_eq!(no["status"], json!({"allowed": false}));
        let yes = self_subject_access(&p, &bob(), ask("create", "selfsubjectaccessreviews"));
        assert_eq!(
            yes.expect("answer")["status"]["allowed"],
            false,
            "wrong group"
        );
        let basic = json!({"spec": {"resourceAttributes": {"verb": "create",
            "group": "authorization.k8s.io", "resource": "selfsubjectaccessreviews"}}});
        let yes = self_subject_access(&p, &bob(), basic).expect("answer");
        assert_eq!(yes["status"]["allowed"], true);
        assert_eq!(
            yes["status"]["reason"],
            "RBAC: allowed by ClusterRoleBinding \"system:basic-user\" of ClusterRole \"system:basic-user\" to Group \"system:authenticated\""
        );
        let path = json!({"spec": {"nonResourceAttributes": {"verb": "get", "path": "/version"}}});
        assert_eq!(
            self_subject_access(&p, &bob(), path).expect("answer")["status"]["allowed"],
            true
        );
        assert!(matches!(
            self_subject_access(&p, &bob(), json!({"spec": {}})),
            Err(ReviewError::Invalid(_))
        ));
        let sar = json!({"spec": {"groups": ["system:masters"], "resourceAttributes": {"verb": "delete", "resource": "nodes"}}});
        assert_eq!(
            subject_access(&p, sar).expect("answer")["status"]["allowed"],
            true
        );
        let lsar = json!({"spec": {"user": "bob", "resourceAttributes": {"namespace": "other", "verb": "get", "resource": "pods"}}});
        assert!(local_subject_access(&p, "default", lsar).is_err());
    }

    #[test]
    fn rules_and_whoami() {
        let p = policy();
        let rr = self_subject_rules(&p, &bob(), json!({"spec": {"namespace": "default"}}))
            .expect("rules");
        assert_eq!(rr["status"]["incomplete"], false);
        assert!(rr["status"]["nonResourceRules"]
            .as_array()
            .is_some_and(|r| r.iter().any(|x| x["nonResourceURLs"]
                .as_array()
                .is_some_and(|u| u.contains(&json!("/api"))))));
        let me = self_subject(
            &bob(),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        )
        .expect("whoami");
        assert_eq!(me["status"]["userInfo"]["username"], "bob");
        assert_eq!(me["metadata"]["creationTimestamp"], Value::Null);
    }
}
